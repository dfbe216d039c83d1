// Message semantics as options: how much a queue holds, what happens when it is full, when a
// send counts as done, and the counters that account for every message.
//
//   ipcx::QueueOptions q{.capacity = 0};                       // rendezvous
//   ipcx::QueueOptions q{.capacity = 100, .overflow = ipcx::Overflow::drop_oldest};
//   ipcx::QueueOptions q{.capacity = ipcx::unbounded, .memory_cap = 8 << 20};
//
// The same options serve point-to-point channels (channel.hpp) and every pattern's per-peer
// queue (patterns.hpp). docs/semantics.md states each option exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace ipcx {

// What a send does when the queue it goes into is full (capacity or memory_cap reached).
enum class Overflow : std::uint8_t {
  block,        // wait for room until the caller's deadline (Errc::timeout then; nothing queued)
  fail,         // refuse at once: Errc::would_block; nothing queued; counted in dropped.refused
  drop_oldest,  // make room by discarding the oldest queued message(s); counted in dropped.oldest
  drop_newest,  // discard this message; the send still succeeds; counted in dropped.newest
};

// When a send completes.
enum class Delivery : std::uint8_t {
  async,      // once the message is queued (the receiver may not have it yet)
  confirmed,  // once the receiver's application has taken it, or fails at the deadline
};

// capacity value meaning "no message count limit": only memory_cap bounds the queue.
inline constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

struct QueueOptions {
  // Messages held (sent, not yet taken by the receiver). 0: rendezvous — nothing is held; a
  // send completes only once the receiver has taken the message.
  std::size_t capacity = 1000;
  // Bytes held, whatever `capacity` says (one message larger than this is refused: too_large).
  std::size_t memory_cap = std::size_t{64} << 20;
  Overflow overflow = Overflow::block;
};

// Messages discarded, by reason. Every message sent is, at any time, exactly one of:
// delivered, dropped (one of these reasons), or queued.
struct DropCounts {
  std::uint64_t oldest = 0;     // Overflow::drop_oldest made room for a newer message
  std::uint64_t newest = 0;     // Overflow::drop_newest discarded the message being sent
  std::uint64_t refused = 0;    // Overflow::fail refused it (the sender got would_block)
  std::uint64_t peer_died = 0;  // queued for, or held unacknowledged by, a peer that went away
  std::uint64_t no_route = 0;   // nobody to deliver to (no subscriber matched, no worker)
  std::uint64_t expired = 0;    // its deadline passed before anyone took it
  std::uint64_t total() const noexcept { return oldest + newest + refused + peer_died + no_route + expired; }
};

// Per-endpoint counters. Exact: sent == delivered + dropped.total() + queued (for the messages
// this endpoint sent); received counts what this endpoint handed to its application.
struct Counters {
  std::uint64_t sent = 0;       // accepted by send/publish/push/request (fan-out: one per copy)
  std::uint64_t delivered = 0;  // taken by a receiving application (acknowledged to the sender)
  std::uint64_t received = 0;   // handed to this endpoint's own application
  DropCounts dropped;
  std::uint64_t queued = 0;        // sent, neither delivered nor dropped yet
  std::uint64_t queued_bytes = 0;  // payload bytes of those held in this process
};

std::string_view to_string(Overflow o) noexcept;
std::string_view to_string(Delivery d) noexcept;
// "block", "fail", "drop-oldest", "drop-newest" (also with '_'); nothing for anything else.
std::optional<Overflow> parse_overflow(std::string_view s) noexcept;
std::optional<Delivery> parse_delivery(std::string_view s) noexcept;
// One JSON object with every counter (the shape `ipcx stat` prints; docs/semantics.md).
std::string to_json(const Counters& c);

}  // namespace ipcx
