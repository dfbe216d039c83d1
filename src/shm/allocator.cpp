#include "shm/allocator.hpp"

#include <atomic>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace ipcx::shm::heap {
namespace {
using layout::Block;
using layout::kBlockAlign;
using layout::kBlockHeader;
using layout::kUsedTag;

// Bounds every heap field must satisfy before any block is read.
struct Bounds {
  std::uint64_t begin, end;
};

Result<Bounds> bounds(const layout::Heap& h, std::uint64_t total) {
  // One read per field: another process may change them under our feet.
  std::uint64_t begin = std::atomic_ref(const_cast<std::uint64_t&>(h.begin)).load(std::memory_order_relaxed);
  std::uint64_t end = std::atomic_ref(const_cast<std::uint64_t&>(h.end)).load(std::memory_order_relaxed);
  if (begin != layout::kHeapBegin || end != total || begin >= end)
    return fail(Errc::protocol, "segment heap", fmt::format("heap bounds [{}, {}) in a segment of {} bytes", begin, end, total));
  return Bounds{begin, end};
}

Block read_block(const std::byte* base, std::uint64_t at) noexcept {
  Block b;
  std::memcpy(&b, base + at, sizeof b);
  return b;
}
void write_block(std::byte* base, std::uint64_t at, Block b) noexcept { std::memcpy(base + at, &b, sizeof b); }

// A block header at `at` whose size keeps it inside the heap.
Result<Block> checked_block(const std::byte* base, Bounds r, std::uint64_t at, const char* what) {
  if (at < r.begin || at >= r.end || at % kBlockAlign != 0 || r.end - at < kBlockHeader)
    return fail(Errc::protocol, "segment heap", fmt::format("{} at offset {} outside the heap", what, at));
  Block b = read_block(base, at);
  if (b.size < kBlockHeader || b.size % kBlockAlign != 0 || b.size > r.end - at)
    return fail(Errc::protocol, "segment heap", fmt::format("{} at offset {} has size {}", what, at, b.size));
  return b;
}

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) noexcept { return (v + a - 1) / a * a; }

}  // namespace

void init(std::byte* base, layout::Heap& heap, std::uint64_t begin, std::uint64_t end) noexcept {
  write_block(base, begin, {end - begin, 0});
  heap.begin = begin;
  heap.end = end;
  heap.free_head = begin;
  heap.free_bytes = end - begin;
  heap.broken = 0;
}

Result<std::uint64_t> allocate(std::byte* base, layout::Heap& heap, std::uint64_t total, std::size_t size,
                               std::size_t align) {
  if (size == 0) return fail(Errc::invalid_argument, "segment allocate", "zero size");
  if (align == 0 || (align & (align - 1)) != 0 || align > 4096)
    return fail(Errc::invalid_argument, "segment allocate", fmt::format("alignment {} (a power of two up to 4096)", align));
  auto r = bounds(heap, total);
  if (!r) return std::unexpected(r.error());
  if (size > r->end - r->begin)
    return fail(Errc::resource_exhausted, "segment allocate", fmt::format("{} bytes: larger than the segment", size));
  std::uint64_t payload_size = round_up(size, kBlockAlign);
  if (align < kBlockAlign) align = kBlockAlign;

  std::uint64_t prev = 0;  // 0: the list head
  std::uint64_t cur = heap.free_head;
  std::uint64_t floor = r->begin;  // sorted and disjoint: each block starts at or after this
  while (cur != 0) {
    if (cur < floor)
      return fail(Errc::protocol, "segment heap", fmt::format("free list out of order at offset {}", cur));
    auto b = checked_block(base, *r, cur, "free block");
    if (!b) return std::unexpected(b.error());
    std::uint64_t payload = round_up(cur + kBlockHeader, align);
    std::uint64_t pad = payload - kBlockHeader - cur;
    if (pad + kBlockHeader + payload_size <= b->size) {
      std::uint64_t at = cur + pad;
      std::uint64_t rest = b->size - pad - kBlockHeader - payload_size;
      std::uint64_t used = kBlockHeader + payload_size;
      std::uint64_t after = b->link;
      if (rest >= kBlockHeader) {
        after = at + used;
        write_block(base, after, {rest, b->link});
      } else {
        used += rest;
      }
      if (pad > 0) {
        write_block(base, cur, {pad, after});  // the leading pad stays free, in place
      } else if (prev == 0) {
        heap.free_head = after;
      } else {
        Block p = read_block(base, prev);
        write_block(base, prev, {p.size, after});
      }
      write_block(base, at, {used, kUsedTag ^ at});
      heap.free_bytes -= std::min<std::uint64_t>(heap.free_bytes, used);
      return at + kBlockHeader;
    }
    prev = cur;
    floor = cur + b->size;
    cur = b->link;
  }
  return fail(Errc::resource_exhausted, "segment allocate",
              fmt::format("no free block of {} bytes aligned to {}", size, align));
}

