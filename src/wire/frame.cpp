#include "wire/frame.hpp"

#include <cstring>
#include <string>

#include <fmt/format.h>

namespace ipcx::wire {
namespace {

constexpr std::size_t kInitialBuffer = 64 * 1024;
constexpr std::size_t kShrinkAbove = 1024 * 1024;

void put16(std::byte* p, std::uint16_t v) {
  p[0] = std::byte(v & 0xff);
  p[1] = std::byte(v >> 8);
}
void put32(std::byte* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
std::uint16_t get16(const std::byte* p) {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) |
                                    (std::to_integer<unsigned>(p[1]) << 8));
}
std::uint32_t get32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::to_integer<std::uint32_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

HeaderBytes encode_header(const FrameHeader& h) noexcept {
  HeaderBytes b{};
  b[0] = std::byte{kMagic0};
  b[1] = std::byte{kMagic1};
  b[2] = std::byte{kVersion};
  b[3] = std::byte{static_cast<std::uint8_t>(h.type)};
  put16(&b[4], h.flags);
  put16(&b[6], h.fd_count);
  put32(&b[8], h.length);
  return b;  // bytes 12..15 reserved, zero
}

Result<FrameHeader> decode_header(std::span<const std::byte, kHeaderSize> b,
                                  std::size_t max_payload) {
  if (b[0] != std::byte{kMagic0} || b[1] != std::byte{kMagic1})
    return fail(Errc::protocol, "decode frame",
                fmt::format("bad magic 0x{:02x}{:02x}, expected 0x4958 \"IX\"",
                            std::to_integer<unsigned>(b[0]), std::to_integer<unsigned>(b[1])));
  if (b[2] != std::byte{kVersion})
    return fail(Errc::protocol, "decode frame",
                fmt::format("unsupported version {}", std::to_integer<unsigned>(b[2])));
  FrameHeader h;
  auto type = std::to_integer<std::uint8_t>(b[3]);
  if (type != static_cast<std::uint8_t>(FrameType::data))
    return fail(Errc::protocol, "decode frame", fmt::format("unknown frame type {}", type));
  h.type = static_cast<FrameType>(type);
  h.flags = get16(&b[4]);
  if (h.flags & ~kKnownFlags)
    return fail(Errc::protocol, "decode frame", fmt::format("unknown flags 0x{:04x}", h.flags));
  h.fd_count = get16(&b[6]);
  if (h.fd_count > kMaxFds)
    return fail(Errc::protocol, "decode frame", fmt::format("fd count {} > {}", h.fd_count, kMaxFds));
  h.length = get32(&b[8]);
  if (get32(&b[12]) != 0) return fail(Errc::protocol, "decode frame", "reserved bytes not zero");
  if (h.length > max_payload)
    return fail(Errc::too_large, "decode frame",
                fmt::format("length {} exceeds maximum {}", h.length, max_payload));
  return h;
}

StreamDecoder::StreamDecoder(std::size_t max_payload, Mode mode)
    : max_payload_(max_payload), mode_(mode) {}

std::span<std::byte> StreamDecoder::prepare(std::size_t min) {
  if (begin_ == end_) {
    begin_ = end_ = scanned_ = 0;
    if (buf_.size() > kShrinkAbove && need_ == 0) {
      buf_.resize(kInitialBuffer);
      buf_.shrink_to_fit();
    }
  }
  // Grow toward the frame in progress as its bytes arrive, at most doubling per read: a peer
  // that sends a header and stalls cannot make us commit the frame's whole length up front.
  std::size_t rest = need_ > pending() ? need_ - pending() : 0;
  std::size_t want = std::max(min, std::min(rest, std::max(buf_.size(), kInitialBuffer)));
  if (buf_.size() - end_ < want) {
    if (begin_ > 0) {  // compact: move the partial frame to the front
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      scanned_ = scanned_ > begin_ ? scanned_ - begin_ : 0;
      begin_ = 0;
    }
    if (buf_.size() - end_ < want) buf_.resize(std::max(end_ + want, kInitialBuffer));
  }
  return {buf_.data() + end_, buf_.size() - end_};
}

bool StreamDecoder::has_frame() const noexcept {
  if (failed_) return true;  // next() reports the error without input
  if (mode_ == Mode::lines) {
    std::size_t from = std::max(begin_, scanned_);
    return end_ > from && std::memchr(buf_.data() + from, '\n', end_ - from) != nullptr;
  }
  if (pending() < kHeaderSize) return false;
  auto len = get32(buf_.data() + begin_ + 8);
  return pending() >= kHeaderSize + len;
}

Result<std::optional<StreamDecoder::Frame>> StreamDecoder::next() {
  if (failed_) return fail(Errc::protocol, "decode frame", "stream already failed");
  if (mode_ == Mode::lines) return next_line();
  if (pending() < kHeaderSize) return std::nullopt;
  auto h = decode_header(std::span<const std::byte, kHeaderSize>(buf_.data() + begin_, kHeaderSize),
                         max_payload_);
  if (!h) {
    failed_ = true;
    return std::unexpected(std::move(h.error()));
  }
  if (h->flags & kFlagMore) {
    failed_ = true;
    return fail(Errc::protocol, "decode frame", "fragment flag on a stream transport");
  }
  std::size_t total = kHeaderSize + h->length;
  if (pending() < total) {
    need_ = total;
    return std::nullopt;
  }
  Frame f{*h, {buf_.data() + begin_ + kHeaderSize, h->length}};
  begin_ += total;
  need_ = 0;
  return f;
}

Result<std::optional<StreamDecoder::Frame>> StreamDecoder::next_line() {
  std::size_t from = std::max(begin_, scanned_);
  auto* nl = end_ > from ? static_cast<std::byte*>(std::memchr(buf_.data() + from, '\n', end_ - from))
                         : nullptr;
  if (!nl) {
    scanned_ = end_;
    if (pending() > max_payload_) {
      failed_ = true;
      return fail(Errc::too_large, "decode line",
                  fmt::format("line longer than maximum {}", max_payload_));
    }
    return std::nullopt;
  }
  std::size_t len = static_cast<std::size_t>(nl - (buf_.data() + begin_));
  if (len > max_payload_) {
    failed_ = true;
    return fail(Errc::too_large, "decode line", fmt::format("line longer than maximum {}", max_payload_));
  }
  Frame f{FrameHeader{FrameType::data, 0, 0, static_cast<std::uint32_t>(len)},
          {buf_.data() + begin_, len}};
  begin_ += len + 1;
  scanned_ = begin_;
  return f;
}

}  // namespace ipcx::wire
