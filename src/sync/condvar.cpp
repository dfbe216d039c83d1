// CondVar: a sequence word the waiters sleep on, and a count of sleepers so that a notify with
// nobody waiting costs no system call.
//
// No lost wake-up: a waiter reads the sequence while it still holds the mutex, then releases
// the mutex and sleeps only while the sequence is unchanged (the kernel compares it inside
// futex_wait). A notify that follows the release bumps the sequence first, so either the waiter
// sees the new value and does not sleep, or it is already counted and gets woken.
#include <climits>

#include <ipcx/sync.hpp>

#include "os/futex.hpp"
#include "sync/spin.hpp"

namespace ipcx {
namespace {
constexpr std::uint32_t kCondVarMagic = 0x43585049;  // "IPXC"
}

CondVar::CondVar(Options options) noexcept : seq_(0), waiters_(0), spin_ns_(options.spin.ns), magic_(kCondVarMagic) {}

Result<void> CondVar::wait(Mutex::Guard& held, Timeout timeout) noexcept {
  if (!held.m_) return fail(Errc::invalid_argument, "condvar wait", "the guard holds no lock");
  if (magic_ != kCondVarMagic) return fail(Errc::invalid_argument, "condvar wait", "not an initialised ipcx::CondVar");
  Mutex* m = held.m_;
  const std::uint32_t seen = seq_.load(std::memory_order_acquire);
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  held.unlock();

  sync::Until until(timeout);
  Result<void> outcome;
  auto changed = [&] { return seq_.load(std::memory_order_acquire) != seen; };
  if (!sync::spin_until(changed, Spin{spin_ns_}, until)) {
    // One slice of sleep at most: a waiter that a notify_one woke and that was killed before it
    // re-took the mutex took that notify with it, so every waiter returns (a spurious wake-up)
    // at least every kRecheck and its caller looks again.
    auto w = os::futex_wait(seq_, seen, until.slice(), /*shared=*/true);
    if (!w && !changed() && (w.error().code != Errc::timeout || until.passed()))
      outcome = fail(w.error().code, "condvar wait");
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);

  // The mutex comes back whatever happened, as with pthread_cond_wait.
  int rc = m->acquire(forever);
  if (rc == 0 || rc == EOWNERDEAD) held = Mutex::Guard(m, rc == EOWNERDEAD);
  if (rc == EOWNERDEAD) return fail(Errc::owner_died, "condvar wait", "lock re-taken; repair, then mark_consistent()");
  if (rc != 0) return std::unexpected(Mutex::result(m, rc, "condvar wait").error());
  return outcome;
}

void CondVar::notify_one() noexcept {
  seq_.fetch_add(1, std::memory_order_seq_cst);
  if (waiters_.load(std::memory_order_seq_cst) != 0) (void)os::futex_wake(seq_, 1, /*shared=*/true);
}

void CondVar::notify_all() noexcept {
  seq_.fetch_add(1, std::memory_order_seq_cst);
  if (waiters_.load(std::memory_order_seq_cst) != 0) (void)os::futex_wake(seq_, INT_MAX, /*shared=*/true);
}

}  // namespace ipcx
