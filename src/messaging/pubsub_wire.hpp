// The fields that follow the Kind byte (envelope.hpp) in pub/sub and push/pull messages.
// docs/patterns.md is the reference; all integers little-endian.
//
//   publication   0x10  u64 sequence, u8 topic length, topic bytes, payload
//   subscribe     0x11  prefix bytes (0..max_topic)
//   unsubscribe   0x12  prefix bytes
//   work          0x18  payload
//   credit        0x19  u64 messages taken so far (cumulative), u32 window
//   stat_request  0x70  (nothing)
//   stat_reply    0x71  JSON text
//   hello         0x7e  the pattern role, ASCII: "sub" or "pull"
//   error         0x7f  UTF-8 reason; the sender closes after it
#pragma once

#include <cstddef>
#include <cstdint>
#include <array>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "messaging/envelope.hpp"

namespace ipcx::messaging {

inline constexpr std::size_t kCreditSize = 1 + 8 + 4;
inline constexpr std::size_t kPublicationHeader = 1 + 8 + 1;  // then the topic
inline constexpr std::size_t kMaxWindow = 65536;
inline constexpr std::string_view kRoleSub = "sub";
inline constexpr std::string_view kRolePull = "pull";

inline void put_u64(std::byte* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
inline void put_u32(std::byte* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
inline std::uint64_t get_u64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
  return v;
}
inline std::uint32_t get_u32(const std::byte* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
  return v;
}

inline std::span<const std::byte> bytes_of(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view text_of(std::span<const std::byte> b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// kind + text (subscribe, unsubscribe, hello, error, stat_reply).
inline std::vector<std::byte> tagged(Kind k, std::string_view text) {
  std::vector<std::byte> out(1 + text.size());
  out[0] = std::byte(k);
  if (!text.empty()) std::memcpy(out.data() + 1, text.data(), text.size());
  return out;
}

inline std::array<std::byte, kCreditSize> credit_frame(std::uint64_t taken, std::uint32_t window) noexcept {
  std::array<std::byte, kCreditSize> f{};
  f[0] = std::byte(Kind::credit);
  put_u64(f.data() + 1, taken);
  put_u32(f.data() + 9, window);
  return f;
}

}  // namespace ipcx::messaging
