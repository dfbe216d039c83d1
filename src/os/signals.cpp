#include "os/signals.hpp"

#include <pthread.h>
#include <unistd.h>

#include "os/sys.hpp"

namespace ipcx::os {
namespace {
sigset_t to_set(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  return set;
}
}  // namespace

Result<void> block_signals(std::initializer_list<int> signals) {
  auto set = to_set(signals);
  if (int e = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0) return fail_errno(e, "pthread_sigmask");
  return {};
}

Result<Fd> make_signalfd(std::initializer_list<int> signals) {
  auto set = to_set(signals);
  int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return fail_errno(errno, "signalfd");
  return Fd(fd);
}

Result<signalfd_siginfo> read_signal(int sfd) {
  signalfd_siginfo si{};
  ssize_t n = retry([&] { return ::read(sfd, &si, sizeof si); });
  if (n == static_cast<ssize_t>(sizeof si)) return si;
  if (n < 0 && errno == EAGAIN) return fail(Errc::would_block, "read signalfd");
  if (n < 0) return fail_errno(errno, "read signalfd");
  return fail(Errc::system, "read signalfd", "short read");
}

Result<void> queue_signal(pid_t pid, int sig, int value) {
  sigval v{};
  v.sival_int = value;
  if (::sigqueue(pid, sig, v) != 0) return fail_errno(errno, "sigqueue");
  return {};
}

}  // namespace ipcx::os
