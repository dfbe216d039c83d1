// libFuzzer target: wire::decode_header on 16 bytes (docs/wire.md).
//
// Input: the 16 header bytes, then optionally 8 bytes (little-endian) of the maximum payload
// (default kDefaultMaxPayload). decode_header must accept exactly the headers the written-out
// rules accept, with the error code they predict; an accepted header must carry the fields
// found at their offsets, and encode_header must give back the very same 16 bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>

#include "wire/frame.hpp"

namespace {

[[noreturn]] void check_failed(const char* what, int line) {
  std::fprintf(stderr, "fuzz_decode_header.cpp:%d: check failed: %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond) ((cond) ? void(0) : check_failed(#cond, __LINE__))

std::uint64_t le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using ipcx::Errc;
  namespace wire = ipcx::wire;
  if (size < wire::kHeaderSize) return 0;
  std::size_t max = wire::kDefaultMaxPayload;
  if (size >= wire::kHeaderSize + 8) max = static_cast<std::size_t>(le(data + wire::kHeaderSize, 8));

  wire::HeaderBytes in;
  std::memcpy(in.data(), data, in.size());
  auto h = wire::decode_header(in, max);

  const std::uint64_t flags = le(data + 4, 2), fds = le(data + 6, 2), length = le(data + 8, 4),
                      reserved = le(data + 12, 4);
  std::optional<Errc> expect;
  if (data[0] != 0x49 || data[1] != 0x58 || data[2] != 1 || (data[3] != 1 && data[3] != 2) || (flags & ~1u) != 0 ||
      fds > 253 || reserved != 0)
    expect = Errc::protocol;
  else if (length > max)
    expect = Errc::too_large;

  if (!h) {
    FUZZ_CHECK(expect.has_value());
    FUZZ_CHECK(h.error().code == *expect);
    FUZZ_CHECK(h.error().sys_errno == 0);
    FUZZ_CHECK(!h.error().detail.empty());
    FUZZ_CHECK(!h.error().message().empty());
    return 0;
  }
  FUZZ_CHECK(!expect.has_value());
  FUZZ_CHECK(static_cast<std::uint8_t>(h->type) == data[3]);
  FUZZ_CHECK(h->flags == flags);
  FUZZ_CHECK(h->fd_count == fds);
  FUZZ_CHECK(h->length == length);
  FUZZ_CHECK(h->length <= max);
  const wire::HeaderBytes out = wire::encode_header(*h);
  FUZZ_CHECK(out == in);  // round trip, byte for byte
  return 0;
}
