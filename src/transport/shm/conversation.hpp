// One shm:// conversation: two rings in one sealed memfd, wake-ups by futex or pipe, a Unix
// seqpacket socket for the handshake and for noticing the peer's end (docs/shm.md, "The shm://
// transport").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <ipcx/connection.hpp>

#include "shm/ring.hpp"
#include "transport/transport.hpp"

namespace ipcx::transport::shm {

using ipcx::shm::WaitPolicy;

inline constexpr std::uint32_t kMagic = 0x48535849;  // "IXSH", little-endian
inline constexpr std::uint32_t kVersion = 3;  // 1 passed eventfds as wake-ups; 2 published a position, not records
inline constexpr std::size_t kDefaultRing = std::size_t{256} << 10;
inline constexpr std::size_t kDefaultMaxRing = std::size_t{16} << 20;
inline constexpr std::size_t kHeaderBytes = 64;

// At offset 0 of the conversation's memory; ring 0 (listener to client) follows at 64, ring 1
// (client to listener) after it.
struct LayoutHeader {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint64_t capacity;  // data bytes of each ring
  std::uint64_t ring_offset[2];
  std::uint8_t reserved[kHeaderBytes - 32];
};
static_assert(sizeof(LayoutHeader) == kHeaderBytes);

constexpr std::size_t layout_size(std::size_t capacity) noexcept {
  return kHeaderBytes + 2 * ipcx::shm::ring::footprint(capacity);
}

// The handshake, one seqpacket record each way, sent without waiting for the other:
// client -> listener at connect: Hello + SCM_RIGHTS [memfd, client data pipe, client space pipe]
// listener -> client at accept:  Setup + SCM_RIGHTS [listener data pipe, listener space pipe]
// Each side opens its own description of the other's pipes (ring::poke_pipe).
// The client makes the memory (sealed against resizing), so it can write before it is accepted,
// as into a socket's buffer; the listener maps what it is given after checking it.
struct Hello {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint64_t capacity;
};
struct Setup {
  std::uint32_t magic;
  std::uint32_t version;
};

struct EndpointOptions {
  WaitPolicy wait;
  std::size_t ring = kDefaultRing;      // client: each ring's data bytes
  std::size_t max_ring = kDefaultMaxRing;  // listener: the largest ring a client may bring
  Options options;
};

// The listener's side of an accepted socket: sends Setup; takes Hello now if it is there, else
// in the first call that needs the rings (the socket polls readable when it comes).
Result<std::unique_ptr<ConnectionImpl>> accept_conversation(Fd sock, const EndpointOptions& o);
// The client's side of a connected socket: makes the memory, sends Hello. Setup (the
// listener's wake pipes) is taken when a wake-up first needs it.
Result<std::unique_ptr<ConnectionImpl>> start_conversation(Fd sock, const EndpointOptions& o);

}  // namespace ipcx::transport::shm
