#include "broker/log_format.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "broker/crc32c.hpp"
#include "os/sys.hpp"

namespace ipcx::broker::format {
namespace {

// Byte-wise so the format is little-endian whatever the host is.
template <class T>
void put(std::byte* p, T v) noexcept {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}
template <class T>
T get(const std::byte* p) noexcept {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(std::to_integer<T>(p[i]) << (8 * i));
  return v;
}

constexpr std::size_t kHeaderCrcOffset = 12;

std::uint32_t segment_header_crc(SegmentHeaderBytes bytes) noexcept {
  std::memset(bytes.data() + kHeaderCrcOffset, 0, 4);
  return crc32c(bytes);
}

}  // namespace

SegmentHeaderBytes encode_segment_header(const SegmentHeader& h) noexcept {
  SegmentHeaderBytes b{};
  std::memcpy(b.data(), segment_magic.data(), segment_magic.size());
  put<std::uint16_t>(b.data() + 8, current_version);
  put<std::uint16_t>(b.data() + 10, 0);
  put<std::uint64_t>(b.data() + 16, h.first_seq);
  put<std::uint64_t>(b.data() + 24, h.created_ms);
  put<std::uint32_t>(b.data() + kHeaderCrcOffset, segment_header_crc(b));
  return b;
}

DecodedSegmentHeader decode_segment_header(std::span<const std::byte> bytes) noexcept {
  DecodedSegmentHeader d;
  if (bytes.size() < segment_header_size) {
    d.fault = HeaderFault::incomplete;
    return d;
  }
  SegmentHeaderBytes b;
  std::memcpy(b.data(), bytes.data(), b.size());
  if (std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0}; })) {
    d.fault = HeaderFault::all_zero;
    return d;
  }
  if (std::memcmp(b.data(), segment_magic.data(), segment_magic.size()) != 0) {
    d.fault = HeaderFault::magic;
    return d;
  }
  if (get<std::uint32_t>(b.data() + kHeaderCrcOffset) != segment_header_crc(b)) {
    d.fault = HeaderFault::checksum;
    return d;
  }
  // Checked after the checksum: a version number is only meaningful in an intact header.
  d.version = get<std::uint16_t>(b.data() + 8);
  d.reserved = get<std::uint16_t>(b.data() + 10);
  if (d.version != current_version || d.reserved != 0) {
    d.fault = HeaderFault::unknown_version;
    return d;
  }
  d.header.first_seq = get<std::uint64_t>(b.data() + 16);
  d.header.created_ms = get<std::uint64_t>(b.data() + 24);
  return d;
}

RecordHeaderBytes encode_record_header(std::uint8_t kind, std::uint64_t seq,
                                       std::span<const std::byte> body) noexcept {
  RecordHeaderBytes b{};
  put<std::uint32_t>(b.data(), record_magic);
  put<std::uint32_t>(b.data() + 8, static_cast<std::uint32_t>(body.size()));
  b[12] = static_cast<std::byte>(kind);
  b[13] = std::byte{0};
  put<std::uint16_t>(b.data() + 14, 0);
  put<std::uint64_t>(b.data() + 16, seq);
  put<std::uint32_t>(b.data() + 4, crc32c(body, record_header_crc(b)));
  return b;
}

RecordHeader decode_record_header(const RecordHeaderBytes& b) noexcept {
  return {.magic = get<std::uint32_t>(b.data()),
          .crc = get<std::uint32_t>(b.data() + 4),
          .length = get<std::uint32_t>(b.data() + 8),
          .kind = std::to_integer<std::uint8_t>(b[12]),
          .flags = std::to_integer<std::uint8_t>(b[13]),
          .reserved = get<std::uint16_t>(b.data() + 14),
          .seq = get<std::uint64_t>(b.data() + 16)};
}

std::uint32_t record_header_crc(const RecordHeaderBytes& bytes) noexcept {
  return crc32c(std::span(bytes).subspan(8));
}

std::string segment_name(std::uint64_t first_seq) { return fmt::format("{:020}.seg", first_seq); }

std::optional<std::uint64_t> parse_segment_name(std::string_view name) noexcept {
  if (name.size() != 24 || !name.ends_with(".seg")) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : name.substr(0, 20)) {
    if (c < '0' || c > '9') return std::nullopt;
    auto digit = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

std::uint64_t now_unix_ms() noexcept {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

Result<void> write_all(int fd, std::span<const std::byte> data, const std::string& what) {
  while (!data.empty()) {
    auto n = os::check("write", [&] { return ::write(fd, data.data(), data.size()); });
    if (!n) {
      n.error().detail = what;
      return std::unexpected(std::move(n.error()));
    }
    data = data.subspan(static_cast<std::size_t>(*n));
  }
  return {};
}

Result<std::size_t> read_at(int fd, std::span<std::byte> out, std::uint64_t offset, const std::string& what) {
  std::size_t done = 0;
  while (done < out.size()) {
    auto n = os::check("pread", [&] {
      return ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    });
    if (!n) {
      n.error().detail = what;
      return std::unexpected(std::move(n.error()));
    }
    if (*n == 0) break;
    done += static_cast<std::size_t>(*n);
  }
  return done;
}

Result<void> sync_data(int fd, const std::string& what) {
  // Not retried on EINTR by hand beyond os::check: fdatasync does not fail with EINTR on Linux
  // regular files, and any other failure must reach the caller (the pages may be gone).
  if (auto r = os::check("fdatasync", [&] { return ::fdatasync(fd); }); !r) {
    r.error().detail = what;
    return std::unexpected(std::move(r.error()));
  }
  return {};
}

Result<void> sync_all(int fd, const std::string& what) {
  if (auto r = os::check("fsync", [&] { return ::fsync(fd); }); !r) {
    r.error().detail = what;
    return std::unexpected(std::move(r.error()));
  }
  return {};
}

Result<void> make_dirs(const std::string& dir) {
  if (dir.empty()) return fail(Errc::invalid_argument, "log open", "empty directory path");
  // Parents first; each mkdir is tried, EEXIST is the common case.
  for (std::size_t pos = dir.find('/', 1);; pos = dir.find('/', pos + 1)) {
    std::string prefix = pos == std::string::npos ? dir : dir.substr(0, pos);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), 0700) == -1 && errno != EEXIST)
      return fail_errno(errno, "mkdir", prefix);
    if (pos == std::string::npos) break;
  }
  struct stat st{};
  if (::stat(dir.c_str(), &st) == -1) return fail_errno(errno, "stat", dir);
  if (!S_ISDIR(st.st_mode)) return fail(Errc::type_mismatch, "log open", dir + " is not a directory");
  return {};
}

}  // namespace ipcx::broker::format
