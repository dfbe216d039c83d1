// The one wait loop of the shared-memory endpoints: spin, sleep on a futex, or spin then sleep
// (WaitPolicy), up to a deadline, noticing a dead peer and a local shutdown.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include <ipcx/error.hpp>

#include "os/futex.hpp"
#include "os/sys.hpp"
#include "shm/ring.hpp"
#include "sync/spin.hpp"

namespace ipcx::shm {

// The longest one futex sleep lasts before the peer's liveness is checked again: a peer that
// dies (SIGKILL) wakes nobody, so a sleeper finds out within this.
inline constexpr std::chrono::milliseconds kLivenessSlice{20};
// While spinning, how often the clock (deadline, spin budget) and the peer's liveness are read.
inline constexpr unsigned kSpinsPerClockRead = 256;
inline constexpr std::chrono::milliseconds kSpinLivenessEvery{1};

// What a side waits on. `ready()` is the condition; `arm(how)` sets the sleep bits and returns
// the futex value; `disarm()` takes the futex bit back; `alive()` is false once the peer is
// gone; `stopping` is set by a local shutdown.
template <class Ready, class Arm, class Disarm, class Alive>
Result<void> wait_until(const WaitPolicy& policy, const os::Deadline& deadline, Ready&& ready, Arm&& arm,
                        Disarm&& disarm, std::atomic<std::uint32_t>& futex_word, Alive&& alive,
                        const std::atomic<bool>& stopping, const char* op) {
  using Clock = std::chrono::steady_clock;
  if (ready()) return {};
  if (deadline.immediate()) return fail(Errc::would_block, op);
  if (policy.mode != WaitMode::block) {
    const auto start = Clock::now();
    auto next_liveness = start + kSpinLivenessEvery;
    for (unsigned i = 1;; ++i) {
      if (ready()) return {};
      sync::cpu_relax();
      if (i % kSpinsPerClockRead != 0) continue;
      if (stopping.load(std::memory_order_relaxed)) return fail(Errc::closed, op, "connection closed");
      const auto now = Clock::now();
      if (deadline.expired()) return fail(Errc::timeout, op);
      if (now >= next_liveness) {
        if (!alive()) return ready() ? Result<void>{} : fail(Errc::closed, op, "the peer is gone");
        next_liveness = now + kSpinLivenessEvery;
      }
      if (policy.mode == WaitMode::hybrid && now - start >= policy.spin) break;
    }
  }
  for (;;) {
    const std::uint32_t seq = arm(ring::kWakeFutex);
    if (ready()) {
      disarm();
      return {};
    }
    if (stopping.load(std::memory_order_relaxed)) return fail(Errc::closed, op, "connection closed");
    Timeout slice = kLivenessSlice;
    if (!deadline.infinite()) slice = std::min<Timeout>(slice, deadline.remaining());
    if (slice > Timeout::zero()) (void)os::futex_wait(futex_word, seq, slice);
    if (ready()) return {};
    if (stopping.load(std::memory_order_relaxed)) return fail(Errc::closed, op, "connection closed");
    if (deadline.expired()) {
      disarm();
      return fail(Errc::timeout, op);
    }
    if (!alive()) return ready() ? Result<void>{} : fail(Errc::closed, op, "the peer is gone");
  }
}

}  // namespace ipcx::shm
