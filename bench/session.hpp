// The process-wide side of a run: signal handlers, CPU pinning, blocked signals, the private run
// directory, and the echo child the handlers must know about.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <sched.h>
#include <signal.h>

#include <ipcx/ipcx.hpp>

#include "bench/util.hpp"

namespace ipcx::bench {

// A signal wait is no descriptor: it cannot see the echo child die. SIGCHLD then queues kWake on
// the signal the parent waits for, and the receive fails. It differs from any value made of
// payload bytes.
inline constexpr std::int32_t kWake = 0x0badc0de;
bool child_exited() noexcept;
bool is_wake(std::int32_t value) noexcept;
// SIGINT, SIGTERM or SIGHUP once one arrived during the run, else 0.
int interrupted() noexcept;

// Pins the calling process to one CPU.
Status pin_to(int cpu);
// Blocks `signals` in the calling thread; drain_signals discards any still queued.
Status block_signals(std::span<const int> signals);
void drain_signals(std::span<const int> signals);

// The parent's settings for the run, restored on every exit path: CPU affinity, blocked signals,
// SIGCHLD/SIGINT/SIGTERM/SIGHUP/SIGPIPE dispositions. SIGINT/SIGTERM/SIGHUP kill the echo child,
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

// The echo child of one measurement, known to the signal handlers while it lives: SIGINT/SIGTERM/
// SIGHUP kill it, SIGCHLD wakes a parent waiting on `wake_signo`. Destruction kills and reaps it.
class WatchedChild {
 public:
  // Before the child starts (it may die at once): whose waiters SIGCHLD must wake.
  explicit WatchedChild(int wake_signo) noexcept;
  WatchedChild(const WatchedChild&) = delete;
  WatchedChild& operator=(const WatchedChild&) = delete;
  ~WatchedChild();
  // Takes the started child; kills it at once if an interrupt came while it was being started.
  void adopt(Process p) noexcept;
  Process& process() noexcept { return process_; }

 private:
  Process process_;
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
