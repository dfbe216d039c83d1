// Process-shared synchronisation: objects that live in shared memory (a shm::Segment, or any
// MAP_SHARED mapping) and coordinate every process that maps them.
//
//   Mutex      robust: a holder that dies is reported to the next locker (Guard::owner_died()),
//              who may repair the data and mark it consistent; if nobody does, every later
//              lock fails with Errc::not_recoverable instead of deadlocking.
//   CondVar    wait / notify with a Mutex; no lost wake-ups.
//   Semaphore  counting, timed wait (NamedSemaphore in <ipcx/segment.hpp> opens one by name).
//   RwLock     many readers or one writer; a waiting writer stops new readers (no starvation).
//   Barrier    N processes meet; a member that dies breaks the barrier (Errc::peer_died).
//   Monitor<T> a T reachable only with its lock held.
//
// Every type here is its own shared-memory layout (docs/sync.md): no pointers inside, so each
// process may map the memory at any address. Construct each object exactly once (by the
// process that creates the segment: Segment::construct does this), never copy or move it, and
// reach it from other processes through the mapping (Segment::find). Blocking calls take a
// Timeout (forever by default); none throws.
//
// Waiting: each object carries a spin budget. A blocked call first spins (reading the shared
// word, with a CPU pause) for that long, then sleeps on a futex. Spin::block() sleeps at once,
// Spin::poll() never sleeps (burns a CPU until the deadline), the default spins briefly:
// a cross-CPU futex wake-up costs tens of microseconds on a VM, a cache-line hand-off a few
// hundred nanoseconds.
//
// Crashes: Mutex, RwLock, Barrier and Monitor learn of a dead process from the kernel (the
// robust-futex list every thread registers: the kernel marks a lock whose owner exits and wakes
// a waiter). CondVar and Semaphore keep no per-process state, so a process killed inside
// wait() leaves them usable; a unit a dead process took from a semaphore is not given back.
// All holders must share one PID namespace (the lock word holds the owner's thread id).
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>

#include <ipcx/error.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx {

// How long a blocked call spins before it sleeps on a futex. Stored in the shared object, so
// every process waits the same way on it.
struct Spin {
  std::uint32_t ns = 20'000;
  static constexpr Spin block() noexcept { return {0}; }
  static constexpr Spin poll() noexcept { return {UINT32_MAX}; }  // never sleeps
  static constexpr Spin for_(std::chrono::nanoseconds d) noexcept {
    return {d.count() <= 0 ? 0u : d.count() >= UINT32_MAX ? UINT32_MAX - 1 : static_cast<std::uint32_t>(d.count())};
  }
};

class CondVar;
class RwLock;
class Barrier;

