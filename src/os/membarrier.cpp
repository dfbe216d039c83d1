#include "os/membarrier.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace ipcx::os {
namespace {

long membarrier(int cmd) noexcept { return ::syscall(__NR_membarrier, cmd, 0, 0); }

// Registers for `cmd` (with `reg`) when the kernel offers it.
bool register_for(int cmd, int reg) noexcept {
  const long cmds = membarrier(MEMBARRIER_CMD_QUERY);
  return cmds >= 0 && (cmds & cmd) != 0 && membarrier(reg) == 0;
}

// Whether registration worked: 0 not asked yet, 1 yes, 2 no. No function-local static (its
// guard, held by a thread while another forks, would leave the child waiting for ever; and
// registering may take milliseconds): threads that ask at once each register, which is harmless.
std::atomic<int> private_state{0};
std::atomic<int> global_state{0};

bool cached(std::atomic<int>& state, int cmd, int reg) noexcept {
  int s = state.load(std::memory_order_acquire);
  if (s == 0) {
    s = register_for(cmd, reg) ? 1 : 2;
    state.store(s, std::memory_order_release);
  }
  return s == 1;
}

}  // namespace

bool private_barriers() noexcept {
  return cached(private_state, MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
}

void heavy_barrier_private() noexcept {
  // Registration is carried over fork(); if the kernel refuses now anyway (a seccomp filter
  // installed after we registered), no new fast path is handed out, and this barrier falls back
  // to waiting out the other threads' store buffers, which drain in far less than this.
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
      (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0 || membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)) {
    private_state.store(2, std::memory_order_release);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool asymmetric_barriers() noexcept {
  return cached(global_state, MEMBARRIER_CMD_GLOBAL_EXPEDITED, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
}

void heavy_barrier() noexcept {
  // Cannot fail once registered (EINTR is not among its errors); a fence keeps this side
  // correct whatever happens.
  (void)membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace ipcx::os
