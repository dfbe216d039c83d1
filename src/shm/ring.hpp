// A single-writer, single-reader ring of variable-length records in shared memory, and the
// sleep/wake protocol of its two sides (docs/shm.md, "The ring").
//
// The peer on the other side of the mapping may be buggy, dead half-way through a write, or
// hostile: every position and length read from the shared area is checked before use, and a
// bad one is Errc::protocol, never a read or write outside the ring.
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include <ipcx/error.hpp>

namespace ipcx::shm {

// How an endpoint waits for data or space.
enum class WaitMode : std::uint8_t {
  spin,    // busy-poll: the lowest latency, a CPU kept busy while waiting
  block,   // sleep in futex(2) at once: no CPU used, a wake-up costs a system call each side
  hybrid,  // spin up to WaitPolicy::spin, then sleep (the default)
};

struct WaitPolicy {
  WaitMode mode = WaitMode::hybrid;
  std::chrono::microseconds spin{50};  // hybrid: how long to spin before sleeping
};

namespace ring {

// Record header flags.
inline constexpr std::uint32_t kMore = 1;       // the message continues in the next record
inline constexpr std::uint32_t kPadding = 2;    // filler up to the end of the data area
inline constexpr std::uint32_t kPublished = 4;  // the record is there: without it, nothing is (yet)
inline constexpr std::size_t kHeader = 8;       // u32 length, u32 flags: one word, stored whole
inline constexpr std::size_t kAlign = 8;
// Sleep bits in reader_wait / writer_wait: how the sleeping side wants to be woken.
inline constexpr std::uint32_t kWakeFutex = 1;  // futex_wake on data_seq / space_seq
inline constexpr std::uint32_t kWakeFd = 2;     // a wake pipe (reader's: a byte; writer's: drained)

// A record's bytes: its header and payload, rounded up to kAlign.
constexpr std::uint64_t record_size(std::uint64_t length) noexcept {
  return (kHeader + length + kAlign - 1) & ~std::uint64_t{kAlign - 1};
}
// A header as the word it is stored as (little-endian: the length first, then the flags).
constexpr std::uint64_t header_word(std::uint64_t length, std::uint32_t flags) noexcept {
  return length | (std::uint64_t{flags} << 32);
}
constexpr std::uint32_t word_length(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w); }
constexpr std::uint32_t word_flags(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }
// A record is published by the release store of its header word (the first record of a batch
// last), after the header after it was zeroed: the reader polls the header at its position, not
// a shared position of the writer's, so one line (the record's) moves per message, not two.
inline void store_header(std::byte* at, std::uint64_t w, int order) noexcept {
  __atomic_store_n(reinterpret_cast<std::uint64_t*>(at), w, order);
}
inline std::uint64_t load_header(const std::byte* at) noexcept {
  return __atomic_load_n(reinterpret_cast<const std::uint64_t*>(at), __ATOMIC_ACQUIRE);
}
static_assert(std::endian::native == std::endian::little);

inline constexpr std::size_t kMinCapacity = 4096;
inline constexpr std::size_t kMaxCapacity = std::size_t{1} << 30;

// The shared part of one direction. Each line is written by one side only (or, for the wait
// words, set by the sleeper and cleared by the waker); the hot path moves only the records' lines
// (and the reader's position, every eighth of the ring).
struct Control {
  alignas(64) std::atomic<std::uint64_t> unused;  // layout version 2's published position: 0, read by nobody
  alignas(64) std::atomic<std::uint64_t> head;  // bytes consumed (reader)
  alignas(64) std::atomic<std::uint32_t> reader_wait;
  std::atomic<std::uint32_t> data_seq;  // the reader's futex word, bumped by each wake
  alignas(64) std::atomic<std::uint32_t> writer_wait;
  std::atomic<std::uint32_t> space_seq;  // the writer's futex word
  alignas(64) std::atomic<std::uint32_t> writer_closed;  // 1: nothing more will be written
  std::atomic<std::uint32_t> reader_closed;              // 1: nothing more will be read
  // 1: this side arms its sleep with a barrier on every CPU (membarrier), so the other side's
  // look at the sleep bits after publishing needs no fence of its own.
  std::atomic<std::uint32_t> reader_heavy;
  std::atomic<std::uint32_t> writer_heavy;
};
static_assert(sizeof(Control) == 320);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free);

