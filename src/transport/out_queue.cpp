#include "transport/out_queue.hpp"

#include <algorithm>
#include <cstring>

#include <fcntl.h>

namespace ipcx::transport {

namespace {
constexpr std::size_t kMinBuffer = 4096;
}

Result<std::vector<Fd>> duplicate_for_queue(std::span<const int> fds) {
  std::vector<Fd> dups;
  for (int fd : fds) {
    int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) return fail_errno(errno, "send", "duplicating a descriptor to queue");
    dups.emplace_back(d);
  }
  return dups;
}

bool OutQueue::push(std::span<const std::byte> a, std::span<const std::byte> b, std::vector<Fd> fds) {
  const std::size_t need = a.size() + b.size();
  if (buf_.capacity() - tail_ < need) {
    const std::size_t held = tail_ - head_;
    if (buf_.capacity() - held >= need) {
      buf_.move_to_front(head_, tail_);
    } else if (!buf_.reallocate(std::max({kMinBuffer, held + need, buf_.capacity() + buf_.capacity() / 2}), head_,
                                tail_)) {  // by half at least: appends stay amortised
      return false;
    }
    rebase();
  }
  if (!a.empty()) std::memcpy(buf_.data() + tail_, a.data(), a.size());
  if (!b.empty()) std::memcpy(buf_.data() + tail_ + a.size(), b.data(), b.size());
  if (mode_ == Mode::records || !fds.empty()) entries_.push_back({tail_, tail_ + need, std::move(fds)});
  tail_ += need;
  return true;
}

OutQueue::Chunk OutQueue::next() const {
  Chunk c;
  if (empty()) return c;
  const std::byte* base = buf_.data();
  if (mode_ == Mode::records) {
    const auto& e = entries_.front();
    c.bytes = {base + e.start, e.end - e.start};
    for (auto& f : e.fds) c.fds.push_back(f.get());
    return c;
  }
  std::size_t end = tail_;
  std::size_t i = 0;
  if (!entries_.empty() && entries_.front().start == head_) {
    for (auto& f : entries_.front().fds) c.fds.push_back(f.get());
    i = 1;
  }
  if (i < entries_.size()) end = entries_[i].start;
  c.bytes = {base + head_, end - head_};
  return c;
}

void OutQueue::consume(std::size_t n) noexcept {
  if (mode_ == Mode::records) {
    if (!entries_.empty()) entries_.pop_front();
    head_ = entries_.empty() ? tail_ : entries_.front().start;
  } else {
    head_ = std::min(head_ + n, tail_);
    // An entry whose first byte is out has had its descriptors sent with it.
    while (!entries_.empty() && entries_.front().start < head_) entries_.pop_front();
  }
  if (head_ == tail_) {
    head_ = tail_ = 0;
    entries_.clear();
  }
}

void OutQueue::clear() noexcept {
  entries_.clear();
  head_ = tail_ = 0;
}

void OutQueue::rollback(std::size_t size_before) noexcept {
  if (size_before >= size()) return;
  tail_ -= size() - size_before;
  while (!entries_.empty() && entries_.back().start >= tail_) entries_.pop_back();
  if (head_ == tail_) clear();
}

void OutQueue::trim() noexcept {
  if (empty()) {
    clear();
    buf_.release();
    return;
  }
  const std::size_t held = tail_ - head_;
  // As for receive buffers: shrink only far-oversized buffers, and keep room to grow.
  if (buf_.capacity() <= std::max(kMinBuffer, 4 * held)) return;
  if (buf_.reallocate(std::max(2 * held, kMinBuffer), head_, tail_)) rebase();
}

void OutQueue::rebase() noexcept {
  for (auto& e : entries_) {
    e.start -= head_;
    e.end -= head_;
  }
  tail_ -= head_;
  head_ = 0;
}

}  // namespace ipcx::transport
