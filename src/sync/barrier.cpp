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
      broken_(0) {}

Result<Mutex::Guard> Barrier::lock_state() noexcept {
  auto g = lock_.lock();
  if (!g) return g;
  if (g->owner_died()) {  // a member died while counting: the count cannot be trusted
    break_locked();
    g->mark_consistent();
  }
  return g;
}

void Barrier::break_locked() noexcept {
  broken_.store(1, std::memory_order_release);
  arrived_ = 0;
  generation_.fetch_add(1, std::memory_order_release);
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
  if (reap_dead()) break_locked();
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
  if (!broken()) return {};
  arrived_ = 0;
  broken_.store(0, std::memory_order_release);
  return {};
}

Result<bool> Barrier::Member::arrive_and_wait(Timeout timeout) noexcept {
  if (!b_) return fail(Errc::invalid_argument, "barrier arrive", "not a member");
  Barrier& b = *b_;
  auto g = b.lock_state();
  if (!g) return std::unexpected(std::move(g.error()));
  if (b.broken()) return fail(Errc::peer_died, "barrier arrive", "broken by a dead member; reset() mends it");
  if (++b.arrived_ >= b.parties_) {
    b.arrived_ = 0;
    b.generation_.fetch_add(1, std::memory_order_release);
    (void)os::futex_wake(b.generation_, INT_MAX, /*shared=*/true);
    return true;
  }
  const std::uint32_t gen = b.generation_.load(std::memory_order_acquire);
  g->unlock();

  sync::Until until(timeout);
  auto moved = [&] { return b.generation_.load(std::memory_order_acquire) != gen; };
  sync::spin_until(moved, Spin{b.spin_ns_}, until);
  while (!moved()) {
    if (until.passed()) {
      auto again = b.lock_state();
      if (!again) return std::unexpected(std::move(again.error()));
      if (!moved()) {
        --b.arrived_;  // withdraw: this member no longer waits in this phase
        return fail(Errc::timeout, "barrier arrive");
      }
      break;
    }
    Timeout nap = until.left() < Timeout(kDeathPoll) ? until.left() : Timeout(kDeathPoll);
    (void)os::futex_wait(b.generation_, gen, nap, /*shared=*/true);
    if (moved()) break;
    bool dead = false;
    for (auto& slot : b.slots_) dead = dead || slot.m.owner_dead();
    if (dead) {
      auto again = b.lock_state();
      if (!again) return std::unexpected(std::move(again.error()));
      if (!moved() && b.reap_dead()) b.break_locked();
    }
  }
  if (b.broken()) return fail(Errc::peer_died, "barrier arrive", "a member died; reset() mends it");
  return false;
}

void Barrier::Member::leave() noexcept {
  if (!b_) return;
  Barrier& b = *b_;
  if (auto g = b.lock_state()) {
    if (b.parties_ > 0) --b.parties_;
    if (!b.broken() && b.parties_ > 0 && b.arrived_ >= b.parties_) {  // the others were waiting only for us
      b.arrived_ = 0;
      b.generation_.fetch_add(1, std::memory_order_release);
      (void)os::futex_wake(b.generation_, INT_MAX, /*shared=*/true);
    }
  }
  slot_.unlock();
  b_ = nullptr;
}

}  // namespace ipcx
