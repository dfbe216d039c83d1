// tcp://host:port — framed messages over TCP (Nagle off). Port 0 when listening picks a free one.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include "os/socket.hpp"
#include "transport/socket_listener.hpp"
#include "transport/stream.hpp"

namespace ipcx::transport {
namespace {

Result<std::pair<std::string, std::string>> host_port(const Url& u) {
  if (!u.body.starts_with("//")) return fail(Errc::invalid_url, "parse URL", "expected tcp://host:port");
  auto hp = u.authority_and_path();
  if (!hp.empty() && hp.back() == '/') hp.remove_suffix(1);
  auto colon = hp.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == hp.size())
    return fail(Errc::invalid_url, "parse URL", fmt::format("'{}' has no port (tcp://host:port)", u.str()));
  return std::pair{std::string(hp.substr(0, colon)), std::string(hp.substr(colon + 1))};
}

std::unique_ptr<ConnectionImpl> make_conn(Fd fd, const Options& o) {
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return std::make_unique<StreamConnection>(StreamConnection::Params{std::move(fd), Fd(), true, false, {}, o});
}

}  // namespace

Scheme tcp_scheme() {
  Scheme s;
  s.name = "tcp";
  s.listen = [](const Url& u, const Options& o) -> Result<std::unique_ptr<ListenerImpl>> {
    auto hp = host_port(u);
    if (!hp) return std::unexpected(hp.error());
    auto addr = os::tcp_address(hp->first, hp->second, true);
    if (!addr) return std::unexpected(addr.error());
    auto fd = os::make_socket(addr->storage.ss_family, SOCK_STREAM);
    if (!fd) return std::unexpected(fd.error());
    int one = 1;
    ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd->get(), addr->get(), addr->len) != 0)
      return fail_errno(errno, "bind", fmt::format("{}:{}", hp->first, hp->second));
    if (::listen(fd->get(), o.backlog) != 0) return fail_errno(errno, "listen");
    os::SockAddr bound;
    bound.len = sizeof bound.storage;
    ::getsockname(fd->get(), bound.get(), &bound.len);
    auto url = fmt::format("tcp://{}", os::tcp_address_string(bound));
    return std::make_unique<SocketListener>(std::move(*fd), url, std::string(),
                                            [o](Fd c) { return make_conn(std::move(c), o); });
  };
  s.connect = [](const Url& u, const Options& o, const os::Deadline& dl) -> Result<std::unique_ptr<ConnectionImpl>> {
    auto hp = host_port(u);
    if (!hp) return std::unexpected(hp.error());
    auto addr = os::tcp_address(hp->first, hp->second, false);
    if (!addr) return std::unexpected(addr.error());
    auto fd = os::make_socket(addr->storage.ss_family, SOCK_STREAM);
    if (!fd) return std::unexpected(fd.error());
    if (auto r = os::connect_socket(fd->get(), *addr, dl); !r) {
      auto e = r.error();
      e.detail = fmt::format("{}:{}", hp->first, hp->second);
      return std::unexpected(e);
    }
    return make_conn(std::move(*fd), o);
  };
  return s;
}

}  // namespace ipcx::transport
