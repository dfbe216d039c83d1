#include "os/socket.hpp"

#include <cstring>

#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

namespace ipcx::os {

Result<SockAddr> unix_address(std::string_view where) {
  SockAddr a;
  auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
  un->sun_family = AF_UNIX;
  if (where.empty()) return fail(Errc::invalid_url, "unix address", "empty path");
  bool abstract = where.front() == '@';
  if (where.size() + (abstract ? 0 : 1) > sizeof un->sun_path)
    return fail(Errc::invalid_url, "unix address",
                fmt::format("'{}' is longer than {} bytes", where, sizeof un->sun_path - 1));
  std::memcpy(un->sun_path, where.data(), where.size());
  if (abstract) un->sun_path[0] = '\0';
  a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + where.size() + (abstract ? 0 : 1));
  return a;
}

Result<SockAddr> tcp_address(std::string_view host, std::string_view port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  std::string h(host), p(port);
  if (!h.empty() && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  hints.ai_flags |= AI_NUMERICSERV;  // a port number, never a service name looked up
  int rc = ::getaddrinfo(h.empty() ? nullptr : h.c_str(), p.c_str(), &hints, &res);
  if (rc != 0)
    return fail(Errc::invalid_url, "resolve", fmt::format("{}:{}: {}", host, port, ::gai_strerror(rc)));
  SockAddr a;
  std::memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  ::freeaddrinfo(res);
  return a;
}

std::string tcp_address_string(const SockAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.storage.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, ntohs(in6->sin6_port));
  }
  auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
  ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
  return fmt::format("{}:{}", buf, ntohs(in->sin_port));
}

Result<Fd> make_socket(int family, int type) {
  int fd = ::socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd == -1) return fail_errno(errno, "socket");
  return Fd(fd);
}

Result<void> connect_socket(int fd, const SockAddr& addr, const Deadline& deadline) {
  for (;;) {
    if (::connect(fd, addr.get(), addr.len) == 0) break;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EINPROGRESS) {  // TCP: wait for the handshake
      auto w = wait_fd(fd, POLLOUT, deadline.immediate() ? Deadline::after(std::chrono::seconds(0)) : deadline);
      if (!w) return std::unexpected(w.error());
      int soerr = 0;
      socklen_t len = sizeof soerr;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
      if (soerr != 0) return fail_errno(soerr, "connect");
      break;
    }
    if (err == EAGAIN) {  // Unix socket whose backlog is full: no descriptor says when it drains
      if (auto p = pause_before_retry(deadline, std::chrono::milliseconds(1), "connect"); !p) {
        auto e = std::move(p.error());
        e.detail = "listener backlog full";
        return std::unexpected(std::move(e));
      }
      continue;
    }
    return fail_errno(err, "connect");
  }
  return set_nonblocking(fd, false);
}

namespace {
constexpr std::size_t kMaxFds = 253;  // SCM_MAX_FD
}

ssize_t send_with_fds(int fd, const iovec* iov, int iovcnt, std::span<const int> fds, bool nonblock) noexcept {
  const int flags = MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0);
  // One buffer and no descriptors: send(2) is measurably cheaper than sendmsg(2).
  if (iovcnt == 1 && fds.empty()) return retry([&] { return ::send(fd, iov[0].iov_base, iov[0].iov_len, flags); });
  msghdr m{};
  m.msg_iov = const_cast<iovec*>(iov);
  m.msg_iovlen = static_cast<std::size_t>(iovcnt);
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!fds.empty()) {
    if (fds.size() > kMaxFds) {
      errno = EINVAL;
      return -1;
    }
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    auto* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return retry([&] { return ::sendmsg(fd, &m, flags); });
}

ssize_t recv_with_fds(int fd, std::span<std::byte> buf, std::vector<Fd>* fds, bool nonblock,
                      int* msg_flags) noexcept {
  iovec v{buf.data(), buf.size()};
  msghdr m{};
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (fds) {
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
  }
  ssize_t n = retry([&] { return ::recvmsg(fd, &m, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0)); });
  if (n < 0) return n;
  if (msg_flags) *msg_flags = m.msg_flags;
  if (fds) {
    for (auto* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof received);
        fds->emplace_back(received);
      }
    }
  }
  return n;
}

PeerCred peer_credentials(int fd) noexcept {
  ucred c{};
  socklen_t len = sizeof c;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) != 0) return {};
  return PeerCred{c.pid, c.uid, c.gid, true};
}

std::vector<gid_t> peer_groups(int fd) {
  std::vector<gid_t> groups(16);
  for (int attempt = 0; attempt < 3; ++attempt) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) return {};
    groups.resize(len / sizeof(gid_t) + 1);
  }
  return {};
}

}  // namespace ipcx::os
