// Rows over real-time signals: one int per message.
#include <cstdint>

#include <unistd.h>

#include <fmt/format.h>

#include "bench/mechanism.hpp"

namespace ipcx::bench {
namespace {

int ipcx_signo() { return SIGRTMIN + kDefaultSignalOffset; }
int raw_signo() { return SIGRTMIN + kDefaultSignalOffset + 1; }  // raw rows never see ipcx's signal

// raw: sigqueue to the peer's pid, sigwaitinfo for the reply.
class RawSignalSetup final : public Setup {
 public:
  Made<Channel> child_channel() override { return std::make_unique<SignalChannel>(::getppid(), raw_signo()); }
  Made<Channel> parent_channel(const std::string&, pid_t child) override {
    return std::make_unique<SignalChannel>(child, raw_signo());
  }
  int wake_signal() const override { return raw_signo(); }
};

std::unique_ptr<Setup> ipcx_signal(const RunCtx&) {
  return ipcx_listen(
      "signal://self", [](const std::string&, pid_t child) { return fmt::format("signal://{}", child); },
      ipcx_signo());
}

const Mechanism kRows[] = {
    {.name = "signal",
     .group = Group::signals,
     .purpose = "a real-time signal carrying one int: a notification, no connection",
     .raw = [](const RunCtx&) -> std::unique_ptr<Setup> { return std::make_unique<RawSignalSetup>(); },
     .ipcx = ipcx_signal,
     .fixed_size = sizeof(std::int32_t),
     .signals = [] { return std::vector<int>{ipcx_signo(), raw_signo()}; }},
};

}  // namespace

std::span<const Mechanism> signal_rows() { return kRows; }

}  // namespace ipcx::bench
