// Mutex: glibc's robust process-shared mutex, with a spin before it sleeps.
//
// The kernel's robust-futex protocol does the crash handling: each thread registers a list of
// the robust mutexes it holds (glibc does it at thread start); when the thread exits, however
// it exits, the kernel sets FUTEX_OWNER_DIED in each held lock word and wakes one waiter, whose
// lock then returns EOWNERDEAD. Spinning reads the same word (its layout is the kernel ABI:
// owner tid | FUTEX_OWNER_DIED | FUTEX_WAITERS) and only calls trylock when it looks free.
#include <linux/futex.h>
#include <time.h>
#include <unistd.h>

#include <climits>

#include <atomic>
#include <cerrno>

#include <ipcx/sync.hpp>

#include "os/futex.hpp"
#include "sync/spin.hpp"

namespace ipcx {
namespace {
constexpr std::uint32_t kMutexMagic = 0x4d585049;        // "IPXM"
constexpr std::uint32_t kMutexUnrecoverable = 0x4e585049;  // "IPXN": not recoverable (layout kept)

// Now + `left` on `clock`, as the absolute deadline pthread's timed locks take.
timespec clock_after(clockid_t clock, Timeout left) noexcept {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  auto ns = left.count();
  ts.tv_sec += static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec += static_cast<long>(ns % 1'000'000'000);
  if (ts.tv_nsec >= 1'000'000'000) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1'000'000'000;
  }
  return ts;
}
}  // namespace

Mutex::Mutex(Options options) noexcept : magic_(kMutexMagic), spin_ns_(options.spin.ns) {
  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  ::pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  ::pthread_mutex_init(&m_, &attr);  // cannot fail for these attributes on glibc
  ::pthread_mutexattr_destroy(&attr);
}

Mutex::~Mutex() { ::pthread_mutex_destroy(&m_); }

int Mutex::lock_word() const noexcept {
  return std::atomic_ref<int>(const_cast<int&>(m_.__data.__lock)).load(std::memory_order_acquire);
}

bool Mutex::looks_free() const noexcept {
  int w = lock_word();
  return (w & FUTEX_TID_MASK) == 0 || (w & FUTEX_OWNER_DIED) != 0;
}

bool Mutex::held_by_caller() const noexcept {
  int w = lock_word();
  return (w & FUTEX_TID_MASK) == static_cast<int>(::gettid()) && (w & FUTEX_OWNER_DIED) == 0;
}

bool Mutex::owner_dead() const noexcept { return (lock_word() & FUTEX_OWNER_DIED) != 0; }

// glibc (2.36) returns ENOTRECOVERABLE from pthread_mutex_trylock/lock with the lock word
// still holding the caller's tid: the mutex stays locked by a thread that believes it failed,
// so every other locker then times out or deadlocks instead of seeing ENOTRECOVERABLE. Undo
// that: clear the word and wake every sleeper, so each of them sees the verdict too.
void Mutex::release_unrecoverable() noexcept {
  std::atomic_ref<int> word(m_.__data.__lock);
  int w = word.load(std::memory_order_acquire);
  if ((w & FUTEX_TID_MASK) != static_cast<int>(::gettid())) return;
  w = word.exchange(0, std::memory_order_release);
  if ((w & FUTEX_WAITERS) != 0) (void)os::futex_wake(&m_.__data.__lock, INT_MAX, /*shared=*/true);
}

bool Mutex::unrecoverable() const noexcept {
  return std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(magic_)).load(std::memory_order_acquire) ==
         kMutexUnrecoverable;
}

void Mutex::mark_unrecoverable() noexcept {
  std::atomic_ref<std::uint32_t>(magic_).store(kMutexUnrecoverable, std::memory_order_release);
}

int Mutex::settle(int rc) noexcept {
  if (rc == ENOTRECOVERABLE) {
    mark_unrecoverable();
    release_unrecoverable();
  }
  return rc;
}

int Mutex::acquire(Timeout timeout) noexcept {
  if (unrecoverable()) return ENOTRECOVERABLE;
  return settle(acquire_raw(timeout));
}

int Mutex::acquire_raw(Timeout timeout) noexcept {
  int rc = ::pthread_mutex_trylock(&m_);
  if (rc != EBUSY) return rc;
  if (timeout <= Timeout::zero()) return ETIMEDOUT;  // lock(0) polls; only try_lock says would_block
  sync::Until until(timeout);
  if (spin_ns_ != 0) {
    sync::spin_until(
        [&] {
          if (!looks_free()) return false;
          rc = ::pthread_mutex_trylock(&m_);
          return rc != EBUSY;
        },
        spin(), until);
    if (rc != EBUSY) return rc;
    if (until.passed()) return ETIMEDOUT;
  }
  // Sleep in slices: a waiter that glibc wakes up and that is killed before it takes the lock
  // swallows the only wake-up of that unlock, and the other sleepers would then sleep forever
  // on a free lock. A sleeper whose slice ends looks again.
  for (;;) {
    rc = timed_lock(until.slice());
    if (rc != ETIMEDOUT) return rc;
    if (until.passed()) return ETIMEDOUT;
    if (unrecoverable()) return ENOTRECOVERABLE;  // its word may hold a tid nobody will release
  }
}

int Mutex::timed_lock(Timeout left) noexcept {
#if defined(__SANITIZE_THREAD__)
  // GCC 12's ThreadSanitizer does not intercept pthread_mutex_clocklock: a lock taken that way
  // is invisible to it (false "unlock of an unlocked mutex" and data races). timedlock is
  // intercepted; its wall-clock deadline is good enough for a sanitizer build. (GCC's macro:
  // clang's ThreadSanitizer, which the tsan preset uses, takes the clocklock path below.)
  timespec abs = clock_after(CLOCK_REALTIME, left);
  return ::pthread_mutex_timedlock(&m_, &abs);
#else
  timespec abs = clock_after(CLOCK_MONOTONIC, left);
  return ::pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &abs);
#endif
}

