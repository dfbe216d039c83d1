// The wire frame codec: header encode/decode, validation, and the incremental stream decoder.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "unit/support.hpp"
#include "wire/frame.hpp"

namespace ipcx::wire {
namespace {

using test::mismatch;
using test::pattern;

std::span<const std::byte, kHeaderSize> as_header(const HeaderBytes& b) { return std::span<const std::byte, kHeaderSize>(b); }

std::vector<std::byte> frame(std::span<const std::byte> payload, std::uint16_t flags = 0, std::uint16_t fds = 0) {
  auto h = encode_header({FrameType::data, flags, fds, static_cast<std::uint32_t>(payload.size())});
  // Sized once and filled with memcpy (vector::insert here trips a GCC 12 -Warray-bounds
  // false positive).
  std::vector<std::byte> out(kHeaderSize + payload.size());
  std::memcpy(out.data(), h.data(), kHeaderSize);
  if (!payload.empty()) std::memcpy(out.data() + kHeaderSize, payload.data(), payload.size());
  return out;
}

// Decodes `h` after `mutate` changed its bytes; expects an error with `code` mentioning `word`.
void expect_rejected(HeaderBytes h, Errc code, const std::string& word, std::size_t max = kDefaultMaxPayload) {
  auto r = decode_header(as_header(h), max);
  ASSERT_FALSE(r) << "accepted a bad header (" << word << ")";
  EXPECT_EQ(r.error().code, code) << r.error().message();
  EXPECT_NE(r.error().message().find(word), std::string::npos) << r.error().message();
}

TEST(FrameHeader, EncodesTheDocumentedLayout) {
  auto h = encode_header({FrameType::data, kFlagMore, 3, 0x01020304});
  const std::uint8_t want[kHeaderSize] = {'I', 'X', 1, 1, 0x01, 0x00, 0x03, 0x00, 0x04, 0x03, 0x02, 0x01, 0, 0, 0, 0};
  for (std::size_t i = 0; i < kHeaderSize; ++i) EXPECT_EQ(std::to_integer<std::uint8_t>(h[i]), want[i]) << "byte " << i;
}

TEST(FrameHeader, RoundTrips) {
  for (std::uint32_t len : {0u, 1u, 255u, 256u, 65536u, 0x00ffffffu, static_cast<std::uint32_t>(kDefaultMaxPayload)}) {
    for (std::uint16_t flags : {std::uint16_t{0}, std::uint16_t{kFlagMore}}) {
      for (std::uint16_t fds : {std::uint16_t{0}, std::uint16_t{1}, kMaxFds}) {
        FrameHeader in{FrameType::data, flags, fds, len};
        auto r = decode_header(as_header(encode_header(in)), kDefaultMaxPayload);
        ASSERT_TRUE(r) << r.error().message();
        EXPECT_EQ(r->type, FrameType::data);
        EXPECT_EQ(r->flags, flags);
        EXPECT_EQ(r->fd_count, fds);
        EXPECT_EQ(r->length, len);
      }
    }
  }
}

TEST(FrameHeader, LengthAtMaximumIsAcceptedAboveIsTooLarge) {
  auto at = encode_header({FrameType::data, 0, 0, 1000});
  EXPECT_TRUE(decode_header(as_header(at), 1000));
  auto above = encode_header({FrameType::data, 0, 0, 1001});
  expect_rejected(above, Errc::too_large, "exceeds maximum", 1000);
  auto huge = encode_header({FrameType::data, 0, 0, 0xffffffffu});
  expect_rejected(huge, Errc::too_large, "4294967295", kDefaultMaxPayload);
}

TEST(FrameHeader, RejectsBadInputWithAClearReason) {
  const auto good = encode_header({FrameType::data, 0, 0, 10});
  {
    auto h = good;
    h[0] = std::byte{'G'};
    expect_rejected(h, Errc::protocol, "magic");
  }
  {
    auto h = good;
    h[1] = std::byte{0};
    expect_rejected(h, Errc::protocol, "magic");
  }
  {
    auto h = good;
    h[2] = std::byte{2};
    expect_rejected(h, Errc::protocol, "version");
  }
  {
    auto h = good;
    h[2] = std::byte{0};
    expect_rejected(h, Errc::protocol, "version");
  }
  for (std::uint8_t type : {0, 3, 255}) {
    auto h = good;
    h[3] = std::byte{type};
    expect_rejected(h, Errc::protocol, "type");
  }
  for (std::uint16_t flags : {0x0002, 0x8000, 0xffff}) {
    auto h = encode_header({FrameType::data, flags, 0, 10});
    expect_rejected(h, Errc::protocol, "flags");
  }
  for (std::size_t i = 12; i < kHeaderSize; ++i) {
    auto h = good;
    h[i] = std::byte{1};
    expect_rejected(h, Errc::protocol, "reserved");
  }
  {
    auto h = encode_header({FrameType::data, 0, static_cast<std::uint16_t>(kMaxFds + 1), 10});
    expect_rejected(h, Errc::protocol, "fd count");
  }
}

TEST(FrameHeader, ErrorsNameTheOperation) {
  auto h = encode_header({FrameType::data, 0, 0, 10});
  h[0] = std::byte{0};
  auto r = decode_header(as_header(h), 100);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno, 0);
  EXPECT_NE(r.error().message().find("protocol error"), std::string::npos) << r.error().message();
}

// ---- StreamDecoder ------------------------------------------------------------------------

// Feeds `bytes` to `d` in chunks chosen by `next_chunk` and collects every frame's payload.
template <class Chunker>
Result<std::vector<std::vector<std::byte>>> feed(StreamDecoder& d, std::span<const std::byte> bytes, Chunker next_chunk) {
  std::vector<std::vector<std::byte>> out;
  std::size_t off = 0;
  while (true) {
    for (;;) {
      auto f = d.next();
      if (!f) return std::unexpected(f.error());
      if (!*f) break;
      out.emplace_back((*f)->payload.begin(), (*f)->payload.end());
    }
    if (off == bytes.size()) break;
    std::size_t n = std::min(next_chunk(), bytes.size() - off);
    auto buf = d.prepare(n);
    EXPECT_GE(buf.size(), n);
    std::memcpy(buf.data(), bytes.data() + off, n);
    d.commit(n);
    off += n;
  }
  return out;
}

std::vector<std::vector<std::byte>> sample_payloads() {
  std::vector<std::vector<std::byte>> p;
  std::uint32_t seed = 1;
  for (std::size_t n : {0, 1, 15, 16, 17, 100, 4095, 4096, 4097, 65536, 70000, 300000, 0, 3})
    p.push_back(pattern(n, seed++));
  return p;
}

std::vector<std::byte> concat_frames(const std::vector<std::vector<std::byte>>& payloads) {
  std::vector<std::byte> all;
  for (auto& p : payloads) {
    auto f = frame(p);
    all.insert(all.end(), f.begin(), f.end());
  }
  return all;
}

void expect_same(const std::vector<std::vector<std::byte>>& got, const std::vector<std::vector<std::byte>>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(mismatch(got[i], want[i]), "") << "frame " << i;
}

TEST(StreamDecoder, WholeBufferAtOnce) {
  auto payloads = sample_payloads();
  auto bytes = concat_frames(payloads);
  StreamDecoder d;
  auto got = feed(d, bytes, [&] { return bytes.size(); });
  ASSERT_TRUE(got) << got.error().message();
  expect_same(*got, payloads);
  EXPECT_EQ(d.pending(), 0u);
  EXPECT_FALSE(d.has_frame());
}

TEST(StreamDecoder, ByteByByte) {
  auto payloads = sample_payloads();
  payloads.resize(10);  // keep it quick: up to 64 KiB frames, one byte at a time
  auto bytes = concat_frames(payloads);
  StreamDecoder d;
  auto got = feed(d, bytes, [] { return std::size_t{1}; });
  ASSERT_TRUE(got) << got.error().message();
  expect_same(*got, payloads);
}

TEST(StreamDecoder, RandomChunks) {
  auto payloads = sample_payloads();
  auto bytes = concat_frames(payloads);
  for (unsigned seed = 0; seed < 20; ++seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> small(1, 40), large(1, 200000);
    StreamDecoder d;
    auto got = feed(d, bytes, [&] { return (rng() & 1) ? small(rng) : large(rng); });
    ASSERT_TRUE(got) << "seed " << seed << ": " << got.error().message();
    expect_same(*got, payloads);
  }
}

TEST(StreamDecoder, HasFrameAndPending) {
  StreamDecoder d;
  auto f = frame(pattern(10, 1));
  auto buf = d.prepare(f.size());
  std::memcpy(buf.data(), f.data(), 20);  // header + 4 of 10 payload bytes
  d.commit(20);
  EXPECT_FALSE(d.has_frame());
  EXPECT_EQ(d.pending(), 20u);
  auto r = d.next();
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  buf = d.prepare(6);
  std::memcpy(buf.data(), f.data() + 20, 6);
  d.commit(6);
  EXPECT_TRUE(d.has_frame());
  r = d.next();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(mismatch((*r)->payload, pattern(10, 1)), "");
  EXPECT_EQ((*r)->header.length, 10u);
  EXPECT_EQ(d.pending(), 0u);
}

TEST(StreamDecoder, OversizedLengthIsRefusedBeforeThePayloadArrives) {
  StreamDecoder d(1024);
  auto h = encode_header({FrameType::data, 0, 0, 1u << 30});
  auto buf = d.prepare(kHeaderSize);
  std::memcpy(buf.data(), h.data(), kHeaderSize);
  d.commit(kHeaderSize);
  auto r = d.next();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::too_large);
  EXPECT_NE(r.error().message().find("exceeds maximum 1024"), std::string::npos) << r.error().message();
  // The buffer was not grown for the claimed gigabyte.
  EXPECT_LT(d.prepare(1).size(), std::size_t{1} << 20);
}

