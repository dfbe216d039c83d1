// ipcx bench: round-trip latency and one-way throughput per mechanism, ipcx vs raw.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ipcx::cli {

struct BenchArgs {
  std::vector<std::string> only;    // mechanism names; empty = all
  std::vector<std::size_t> sizes;   // payload sizes in bytes; empty = defaults
  int rounds = 0;                   // round trips per measurement; 0 = default
  bool quick = false;               // fewer rounds, for smoke runs
  std::string json;                 // write results here when not empty
};

// Runs the benchmark, prints a table on stdout; returns the process exit code.
int run_bench(const BenchArgs& args);

}  // namespace ipcx::cli
