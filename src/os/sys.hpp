// The one wrapper every system call goes through: captures errno, retries EINTR where right.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>

#include <ipcx/error.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::os {

// Calls f() again while it fails with EINTR. Use for calls that are safe to restart.
template <class F>
auto retry(F&& f) {
  for (;;) {
    auto r = f();
    if (r == -1 && errno == EINTR) continue;
    return r;
  }
}

// Runs f() once (restarting on EINTR) and turns -1 into an Error naming `op`.
template <class F>
auto check(const char* op, F&& f) -> Result<decltype(f())> {
  auto r = retry(f);
  if (r == -1) return fail_errno(errno, op);
  return r;
}

// An absolute point in time on the monotonic clock, or "never".
class Deadline {
 public:
  static Deadline after(Timeout t) noexcept {
    Deadline d;
    // Anything beyond a century is "forever" too (and cannot overflow the clock's range).
    if (t == forever || t > std::chrono::hours(24 * 365 * 100)) return d;
    d.infinite_ = false;
    d.zero_ = t <= Timeout::zero();
    // An immediate deadline has passed already: no clock read (try_* calls are hot paths).
    if (!d.zero_) d.at_ = std::chrono::steady_clock::now() + t;
    return d;
  }
  static Deadline never() noexcept { return {}; }
  static Deadline now() noexcept { return after(Timeout::zero()); }

  bool infinite() const noexcept { return infinite_; }
  // True for try_* calls: never wait at all.
  bool immediate() const noexcept { return zero_; }
  bool expired() const noexcept {
    return !infinite_ && (zero_ || std::chrono::steady_clock::now() >= at_);
  }
  // Milliseconds for poll(2): -1 for infinite, rounded up so we never wake early.
  int poll_ms() const noexcept;
  // What is left, zero once expired; `forever` when infinite.
  Timeout remaining() const noexcept;

 private:
  bool infinite_ = true;
  bool zero_ = false;
  std::chrono::steady_clock::time_point at_{};
};

// Waits until `fd` reports any of `events` (POLLIN/POLLOUT) or the deadline passes.
// Returns the revents seen; Errc::timeout when the deadline passes first, Errc::would_block
// for an immediate deadline.
Result<short> wait_fd(int fd, short events, const Deadline& deadline);

// The one way an operation that got EAGAIN waits before trying again: would_block for an
// immediate deadline (named after `op`), else readiness of `fd` for `events` or timeout.
Result<void> await(int fd, short events, const Deadline& deadline, const char* op);
// For conditions no descriptor reports (a full signal queue, a FIFO without a reader yet, a
// full Unix backlog): would_block for an immediate deadline, timeout once it passed, else
// sleeps `step` (bounded by the deadline) so the caller can try again.
Result<void> pause_before_retry(const Deadline& deadline, Timeout step, const char* op);

Result<void> set_nonblocking(int fd, bool on);

}  // namespace ipcx::os
