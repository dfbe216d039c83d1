// ipcx tour: every mechanism ipcx has, between two real processes on this machine, grouped as
// textbooks group them, each with what it is for and what it costs — the bench's harness and rows
// (ipcx only, fewer rounds), its progress on stderr, its table on stdout, and a chart (docs/bench.md).
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace ipcx::bench {

struct TourOptions {
  std::vector<std::string> only;     // mechanisms (bench row names); empty: all
  bool quick = false;                // far fewer rounds: a smoke run
  std::string svg = "ipcx-tour.svg";  // the chart
  std::string json;                  // also the rows as JSON, when not empty
};

// Returns the exit code: 0; 1 when a measurement failed (the others still run and are shown);
// 2 for unusable options; 128+signal after SIGINT/SIGTERM/SIGHUP (children killed, files removed).
int run_tour(const TourOptions& options);

}  // namespace ipcx::bench
