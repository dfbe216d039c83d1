// Helpers for the attack tests: raw sockets (bytes no ipcx client would send), files a
// listener logs into, and whether a process is still alive.
#pragma once

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "test_util.hpp"

namespace ipcx::test {

inline bool write_all(int fd, const void* data, std::size_t n) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A listener whose output would fill a pipe nobody drains writes it to a file instead (a
// blocked stderr would stall the very loop under test).
inline bool wait_file(const std::string& path, const std::string& needle,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (read_file(path).find(needle) == std::string::npos) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// Running and not a zombie.
inline bool alive(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(f, line)) return false;
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

inline int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

// How long 100 round trips of an honest client beside a hostile one may take: a stalled client
// waits for ever (each call gives up after 10 s), a served one is done within this. Sanitizer
// builds run several times slower, and a ThreadSanitizer run beside a flooder took 1000 ms.
#ifdef IPCX_TEST_SANITIZED
inline constexpr std::chrono::milliseconds kServedWithin{3000};
#else
inline constexpr std::chrono::milliseconds kServedWithin{1000};
#endif

// `n` echo round trips of distinct payloads; returns how long they took, or fails the test.
inline std::chrono::milliseconds round_trips(Connection& c, int n, std::size_t size = 100) {
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    std::string payload = fmt::format("{:0>{}}", i, size);
    auto s = c.send(as_bytes(payload), std::chrono::seconds(10));
    EXPECT_TRUE(s.has_value()) << "round trip " << i << ": " << s.error().message();
    if (!s) break;
    auto r = c.recv(std::chrono::seconds(10));
    EXPECT_TRUE(r.has_value()) << "round trip " << i << ": " << r.error().message();
    if (!r) break;
    EXPECT_EQ(r->text(), payload);
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}

}  // namespace ipcx::test
