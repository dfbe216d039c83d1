// tcp://host:port — framed messages over TCP (Nagle off). Port 0 when listening picks a free
// one. An empty host means 127.0.0.1: all interfaces only when asked for (0.0.0.0, [::]).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include "os/socket.hpp"
#include "transport/address.hpp"
#include "transport/socket_listener.hpp"
#include "transport/stream.hpp"

namespace ipcx::transport {
namespace {

std::unique_ptr<ConnectionImpl> make_conn(Fd fd, const Options& o) {
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return std::make_unique<StreamConnection>(
      StreamConnection::Params{.read_fd = std::move(fd), .kind = StreamConnection::Kind::socket, .options = o});
}

// Reachable from other machines: bound to anything but a loopback address.
bool remote(const os::SockAddr& a) {
  if (a.storage.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return false;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return in6->sin6_addr.s6_addr[12] != 127;
    return true;
  }
  auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
  return (ntohl(in->sin_addr.s_addr) >> 24) != 127;
}

Result<os::SockAddr> resolve(const TcpAddress& t, bool passive) {
  return os::tcp_address(t.host, std::to_string(t.port), passive);
}

}  // namespace

Scheme tcp_scheme() {
  Scheme s;
  s.name = "tcp";
  s.listen = [](const Url& u, const Options& o) -> Result<std::unique_ptr<ListenerImpl>> {
    auto t = tcp_address(u, Role::listen);
    if (!t) return std::unexpected(t.error());
    if (o.access && !o.access->anyone)
      return fail(Errc::not_supported, "listen",
                  "tcp peers have no kernel-verified identity: an access rule needs unix: or unix+seq:");
    auto addr = resolve(*t, true);
    if (!addr) return std::unexpected(addr.error());
    auto fd = os::make_socket(addr->storage.ss_family, SOCK_STREAM);
    if (!fd) return std::unexpected(fd.error());
    int one = 1;
    ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd->get(), addr->get(), addr->len) != 0)
      return fail_errno(errno, "bind", fmt::format("{}:{}", t->host, t->port));
    if (::listen(fd->get(), o.backlog) != 0) return fail_errno(errno, "listen");
    os::SockAddr bound;
    bound.len = sizeof bound.storage;
    ::getsockname(fd->get(), bound.get(), &bound.len);
    BoundUnix b;
    b.fd = std::move(*fd);
    return std::make_unique<SocketListener>(SocketListener::Params{
        .bound = std::move(b),
        .url = fmt::format("tcp://{}", os::tcp_address_string(bound)),
        .caps = {.pollable = true, .remote = remote(bound)},
        .goodbye = o.framing == Framing::frames,
        .make = [o](Fd c) -> Result<std::unique_ptr<ConnectionImpl>> { return make_conn(std::move(c), o); }});
  };
  s.connect = [](const Url& u, const Options& o, const os::Deadline& dl) -> Result<std::unique_ptr<ConnectionImpl>> {
    auto t = tcp_address(u, Role::connect);
    if (!t) return std::unexpected(t.error());
    auto addr = resolve(*t, false);
    if (!addr) return std::unexpected(addr.error());
    auto fd = os::make_socket(addr->storage.ss_family, SOCK_STREAM);
    if (!fd) return std::unexpected(fd.error());
    if (auto r = os::connect_socket(fd->get(), *addr, dl); !r) {
      auto e = r.error();
      e.detail = fmt::format("{}:{}", t->host, t->port);
      return std::unexpected(e);
    }
    return make_conn(std::move(*fd), o);
  };
  return s;
}

}  // namespace ipcx::transport
