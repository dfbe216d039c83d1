// pidfd system calls (glibc 2.36 has wrappers, but not every libc does: call them directly).
#pragma once

#include <csignal>
#include <cstdint>
#include <optional>

#include <poll.h>

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <ipcx/fd.hpp>

namespace ipcx::os {

inline int pidfd_open(pid_t pid, unsigned flags = 0) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}
inline int pidfd_send_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// A process's liveness as a descriptor, readable once it has exited; empty when there is no
// such process or the kernel has no pidfds.
inline Fd watch_process(pid_t pid) noexcept { return pid > 0 ? Fd(pidfd_open(pid)) : Fd(); }
// True once the process behind `pidfd` (from watch_process) has exited; false for an empty one.
inline bool process_exited(const Fd& pidfd) noexcept {
  if (!pidfd) return false;
  pollfd p{pidfd.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Field 22 of /proc/<pid>/stat (start time, clock ticks after boot): with the pid, it names one
// process even after the pid is reused. nullopt when the process does not exist or is a zombie.
std::optional<std::uint64_t> process_start_time(pid_t pid);

}  // namespace ipcx::os
