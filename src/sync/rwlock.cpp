// RwLock: a gate mutex and kReaders robust reader slots.
//
// A reader passes the gate (takes and releases it) and keeps one slot locked while it reads; a
// writer keeps the gate locked for the whole write and waits until every slot is free. While a
// writer holds or waits for the gate no reader can pass it, so readers cannot starve a writer.
// Every lock is a robust Mutex: a dead reader's slot comes back to the next one to lock it
// (readers change nothing, so it is simply reused), a dead writer's gate comes back with
// owner_died and the lock remembers it in state_ until a writer repairs.
#include <unistd.h>

#include <ipcx/sync.hpp>

#include "sync/spin.hpp"

namespace ipcx {
namespace {
constexpr std::uint32_t kRwLockMagic = 0x52585049;  // "IPXR"
}

RwLock::RwLock(Options options) noexcept
    : magic_(kRwLockMagic), spin_ns_(options.spin.ns), state_(consistent), writing_(0),
      gate_(Mutex::Options{.spin = options.spin}) {}

// A holder that died with the gate was a writer if it had set writing_.
Result<Mutex::Guard> RwLock::take_gate(Timeout timeout, const char* op) noexcept {
  auto g = gate_.lock(timeout);
  if (!g) {
    g.error().op = op;
    return g;
  }
  if (g->owner_died()) {
    if (writing_ != 0) {
      writing_ = 0;
      std::uint32_t expected = consistent;  // an unrecoverable lock stays so
      state_.compare_exchange_strong(expected, writer_died);
    }
    g->mark_consistent();  // the gate itself guards nothing; state_ carries the verdict
  }
  return g;
}

Result<RwLock::WriteGuard> RwLock::lock(Timeout timeout) noexcept {
  if (magic_ != kRwLockMagic) return fail(Errc::invalid_argument, "rwlock lock", "not an initialised ipcx::RwLock");
  sync::Until until(timeout);
  auto g = take_gate(timeout, "rwlock lock");
  if (!g) return std::unexpected(std::move(g.error()));
  if (state_.load() == unrecoverable) return fail(Errc::not_recoverable, "rwlock lock");
  // No reader can take a slot now: wait for those inside to leave.
  for (auto& slot : slots_) {
    if (slot.m.looks_free() && !slot.m.owner_dead()) continue;
    if (slot.m.held_by_caller())  // before spinning: a poll spin would wait for ourselves
      return fail(Errc::invalid_argument, "rwlock lock", "this thread holds a read lock");
    sync::spin_until([&] { return slot.m.looks_free(); }, Spin{spin_ns_}, until);
    auto s = slot.m.lock(until.left());
    if (!s) {
      // The deadline may pass while spinning: the slot lock then runs with no time left and
      // says would_block, which for this caller is a timeout.
      if (s.error().code == Errc::timeout || s.error().code == Errc::would_block)
        return fail(Errc::timeout, "rwlock lock", "readers still inside");
      s.error().op = "rwlock lock";
      return std::unexpected(std::move(s.error()));
    }
    s->mark_consistent();  // a reader that died changed nothing
  }
  writing_ = 1;
  WriteGuard w;
  w.rw_ = this;
  w.gate_ = std::move(*g);
  w.owner_died_ = state_.load() == writer_died;
  return w;
}

void RwLock::WriteGuard::mark_consistent() noexcept {
  if (rw_ && owner_died_) {
    rw_->state_.store(consistent);
    owner_died_ = false;
  }
}

void RwLock::WriteGuard::unlock() noexcept {
  if (!rw_) return;
  if (owner_died_) rw_->state_.store(unrecoverable);  // reported, never repaired
  rw_->writing_ = 0;
  gate_.unlock();
  rw_ = nullptr;
  owner_died_ = false;
}

Result<RwLock::ReadGuard> RwLock::lock_shared(Timeout timeout) noexcept {
  if (magic_ != kRwLockMagic) return fail(Errc::invalid_argument, "rwlock lock_shared", "not an initialised ipcx::RwLock");
  sync::Until until(timeout);
  const unsigned start = static_cast<unsigned>(::gettid()) % kReaders;
  for (;;) {
    auto g = take_gate(until.left(), "rwlock lock_shared");
    if (!g) return std::unexpected(std::move(g.error()));
    switch (state_.load()) {
      case writer_died: return fail(Errc::owner_died, "rwlock lock_shared", "a writer died; a write lock must repair first");
      case unrecoverable: return fail(Errc::not_recoverable, "rwlock lock_shared");
      default: break;
    }
    ReadGuard r;
    for (unsigned i = 0; i < kReaders && !r.owns_lock(); ++i) {
      auto s = slots_[(start + i) % kReaders].m.try_lock();
      if (s) r.slot_ = std::move(*s);
    }
    if (r.owns_lock()) {
      r.slot_.mark_consistent();
      return r;
    }
    // kReaders readers inside. Wait for one place to free up without holding the gate (a
    // writer, or every other reader, must not wait behind us), then pass the gate again.
    g->unlock();
    auto s = slots_[start].m.lock(until.left());
    if (!s) {
      if (s.error().code == Errc::would_block) return fail(Errc::timeout, "rwlock lock_shared", "no free reader slot");
      s.error().op = "rwlock lock_shared";
      return std::unexpected(std::move(s.error()));
    }
    s->mark_consistent();
  }
}

}  // namespace ipcx
