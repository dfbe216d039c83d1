// The bytes of an event file (docs/shm.md, "Events"). Every field is writable by every process
// that opens the event: see event.cpp for what is checked and what cannot do harm.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <ipcx/event.hpp>

namespace ipcx::shm::event_layout {

// "IPCXEVT1" read as a little-endian 64-bit integer.
inline constexpr std::uint64_t kMagic = 0x3154564558435049ull;
inline constexpr std::uint32_t kVersion = 2;  // 2: a slot names its listener's uid
inline constexpr std::uint32_t kWords = (kMaxEventId + 1) / 64;
inline constexpr std::uint32_t kFree = 0, kActive = 1;

struct Header {
  std::atomic<std::uint64_t> magic;  // 0: written last (release) by the creator
  std::uint32_t version;             // 8
  std::uint32_t header_size;         // 12: sizeof(Header)
  std::uint64_t total_size;          // 16: the file's size
  std::uint32_t max_listeners;       // 24: slots
  std::uint32_t max_id;              // 28: kMaxEventId
  std::uint64_t slot_size;           // 32: sizeof(Slot)
  std::uint8_t reserved[88];         // 40
};
static_assert(sizeof(Header) == 128);

struct Slot {
  std::atomic<std::uint32_t> state;      // 0: kFree / kActive
  std::atomic<std::uint32_t> signalled;  // 4: 1 once a notifier sent the wake-up datagram
  std::int32_t pid;                      // 8: the listener (informative)
  std::uint32_t uid;                     // 12: the listener's euid (its wake-up socket's name has it)
  std::atomic<std::uint64_t> token;      // 16: names the wake-up socket @ipcx-ev.<uid>.<token hex>
  std::uint8_t reserved1[40];            // 24
  std::atomic<std::uint64_t> pending[kWords];  // 64: bit i of word w: id 64w + i is pending
};
static_assert(sizeof(Slot) == 64 + 8 * kWords && offsetof(Slot, pending) == 64);

constexpr std::uint64_t file_bytes(std::uint64_t slots) noexcept { return sizeof(Header) + slots * sizeof(Slot); }

}  // namespace ipcx::shm::event_layout