TEST(StreamDecoder, StaysFailedAfterAnError) {
  StreamDecoder d;
  auto f = frame(pattern(4, 1));
  f[0] = std::byte{'Z'};
  auto good = frame(pattern(4, 2));
  f.insert(f.end(), good.begin(), good.end());
  auto buf = d.prepare(f.size());
  std::memcpy(buf.data(), f.data(), f.size());
  d.commit(f.size());
  auto r = d.next();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol);
  EXPECT_NE(r.error().message().find("magic"), std::string::npos);
  auto again = d.next();
  ASSERT_FALSE(again) << "a failed stream cannot resynchronise";
  EXPECT_EQ(again.error().code, Errc::protocol);
  EXPECT_TRUE(d.has_frame()) << "has_frame() must report the pending error";
}

TEST(StreamDecoder, FragmentFlagIsAProtocolErrorOnStreams) {
  StreamDecoder d;
  auto f = frame(pattern(4, 1), kFlagMore);
  auto buf = d.prepare(f.size());
  std::memcpy(buf.data(), f.data(), f.size());
  d.commit(f.size());
  auto r = d.next();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol);
  EXPECT_NE(r.error().message().find("fragment"), std::string::npos) << r.error().message();
}

TEST(StreamDecoder, CarriesFdCount) {
  StreamDecoder d;
  auto f = frame(pattern(3, 1), 0, 2);
  auto buf = d.prepare(f.size());
  std::memcpy(buf.data(), f.data(), f.size());
  d.commit(f.size());
  auto r = d.next();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->header.fd_count, 2);
}

