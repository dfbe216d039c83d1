// Small helpers shared by the bench module. The raw rows call the kernel directly on purpose
// (they are the baseline), so they need the EINTR loop and errno capture the library keeps private.
#pragma once

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <ipcx/error.hpp>

namespace ipcx::bench {

using Status = Result<void>;
template <class T>
using Made = Result<std::unique_ptr<T>>;

// Calls f() again while it fails with EINTR.
template <class F>
auto retry(F&& f) {
  for (;;) {
    auto r = f();
    if (r == -1 && errno == EINTR) continue;
    return r;
  }
}

inline std::unexpected<Error> sys_error(const char* op, std::string detail = {}) {
  return fail_errno(errno, op, std::move(detail));
}

// e.message(), but plain when the process ran out of descriptors: EMFILE, or EINVAL from spawn
// (ipcx's spawn moves the descriptors it hands over up high in the child, past a low limit).
std::string describe(const Error& e);

// Clears O_NONBLOCK (FIFO ends are opened non-blocking so that open() never waits for a peer).
Status set_blocking(int fd);
// Flushes stdout: an error when anything written to it was lost (closed, a full disk).
Status flush_stdout();

// CLOCK_MONOTONIC in nanoseconds: cheap enough to read once per round trip.
std::uint64_t now_ns() noexcept;

// Columns a UTF-8 string takes in a table ("µ" and "–" are one column but two or three bytes).
inline std::size_t display_width(std::string_view s) noexcept {
  std::size_t n = 0;
  for (char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

}  // namespace ipcx::bench
