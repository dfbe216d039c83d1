// pidfd system calls (glibc 2.36 has wrappers, but not every libc does: call them directly).
#pragma once

#include <csignal>

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

namespace ipcx::os {

inline int pidfd_open(pid_t pid, unsigned flags = 0) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}
inline int pidfd_send_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

}  // namespace ipcx::os
