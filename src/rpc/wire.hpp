// The RPC header (docs/rpc.md): what travels in front of every RPC message, inside one
// transport message. Decoding checks every field against the message's size and the
// protocol's limits before anything is used; it never allocates. Fuzzed (fuzz/rpc_header).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <ipcx/error.hpp>

#include "wire/deadline.hpp"

namespace ipcx::rpc::wire {

static_assert(std::endian::native == std::endian::little, "the wire is little-endian; add byte swaps for this target");

inline constexpr std::uint8_t kMagic = 0xC7;
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kFixed = 16;           // magic, version, kind, flags, u64 id, u32 aux
inline constexpr std::size_t kMaxMethod = 256;      // "package.Service/Method"
inline constexpr std::size_t kMaxStatusMessage = 4096;
inline constexpr std::uint64_t kNoDeadline = ::ipcx::wire::kNoDeadline;

enum class Kind : std::uint8_t {
  call = 1,      // client → server: method, remaining time, request
  response = 2,  // server → client: the end of a unary call (status; payload when OK)
  item = 3,      // server → client: one item of a stream (`aux`: the window the server keeps for it)
  end = 4,       // server → client: the end of a stream (status)
  cancel = 5,    // client → server: stop working on this call
  credit = 6,    // client → server: the stream may send `aux` more items
  error = 7,     // either way: the connection is about to close (status, message); id 0
};

namespace flag {
inline constexpr std::uint8_t one_way = 0x01;      // call: send no response
inline constexpr std::uint8_t stream = 0x02;       // call: the response is a stream
inline constexpr std::uint8_t out_of_band = 0x04;  // the payload is in the one attached memfd
inline constexpr std::uint8_t known = one_way | stream | out_of_band;
}  // namespace flag

struct Frame {
  Kind kind{};
  std::uint8_t flags = 0;
  std::uint64_t id = 0;
  std::uint32_t aux = 0;                   // call: stream window; response/end/error: status code; credit: items; item: the call's window
  std::uint64_t remaining_us = kNoDeadline;  // call: time left before the caller gives up
  std::string_view method;                 // call
  std::string_view message;                // response/end/error: the status message
  std::uint64_t oob_size = 0;              // out_of_band: the memfd's size
  std::span<const std::byte> payload;      // inline payload (empty when out of band)

  bool has(std::uint8_t f) const noexcept { return (flags & f) != 0; }
};

// Decodes and validates a received message carrying `fds` descriptors. Errors: protocol,
// with a reason fit for the peer ("method name of 300 bytes, over 256").
Result<Frame> decode(std::span<const std::byte> message, std::size_t fds) noexcept;

// Writes the header for `f` (its payload field ignored) into `out`, followed by room for
// `inline_size` payload bytes; returns where the payload goes. `out`'s capacity is reused.
std::span<std::byte> encode(std::vector<std::byte>& out, const Frame& f, std::size_t inline_size);

// "a.B/C" -> true: printable ASCII without spaces, one '/', neither end empty.
bool valid_method(std::string_view name) noexcept;

}  // namespace ipcx::rpc::wire
