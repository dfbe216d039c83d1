// The two messages of a channel on the wire (docs/semantics.md, "Wire format"). All integers
// little-endian.
//
//   channel_data: [0x01][flags][seq: u64][payload...]        10-byte header
//   channel_ack:  [0x02][0x00][resolved: u64][discarded: u64] exactly 18 bytes
//
// A data message whose flags have `cancel` set carries no payload: it withdraws the message
// numbered `seq`, sent earlier (its sender's deadline passed before the acknowledgement).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "messaging/envelope.hpp"

namespace ipcx::messaging::channel_wire {

inline constexpr std::size_t data_header = 10;
inline constexpr std::size_t ack_size = 18;

enum Flags : std::uint8_t {
  confirm = 0x01,  // the sender waits for this message's acknowledgement: acknowledge at once
  cancel = 0x02,   // withdraws message `seq` (no payload)
};
inline constexpr std::uint8_t known_flags = confirm | cancel;

inline void put_u64(std::byte* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
inline std::uint64_t get_u64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(std::to_integer<unsigned>(p[i])) << (8 * i);
  return v;
}

// Writes header + payload into `out` (its capacity is reused).
inline void encode_data(std::vector<std::byte>& out, std::uint8_t flags, std::uint64_t seq,
                        std::span<const std::byte> payload) {
  out.resize(data_header + payload.size());
  out[0] = std::byte(Kind::channel_data);
  out[1] = std::byte(flags);
  put_u64(out.data() + 2, seq);
  if (!payload.empty()) std::copy(payload.begin(), payload.end(), out.begin() + data_header);
}

inline void encode_ack(std::byte (&out)[ack_size], std::uint64_t resolved, std::uint64_t discarded) noexcept {
  out[0] = std::byte(Kind::channel_ack);
  out[1] = std::byte{0};
  put_u64(out + 2, resolved);
  put_u64(out + 10, discarded);
}

}  // namespace ipcx::messaging::channel_wire
