// A deadline on the wire: the time a request has left, in microseconds, counted from when it is
// sent and read back from when it is received (the two processes share no clock reading). Used
// by request/reply and survey (messaging/reqrep_wire.hpp) and by RPC calls (rpc/wire.hpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>

namespace ipcx::wire {

inline constexpr std::uint64_t kNoDeadline = std::numeric_limits<std::uint64_t>::max();

// Microseconds from now until `deadline`, rounded up (a request never looks shorter-lived on
// the other side than it is); kNoDeadline for time_point::max(). Zero: already passed.
inline std::uint64_t remaining_us(std::chrono::steady_clock::time_point deadline, std::chrono::steady_clock::time_point now) noexcept {
  if (deadline == std::chrono::steady_clock::time_point::max()) return kNoDeadline;
  if (deadline <= now) return 0;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
  return std::min(static_cast<std::uint64_t>((ns + 999) / 1000), kNoDeadline - 1);
}

// The local deadline a received `remaining` stands for, counted from `now`, saturating.
inline std::chrono::steady_clock::time_point local_deadline(std::uint64_t remaining, std::chrono::steady_clock::time_point now) noexcept {
  using Clock = std::chrono::steady_clock;
  if (remaining == kNoDeadline) return Clock::time_point::max();
  const auto room = std::chrono::duration_cast<std::chrono::microseconds>(Clock::time_point::max() - now).count();
  if (remaining >= static_cast<std::uint64_t>(room)) return Clock::time_point::max();
  return now + std::chrono::microseconds(static_cast<std::int64_t>(remaining));
}

}  // namespace ipcx::wire
