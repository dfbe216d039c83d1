#include "os/futex.hpp"

#include <ctime>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ipcx::os {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

Result<void> futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, Timeout timeout,
                        bool shared) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout != forever) {
    auto ns = timeout.count() < 0 ? 0 : timeout.count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    tsp = &ts;  // FUTEX_WAIT takes a relative timeout
  }
  int op = FUTEX_WAIT | (shared ? 0 : FUTEX_PRIVATE_FLAG);
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), op, expected, tsp, nullptr, 0);
  if (r == 0 || errno == EAGAIN || errno == EINTR) return {};
  if (errno == ETIMEDOUT) return fail(Errc::timeout, "futex_wait");
  return fail_errno(errno, "futex_wait");
}

Result<int> futex_wake(std::atomic<std::uint32_t>& word, int count, bool shared) noexcept {
  return futex_wake(static_cast<void*>(&word), count, shared);
}

Result<int> futex_wake(void* word, int count, bool shared) noexcept {
  int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);
  long r = ::syscall(SYS_futex, word, op, count, nullptr, nullptr, 0);
  if (r < 0) return fail_errno(errno, "futex_wake");
  return static_cast<int>(r);
}

}  // namespace ipcx::os
