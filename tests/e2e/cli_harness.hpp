// Runs the real ipcx binary (or a shell) as a child with stdout/stderr captured.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/spawn.hpp>

namespace ipcx::test {

class Child {
 public:
  static Child start(std::vector<std::string> argv) {
    int out[2], err[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    Fd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
    SpawnOptions so;
    so.fds = {{1, out_w.get()}, {2, err_w.get()}};
    auto p = Process::spawn(argv, so);
    EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message());
    Child c;
    if (p) c.proc_ = std::move(*p);
    c.out_ = std::move(out_r);
    c.err_ = std::move(err_r);
    return c;
  }
  static Child cli(std::vector<std::string> args) {
    args.insert(args.begin(), IPCX_CLI);
    return start(std::move(args));
  }
  static Child shell(const std::string& script) { return start({"/bin/sh", "-c", script}); }

  // Reads output until `needle` shows up in stdout (or stderr) or `timeout` passes.
  bool wait_stdout(std::string_view needle, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return wait_for(out_buf_, needle, timeout);
  }
  bool wait_stderr(std::string_view needle, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return wait_for(err_buf_, needle, timeout);
  }
  // Waits for exit (killing the child if it outlives `timeout`); returns the exit code.
  int finish(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while ((out_.valid() || err_.valid()) && std::chrono::steady_clock::now() < until) pump(50);
    auto code = proc_.wait(until - std::chrono::steady_clock::now());
    if (!code) {
      (void)proc_.kill(SIGKILL);
      code = proc_.wait();
      ADD_FAILURE() << "child did not exit in time; killed";
    }
    while (out_.valid() || err_.valid()) pump(50);
    return *code;
  }
  void signal(int sig) { ASSERT_TRUE(proc_.kill(sig).has_value()); }
  pid_t pid() const { return proc_.pid(); }
  const std::string& out() const { return out_buf_; }
  const std::string& err() const { return err_buf_; }

 private:
  bool wait_for(std::string& buf, std::string_view needle, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (buf.find(needle) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= until || (!out_.valid() && !err_.valid())) return false;
      pump(50);
    }
    return true;
  }
  void pump(int ms) {
    pollfd p[2] = {{out_.get(), POLLIN, 0}, {err_.get(), POLLIN, 0}};
    if (::poll(p, 2, ms) <= 0) return;
    read_into(out_, out_buf_, p[0].revents);
    read_into(err_, err_buf_, p[1].revents);
  }
  static void read_into(Fd& fd, std::string& buf, short revents) {
    if (!fd.valid() || !revents) return;
    char tmp[4096];
    ssize_t n = ::read(fd.get(), tmp, sizeof tmp);
    if (n > 0) buf.append(tmp, static_cast<std::size_t>(n));
    else fd.reset();
  }

  Process proc_;
  Fd out_, err_;
  std::string out_buf_, err_buf_;
};

// Lines of output (one-line errors are a promise of the CLI).
inline int count_lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

struct RunResult {
  int code;
  std::string out, err;
};
inline RunResult run_cli(std::vector<std::string> args) {
  auto c = Child::cli(std::move(args));
  int code = c.finish();
  return {code, c.out(), c.err()};
}
inline RunResult run_shell(const std::string& script) {
  auto c = Child::shell(script);
  int code = c.finish();
  return {code, c.out(), c.err()};
}

}  // namespace ipcx::test
