#include "bench/util.hpp"

#include <ctime>

#include <fcntl.h>

namespace ipcx::bench {

Status set_blocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags == -1) return sys_error("fcntl(F_GETFL)");
  if ((flags & O_NONBLOCK) && ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1) return sys_error("fcntl(F_SETFL)");
  return {};
}

std::uint64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace ipcx::bench
