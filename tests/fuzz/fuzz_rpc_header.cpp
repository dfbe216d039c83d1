// libFuzzer target: rpc::wire::decode, the header in front of every RPC message (docs/rpc.md).
//
// Input: one byte giving the number of descriptors said to be attached (0–3), then the
// message. An accepted message must round-trip: encoding the decoded frame with its inline
// payload gives back the very same bytes. A refused one carries a protocol error with a reason.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "rpc/wire.hpp"

namespace {

[[noreturn]] void check_failed(const char* what, int line) {
  std::fprintf(stderr, "fuzz_rpc_header.cpp:%d: check failed: %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond) ((cond) ? void(0) : check_failed(#cond, __LINE__))

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace wire = ipcx::rpc::wire;
  if (size < 1) return 0;
  const std::size_t fds = data[0] & 3;
  // A copy of its own, so ASan sees any read past the message's end.
  std::vector<std::byte> msg(size - 1);
  if (!msg.empty()) std::memcpy(msg.data(), data + 1, msg.size());
  auto f = wire::decode(msg, fds);
  if (!f) {
    FUZZ_CHECK(f.error().code == ipcx::Errc::protocol);
    FUZZ_CHECK(!f.error().detail.empty());
    return 0;
  }
  FUZZ_CHECK(msg.size() >= wire::kFixed);
  FUZZ_CHECK(f->id != 0 || f->kind == wire::Kind::error);
  FUZZ_CHECK(f->method.size() <= wire::kMaxMethod);
  FUZZ_CHECK(f->message.size() <= wire::kMaxStatusMessage);
  FUZZ_CHECK(f->has(wire::flag::out_of_band) == (fds == 1));
  FUZZ_CHECK(!f->has(wire::flag::out_of_band) || f->payload.empty());
  if (!f->payload.empty()) {
    FUZZ_CHECK(f->payload.data() >= msg.data());
    FUZZ_CHECK(f->payload.data() + f->payload.size() == msg.data() + msg.size());
  }
  std::vector<std::byte> out;
  auto room = wire::encode(out, *f, f->payload.size());
  if (!f->payload.empty()) std::memcpy(room.data(), f->payload.data(), f->payload.size());
  FUZZ_CHECK(out == msg);  // round trip, byte for byte
  return 0;
}
