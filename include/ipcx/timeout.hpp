// How long a call may block: one type for every blocking operation of the library.
#pragma once

#include <chrono>

namespace ipcx {

// `forever` blocks without limit; zero never blocks (the try_* calls); anything else is a
// deadline counted from the call (monotonic clock).
using Timeout = std::chrono::nanoseconds;
inline constexpr Timeout forever = Timeout::max();

}  // namespace ipcx
