// A point-to-point message channel with explicit semantics over any ipcx Connection.
//
//   auto ch = ipcx::Channel::connect("unix:///run/user/1000/jobs.sock",
//                                    {.capacity = 0}).value();       // rendezvous
//   ch.send(ipcx::as_bytes("job 1"), 1s);   // returns once the receiver's application took it
//   ipcx::Counters c = ch.stats();           // sent, delivered, dropped{reason}, queued
//
// Both ends are Channels; each end can send and receive. The receiver acknowledges the
// messages its application has taken; the sender keeps at most `window` messages in the
// transport unacknowledged and holds the next ones (up to `capacity` / `memory_cap`, with the
// overflow policy) in its own memory. docs/semantics.md states the model, the wire header and
// every counter exactly.
//
// Progress: there is no background thread. Held messages are handed to the transport, and
// acknowledgements are read, inside the calls on the channel: send, recv, flush and poll. An
// application that neither sends nor receives for a while should call poll() (for an event
// loop: when native_handle() polls readable) so that acknowledgements are read and held
// messages go out.
//
// Threading: one thread at a time per Channel (every call, stats() included). A Channel may be
// moved to another thread between calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>
#include <ipcx/message.hpp>
#include <ipcx/semantics.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx {

struct ChannelOptions {
  // Messages this end holds in its own memory when the window is full (or the transport would
  // block). 0: rendezvous — nothing is held, every send waits for its acknowledgement.
  // ipcx::unbounded: only memory_cap bounds what is held.
  std::size_t capacity = 1000;
  // Payload bytes this end holds, whatever `capacity` says; 1 .. any. A message larger than
  // this is refused with Errc::too_large (never counted as sent).
  std::size_t memory_cap = std::size_t{64} << 20;
  Overflow overflow = Overflow::block;
  // Messages handed to the transport and not yet acknowledged: 1 .. max_window. With
  // capacity 0 the window is 1 whatever this says. As a receiver, the most messages the peer
  // may run ahead of this end's acknowledgements: use the same window on both ends (or a
  // larger one on the receiving end).
  std::uint32_t window = 64;
  Delivery delivery = Delivery::async;
  // The transport's options (max_message, access rule, mode, ...).
  Options transport;

  static constexpr std::uint32_t max_window = 1u << 20;
  QueueOptions queue() const noexcept {
    return {.capacity = capacity, .memory_cap = memory_cap, .overflow = overflow};
  }
};

class ChannelImpl;

// Move-only; closed on destruction.
class Channel {
 public:
  // Bytes each channel message adds in front of the payload (envelope + header).
  static constexpr std::size_t header_size = 10;

  Channel() noexcept;
  Channel(Channel&&) noexcept;
  Channel& operator=(Channel&&) noexcept;
  ~Channel();

  // Connects to `url` (any transport that carries messages of any size; see wrap()).
  static Result<Channel> connect(std::string_view url, const ChannelOptions& options = {},
                                 Timeout timeout = std::chrono::seconds(5));
  // Accepts the next connection of `listener` as a Channel.
  static Result<Channel> accept(Listener& listener, const ChannelOptions& options = {},
                                Timeout timeout = forever);
  // Makes a Channel of an open connection (pipe_pair, spawn_connected, ...). Refuses, with
  // Errc::not_supported, a transport with fixed-size messages (signal://) or a line-framed
  // one; Errc::invalid_argument naming the field for options out of range. On failure the
  // connection is closed.
  static Result<Channel> wrap(Connection connection, const ChannelOptions& options = {});

  // Sends one message; the caller keeps `data`. Blocks up to `timeout`:
  // - async: until the message is handed to the transport or held (Overflow::block waits for
  //   room; timeout then, nothing sent); fail: Errc::would_block at once; drop_newest: the
  //   message is discarded and the call succeeds; drop_oldest: older held messages are
  //   discarded to make room.
  // - confirmed, or capacity 0: also until the receiver's application has taken it; at the
  //   deadline Errc::timeout and the message is cancelled (docs/semantics.md: what the
  //   receiver does with a cancelled message, and how the counters settle).
  // Errc::too_large for a payload above memory_cap (or the transport's max_message less
  // header_size), Errc::closed once the peer closed, Errc::protocol after bad input.
  Result<void> send(std::span<const std::byte> data, Timeout timeout = forever);
  Result<void> try_send(std::span<const std::byte> data) { return send(data, Timeout::zero()); }

  // The next message from the peer (its payload only), waiting up to `timeout`.
  // Errc::timeout / would_block when none came; Errc::closed once the peer closed and every
  // message it sent was received; Errc::protocol after bad input (the channel is closed).
  Result<Message> recv(Timeout timeout = forever);
  Result<void> recv(Message& into, Timeout timeout = forever);
  Result<Message> try_recv() { return recv(Timeout::zero()); }

  // Hands every held message to the transport, waiting up to `timeout` for acknowledgements
  // to open the window, and writes any acknowledgement this end still owes the peer;
  // Errc::timeout if something is still held or owed then.
  Result<void> flush(Timeout timeout = forever);
  // Reads what the peer sent (acknowledgements; messages are kept for recv) and hands held
  // messages on, waiting up to `timeout` for the peer to send something when nothing is
  // ready. Returns how many received messages are ready for recv without waiting. A timeout
  // is not an error here.
  Result<std::size_t> poll(Timeout timeout = Timeout::zero());

  // The connection's descriptor: polls readable when acknowledgements or messages arrived
  // (then call poll() or recv()). Nothing for a transport without one.
  std::optional<int> native_handle() const noexcept;
  // Counters of this end: sent / delivered / dropped / queued for what it sent, received for
  // what its application took. Exact at every call: sent == delivered + dropped.total() + queued.
  Counters stats() const noexcept;
  const ChannelOptions& options() const noexcept;
  // The underlying connection, for peer(), capabilities() and the like. Sending or receiving
  // on it directly bypasses the channel's protocol: the peer then closes with Errc::protocol.
  Connection& connection() noexcept;
  // Closes at once, without blocking; messages still held or unacknowledged stay counted as
  // queued.
  void close() noexcept;
  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }

 private:
  explicit Channel(std::unique_ptr<ChannelImpl> impl) noexcept;
  std::unique_ptr<ChannelImpl> impl_;
};

}  // namespace ipcx
