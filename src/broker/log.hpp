// The broker's durable append-only log: one per queue directory, segmented, checksummed,
// recovered on open.
//
// ---- On-disk format (all integers little-endian) ----
//
// A log is a directory holding segment files named `<first-seq as 20 decimal digits>.seg`
// (zero padded, e.g. 00000000000000000001.seg), plus a `quarantine/` subdirectory created on
// demand. Files with any other name are ignored (left alone).
//
// Segment header, 32 bytes:
//   offset  size  field
//        0     8  magic "IPCXSEG\0"
//        8     2  version (= 1)
//       10     2  reserved (0)
//       12     4  header crc32c (of the 32 header bytes with this field zeroed)
//       16     8  first_seq (equal to the number in the file name)
//       24     8  created (unix ms)
//
// Then records, back to back. Record: a 24-byte header, then the body:
//   offset  size  field
//        0     4  magic 0x52584349 (the bytes "ICXR")
//        4     4  crc32c over bytes 8..24 of the header, then the body (everything after
//                 this field)
//        8     4  body length (at most the log's max_record)
//       12     1  kind (opaque to the log, 1..255; 0 is invalid)
//       13     1  flags (0)
//       14     2  reserved (0)
//       16     8  seq
//       24     n  body
//
// Seqs strictly increase within and across segments: the log assigns them (last seq + 1,
// starting at 1), and every record in a segment has seq >= the segment's first_seq. CRC-32C
// is the Castagnoli polynomial (see crc32c.hpp).
//
// ---- Recovery (Log::open) ----
//
// - Segments are read in name order; every record's header, length and checksum are checked
//   (a length above max_record or past the end of the file is damage, never an allocation),
//   and a record whose seq is not above the previous one's in its segment is damage.
// - Torn tail: bytes after the last valid record of the last segment that hold no further
//   valid record are an interrupted append: the file is truncated there. A last segment whose
//   header is incomplete or all zero, or that holds no record, was being created at a crash:
//   it is removed.
// - Damage elsewhere: the reader resynchronises at the next offset holding a valid record
//   (magic, checksum, seq above the last good one); damaged bytes are never replayed. The
//   segment is then replaced, atomically, by a copy holding only its valid records (same
//   name, same seqs and kinds); the damaged original goes to quarantine/<name>.<unix-ms>,
//   with a text report quarantine/<name>.<unix-ms>.txt next to it.
// - A segment with a bad magic, header checksum, version or first_seq is moved to
//   quarantine/ whole; nothing from it is replayed.
// - Records are replayed in seq order even when segments overlap; a seq found twice with
//   the same content is replayed once (a copy with other content is damage, quarantined).
// - Appends continue after the highest seq seen anywhere, quarantined valid records included,
//   so a seq is never reused. quarantine/ is written for people and never read back.
// - The directory is locked (flock) while a Log has it open: one writer per log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <ipcx/broker.hpp>  // Sync: the client's queue option is this policy
#include <ipcx/error.hpp>

namespace ipcx::broker {

// LogOptions::sync (ipcx::broker::Sync, shared with the client's QueueOptions) as the log
// reads it:
//   always  append() fdatasyncs before returning (concurrent appenders share one fdatasync)
//   group   records reach the disk when the caller calls sync() (group commit: one
//           fdatasync covers every append before it)
//   none    never: sync() does nothing, durable_seq() follows last_seq(), and recovery's
//           repairs are not fsynced either

struct LogOptions {
  std::filesystem::path dir;             // created (mode 0700, and its missing parents) if missing
  std::size_t segment_bytes = 64 << 20;  // roll to a new segment once the active one reaches this
  // A body larger than this is refused (Errc::too_large); on recovery a larger length is
  // damage. At most 4 GiB - 1 (the length field is 32 bits).
  std::size_t max_record = 64 << 20;
  Sync sync = Sync::group;
  // Seqs never go below this: a new (empty) log starts here, a log with records continues
  // after its highest. Lets a queue made again under an old name continue its old numbering.
  std::uint64_t first_seq = 1;
};

struct LogRecord {
  std::uint64_t seq;
  std::uint8_t kind;
  std::vector<std::byte> body;
};

struct RecoveryReport {
  std::size_t segments = 0;              // segment files in the log once recovery is done
  std::size_t records = 0;               // records replayed
  std::uint64_t torn_tail_bytes = 0;     // bytes cut off the end of the last segment (an append interrupted by a crash)
  std::size_t corrupt_records = 0;       // records or byte ranges whose checksum/format failed: never returned, saved to quarantine/
  std::vector<std::string> quarantined;  // files moved/written into quarantine/ (paths)
  std::vector<std::string> problems;     // one human line per problem: "<segment file> at offset N: <what>"
};

class Log {
 public:
  // Opens (creating) the log, locks its directory and recovers it. `replay` (may be empty;
  // must not throw) is called for every valid record, in seq order, before open returns; it
  // owns the record. Blocks on disk I/O. Fails with Errc::address_in_use when another Log
  // (in any process) has the directory open, Errc::invalid_argument for unusable options,
  // and with the OS error for I/O problems; damaged content is repaired and reported in
  // `report`, never an error. If open fails after replay began, discard what was replayed.
  static Result<Log> open(LogOptions options, const std::function<void(LogRecord&&)>& replay,
                          RecoveryReport* report = nullptr);

  Log(Log&&) noexcept;
  Log& operator=(Log&&) noexcept;
  // Closes the files and unlocks the directory. Never syncs: call sync() first to keep
  // records appended with Sync::group over a power loss (a process exit loses nothing).
  ~Log();

  // Appends one record (one writev of header + body) and returns its seq. The caller keeps
  // `body`. kind 0 is Errc::invalid_argument, a body above max_record Errc::too_large. With
  // Sync::always it also waits for fdatasync (shared with concurrent appenders). An I/O
  // error (write, fdatasync) breaks the log: every later append/sync fails with that error
  // (after a failed fdatasync the kernel may have dropped the dirty pages; retrying could
  // report success for data that never reached the disk). A record whose Sync::always
  // fdatasync failed may still be found by the next open.
  Result<std::uint64_t> append(std::uint8_t kind, std::span<const std::byte> body);

  // Makes every record appended before the call durable and returns the highest seq now
  // durable. Blocks in fdatasync, without holding up append(): appends made while it runs
  // are covered by the next sync(). Concurrent callers share fdatasyncs. With Sync::none it
  // does nothing and returns last_seq().
  Result<std::uint64_t> sync();

  std::uint64_t last_seq() const noexcept;     // highest seq appended (or recovered); 0 for an empty log
  std::uint64_t durable_seq() const noexcept;  // highest seq known durable (Sync::none: == last_seq())

  // Deletes whole segments all of whose records have seq < `seq` (never the active segment)
  // and returns how many were deleted. Blocks on unlink and the directory's fsync.
  Result<std::size_t> drop_before(std::uint64_t seq);

  struct Stats {
    std::size_t segments;  // segment files in the log
    std::uint64_t bytes;   // their total size
    std::uint64_t appends; // appends since open
    std::uint64_t syncs;   // sync() calls that ran fdatasync since open
  };
  Stats stats() const noexcept;
  const std::filesystem::path& dir() const noexcept;

  // append, sync, drop_before, stats, last_seq and durable_seq may be called from different
  // threads concurrently; moving or destroying the Log may not overlap any other call.

 private:
  struct Impl;
  explicit Log(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipcx::broker