// A robust, process-shared mutex (glibc's robust PTHREAD_PROCESS_SHARED mutex, with an
// optional spin before it sleeps). Error-checking: locking it twice from one thread fails with
// Errc::invalid_argument rather than deadlocking.
class Mutex {
 public:
  struct Options {
    Spin spin{};
  };
  Mutex() noexcept : Mutex(Options{}) {}
  explicit Mutex(Options options) noexcept;
  ~Mutex();
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  // Holds the lock until destroyed or unlock()ed. Move-only; belongs to the thread that locked.
  class Guard {
   public:
    Guard() noexcept = default;
    Guard(Guard&& o) noexcept
        : m_(std::exchange(o.m_, nullptr)), owner_died_(std::exchange(o.owner_died_, false)) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        unlock();
        m_ = std::exchange(o.m_, nullptr);
        owner_died_ = std::exchange(o.owner_died_, false);
      }
      return *this;
    }
    ~Guard() { unlock(); }

    // The previous holder died holding the lock: the guarded data may be half-written. Repair
    // it, then mark_consistent(); unlocking without doing so makes the mutex not recoverable.
    bool owner_died() const noexcept { return owner_died_; }
    void mark_consistent() noexcept;
    bool owns_lock() const noexcept { return m_ != nullptr; }
    explicit operator bool() const noexcept { return owns_lock(); }
    void unlock() noexcept;
    Mutex* mutex() const noexcept { return m_; }

   private:
    friend class Mutex;
    friend class CondVar;
    Guard(Mutex* m, bool died) noexcept : m_(m), owner_died_(died) {}
    Mutex* m_ = nullptr;
    bool owner_died_ = false;
  };

  // Blocks up to `timeout`. Errors: timeout, not_recoverable, invalid_argument (this thread
  // already holds it). A dead previous holder is not an error: see Guard::owner_died().
  Result<Guard> lock(Timeout timeout = forever) noexcept;
  // Never blocks: Errc::would_block when another holder has it; invalid_argument when this
  // thread has it.
  Result<Guard> try_lock() noexcept;

  Spin spin() const noexcept { return {spin_ns_}; }

 private:
  friend class CondVar;
  friend class RwLock;
  friend class Barrier;
  // Lock word states a waiter can read without locking (kernel futex ABI: owner tid, bits).
  int lock_word() const noexcept;
  bool looks_free() const noexcept;
  bool owner_dead() const noexcept;
  bool held_by_caller() const noexcept;
  // 0, EOWNERDEAD, ENOTRECOVERABLE, ETIMEDOUT, EBUSY (try), EDEADLK.
  int acquire(Timeout timeout) noexcept;
  int acquire_raw(Timeout timeout) noexcept;
  int timed_lock(Timeout left) noexcept;
  int settle(int rc) noexcept;
  void release_unrecoverable() noexcept;
  bool unrecoverable() const noexcept;
  void mark_unrecoverable() noexcept;
  static Result<Guard> result(Mutex* m, int rc, const char* op) noexcept;
  // 0, or what the magic word says instead of a lock: ENOTRECOVERABLE, EINVAL (not a Mutex).
  int magic_state() const noexcept;

  std::uint32_t magic_;  // another value once a holder unlocked without repairing (atomic_ref)
  std::uint32_t spin_ns_;
  pthread_mutex_t m_;
};

// A condition variable for Mutex, shared between processes: a sequence word and a waiter
// count (futex). A notify after the waiter released the mutex always wakes it: the waiter
// reads the sequence before releasing.
class CondVar {
 public:
  struct Options {
    Spin spin{};
  };
  CondVar() noexcept : CondVar(Options{}) {}
  explicit CondVar(Options options) noexcept;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // The longest a waiter sleeps before it returns (spuriously) and looks again.
  static constexpr std::chrono::milliseconds kRecheck{50};

  // Releases `held`'s mutex, sleeps until notified or `timeout`, and re-locks before returning,
  // also on timeout. Spurious wake-ups happen (recheck your condition): at least every
  // kRecheck, so that a notify lost with a killed waiter delays the others, never hangs them.
  // Errors:
  //   timeout          (locked again);
  //   owner_died       (locked again, held.owner_died() is true: repair, mark_consistent());
  //   not_recoverable  (the lock could not be re-taken: `held` is left empty);
  //   invalid_argument (called with a `held` that holds no lock).
  Result<void> wait(Mutex::Guard& held, Timeout timeout = forever) noexcept;
  // Waits until pred() holds, with one deadline for the whole wait. Same errors; on timeout
  // the lock is held and pred() is false. Like wait(), re-takes the lock at least every kRecheck,
  // so a holder that died without notifying is reported (owner_died) within kRecheck.
  template <class Pred>
    requires std::predicate<Pred&>
  Result<void> wait(Mutex::Guard& held, Pred pred, Timeout timeout = forever);

  void notify_one() noexcept;
  void notify_all() noexcept;

 private:
  std::atomic<std::uint32_t> seq_;
  std::atomic<std::uint32_t> waiters_;
  std::uint32_t spin_ns_;
  std::uint32_t magic_;
};

// A counting semaphore shared between processes (value and waiter count on one futex word
// pair). The value never exceeds Semaphore::kMax.
class Semaphore {
 public:
  static constexpr std::uint32_t kMax = INT32_MAX;
  struct Options {
    std::uint32_t initial = 0;
    Spin spin{};
  };
  Semaphore() noexcept : Semaphore(Options{}) {}
  explicit Semaphore(Options options) noexcept;
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // Adds `n` and wakes up to `n` waiters. Errors: resource_exhausted (value would pass kMax;
  // nothing is added), invalid_argument (n == 0). Never blocks.
  Result<void> post(std::uint32_t n = 1) noexcept;
  // Takes one unit, blocking up to `timeout` while the value is 0. Errors: timeout.
  Result<void> wait(Timeout timeout = forever) noexcept;
  // Errc::would_block when the value is 0.
  Result<void> try_wait() noexcept;
  std::uint32_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint32_t> value_;
  std::atomic<std::uint32_t> waiters_;
  std::uint32_t spin_ns_;
  std::uint32_t magic_;
};

