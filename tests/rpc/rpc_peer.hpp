// The methods of the RPC test peer (tests/rpc/rpc_peer.cpp), shared with the tests that call it.
#pragma once

#include <cstdint>

#include <ipcx/rpc.hpp>

namespace ipcx::test::rpc_peer {

namespace rpc = ipcx::rpc;

struct Add {
  std::int64_t a = 0, b = 0;
};
struct Sum {
  std::uint64_t checksum = 0;
  std::uint64_t size = 0;
  bool mapped = false;  // the request arrived out of band
};
struct Who {
  std::int64_t pid = -1, uid = -1, gid = -1;
  bool verified = false;
};
struct Fill {
  std::uint64_t size = 0;
  std::uint64_t seed = 0;
};
struct Counts {
  std::uint64_t notes = 0;           // one-way calls received
  std::uint64_t saw_cancel = 0;      // Sleep calls that saw ctx.cancelled() before their time
  std::uint64_t sleeping = 0;        // Sleep calls running now
};

inline constexpr rpc::Method<rpc::Payload, std::vector<std::byte>> kEcho{"test.Peer/Echo"};
inline constexpr rpc::Method<rpc::Payload, std::vector<std::byte>> kEchoLoop{"test.Peer/EchoLoop"};
inline constexpr rpc::Method<Add, std::int64_t> kAdd{"test.Peer/Add"};
inline constexpr rpc::Method<rpc::Payload, Sum> kChecksum{"test.Peer/Checksum"};
inline constexpr rpc::Method<Fill, rpc::Payload> kFill{"test.Peer/Fill"};
inline constexpr rpc::Method<std::uint32_t, rpc::Empty> kSleep{"test.Peer/Sleep"};  // ms; gives up when cancelled
inline constexpr rpc::Method<std::uint32_t, std::uint32_t> kCount{"test.Peer/Count"};  // streams 0..n-1
inline constexpr rpc::Method<rpc::Empty, Who> kWho{"test.Peer/Who"};
inline constexpr rpc::Method<std::uint64_t, rpc::Empty> kNote{"test.Peer/Note"};  // one-way
inline constexpr rpc::Method<rpc::Empty, Counts> kCounts{"test.Peer/Counts"};
inline constexpr rpc::Method<std::string, rpc::Empty> kFail{"test.Peer/Fail"};  // PERMISSION_DENIED with this message

// The checksum both sides compute: cheap enough for a gigabyte at -O0.
inline std::uint64_t checksum(std::span<const std::byte> b) {
  std::uint64_t h = 0x9e3779b97f4a7c15ull ^ b.size();
  std::size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  for (; i < b.size(); ++i) h = (h ^ static_cast<std::uint64_t>(b[i])) * 0x100000001b3ull;
  return h;
}

// The bytes Fill sends (and a test compares).
inline void fill(std::span<std::byte> out, std::uint64_t seed) {
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  std::size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(out.data() + i, &x, 8);
  }
  for (; i < out.size(); ++i) out[i] = static_cast<std::byte>(seed + i);
}

}  // namespace ipcx::test::rpc_peer
