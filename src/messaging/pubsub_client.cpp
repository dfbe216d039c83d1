#include "messaging/pubsub_client.hpp"

#include <fmt/format.h>

#include "os/sys.hpp"

namespace ipcx::messaging {

Result<void> Receiver::open(std::string_view url, const Options& transport, Timeout timeout, std::string_view role,
                            std::size_t window, const char* op) {
  if (window == 0 || window > kMaxWindow)
    return fail(Errc::invalid_argument, op, fmt::format("window {} out of 1..{}", window, kMaxWindow));
  window_ = static_cast<std::uint32_t>(window);
  auto c = connect(url, transport, timeout);
  if (!c) return std::unexpected(c.error());
  conn_ = std::move(*c);
  return conn_.send(tagged(Kind::hello, role), timeout);
}

Result<void> Receiver::grant(Timeout timeout) {
  const auto f = credit_frame(taken_, window_);
  return conn_.send(f, timeout);
}

Result<void> Receiver::next(Message& m, Kind want, Timeout timeout, const char* op) {
  if (held_) {
    std::swap(m, held_message_);
    held_ = false;
  } else if (held_error_) {
    auto e = std::move(*held_error_);
    held_error_.reset();
    return std::unexpected(std::move(e));
  } else {
    if (acked_ < taken_ && !conn_.buffered()) acknowledge();  // one the transport could not take
    if (auto r = receive(m, timeout); !r) return r;
  }
  if (m.data.empty()) {
    conn_.close();
    return fail(Errc::protocol, op, "empty message");
  }
  const auto kind = static_cast<Kind>(m.data[0]);
  if (kind == want) return {};
  conn_.close();
  if (kind == Kind::error) return fail(Errc::closed, op, std::string(text_of(m.bytes().subspan(1))));
  return fail(Errc::protocol, op, fmt::format("unexpected message kind 0x{:02x}", std::to_integer<int>(m.data[0])));
}

void Receiver::took() {
  ++taken_;
  if (taken_ - acked_ >= std::max<std::uint32_t>(1, window_ / 2)) return acknowledge();
  if (conn_.buffered()) return;  // more already here: acknowledged with them
  // Nothing decoded is left: look (without waiting) whether more has arrived. If not, the
  // sender learns now that everything was taken, even if the application never calls again;
  // if so, it is kept for the next call (one read per batch either way).
  auto r = conn_.recv(held_message_, Timeout::zero());
  if (r) held_ = true;
  else if (r.error().code == Errc::would_block || r.error().code == Errc::timeout) acknowledge();
  else held_error_ = std::move(r.error());
}

Result<void> Receiver::receive(Message& m, Timeout timeout) {
  if (acked_ == taken_) return conn_.recv(m, timeout);
  // A credit the transport could not take yet (a POSIX queue of 8 messages fills where a
  // socket would not) is retried while waiting: without it the sender would wait for this
  // credit and this side for the sender's next message.
  constexpr Timeout kRetry = std::chrono::milliseconds(2);
  const auto deadline = os::Deadline::after(timeout);
  while (acked_ < taken_ && deadline.remaining() > kRetry) {
    auto r = conn_.recv(m, kRetry);
    if (r || r.error().code != Errc::timeout) return r;
    acknowledge();
  }
  return conn_.recv(m, deadline.remaining());
}

void Receiver::acknowledge() {
  // Never blocks the application: a credit the socket cannot take now is sent with a later one
  // (they are cumulative).
  const auto f = credit_frame(taken_, window_);
  if (conn_.send(f, Timeout::zero())) acked_ = taken_;
}

}  // namespace ipcx::messaging
