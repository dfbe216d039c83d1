#include "shm/wake.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace ipcx::shm::wake {

sockaddr_un address(std::uint32_t uid, std::uint64_t token, socklen_t* len) noexcept {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  char name[64];
  const auto end = fmt::format_to_n(name, sizeof name, "ipcx-ev.{}.{:016x}", uid, token);
  const std::size_t n = end.size;
  std::memcpy(a.sun_path + 1, name, n);
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  return a;
}

Result<Fd> bind_new(std::uint64_t* token) {
  const int s = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return fail_errno(errno, "socket");
  Fd sock(s);
  for (int tries = 0;; ++tries) {
    if (::getrandom(token, sizeof *token, 0) != static_cast<ssize_t>(sizeof *token)) return fail_errno(errno, "getrandom");
    socklen_t len = 0;
    const auto addr = address(::geteuid(), *token, &len);
    if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0) return sock;
    if (errno != EADDRINUSE || tries == 10) return fail_errno(errno, "bind", "a wake-up socket");
  }
}

bool send(std::vector<Fd>& socks, std::uint32_t uid, std::uint64_t token) noexcept {
  socklen_t len = 0;
  const auto addr = address(uid, token, &len);
  const char one = 1;
  for (std::size_t i = 0;; ++i) {
    if (i == socks.size()) {
      if (i == kMaxSockets) return false;
      const int s = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (s < 0) return false;
      const int want = 1 << 20;  // the kernel caps it at net.core.wmem_max
      (void)::setsockopt(s, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
      socks.emplace_back(s);
    }
    if (::sendto(socks[i].get(), &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), len) >= 0)
      return true;
    // Refused (a dead waiter) or its queue is full (it has wake-ups to read): nothing more to
    // do. EAGAIN/ENOBUFS may be our own buffer: try another socket.
    if (errno != EAGAIN && errno != ENOBUFS) return true;
  }
}

void drain(int fd) noexcept {
  // Bounded: anyone on the machine may send to an abstract socket, and one who keeps sending must
  // not keep us here. What is left makes the socket readable: a spurious wake-up, no more.
  char buf[64];
  for (int i = 0; i < 1024 && ::recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0; ++i) {
  }
}

}  // namespace ipcx::shm::wake
