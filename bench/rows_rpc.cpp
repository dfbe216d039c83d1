// RPC rows: a unary call between two processes, against the Unix-socket round trip it rides on.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bench/harness.hpp"
#include "bench/mechanism.hpp"
#include "bench/rows_rpc.hpp"
#include "bench/rows_shm.hpp"
#include "bench/rows_socket.hpp"

namespace ipcx::bench {
namespace {

#if IPCX_BENCH_GRPC
constexpr MakeSetup kGrpc = rpc::grpc_unix;
constexpr std::string_view kGrpcSkipped{};
#elif IPCX_BENCH_GRPC_SANITIZED
constexpr MakeSetup kGrpc = nullptr;
constexpr std::string_view kGrpcSkipped = "gRPC left out of sanitizer builds (libgrpc++ is not instrumented)";
#else
constexpr MakeSetup kGrpc = nullptr;
constexpr std::string_view kGrpcSkipped = "gRPC (libgrpc++-dev, protobuf-compiler-grpc) not found when ipcx was built";
#endif

// The raw side of an RPC row: request and response of the same size over the row's raw channel,
// one in flight, timed as the calls are (so messages/s is round trips/s, like calls/s). The
// echo child sends back what it received; the parent first makes kVerifyRounds round trips with
// a different pattern each and compares every byte that comes back.
class RoundTrips final : public SelfTimedChannel {
 public:
  RoundTrips(std::unique_ptr<Channel> inner, std::size_t size) : inner_(std::move(inner)), size_(size) {}

  Result<Timing> measure(int warmup, int rounds) override {
    std::vector<std::byte> out(size_);
    for (int r = 0; r < kVerifyRounds; ++r) {
      for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<std::byte>(rpc::verify_byte(r, i));
      if (auto s = round_trip(out); !s) return std::unexpected(s.error());
      const auto got = inner_->received();
      if (!std::ranges::equal(got, out))
        return fail(Errc::protocol, "verify", fmt::format("round {}: {} bytes came back, not the {} sent", r, got.size(), out.size()));
    }
    std::ranges::fill(out, std::byte{0xa5});
    auto t = rpc::time_calls(warmup, rounds, [&] { return round_trip(out); });
    if (t) t->compared = true;
    return t;
  }

  // Sends back the bytes where recv() left them: no copy in the echo, which every round trip
  // would time.
  Status answer(int warmup, int rounds) override {
    for (long i = 0; i < long{kVerifyRounds} + warmup + rounds; ++i) {
      if (auto s = inner_->recv(size_); !s) return s;
      if (auto s = inner_->send(inner_->received()); !s) return s;
    }
    return {};
  }

 private:
  Status round_trip(std::span<const std::byte> out) {
    if (auto s = inner_->send(out); !s) return s;
    return inner_->recv(size_);
  }

  std::unique_ptr<Channel> inner_;
  std::size_t size_;
};

// A raw setup whose channels are timed as RoundTrips.
template <MakeSetup Raw>
class RoundTripSetup final : public Setup {
 public:
  explicit RoundTripSetup(const RunCtx& c) : inner_(Raw(c)), size_(c.size) {}
  Status parent_prepare(ChildWiring& w) override { return inner_->parent_prepare(w); }
  Result<std::string> child_prepare() override { return inner_->child_prepare(); }
  Made<Channel> child_channel() override { return wrap(inner_->child_channel()); }
  Made<Channel> parent_channel(const std::string& ready, pid_t child) override {
    return wrap(inner_->parent_channel(ready, child));
  }

 private:
  Made<Channel> wrap(Made<Channel> ch) const {
    if (!ch) return ch;
    return std::make_unique<RoundTrips>(std::move(*ch), size_);
  }
  std::unique_ptr<Setup> inner_;
  std::size_t size_;
};

template <MakeSetup Raw>
std::unique_ptr<Setup> round_trips(const RunCtx& c) {
  return std::make_unique<RoundTripSetup<Raw>>(c);
}

const Mechanism kRows[] = {
    {.name = "rpc-unix",
     .group = Group::rpc,
     .purpose = "a function call in another process: request, handler, response (a serving thread per connection)",
     .raw = round_trips<raw_unix_stream>,
     .ipcx = rpc::ipcx_unix,
     .peer = kGrpc,
     .peer_skipped = kGrpcSkipped,
     .peer_row = "grpc-unix"},
    {.name = "rpc-unix-loop",
     .group = Group::rpc,
     .purpose = "the same call, the connection served by the event loop that serves many",
     .raw = round_trips<raw_unix_stream>,
     .ipcx = rpc::ipcx_unix_loop},
    {.name = "rpc-shm",
     .group = Group::rpc,
     .purpose = "the same call over shared memory, both sides busy-polling",
     .raw = round_trips<raw_spin_ring>,
     .ipcx = rpc::ipcx_shm_spin},
};

}  // namespace

std::span<const Mechanism> rpc_rows() { return kRows; }

}  // namespace ipcx::bench
