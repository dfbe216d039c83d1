// Starting the receiving end (ipcx-channel-worker) in another process, on any transport, and
// stopping it for real (SIGSTOP). The transport table is the one place a new URL scheme is
// added to the multi-process channel tests.
#pragma once

#include <csignal>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/channel.hpp>
#include <ipcx/spawn.hpp>

#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx::test {

struct TransportRow {
  const char* name;
  // The URL the worker listens on, under `dir`; "pipe:" makes it a spawn_connected child.
  std::string (*url)(const ScratchDir& dir);
};

inline void PrintTo(const TransportRow& r, std::ostream* os) { *os << r.name; }

inline const std::vector<TransportRow>& transports() {
  static const std::vector<TransportRow> rows = {
      {"pipe", [](const ScratchDir&) { return std::string("pipe:"); }},
      {"unix", [](const ScratchDir& d) { return "unix://" + d.file("ch.sock"); }},
      {"unix_seq", [](const ScratchDir& d) { return "unix+seq://" + d.file("ch.sock"); }},
      {"tcp", [](const ScratchDir&) { return std::string("tcp://127.0.0.1:0"); }},
      {"fifo", [](const ScratchDir& d) { return "fifo://" + d.file("ch.fifo"); }},
      {"mq", [](const ScratchDir&) { return mq_test_url(8192); }},
      {"sysv", [](const ScratchDir&) { return sysv_test_url(); }},
  };
  return rows;
}

struct ChannelPeer {
  ScratchDir dir;
  Process process;
  Channel channel;
};

// Reads one line from `fd` within 20 s ("" on failure).
inline std::string read_line(int fd) {
  std::string line;
  char c;
  while (true) {
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 20000) != 1) return {};
    if (::read(fd, &c, 1) != 1) return {};
    if (c == '\n') return line;
    line += c;
  }
}

// Starts a worker receiving on `row` with `window`, and connects a sending Channel to it.
inline void start_worker(ChannelPeer& w, const TransportRow& row, const ChannelOptions& opts) {
  const std::string url = row.url(w.dir);
  const std::vector<std::string> argv = {IPCX_CHANNEL_WORKER, url, std::to_string(opts.window)};
  if (url == "pipe:") {
    auto c = spawn_connected(argv, opts.transport);
    ASSERT_TRUE(c) << why(c);
    w.process = std::move(c->process);
    auto ch = Channel::wrap(std::move(c->connection), opts);
    ASSERT_TRUE(ch) << why(ch);
    w.channel = std::move(*ch);
    return;
  }
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  Fd r(out[0]), wr(out[1]);
  auto p = Process::spawn(argv, {.fds = {{1, wr.get()}}});
  ASSERT_TRUE(p) << why(p);
  w.process = std::move(*p);
  wr = Fd();
  const std::string bound = read_line(r.get());
  ASSERT_FALSE(bound.empty()) << "the worker printed no URL";
  auto ch = Channel::connect(bound, opts, std::chrono::seconds(20));
  ASSERT_TRUE(ch) << why(ch);
  w.channel = std::move(*ch);
}

inline char process_state(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto at = s.rfind(") ");
  return at == std::string::npos || at + 2 >= s.size() ? '?' : s[at + 2];
}

// SIGSTOP, and waits until the kernel reports the process stopped.
inline void stop(Process& p) {
  ASSERT_TRUE(p.kill(SIGSTOP));
  ASSERT_TRUE(eventually([&] { return process_state(p.pid()) == 'T'; }, std::chrono::seconds(20)));
}
inline void resume(Process& p) { ASSERT_TRUE(p.kill(SIGCONT)); }

// Asks the worker for what it received ("end"), closes, and waits for it to exit cleanly.
inline std::vector<std::string> finish(ChannelPeer& w) {
  using namespace std::chrono_literals;
  std::vector<std::string> got;
  auto s = w.channel.send(as_bytes("end"), 30s);
  EXPECT_TRUE(s) << why(s);
  auto reply = w.channel.recv(30s);
  EXPECT_TRUE(reply) << why(reply);
  if (reply) {
    auto t = std::string(reply->text());
    EXPECT_EQ(t.rfind("got:", 0), 0u) << t;
    t = t.substr(4);
    for (std::size_t at = 0; !t.empty() && at <= t.size();) {
      auto comma = t.find(',', at);
      if (comma == std::string::npos) comma = t.size();
      got.push_back(t.substr(at, comma - at));
      at = comma + 1;
    }
  }
  w.channel.close();
  auto rc = w.process.wait(30s);
  EXPECT_TRUE(rc && *rc == 0) << (rc ? "exit " + std::to_string(*rc) : why(rc));
  return got;
}

inline void expect_balanced(const Counters& c) {
  EXPECT_EQ(c.sent, c.delivered + c.dropped.total() + c.queued)
      << "sent " << c.sent << " delivered " << c.delivered << " dropped " << c.dropped.total() << " queued " << c.queued;
}

// Reads acknowledgements until nothing sent is unresolved.
inline void settle(Channel& ch) {
  using namespace std::chrono_literals;
  EXPECT_TRUE(eventually([&] { return ch.poll(10ms).has_value() && ch.stats().queued == 0; }, 30s))
      << "queued " << ch.stats().queued;
}

inline std::string label(int i) { return fmt::format("m{:05}", i); }

}  // namespace ipcx::test
