// Child processes: fork/exec with descriptors wired, pidfd-based wait and kill.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx {

struct SpawnOptions {
  // Descriptors to install in the child: {child_fd, parent_fd}. The parent keeps its copies.
  std::vector<std::pair<int, int>> fds;
  // Extra environment entries "NAME=value" on top of the parent's environment.
  std::vector<std::string> env;
  // Start the child in a new process group (so a group signal does not hit the parent).
  bool new_process_group = false;
};

// A running (or exited, not yet reaped) child. Destroying a Process whose child still runs
// kills it with SIGKILL and reaps it: no orphans, no zombies.
class Process {
 public:
  Process() noexcept = default;
  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  ~Process();

  // execvp(argv[0], argv). Fails (with the child's errno) if the program cannot be executed.
  static Result<Process> spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {});

  pid_t pid() const noexcept { return pid_; }
  // Polls readable when the child has exited.
  int pidfd() const noexcept { return pidfd_.get(); }
  // Waits for the child to exit; returns its exit code, or 128+signal if a signal killed it.
  Result<int> wait(Timeout timeout = forever);
  // Sends a signal through the pidfd (never hits a recycled pid).
  Result<void> kill(int sig) noexcept;
  bool running() const noexcept { return pid_ > 0 && !reaped_; }

 private:
  pid_t pid_ = -1;
  Fd pidfd_;
  bool reaped_ = false;
  int status_ = 0;
};

}  // namespace ipcx
