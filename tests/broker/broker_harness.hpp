// A real ipcxd for tests: the built binary in a scratch directory of its own (socket and
// state), started, SIGKILLed and restarted on the same state.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <ipcx/broker.hpp>
#include <ipcx/process.hpp>

#include "test_util.hpp"

namespace ipcx::test {

class Daemon {
 public:
  Daemon() : url_("unix://" + dir_.file("ipcxd.sock")) {}
  ~Daemon() { kill(SIGKILL); }

  // Starts ipcxd and waits until it answers. Its standard error goes to log().
  bool start(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{IPCX_DAEMON, "--socket", url_, "--state-dir", state_dir()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Fd err(::open(dir_.file("ipcxd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    SpawnOptions so;
    so.fds = {{2, err.get()}};
    auto p = Process::spawn(argv, so);
    if (!p) {
      ADD_FAILURE() << p.error().message();
      return false;
    }
    proc_ = std::move(*p);
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20); std::chrono::steady_clock::now() < until;) {
      if (auto c = broker::Client::connect(url_, std::chrono::milliseconds(200)); c && c->status()) return true;
      if (!proc_.running() || proc_.wait(std::chrono::milliseconds(0))) {
        ADD_FAILURE() << "ipcxd exited at start: " << log();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "ipcxd did not answer within 20 s: " << log();
    return false;
  }
  // Sends `sig` and reaps it (SIGKILL: a crash; SIGTERM: a clean stop). Returns the exit code.
  int kill(int sig) {
    if (!proc_.running()) return -1;
    (void)proc_.kill(sig);
    auto code = proc_.wait(std::chrono::seconds(20));
    if (!code) {
      (void)proc_.kill(SIGKILL);
      code = proc_.wait();
    }
    return code ? *code : -1;
  }
  broker::Client client() {
    auto c = broker::Client::connect(url_);
    EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().message());
    return c ? std::move(*c) : broker::Client();
  }
  const std::string& url() const { return url_; }
  std::string state_dir() const { return dir_.file("state"); }
  std::string queue_dir(const std::string& q) const { return state_dir() + "/queues/" + q; }
  std::string log() const {
    std::ifstream in(dir_.file("ipcxd.log"));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  pid_t pid() const { return proc_.pid(); }
  const ScratchDir& dir() const { return dir_; }

 private:
  ScratchDir dir_;
  std::string url_;
  Process proc_;
};

inline std::span<const std::byte> bytes_of(const std::string& s) { return as_bytes(s); }

}  // namespace ipcx::test