// Many readers or one writer, shared between processes. A writer first takes the gate (which
// new readers also pass), then waits for the readers inside to leave: a waiting writer is
// never starved by a stream of readers. At most kReaders read at once (a reader holds one of
// kReaders robust slots); more wait for a slot.
//
// Crashes: a reader that dies is forgotten (readers change nothing). A writer that dies marks
// the lock: the next write lock reports owner_died() and may repair; until it marks the data
// consistent, read locks fail with Errc::owner_died; unlocking without repairing makes the
// lock not recoverable.
class RwLock {
 public:
  static constexpr unsigned kReaders = 32;
  struct Options {
    Spin spin{};
  };
  RwLock() noexcept : RwLock(Options{}) {}
  explicit RwLock(Options options) noexcept;
  RwLock(const RwLock&) = delete;
  RwLock& operator=(const RwLock&) = delete;

  class WriteGuard {
   public:
    WriteGuard() noexcept = default;
    WriteGuard(WriteGuard&& o) noexcept
        : rw_(std::exchange(o.rw_, nullptr)), gate_(std::move(o.gate_)),
          owner_died_(std::exchange(o.owner_died_, false)) {}
    WriteGuard& operator=(WriteGuard&& o) noexcept {
      if (this != &o) {
        unlock();
        rw_ = std::exchange(o.rw_, nullptr);
        gate_ = std::move(o.gate_);
        owner_died_ = std::exchange(o.owner_died_, false);
      }
      return *this;
    }
    ~WriteGuard() { unlock(); }
    bool owner_died() const noexcept { return owner_died_; }
    void mark_consistent() noexcept;
    bool owns_lock() const noexcept { return rw_ != nullptr; }
    explicit operator bool() const noexcept { return owns_lock(); }
    void unlock() noexcept;

   private:
    friend class RwLock;
    RwLock* rw_ = nullptr;
    Mutex::Guard gate_;
    bool owner_died_ = false;
  };

  class ReadGuard {
   public:
    ReadGuard() noexcept = default;
    ReadGuard(ReadGuard&&) noexcept = default;
    ReadGuard& operator=(ReadGuard&&) noexcept = default;
    bool owns_lock() const noexcept { return slot_.owns_lock(); }
    explicit operator bool() const noexcept { return owns_lock(); }
    void unlock() noexcept { slot_.unlock(); }

   private:
    friend class RwLock;
    Mutex::Guard slot_;
  };

  // Errors: timeout, not_recoverable, invalid_argument (this thread holds it already).
  Result<WriteGuard> lock(Timeout timeout = forever) noexcept;
  // Errors: timeout, owner_died (a writer died and nobody has repaired yet), not_recoverable.
  Result<ReadGuard> lock_shared(Timeout timeout = forever) noexcept;

 private:
  enum State : std::uint32_t { consistent = 0, writer_died = 1, unrecoverable = 2 };
  struct alignas(64) Slot {
    Mutex m{Mutex::Options{.spin = Spin::block()}};
  };
  Result<Mutex::Guard> take_gate(Timeout timeout, const char* op) noexcept;

  std::uint32_t magic_;
  std::uint32_t spin_ns_;
  std::atomic<std::uint32_t> state_;  // State
  std::uint32_t writing_;             // under gate_: a writer holds it (a reader only passes)
  Mutex gate_;
  Slot slots_[kReaders];
};

