// One durable queue of ipcxd: its log (log.hpp) and the state rebuilt from it — the live
// messages, which are ready and which are out with a consumer, attempts, the deduplication
// window. Loop-thread only, except sync_log(), which the sync thread calls.
//
// Log records (kinds): message (published time, id, body), ack (a seq removed for good:
// acknowledged, purged, expired or dead-lettered), attempts (a seq's failed deliveries so far,
// written when a delivery comes back unacknowledged).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <ipcx/error.hpp>

#include "broker/log.hpp"
#include "messaging/broker_wire.hpp"

namespace ipcx::broker {

using Clock = std::chrono::steady_clock;
using wire::QueueConfig;

struct Stored {
  std::string id;
  std::uint64_t published_ms = 0;  // unix time
  std::vector<std::byte> body;
  std::uint32_t attempts = 0;  // deliveries so far
};

// Who holds a message that is out: a subscription, or a lease (get).
struct Holder {
  std::uint64_t session = 0;  // the connection it was delivered on
  std::uint64_t tag = 0;      // the subscription; 0 for a lease
  Clock::time_point deadline;
};

enum class Removal : std::uint8_t { acked, purged, expired, dead_lettered, dropped };

struct Published {
  std::uint64_t seq = 0;
  bool duplicate = false;
};

class Queue {
 public:
  // Opens (creating) the queue in `dir`: its config file and its log, recovered. A queue that
  // exists keeps its own config (`config` only applies when creating).
  // `first_seq`: where a new queue's numbering starts (after an earlier queue of that name).
  static Result<std::unique_ptr<Queue>> open(const std::filesystem::path& dir, std::string name, const QueueConfig& config,
                                             bool create, RecoveryReport* report, std::uint64_t first_seq = 1);

  const std::string& name() const noexcept { return name_; }
  const QueueConfig& config() const noexcept { return config_; }
  const std::filesystem::path& dir() const noexcept { return dir_; }
  bool is_dead_letter_queue() const noexcept { return name_.ends_with(".dlq"); }

  // Appends a message (or recognises a duplicate id within the window). Errors:
  // resource_exhausted over the limits with Overflow::reject (a message alone over max_bytes
  // too), and the log's I/O errors. With Overflow::drop_oldest, room is made by taking the
  // oldest ready messages out: they are returned through `evicted` for dead-lettering.
  // A dead letter (`dead_letter`) is taken whatever the limits: refusing it would destroy it.
  Result<Published> publish(std::string id, std::span<const std::byte> body, std::uint64_t now_ms,
                            std::vector<std::pair<std::uint64_t, Stored>>& evicted, bool dead_letter = false);
  // Takes the oldest ready message out to `holder`; nullopt when none is ready.
  std::optional<std::uint64_t> take(const Holder& holder);
  const Stored* find(std::uint64_t seq) const;
  // The message is done (acknowledged and the rest): removed for good. False: not out (or not live).
  bool remove(std::uint64_t seq, Removal why);
  // An out message comes back unacknowledged: ready again, its attempt counted in the log.
  bool give_back(std::uint64_t seq);
  // Messages out on this connection (and subscription, unless 0): their seqs.
  std::vector<std::uint64_t> held_by(std::uint64_t session, std::uint64_t tag) const;
  // Out messages whose ack deadline passed.
  std::vector<std::uint64_t> overdue(Clock::time_point now) const;
  // Ready messages older than the TTL (oldest first, up to `max`).
  std::vector<std::uint64_t> expired(std::uint64_t now_ms, std::size_t max) const;
  // Removes every ready message; returns how many.
  std::uint64_t purge();
  // Forgets deduplication ids older than the window; drops log segments nothing needs.
  void tidy(std::uint64_t now_ms);

  bool has_ready() const noexcept { return !ready_.empty(); }
  // The oldest ready message (has_ready() first).
  std::uint64_t peek() const { return *ready_.begin(); }
  bool is_out(std::uint64_t seq) const { return out_.contains(seq); }
  const Holder* holder(std::uint64_t seq) const;
  bool over_attempts(std::uint64_t seq) const;

  // Durability (the sync thread calls sync_log; the loop learns the result from it).
  bool needs_sync() const noexcept { return config_.sync != wire::SyncPolicy::none; }
  Result<std::uint64_t> sync_log() { return log_.sync(); }
  std::uint64_t last_seq() const noexcept { return log_.last_seq(); }
  // Drops everything on disk (the queue is being removed).
  Result<void> destroy();

  wire::QueueInfo info() const;
  // Counters kept by the broker as it serves the queue.
  struct Counters {
    std::uint64_t published = 0, duplicates = 0, delivered = 0, redelivered = 0, acked = 0;
    std::uint64_t dead_lettered = 0, expired = 0, rejected = 0;
  } counters;
  std::uint32_t consumers = 0;

 private:
  Queue(std::filesystem::path dir, std::string name, QueueConfig config, Log log) noexcept;
  void replay(LogRecord&& r);
  void forget(std::uint64_t seq);
  Result<void> append_ack(std::uint64_t seq);

  std::filesystem::path dir_;
  std::string name_;
  QueueConfig config_;
  Log log_;
  std::map<std::uint64_t, Stored> live_;  // every message not yet removed, by seq
  std::set<std::uint64_t> ready_;         // live and not out
  std::map<std::uint64_t, Holder> out_;   // live and delivered, waiting for an ack
  std::uint64_t bytes_ = 0;               // bodies of live messages
  // Deduplication: id → seq, and ids in publish order for expiry.
  std::unordered_map<std::string, std::uint64_t> ids_;
  std::deque<std::tuple<std::uint64_t, std::string, std::uint64_t>> id_order_;  // published_ms, id, seq
  std::uint64_t acks_since_tidy_ = 0;
  std::vector<std::byte> record_;  // the record being appended (reused)
};

// Writes a small file whole or not at all (a temporary file, fsync, rename, fsync of the directory).
Result<void> write_file_durably(const std::filesystem::path& path, std::span<const std::byte> bytes);

// Record kinds in a queue's log.
namespace record {
inline constexpr std::uint8_t message = 1;
inline constexpr std::uint8_t ack = 2;
inline constexpr std::uint8_t attempts = 3;
}  // namespace record

}  // namespace ipcx::broker
