// Spinning before sleeping: the one wait loop of the shared-memory primitives.
#pragma once

#include <chrono>
#include <cstdint>

#include <ipcx/sync.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::sync {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// The longest a blocked call sleeps before it looks again, even unwoken: a process that a
// wake-up was meant for may be killed before acting on it, and must not strand the others.
inline constexpr Timeout kSleepSlice = CondVar::kRecheck;

// A deadline on the monotonic clock; `forever` never expires.
class Until {
 public:
  explicit Until(Timeout t) noexcept : forever_(t == ipcx::forever), at_(detail::deadline_after(t)) {}
  bool forever() const noexcept { return forever_; }
  // Time left (never negative); `forever` when unbounded.
  Timeout left() const noexcept {
    if (forever_) return ipcx::forever;
    auto d = at_ - Clock::now();
    return d < Timeout::zero() ? Timeout::zero() : std::chrono::duration_cast<Timeout>(d);
  }
  bool passed() const noexcept { return !forever_ && Clock::now() >= at_; }
  // How long the next sleep may be: what is left, at most `cap`.
  Timeout slice(Timeout cap = kSleepSlice) const noexcept {
    Timeout l = left();
    return l < cap ? l : cap;
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool forever_;
  Clock::time_point at_;
};

// Spins until ready() returns true, for at most `budget` (Spin::poll(): until the deadline).
// Returns whether ready() became true. Reads the clock once every 64 pauses.
template <class Ready>
bool spin_until(Ready ready, Spin budget, const Until& until) noexcept {
  if (budget.ns == 0) return false;
  using Clock = std::chrono::steady_clock;
  const bool unbounded = budget.ns == Spin::poll().ns;
  const auto stop = Clock::now() + std::chrono::nanoseconds(budget.ns);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if ((!unbounded && Clock::now() >= stop) || until.passed()) return ready();
  }
}

}  // namespace ipcx::sync
