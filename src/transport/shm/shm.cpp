// shm://name — connections over rings in shared memory (docs/shm.md, "The shm:// transport").
//
// The listener binds the abstract Unix seqpacket socket "@ipcx-shm.UID.NAME" (gone with its
// owner: nothing to clean after a crash). Each accepted connection gets its own sealed memfd
// holding two rings; the socket then only carries the handshake and the peer's end.
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include "os/socket.hpp"
#include "transport/address.hpp"
#include "transport/shm/conversation.hpp"
#include "transport/socket_listener.hpp"

namespace ipcx::transport {
namespace {

using ipcx::shm::WaitMode;

constexpr std::size_t kMaxName = 64;

struct ShmAddress {
  std::string name;
  uid_t user;  // whose namespace: the listener's uid
  shm::EndpointOptions endpoint;
};

std::unexpected<Error> bad_url(const Url& u, std::string_view why) {
  return fail(Errc::invalid_url, "parse URL", fmt::format("{} in '{}'", why, printable(u.str())));
}

Result<ShmAddress> shm_address(const Url& u, const Options& o) {
  std::string_view b = u.body;
  if (!b.starts_with("//") || b.starts_with("///"))
    return bad_url(u, "an shm address is shm://name (two slashes, then the name)");
  auto name = b.substr(2);
  if (name.empty() || name.size() > kMaxName) return bad_url(u, fmt::format("name of {} bytes (1 to {})", name.size(), kMaxName));
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '-' || c == '/';
    if (!ok) return bad_url(u, "a name takes letters, digits and . _ - / only");
  }
  ShmAddress a{.name = std::string(name), .user = ::geteuid(), .endpoint = {.options = o}};
  for (const auto& [key, value] : u.query) {
    if (key == "wait") {
      if (value == "spin") a.endpoint.wait.mode = WaitMode::spin;
      else if (value == "block") a.endpoint.wait.mode = WaitMode::block;
      else if (value == "hybrid") a.endpoint.wait.mode = WaitMode::hybrid;
      else return bad_url(u, fmt::format("wait={} (spin, block or hybrid)", printable(value)));
    } else if (key == "spin") {
      auto v = parse_decimal(value, {.what = "spin (microseconds)", .min = 0, .max = 1'000'000});
      if (!v) return bad_url(u, v.error().detail);
      a.endpoint.wait.spin = std::chrono::microseconds(*v);
    } else if (key == "ring") {
      auto v = parse_decimal(value, {.what = "ring (bytes)", .min = ipcx::shm::ring::kMinCapacity,
                                     .max = ipcx::shm::ring::kMaxCapacity});
      if (!v) return bad_url(u, v.error().detail);
      if (!ipcx::shm::ring::valid_capacity(*v)) return bad_url(u, fmt::format("ring={} is not a power of two", *v));
      a.endpoint.ring = *v;
    } else if (key == "user") {
      auto v = parse_decimal(value, {.what = "user (a uid)", .min = 0, .max = 0xfffffffe});
      if (!v) return bad_url(u, v.error().detail);
      a.user = static_cast<uid_t>(*v);
    } else {
      return bad_url(u, fmt::format("unknown query key '{}' (shm: takes wait, spin, ring, user)", printable(key)));
    }
  }
  if (o.framing != Framing::frames) return fail(Errc::not_supported, "shm", "line framing needs a byte stream; shm:// keeps records");
  return a;
}

std::string socket_name(uid_t user, std::string_view name) { return fmt::format("@ipcx-shm.{}.{}", user, name); }

}  // namespace

Scheme shm_scheme() {
  Scheme s;
  s.name = "shm";
  s.listen = [](const Url& u, const Options& o) -> Result<std::unique_ptr<ListenerImpl>> {
    auto a = shm_address(u, o);
    if (!a) return std::unexpected(a.error());
    if (u.query.contains("user")) return bad_url(u, "user= names whose listener a client connects to; a listener is its own");
    // On a listener, ring= is the largest ring a client may bring (it makes the memory).
    if (u.query.contains("ring")) a->endpoint.max_ring = a->endpoint.ring;
    auto bound = bind_unix(socket_name(a->user, a->name), SOCK_SEQPACKET, o);
    if (!bound) {
      auto e = bound.error();
      if (e.code == Errc::address_in_use) e.detail = fmt::format("a live listener serves shm://{}", a->name);
      return std::unexpected(e);
    }
    // An abstract name has no permissions: whoever reaches it is checked at accept. Default:
    // our own uid only.
    auto access = o.access ? *o.access : AccessRule::user(::geteuid());
    return std::make_unique<SocketListener>(SocketListener::Params{
        .bound = std::move(*bound),
        .url = u.str(),
        .caps = {.fd_passing = false, .records = true, .verified_peer = true, .pollable = true},
        .access = std::move(access),
        .goodbye = false,
        .make = [ep = a->endpoint](Fd c) { return shm::accept_conversation(std::move(c), ep); }});
  };
  s.connect = [](const Url& u, const Options& o, const os::Deadline& dl) -> Result<std::unique_ptr<ConnectionImpl>> {
    auto a = shm_address(u, o);
    if (!a) return std::unexpected(a.error());
    const auto where = socket_name(a->user, a->name);
    auto sa = os::unix_address(where);
    if (!sa) return std::unexpected(sa.error());
    auto fd = os::make_socket(AF_UNIX, SOCK_SEQPACKET);
    if (!fd) return std::unexpected(fd.error());
    if (auto r = os::connect_socket(fd->get(), *sa, dl); !r) {
      auto e = r.error();
      e.detail = fmt::format("shm://{}", a->name);
      return std::unexpected(e);
    }
    // Anyone may bind a free abstract name: the listener must be who the URL says (the
    // namespace's owner), or one the access rule admits. Our messages and its memory are at stake.
    const auto listener = os::peer_credentials(fd->get());
    const bool admitted = o.access ? o.access->allows(listener, os::peer_groups(fd->get())) : listener.uid == a->user;
    if (!admitted)
      return fail(Errc::permission_denied, "connect",
                  fmt::format("shm://{} is served by uid {}, not by uid {}", a->name, listener.uid, a->user));
    return shm::start_conversation(std::move(*fd), a->endpoint);
  };
  return s;
}

}  // namespace ipcx::transport
