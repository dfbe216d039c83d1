// libFuzzer target: wire::StreamDecoder in lines mode (Framing::lines, docs/wire.md).
//
// As fuzz_frame_decoder: the input is split into a byte stream (front) and the shape of the
// reads that deliver it (back); whatever the cuts, the decoder must yield exactly the lines a
// one-pass reference split of the whole stream yields, then the same error or the same
// leftover (an unterminated last line). Checks abort() so that libFuzzer keeps the input.
//
// Input layout, read from the end: 1 byte picks the maximum line length; then, per read, 1 byte of
// size (0..239 bytes, or 240..255 -> 1..16 x 4096 bytes) and 1 byte of how:
//   bits 0-1  the `min` passed to prepare(): 1 (4096 for reads over 4 KiB: byte-sized steps
//             through megabytes are slow), the rest of the read, 4096, or (how >> 4) x 8192
//             (over 64 KiB: the buffer compacts or grows, mid-line)
//   bit 2     do not call next() after this read
//   bit 3     bulk: the read is size copies of one byte (1 more byte from the end; '\n' is read
//             as 'x'). With size 255 and the default maximum, 1 MiB of it: a megabyte line reaches the
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
using ipcx::wire::FrameType;
using ipcx::wire::StreamDecoder;

[[noreturn]] void check_failed(const char* what, int line) {
  std::fprintf(stderr, "fuzz_line_decoder.cpp:%d: check failed: %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond) ((cond) ? void(0) : check_failed(#cond, __LINE__))

struct RefLine {
  std::size_t offset, length;  // without the '\n'
};

struct Reference {
  std::vector<RefLine> lines;
  std::optional<Errc> error;
  std::size_t leftover = 0;  // bytes of an unterminated last line (when no error)
};

Reference split(std::span<const std::uint8_t> s, std::size_t max) {
  Reference ref;
  std::size_t pos = 0;
  for (;;) {
    const void* nl = pos < s.size() ? std::memchr(s.data() + pos, '\n', s.size() - pos) : nullptr;
    const std::size_t len =
        nl ? static_cast<std::size_t>(static_cast<const std::uint8_t*>(nl) - (s.data() + pos)) : s.size() - pos;
    if (len > max) {
      ref.error = Errc::too_large;
      break;
    }
    if (!nl) break;
    ref.lines.push_back({pos, len});
    pos += len + 1;
  }
  ref.leftover = s.size() - pos;
  return ref;
}

using ipcx::fuzz::Read;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  const std::size_t max = ipcx::fuzz::pick_max(fdp.ConsumeIntegral<std::uint8_t>());
  auto [reads, stream] = ipcx::fuzz::shape_reads(fdp, max, std::uint8_t{'\n'});
  const Reference ref = split(stream, max);

  StreamDecoder dec(max, StreamDecoder::Mode::lines);
  std::size_t fed = 0, consumed = 0, got = 0;
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
        FUZZ_CHECK(dec.pending() <= max);
        return;
      }
      FUZZ_CHECK(ready);
      FUZZ_CHECK(got < ref.lines.size());
      const RefLine& want = ref.lines[got++];
      const auto& f = **r;
      FUZZ_CHECK(f.header.type == FrameType::data);
      FUZZ_CHECK(f.header.flags == 0);
      FUZZ_CHECK(f.header.fd_count == 0);
      FUZZ_CHECK(f.header.length == want.length);
      FUZZ_CHECK(f.payload.size() == f.header.length);
      FUZZ_CHECK(f.payload.size() <= max);
      FUZZ_CHECK(want.offset == consumed);
      FUZZ_CHECK(f.payload.empty() ||
                 std::memcmp(f.payload.data(), stream.data() + want.offset, f.payload.size()) == 0);
      FUZZ_CHECK(std::memchr(f.payload.data(), '\n', f.payload.size()) == nullptr);
      consumed = want.offset + want.length + 1;
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
      auto span = dec.prepare(min);
      FUZZ_CHECK(span.size() >= min);
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

  FUZZ_CHECK(got == ref.lines.size());
  FUZZ_CHECK(error == ref.error);
  if (error) {
    FUZZ_CHECK(dec.has_frame());
    FUZZ_CHECK(!dec.next());
    auto span = dec.prepare(3);
    std::memcpy(span.data(), "ok\n", 3);
    dec.commit(3);
    FUZZ_CHECK(!dec.next());
  } else {
    FUZZ_CHECK(dec.pending() == ref.leftover);
    FUZZ_CHECK(dec.has_frame() == false);
  }
  return 0;
}
