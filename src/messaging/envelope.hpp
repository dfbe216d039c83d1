// The first byte of every message a pattern endpoint or a channel sends: what kind of message
// it is. The fields that follow depend on the kind (docs/patterns.md, docs/semantics.md); all
// integers little-endian. A peer that sends an unknown kind, or a message too short for its
// kind, is dropped with Errc::protocol (the endpoint keeps serving the others).
#pragma once

#include <cstdint>

namespace ipcx::messaging {

enum class Kind : std::uint8_t {
  // channel.hpp (point to point with semantics)
  channel_data = 0x01,
  channel_ack = 0x02,
  // pub/sub
  publication = 0x10,
  subscribe = 0x11,
  unsubscribe = 0x12,
  // push/pull
  work = 0x18,
  credit = 0x19,
  // request/reply
  request = 0x20,
  reply = 0x21,
  // survey
  question = 0x28,
  answer = 0x29,
  // any bound pattern endpoint: `ipcx stat URL`
  stat_request = 0x70,
  stat_reply = 0x71,  // followed by the endpoint's counters as JSON text
  // any endpoint: says which pattern it speaks (first message on a connection)
  hello = 0x7e,
  // an error the endpoint reports to its peer before closing (UTF-8 reason follows)
  error = 0x7f,
};

}  // namespace ipcx::messaging
