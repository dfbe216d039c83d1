// Round trip of a 64-byte message over unix://, Connection against Channel, each echo served by
// another process. A measuring program, not a test:
//
//   ipcx-channel-rtt [ROUND_TRIPS] [ROUNDS]
//
// Prints the mean round trip of each kind per round (they alternate, so a noisy machine hits
// all of them alike) and each Channel's ratio to the Connection of the same round.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <ipcx/ipcx.hpp>

using namespace std::chrono_literals;

namespace {

enum class Kind { connection, channel_async, channel_confirmed };
const char* name(Kind k) {
  return k == Kind::connection ? "connection" : k == Kind::channel_async ? "channel async" : "channel confirmed";
}
ipcx::ChannelOptions options(Kind k) {
  return {.delivery = k == Kind::channel_confirmed ? ipcx::Delivery::confirmed : ipcx::Delivery::async};
}

int serve(const std::string& url, Kind k) {
  auto l = ipcx::listen(url);
  if (!l) return 2;
  std::printf("%s\n", l->url().c_str());
  std::fflush(stdout);
  ipcx::Message m;
  if (k == Kind::connection) {
    auto c = l->accept(20s);
    if (!c) return 2;
    while (c->recv(m)) {
      if (!c->send(m.bytes())) return 3;
    }
    return 0;
  }
  auto ch = ipcx::Channel::accept(*l, options(k), 20s);
  if (!ch) return 2;
  while (ch->recv(m)) {
    if (!ch->send(m.bytes())) return 3;
  }
  return 0;
}

std::string read_line(int fd) {
  std::string s;
  char c;
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  while (::poll(&p, 1, 20000) == 1 && ::read(fd, &c, 1) == 1 && c != '\n') s += c;
  return s;
}

double measure(const char* self, Kind k, int n) {
  const std::string url = "unix:@ipcx-rtt-" + std::to_string(::getpid());
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return -1;
  auto p = ipcx::Process::spawn({self, "serve", url, std::to_string(static_cast<int>(k))}, {.fds = {{1, out[1]}}});
  ::close(out[1]);
  if (!p) return -1;
  const auto bound = read_line(out[0]);
  ::close(out[0]);
  const std::vector<std::byte> msg(64, std::byte{'x'});
  ipcx::Message m;
  auto run = [&](auto& endpoint, int count) {
    for (int i = 0; i < count; ++i) {
      if (!endpoint.send(msg) || !endpoint.recv(m)) return false;
    }
    return true;
  };
  double ns = -1;
  auto timed = [&](auto& endpoint) {
    if (!run(endpoint, 2000)) return;  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    if (!run(endpoint, n)) return;
    const auto t1 = std::chrono::steady_clock::now();
    ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / n;
  };
  if (k == Kind::connection) {
    auto c = ipcx::connect(bound);
    if (c) timed(*c);
  } else {
    auto ch = ipcx::Channel::connect(bound, options(k));
    if (ch) timed(*ch);
  }
  (void)p->wait(10s);
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "serve") return serve(argv[2], static_cast<Kind>(std::atoi(argv[3])));
  const int n = argc > 1 ? std::atoi(argv[1]) : 50000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  std::printf("unix:@ 64-byte round trip, %d per measurement, mean ns\n", n);
  for (int r = 0; r < rounds; ++r) {
    const double base = measure(argv[0], Kind::connection, n);
    const double a = measure(argv[0], Kind::channel_async, n);
    const double c = measure(argv[0], Kind::channel_confirmed, n);
    std::printf("round %d: %s %.0f | %s %.0f (x%.2f) | %s %.0f (x%.2f)\n", r + 1, name(Kind::connection), base,
                name(Kind::channel_async), a, a / base, name(Kind::channel_confirmed), c, c / base);
  }
  return 0;
}
