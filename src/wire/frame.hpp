// The ipcx frame: a fixed 16-byte little-endian header, then the payload (docs/wire.md).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <ipcx/error.hpp>

namespace ipcx::wire {

inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::uint8_t kMagic0 = 0x49;  // 'I'
inline constexpr std::uint8_t kMagic1 = 0x58;  // 'X'
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kDefaultMaxPayload = std::size_t{64} << 20;
inline constexpr std::uint16_t kMaxFds = 253;  // SCM_MAX_FD

enum class FrameType : std::uint8_t {
  data = 1,  // an application message
};

enum FrameFlags : std::uint16_t {
  kFlagMore = 1u << 0,  // more fragments of this message follow (record transports only)
  kKnownFlags = kFlagMore,
};

struct FrameHeader {
  FrameType type = FrameType::data;
  std::uint16_t flags = 0;
  std::uint16_t fd_count = 0;
  std::uint32_t length = 0;
};

using HeaderBytes = std::array<std::byte, kHeaderSize>;

HeaderBytes encode_header(const FrameHeader& h) noexcept;

// Validates magic, version, type, flags, reserved bytes and length <= max_payload.
// Never allocates; every rejection is Errc::protocol (or too_large) with a clear detail.
Result<FrameHeader> decode_header(std::span<const std::byte, kHeaderSize> bytes,
                                  std::size_t max_payload);

// Incremental decoder for byte streams. Bytes are read straight into its buffer
// (prepare/commit), whole frames come out of next(). Never trusts the peer: a frame's length
// is checked against the maximum before any buffer grows for it.
class StreamDecoder {
 public:
  enum class Mode { frames, lines };

  struct Frame {
    FrameHeader header;
    std::span<const std::byte> payload;  // valid until the next prepare()
  };

  explicit StreamDecoder(std::size_t max_payload = kDefaultMaxPayload, Mode mode = Mode::frames);

  // Space to read into: at least `min` bytes, and enough for the frame in progress.
  std::span<std::byte> prepare(std::size_t min = 4096);
  void commit(std::size_t n) noexcept { end_ += n; }

  // The next whole frame, std::nullopt when more bytes are needed, or an error for bad input.
  // After an error the decoder stays failed (the stream cannot be resynchronised).
  Result<std::optional<Frame>> next();

  // Bytes received but not yet returned as a frame (a partial frame when the peer closes).
  std::size_t pending() const noexcept { return end_ - begin_; }
  // True when next() would return a frame without more input.
  bool has_frame() const noexcept;

 private:
  Result<std::optional<Frame>> next_line();

  std::size_t max_payload_;
  Mode mode_;
  std::vector<std::byte> buf_;
  std::size_t begin_ = 0, end_ = 0;
  std::size_t need_ = 0;  // total bytes of the frame at begin_, once its header is known
  std::size_t scanned_ = 0;  // lines mode: bytes already searched for '\n'
  bool failed_ = false;
};

}  // namespace ipcx::wire
