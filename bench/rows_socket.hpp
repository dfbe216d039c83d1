// What other rows share with the socket rows (bench/rows_socket.cpp).
#pragma once

#include <memory>

#include "bench/setup.hpp"

namespace ipcx::bench {

// The unix row's raw setup: a Unix stream socket at the measurement's path, read and written
// with bare system calls (the baseline of the RPC rows too).
std::unique_ptr<Setup> raw_unix_stream(const RunCtx& c);

}  // namespace ipcx::bench
