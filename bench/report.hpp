// What a run prints and writes: the table on stdout (rows as they are measured; with --repeat, a
// median [min–max] table at the end) and the JSON file (docs/bench.md has its schema).
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench.hpp"
#include "bench/harness.hpp"
#include "bench/machine.hpp"
#include "bench/plan.hpp"

namespace ipcx::bench {

struct Metrics {
  double rtt_p50_ns = 0, rtt_p99_ns = 0, msgs_per_s = 0, bytes_per_s = 0;
  double oneway_p50_ns = 0, oneway_p99_ns = 0;  // 0: not measured
};

// Median, min and max over the runs of one (mechanism, impl, size).
struct Summary {
  std::string mechanism;
  std::string baseline;
  int receivers = 1;
  Impl impl;
  std::size_t size;
  std::string verified;  // Measurement::verified (the same in every run)
  int runs = 0;
  Metrics median, min, max;
  // Non-raw rows: per-run ratios to the raw row of the same run (p50 and throughput).
  struct Range {
    double median, min, max;
  };
  std::optional<Range> p50_vs_raw, tput_vs_raw;
};

// Whether the results can be written to `file` once the run is over, checked before measuring:
// the one line explaining why not. An existing file is left untouched; a new one is created and
// removed again, so a run that fails leaves nothing behind.
std::expected<void, std::string> check_output_file(const std::string& file, std::string_view option);
// Two output options name one file (after following symlinks and `..`): one would be lost.
bool same_file(const std::string& a, const std::string& b);

// The "machine" object of the bench's and the tour's JSON.
nlohmann::ordered_json machine_json(const Machine& m);

// Groups measurements by (mechanism, impl, size), in the order first measured.
std::vector<Summary> summarize(const std::vector<Measurement>& all, const std::vector<int>& run_of);

class Report {
 public:
  Report(const Options& options, const Plan& plan, Machine machine);

  // The header line (CPUs and plan) and the table's column names.
  Status begin();
  // Before each of several runs: a line saying which.
  Status start_run(int run);
  // Prints one measured row (with its ratios to the raw row of the same run) and keeps it.
  Status add(Measurement m);
  // With several runs: the median [min–max] table.
  Status finish();
  Status write_json(const std::string& file) const;
  // The chart (plot.hpp): one bar per (mechanism, impl, size), the medians, grouped as the tour
  // groups the mechanisms.
  Status write_plot(const std::string& file) const;

 private:
  const Options& options_;
  const Plan& plan_;
  Machine machine_;
  int run_ = 0;
  std::size_t name_width_ = 9;  // the mechanism column: as wide as the longest selected name
  std::vector<Measurement> all_;
  std::vector<int> run_of_;  // the run each of all_ belongs to
};

}  // namespace ipcx::bench