TEST(StreamDecoder, BufferGrowsWithTheBytesReceivedNotTheLengthAnnounced) {
  StreamDecoder d;  // default maximum: 64 MiB
  auto h = encode_header({FrameType::data, 0, 0, 60u << 20});
  auto buf = d.prepare(kHeaderSize);
  std::memcpy(buf.data(), h.data(), kHeaderSize);
  d.commit(kHeaderSize);
  auto r = d.next();
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);  // valid, waiting for the payload
  // A stalled peer has sent 16 bytes: the decoder offers room for one ordinary read, not 60 MiB.
  EXPECT_LE(d.prepare().size(), std::size_t{256} << 10);
  // As bytes arrive the room grows (at most doubling), and the whole frame still decodes.
  std::size_t received = 0, peak = 0;
  while (received < (60u << 20)) {
    auto room = d.prepare();
    peak = std::max(peak, room.size());
    EXPECT_LE(room.size(), 2 * (received + kHeaderSize) + (std::size_t{128} << 10));
    std::size_t n = std::min(room.size(), (std::size_t{60} << 20) - received);
    std::memset(room.data(), 0x5a, n);
    d.commit(n);
    received += n;
  }
  auto f = d.next();
  ASSERT_TRUE(f);
  ASSERT_TRUE(*f);
  EXPECT_EQ((*f)->payload.size(), std::size_t{60} << 20);
  EXPECT_EQ((*f)->payload.back(), std::byte{0x5a});
}

