// The connecting side shared by Subscriber and Puller: says its role, grants a window, and
// acknowledges what its application took (cumulatively: every window/2 messages, and as soon as
// it has taken everything that arrived, so the sender knows at once that all was taken).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include <ipcx/connection.hpp>

#include "messaging/pubsub_wire.hpp"

namespace ipcx::messaging {

class Receiver {
 public:
  Result<void> open(std::string_view url, const Options& transport, Timeout timeout, std::string_view role,
                    std::size_t window, const char* op);
  // Sends the first credit (after any subscriptions, so the peer knows them before it sends).
  Result<void> grant(Timeout timeout);
  // The next message of `want` kind, its Kind byte included. An error message from the peer
  // becomes Errc::closed with its reason; any other kind is Errc::protocol (connection closed).
  Result<void> next(Message& m, Kind want, Timeout timeout, const char* op);
  // The application took one message.
  void took();
  Result<void> send(std::span<const std::byte> frame, Timeout timeout) { return conn_.send(frame, timeout); }
  std::optional<int> native_handle() const noexcept { return conn_.native_handle(); }
  std::uint64_t taken() const noexcept { return taken_; }

 private:
  void acknowledge();
  // conn_.recv, retrying an unsent credit every 2 ms meanwhile.
  Result<void> receive(Message& m, Timeout timeout);
  Connection conn_;
  std::uint32_t window_ = 0;
  std::uint64_t taken_ = 0, acked_ = 0;
  // A message (or the error) read ahead by took(), handed out by the next call.
  Message held_message_;
  bool held_ = false;
  std::optional<Error> held_error_;
};

}  // namespace ipcx::messaging