Result<Mutex::Guard> Mutex::result(Mutex* m, int rc, const char* op) noexcept {
  switch (rc) {
    case 0: return Guard(m, false);
    case EOWNERDEAD: return Guard(m, true);
    case ENOTRECOVERABLE: return fail(Errc::not_recoverable, op);
    case ETIMEDOUT: return fail(Errc::timeout, op);
    case EBUSY: return fail(Errc::would_block, op);
    case EDEADLK: return fail(Errc::invalid_argument, op, "this thread already holds the mutex");
    case EINVAL: return fail(Errc::invalid_argument, op, "not an initialised ipcx::Mutex");
    default: return fail_errno(rc, op);
  }
}

// One read of the magic word tells all three cases apart (the uncontended lock pays for one).
Result<Mutex::Guard> Mutex::lock(Timeout timeout) noexcept {
  int rc = magic_state();
  return result(this, rc != 0 ? rc : settle(acquire_raw(timeout)), "mutex lock");
}

Result<Mutex::Guard> Mutex::try_lock() noexcept {
  int rc = magic_state();
  return result(this, rc != 0 ? rc : settle(::pthread_mutex_trylock(&m_)), "mutex try_lock");
}

int Mutex::magic_state() const noexcept {
  auto magic = std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(magic_)).load(std::memory_order_acquire);
  if (magic == kMutexMagic) [[likely]]
    return 0;
  return magic == kMutexUnrecoverable ? ENOTRECOVERABLE : EINVAL;
}

void Mutex::Guard::mark_consistent() noexcept {
  if (m_ && owner_died_) {
    ::pthread_mutex_consistent(&m_->m_);
    owner_died_ = false;
  }
}

void Mutex::Guard::unlock() noexcept {
  if (!m_) return;
  // With owner_died_ still set, glibc marks the mutex not recoverable here: the data was never
  // declared repaired. The flag lets later lockers fail without touching the lock word.
  if (owner_died_) m_->mark_unrecoverable();
  ::pthread_mutex_unlock(&m_->m_);
  m_ = nullptr;
  owner_died_ = false;
}

}  // namespace ipcx
