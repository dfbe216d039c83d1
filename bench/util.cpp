#include "bench/util.hpp"

#include <cstdio>
#include <ctime>
#include <string_view>

#include <fcntl.h>
#include <sys/resource.h>

#include <fmt/format.h>

namespace ipcx::bench {

std::string describe(const Error& e) {
  bool out_of_fds = e.sys_errno == EMFILE || (e.sys_errno == EINVAL && std::string_view(e.op) == "spawn");
  if (!out_of_fds) return e.message();
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  auto limit = rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(rl.rlim_cur);
  return fmt::format("{}{}out of file descriptors (RLIMIT_NOFILE {}): raise ulimit -n", e.op, *e.op ? ": " : "", limit);
}

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

Status flush_stdout() {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) return sys_error("write", "stdout");
  return {};
}

}  // namespace ipcx::bench
