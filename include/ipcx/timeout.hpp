// How long a call may block: one type for every blocking operation of the library.
#pragma once

#include <chrono>

namespace ipcx {

// `forever` blocks without limit; zero never blocks (the try_* calls); anything else is a
// deadline counted from the call (monotonic clock).
using Timeout = std::chrono::nanoseconds;
inline constexpr Timeout forever = Timeout::max();

namespace detail {
// The monotonic instant `timeout` from now, saturating: a negative timeout is now, one too
// large to add (forever included) is time_point::max().
inline std::chrono::steady_clock::time_point deadline_after(Timeout timeout) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (timeout <= Timeout::zero()) return now;
  if (timeout >= std::chrono::steady_clock::time_point::max() - now) return std::chrono::steady_clock::time_point::max();
  return now + timeout;
}
// What is left of `deadline` at `now`, as a Timeout: zero once passed, forever for
// time_point::max() (the inverse of deadline_after).
inline Timeout timeout_until(std::chrono::steady_clock::time_point deadline, std::chrono::steady_clock::time_point now) noexcept {
  if (deadline == std::chrono::steady_clock::time_point::max()) return forever;
  return deadline <= now ? Timeout::zero() : std::chrono::duration_cast<Timeout>(deadline - now);
}
}  // namespace detail

}  // namespace ipcx
