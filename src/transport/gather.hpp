// Lays two pieces of one message (header + payload, or line + '\n') out for a single send.
#pragma once

#include <array>
#include <cstddef>
#include <cstring>
#include <span>

#include <sys/uio.h>

#include "wire/frame.hpp"

namespace ipcx::transport {

// Up to this many bytes, copying both pieces into one buffer and sending that with write()/
// send() is cheaper than a two-buffer writev()/sendmsg() (measured with `ipcx bench`).
inline constexpr std::size_t kCoalesceBelow = 8192 + wire::kHeaderSize;
using Scratch = std::array<std::byte, kCoalesceBelow>;

// Returns the iovecs to send: one (a and b copied into `scratch`) when they fit, else two
// pointing at a and b. The result refers to `out`, `scratch`, a and b: keep them alive.
inline std::span<iovec> gather(std::span<const std::byte> a, std::span<const std::byte> b, Scratch& scratch,
                               std::array<iovec, 2>& out) noexcept {
  if (a.size() + b.size() <= scratch.size()) {
    if (!a.empty()) std::memcpy(scratch.data(), a.data(), a.size());
    if (!b.empty()) std::memcpy(scratch.data() + a.size(), b.data(), b.size());
    out[0] = {scratch.data(), a.size() + b.size()};
    return std::span(out).first(1);
  }
  out[0] = {const_cast<std::byte*>(a.data()), a.size()};
  out[1] = {const_cast<std::byte*>(b.data()), b.size()};
  return out;
}

}  // namespace ipcx::transport