// N processes meet. Each takes part through a Member (join()); arrive_and_wait() returns once
// every party has arrived. A member that dies (its process exits without leave()) breaks the
// barrier: every waiter, and every later arrival, gets Errc::peer_died until reset(). A waiter
// notices a death within kDeathPoll. leave() (or destroying the Member) withdraws a party for
// good, as std::barrier's arrive_and_drop.
class Barrier {
 public:
  static constexpr unsigned kMaxParties = 64;
  static constexpr std::chrono::milliseconds kDeathPoll{10};
  struct Options {
    std::uint32_t parties = 2;  // 1..kMaxParties
    Spin spin{};
  };
  explicit Barrier(Options options) noexcept;
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  class Member {
   public:
    Member() noexcept = default;
    Member(Member&& o) noexcept : b_(std::exchange(o.b_, nullptr)), slot_(std::move(o.slot_)) {}
    Member& operator=(Member&& o) noexcept {
      if (this != &o) {
        leave();
        b_ = std::exchange(o.b_, nullptr);
        slot_ = std::move(o.slot_);
      }
      return *this;
    }
    ~Member() { leave(); }
    // Returns true in the member whose arrival completed the phase (false in the others; a
    // phase that a leave() completed has no such member). Errors: timeout (this member's
    // arrival is withdrawn), peer_died (the barrier is broken).
    Result<bool> arrive_and_wait(Timeout timeout = forever) noexcept;
    // Withdraws this member's party for good (parties() drops by one; the place is not offered
    // to a newcomer). Completes the phase when the others were waiting only for this member.
    void leave() noexcept;

   private:
    friend class Barrier;
    Barrier* b_ = nullptr;
    Mutex::Guard slot_;  // held for the membership: the kernel releases it if the process dies
  };

  // Errors: resource_exhausted (as many members as parties), invalid_argument (misconfigured).
  Result<Member> join() noexcept;
  // Mends a broken barrier: clears the arrivals of the broken phase and frees dead members'
  // places, so replacements can join. Does nothing to a barrier that is not broken, so every
  // survivor may call it.
  Result<void> reset() noexcept;
  // Broken: the last phase ended by a death, and no reset() since (reset starts a new phase).
  bool broken() const noexcept {
    auto last = generation_.load(std::memory_order_acquire) - 1;
    return (broken_phases_.load(std::memory_order_relaxed) >> (last % 64)) & 1;
  }
  std::uint32_t parties() const noexcept { return parties_; }

 private:
  struct alignas(64) Slot {
    Mutex m{Mutex::Options{.spin = Spin::block()}};
  };
  // Claims dead members' slots; true if any was found. Caller holds lock_.
  bool reap_dead() noexcept;
  // Ends the current phase (caller holds lock_): records how, bumps the generation, wakes all.
  void end_phase_locked(bool by_death) noexcept;
  Result<Mutex::Guard> lock_state(Timeout timeout = forever) noexcept;

  std::uint32_t magic_;
  std::uint32_t parties_;       // expected arrivals per phase (leave() lowers it)
  std::uint32_t arrived_;       // under lock_
  std::uint32_t spin_ns_;
  std::atomic<std::uint32_t> generation_;  // futex word: bumped when a phase ends, breaks or is reset
  [[maybe_unused]] std::uint32_t reserved_ = 0;  // (layout: keeps broken_phases_ 8-aligned)
  // Bit (g % 64) tells how phase g ended (1: broken), so a waiter that wakes late still knows
  // its own phase's outcome after a reset() and up to 63 later phases.
  std::atomic<std::uint64_t> broken_phases_;
  Mutex lock_{Mutex::Options{.spin = Spin::block()}};
  Slot slots_[kMaxParties];
};

