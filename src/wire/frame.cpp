#include "wire/frame.hpp"

#include <cstring>
#include <string>

#include <fmt/format.h>

namespace ipcx::wire {
namespace {

constexpr std::size_t kShrinkAbove = 1024 * 1024;
constexpr std::size_t kTrimFloor = 256;

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
  if (type != static_cast<std::uint8_t>(FrameType::data) && type != static_cast<std::uint8_t>(FrameType::goodbye))
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

bool StreamDecoder::grow(std::size_t cap) noexcept {
  if (!buf_.reallocate(cap, begin_, end_)) return false;
  end_ -= begin_;
  scanned_ = scanned_ > begin_ ? scanned_ - begin_ : 0;
  begin_ = 0;
  return true;
}

std::span<std::byte> StreamDecoder::prepare(std::size_t min) {
  if (begin_ == end_) {
    begin_ = end_ = scanned_ = 0;
    // A buffer that grew past 1 MiB shrinks back once empty, unless the frame it last held
    // needed it: a stream of large frames keeps its buffer instead of growing it again for each
    // (a new block of this size is pages the kernel must fault in again, which costs more than
    // the frame's copies).
    if (buf_.capacity() > kShrinkAbove && need_ == 0 && buf_.capacity() > 2 * last_frame_ + kInitialBuffer)
      (void)grow(kInitialBuffer);
  }
  const std::size_t pending = end_ - begin_;
  const std::size_t cap = buf_.capacity();
  // Room enough: no growth, no copy. The buffer grows only when nearly full (less than `min`
  // free), and then at most doubles, so each byte is copied a bounded number of times
  // whatever the read sizes (growing on every read of a long frame would be quadratic).
  if (cap - end_ >= std::max<std::size_t>(min, 1)) return {buf_.data() + end_, cap - end_};
  // Growth aims at the rest of the frame in progress (a line's length is unknown: as much again
  // as arrived)...
  const std::size_t rest = mode_ == Mode::lines ? pending : need_ > pending ? need_ - pending : 0;
  const std::size_t want = std::max(min, rest);
  // ...but a peer's header is not taken at its word: the buffer may reach twice what has
  // actually arrived (or the initial size), never the announced length up front. Never less
  // than the initial size: reading a stream of small frames 4 KiB at a time would cost a
  // system call per few frames.
  const std::size_t limit = std::max({kInitialBuffer, 2 * pending, pending + min});
  const std::size_t target = std::clamp(pending + want, kInitialBuffer, limit);
  if (cap < target && grow(target)) return {buf_.data() + end_, buf_.capacity() - end_};
  // Big enough already, or the budget refused more: move the partial frame to the front.
  if (begin_ > 0) {
    buf_.move_to_front(begin_, end_);
    end_ -= begin_;
    scanned_ = scanned_ > begin_ ? scanned_ - begin_ : 0;
    begin_ = 0;
  }
  if (buf_.capacity() - end_ < std::max<std::size_t>(min, 1)) return {};
  return {buf_.data() + end_, buf_.capacity() - end_};
}

void StreamDecoder::trim() noexcept {
  const std::size_t pending = end_ - begin_;
  if (pending == 0) {
    begin_ = end_ = scanned_ = 0;
    buf_.release();
    return;
  }
  // Only a buffer four times larger than what it holds shrinks, and to twice that: a frame
  // arriving slowly is not copied back and forth on every wake-up (that would be quadratic).
  if (buf_.capacity() > std::max<std::size_t>(4096, 4 * pending)) (void)grow(std::max(2 * pending, kTrimFloor));
}

std::uint16_t StreamDecoder::pending_fd_count() const noexcept {
  if (mode_ != Mode::frames || end_ - begin_ < kHeaderSize) return 0;
  return get16(buf_.data() + begin_ + 6);
}

bool StreamDecoder::has_frame() const noexcept {
  if (failed_) return true;  // next() reports the error without input
  if (mode_ == Mode::lines) {
    std::size_t from = std::max(begin_, scanned_);
    return end_ > from && std::memchr(buf_.data() + from, '\n', end_ - from) != nullptr;
  }
  if (pending() < kHeaderSize) return false;
  auto len = get32(buf_.data() + begin_ + 8);
  return pending() >= kHeaderSize + std::size_t{len};
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
  last_frame_ = total;
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

std::string_view to_string(Goodbye g) noexcept {
  switch (g) {
    case Goodbye::other: return "closing";
    case Goodbye::shutdown: return "shutting down";
    case Goodbye::idle_timeout: return "idle timeout";
    case Goodbye::frame_timeout: return "frame timeout";
    case Goodbye::protocol_error: return "protocol error";
    case Goodbye::slow_reader: return "outgoing queue full (the peer does not read)";
    case Goodbye::connection_limit: return "connection limit reached";
    case Goodbye::access_denied: return "access denied";
    case Goodbye::out_of_resources: return "out of resources";
    case Goodbye::send_timeout: return "send timeout";
  }
  return "closing";
}

std::vector<std::byte> encode_goodbye(Goodbye code, std::string_view text) {
  text = text.substr(0, kMaxGoodbyeText);
  auto h = encode_header({FrameType::goodbye, 0, 0, static_cast<std::uint32_t>(2 + text.size())});
  std::vector<std::byte> out(h.begin(), h.end());
  out.resize(kHeaderSize + 2);
  put16(out.data() + kHeaderSize, static_cast<std::uint16_t>(code));
  for (char c : text) out.push_back(static_cast<std::byte>(c));
  return out;
}

Error goodbye_error(std::span<const std::byte> payload) {
  if (payload.size() < 2 || payload.size() > 2 + kMaxGoodbyeText)
    return Error{Errc::protocol, 0, "recv", fmt::format("malformed goodbye frame ({} bytes)", payload.size())};
  auto raw = get16(payload.data());
  auto code = raw <= static_cast<std::uint16_t>(Goodbye::send_timeout) ? static_cast<Goodbye>(raw) : Goodbye::other;
  std::string text;
  for (auto b : payload.subspan(2)) {
    auto c = std::to_integer<unsigned char>(b);
    text += (c < 0x20 || c >= 0x7f) ? '?' : static_cast<char>(c);  // the peer's words go to terminals: ASCII only
  }
  Errc errc = Errc::closed;
  switch (code) {
    case Goodbye::connection_limit: errc = Errc::connection_refused; break;
    case Goodbye::access_denied: errc = Errc::permission_denied; break;
    case Goodbye::out_of_resources: errc = Errc::resource_exhausted; break;
    case Goodbye::protocol_error: errc = Errc::protocol; break;
    default: break;
  }
  auto detail = fmt::format("peer closed the connection: {}", to_string(code));
  if (!text.empty()) detail += fmt::format(": {}", text);
  return Error{errc, 0, "recv", std::move(detail)};
}

}  // namespace ipcx::wire
