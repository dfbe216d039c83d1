// Small helpers shared by the unit and conformance tests (assertion macros, payload patterns).
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>

namespace ipcx {
// Lets gtest print error codes by name.
inline void PrintTo(Errc e, std::ostream* os) { *os << to_string(e) << " (" << static_cast<int>(e) << ")"; }
}  // namespace ipcx

namespace ipcx::test {

// The error message of a failed Result, "" for success (for `<< why(r)` after an assertion).
template <class T>
std::string why(const Result<T>& r) {
  return r ? std::string() : r.error().message();
}

// Deterministic, size- and seed-dependent bytes: a misplaced or shifted byte is caught.
inline std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> out(n);
  std::uint32_t x = seed * 2654435761u + static_cast<std::uint32_t>(n) + 1u;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = std::byte(x & 0xff);
  }
  return out;
}

// "" when equal, else where they first differ (never dumps megabytes into the log).
inline std::string mismatch(std::span<const std::byte> got, std::span<const std::byte> want) {
  if (got.size() != want.size())
    return "size " + std::to_string(got.size()) + " != expected " + std::to_string(want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i])
      return "byte " + std::to_string(i) + " is " + std::to_string(std::to_integer<int>(got[i])) +
             ", expected " + std::to_string(std::to_integer<int>(want[i]));
  return {};
}

// Runs `f` on a thread. If the test leaves early (a failed ASSERT), the destructor first closes
// `unblock` — the connection the thread's peer uses — so a thread blocked in send/recv fails
// instead of hanging, then joins.
class Worker {
 public:
  template <class F>
  Worker(Connection& unblock, F&& f) : unblock_(&unblock), thread_(std::forward<F>(f)) {}
  template <class F>
  explicit Worker(F&& f) : thread_(std::forward<F>(f)) {}
  ~Worker() {
    if (thread_.joinable()) {
      if (unblock_) unblock_->close();
      thread_.join();
    }
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  void join() { thread_.join(); }

 private:
  Connection* unblock_ = nullptr;
  std::thread thread_;
};

}  // namespace ipcx::test

// ASSERT that a Result holds a value; prints the error otherwise.
#define IPCX_ASSERT_OK(expr)                                                            \
  do {                                                                                  \
    auto&& ipcx_r_ = (expr);                                                            \
    ASSERT_TRUE(ipcx_r_.has_value()) << #expr << ": " << ipcx_r_.error().message();     \
  } while (0)

#define IPCX_EXPECT_OK(expr)                                                            \
  do {                                                                                  \
    auto&& ipcx_r_ = (expr);                                                            \
    EXPECT_TRUE(ipcx_r_.has_value()) << #expr << ": " << ipcx_r_.error().message();     \
  } while (0)

// EXPECT that a Result failed with `errc`.
#define IPCX_EXPECT_ERRC(expr, errc)                                                    \
  do {                                                                                  \
    auto&& ipcx_r_ = (expr);                                                            \
    if (ipcx_r_.has_value())                                                            \
      ADD_FAILURE() << #expr << " succeeded, expected " << ::ipcx::to_string(errc);     \
    else                                                                                \
      EXPECT_EQ(ipcx_r_.error().code, errc) << ipcx_r_.error().message();               \
  } while (0)
