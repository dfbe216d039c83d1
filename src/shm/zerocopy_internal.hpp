// The parts of zero-copy publish/subscribe that its two sides share (zerocopy.cpp: the topic,
// loans and publishers; zerocopy_subscriber.cpp: samples and subscribers). Layout:
// zerocopy_layout.hpp; protocol: docs/shm.md, "Zero-copy publish/subscribe".
#pragma once

#include <sys/mman.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/zerocopy.hpp>

#include "os/futex.hpp"
#include "shm/lifetime.hpp"
#include "shm/zerocopy_layout.hpp"

namespace ipcx::shm {

namespace L = zc_layout;

namespace detail {

inline constexpr std::size_t kMaxName = 190;                     // bytes of a topic name
inline constexpr auto kSlice = std::chrono::milliseconds(20);
inline constexpr std::uint64_t kMaxPayload = std::uint64_t{1} << 30;
inline constexpr std::uint64_t kMaxChunks = std::uint64_t{1} << 20;
// The most a publisher's `latest` may move between two looks of a subscriber: 2^40 publications
// (a year at 30 million a second).
inline constexpr std::uint64_t kMaxLeap = std::uint64_t{1} << 40;

// The topic file, mapped read-write, and this process's description of it (whose file locks
// are its slot claims). Shared by a publisher or subscriber and every Sample it handed out.
struct ZcTopic {
  Fd fd;
  void* base = nullptr;
  std::size_t size = 0;
  std::uint32_t pubs = 0, subs = 0;
  std::uint64_t sub_slot_size = 0;
  std::string name, path;
  ~ZcTopic() {  // fd is set only once the topic is open: a refused file is never removed
    if (base) ::munmap(base, size);
    if (fd) (void)lifetime::leave(std::move(fd), path, &ZcTopic::remove_data_files, this);
  }
  // The topic's last user: publishers' data files nobody holds go with it (a closed publisher
  // leaves its file for subscribers that had not looked at it yet).
  static bool remove_data_files(void* self) noexcept;  // true: the topic goes too
  L::TopicHeader& header() const noexcept { return *static_cast<L::TopicHeader*>(base); }
  L::PubSlot& pub(std::size_t i) const noexcept {
    return *reinterpret_cast<L::PubSlot*>(static_cast<std::byte*>(base) + sizeof(L::TopicHeader) + i * sizeof(L::PubSlot));
  }
  L::SubSlot& sub(std::size_t j) const noexcept {
    return *reinterpret_cast<L::SubSlot*>(static_cast<std::byte*>(base) + sizeof(L::TopicHeader) +
                                          pubs * sizeof(L::PubSlot) + j * sub_slot_size);
  }
  std::atomic<std::uint64_t>& cursor(std::size_t j, std::size_t i) const noexcept {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(reinterpret_cast<std::byte*>(&sub(j)) + sizeof(L::SubSlot))[i];
  }
  off_t pub_lock(std::size_t i) const noexcept { return static_cast<off_t>(1 + i); }
  off_t sub_lock(std::size_t j) const noexcept { return static_cast<off_t>(1 + pubs + j); }
  void wake() const noexcept {
    auto& h = header();
    h.wake.fetch_add(1, std::memory_order_seq_cst);
    if (h.sleepers.load(std::memory_order_seq_cst) != 0) (void)os::futex_wake(h.wake, INT_MAX);
  }
};


// A publisher's data file as one subscriber maps it.
struct ZcSource {
  std::shared_ptr<ZcTopic> topic;  // keeps this subscriber's slot claimed while a Sample lives
  std::shared_ptr<std::atomic<std::size_t>> held;
  Fd fd;
  std::string path;
  const std::byte* ro = nullptr;  // the whole file, read-only
  std::size_t size = 0;
  std::atomic<std::uint64_t>* holders = nullptr;  // the control region, read-write
  std::size_t control_size = 0;
  std::uint64_t chunks = 0, stride = 0, words = 0, max_payload = 0, history = 0, chunks_offset = 0;
  std::size_t slot = 0;            // the publisher's slot
  std::uint64_t generation = 0;
  std::uint64_t next = 1;          // the next sequence to take
  std::uint64_t seen_latest = 0;   // the publisher's `latest` when last read: it never goes back
  std::size_t word = 0;            // this subscriber's bit
  std::uint64_t mask = 0;
  bool broken = false;
  bool joined = false;  // false while mapping: a refused file is closed, never removed

  ~ZcSource() {
    if (holders) ::munmap(holders, control_size);
    if (ro) ::munmap(const_cast<std::byte*>(ro), size);
    if (fd && joined) (void)lifetime::leave(std::move(fd), path);
  }
  const L::DataHeader& header() const noexcept { return *reinterpret_cast<const L::DataHeader*>(ro); }
  const L::RingEntry& ring(std::uint64_t seq) const noexcept {
    return reinterpret_cast<const L::RingEntry*>(ro + sizeof(L::DataHeader))[seq % chunks];
  }
  const L::ChunkHeader& chunk(std::uint64_t c) const noexcept {
    return *reinterpret_cast<const L::ChunkHeader*>(ro + chunks_offset + c * stride);
  }
  std::atomic<std::uint64_t>& bits(std::uint64_t c) const noexcept { return holders[c * words + word]; }
  void release(std::uint64_t c) const noexcept {
    bits(c).fetch_and(~mask, std::memory_order_release);
    held->fetch_sub(1, std::memory_order_relaxed);
  }
};

struct ZcPublisherState {
  std::shared_ptr<ZcTopic> topic;
  Fd fd;
  std::string path;
  std::byte* base = nullptr;
  std::size_t size = 0;
  std::size_t slot = 0;
  std::uint64_t chunks = 0, stride = 0, words = 0, max_payload = 0, history = 0;
  L::DataGeometry geo{};
  std::uint64_t latest = 0;
  std::uint64_t rr = 0;  // where the next loan starts looking
  std::vector<bool> loaned;
  Timeout block_timeout{};

