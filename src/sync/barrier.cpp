// Barrier: arrivals counted under a robust mutex, a generation word to sleep on, and one
// robust slot per member, held for the whole membership. A member's process that dies leaves
// its slot marked by the kernel (FUTEX_OWNER_DIED); waiters look for such marks every
// kDeathPoll while they sleep and break the barrier when they find one.
#include <climits>

#include <ipcx/sync.hpp>

#include "os/futex.hpp"
#include "sync/spin.hpp"

namespace ipcx {
namespace {
constexpr std::uint32_t kBarrierMagic = 0x42585049;  // "IPXB"
}

Barrier::Barrier(Options options) noexcept
    : magic_(kBarrierMagic), parties_(options.parties), arrived_(0), spin_ns_(options.spin.ns), generation_(0),
      broken_phases_(0) {}

Result<Mutex::Guard> Barrier::lock_state(Timeout timeout) noexcept {
  auto g = lock_.lock(timeout);
  if (!g) return g;
  if (g->owner_died()) {  // a member died while counting: the count cannot be trusted
    end_phase_locked(true);
    g->mark_consistent();
  }
  return g;
}

void Barrier::end_phase_locked(bool by_death) noexcept {
  const std::uint64_t bit = std::uint64_t{1} << (generation_.load(std::memory_order_relaxed) % 64);
  if (by_death) broken_phases_.fetch_or(bit, std::memory_order_relaxed);
  else broken_phases_.fetch_and(~bit, std::memory_order_relaxed);
  arrived_ = 0;
  generation_.fetch_add(1, std::memory_order_release);  // publishes the bit with it
  (void)os::futex_wake(generation_, INT_MAX, /*shared=*/true);
}


bool Barrier::reap_dead() noexcept {
  bool found = false;
  for (auto& slot : slots_) {
    if (!slot.m.owner_dead()) continue;
    auto s = slot.m.try_lock();
    if (s && s->owner_died()) {
      found = true;
      s->mark_consistent();  // the place is free again (the guard unlocks it)
    }
  }
  return found;
}

Result<Barrier::Member> Barrier::join() noexcept {
  if (magic_ != kBarrierMagic) return fail(Errc::invalid_argument, "barrier join", "not an initialised ipcx::Barrier");
  auto g = lock_state();
  if (!g) return std::unexpected(std::move(g.error()));
  if (parties_ == 0 || parties_ > kMaxParties)
    return fail(Errc::invalid_argument, "barrier join", "parties must be 1..Barrier::kMaxParties");
  if (reap_dead()) end_phase_locked(true);
  unsigned members = 0;
  for (auto& slot : slots_) members += slot.m.looks_free() ? 0 : 1;
  if (members >= parties_) return fail(Errc::resource_exhausted, "barrier join", "every party has a member");
  for (auto& slot : slots_) {
    auto s = slot.m.try_lock();
    if (!s) continue;
    s->mark_consistent();
    Member m;
    m.b_ = this;
    m.slot_ = std::move(*s);
    return m;
  }
  return fail(Errc::resource_exhausted, "barrier join", "no free place");
}

Result<void> Barrier::reset() noexcept {
  auto g = lock_state();
  if (!g) return std::unexpected(std::move(g.error()));
  (void)reap_dead();
  // Only a broken barrier is mended: every survivor may call reset(), and a second call must not
  // wipe the arrivals of the phase the first one started.
  if (broken()) end_phase_locked(false);  // an empty phase that completed: no longer broken
  return {};
}

Result<bool> Barrier::Member::arrive_and_wait(Timeout timeout) noexcept {
  if (!b_) return fail(Errc::invalid_argument, "barrier arrive", "not a member");
  Barrier& b = *b_;
  sync::Until until(timeout);
  auto g = b.lock_state(until.left());
  if (!g) return std::unexpected(std::move(g.error()));
  if (b.broken()) return fail(Errc::peer_died, "barrier arrive", "broken by a dead member; reset() mends it");
  if (++b.arrived_ >= b.parties_) {
    b.end_phase_locked(false);
    return true;
  }
  const std::uint32_t gen = b.generation_.load(std::memory_order_acquire);
  g->unlock();

  auto moved = [&] { return b.generation_.load(std::memory_order_acquire) != gen; };
  // Spin in bursts of at most kDeathPoll, so that dead members are looked for even by a
  // Spin::poll() waiter, which never sleeps.
  const bool poll = b.spin_ns_ == Spin::poll().ns;
  const auto death_poll_ns = static_cast<std::uint32_t>(std::chrono::nanoseconds(kDeathPoll).count());
  const Spin burst{poll || b.spin_ns_ > death_poll_ns ? death_poll_ns : b.spin_ns_};
  bool spin = true;
  while (!moved()) {
    if (spin) {
      sync::spin_until(moved, burst, until);
      spin = poll;
      if (moved()) break;
    }
    if (until.passed()) {
      auto again = b.lock_state();
      if (!again) return std::unexpected(std::move(again.error()));
      if (!moved()) {
        --b.arrived_;  // withdraw: this member no longer waits in this phase
        return fail(Errc::timeout, "barrier arrive");
      }
      break;
    }
    if (!poll) {
      (void)os::futex_wait(b.generation_, gen, until.slice(kDeathPoll), /*shared=*/true);
      if (moved()) break;
    }
    bool dead = false;
    for (auto& slot : b.slots_) dead = dead || slot.m.owner_dead();
    if (dead) {
      auto again = b.lock_state();
      if (!again) return std::unexpected(std::move(again.error()));
      if (!moved() && b.reap_dead()) b.end_phase_locked(true);
    }
  }
  // This phase's own outcome, even if a survivor has reset() the barrier since.
  if ((b.broken_phases_.load(std::memory_order_relaxed) >> (gen % 64)) & 1)
    return fail(Errc::peer_died, "barrier arrive", "a member died; reset() mends it");
  return false;
}

void Barrier::Member::leave() noexcept {
  if (!b_) return;
  Barrier& b = *b_;
  if (auto g = b.lock_state()) {
    if (b.parties_ > 0) --b.parties_;
    if (!b.broken() && b.parties_ > 0 && b.arrived_ >= b.parties_)  // the others were waiting only for us
      b.end_phase_locked(false);
  }
  slot_.unlock();
  b_ = nullptr;
}

}  // namespace ipcx
