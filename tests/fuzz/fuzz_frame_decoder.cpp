// libFuzzer target: wire::StreamDecoder in frames mode (docs/wire.md).
//
// FuzzedDataProvider splits the input into a byte stream (taken from the front) and the shape
// of the reads that deliver it (taken from the back), so the same frames arrive cut at every
// possible place. Whatever the cuts, the decoder must yield exactly what a one-pass reference
// parser of the whole stream yields: the same frames, then the same error or the same number of
// leftover bytes. Checks abort() so that libFuzzer keeps the input.
//
// Input layout, read from the end: 1 byte picks the maximum payload; then, per read, 1 byte of
// size (0..239 bytes, or 240..255 -> 1..16 x 4096 bytes) and 1 byte of how:
//   bits 0-1  the `min` passed to prepare(): 1 (4096 for reads over 4 KiB: byte-sized steps
//             through megabytes are slow), the rest of the read, 4096, or (how >> 4) x 8192
//             (over 64 KiB: the buffer compacts or grows, mid-frame)
//   bit 2     do not call next() after this read
//   bit 3     bulk: the read is size copies of one byte (1 more byte from the end).
//             With size 255 and the default maximum, 1 MiB of it: a megabyte payload reaches the
//             shrink of a buffer grown past 1 MiB. Only then: megabyte runs are ~10 ms each.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz/read_plan.hpp"
#include "wire/frame.hpp"

namespace {

using ipcx::Errc;
using ipcx::wire::FrameHeader;
using ipcx::wire::FrameType;
using ipcx::wire::StreamDecoder;

[[noreturn]] void check_failed(const char* what, int line) {
  std::fprintf(stderr, "fuzz_frame_decoder.cpp:%d: check failed: %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond) ((cond) ? void(0) : check_failed(#cond, __LINE__))

std::uint16_t le16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }
std::uint32_t le32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}

struct RefFrame {
  FrameHeader header;
  std::size_t offset;  // payload = stream[offset, offset + header.length)
};

struct Reference {
  std::vector<RefFrame> frames;
  std::optional<Errc> error;
  std::size_t leftover = 0;  // bytes after the last whole frame (when no error)
};

// The format of docs/wire.md written out independently of decode_header.
Reference parse(std::span<const std::uint8_t> s, std::size_t max) {
  Reference ref;
  std::size_t pos = 0;
  while (s.size() - pos >= ipcx::wire::kHeaderSize) {
    const std::uint8_t* h = s.data() + pos;
    const std::uint16_t flags = le16(h + 4), fds = le16(h + 6);
    const std::uint32_t length = le32(h + 8), reserved = le32(h + 12);
    if (h[0] != 0x49 || h[1] != 0x58 || h[2] != 1 || (h[3] != 1 && h[3] != 2) || (flags & ~1u) != 0 ||
        fds > 253 || reserved != 0) {
      ref.error = Errc::protocol;
      break;
    }
    if (length > max) {
      ref.error = Errc::too_large;
      break;
    }
    if (flags & 1u) {  // MORE belongs to record transports; a byte stream rejects it
      ref.error = Errc::protocol;
      break;
    }
    if (s.size() - pos - ipcx::wire::kHeaderSize < length) break;
    ref.frames.push_back({FrameHeader{static_cast<FrameType>(h[3]), flags, fds, length}, pos + ipcx::wire::kHeaderSize});
    pos += ipcx::wire::kHeaderSize + length;
  }
  ref.leftover = s.size() - pos;
  return ref;
}

using ipcx::fuzz::Read;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  const std::size_t max = ipcx::fuzz::pick_max(fdp.ConsumeIntegral<std::uint8_t>());
  auto [reads, stream] = ipcx::fuzz::shape_reads(fdp, max);
  const Reference ref = parse(stream, max);