  // The blocking subscribers' least cursor: samples from it on are still queued for one of
  // them. 0 when there is none. `check_alive`: leave out subscribers whose process died (a
  // system call each: only when the pool ran dry).
  mutable std::uint64_t floor_cache = 0;  // the last one computed (it only grows, so a stale one keeps more)
  std::uint64_t blocking_floor(bool check_alive) const noexcept {
    if (topic->header().blocking.load(std::memory_order_acquire) == 0) return floor_cache = 0;
    std::uint64_t floor = 0;
    for (std::size_t j = 0; j < topic->subs; ++j) {
      auto& sl = topic->sub(j);
      if (sl.state.load(std::memory_order_acquire) != L::kActive || !(sl.flags.load(std::memory_order_acquire) & L::kBlock))
        continue;
      std::uint64_t c = topic->cursor(j, slot).load(std::memory_order_acquire);
      if (c == 0) c = 1;  // it has not looked at us yet: everything we published is for it
      if (floor != 0 && c >= floor) continue;
      if (check_alive && !lifetime::writer_alive(topic->fd.get(), topic->sub_lock(j))) continue;
      floor = c;
    }
    return floor_cache = floor;
  }
  // The room a blocking subscriber has before seq: false when one is full. Cursors only grow
  // and a subscriber that comes later starts above the latest sample, so the least bound seen
  // stays a safe one until it is reached: the slots are looked at again only then.
  mutable std::uint64_t room_until = 0;  // every blocking subscriber has room below it
  bool blocking_room(std::uint64_t seq) const noexcept {
    if (seq < room_until) return true;
    std::uint64_t until = ~std::uint64_t{0};
    for (std::size_t j = 0; j < topic->subs; ++j) {
      auto& sl = topic->sub(j);
      if (sl.state.load(std::memory_order_acquire) != L::kActive || !(sl.flags.load(std::memory_order_acquire) & L::kBlock))
        continue;
      std::uint64_t c = topic->cursor(j, slot).load(std::memory_order_acquire);
      if (c == 0) c = 1;
      const std::uint64_t q = std::max<std::uint64_t>(1, std::min<std::uint64_t>(sl.queue.load(std::memory_order_relaxed), chunks - history - 1));
      if (seq >= c + q) {
        if (lifetime::writer_alive(topic->fd.get(), topic->sub_lock(j))) {
          room_until = 0;
          return false;
        }
        continue;  // died full: it blocks no one
      }
      until = std::min(until, c + q);
    }
    room_until = until;
    return true;
  }

  ~ZcPublisherState() {
    if (base) ::munmap(base, size);
    // Subscribers that have not mapped our file yet still have our samples to read: the file
    // stays for them (the last to read it, or the topic's last user, removes it).
    bool leave_for_them = false;
    if (topic)
      for (std::size_t j = 0; j < topic->subs && !leave_for_them; ++j)
        leave_for_them = lifetime::writer_alive(topic->fd.get(), topic->sub_lock(j));
    if (fd) {
      if (leave_for_them) fd.reset();
      else (void)lifetime::leave(std::move(fd), path);
    }
    if (topic) {
      topic->pub(slot).state.store(leave_for_them ? L::kClosed : L::kFree, std::memory_order_release);
      topic->header().pub_change.fetch_add(1, std::memory_order_release);
      topic->wake();
      lifetime::release_writer(topic->fd.get(), topic->pub_lock(slot));
    }
  }
  L::DataHeader& header() const noexcept { return *reinterpret_cast<L::DataHeader*>(base); }
  L::RingEntry& ring(std::uint64_t seq) const noexcept {
    return reinterpret_cast<L::RingEntry*>(base + geo.ring_offset)[seq % chunks];
  }
  L::ChunkHeader& chunk(std::uint64_t c) const noexcept {
    return *reinterpret_cast<L::ChunkHeader*>(base + geo.chunks_offset + c * stride);
  }
  std::atomic<std::uint64_t>* bits(std::uint64_t c) const noexcept {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(base + geo.control_offset) + c * words;
  }
  bool any_holder(std::uint64_t c) const noexcept {
    auto* b = bits(c);
    for (std::uint64_t w = 0; w < words; ++w)
      if (b[w].load(std::memory_order_seq_cst) != 0) return true;
    return false;
  }
};

struct ZcSubscriberState {
  std::shared_ptr<ZcTopic> topic;
  std::shared_ptr<std::atomic<std::size_t>> held = std::make_shared<std::atomic<std::size_t>>(0);
  std::size_t slot = 0;
  ZeroCopySubscriberOptions options;
  std::vector<std::shared_ptr<ZcSource>> sources;  // by publisher slot (null: none mapped)
  std::vector<std::uint64_t> finished;             // by slot: the generation read to its end
  std::uint32_t seen_change = ~0u;
  std::size_t rr = 0;
  std::uint64_t dropped = 0;
};

// The topic's name rules and limits; a publisher's data file name.
Result<void> check_topic_name(std::string_view name);
Result<void> check_limits(const TopicLimits& t);
std::string data_name(std::string_view topic, std::uint64_t token);
// Opens the topic file, creating it when absent.
Result<std::shared_ptr<ZcTopic>> open_topic(std::string_view name, const TopicLimits& limits);
// Claims the first slot whose lock nobody holds (free, or its holder died). nullopt: all held.
Result<std::optional<std::size_t>> claim(const ZcTopic& t, std::size_t n, off_t (ZcTopic::*lock)(std::size_t) const noexcept);

}  // namespace detail
}  // namespace ipcx::shm
