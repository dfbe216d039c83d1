// A child process wired to its parent by a pair of anonymous pipes (the pipe: transport).
#pragma once

#include <string>
#include <vector>

#include <ipcx/connection.hpp>
#include <ipcx/process.hpp>

namespace ipcx {

// A child connected to the parent by a pair of anonymous pipes. The child reaches its end
// with ipcx::connect("pipe:") (descriptors announced in IPCX_PIPE_FDS).
struct Child {
  Process process;
  Connection connection;
};
Result<Child> spawn_connected(const std::vector<std::string>& argv, const Options& options = {},
                              SpawnOptions spawn = {});

}  // namespace ipcx
