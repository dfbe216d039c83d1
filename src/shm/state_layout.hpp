// The bytes of a shared state file (docs/shm.md, "Shared state"). The writer's fields are read
// by readers as untrusted: see state.cpp for the checks.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ipcx::shm::state_layout {

// "IPCXSTA1" read as a little-endian 64-bit integer.
inline constexpr std::uint64_t kMagic = 0x3141545358435049ull;
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint32_t kSlots = 4;
inline constexpr std::size_t kSlotHeader = 64;

struct Header {
  std::atomic<std::uint64_t> magic;  // 0: written last (release) by the creator
  std::uint32_t version;             // 8
  std::uint32_t header_size;         // 12: sizeof(Header)
  std::uint64_t total_size;          // 16: the file's size
  std::uint64_t type_hash;           // 24: 0 for bytes
  std::uint64_t capacity;            // 32: the largest value
  std::uint32_t slots;               // 40: kSlots
  std::int32_t writer_pid;           // 44: the last writer (informative)
  std::uint64_t slot_size;           // 48: kSlotHeader + capacity rounded up to 64
  std::uint64_t reserved;            // 56
  alignas(64) std::atomic<std::uint64_t> latest;  // 64: version of the latest complete value (0: none)
  std::atomic<std::uint32_t> change;              // 72: futex word, +1 per store
};
static_assert(offsetof(Header, latest) == 64 && offsetof(Header, change) == 72 && sizeof(Header) == 128);

struct Slot {
  std::atomic<std::uint64_t> seq;     // 2v+1 while value v is written, 2v+2 once complete
  std::atomic<std::uint64_t> length;  // bytes of the value
  // data at kSlotHeader
};

constexpr std::uint64_t slot_size(std::uint64_t capacity) noexcept { return kSlotHeader + (capacity + 63) / 64 * 64; }
constexpr std::uint64_t file_bytes(std::uint64_t capacity) noexcept { return sizeof(Header) + kSlots * slot_size(capacity); }

}  // namespace ipcx::shm::state_layout