TEST(StreamDecoder, BufferShrinksAfterAHugeFrame) {
  StreamDecoder d;
  auto big = pattern(4u << 20, 9);
  auto bytes = frame(big);
  auto small = frame(pattern(5, 1));
  bytes.insert(bytes.end(), small.begin(), small.end());
  auto got = feed(d, bytes, [] { return std::size_t{1} << 20; });
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ(mismatch((*got)[0], big), "");
  EXPECT_LT(d.prepare(16).size(), std::size_t{1} << 20) << "the 4 MiB buffer should be released";
}

// ---- lines mode ---------------------------------------------------------------------------

std::vector<std::string> lines_of(StreamDecoder& d, std::string_view text, std::size_t chunk) {
  std::vector<std::string> out;
  std::size_t off = 0;
  for (;;) {
    for (;;) {
      auto f = d.next();
      if (!f) {
        out.push_back("ERROR: " + f.error().message());
        return out;
      }
      if (!*f) break;
      out.emplace_back(reinterpret_cast<const char*>((*f)->payload.data()), (*f)->payload.size());
    }
    if (off == text.size()) return out;
    std::size_t n = std::min(chunk, text.size() - off);
    auto buf = d.prepare(n);
    std::memcpy(buf.data(), text.data() + off, n);
    d.commit(n);
    off += n;
  }
}

TEST(StreamDecoderLines, SplitsOnNewlineInAnyChunking) {
  std::string text = "first\n\nthird line\n" + std::string(5000, 'x') + "\nlast\npartial";
  for (std::size_t chunk : {1, 2, 3, 7, 100, 4096, 100000}) {
    StreamDecoder d(kDefaultMaxPayload, StreamDecoder::Mode::lines);
    auto got = lines_of(d, text, chunk);
    ASSERT_EQ(got.size(), 5u) << "chunk " << chunk;
    EXPECT_EQ(got[0], "first");
    EXPECT_EQ(got[1], "");
    EXPECT_EQ(got[2], "third line");
    EXPECT_EQ(got[3], std::string(5000, 'x'));
    EXPECT_EQ(got[4], "last");
    EXPECT_EQ(d.pending(), 7u) << "'partial' waits for its newline";
    EXPECT_FALSE(d.has_frame());
  }
}

TEST(StreamDecoderLines, LineAtMaximumIsFineLongerIsTooLarge) {
  {
    StreamDecoder d(10, StreamDecoder::Mode::lines);
    auto got = lines_of(d, "0123456789\n", 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], "0123456789");
  }
  for (std::size_t chunk : {1, 5, 100}) {
    StreamDecoder d(10, StreamDecoder::Mode::lines);
    auto got = lines_of(d, "ok\n0123456789A\nnever", chunk);
    ASSERT_EQ(got.size(), 2u) << "chunk " << chunk;
    EXPECT_EQ(got[0], "ok");
    EXPECT_TRUE(got[1].starts_with("ERROR: ")) << got[1];
    EXPECT_NE(got[1].find("longer than maximum 10"), std::string::npos) << got[1];
    EXPECT_NE(got[1].find("too large"), std::string::npos) << got[1];
  }
}

TEST(StreamDecoderLines, UnterminatedLineLongerThanMaximumFailsWithoutWaiting) {
  StreamDecoder d(10, StreamDecoder::Mode::lines);
  auto got = lines_of(d, std::string(11, 'y'), 4);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].starts_with("ERROR: ")) << got[0];
}

}  // namespace
}  // namespace ipcx::wire