Result<void> deallocate(std::byte* base, layout::Heap& heap, std::uint64_t total, std::uint64_t payload) {
  auto r = bounds(heap, total);
  if (!r) return std::unexpected(r.error());
  if (payload < r->begin + kBlockHeader || payload >= r->end || payload % kBlockAlign != 0)
    return fail(Errc::invalid_argument, "segment deallocate", fmt::format("offset {} was not allocated", payload));
  std::uint64_t at = payload - kBlockHeader;
  Block b = read_block(base, at);
  if (b.link != (kUsedTag ^ at))
    return fail(Errc::invalid_argument, "segment deallocate",
                fmt::format("offset {} is not an allocated block (never allocated, or freed already)", payload));
  auto checked = checked_block(base, *r, at, "allocated block");
  if (!checked) return std::unexpected(checked.error());
  std::uint64_t size = checked->size;

  // Find the free neighbours: prev < at < next.
  std::uint64_t prev = 0, prev_size = 0;
  std::uint64_t next = heap.free_head;
  std::uint64_t floor = r->begin;
  Block next_block{};
  while (next != 0) {
    if (next < floor)
      return fail(Errc::protocol, "segment heap", fmt::format("free list out of order at offset {}", next));
    auto nb = checked_block(base, *r, next, "free block");
    if (!nb) return std::unexpected(nb.error());
    if (next >= at) {
      if (next < at + size)
        return fail(Errc::protocol, "segment heap", fmt::format("free block {} overlaps allocated block {}", next, at));
      next_block = *nb;
      break;
    }
    if (next + nb->size > at)
      return fail(Errc::protocol, "segment heap", fmt::format("free block {} overlaps allocated block {}", next, at));
    prev = next;
    prev_size = nb->size;
    floor = next + nb->size;
    next = nb->link;
  }

  std::uint64_t merged_size = size;
  std::uint64_t link = next;
  if (next != 0 && at + size == next) {
    merged_size += next_block.size;
    link = next_block.link;
  }
  if (prev != 0 && prev + prev_size == at) {
    write_block(base, prev, {prev_size + merged_size, link});
    write_block(base, at, {0, 0});  // no stale tag: a second free of this offset is refused
  } else {
    write_block(base, at, {merged_size, link});
    if (prev == 0) heap.free_head = at;
    else write_block(base, prev, {prev_size, at});
  }
  heap.free_bytes += size;
  return {};
}

Result<void> check(const std::byte* base, const layout::Heap& heap, std::uint64_t total) {
  auto r = bounds(heap, total);
  if (!r) return std::unexpected(r.error());
  std::uint64_t next_free = heap.free_head;
  std::uint64_t free_sum = 0;
  std::uint64_t at = r->begin;
  while (at < r->end) {
    auto b = checked_block(base, *r, at, "block");
    if (!b) return std::unexpected(b.error());
    if (at == next_free) {
      free_sum += b->size;
      next_free = b->link;
      if (next_free != 0 && next_free <= at)
        return fail(Errc::protocol, "segment heap", fmt::format("free list goes backwards at offset {}", at));
    } else if (b->link != (kUsedTag ^ at)) {
      return fail(Errc::protocol, "segment heap", fmt::format("block at offset {} is neither free nor allocated", at));
    }
    at += b->size;
  }
  if (next_free != 0)
    return fail(Errc::protocol, "segment heap", fmt::format("free list names offset {}, not a block start", next_free));
  if (free_sum != heap.free_bytes)
    return fail(Errc::protocol, "segment heap", fmt::format("{} bytes free, header says {}", free_sum, heap.free_bytes));
  return {};
}

}  // namespace ipcx::shm::heap
