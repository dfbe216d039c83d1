// A bounded queue of messages that applies an overflow policy and counts what it drops.
//
// The one place the semantics of QueueOptions are implemented for messages held in this
// process: a sysv:// connection's send side, a channel's sending side and every per-peer queue
// of a pattern (a subscriber's queue in a publisher, a pusher's backlog) hold their messages in
// one of these.
// Not thread-safe: its owner serialises calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include <ipcx/semantics.hpp>

namespace ipcx::transport {

class PolicyQueue {
 public:
  enum class Offer {
    queued,        // the message is held (drop_oldest may have discarded older ones: counted)
    full,          // Overflow::block: no room; nothing changed (the caller waits and retries)
    refused,       // Overflow::fail: no room; counted in dropped.refused
    dropped,       // Overflow::drop_newest: no room; the message was discarded (dropped.newest)
    too_large,     // larger than memory_cap: never fits; nothing changed, nothing counted
  };

  explicit PolicyQueue(QueueOptions options) noexcept : opts_(options) {}

  // Offers one message (copied), applying the overflow policy when there is no room.
  Offer offer(std::span<const std::byte> data);
  // True when one more message of `bytes` fits without dropping anything.
  bool has_room(std::size_t bytes) const noexcept;

  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }
  std::size_t bytes() const noexcept { return bytes_; }
  const std::vector<std::byte>& front() const noexcept { return items_.front(); }
  // Removes the front message (it was handed on); its buffer is kept for reuse.
  void pop();
  // Discards everything held, counting each message in `reason` (e.g. dropped.peer_died).
  std::uint64_t drop_all(std::uint64_t DropCounts::*reason);

  const QueueOptions& options() const noexcept { return opts_; }
  DropCounts& dropped() noexcept { return dropped_; }
  const DropCounts& dropped() const noexcept { return dropped_; }

 private:
  void drop_front(std::uint64_t DropCounts::*reason);

  QueueOptions opts_;
  std::deque<std::vector<std::byte>> items_;
  std::vector<std::vector<std::byte>> spare_;  // buffers of popped messages, reused
  std::size_t bytes_ = 0;
  DropCounts dropped_;
};

}  // namespace ipcx::transport
