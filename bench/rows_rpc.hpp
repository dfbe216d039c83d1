// The RPC rows (bench/rows_rpc.cpp) and their peers.
//
// An RPC row's unit is a unary call: a request, a handler run by the server's own machinery, a
// response. Its ipcx and peer measurements time calls themselves (SelfTimedChannel): the
// harness's one-way bursts have no meaning for a call, so messages/s is calls/s, one call in
// flight. The raw measurement is the plain Unix-socket ping-pong the call is compared with.
#pragma once

#include <memory>

#include "bench/setup.hpp"

namespace ipcx::bench::rpc {

// gRPC (Debian's libgrpc++), the generated Echo service of bench/grpc_echo.proto over a Unix
// socket: the echo child serves it with a synchronous server, the parent calls it with the
// synchronous stub, a deadline per call. Compiled only when bench/CMakeLists.txt found gRPC.
std::unique_ptr<Setup> grpc_unix(const RunCtx& c);

}  // namespace ipcx::bench::rpc
