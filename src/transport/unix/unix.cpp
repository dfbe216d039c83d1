// unix:///path, unix:@abstract (SOCK_STREAM) and unix+seq:///path (SOCK_SEQPACKET).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <unistd.h>

#include <fmt/format.h>

#include "os/socket.hpp"
#include "transport/address.hpp"
#include "transport/socket_listener.hpp"
#include "transport/stream.hpp"
#include "transport/unix/seqpacket.hpp"

namespace ipcx::transport {
namespace {

std::unique_ptr<ConnectionImpl> make_conn(Fd fd, int type, const Options& o) {
  auto peer = os::peer_credentials(fd.get());
  if (type == SOCK_SEQPACKET) return std::make_unique<SeqpacketConnection>(std::move(fd), peer, o);
  return std::make_unique<StreamConnection>(StreamConnection::Params{
      .read_fd = std::move(fd), .kind = StreamConnection::Kind::socket, .fd_passing = true, .peer = peer, .options = o});
}

Scheme make_scheme(std::string name, int type) {
  Scheme s;
  s.name = name;
  s.listen = [type](const Url& u, const Options& o) -> Result<std::unique_ptr<ListenerImpl>> {
    auto addr = unix_address(u);
    if (!addr) return std::unexpected(addr.error());
    if (type == SOCK_SEQPACKET && o.framing == Framing::lines)
      return fail(Errc::not_supported, "listen", "line framing needs a byte stream; unix+seq keeps records");
    auto bound = bind_unix(addr->where, type, o);
    if (!bound) return std::unexpected(bound.error());
    // An abstract name has no file permissions: anyone in the network namespace could connect.
    // Unless told otherwise, admit only our own user.
    auto access = o.access;
    if (!access && addr->abstract) access = AccessRule::user(::geteuid());
    return std::make_unique<SocketListener>(SocketListener::Params{
        .bound = std::move(*bound),
        .url = u.str(),
        .caps = {.fd_passing = true, .records = type == SOCK_SEQPACKET, .verified_peer = true, .pollable = true},
        .access = std::move(access),
        .goodbye = o.framing == Framing::frames,
        .make = [type, o](Fd c) -> Result<std::unique_ptr<ConnectionImpl>> { return make_conn(std::move(c), type, o); }});
  };
  s.connect = [type](const Url& u, const Options& o,
                     const os::Deadline& dl) -> Result<std::unique_ptr<ConnectionImpl>> {
    auto addr = unix_address(u);
    if (!addr) return std::unexpected(addr.error());
    auto sa = os::unix_address(addr->where);
    if (!sa) return std::unexpected(sa.error());
    auto fd = os::make_socket(AF_UNIX, type);
    if (!fd) return std::unexpected(fd.error());
    if (auto r = os::connect_socket(fd->get(), *sa, dl); !r) {
      auto e = r.error();
      e.detail = addr->where;
      return std::unexpected(e);
    }
    // A client's rule is about the listener: anyone may bind a free abstract name (or a path
    // in a shared directory), so a client that cares checks who it reached before sending.
    if (o.access && !o.access->anyone) {
      auto listener = os::peer_credentials(fd->get());
      if (!o.access->allows(listener, os::peer_groups(fd->get())))
        return fail(Errc::permission_denied, "connect",
                    fmt::format("{} is served by uid {}, which the access rule does not admit", addr->where, listener.uid));
    }
    return make_conn(std::move(*fd), type, o);
  };
  return s;
}

}  // namespace

Scheme unix_scheme() { return make_scheme("unix", SOCK_STREAM); }

Result<std::unique_ptr<ListenerImpl>> adopt_unix_listener(Fd fd, const Options& o) {
  int domain = 0, type = 0, listening = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return fail_errno(errno, "adopt_listener", "not a socket");
  len = sizeof type;
  (void)::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len);
  len = sizeof listening;
  (void)::getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
  if (domain != AF_UNIX || type != SOCK_STREAM || !listening)
    return fail(Errc::invalid_argument, "adopt_listener", "the descriptor is not a listening AF_UNIX SOCK_STREAM socket");
  // The loop must never block in accept: whoever made the socket may have left it blocking.
  if (auto r = os::set_nonblocking(fd.get(), true); !r) return std::unexpected(r.error());
  (void)::fcntl(fd.get(), F_SETFD, FD_CLOEXEC);
  sockaddr_un sa{};
  len = sizeof sa;
  std::string url = "unix:";
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0 && len > offsetof(sockaddr_un, sun_path)) {
    const std::size_t n = len - offsetof(sockaddr_un, sun_path);
    if (sa.sun_path[0] == '\0') url += "@" + std::string(sa.sun_path + 1, n - 1);
    else url += "//" + std::string(sa.sun_path, strnlen(sa.sun_path, n));
  }
  BoundUnix bound;
  bound.fd = std::move(fd);  // no path: the file is not ours to remove
  return std::make_unique<SocketListener>(SocketListener::Params{
      .bound = std::move(bound),
      .url = url,
      .caps = {.fd_passing = true, .records = false, .verified_peer = true, .pollable = true},
      .access = o.access,
      .goodbye = o.framing == Framing::frames,
      .make = [o](Fd c) -> Result<std::unique_ptr<ConnectionImpl>> { return make_conn(std::move(c), SOCK_STREAM, o); }});
}
Scheme unix_seq_scheme() { return make_scheme("unix+seq", SOCK_SEQPACKET); }

}  // namespace ipcx::transport

namespace ipcx {
Result<Listener> adopt_listener(int fd, const Options& options) {
  auto l = transport::adopt_unix_listener(Fd(fd), options);
  if (!l) return std::unexpected(l.error());
  return detail::Access::wrap(std::move(*l));
}
}  // namespace ipcx
