#include <map>
#include <mutex>

#include <fmt/format.h>

#include <ipcx/connection.hpp>

#include "transport/transport.hpp"

namespace ipcx {
namespace transport {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, std::unique_ptr<Scheme>, std::less<>> schemes;

  Registry() {
    // Explicit list rather than static self-registration: a static library would drop
    // transports nobody references.
    for (auto s : {pipe_scheme(), fifo_scheme(), unix_scheme(), unix_seq_scheme(), tcp_scheme(),
                   signal_scheme()}) {
      auto name = s.name;
      schemes[name] = std::make_unique<Scheme>(std::move(s));
    }
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_scheme(Scheme scheme) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  auto name = scheme.name;
  r.schemes[name] = std::make_unique<Scheme>(std::move(scheme));
}

const Scheme* find_scheme(std::string_view name) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.schemes.find(name);
  return it == r.schemes.end() ? nullptr : it->second.get();
}

}  // namespace transport

namespace {
Result<const transport::Scheme*> scheme_for(const transport::Url& u) {
  auto* s = transport::find_scheme(u.scheme);
  if (!s) return fail(Errc::unknown_scheme, "resolve URL", fmt::format("no transport for '{}:'", u.scheme));
  return s;
}
}  // namespace

Result<Listener> listen(std::string_view url, const Options& options) {
  auto u = transport::Url::parse(url);
  if (!u) return std::unexpected(u.error());
  auto s = scheme_for(*u);
  if (!s) return std::unexpected(s.error());
  if (!(*s)->listen) return fail(Errc::not_supported, "listen", fmt::format("'{}:' cannot listen", u->scheme));
  auto impl = (*s)->listen(*u, options);
  if (!impl) return std::unexpected(impl.error());
  return Listener(std::move(*impl));
}

Result<Connection> connect(std::string_view url, const Options& options, Timeout timeout) {
  auto u = transport::Url::parse(url);
  if (!u) return std::unexpected(u.error());
  auto s = scheme_for(*u);
  if (!s) return std::unexpected(s.error());
  if (!(*s)->connect) return fail(Errc::not_supported, "connect", fmt::format("'{}:' cannot connect", u->scheme));
  auto impl = (*s)->connect(*u, options, os::Deadline::after(timeout));
  if (!impl) return std::unexpected(impl.error());
  return Connection(std::move(*impl));
}

// ---- Connection / Listener: thin forwarding to the implementation ----

namespace {
std::unexpected<Error> not_open(const char* op) { return fail(Errc::closed, op, "endpoint not open"); }
}  // namespace

Connection::Connection() noexcept = default;
Connection::Connection(std::unique_ptr<ConnectionImpl> impl) noexcept : impl_(std::move(impl)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() = default;

Result<void> Connection::send(std::span<const std::byte> data, Timeout timeout) {
  return send(data, {}, timeout);
}
Result<void> Connection::send(std::span<const std::byte> data, std::span<const int> fds, Timeout timeout) {
  if (!impl_) return not_open("send");
  return impl_->send(data, fds, os::Deadline::after(timeout));
}
Result<void> Connection::flush(Timeout timeout) {
  if (!impl_) return not_open("flush");
  return impl_->flush(os::Deadline::after(timeout));
}
Result<Message> Connection::recv(Timeout timeout) {
  Message m;
  auto r = recv(m, timeout);
  if (!r) return std::unexpected(std::move(r.error()));
  return m;
}
Result<void> Connection::recv(Message& into, Timeout timeout) {
  if (!impl_) return not_open("recv");
  return impl_->recv(into, os::Deadline::after(timeout));
}
int Connection::native_handle() const noexcept { return impl_ ? impl_->native_handle() : -1; }
bool Connection::buffered() const noexcept { return impl_ && impl_->buffered(); }
PeerCred Connection::peer() const noexcept { return impl_ ? impl_->peer() : PeerCred{}; }
void Connection::close() noexcept {
  if (impl_) impl_->close();
}
bool Connection::is_open() const noexcept { return impl_ && impl_->is_open(); }

Listener::Listener() noexcept = default;
Listener::Listener(std::unique_ptr<ListenerImpl> impl) noexcept : impl_(std::move(impl)) {}
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;
Listener::~Listener() = default;

Result<Connection> Listener::accept(Timeout timeout) {
  if (!impl_) return not_open("accept");
  auto c = impl_->accept(os::Deadline::after(timeout));
  if (!c) return std::unexpected(std::move(c.error()));
  return Connection(std::move(*c));
}
int Listener::native_handle() const noexcept { return impl_ ? impl_->native_handle() : -1; }
std::string Listener::url() const { return impl_ ? impl_->url() : std::string(); }
void Listener::close() noexcept {
  if (impl_) impl_->close();
}
bool Listener::is_open() const noexcept { return impl_ && impl_->is_open(); }

}  // namespace ipcx
