// The chart of `ipcx tour` and `ipcx bench --plot`: an SVG document with two panels, the round
// trip (p50) and the messages per second of each measured row, as horizontal bars on log scales,
// rows grouped under headings (docs/bench.md).
#pragma once

#include <string>
#include <vector>

#include "bench/util.hpp"

namespace ipcx::bench {

struct Bar {
  std::string group;  // a heading: consecutive bars of the same group go under one
  std::string label;
  double rtt_ns = 0;      // <= 0: not measured (no bar)
  double msgs_per_s = 0;  // <= 0: not measured
};

// A standalone SVG 1.1 document (UTF-8).
std::string svg_chart(const std::string& title, const std::vector<Bar>& bars);

// Writes `text` to `path` in place (a new file is 0644; an existing one keeps its permissions; a
// symlink, a device or a pipe such as /dev/stdout is written through). A FIFO nobody reads is
// an error, not a wait.
Status write_text_file(const std::string& path, const std::string& text);

}  // namespace ipcx::bench
