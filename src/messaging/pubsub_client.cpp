#include "messaging/pubsub_client.hpp"

#include <fmt/format.h>

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
  // About to wait with messages taken but not acknowledged: the sender learns that everything
  // was taken (it may be waiting for credit, or for flush()). While messages keep coming the
  // acknowledgement waits for window/2 of them: one per batch, not one per read.
  bool have = false;
  if (acked_ < taken_ && !conn_.buffered()) {
    if (auto r = conn_.recv(m, Timeout::zero()); r) {
      have = true;
    } else if (r.error().code != Errc::would_block && r.error().code != Errc::timeout) {
      return r;
    } else {
      acknowledge();
    }
  }
  if (!have)
    if (auto r = conn_.recv(m, timeout); !r) return r;
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
  if (taken_ - acked_ >= std::max<std::uint32_t>(1, window_ / 2)) acknowledge();
}

void Receiver::acknowledge() {
  // Never blocks the application: a credit the socket cannot take now is sent with a later one
  // (they are cumulative).
  const auto f = credit_frame(taken_, window_);
  if (conn_.send(f, Timeout::zero())) acked_ = taken_;
}

}  // namespace ipcx::messaging
