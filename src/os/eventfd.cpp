#include "os/eventfd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include "os/sys.hpp"

namespace ipcx::os {

Result<EventFd> EventFd::create(unsigned initial, bool semaphore) {
  int fd = ::eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK | (semaphore ? EFD_SEMAPHORE : 0));
  if (fd < 0) return fail_errno(errno, "eventfd");
  EventFd e;
  e.fd_ = Fd(fd);
  return e;
}

Result<void> EventFd::signal(std::uint64_t n) noexcept {
  if (retry([&] { return ::write(fd_.get(), &n, sizeof n); }) != sizeof n) return fail_errno(errno, "eventfd write");
  return {};
}

Result<std::uint64_t> EventFd::drain() noexcept {
  std::uint64_t v = 0;
  ssize_t n = retry([&] { return ::read(fd_.get(), &v, sizeof v); });
  if (n == sizeof v) return v;
  if (n < 0 && errno == EAGAIN) return fail(Errc::would_block, "eventfd read");
  return fail_errno(errno, "eventfd read");
}

}  // namespace ipcx::os
