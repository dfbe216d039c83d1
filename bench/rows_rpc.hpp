// The RPC rows (bench/rows_rpc.cpp) and their peers.
//
// An RPC row's unit is a unary call: a request, a handler run by the server's own machinery, a
// response. Its ipcx and peer measurements time calls themselves (SelfTimedChannel): the
// harness's one-way bursts have no meaning for a call, so messages/s is calls/s, one call in
// flight. The raw measurement is the plain Unix-socket ping-pong the call is compared with.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>

#include "bench/setup.hpp"

namespace ipcx::bench::rpc {

// Byte i of verify call r (before the timed calls, each response is compared with its request,
// whose bytes change with the call).
inline unsigned char verify_byte(int r, std::size_t i) noexcept {
  return static_cast<unsigned char>((static_cast<std::size_t>(r) * 131 + i * 7) % 251 + 1);
}

// `warmup` untimed calls of `call` (a callable returning Status), then `rounds` timed ones: one
// sample each, and calls per second of measured time. The samples say nothing of the bytes:
// Timing::compared is the caller's to set.
template <class Call>
Result<Timing> time_calls(int warmup, int rounds, Call&& call) {
  Timing t;
  t.samples_ns.reserve(static_cast<std::size_t>(rounds));
  std::uint64_t total = 0;
  for (int i = 0; i < warmup + rounds; ++i) {
    const auto t0 = now_ns();
    if (auto s = call(); !s) return std::unexpected(s.error());
    const auto dt = now_ns() - t0;
    if (i < warmup) continue;
    t.samples_ns.push_back(dt);
    total += dt;
  }
  t.per_s = static_cast<double>(t.samples_ns.size()) * 1e9 / static_cast<double>(std::max<std::uint64_t>(total, 1));
  return t;
}

// ipcx: rpc::Server in the echo child (its handler answers with a view of the request, run where
// the call is read), rpc::Client in the parent, a deadline per call (bench/rows_rpc_ipcx.cpp).
// Over unix:// at the measurement's path, the connection served by Server::serve() on the child's
// thread (ipcx_unix) or by the server engine's event loop (ipcx_unix_loop); over shm://, both
// sides busy-polling (ipcx_shm_spin).
std::unique_ptr<Setup> ipcx_unix(const RunCtx& c);
std::unique_ptr<Setup> ipcx_unix_loop(const RunCtx& c);
std::unique_ptr<Setup> ipcx_shm_spin(const RunCtx& c);

// gRPC (Debian's libgrpc++), the generated Echo service of bench/grpc_echo.proto over a Unix
// socket: the echo child serves it with a synchronous server, the parent calls it with the
// synchronous stub, a deadline per call. Compiled only when bench/CMakeLists.txt found gRPC.
std::unique_ptr<Setup> grpc_unix(const RunCtx& c);

}  // namespace ipcx::bench::rpc