// Bytes one direction occupies: its Control, then `capacity` data bytes.
constexpr std::size_t footprint(std::size_t capacity) noexcept { return sizeof(Control) + capacity; }
// True for a power of two within [kMinCapacity, kMaxCapacity].
constexpr bool valid_capacity(std::size_t c) noexcept {
  return c >= kMinCapacity && c <= kMaxCapacity && (c & (c - 1)) == 0;
}
// The largest payload one record carries: a message above it travels in several records.
constexpr std::size_t max_record(std::size_t capacity) noexcept { return capacity / 4; }

// The wake pipes of a direction's fd wake-ups. A descriptor may become known late (-1 until
// then: a listener learns its client's pipes from the client's hello): `resolve(ctx)` is
// called when a wake-up needs one that is still -1.
struct Wakers {
  std::atomic<int>* data_fd = nullptr;   // the reader polls it readable (kWakeFd on reader_wait)
  std::atomic<int>* space_fd = nullptr;  // the writer polls it writable (kWakeFd on writer_wait)
  void (*resolve)(void* ctx) noexcept = nullptr;
  void* ctx = nullptr;

  int data() const noexcept { return get(data_fd); }
  int space() const noexcept { return get(space_fd); }

 private:
  int get(std::atomic<int>* p) const noexcept {
    if (!p) return -1;
    int fd = p->load(std::memory_order_acquire);
    if (fd < 0 && resolve) {
      resolve(ctx);
      fd = p->load(std::memory_order_acquire);
    }
    return fd;
  }
};

// Pipe wake-ups (docs/shm.md, "Waking a polled side"), for the transport too. Every pipe is
// used through a descriptor this process opened itself (O_RDWR | O_NONBLOCK, through
// /proc/self/fd): its own open file description, whose flags no peer can change, and a reader
// of the pipe, so a write never raises SIGPIPE. None of these calls can wait.
inline constexpr int kWakePipeSize = 4096;  // a space pipe holds one page: one byte fills it
void poke_pipe(int fd) noexcept;   // a byte in: readable (a one-page pipe: not writable)
void drain_pipe(int fd) noexcept;  // everything out: not readable, writable
// A space pipe, not writable until the other side drains it: shrunk back to one page if
// someone grew it, then poked.
void block_pipe(int fd) noexcept;

// The writing side. Not thread-safe: one thread at a time (the transport's send lock).
class Writer {
 public:
  Writer() = default;
  // `base` points at the direction's Control, followed by `capacity` data bytes. Both
  // positions start at 0 whatever the memory says: a position the peer set beforehand (an
  // unaligned one would make our records straddle the end) is never taken on trust.
  Writer(std::byte* base, std::size_t capacity, Wakers wakers) noexcept;

  // Writes as many records of `msg[*done..]` as there is room for now (at least one record for
  // an empty message), advancing *done; publishes them and wakes a sleeping reader. Returns
  // true once the whole message is written (its last record has no kMore flag).
  // Errc::protocol when the reader's position is impossible (a hostile or corrupt peer).
  Result<bool> write(std::span<const std::byte> msg, std::size_t* done) noexcept;
  // The common case, inline: a whole message in one record before the end of the data area, in
  // space known to be free; written and published. False when nothing was written: write().
  bool write_whole(std::span<const std::byte> msg) noexcept {
    const std::size_t pos = static_cast<std::size_t>(tail_ & (cap_ - 1));
    const std::size_t need = record_size(msg.size());
    if (msg.size() > max_record(cap_) || need > room() || need > cap_ - pos) return false;
    if (!msg.empty()) std::memcpy(data_ + pos + kHeader, msg.data(), msg.size());
    tail_ += need;
    publish(pos, header_word(msg.size(), kPublished));
    return true;
  }
  // True when the reader says it reads no more.
  bool reader_closed() const noexcept { return c_->reader_closed.load(std::memory_order_acquire) != 0; }
  // Marks the end of what this side writes and wakes the reader.
  void close() noexcept;

  // Sleeping until the reader frees space: arm (then check again), sleep, disarm.
  std::uint32_t arm(std::uint32_t how) noexcept;  // returns the futex value to wait on
  void disarm(std::uint32_t how) noexcept { c_->writer_wait.fetch_and(~how, std::memory_order_relaxed); }
  bool has_space() noexcept;                      // room for a record now (refreshes the reader's position)
  std::atomic<std::uint32_t>& futex_word() noexcept { return c_->space_seq; }

