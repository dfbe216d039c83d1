// unix:///path, unix:@abstract (SOCK_STREAM) and unix+seq:///path (SOCK_SEQPACKET).
#include <sys/socket.h>

#include <fmt/format.h>

#include "os/socket.hpp"
#include "transport/socket_listener.hpp"
#include "transport/stream.hpp"
#include "transport/unix/seqpacket.hpp"

namespace ipcx::transport {
namespace {

// "unix:///p" -> "/p", "unix:@name" -> "@name"
Result<std::string> where(const Url& u) {
  if (u.body.starts_with("@")) {
    if (u.body.size() < 2) return fail(Errc::invalid_url, "parse URL", "empty abstract socket name");
    return u.body;
  }
  return u.file_path();
}

std::unique_ptr<ConnectionImpl> make_conn(Fd fd, int type, const Options& o) {
  auto peer = os::peer_credentials(fd.get());
  if (type == SOCK_SEQPACKET) return std::make_unique<SeqpacketConnection>(std::move(fd), peer, o);
  return std::make_unique<StreamConnection>(StreamConnection::Params{
      std::move(fd), Fd(), true, true, peer, o});
}

Scheme make_scheme(std::string name, int type) {
  Scheme s;
  s.name = name;
  s.listen = [type](const Url& u, const Options& o) -> Result<std::unique_ptr<ListenerImpl>> {
    auto w = where(u);
    if (!w) return std::unexpected(w.error());
    if (type == SOCK_SEQPACKET && o.framing == Framing::lines)
      return fail(Errc::not_supported, "listen", "line framing needs a byte stream; unix+seq keeps records");
    auto fd = bind_unix(*w, type, o);
    if (!fd) return std::unexpected(fd.error());
    std::string owned = w->front() == '@' ? std::string() : *w;
    return std::make_unique<SocketListener>(std::move(*fd), u.str(), owned,
                                            [type, o](Fd c) { return make_conn(std::move(c), type, o); });
  };
  s.connect = [type](const Url& u, const Options& o,
                     const os::Deadline& dl) -> Result<std::unique_ptr<ConnectionImpl>> {
    auto w = where(u);
    if (!w) return std::unexpected(w.error());
    auto addr = os::unix_address(*w);
    if (!addr) return std::unexpected(addr.error());
    auto fd = os::make_socket(AF_UNIX, type);
    if (!fd) return std::unexpected(fd.error());
    if (auto r = os::connect_socket(fd->get(), *addr, dl); !r) {
      auto e = r.error();
      e.detail = *w;
      return std::unexpected(e);
    }
    return make_conn(std::move(*fd), type, o);
  };
  return s;
}

}  // namespace

Scheme unix_scheme() { return make_scheme("unix", SOCK_STREAM); }
Scheme unix_seq_scheme() { return make_scheme("unix+seq", SOCK_SEQPACKET); }

}  // namespace ipcx::transport
