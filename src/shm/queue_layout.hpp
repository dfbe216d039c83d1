// The bytes of a shared queue file (docs/shm.md, "Shared queue: many writers, one reader").
// Every field is writable by every process that opens the queue: queue.cpp checks each value it
// reads before using it (a bad one is Errc::protocol, never an access outside the file).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ipcx::shm::queue_layout {

// "IPCXMPQ1" read as a little-endian 64-bit integer.
inline constexpr std::uint64_t kMagic = 0x3151504D58435049ull;
inline constexpr std::uint32_t kVersion = 2;  // 2: a polled reader's wake-up socket (52, 56)

struct Header {
  std::atomic<std::uint64_t> magic;  // 0: written last (release) by the creator
  std::uint32_t version;             // 8
  std::uint32_t header_size;         // 12: sizeof(Header)
  std::uint64_t total_size;          // 16: the file's size
  std::uint32_t slots;               // 24: a power of two
  std::uint32_t max_message;         // 28: payload bytes a slot holds
  std::uint32_t max_writers;         // 32: writer entries
  std::uint32_t stride;              // 36: bytes per slot (a multiple of 64)
  std::uint64_t slots_offset;        // 40: where slot 0 begins
  // 48: 1 while the reader arms its sleep with a barrier on every CPU (membarrier): a writer
  // registered for such barriers then needs no fence of its own before looking at reader_wait.
  std::atomic<std::uint32_t> reader_heavy;
  // 52, 56: the reader's wake-up socket, @ipcx-ev.<uid>.<token> (shm/wake.hpp), for a reader that
  // polls its descriptor (kWakeFd in reader_wait).
  std::atomic<std::uint32_t> reader_uid;
  std::atomic<std::uint64_t> reader_token;
  alignas(64) std::atomic<std::uint64_t> tail;  // 64: positions claimed (writers, compare-and-swap)
  alignas(64) std::atomic<std::uint64_t> head;  // 128: positions consumed (the reader)
  alignas(64) std::atomic<std::uint32_t> reader_wait;  // 192: how the reader may sleep (kWake*)
  std::atomic<std::uint32_t> data_seq;                 // 196: the reader's futex word
  alignas(64) std::atomic<std::uint32_t> space_wait;   // 256: 1 while some writer may sleep
  std::atomic<std::uint32_t> space_seq;                // 260: the writers' futex word
  std::uint8_t reserved1[56];                          // 264
};
static_assert(sizeof(Header) == 320);

// The bits of reader_wait (space_wait uses the first only): wake the reader with a futex wake on
// data_seq, and/or with a datagram to its socket.
inline constexpr std::uint32_t kWakeFutex = 1;
inline constexpr std::uint32_t kWakeFd = 2;

// One per writer index i; the writer holding index i holds an OFD lock on byte 1 + i of the
// file (byte 0: the reader).
struct WriterEntry {
  std::atomic<std::uint32_t> claiming;  // 1 from before it claims a position until its slot says so
  std::int32_t pid;                     // informative
  std::uint8_t reserved[56];
};
static_assert(sizeof(WriterEntry) == 64);

// A slot: its state word, the message's length, then the payload.
struct SlotHead {
  std::atomic<std::uint64_t> state;
  std::uint32_t length;
  std::uint32_t reserved;
};
static_assert(sizeof(SlotHead) == 16);

// state = (position mod 2^48) << 16 | kind << 12 | writer index. A slot serves positions
// p, p + slots, p + 2 slots...: its state names the position it is for.
inline constexpr std::uint64_t kEmpty = 0;      // free for position p: the claimer of p may write it
inline constexpr std::uint64_t kWriting = 1;    // writer w is copying position p in
inline constexpr std::uint64_t kReady = 2;      // position p's message is complete
inline constexpr std::uint64_t kAbandoned = 3;  // the reader gave position p up (its writer died)
inline constexpr std::uint64_t kPosMask = (std::uint64_t{1} << 48) - 1;
inline constexpr std::uint32_t kMaxWriters = 4095;  // writer indexes fit 12 bits

constexpr std::uint64_t make_state(std::uint64_t pos, std::uint64_t kind, std::uint64_t writer = 0) noexcept {
  return (pos & kPosMask) << 16 | kind << 12 | (writer & 0xfff);
}
constexpr std::uint64_t state_pos(std::uint64_t s) noexcept { return s >> 16; }
constexpr std::uint64_t state_kind(std::uint64_t s) noexcept { return (s >> 12) & 0xf; }
constexpr std::uint32_t state_writer(std::uint64_t s) noexcept { return static_cast<std::uint32_t>(s & 0xfff); }

constexpr std::uint64_t align64(std::uint64_t n) noexcept { return (n + 63) & ~std::uint64_t{63}; }
constexpr std::uint64_t stride_for(std::uint64_t max_message) noexcept { return align64(sizeof(SlotHead) + max_message); }
constexpr std::uint64_t slots_offset_for(std::uint64_t writers) noexcept {
  return align64(sizeof(Header) + writers * sizeof(WriterEntry));
}
constexpr std::uint64_t file_bytes(std::uint64_t slots, std::uint64_t max_message, std::uint64_t writers) noexcept {
  return slots_offset_for(writers) + slots * stride_for(max_message);
}

}  // namespace ipcx::shm::queue_layout
