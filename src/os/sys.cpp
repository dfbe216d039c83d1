#include "os/sys.hpp"

#include <algorithm>
#include <ctime>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <ipcx/fd.hpp>

namespace ipcx {

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);  // never retried: Linux frees the descriptor even on EINTR
  fd_ = fd;
}

}  // namespace ipcx

namespace ipcx::os {

int Deadline::poll_ms() const noexcept {
  if (infinite_) return -1;
  if (zero_) return 0;
  auto left = at_ - std::chrono::steady_clock::now();
  if (left <= Timeout::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > 0x7fffffff ? 0x7fffffff : static_cast<int>(ms);
}

Timeout Deadline::remaining() const noexcept {
  if (infinite_) return forever;
  if (zero_) return Timeout::zero();
  auto left = at_ - std::chrono::steady_clock::now();
  return left > Timeout::zero() ? std::chrono::duration_cast<Timeout>(left) : Timeout::zero();
}

Result<void> await(int fd, short events, const Deadline& deadline, const char* op) {
  if (deadline.immediate()) return fail(Errc::would_block, op);
  auto w = wait_fd(fd, events, deadline);
  if (!w) {
    auto e = std::move(w.error());
    e.op = op;
    return std::unexpected(std::move(e));
  }
  return {};
}

Result<void> pause_before_retry(const Deadline& deadline, Timeout step, const char* op) {
  if (deadline.immediate()) return fail(Errc::would_block, op);
  if (deadline.expired()) return fail(Errc::timeout, op);
  auto nap = std::min(step, deadline.remaining());
  timespec ts{static_cast<time_t>(nap.count() / 1'000'000'000), static_cast<long>(nap.count() % 1'000'000'000)};
  while (::nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
  return {};
}

Result<short> wait_fd(int fd, short events, const Deadline& deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, deadline.poll_ms());
    if (r > 0) return p.revents;
    if (r == 0) {
      if (deadline.immediate()) return fail(Errc::would_block, "wait");
      if (deadline.expired()) return fail(Errc::timeout, "wait");
      continue;  // woke early (rounding): wait for the rest
    }
    if (errno == EINTR) continue;
    return fail_errno(errno, "poll");
  }
}

Result<void> set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags == -1) return fail_errno(errno, "fcntl(F_GETFL)");
  int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (want != flags && ::fcntl(fd, F_SETFL, want) == -1) return fail_errno(errno, "fcntl(F_SETFL)");
  return {};
}

}  // namespace ipcx::os
