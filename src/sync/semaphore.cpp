// Semaphore: the value is the futex word; a count of sleepers saves the wake-up system call
// when nobody sleeps. A process killed while waiting leaves its count behind: later posts then
// make a (harmless) futex_wake call each.
#include <climits>

#include <ipcx/sync.hpp>

#include "os/futex.hpp"
#include "sync/spin.hpp"

namespace ipcx {
namespace {
constexpr std::uint32_t kSemaphoreMagic = 0x53585049;  // "IPXS"
}

Semaphore::Semaphore(Options options) noexcept
    : value_(options.initial > kMax ? kMax : options.initial), waiters_(0), spin_ns_(options.spin.ns),
      magic_(kSemaphoreMagic) {}

namespace {
bool take(std::atomic<std::uint32_t>& value) noexcept {
  std::uint32_t v = value.load(std::memory_order_relaxed);
  while (v != 0 && v <= Semaphore::kMax) {
    if (value.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  }
  return false;
}
}  // namespace

Result<void> Semaphore::post(std::uint32_t n) noexcept {
  if (n == 0) return fail(Errc::invalid_argument, "semaphore post", "n is 0");
  if (magic_ != kSemaphoreMagic) return fail(Errc::invalid_argument, "semaphore post", "not an initialised ipcx::Semaphore");
  std::uint32_t v = value_.load(std::memory_order_relaxed);
  do {
    if (v > kMax || n > kMax - v) return fail(Errc::resource_exhausted, "semaphore post", "value would pass Semaphore::kMax");
  } while (!value_.compare_exchange_weak(v, v + n, std::memory_order_seq_cst, std::memory_order_relaxed));
  if (waiters_.load(std::memory_order_seq_cst) != 0)
    (void)os::futex_wake(value_, n > INT_MAX ? INT_MAX : static_cast<int>(n), /*shared=*/true);
  return {};
}

Result<void> Semaphore::try_wait() noexcept {
  if (magic_ != kSemaphoreMagic) return fail(Errc::invalid_argument, "semaphore try_wait", "not an initialised ipcx::Semaphore");
  if (take(value_)) return {};
  return fail(Errc::would_block, "semaphore try_wait");
}

Result<void> Semaphore::wait(Timeout timeout) noexcept {
  if (magic_ != kSemaphoreMagic) return fail(Errc::invalid_argument, "semaphore wait", "not an initialised ipcx::Semaphore");
  if (take(value_)) return {};
  sync::Until until(timeout);
  if (sync::spin_until([&] { return value_.load(std::memory_order_relaxed) != 0 && take(value_); }, Spin{spin_ns_},
                       until))
    return {};
  for (;;) {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    if (take(value_)) {
      waiters_.fetch_sub(1, std::memory_order_relaxed);
      return {};
    }
    // In slices: a waiter that a post woke and that is killed before it takes the unit takes the
    // wake-up with it; the others look again at the end of their slice.
    auto w = os::futex_wait(value_, 0, until.slice(), /*shared=*/true);
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    if (take(value_)) return {};
    if (!w && (w.error().code != Errc::timeout || until.passed())) return fail(w.error().code, "semaphore wait");
  }
}

}  // namespace ipcx
