// The reactor's timers: deadlines kept in process memory, so a timer costs no descriptor and
// can be armed while the process is out of them (the moment a server needs a back-off timer).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ipcx/timeout.hpp>

namespace ipcx::os {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Id = std::uint64_t;

  // now + t, saturating: `forever` (or anything past the clock's range) never comes.
  static Clock::time_point later(Clock::time_point now, Timeout t) noexcept {
    if (t <= Timeout::zero()) return now;
    if (t >= Clock::time_point::max() - now) return Clock::time_point::max();
    return now + std::chrono::duration_cast<Clock::duration>(t);
  }

  void add(Id id, Clock::time_point due, Timeout interval, std::function<void()> cb) {
    timers_.emplace(id, Timer{.due = due, .interval = interval, .cb = std::move(cb)});
    queue_.emplace(due, id);
  }

  bool contains(Id id) const noexcept { return timers_.contains(id); }

  // False when `id` is not a live timer.
  bool remove(Id id) noexcept {
    auto it = timers_.find(id);
    if (it == timers_.end()) return false;
    queue_.erase({it->second.due, id});
    timers_.erase(it);  // a callback running right now holds its own copy (see run_due)
    return true;
  }

  // Moves the next expiry; the interval is unchanged. False when `id` is not a live timer.
  bool rearm(Id id, Clock::time_point due) noexcept {
    auto it = timers_.find(id);
    if (it == timers_.end()) return false;
    move(id, it->second, due);
    return true;
  }

  // The earliest deadline, if any timer can still fire.
  std::optional<Clock::time_point> next_due() const noexcept {
    if (queue_.empty() || queue_.begin()->first == Clock::time_point::max()) return std::nullopt;
    return queue_.begin()->first;
  }

  // Fires every timer due at `now`, earliest deadline first, each at most once: a periodic
  // timer that fell behind fires once and counts its next period from now, and a timer armed
  // (or re-armed) by one of these callbacks waits for the next call, so a callback that keeps
  // re-arming itself for "now" cannot hold the loop here. Callbacks may add, remove and
  // re-arm any timer, their own included. Returns how many callbacks ran.
  int run_due(Clock::time_point now) {
    std::vector<Id> batch = std::exchange(spare_, {});
    batch.clear();
    for (auto it = queue_.begin(); it != queue_.end() && it->first <= now; ++it) batch.push_back(it->second);
    int fired = 0;
    for (Id id : batch) {
      auto it = timers_.find(id);
      if (it == timers_.end()) continue;  // removed by an earlier callback of this batch
      Timer& t = it->second;
      if (t.due > now) continue;          // pushed back by an earlier callback of this batch
      // The callback runs out of its registration: it may remove (destroy) it meanwhile.
      std::function<void()> cb = std::exchange(t.cb, nullptr);
      const bool periodic = t.interval > Timeout::zero();
      if (periodic) {
        // Drift-free while the loop keeps up; counted from now once it has fallen behind.
        auto next = later(t.due, t.interval);
        if (next <= now) next = later(now, t.interval);
        move(id, t, next);
      } else {
        remove(id);  // a one-shot is gone before its callback runs, whatever the callback does
      }
      if (!cb) continue;  // already running further up the stack (run_once inside a callback)
      ++fired;
      cb();
      if (periodic)
        if (auto again = timers_.find(id); again != timers_.end()) again->second.cb = std::move(cb);
    }
    if (batch.capacity() > spare_.capacity()) spare_ = std::move(batch);
    return fired;
  }

  std::size_t size() const noexcept { return timers_.size(); }

 private:
  struct Timer {
    Clock::time_point due;
    Timeout interval;
    std::function<void()> cb;
  };

  void move(Id id, Timer& t, Clock::time_point due) noexcept {
    // Reuses the node: re-arming on every message allocates nothing.
    auto node = queue_.extract({t.due, id});
    node.value().first = due;
    queue_.insert(std::move(node));
    t.due = due;
  }

  std::unordered_map<Id, Timer> timers_;
  std::set<std::pair<Clock::time_point, Id>> queue_;  // (deadline, id): ties fire in id order
  std::vector<Id> spare_;                              // run_due's batch buffer, kept between calls
};

}  // namespace ipcx::os
