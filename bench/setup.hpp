// Setup: how the two processes of one measurement get their Channel.
//
// A row's setup is made from the same RunCtx in both processes (the parent, then the echo
// child it starts with `ipcx __bench-echo ...`); each process calls only its own half:
//   parent: parent_prepare() -> spawn() -> waits for "ready TEXT" -> parent_channel(TEXT)
//           (a row with several children: spawn() each, all "ready", parent_channel_all())
//   child:  child_prepare() -> "ready TEXT" on the control pipe -> child_channel() (may block
//           until the parent connects)
// What the child must inherit (pipe ends) is made in parent_prepare() and handed over with
// ChildWiring::give(); the child finds it in RunCtx::inherited.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <ipcx/ipcx.hpp>

#include "bench/channel.hpp"
#include "bench/util.hpp"

namespace ipcx::bench {

struct RunCtx {
  std::size_t size;
  std::string path;            // unique per measurement, inside the run's private directory
  std::vector<int> inherited;  // child only: the descriptors given by parent_prepare(), in order
};

// What the parent hands the echo child besides its arguments.
//
// Child descriptors: 3 and 4 are left to `pipe:` (IPCX_PIPE_FDS, as spawn_connected() wires
// them), 5 is the control pipe, given descriptors follow from 6.
class ChildWiring {
 public:
  static constexpr int kControlFd = 5;
  static constexpr int kFirstGivenFd = 6;

  // Hands `fd` to the child; the parent's copy is closed once the child runs.
  void give(Fd fd) { given_.push_back(std::move(fd)); }
  // Adds "NAME=value" to the child's environment.
  void env(std::string name_value) { env_.push_back(std::move(name_value)); }

  // For the harness.
  void control(Fd write_end) { control_ = std::move(write_end); }
  std::vector<int> child_fds() const;
  SpawnOptions options() const;
  void close_parent_copies() noexcept;

 private:
  std::vector<Fd> given_;
  Fd control_;
  std::vector<std::string> env_;
};

class Setup {
 public:
  virtual ~Setup() = default;
  // Parent, before the child starts: creates what the child inherits or opens.
  virtual Status parent_prepare(ChildWiring&) { return {}; }
  // Parent: starts the echo child. A setup that wires the child itself overrides it.
  virtual Result<Process> spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
    return Process::spawn(argv, options);
  }
  // Child: creates what the parent will open or connect to; returns what the parent needs to
  // find it (e.g. a URL with a kernel-chosen port).
  virtual Result<std::string> child_prepare() { return std::string(); }
  virtual Made<Channel> child_channel() = 0;
  // Parent, once the child is ready.
  virtual Made<Channel> parent_channel(const std::string& ready, pid_t child) = 0;
  // Parent of a row with several echo children (Mechanism::children), once all are ready: what
  // each said, in the order they were started.
  virtual Made<Channel> parent_channel_all(const std::vector<std::string>& ready, const std::vector<pid_t>& children) {
    return parent_channel(ready.at(0), children.at(0));
  }
  // The signal the parent waits on, when it waits on a signal rather than a descriptor.
  virtual int wake_signal() const { return 0; }
};

using MakeSetup = std::unique_ptr<Setup> (*)(const RunCtx&);

// ipcx, the common case: the child listens at `url` and accepts; the parent connects to the
// listener's URL, or to what `connect_url` makes of it.
using ConnectUrl = std::string (*)(const std::string& listener_url, pid_t child);
// `remove`: called by the parent when the measurement is over, for a kernel object the listener
// makes that outlives a killed echo child (a System V queue): the child removes it when it ends
// normally, not when an interrupt kills it.
using RemoveUrl = void (*)(const std::string& url);
std::unique_ptr<Setup> ipcx_listen(std::string url, ConnectUrl connect_url = nullptr, int wake_signal = 0,
                                   RemoveUrl remove = nullptr);

}  // namespace ipcx::bench
