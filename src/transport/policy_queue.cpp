#include "transport/policy_queue.hpp"

#include <algorithm>

namespace ipcx::transport {
namespace {
constexpr std::size_t kSpareBuffers = 64;        // popped buffers kept for reuse
constexpr std::size_t kSpareBufferMax = 64 * 1024;  // larger buffers are freed, not kept
}  // namespace

bool PolicyQueue::has_room(std::size_t n) const noexcept {
  if (opts_.capacity == 0) return false;
  if (opts_.capacity != unbounded && items_.size() >= opts_.capacity) return false;
  return n <= opts_.memory_cap && bytes_ <= opts_.memory_cap - n;
}

PolicyQueue::Offer PolicyQueue::offer(std::span<const std::byte> data) {
  if (data.size() > opts_.memory_cap) return Offer::too_large;
  if (!has_room(data.size())) {
    switch (opts_.overflow) {
      case Overflow::block: return Offer::full;
      case Overflow::fail: ++dropped_.refused; return Offer::refused;
      case Overflow::drop_newest: ++dropped_.newest; return Offer::dropped;
      case Overflow::drop_oldest:
        if (opts_.capacity == 0) {  // nothing is ever held: the newest is the oldest
          ++dropped_.oldest;
          return Offer::dropped;
        }
        while (!items_.empty() && !has_room(data.size())) drop_front(&DropCounts::oldest);
        break;
    }
  }
  std::vector<std::byte> buf;
  if (!spare_.empty()) {
    buf = std::move(spare_.back());
    spare_.pop_back();
  }
  buf.assign(data.begin(), data.end());
  bytes_ += data.size();
  items_.push_back(std::move(buf));
  return Offer::queued;
}

void PolicyQueue::pop() {
  auto& f = items_.front();
  bytes_ -= f.size();
  if (spare_.size() < kSpareBuffers && f.capacity() <= kSpareBufferMax) spare_.push_back(std::move(f));
  items_.pop_front();
}

void PolicyQueue::drop_front(std::uint64_t DropCounts::*reason) {
  ++(dropped_.*reason);
  pop();
}

std::uint64_t PolicyQueue::drop_all(std::uint64_t DropCounts::*reason) {
  const auto n = static_cast<std::uint64_t>(items_.size());
  while (!items_.empty()) drop_front(reason);
  return n;
}

}  // namespace ipcx::transport