  StreamDecoder dec(max, StreamDecoder::Mode::frames);
  std::size_t fed = 0;          // bytes committed so far
  std::size_t consumed = 0;     // stream offset just past the last frame returned
  std::size_t got = 0;          // frames returned so far
  std::size_t growth_cap = StreamDecoder::kInitialBuffer;  // what the growth rule has allowed so far
  std::optional<Errc> error;

  auto pull = [&] {
    for (;;) {
      const bool ready = dec.has_frame();
      auto r = dec.next();
      if (!r) {
        error = r.error().code;
        FUZZ_CHECK(!r.error().detail.empty());
        return;
      }
      if (!*r) {
        FUZZ_CHECK(!ready);
        FUZZ_CHECK(dec.pending() == fed - consumed);
        return;
      }
      FUZZ_CHECK(ready);
      FUZZ_CHECK(got < ref.frames.size());
      const RefFrame& want = ref.frames[got++];
      const auto& f = **r;
      FUZZ_CHECK(f.header.type == want.header.type);
      FUZZ_CHECK(f.header.flags == want.header.flags);
      FUZZ_CHECK(f.header.fd_count == want.header.fd_count);
      FUZZ_CHECK(f.header.length == want.header.length);
      FUZZ_CHECK(f.payload.size() == f.header.length);
      FUZZ_CHECK(f.payload.size() <= max);
      FUZZ_CHECK(want.offset == consumed + ipcx::wire::kHeaderSize);
      FUZZ_CHECK(f.payload.empty() ||
                 std::memcmp(f.payload.data(), stream.data() + want.offset, f.payload.size()) == 0);
      if (f.header.type == FrameType::goodbye) {  // the reason a peer gives must never crash us
        const auto e = ipcx::wire::goodbye_error(f.payload);
        FUZZ_CHECK(!e.detail.empty());
      }
      consumed = want.offset + f.header.length;
    }
  };

  for (const Read& r : reads) {
    std::size_t done = 0;
    do {
      std::size_t min = 0;
      switch (r.how & 3) {
        case 1: min = r.size - done; break;
        case 2: min = 4096; break;
        case 3: min = std::size_t(r.how >> 4) * 8192; break;
      }
      // Byte-sized prepare() calls only for small reads: a full buffer grows by exactly `min`.
      if (min == 0) min = r.size <= 4096 ? 1 : 4096;
      const std::size_t pending = dec.pending();
      // The growth rule: the buffer may reach twice what is pending (or pending + min, or the
      // initial size), never what a header announces.
      const std::size_t allowed = std::max({StreamDecoder::kInitialBuffer, 2 * pending, pending + min});
      growth_cap = std::max(growth_cap, allowed);
      auto span = dec.prepare(min);
      FUZZ_CHECK(span.size() >= min);
      FUZZ_CHECK(dec.allocated() <= growth_cap);
      const std::size_t n = std::min(span.size(), r.size - done);
      if (n) std::memcpy(span.data(), stream.data() + r.offset + done, n);
      dec.commit(n);
      done += n;
      fed += n;
    } while (done < r.size);
    if (!(r.how & 4)) pull();
    if (error) break;
  }
  if (!error) pull();

  FUZZ_CHECK(got == ref.frames.size());
  FUZZ_CHECK(error == ref.error);
  if (error) {
    // The stream cannot be resynchronised: the decoder stays failed, even given a good frame.
    FUZZ_CHECK(dec.has_frame());
    FUZZ_CHECK(!dec.next());
    auto good = ipcx::wire::encode_header({FrameType::data, 0, 0, 0});
    auto span = dec.prepare(good.size());
    FUZZ_CHECK(span.size() >= good.size());
    std::memcpy(span.data(), good.data(), good.size());
    dec.commit(good.size());
    FUZZ_CHECK(!dec.next());
  } else {
    FUZZ_CHECK(dec.pending() == ref.leftover);
    FUZZ_CHECK(dec.has_frame() == false);
  }
  return 0;
}
