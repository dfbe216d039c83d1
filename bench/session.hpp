// The process-wide side of a run: signal handlers, CPU pinning, blocked signals, the private run
// directory, and the echo children the handlers must know about.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <sched.h>
#include <signal.h>

#include <ipcx/ipcx.hpp>

#include "bench/util.hpp"

namespace ipcx::bench {

// A signal wait is no descriptor: it cannot see an echo child die. SIGCHLD then queues kWake on
// the signal the parent waits for, and the receive fails. It differs from any value made of
// payload bytes.
inline constexpr std::int32_t kWake = 0x0badc0de;
bool child_exited() noexcept;
// What a parent's channel reports once child_exited() says so.
inline std::unexpected<Error> child_gone(const char* op) { return fail(Errc::closed, op, "the echo child exited"); }
// Between two looks of a busy-polling loop.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
bool is_wake(std::int32_t value) noexcept;
// SIGINT, SIGTERM or SIGHUP once one arrived during the run, else 0.
int interrupted() noexcept;
// The key of the System V queue the measurement in progress uses (0 when it is over): an
// interrupt removes it, which wakes a parent blocked on it.
void sysv_queue_in_use(int key) noexcept;

// Pins the calling process to one CPU.
Status pin_to(int cpu);
// Blocks `signals` in the calling thread; drain_signals discards any still queued.
Status block_signals(std::span<const int> signals);
void drain_signals(std::span<const int> signals);

// The parent's settings for the run, restored on every exit path: CPU affinity, blocked signals,
// SIGCHLD/SIGINT/SIGTERM/SIGHUP/SIGPIPE dispositions. SIGINT/SIGTERM/SIGHUP kill the echo children,
// so the parent's blocking calls fail and the run unwinds, cleaning up. SIGHUP stays ignored when
// it was (nohup).
class Session {
 public:
  Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  // Pins the parent to the first allowed CPU; the child goes to the second (the same one if
  // there is only one).
  Status pin();
  int parent_cpu() const { return parent_cpu_; }
  int child_cpu() const { return child_cpu_; }
  int allowed_cpus() const { return CPU_COUNT(&affinity_); }

  // Both processes must have a signal blocked before the first one is sent: the parent blocks
  // them before it starts any child (each child blocks its own before it reports ready).
  Status block(std::vector<int> signals);
  const std::vector<int>& blocked() const { return blocked_; }

 private:
  cpu_set_t affinity_{};
  sigset_t mask_{};
  struct sigaction old_chld_ {}, old_pipe_ {}, old_int_ {}, old_term_ {}, old_hup_ {};
  std::vector<int> blocked_;
  int parent_cpu_ = -1, child_cpu_ = -1;
};

// The echo children of one measurement (one, or a fan-out row's receivers), known to the signal
// handlers while they live: SIGINT/SIGTERM/SIGHUP kill them all, SIGCHLD (any of them) wakes a
// parent waiting on `wake_signo`. Destruction kills and reaps them.
class WatchedChildren {
 public:
  static constexpr std::size_t kMax = 8;
  // Before the first child starts (it may die at once): whose waiters SIGCHLD must wake.
  explicit WatchedChildren(int wake_signo) noexcept;
  WatchedChildren(const WatchedChildren&) = delete;
  WatchedChildren& operator=(const WatchedChildren&) = delete;
  ~WatchedChildren();
  // Takes one started child (at most kMax); kills them all at once if an interrupt came while
  // they were being started.
  void adopt(Process p) noexcept;
  std::vector<Process>& processes() noexcept { return processes_; }

 private:
  std::vector<Process> processes_;
};

// /tmp/ipcx-bench-<pid>/: every FIFO and socket file of the run; removed with its contents.
class RunDir {
 public:
  static Result<RunDir> create();
  RunDir() = default;
  RunDir(RunDir&& o) noexcept;
  RunDir& operator=(RunDir&&) = delete;
  ~RunDir();
  const std::string& path() const { return path_; }

 private:
  void empty();
  std::string path_;
  bool made_ = false;
};

}  // namespace ipcx::bench
