// The segment's heap: first-fit over a free list sorted by offset, coalescing on free. Works on
// offsets from the segment's start only. Callers hold the segment's directory lock.
//
// Every offset and size is read from shared memory once, into a local, and checked against the
// segment before use: a process may have died mid-update or written garbage on purpose. A check
// that fails returns Errc::protocol; nothing is dereferenced outside [0, total).
#pragma once

#include <cstddef>
#include <cstdint>

#include <ipcx/error.hpp>

#include "shm/layout.hpp"

namespace ipcx::shm::heap {

// One free block spanning [begin, end).
void init(std::byte* base, layout::Heap& heap, std::uint64_t begin, std::uint64_t end) noexcept;
// The payload offset of a new block of at least `size` bytes aligned to `align` (a power of two
// up to 4096). Errors: invalid_argument, resource_exhausted, protocol.
Result<std::uint64_t> allocate(std::byte* base, layout::Heap& heap, std::uint64_t total, std::size_t size,
                               std::size_t align);
// Frees a payload offset allocate() returned. Errors: invalid_argument (not an allocated block),
// protocol.
Result<void> deallocate(std::byte* base, layout::Heap& heap, std::uint64_t total, std::uint64_t payload);
// Walks every block from begin to end and the free list alongside: both must agree, and the
// free byte count must match. Errors: protocol.
Result<void> check(const std::byte* base, const layout::Heap& heap, std::uint64_t total);

}  // namespace ipcx::shm::heap
