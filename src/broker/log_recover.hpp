// Log::open's recovery: checks every segment, repairs or quarantines what is damaged, and
// replays the valid records in seq order (rules in log.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ipcx/error.hpp>

#include "broker/log.hpp"

namespace ipcx::broker {

// A segment file of the log as recovery leaves it.
struct SegmentInfo {
  std::string name;
  std::uint64_t first_seq = 0;
  std::uint64_t records = 0;
  std::uint64_t min_seq = 0;  // meaningful when records > 0
  std::uint64_t max_seq = 0;
  std::uint64_t bytes = 0;
};

struct Recovered {
  std::vector<SegmentInfo> segments;  // in name order
  std::uint64_t max_seq = 0;          // highest seq seen anywhere; appends continue after it
};

// `dirfd` is the log's (locked) directory; `dir` its path for messages. Blocks on disk I/O.
Result<Recovered> recover(int dirfd, const std::string& dir, const LogOptions& options,
                          const std::function<void(LogRecord&&)>& replay, RecoveryReport& report);

}  // namespace ipcx::broker
