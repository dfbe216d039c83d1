// The log's on-disk layout (documented in log.hpp): encoding, decoding, file names, and the
// few file operations the writer and the recovery share.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <ipcx/error.hpp>

namespace ipcx::broker::format {

inline constexpr std::size_t segment_header_size = 32;
inline constexpr std::size_t record_header_size = 24;
inline constexpr std::uint16_t current_version = 1;
inline constexpr std::uint32_t record_magic = 0x52584349;  // "ICXR" on disk
inline constexpr std::array<std::byte, 8> segment_magic{std::byte{'I'}, std::byte{'P'}, std::byte{'C'},
                                                        std::byte{'X'}, std::byte{'S'}, std::byte{'E'},
                                                        std::byte{'G'}, std::byte{0}};

using SegmentHeaderBytes = std::array<std::byte, segment_header_size>;
using RecordHeaderBytes = std::array<std::byte, record_header_size>;

struct SegmentHeader {
  std::uint64_t first_seq = 0;
  std::uint64_t created_ms = 0;
};

SegmentHeaderBytes encode_segment_header(const SegmentHeader& h) noexcept;

enum class HeaderFault { none, incomplete, all_zero, magic, checksum, unknown_version };
struct DecodedSegmentHeader {
  HeaderFault fault = HeaderFault::none;
  std::uint16_t version = 0;   // as found (for the "unknown version" report)
  std::uint16_t reserved = 0;  // as found
  SegmentHeader header;
};
// `bytes` may be shorter than a header (a file cut during creation).
DecodedSegmentHeader decode_segment_header(std::span<const std::byte> bytes) noexcept;

struct RecordHeader {
  std::uint32_t magic = 0;
  std::uint32_t crc = 0;
  std::uint32_t length = 0;
  std::uint8_t kind = 0;
  std::uint8_t flags = 0;
  std::uint16_t reserved = 0;
  std::uint64_t seq = 0;
};

// The header of a record, its checksum computed over `body`.
RecordHeaderBytes encode_record_header(std::uint8_t kind, std::uint64_t seq,
                                       std::span<const std::byte> body) noexcept;
RecordHeader decode_record_header(const RecordHeaderBytes& bytes) noexcept;
// The checksum of the header's bytes 8..24; continue it over the body with crc32c().
std::uint32_t record_header_crc(const RecordHeaderBytes& bytes) noexcept;

// "<20 digits>.seg"; nullopt for any other name (or a number beyond 64 bits).
std::string segment_name(std::uint64_t first_seq);
std::optional<std::uint64_t> parse_segment_name(std::string_view name) noexcept;

std::uint64_t now_unix_ms() noexcept;

// ---- file helpers (every call retried on EINTR, errors carry the path in `detail`) ----

// Writes all of `data` (loops over short writes).
Result<void> write_all(int fd, std::span<const std::byte> data, const std::string& what);
// Reads up to `out.size()` bytes at `offset`; returns how many (fewer only at end of file).
Result<std::size_t> read_at(int fd, std::span<std::byte> out, std::uint64_t offset, const std::string& what);
Result<void> sync_data(int fd, const std::string& what);
Result<void> sync_all(int fd, const std::string& what);
// mkdir for `dir` and each missing parent, mode 0700 (whatever the umask leaves).
Result<void> make_dirs(const std::string& dir);

}  // namespace ipcx::broker::format
