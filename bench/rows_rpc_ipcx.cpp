// The RPC rows' ipcx side: an rpc::Server in the echo child whose handler answers with the
// request's bytes (a view of them: the echo itself copies nothing), run where the call is read
// (Run::loop, for a handler that never blocks); an rpc::Client in the parent making unary calls
// with a deadline, the way its users write them. The child serves the connection one of two ways:
//   thread: Server::serve() on a thread of its own (the echo child's), waiting in the
//           connection's receive — a blocking read on unix://, busy-polling on shm://?wait=spin
//   loop:   the server engine's event loop (Server::listen + run), as for many connections
//
// The parent first makes kVerifyRounds calls with a different pattern each and compares every
// byte of each response ("content"), then times its warm-up and timed calls, each checked for
// its size. The child serves until it has answered them all.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <ipcx/ipcx.hpp>
#include <ipcx/rpc.hpp>

#include "bench/harness.hpp"
#include "bench/rows_rpc.hpp"
#include "bench/rows_shm.hpp"
#include "bench/session.hpp"

namespace ipcx::bench::rpc {
namespace {

using namespace std::chrono_literals;
namespace ir = ipcx::rpc;

constexpr auto kCallDeadline = 10s;  // an echo child stopped mid-call fails the measurement, not hangs it
// One method, seen from each side: the server answers with a view of the request it holds.
constexpr ir::Method<ir::Payload, std::span<const std::byte>> kServe{"bench.Echo/Call"};
constexpr ir::Method<std::span<const std::byte>, ir::Payload> kCall{"bench.Echo/Call"};

std::unexpected<Error> call_error(const ir::Status& st) { return fail(Errc::system, "ipcx rpc call", st.to_string()); }

class RpcChannel final : public SelfTimedChannel {
 public:
  // Parent.
  RpcChannel(ir::Client client, std::size_t size) : client_(std::move(client)), size_(size) {}
  // Echo child: serving the engine's listener, or (listener set) one connection on this thread.
  RpcChannel(ir::Server& server, const long& served, Listener* listener) : server_(&server), served_(&served), listener_(listener) {}

  Result<Timing> measure(int warmup, int rounds) override {
    std::vector<std::byte> request(size_);
    for (int r = 0; r < kVerifyRounds; ++r) {
      for (std::size_t i = 0; i < request.size(); ++i) request[i] = static_cast<std::byte>(verify_byte(r, i));
      auto got = client_.call(kCall, std::span<const std::byte>(request), kCallDeadline);
      if (!got) return call_error(got.error());
      if (!std::ranges::equal(got->bytes(), request)) {
        const auto b = got->bytes();
        const auto at = std::mismatch(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(std::min(b.size(), request.size())), request.begin()).first - b.begin();
        return fail(Errc::protocol, "verify", fmt::format("call {}: {} bytes answered {} sent, first difference at byte {}", r, b.size(), request.size(), at));
      }
    }
    std::ranges::fill(request, std::byte{0xa5});
    auto t = time_calls(warmup, rounds, [&]() -> Status {
      auto got = client_.call(kCall, std::span<const std::byte>(request), kCallDeadline);
      if (!got) return call_error(got.error());
      if (got->size() != size_) return fail(Errc::protocol, "ipcx rpc call", fmt::format("{} bytes answered {}", got->size(), size_));
      return {};
    });
    if (t) t->compared = true;
    return t;
  }

  Status answer(int warmup, int rounds) override {
    const long calls = long{kVerifyRounds} + warmup + rounds;
    if (listener_) {
      // The parent closes its client after its last call: serve() returns then.
      auto conn = listener_->accept(30s);
      if (!conn) return std::unexpected(conn.error());
      if (auto r = server_->serve(std::move(*conn)); !r) return r;
      if (*served_ < calls) return fail(Errc::closed, "ipcx rpc serve", fmt::format("the caller left after {} of {} calls", *served_, calls));
      return {};
    }
    while (*served_ < calls) {
      if (auto r = server_->run_once(100ms); !r) return std::unexpected(r.error());
      // The parent went away before its last call (killed, or its measurement failed).
      if (server_->engine_stats().connections == 0 && server_->engine_stats().accepted > 0)
        return fail(Errc::closed, "ipcx rpc serve", fmt::format("the caller left after {} of {} calls", *served_, calls));
    }
    // The last response is written at the end of the round that ran its handler; one more
    // round sees the parent's end.
    (void)server_->run_once(Timeout::zero());
    return {};
  }

 private:
  ir::Client client_;
  std::size_t size_ = 0;
  ir::Server* server_ = nullptr;
  const long* served_ = nullptr;
  Listener* listener_ = nullptr;
};

enum class Serving { thread, loop };

class RpcSetup final : public Setup {
 public:
  RpcSetup(const RunCtx& c, std::string url, Serving serving) : size_(c.size), url_(std::move(url)), serving_(serving) {}

  Result<std::string> child_prepare() override {
    ir::ServerOptions o;
    o.transport.max_message = std::max<std::size_t>(o.transport.max_message, size_ + 4096);
    auto s = ir::Server::create(o);
    if (!s) return std::unexpected(s.error());
    server_ = std::make_unique<ir::Server>(std::move(*s));
    server_->unary(kServe, [this](ir::Context&, const ir::Payload& req, std::span<const std::byte>& resp) {
      resp = req.bytes();
      ++served_;
      return ir::Status{};
    }, ir::Run::loop);
    if (serving_ == Serving::thread) {
      auto l = ipcx::listen(url_, o.transport);
      if (!l) return std::unexpected(l.error());
      listener_ = std::make_unique<Listener>(std::move(*l));
      return listener_->url();
    }
    auto bound = server_->listen(url_);
    if (!bound) return std::unexpected(bound.error());
    return *bound;
  }
  Made<Channel> child_channel() override { return std::make_unique<RpcChannel>(*server_, served_, listener_.get()); }
  Made<Channel> parent_channel(const std::string& ready, pid_t) override {
    ir::ClientOptions o;
    o.transport.max_message = std::max<std::size_t>(o.transport.max_message, size_ + 4096);
    auto c = ir::Client::connect(ready, o);
    if (!c) return std::unexpected(c.error());
    return std::make_unique<RpcChannel>(std::move(*c), size_);
  }

 private:
  std::size_t size_;
  std::string url_;
  Serving serving_;
  long served_ = 0;
  std::unique_ptr<ir::Server> server_;
  std::unique_ptr<Listener> listener_;
};

}  // namespace

std::unique_ptr<Setup> ipcx_unix(const RunCtx& c) { return std::make_unique<RpcSetup>(c, "unix://" + c.path, Serving::thread); }
std::unique_ptr<Setup> ipcx_unix_loop(const RunCtx& c) { return std::make_unique<RpcSetup>(c, "unix://" + c.path, Serving::loop); }
std::unique_ptr<Setup> ipcx_shm_spin(const RunCtx& c) {
  return std::make_unique<RpcSetup>(c, fmt::format("shm://{}?wait=spin", shm_name(c)), Serving::thread);
}

}  // namespace ipcx::bench::rpc
