// Accounting for buffered bytes: a cap shared by many owners (a server's connections), and the
// exact allocation each owner holds against it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <utility>

namespace ipcx::wire {

// A limit on the bytes held by all the buffers charged to it. Thread-safe.
class MemoryBudget {
 public:
  explicit MemoryBudget(std::size_t limit) noexcept : limit_(limit) {}

  // Takes `n` bytes of the budget; false (and nothing taken) when that would pass the limit.
  bool try_acquire(std::size_t n) noexcept {
    auto cur = used_.load(std::memory_order_relaxed);
    do {
      if (cur > limit_ || n > limit_ - cur) return false;
    } while (!used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
    note_peak(cur + n);
    return true;
  }
  // Takes `n` bytes even past the limit (memory that already exists and must be accounted).
  void force_acquire(std::size_t n) noexcept { note_peak(used_.fetch_add(n, std::memory_order_relaxed) + n); }
  void release(std::size_t n) noexcept { used_.fetch_sub(n, std::memory_order_relaxed); }

  std::size_t used() const noexcept { return used_.load(std::memory_order_relaxed); }
  std::size_t peak() const noexcept { return peak_.load(std::memory_order_relaxed); }
  std::size_t limit() const noexcept { return limit_; }

 private:
  void note_peak(std::size_t v) noexcept {
    auto p = peak_.load(std::memory_order_relaxed);
    while (v > p && !peak_.compare_exchange_weak(p, v, std::memory_order_relaxed)) {
    }
  }
  const std::size_t limit_;
  std::atomic<std::size_t> used_{0};
  std::atomic<std::size_t> peak_{0};
};

// The bytes one owner holds, charged to an optional shared budget (none: unlimited).
class Charge {
 public:
  Charge() noexcept = default;
  Charge(Charge&& o) noexcept : budget_(std::move(o.budget_)), held_(std::exchange(o.held_, 0)) {}
  Charge& operator=(Charge&& o) noexcept {
    if (this != &o) {
      reset();
      budget_ = std::move(o.budget_);
      held_ = std::exchange(o.held_, 0);
    }
    return *this;
  }
  Charge(const Charge&) = delete;
  Charge& operator=(const Charge&) = delete;
  ~Charge() { reset(); }

  // Moves what is held onto `budget` (forcibly: the memory exists already).
  void attach(std::shared_ptr<MemoryBudget> budget) noexcept {
    if (budget_) budget_->release(held_);
    budget_ = std::move(budget);
    if (budget_) budget_->force_acquire(held_);
  }
  // Records that the owner now holds `bytes`; false when growing is refused (nothing changes).
  bool resize(std::size_t bytes) noexcept {
    if (bytes > held_) {
      if (budget_ && !budget_->try_acquire(bytes - held_)) return false;
    } else if (budget_) {
      budget_->release(held_ - bytes);
    }
    held_ = bytes;
    return true;
  }
  // Same, never refused: for a moment's overlap that ends with less held (a shrinking copy).
  void force_resize(std::size_t bytes) noexcept {
    if (budget_ && bytes > held_) budget_->force_acquire(bytes - held_);
    else if (budget_) budget_->release(held_ - bytes);
    held_ = bytes;
  }
  std::size_t held() const noexcept { return held_; }

 private:
  void reset() noexcept {
    if (budget_) budget_->release(held_);
    held_ = 0;
  }
  std::shared_ptr<MemoryBudget> budget_;
  std::size_t held_ = 0;
};

// A byte array whose allocation is exactly its capacity (no vector-style over-allocation, no
// zero-filling) and is charged to a budget.
class Buffer {
 public:
  std::byte* data() const noexcept { return data_.get(); }
  std::size_t capacity() const noexcept { return cap_; }

  // Reallocates to exactly `cap` bytes, moving [from, to) of the old contents to the start.
  // False when the budget refuses a growth; the buffer is then unchanged.
  bool reallocate(std::size_t cap, std::size_t from, std::size_t to) {
    if (cap == cap_ && from == 0) return true;
    // Both exist during the copy. A shrink is never refused: it ends with less memory held.
    if (cap < cap_) charge_.force_resize(cap + cap_);
    else if (!charge_.resize(cap + cap_)) return false;
    std::unique_ptr<std::byte[]> fresh;
    if (cap > 0) fresh = std::make_unique_for_overwrite<std::byte[]>(cap);
    if (to > from) std::copy(data_.get() + from, data_.get() + to, fresh.get());
    data_ = std::move(fresh);
    cap_ = cap;
    charge_.resize(cap);
    return true;
  }
  // Moves [from, to) to the start, in place.
  void move_to_front(std::size_t from, std::size_t to) noexcept {
    if (from > 0 && to > from) std::memmove(data_.get(), data_.get() + from, to - from);
  }
  void release() noexcept {
    data_.reset();
    cap_ = 0;
    charge_.resize(0);
  }
  Charge& charge() noexcept { return charge_; }

 private:
  std::unique_ptr<std::byte[]> data_;
  std::size_t cap_ = 0;
  Charge charge_;
};

}  // namespace ipcx::wire
