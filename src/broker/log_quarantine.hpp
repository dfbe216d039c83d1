// Moving damaged segments out of a log (into quarantine/) without ever losing a valid record.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

#include "broker/log.hpp"
#include "broker/log_format.hpp"
#include "broker/log_recover.hpp"

namespace ipcx::broker {

// A segment file as recovery sees it.
struct SegmentFile {
  std::string name;
  Fd fd;
  format::SegmentHeader header;
  SegmentInfo info;
  std::vector<std::string> problems;    // this file's lines (also in the report), for its quarantine note
  std::size_t problems_dropped = 0;     // lines beyond the cap (a file full of damage)
  std::vector<std::uint64_t> excluded;  // offsets of valid records to leave out of a rewrite

  void add_record(std::uint64_t seq) noexcept;
  // Adds "<name> at offset N: <what>" to the report and to this file's lines. Capped per
  // file so that a hostile file cannot grow the report without bound.
  void problem(RecoveryReport& report, std::uint64_t offset, std::string what);
};

class Quarantine {
 public:
  Quarantine(int dirfd, std::string dir, const LogOptions& options) noexcept
      : dirfd_(dirfd), dir_(std::move(dir)), options_(&options) {}

  // Takes `f` (f.fd open on it) out of the log: a copy goes to quarantine/<name>.<unix-ms>
  // with a note <name>.<unix-ms>.txt listing f.problems. With `rewrite`, f's valid records,
  // except those at the (sorted) `excluded` offsets, first go to a new file that then
  // replaces f under the same name (rename(2): at every moment each valid record is in the
  // log), and f.info describes it; otherwise (or with no record to keep) f is removed and
  // f.info.records becomes 0. Syncs every file and directory it changes (unless Sync::none).
  Result<void> move(SegmentFile& f, bool rewrite, std::span<const std::uint64_t> excluded, RecoveryReport& report);

 private:
  Result<int> qdir();
  Result<std::string> preserve(SegmentFile& f, std::uint64_t& ms);
  Result<void> write_note(const SegmentFile& f, const std::string& qname, std::uint64_t ms, std::uint64_t keep);
  Result<SegmentInfo> rewrite(SegmentFile& f, std::span<const std::uint64_t> excluded, const std::string& tmp);
  // No-ops with Sync::none: that log gave up durability, and its repairs follow it.
  Result<void> sync_data(int fd, const std::string& what) const;
  Result<void> sync_all(int fd, const std::string& what) const;

  int dirfd_;
  std::string dir_;
  const LogOptions* options_;
  Fd qdir_;
};

}  // namespace ipcx::broker
