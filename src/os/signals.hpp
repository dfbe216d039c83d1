// signalfd, sigqueue and signal masks.
#pragma once

#include <csignal>
#include <initializer_list>

#include <sys/signalfd.h>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

namespace ipcx::os {

// Blocks `signals` in the calling thread (so they queue for a signalfd instead of acting).
Result<void> block_signals(std::initializer_list<int> signals);
// A non-blocking, close-on-exec signalfd for `signals` (which must be blocked to be seen).
Result<Fd> make_signalfd(std::initializer_list<int> signals);
// Reads one queued signal; Errc::would_block when none is queued.
Result<signalfd_siginfo> read_signal(int sfd);
// sigqueue(2) with an integer payload.
Result<void> queue_signal(pid_t pid, int sig, int value);

}  // namespace ipcx::os
