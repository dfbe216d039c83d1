// Bytes on the wire and the message type every transport returns.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include <ipcx/fd.hpp>

namespace ipcx {

inline std::span<const std::byte> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// A received message: owns its payload and any file descriptors that came with it.
// Reusing one Message across recv() calls keeps its buffer's capacity (no allocation per message).
struct Message {
  std::vector<std::byte> data;
  std::vector<Fd> fds;

  std::size_t size() const noexcept { return data.size(); }
  std::span<const std::byte> bytes() const noexcept { return data; }
  std::string_view text() const noexcept {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
  }
};

}  // namespace ipcx
