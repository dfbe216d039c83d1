// The wake pipes and the epoll descriptor of one shm:// conversation (docs/shm.md, "Waking a
// polled side").
#include "transport/shm/wake_pipes.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "shm/ring.hpp"

namespace ipcx::transport::shm {
namespace {

// This process's own open file description of a pipe it holds a descriptor to: O_RDWR (a
// reader is always there, so a write never raises SIGPIPE; the open never waits) and
// O_NONBLOCK, flags nobody else can change (ring::poke_pipe).
Result<Fd> open_own(int pipe_fd) {
  const auto path = fmt::format("/proc/self/fd/{}", pipe_fd);
  const int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return fail_errno(errno, "open", path);
  return Fd(fd);
}

}  // namespace

Result<WakePipe> make_wake_pipe(bool space) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail_errno(errno, "pipe2");
  Fd r(p[0]), w(p[1]);
  if (::fchmod(w.get(), 0666) != 0) return fail_errno(errno, "fchmod", "a wake pipe");
  auto mine = open_own(r.get());
  if (!mine) return std::unexpected(mine.error());
  // A space pipe of one page: one byte makes it not writable (ring::block_pipe).
  if (space && ::fcntl(mine->get(), F_SETPIPE_SZ, ipcx::shm::ring::kWakePipeSize) < 0) return fail_errno(errno, "F_SETPIPE_SZ");
  return WakePipe{.mine = std::move(*mine), .theirs = std::move(w)};
}

// A descriptor from the peer is used as a wake-up only when it is a pipe, through a
// description of our own.
Result<Fd> own_peer_pipe(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return fail(Errc::protocol, "shm://", "not a pipe");
  return open_own(fd);
}

Result<Fd> make_epoll(int data_fd, int sock) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return fail_errno(errno, "epoll_create1");
  Fd e(ep);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = data_fd;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, data_fd, &ev) != 0) return fail_errno(errno, "epoll_ctl");
  // Until the handshake is done the socket's data matters too (Hello, Setup).
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = sock;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) != 0) return fail_errno(errno, "epoll_ctl");
  return e;
}


}  // namespace ipcx::transport::shm
