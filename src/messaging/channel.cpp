// Channel: options checked, the factories, and the public calls forwarded to ChannelImpl.
#include <ipcx/channel.hpp>

#include <fmt/format.h>

#include "messaging/channel_impl.hpp"

namespace ipcx {

static_assert(Channel::header_size == wire::data_header);

// ---- Channel ----

namespace {
Result<void> validate(const ChannelOptions& o) {
  if (o.window == 0 || o.window > ChannelOptions::max_window)
    return fail(Errc::invalid_argument, "channel", fmt::format("window {} outside 1..{}", o.window, ChannelOptions::max_window));
  if (o.memory_cap == 0) return fail(Errc::invalid_argument, "channel", "memory_cap 0: nothing could ever be sent");
  if (o.transport.max_message <= Channel::header_size)
    return fail(Errc::invalid_argument, "channel", fmt::format("transport.max_message {} leaves no room for the {}-byte header",
                                                               o.transport.max_message, Channel::header_size));
  if (o.overflow > Overflow::drop_newest) return fail(Errc::invalid_argument, "channel", "overflow: unknown value");
  if (o.delivery > Delivery::confirmed) return fail(Errc::invalid_argument, "channel", "delivery: unknown value");
  if (o.transport.framing != Framing::frames)
    return fail(Errc::not_supported, "channel", "line framing cannot carry binary channel headers");
  return {};
}
}  // namespace

Channel::Channel() noexcept = default;
Channel::Channel(std::unique_ptr<ChannelImpl> impl) noexcept : impl_(std::move(impl)) {}
Channel::Channel(Channel&&) noexcept = default;
Channel& Channel::operator=(Channel&&) noexcept = default;
Channel::~Channel() = default;

Result<Channel> Channel::wrap(Connection connection, const ChannelOptions& options) {
  if (auto v = validate(options); !v) {
    connection.close();
    return std::unexpected(v.error());
  }
  if (!connection.is_open()) return fail(Errc::closed, "channel", "connection not open");
  if (connection.capabilities().fixed_size != 0) {
    connection.close();
    return fail(Errc::not_supported, "channel", "the transport carries fixed-size messages only");
  }
  return Channel(std::make_unique<ChannelImpl>(std::move(connection), options));
}

Result<Channel> Channel::connect(std::string_view url, const ChannelOptions& options, Timeout timeout) {
  if (auto v = validate(options); !v) return std::unexpected(v.error());
  auto c = ipcx::connect(url, options.transport, timeout);
  if (!c) return std::unexpected(c.error());
  return wrap(std::move(*c), options);
}

Result<Channel> Channel::accept(Listener& listener, const ChannelOptions& options, Timeout timeout) {
  if (auto v = validate(options); !v) return std::unexpected(v.error());
  if (listener.capabilities().fixed_size != 0)
    return fail(Errc::not_supported, "channel", "the transport carries fixed-size messages only");
  auto c = listener.accept(timeout);
  if (!c) return std::unexpected(c.error());
  return wrap(std::move(*c), options);
}

namespace {
std::unexpected<Error> not_open(const char* op) { return fail(Errc::closed, op, "channel not open"); }
}  // namespace

Result<void> Channel::send(std::span<const std::byte> data, Timeout timeout) {
  return impl_ ? impl_->send(data, timeout) : not_open("channel send");
}
Result<Message> Channel::recv(Timeout timeout) {
  Message m;
  if (auto r = recv(m, timeout); !r) return std::unexpected(r.error());
  return m;
}
Result<void> Channel::recv(Message& into, Timeout timeout) {
  return impl_ ? impl_->recv(into, timeout) : not_open("channel recv");
}
Result<void> Channel::flush(Timeout timeout) { return impl_ ? impl_->flush(timeout) : not_open("channel flush"); }
Result<std::size_t> Channel::poll(Timeout timeout) { return impl_ ? impl_->poll(timeout) : not_open("channel poll"); }
std::optional<int> Channel::native_handle() const noexcept { return impl_ ? impl_->conn_.native_handle() : std::nullopt; }
Counters Channel::stats() const noexcept { return impl_ ? impl_->stats() : Counters{}; }
const ChannelOptions& Channel::options() const noexcept {
  static const ChannelOptions none{};
  return impl_ ? impl_->opts_ : none;
}
Connection& Channel::connection() noexcept {
  static thread_local Connection none;
  return impl_ ? impl_->conn_ : none;
}
void Channel::close() noexcept {
  if (impl_) impl_->close();
}
bool Channel::is_open() const noexcept { return impl_ && impl_->is_open(); }

}  // namespace ipcx
