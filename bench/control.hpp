// The control pipe between the parent and its echo child: the child writes "ready TEXT\n" once
// the parent may connect, or "error MESSAGE\n" before it exits; the parent reads them with a
// deadline and sees end-of-file when the child is gone.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include <ipcx/ipcx.hpp>

namespace ipcx::bench {

// Child side. Newlines in `text` become spaces: one report is one line.
void write_control(int fd, std::string_view kind, std::string text);

// Parent side.
class Control {
 public:
  explicit Control(Fd fd) : fd_(std::move(fd)) {}

  // The next line, waiting up to `timeout`; Errc::closed if the child exited first.
  Result<std::string> line(std::chrono::milliseconds timeout);
  // Waits up to `timeout` for the child to close its end (it exits); false on timeout.
  bool wait_eof(std::chrono::milliseconds timeout);
  // What the child reported with "error ...", if anything.
  std::string child_error() const;
  // The text of the child's last "KIND ..." line, if it wrote one.
  std::string reported(std::string_view kind) const;

 private:
  Result<std::size_t> read_some(std::chrono::steady_clock::time_point until);
  Fd fd_;
  std::string text_;
};

}  // namespace ipcx::bench
