// The bytes of a zero-copy topic (docs/shm.md, "Zero-copy publish/subscribe"): the topic file
// that publishers and subscribers claim slots in, and one data file per publisher. Everything
// another process wrote is read as untrusted: see zerocopy.cpp for the checks.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ipcx::shm::zc_layout {

inline constexpr std::uint64_t kTopicMagic = 0x31504f5458435049ull;  // "IPCXTOP1"
inline constexpr std::uint64_t kDataMagic = 0x3150435a58435049ull;   // "IPCXZCP1"
inline constexpr std::uint32_t kVersion = 1;
// Slot states. A publisher that closes while subscribers are there leaves its data file for them
// (kClosed): the last of them, or the topic's last user, removes it.
inline constexpr std::uint32_t kFree = 0, kActive = 1, kClosed = 2;
inline constexpr std::uint64_t kReusing = ~std::uint64_t{0};  // a chunk's seq while it is being refilled
inline constexpr std::size_t kPage = 4096;

// ---- topic file: /dev/shm/ipcx-<uid>-<topic> --------------------------------------------------
struct TopicHeader {
  std::atomic<std::uint64_t> magic;  // 0: written last by the creator
  std::uint32_t version;             // 8
  std::uint32_t header_size;         // 12: sizeof(TopicHeader)
  std::uint64_t total_size;          // 16
  std::uint32_t max_publishers;      // 24
  std::uint32_t max_subscribers;     // 28
  std::uint64_t sub_slot_size;       // 32: sizeof(SubSlot) + 8 * max_publishers
  std::atomic<std::uint32_t> pub_change;  // 40: +1 when a publisher comes or goes (read at every take)
  std::atomic<std::uint32_t> blocking;    // 44: subscribers open with Overflow::block (read at every publish)
  std::uint8_t reserved0[16];        // 48
  // A line of its own: publishers bump it at every publication, and busy readers of the line
  // above must not pay for that.
  std::atomic<std::uint32_t> wake;      // 64: futex word, +1 per publication
  std::atomic<std::uint32_t> sleepers;  // 68: subscribers about to sleep on `wake`
  std::uint8_t reserved1[56];
};
static_assert(sizeof(TopicHeader) == 128 && offsetof(TopicHeader, wake) == 64);

struct PubSlot {
  std::atomic<std::uint32_t> state;       // kFree / kActive / kClosed
  std::int32_t pid;                       // informative
  std::atomic<std::uint64_t> generation;  // +1 each time a publisher takes the slot (also in its data file)
  std::atomic<std::uint64_t> token;       // random: names its data file <topic>@<token as 16 hex digits>
  std::uint8_t reserved[40];
};
static_assert(sizeof(PubSlot) == 64);

inline constexpr std::uint32_t kBlock = 1;  // SubSlot::flags: publishers wait for this subscriber

struct SubSlot {
  std::atomic<std::uint32_t> state;  // kFree / kActive
  std::int32_t pid;                  // informative
  std::atomic<std::uint32_t> flags;  // kBlock
  std::atomic<std::uint32_t> queue;  // the subscriber's queue (Overflow::block: how far publishers may run ahead)
  std::uint8_t reserved[48];
  // then: std::atomic<std::uint64_t> cursor[max_publishers]: the next sequence this subscriber
  // takes from each publisher slot (0: it has not looked at that publisher yet)
};
static_assert(sizeof(SubSlot) == 64);

constexpr std::uint64_t topic_bytes(std::uint64_t pubs, std::uint64_t subs) noexcept {
  return sizeof(TopicHeader) + pubs * sizeof(PubSlot) + subs * (sizeof(SubSlot) + 8 * pubs);
}
// OFD lock bytes: publisher slot i at 1 + i, subscriber slot j at 1 + max_publishers + j.

// ---- data file: /dev/shm/ipcx-<uid>-<topic>@<token> (a name nobody can take beforehand) ---------
// [0, ring_end)              header page and the sample ring     read-only for subscribers
// [control, control + size)  holder bitmaps                      read-write for everyone
// [chunks, total)            chunks: 64-byte header, payload     read-only for subscribers
struct DataHeader {
  std::atomic<std::uint64_t> magic;  // 0
  std::uint32_t version;             // 8
  std::uint32_t header_size;         // 12
  std::uint64_t total_size;          // 16
  std::uint64_t chunks;              // 24: C
  std::uint64_t stride;              // 32: bytes per chunk, header included
  std::uint64_t max_payload;         // 40
  std::uint64_t history;             // 48
  std::uint64_t words;               // 56: holder bitmap words per chunk (max_subscribers / 64, rounded up)
  std::atomic<std::uint64_t> latest;  // 64: sequence of the latest publication (0: none)
  std::uint64_t ring_offset;         // 72
  std::uint64_t control_offset;      // 80
  std::uint64_t chunks_offset;       // 88
  std::uint8_t reserved[32];
};
static_assert(sizeof(DataHeader) == 128 && offsetof(DataHeader, latest) == 64);

struct RingEntry {  // ring[seq % C]: which chunk holds sample `seq`
  std::atomic<std::uint64_t> seq;  // 0 while being written
  std::atomic<std::uint64_t> chunk;  // index of the chunk
};
static_assert(sizeof(RingEntry) == 16);

struct ChunkHeader {
  std::atomic<std::uint64_t> seq;  // sample in it (0: never used; kReusing: being refilled)
  std::atomic<std::uint64_t> len;
  std::uint8_t reserved[48];
};
static_assert(sizeof(ChunkHeader) == 64);

constexpr std::uint64_t round_page(std::uint64_t n) noexcept { return (n + kPage - 1) / kPage * kPage; }
constexpr std::uint64_t stride_for(std::uint64_t max_payload) noexcept {
  return sizeof(ChunkHeader) + (max_payload + 63) / 64 * 64;
}

struct DataGeometry {
  std::uint64_t ring_offset, control_offset, chunks_offset, total;
};
constexpr DataGeometry data_geometry(std::uint64_t chunks, std::uint64_t stride, std::uint64_t words) noexcept {
  DataGeometry g{};
  g.ring_offset = sizeof(DataHeader);
  g.control_offset = round_page(g.ring_offset + chunks * sizeof(RingEntry));
  g.chunks_offset = round_page(g.control_offset + chunks * words * 8);
  g.total = round_page(g.chunks_offset + chunks * stride);
  return g;
}

}  // namespace ipcx::shm::zc_layout
