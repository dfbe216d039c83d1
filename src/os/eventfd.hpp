// eventfd: a counter the kernel can poll; used to wake a reactor from another thread.
#pragma once

#include <cstdint>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

namespace ipcx::os {

class EventFd {
 public:
  static Result<EventFd> create(unsigned initial = 0, bool semaphore = false);
  // Adds n to the counter (wakes pollers). Never blocks unless the counter would overflow.
  Result<void> signal(std::uint64_t n = 1) noexcept;
  // Reads and resets the counter (or takes 1 in semaphore mode); would_block when zero.
  Result<std::uint64_t> drain() noexcept;
  int fd() const noexcept { return fd_.get(); }

 private:
  Fd fd_;
};

}  // namespace ipcx::os
