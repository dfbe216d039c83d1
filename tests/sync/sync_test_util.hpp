// Helpers for the multi-process sync tests: spawning the worker, waiting for shared progress
// with a bound, and a last-resort watchdog that cleans up before it aborts.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <ipcx/process.hpp>

#include <ipcx/segment.hpp>
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx::test::sync {

using namespace std::chrono_literals;

// Counts scale down under sanitizers (slower by 5-20x; same properties, fewer rounds).
#ifdef IPCX_TEST_SANITIZED
inline constexpr unsigned kScale = 10;
#else
inline constexpr unsigned kScale = 1;
#endif

// Starts the worker in `role` on the shared state `shm`. A Process kills and reaps its child
// when destroyed, so every path out of a test (a failed ASSERT included) leaves no process.
inline Result<Process> spawn(const std::string& role, const std::string& shm, std::uint64_t n = 0) {
  return Process::spawn({IPCX_SYNC_WORKER, role, shm, std::to_string(::getpid()), std::to_string(n)});
}

// Starts `count` workers in `role`, each with argument `n`, appending them to `procs`.
inline Result<void> spawn_into(std::vector<Process>& procs, unsigned count, const std::string& role,
                               const std::string& shm, std::uint64_t n = 0) {
  for (unsigned i = 0; i < count; ++i) {
    auto p = spawn(role, shm, n);
    if (!p) return std::unexpected(std::move(p.error()));
    procs.push_back(std::move(*p));
  }
  return {};
}

// Whether a child is still running: its pidfd is not readable yet.
inline bool alive(Process& p) { return p.running() && !p.wait(Timeout::zero()); }

// Kills the test process if it runs past `limit` (a deadlock the per-step bounds did not
// catch), first unlinking `shm` so nothing is left in /dev/shm. Workers die with the test
// (PR_SET_PDEATHSIG).
class LastResort {
 public:
  LastResort(std::string shm, std::chrono::seconds limit)
      : shm_(std::move(shm)), thread_([this, limit] {
          auto until = std::chrono::steady_clock::now() + limit;
          while (!done_.load()) {
            if (std::chrono::steady_clock::now() > until) {
              std::fprintf(stderr, "watchdog: test exceeded %lds; aborting\n", static_cast<long>(limit.count()));
              (void)shm::Segment::remove(shm_);
              std::abort();
            }
            std::this_thread::sleep_for(50ms);
          }
        }) {}
  ~LastResort() {
    done_.store(true);
    thread_.join();
  }

 private:
  std::string shm_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace ipcx::test::sync
