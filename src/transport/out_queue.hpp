// Bytes waiting to be written: the rest of a frame a deadline cut short, and whole frames a
// server queued without blocking. One contiguous buffer, so a flush writes many frames with one
// system call; descriptors ride with the first byte of their frame.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

#include "wire/budget.hpp"

namespace ipcx::transport {

// Duplicates `fds` for a message that waits in a queue (the caller keeps its own).
Result<std::vector<Fd>> duplicate_for_queue(std::span<const int> fds);

class OutQueue {
 public:
  enum class Mode {
    stream,   // consecutive frames may go out in one write
    records,  // one entry per write (SOCK_SEQPACKET records)
  };
  explicit OutQueue(Mode mode) noexcept : mode_(mode) {}

  // Appends one entry made of `a` then `b`, with `fds` to send alongside its first byte.
  // False when the memory budget refuses the bytes (nothing is appended).
  bool push(std::span<const std::byte> a, std::span<const std::byte> b, std::vector<Fd> fds = {});

  // What to write next: stream mode, bytes up to the next entry that carries descriptors;
  // records mode, exactly one entry. `fds` is non-empty only when `bytes` starts such an entry.
  struct Chunk {
    std::span<const std::byte> bytes;
    std::vector<int> fds;
  };
  Chunk next() const;
  // `n` bytes of next().bytes were written (records: the whole entry).
  void consume(std::size_t n) noexcept;

  bool empty() const noexcept { return head_ == tail_; }
  std::size_t size() const noexcept { return tail_ - head_; }  // bytes waiting
  void clear() noexcept;
  // Takes back what was pushed since size() was `size_before` (a message that did not fit whole).
  void rollback(std::size_t size_before) noexcept;
  // Frees the buffer when empty, or shrinks it toward what it holds.
  void trim() noexcept;
  void set_budget(std::shared_ptr<wire::MemoryBudget> budget) noexcept { buf_.charge().attach(std::move(budget)); }

 private:
  struct Entry {
    std::size_t start, end;  // offsets into buf_
    std::vector<Fd> fds;
  };
  // The bytes [head_, tail_) have just moved to the start of the buffer: offsets follow.
  void rebase() noexcept;

  Mode mode_;
  wire::Buffer buf_;
  std::size_t head_ = 0, tail_ = 0;
  // Stream mode: only entries that carry descriptors. Records mode: every entry.
  std::deque<Entry> entries_;
};

}  // namespace ipcx::transport
