// The headers of request/reply and survey messages (docs/reqrep.md): the Kind byte, then
// little-endian fields, then the payload. Shared by the requester, replier, surveyor and
// respondent; nothing here allocates.
#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <ipcx/semantics.hpp>
#include <ipcx/timeout.hpp>

#include "messaging/envelope.hpp"
#include "wire/deadline.hpp"

namespace ipcx::messaging::rr {

static_assert(std::endian::native == std::endian::little, "the wire is little-endian; add byte swaps for this target");

// request / question: kind u8, id u64, remaining u64 (microseconds; kNoDeadline: none)
inline constexpr std::size_t kAskHeader = 17;
// reply: kind u8, id u64, status u8
inline constexpr std::size_t kReplyHeader = 10;
// answer: kind u8, id u64
inline constexpr std::size_t kAnswerHeader = 9;
inline constexpr std::uint64_t kNoDeadline = wire::kNoDeadline;

enum class Status : std::uint8_t {
  ok = 0,       // the payload is the reply
  refused = 1,  // the replier's backlog for this connection was full; no payload
};

using Clock = std::chrono::steady_clock;

inline void put_u64(std::byte* at, std::uint64_t v) noexcept { std::memcpy(at, &v, 8); }
inline std::uint64_t get_u64(const std::byte* at) noexcept {
  std::uint64_t v;
  std::memcpy(&v, at, 8);
  return v;
}

using wire::local_deadline;
using wire::remaining_us;

// Writes header + payload into `out` (its capacity is reused).
inline void encode(std::vector<std::byte>& out, std::span<const std::byte> header, std::span<const std::byte> payload) {
  out.resize(header.size() + payload.size());
  std::memcpy(out.data(), header.data(), header.size());
  if (!payload.empty()) std::memcpy(out.data() + header.size(), payload.data(), payload.size());
}

inline void encode_ask(std::vector<std::byte>& out, Kind kind, std::uint64_t id, std::uint64_t remaining,
                       std::span<const std::byte> payload) {
  std::byte h[kAskHeader];
  h[0] = static_cast<std::byte>(kind);
  put_u64(h + 1, id);
  put_u64(h + 9, remaining);
  encode(out, h, payload);
}

inline void encode_reply(std::vector<std::byte>& out, std::uint64_t id, Status status,
                         std::span<const std::byte> payload) {
  std::byte h[kReplyHeader];
  h[0] = static_cast<std::byte>(Kind::reply);
  put_u64(h + 1, id);
  h[9] = static_cast<std::byte>(status);
  encode(out, h, payload);
}

inline void encode_answer(std::vector<std::byte>& out, std::uint64_t id, std::span<const std::byte> payload) {
  std::byte h[kAnswerHeader];
  h[0] = static_cast<std::byte>(Kind::answer);
  put_u64(h + 1, id);
  encode(out, h, payload);
}

// kind error + UTF-8 reason: what an endpoint tells a peer it is about to drop.
inline void encode_error(std::vector<std::byte>& out, std::string_view why) {
  const std::byte k = static_cast<std::byte>(Kind::error);
  encode(out, {&k, 1}, {reinterpret_cast<const std::byte*>(why.data()), why.size()});
}

inline void encode_stat_reply(std::vector<std::byte>& out, const Counters& c) {
  const std::byte k = static_cast<std::byte>(Kind::stat_reply);
  const auto json = to_json(c);
  encode(out, {&k, 1}, {reinterpret_cast<const std::byte*>(json.data()), json.size()});
}

inline std::optional<Kind> kind_of(std::span<const std::byte> m) noexcept {
  if (m.empty()) return std::nullopt;
  return static_cast<Kind>(m[0]);
}

inline std::string_view text_after_kind(std::span<const std::byte> m) noexcept {
  if (m.size() <= 1) return {};
  return {reinterpret_cast<const char*>(m.data() + 1), m.size() - 1};
}

}  // namespace ipcx::messaging::rr
