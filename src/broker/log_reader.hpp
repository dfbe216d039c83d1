// Reads and validates the records of one segment file without trusting any of its bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/error.hpp>

#include "broker/log_format.hpp"

namespace ipcx::broker {

// Why the bytes at an offset are not a valid record.
enum class RecordFault { none, truncated, magic, length, past_end, checksum, format, seq };
std::string_view describe(RecordFault f) noexcept;

struct RecordAt {
  std::uint64_t offset = 0;
  format::RecordHeader header;
  std::uint64_t end() const noexcept { return offset + format::record_header_size + header.length; }
};

class SegmentReader {
 public:
  // `fd` stays owned by the caller and must outlive the reader; `size` is the file's size.
  SegmentReader(int fd, std::string name, std::uint64_t size, std::uint64_t max_record);

  struct Checked {
    RecordFault fault = RecordFault::none;
    RecordAt record;  // meaningful when fault == none
  };
  // Checks the record at `offset`, which must have seq > `after_seq`. A length is checked
  // against max_record and the file's size before anything is read or allocated. Without
  // `body` the body is streamed through the checksum (no allocation); with it, the body is
  // read into *body (only when the record is valid so far, so at most max_record bytes).
  Result<Checked> check(std::uint64_t offset, std::uint64_t after_seq, std::vector<std::byte>* body = nullptr);

  // The first offset >= `from` holding a valid record with seq > `after_seq` (scanning for the
  // record magic at every byte offset), or nullopt when none is left in the file.
  Result<std::optional<RecordAt>> resync(std::uint64_t from, std::uint64_t after_seq);

  // True when the body of `r` (a valid record) equals `body` byte for byte.
  Result<bool> body_equals(const RecordAt& r, std::span<const std::byte> body);

  // Appends the bytes of `r` (header and body) to `out_fd`.
  Result<void> copy_to(const RecordAt& r, int out_fd, const std::string& out_name);

  std::uint64_t size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }

 private:
  int fd_;
  std::string name_;
  std::uint64_t size_;
  std::uint64_t max_record_;
  std::vector<std::byte> chunk_;   // body streaming
  std::vector<std::byte> window_;  // magic scanning
};

struct Damage {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  RecordFault fault = RecordFault::none;
  bool reaches_end = false;  // no valid record after it (in the last segment: a torn tail)
};

// Visits the valid records of a segment in file order from `from`, each seq above the one
// before (the first above `after_seq`), resynchronising past damage. `on_record(const
// RecordAt&)` returns Result<void> (an error stops the walk); `on_damage(const Damage&)`
// hears of each damaged range.
template <class OnRecord, class OnDamage>
Result<void> walk(SegmentReader& reader, std::uint64_t from, std::uint64_t after_seq, OnRecord&& on_record,
                  OnDamage&& on_damage) {
  std::uint64_t pos = from;
  while (pos < reader.size()) {
    auto c = reader.check(pos, after_seq);
    if (!c) return std::unexpected(std::move(c.error()));
    RecordAt rec = c->record;
    if (c->fault != RecordFault::none) {
      auto next = reader.resync(pos + 1, after_seq);
      if (!next) return std::unexpected(std::move(next.error()));
      if (!*next) {
        on_damage(Damage{.from = pos, .to = reader.size(), .fault = c->fault, .reaches_end = true});
        break;
      }
      on_damage(Damage{.from = pos, .to = (*next)->offset, .fault = c->fault});
      rec = **next;
    }
    if (auto r = on_record(rec); !r) return r;
    after_seq = rec.header.seq;
    pos = rec.end();
  }
  return {};
}

}  // namespace ipcx::broker
