// The sysv:// conversation protocol over one queue's message types (docs/sysv.md):
//   type 1        hello: a client announces a conversation to the listener
//   type 2        the owner record: the listener's pid and start time (never received; read
//                 with MSG_COPY by whoever needs to know whether the listener lives)
//   16 + 4*id     client -> server of conversation `id` (data, then a bye)
//   17 + 4*id     server -> client
//   18 + 4*id     "the client closed": read by the server's sending side
//   19 + 4*id     "the server closed": read by the client's sending side
// Every message's first byte says what it is. A bye travels on the data type, so the receiver
// sees it after everything sent before it; the closed note lets a sender that never receives
// learn that nobody will read what it sends.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace ipcx::sysv::proto {

inline constexpr long kHelloType = 1;
inline constexpr long kOwnerType = 2;
inline constexpr long kFirstConversationType = 16;

enum class Kind : std::uint8_t {
  data = 0x01,     // payload follows
  bye = 0x02,      // the sender will send nothing more (close, close_send)
  wake = 0x03,     // sent by a process to its own receive type: a blocked recv returns to look
  hello = 0x04,    // u64 conversation id, u32 client pid
  owner = 0x06,    // u32 listener pid, u64 its start time (clock ticks after boot)
};

inline long client_to_server(std::uint64_t id) { return kFirstConversationType + 4 * static_cast<long>(id); }
inline long server_to_client(std::uint64_t id) { return client_to_server(id) + 1; }
inline long client_closed(std::uint64_t id) { return client_to_server(id) + 2; }
inline long server_closed(std::uint64_t id) { return client_to_server(id) + 3; }

inline void put(std::vector<std::byte>& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(std::byte((v >> (8 * i)) & 0xff));
}
inline std::optional<std::uint64_t> get(std::span<const std::byte> in, std::size_t at, int bytes) {
  if (in.size() < at + static_cast<std::size_t>(bytes)) return std::nullopt;
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(in[at + static_cast<std::size_t>(i)]);
  return v;
}

// True when `pid` still runs and started at `started` (os::process_start_time: a zombie is
// not running).
bool alive(pid_t pid, std::uint64_t started);

}  // namespace ipcx::sysv::proto
