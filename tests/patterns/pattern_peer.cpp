// A subscriber or worker in a process of its own, for the pattern tests (they stop and kill it).
//
//   ipcx-pattern-peer sub URL PREFIX [WINDOW]   receives until the publisher goes away
//   ipcx-pattern-peer pull URL [WINDOW]         pulls until the pusher goes away
//
// Prints "ready" once connected, then at the end one line:
//   sub:  "received R gaps G last SEQ"
//   pull: "pulled N sum S"                     (S: sum of the decimal payloads)
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ipcx/pubsub.hpp>

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const std::string mode = argv[1];
  if (mode == "sub" && argc >= 4) {
    ipcx::SubscriberOptions so;
    if (argc >= 5) so.window = std::strtoul(argv[4], nullptr, 10);
    auto sub = ipcx::Subscriber::connect(argv[2], {argv[3]}, so);
    if (!sub) {
      std::fprintf(stderr, "%s\n", sub.error().message().c_str());
      return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    std::uint64_t last = 0;
    for (;;) {
      auto p = sub->recv();
      if (!p) break;
      last = p->sequence;
    }
    auto st = sub->stats();
    std::printf("received %llu gaps %llu last %llu\n", static_cast<unsigned long long>(st.received),
                static_cast<unsigned long long>(st.gaps), static_cast<unsigned long long>(last));
    return 0;
  }
  if (mode == "pull") {
    ipcx::PullerOptions po;
    if (argc >= 4) po.window = std::strtoul(argv[3], nullptr, 10);
    auto pull = ipcx::Puller::connect(argv[2], po);
    if (!pull) {
      std::fprintf(stderr, "%s\n", pull.error().message().c_str());
      return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    unsigned long long n = 0, sum = 0;
    for (;;) {
      auto m = pull->pull();
      if (!m) break;
      ++n;
      sum += std::strtoull(std::string(m->text()).c_str(), nullptr, 10);
    }
    std::printf("pulled %llu sum %llu\n", n, sum);
    return 0;
  }
  return 2;
}
