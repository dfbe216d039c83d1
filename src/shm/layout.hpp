// The bytes of a segment, as docs/segment.md describes them. Every field other processes may
// write is read as untrusted: see allocator.cpp and segment.cpp for the checks.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <ipcx/segment.hpp>
#include <ipcx/sync.hpp>

namespace ipcx::shm::layout {

// "IPCXSEG1" read as a little-endian 64-bit integer.
inline constexpr std::uint64_t kMagic = 0x3147455358435049ull;
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kNameField = 208;   // Segment::kMaxName bytes + NUL, padded
inline constexpr std::size_t kObjectNameField = 64;
inline constexpr std::uint64_t kBlockAlign = 16;
inline constexpr std::uint64_t kBlockHeader = 16;
// An allocated block's tag is kUsedTag ^ its own offset: a stray offset or a freed block does
// not carry it, so deallocate() can tell.
inline constexpr std::uint64_t kUsedTag = 0x4b4c424445535549ull;  // "IUSEDBLK"

enum EntryState : std::uint32_t { entry_free = 0, entry_constructing = 1, entry_ready = 2 };

struct Entry {
  char name[kObjectNameField];  // NUL-terminated, at most Segment::kMaxObjectName bytes
  std::uint64_t offset;         // of the object from the segment's start
  std::uint64_t size;           // bytes reserved for it (== type_size)
  std::uint64_t type_hash;      // FNV-1a 64 of typeid(T).name()
  std::uint32_t type_size;
  std::uint32_t type_align;
  std::uint32_t state;          // EntryState
  std::uint32_t reserved;
};
static_assert(sizeof(Entry) == 104);

// Allocator state: a free list of blocks sorted by offset (docs/segment.md, "Allocator").
struct Heap {
  std::uint64_t begin;       // offset of the first block
  std::uint64_t end;         // one past the last block (== total_size)
  std::uint64_t free_head;   // offset of the first free block, 0 when none
  std::uint64_t free_bytes;  // sum of free block sizes, headers included
  std::uint32_t broken;      // 1: repair found the heap inconsistent; allocation refused
  std::uint32_t reserved;
};
static_assert(sizeof(Heap) == 40);

struct Header {
  std::atomic<std::uint64_t> magic;  // written last (release) by the creator
  std::uint32_t version;
  std::uint32_t header_size;         // sizeof(Header)
  std::uint64_t total_size;          // the file's size
  std::int32_t creator_pid;
  std::uint32_t reserved0;
  std::uint64_t creator_start;       // field 22 of /proc/<pid>/stat (clock ticks since boot)
  char name[kNameField];             // the name given to create(), NUL-terminated
  Mutex lock;                        // guards directory and heap
  Heap heap;
  std::uint32_t object_count;        // ready + constructing entries (informative)
  std::uint32_t reserved1;
  Entry directory[Segment::kMaxObjects];
};

static_assert(offsetof(Header, magic) == 0);
static_assert(offsetof(Header, version) == 8);
static_assert(offsetof(Header, header_size) == 12);
static_assert(offsetof(Header, total_size) == 16);
static_assert(offsetof(Header, creator_pid) == 24);
static_assert(offsetof(Header, creator_start) == 32);
static_assert(offsetof(Header, name) == 40);
static_assert(offsetof(Header, lock) == 248);
static_assert(sizeof(Mutex) == 48);
static_assert(offsetof(Header, heap) == 296);
static_assert(offsetof(Header, object_count) == 336);
static_assert(offsetof(Header, directory) == 344);
static_assert(sizeof(Header) == 344 + 104 * Segment::kMaxObjects);
static_assert(sizeof(Header) == 7000);  // docs/segment.md
static_assert(Segment::kMaxName + 1 <= kNameField);
static_assert(Segment::kMaxObjectName + 1 == kObjectNameField);

// Heap blocks start after the header, 16-aligned; 64 keeps the first object on its own line.
inline constexpr std::uint64_t kHeapBegin = (sizeof(Header) + 63) / 64 * 64;
static_assert(kHeapBegin == 7040);  // docs/segment.md

// Block header: size (bytes, header included, multiple of 16) then either the next free
// block's offset (free) or kUsedTag ^ own offset (allocated).
struct Block {
  std::uint64_t size;
  std::uint64_t link;
};
static_assert(sizeof(Block) == kBlockHeader);

}  // namespace ipcx::shm::layout