// The textbook monitor: a T in shared memory reachable only with its lock held. Every access
// that ends (a with() call, a Guard released) wakes the processes blocked in wait_until, which
// re-check their predicate.
//
// Owner death is reported as for Mutex: a Guard (from lock() or wait_until) says owner_died();
// with(f) returns Errc::owner_died without calling f and leaves the monitor not recoverable,
// unless it was given a repair function, which runs first and decides whether the value is
// consistent.
template <class T>
class Monitor {
 public:
  template <class... A>
  explicit Monitor(A&&... args) : value_(std::forward<A>(args)...) {}
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  class Guard {
   public:
    Guard(Guard&&) noexcept = default;
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        release();
        mon_ = std::exchange(o.mon_, nullptr);
        g_ = std::move(o.g_);
      }
      return *this;
    }
    ~Guard() { release(); }
    T& operator*() const noexcept { return mon_->value_; }
    T* operator->() const noexcept { return &mon_->value_; }
    bool owner_died() const noexcept { return g_.owner_died(); }
    void mark_consistent() noexcept { g_.mark_consistent(); }
    void unlock() noexcept { release(); }

   private:
    friend class Monitor;
    Guard(Monitor* m, Mutex::Guard g) noexcept : mon_(m), g_(std::move(g)) {}
    void release() noexcept {
      if (mon_ && g_.owns_lock()) {
        g_.unlock();
        mon_->changed_.notify_all();
      }
      mon_ = nullptr;
    }
    Monitor* mon_ = nullptr;
    Mutex::Guard g_;
  };

  // Errors as Mutex::lock.
  Result<Guard> lock(Timeout timeout = forever) noexcept {
    auto g = mutex_.lock(timeout);
    if (!g) return std::unexpected(std::move(g.error()));
    return Guard(this, std::move(*g));
  }

  // Runs f(T&) with the lock held; returns what f returns. Errors: as lock(), and owner_died.
  template <class F>
    requires std::invocable<F&, T&>
  auto with(F f, Timeout timeout = forever) -> Result<std::invoke_result_t<F&, T&>> {
    return with(std::move(f), [](T&) { return false; }, timeout);
  }
  // As with(f), but when the previous holder died, repair(T&) runs first: if it returns true
  // the value is marked consistent and f runs; if false, Errc::owner_died (not recoverable).
  template <class F, class Repair>
    requires std::invocable<F&, T&> && std::predicate<Repair&, T&>
  auto with(F f, Repair repair, Timeout timeout = forever) -> Result<std::invoke_result_t<F&, T&>> {
    auto g = lock(timeout);
    if (!g) return std::unexpected(std::move(g.error()));
    if (g->owner_died()) {
      if (!std::invoke(repair, value_)) return fail(Errc::owner_died, "monitor", "left not recoverable");
      g->mark_consistent();
    }
    if constexpr (std::is_void_v<std::invoke_result_t<F&, T&>>) {
      std::invoke(f, value_);
      return {};
    } else {
      return std::invoke(f, value_);
    }
  }

  // Blocks until pred(const T&) holds (re-checked after each access by another holder, and at
  // least every CondVar::kRecheck), then returns with the lock held. When the lock comes back
  // from a holder that died, it returns then, pred unchecked, with guard.owner_died() true:
  // repair, mark_consistent(), wait again.
  // Errors: timeout (lock released), not_recoverable.
  template <class Pred>
    requires std::predicate<Pred&, const T&>
  Result<Guard> wait_until(Pred pred, Timeout timeout = forever) {
    const auto deadline = detail::deadline_after(timeout);
    auto g = mutex_.lock(timeout);
    if (!g) return std::unexpected(std::move(g.error()));
    while (!g->owner_died() && !std::invoke(pred, std::as_const(value_))) {
      Timeout left = forever;
      if (timeout != forever) {
        left = deadline - std::chrono::steady_clock::now();
        if (left <= Timeout::zero()) return fail(Errc::timeout, "monitor wait");
      }
      auto w = changed_.wait(*g, left);
      if (!w && w.error().code != Errc::timeout && w.error().code != Errc::owner_died)
        return std::unexpected(std::move(w.error()));  // not_recoverable: the lock is not held
      // timeout: the loop re-checks pred and the deadline; owner_died: held, returned below
    }
    return Guard(this, std::move(*g));
  }

  // Wakes wait_until callers without changing the value (they re-check their predicate).
  void notify() noexcept { changed_.notify_all(); }

 private:
  Mutex mutex_;
  CondVar changed_;
  T value_;
};

template <class Pred>
  requires std::predicate<Pred&>
Result<void> CondVar::wait(Mutex::Guard& held, Pred pred, Timeout timeout) {
  const auto deadline = detail::deadline_after(timeout);
  while (!pred()) {
    Timeout left = forever;
    if (timeout != forever) {
      left = deadline - std::chrono::steady_clock::now();
      if (left <= Timeout::zero()) return fail(Errc::timeout, "condvar wait");
    }
    auto w = wait(held, left);
    if (!w && w.error().code != Errc::timeout) return w;
  }
  return {};
}

}  // namespace ipcx
