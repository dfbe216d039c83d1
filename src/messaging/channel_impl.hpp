// The state of one Channel: the sending side (window, held queue, cancellations) and the
// receiving side (inbox, acknowledgements). Private to src/messaging/channel*.cpp:
// channel_send.cpp sends and reads acknowledgements, channel_receive.cpp receives and
// acknowledges, channel.cpp validates options and forwards the public API. docs/semantics.md.
#pragma once

#include <ipcx/channel.hpp>

#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "messaging/channel_wire.hpp"
#include "transport/policy_queue.hpp"
#include "os/sys.hpp"

namespace ipcx {

namespace wire = messaging::channel_wire;
using messaging::Kind;
using transport::PolicyQueue;
using os::Deadline;

namespace channel_detail {
// While held messages wait for room in the transport, the wait for writability is cut into
// slices of this length so acknowledgements keep being read in between (the peer may itself
// be blocked writing acknowledgements to this end).
inline constexpr Timeout kWriteSlice = std::chrono::milliseconds(2);

inline Timeout left(const Deadline& d) noexcept { return d.infinite() ? forever : d.remaining(); }
}  // namespace channel_detail

class ChannelImpl {
 public:
  ChannelImpl(Connection c, const ChannelOptions& o)
      : conn_(std::move(c)), opts_(o), held_(o.queue()),
        window_(o.capacity == 0 ? 1 : o.window),
        ack_threshold_(std::max<std::uint64_t>(1, o.window / 4)),
        flags_(o.capacity == 0 || o.delivery == Delivery::confirmed ? wire::confirm : 0) {}

  Result<void> send(std::span<const std::byte> data, Timeout timeout);
  Result<void> recv(Message& into, Timeout timeout);
  Result<void> flush(Timeout timeout);
  Result<std::size_t> poll(Timeout timeout);
  Counters stats() const noexcept;
  void close() noexcept { conn_.close(); }
  bool is_open() const noexcept { return !failure_ && conn_.is_open(); }

  Connection conn_;
  ChannelOptions opts_;

 private:
  struct Inbound {
    std::uint64_t seq;
    std::uint8_t flags;
    Message msg;
  };

  std::uint64_t in_flight() const noexcept { return (next_seq_ - 1) - acked_; }
  bool window_open() const noexcept { return in_flight() < window_; }
  std::uint64_t resolved() const noexcept { return inbox_.empty() ? last_read_ : inbox_.front().seq - 1; }
  std::uint64_t discarded_through(std::uint64_t r) const noexcept;
  bool ack_owed() const noexcept;

  Result<void> check_open(const char* op);
  Result<std::uint64_t> hand_over(std::span<const std::byte> payload, Timeout t);
  Result<void> pump();
  Result<void> wait_event(const Deadline& d);
  Result<void> read_once(Timeout t);
  Result<void> read_available();
  Result<void> handle(Message& m);
  Result<void> on_data(Message& m);
  Result<void> on_ack(const Message& m);
  Result<void> send_ack(Timeout t);
  Result<void> maybe_ack();
  Result<void> await_ack(std::uint64_t seq, const Deadline& d, bool held_last);
  void cancel(std::uint64_t seq);
  void remove_last_held();
  std::unexpected<Error> fatal(Error e, bool tell_peer);
  std::unexpected<Error> violation(const char* op, std::string detail) {
    return fatal(Error{.code = Errc::protocol, .op = op, .detail = std::move(detail)}, true);
  }
  void settle_peer_gone();

  PolicyQueue held_;
  const std::uint64_t window_;
  const std::uint64_t ack_threshold_;
  const std::uint8_t flags_;
  std::vector<std::byte> out_;
  Message scratch_;
  std::optional<Error> failure_;  // set once the channel is unusable
  bool peer_closed_ = false;

  // Sending side.
  std::uint64_t next_seq_ = 1;           // sequence number of the next message handed over
  std::uint64_t acked_ = 0;              // the peer resolved every message up to this one
  std::uint64_t peer_discarded_ = 0;     // the peer's cumulative count of cancelled messages it dropped
  std::deque<std::uint64_t> cancelled_;  // withdrawn, not yet resolved by the peer (ascending)
  std::deque<std::uint64_t> cancel_owed_;  // cancel notices the transport has not taken yet
  bool confirm_pending_ = false;         // a confirmed send waits for the last held message
  std::uint64_t confirm_seq_ = 0;        // ... which was handed over as this sequence number
  std::uint64_t sent_ = 0, delivered_ = 0;
  DropCounts own_drops_;                 // expired, peer_died (the queue counts the others)

  // Receiving side.
  std::deque<Inbound> inbox_;            // read, not yet taken by the application
  std::uint64_t last_read_ = 0;          // highest data sequence number read
  std::uint64_t last_ack_ = 0;           // `resolved` of the last acknowledgement written
  std::uint64_t last_ack_discarded_ = 0;
  std::deque<std::uint64_t> discarded_pending_;  // cancelled messages dropped from the inbox
  std::uint64_t discarded_ = 0;          // of those, the ones at or below resolved()
  bool ack_urgent_ = false;
  bool peer_reads_ = true;               // false once writing an acknowledgement found the peer gone              // a confirmed message was taken, or one was discarded
  std::uint64_t received_ = 0;
};

}  // namespace ipcx
