// calc_client URL: calls calc.Calc (calc.proto) at URL through the generated stub.
#include <chrono>
#include <cstdio>

#include <ipcx/rpc.hpp>

#include "calc.ipcx.h"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s URL\n", argv[0]);
    return 2;
  }
  auto channel = ipcx::rpc::Client::connect(argv[1]);
  if (!channel) return std::fprintf(stderr, "calc_client: %s\n", channel.error().message().c_str()), 1;
  calc::Calc::Client calc(*channel);

  calc::AddRequest add;
  add.set_a(2);
  add.set_b(3);
  auto sum = calc.Add(add, 1s);  // Reply<AddReply>: the response, or the Status saying why not
  if (!sum) return std::fprintf(stderr, "calc_client: Add: %s\n", sum.error().to_string().c_str()), 1;
  std::printf("2 + 3 = %lld\n", static_cast<long long>(sum->sum()));

  calc::RangeRequest range;
  range.set_from(10);
  range.set_count(3);
  auto numbers = calc.Range(range, 1s);
  if (!numbers) return std::fprintf(stderr, "calc_client: Range: %s\n", numbers.error().to_string().c_str()), 1;
  while (true) {
    auto n = numbers->next();  // an item, nullopt at the end, or the Status that ended the stream
    if (!n) return std::fprintf(stderr, "calc_client: Range: %s\n", n.error().to_string().c_str()), 1;
    if (!*n) break;
    std::printf("%lld\n", static_cast<long long>((*n)->value()));
  }
  return 0;
}
