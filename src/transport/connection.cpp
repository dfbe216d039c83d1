// Connection and Listener: thin forwarding to the transport's implementation.
#include <ipcx/connection.hpp>

#include "transport/transport.hpp"

namespace ipcx {

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
