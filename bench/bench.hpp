// ipcx bench: round-trip latency and one-way throughput per mechanism, measured through ipcx
// ("ipcx"), through bare system calls on the same kernel object ("raw") and, for rows that have
// one, through another IPC library ("peer") — in the same run, so the ratios to raw are what the
// figures mean (these machines are noisy). The command, its method and its JSON: docs/bench.md.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace ipcx::bench {

struct Options {
  std::vector<std::string> only;   // mechanism names; empty: all
  std::vector<std::size_t> sizes;  // payload sizes in bytes; empty: the defaults
  std::vector<std::string> impls;  // "raw", "ipcx", "peer"; empty: all
  std::optional<long> rounds;      // round trips per measurement (other counts scale with it)
  long repeat = 1;                 // whole runs; the report gives the median and range of each row
  bool quick = false;              // fewer rounds, for smoke runs
  std::string json;                // also write the results here when not empty
  std::string plot;                // also draw them as an SVG chart here when not empty
};

// Runs the benchmark: the table on stdout, a failure as one line on stderr. Returns the exit
// code: 0; 1 when a measurement failed; 2 for unusable options (checked before measuring, the
// --json file's directory included); 128+signal after SIGINT/SIGTERM/SIGHUP (the echo child
// killed, the run's files removed).
int run(const Options& options);

// Registers `bench` on `app`, and the hidden `__bench-echo` the benchmark starts its echo
// children with. Call the returned function after parsing: it runs the one that was selected and
// returns its exit code, or nullopt when neither was.
std::function<std::optional<int>()> add_commands(CLI::App& app);

}  // namespace ipcx::bench
