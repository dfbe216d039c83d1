// The ipcx frame: a fixed 16-byte little-endian header, then the payload (docs/wire.md).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/error.hpp>

#include "wire/budget.hpp"

namespace ipcx::wire {

inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::uint8_t kMagic0 = 0x49;  // 'I'
inline constexpr std::uint8_t kMagic1 = 0x58;  // 'X'
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kDefaultMaxPayload = std::size_t{64} << 20;
inline constexpr std::uint16_t kMaxFds = 253;  // SCM_MAX_FD

enum class FrameType : std::uint8_t {
  data = 1,     // an application message
  goodbye = 2,  // the sender is closing the connection; the payload says why (see below)
};

// Why a peer closes a connection, in a goodbye frame: a little-endian u16 code, then up to
// kMaxGoodbyeText bytes of UTF-8 text. Unknown codes are read as `other`.
enum class Goodbye : std::uint16_t {
  other = 0,
  shutdown = 1,           // the server is stopping
  idle_timeout = 2,       // nothing moved for ServerOptions::idle_timeout
  frame_timeout = 3,      // a started frame did not complete within ServerOptions::frame_timeout
  protocol_error = 4,     // the receiver could not decode what was sent
  slow_reader = 5,        // the outgoing queue filled because the peer does not read
  connection_limit = 6,   // too many connections: this one is refused
  access_denied = 7,      // the listener's access rule refuses this peer
  out_of_resources = 8,   // the server ran out of descriptors or memory for this connection
  send_timeout = 9,       // queued output made no progress for ServerOptions::send_timeout
};
inline constexpr std::size_t kMaxGoodbyeText = 1024;
std::string_view to_string(Goodbye g) noexcept;
// A whole goodbye frame (header + payload), ready to write.
std::vector<std::byte> encode_goodbye(Goodbye code, std::string_view text);
// The error a receiver reports for a goodbye payload (Errc::closed, connection_refused,
// permission_denied, resource_exhausted, protocol... by code), or Errc::protocol when the
// payload is malformed.
Error goodbye_error(std::span<const std::byte> payload);

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
// is checked against the maximum before any buffer grows for it, and the buffer grows toward a
// frame only as its bytes arrive: allocated() stays within max(kInitialBuffer, 2 x pending(),
// pending() + the `min` of the last prepare()).
class StreamDecoder {
 public:
  enum class Mode { frames, lines };

  struct Frame {
    FrameHeader header;
    std::span<const std::byte> payload;  // valid until the next prepare()
  };

  explicit StreamDecoder(std::size_t max_payload = kDefaultMaxPayload, Mode mode = Mode::frames);

  static constexpr std::size_t kInitialBuffer = 64 * 1024;

  // Space to read into: at least `min` bytes, and toward the frame in progress as far as the
  // growth rule allows. Empty when the memory budget refuses the growth (and min > 0).
  std::span<std::byte> prepare(std::size_t min = 4096);
  void commit(std::size_t n) noexcept { end_ += n; }

  // Bytes currently allocated for the receive buffer (exact).
  std::size_t allocated() const noexcept { return buf_.capacity(); }
  // Gives back what the bytes held do not need: everything when nothing is pending.
  void trim() noexcept;
  // Drops whatever is buffered and frees the buffer (the connection is going away).
  void discard() noexcept {
    begin_ = end_ = need_ = scanned_ = 0;
    buf_.release();
  }
  // Charges the buffer to `budget` from now on (a server's global cap).
  void set_budget(std::shared_ptr<MemoryBudget> budget) noexcept { buf_.charge().attach(std::move(budget)); }
  // Lowers the maximum payload from now on (a frame already being received keeps its check).
  void limit_payload(std::size_t max) noexcept { max_payload_ = std::min(max_payload_, max); }
  // Descriptors the frame in progress announces, once its header is in (0 otherwise).
  std::uint16_t pending_fd_count() const noexcept;

  // The next whole frame, std::nullopt when more bytes are needed, or an error for bad input.
  // After an error the decoder stays failed (the stream cannot be resynchronised).
  Result<std::optional<Frame>> next();

  // Bytes received but not yet returned as a frame (a partial frame when the peer closes).
  std::size_t pending() const noexcept { return end_ - begin_; }
  // True when next() would return a frame without more input.
  bool has_frame() const noexcept;

 private:
  Result<std::optional<Frame>> next_line();

  bool grow(std::size_t cap) noexcept;

  std::size_t max_payload_;
  Mode mode_;
  Buffer buf_;
  std::size_t begin_ = 0, end_ = 0;
  std::size_t need_ = 0;  // total bytes of the frame at begin_, once its header is known
  std::size_t scanned_ = 0;  // lines mode: bytes already searched for '\n'
  std::size_t last_frame_ = 0;  // the size of the last frame returned (header included)
  bool failed_ = false;
};

}  // namespace ipcx::wire