 private:
  Result<std::size_t> free_space() noexcept;
  // Bytes a record may take as the reader's position was last seen: the header after the last
  // record (kept zero) is not ours to fill.
  std::size_t room() const noexcept { return cap_ - kHeader - static_cast<std::size_t>(tail_ - head_cache_); }
  // Publishes the records written from `first_pos` up to tail_: the header after them zeroed,
  // then the first one's header word stored with release; then wakes the reader if it sleeps.
  // The store-load barrier pairs with the reader's arm(): a compiler barrier when the reader
  // arms with membarrier, else a fence.
  void publish(std::size_t first_pos, std::uint64_t first_word) noexcept {
    store_header(data_ + (tail_ & (cap_ - 1)), 0, __ATOMIC_RELAXED);
    store_header(data_ + first_pos, first_word, __ATOMIC_RELEASE);
    if (light()) std::atomic_signal_fence(std::memory_order_seq_cst);
    else std::atomic_thread_fence(std::memory_order_seq_cst);
    if (c_->reader_wait.load(std::memory_order_relaxed) != 0) [[unlikely]] wake_reader();
  }
  void wake_reader() noexcept;
  bool light() noexcept { return light_ || light_slow(); }
  bool light_slow() noexcept;

  Control* c_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t cap_ = 0;
  std::uint64_t tail_ = 0;         // ours: the next byte to write (its header is kept zero)
  std::uint64_t head_cache_ = 0;   // the reader's position when last read
  bool light_ = false;             // the reader sleeps with a heavy barrier: no fence needed here
  Wakers wake_;
};

// The reading side. Not thread-safe: one thread at a time (the transport's receive lock).
class Reader {
 public:
  enum class Got {
    nothing,   // no record (or only part of a message) is there yet
    message,   // `out` holds a whole message
    eof,       // the writer closed and everything before was read
  };
  Reader() = default;
  Reader(std::byte* base, std::size_t capacity, Wakers wakers) noexcept;

  // Appends the payload of the records available to `out`, up to the end of one message.
  // `out` keeps a message's beginning between calls (the caller passes the same buffer back).
  // Errc::too_large when the message would exceed `max_message`, Errc::protocol for an
  // impossible position, length or flag; both leave the ring unusable.
  Result<Got> read(std::vector<std::byte>& out, std::size_t max_message) noexcept;
  // The common case, inline: a whole message in one record is published: `out` holds it (its
  // old contents replaced). False when anything else is there (nothing, a message in pieces,
  // padding, something read() refuses): then read() from an empty `out`, nothing was taken.
  bool read_whole(std::vector<std::byte>& out, std::size_t max_message) noexcept {
    const std::size_t pos = static_cast<std::size_t>(head_ & (cap_ - 1));
    const std::uint64_t w = load_header(data_ + pos);  // once: the peer may change it under us
    const std::uint32_t length = word_length(w);
    if (word_flags(w) != kPublished || length > max_record(cap_) || length > max_message ||
        record_size(length) > cap_ - pos)
      return false;
    const std::uint64_t size = record_size(length);
    const std::byte* src = data_ + pos + kHeader;
    out.assign(src, src + length);
    head_ += size;
    if (head_ - released_ >= cap_ / 8) release(head_);
    return true;
  }
  // A record is waiting, or the writer closed.
  bool ready() noexcept;
  void close() noexcept;
  bool writer_closed() const noexcept;

  // A record is published and not read yet (the writer's close aside).
  bool pending() const noexcept {
    return (word_flags(load_header(data_ + (head_ & (cap_ - 1)))) & kPublished) != 0;
  }

  std::uint32_t arm(std::uint32_t how) noexcept;
  void disarm(std::uint32_t how) noexcept { c_->reader_wait.fetch_and(~how, std::memory_order_relaxed); }
  std::atomic<std::uint32_t>& futex_word() noexcept { return c_->data_seq; }

 private:
  void release(std::uint64_t new_head) noexcept;
  bool light() noexcept { return light_ || light_slow(); }
  bool light_slow() noexcept;

  Control* c_ = nullptr;
  const std::byte* data_ = nullptr;
  std::size_t cap_ = 0;
  std::uint64_t head_ = 0;
  std::uint64_t released_ = 0;  // the head the writer sees: published every eighth of the ring, and when caught up
  bool light_ = false;  // the writer sleeps with a heavy barrier
  Wakers wake_;
};

}  // namespace ring
}  // namespace ipcx::shm
