#include "broker/log_reader.hpp"

#include <algorithm>
#include <cstring>

#include "broker/crc32c.hpp"

namespace ipcx::broker {
namespace {

// Large enough that a sequential scan is a few syscalls per megabyte, small enough to be
// "a little" next to max_record.
constexpr std::size_t kChunk = 64 * 1024;

}  // namespace

std::string_view describe(RecordFault f) noexcept {
  switch (f) {
    case RecordFault::none: return "valid";
    case RecordFault::truncated: return "truncated record header";
    case RecordFault::magic: return "bad record magic";
    case RecordFault::length: return "record length above max_record";
    case RecordFault::past_end: return "record length past the end of the file";
    case RecordFault::checksum: return "bad record checksum";
    case RecordFault::format: return "bad record format (kind 0 or nonzero flags/reserved)";
    case RecordFault::seq: return "record seq not above the previous one";
  }
  return "unknown fault";
}

SegmentReader::SegmentReader(int fd, std::string name, std::uint64_t size, std::uint64_t max_record)
    : fd_(fd), name_(std::move(name)), size_(size), max_record_(max_record) {}

Result<SegmentReader::Checked> SegmentReader::check(std::uint64_t offset, std::uint64_t after_seq,
                                                    std::vector<std::byte>* body) {
  Checked c;
  if (offset > size_ || size_ - offset < format::record_header_size) {
    c.fault = RecordFault::truncated;
    return c;
  }
  format::RecordHeaderBytes raw;
  auto got = format::read_at(fd_, raw, offset, name_);
  if (!got) return std::unexpected(std::move(got.error()));
  if (*got != raw.size()) {  // the file shrank under us: treat like a cut file
    c.fault = RecordFault::truncated;
    return c;
  }
  auto h = format::decode_record_header(raw);
  if (h.magic != format::record_magic) {
    c.fault = RecordFault::magic;
    return c;
  }
  if (h.length > max_record_) {
    c.fault = RecordFault::length;
    return c;
  }
  std::uint64_t body_at = offset + format::record_header_size;
  if (h.length > size_ - body_at) {
    c.fault = RecordFault::past_end;
    return c;
  }
  std::uint32_t crc = format::record_header_crc(raw);
  if (body) {
    body->resize(h.length);
    auto n = format::read_at(fd_, *body, body_at, name_);
    if (!n) return std::unexpected(std::move(n.error()));
    if (*n != h.length) {
      c.fault = RecordFault::past_end;
      return c;
    }
    crc = crc32c(*body, crc);
  } else {
    if (chunk_.empty()) chunk_.resize(kChunk);
    for (std::uint64_t done = 0; done < h.length;) {
      auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_.size(), h.length - done));
      auto n = format::read_at(fd_, std::span(chunk_).first(want), body_at + done, name_);
      if (!n) return std::unexpected(std::move(n.error()));
      if (*n != want) {
        c.fault = RecordFault::past_end;
        return c;
      }
      crc = crc32c(std::span(chunk_).first(want), crc);
      done += want;
    }
  }
  // Field checks come after the checksum so that only intact records are called "bad seq".
  if (crc != h.crc) c.fault = RecordFault::checksum;
  else if (h.kind == 0 || h.flags != 0 || h.reserved != 0) c.fault = RecordFault::format;
  else if (h.seq <= after_seq) c.fault = RecordFault::seq;
  else c.record = {.offset = offset, .header = h};
  return c;
}

Result<std::optional<RecordAt>> SegmentReader::resync(std::uint64_t from, std::uint64_t after_seq) {
  if (window_.empty()) window_.resize(kChunk);
  std::array<std::byte, 4> magic;
  for (std::size_t i = 0; i < magic.size(); ++i)
    magic[i] = static_cast<std::byte>((format::record_magic >> (8 * i)) & 0xff);

  std::uint64_t pos = from;
  while (pos < size_ && size_ - pos >= format::record_header_size) {
    auto n = format::read_at(fd_, window_, pos, name_);
    if (!n) return std::unexpected(std::move(n.error()));
    if (*n < magic.size()) break;
    auto view = std::span(window_).first(*n);
    for (auto it = view.begin();;) {
      it = std::search(it, view.end(), magic.begin(), magic.end());
      if (it == view.end()) break;
      auto at = pos + static_cast<std::uint64_t>(it - view.begin());
      auto c = check(at, after_seq);
      if (!c) return std::unexpected(std::move(c.error()));
      if (c->fault == RecordFault::none) return c->record;
      ++it;
    }
    // Step back so a magic split across two windows is still seen.
    pos += *n - (magic.size() - 1);
  }
  return std::nullopt;
}

Result<bool> SegmentReader::body_equals(const RecordAt& r, std::span<const std::byte> body) {
  if (body.size() != r.header.length) return false;
  if (chunk_.empty()) chunk_.resize(kChunk);
  std::uint64_t at = r.offset + format::record_header_size;
  for (std::size_t done = 0; done < body.size();) {
    auto want = std::min(chunk_.size(), body.size() - done);
    auto n = format::read_at(fd_, std::span(chunk_).first(want), at + done, name_);
    if (!n) return std::unexpected(std::move(n.error()));
    if (*n != want || std::memcmp(chunk_.data(), body.data() + done, want) != 0) return false;
    done += want;
  }
  return true;
}

Result<void> SegmentReader::copy_to(const RecordAt& r, int out_fd, const std::string& out_name) {
  if (chunk_.empty()) chunk_.resize(kChunk);
  std::uint64_t total = r.end() - r.offset;
  for (std::uint64_t done = 0; done < total;) {
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_.size(), total - done));
    auto n = format::read_at(fd_, std::span(chunk_).first(want), r.offset + done, name_);
    if (!n) return std::unexpected(std::move(n.error()));
    if (*n != want) return fail(Errc::system, "log recovery", name_ + " shrank while being copied");
    if (auto w = format::write_all(out_fd, std::span(chunk_).first(want), out_name); !w) return w;
    done += want;
  }
  return {};
}

}  // namespace ipcx::broker
