#include "bench/plot.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <map>

#include <fmt/format.h>

namespace ipcx::bench {
namespace {

constexpr int kWidth = 1100;
constexpr int kLabelWidth = 300;   // the row labels, left
constexpr int kPanelWidth = 360;   // each of the two panels
constexpr int kGap = 40;           // between the panels
constexpr int kTop = 70;           // title and axis captions above the first row
constexpr int kRow = 18;           // one bar
constexpr int kHeading = 24;       // one group heading
constexpr int kBottom = 40;

// One colour per group, in order of first appearance.
constexpr const char* kColours[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0 text: shown as '?'.
        out += (static_cast<unsigned char>(c) < 0x20 && c != '\t') ? '?' : c;
    }
  }
  return out;
}

// A log scale over whole decades covering every positive value (1..10 when there is none).
struct LogScale {
  double lo_exp = 0, hi_exp = 1;
  LogScale(const std::vector<double>& values) {
    double lo = 0, hi = 0;
    for (double v : values)
      if (v > 0 && std::isfinite(v)) {
        lo = lo > 0 ? std::min(lo, v) : v;
        hi = std::max(hi, v);
      }
    if (lo > 0) {
      lo_exp = std::floor(std::log10(lo));
      hi_exp = std::max(lo_exp + 1, std::ceil(std::log10(hi)));
    }
  }
  // 0..1 across the panel.
  double at(double v) const { return (std::log10(v) - lo_exp) / (hi_exp - lo_exp); }
};

// "0.01", "1", "10k", "1M": a decade's tick label.
std::string decade_label(double exp, bool si) {
  const double v = std::pow(10.0, exp);
  if (si) {
    if (exp >= 9) return fmt::format("{:g}G", v / 1e9);
    if (exp >= 6) return fmt::format("{:g}M", v / 1e6);
    if (exp >= 3) return fmt::format("{:g}k", v / 1e3);
  }
  return fmt::format("{:g}", v);
}

// "1.08 M/s", "57.8 k/s".
std::string per_second(double v) {
  if (v >= 1e9) return fmt::format("{:.3g} G/s", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.3g} M/s", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.3g} k/s", v / 1e3);
  return fmt::format("{:.3g}/s", v);
}

void panel(std::string& out, int x0, int height, const LogScale& scale, const char* caption, bool si) {
  out += fmt::format("<text x=\"{}\" y=\"{}\" class=\"caption\">{}</text>\n", x0, kTop - 30, caption);
  for (double e = scale.lo_exp; e <= scale.hi_exp; e += 1) {
    const double x = x0 + kPanelWidth * (e - scale.lo_exp) / (scale.hi_exp - scale.lo_exp);
    out += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" class=\"grid\"/>\n", x, kTop - 12, x,
                       kTop + height);
    out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"tick\">{}</text>\n", x, kTop - 15, decade_label(e, si));
  }
}

}  // namespace

std::string svg_chart(const std::string& title, const std::vector<Bar>& bars) {
  std::vector<double> rtt_us, rate;
  int height = 0;
  std::string last_group;
  bool first = true;
  for (auto& b : bars) {
    if (first || b.group != last_group) height += kHeading;
    first = false;
    last_group = b.group;
    height += kRow;
    rtt_us.push_back(b.rtt_ns / 1e3);
    rate.push_back(b.msgs_per_s);
  }
  const LogScale rtt_scale(rtt_us), rate_scale(rate);
  const int left = kLabelWidth, right = kLabelWidth + kPanelWidth + kGap;
  const int total_height = kTop + height + kBottom;

  std::string out = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\">\n"
      "<style>text{{font-family:sans-serif;font-size:12px;fill:#222}} .title{{font-size:16px;font-weight:bold}} "
      ".caption{{font-weight:bold}} .heading{{font-weight:bold;font-size:13px}} .tick{{font-size:10px;text-anchor:middle;fill:#555}} "
      ".grid{{stroke:#ddd;stroke-width:1}} .value{{font-size:10px;fill:#333}}</style>\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"10\" y=\"22\" class=\"title\">{}</text>\n",
      kWidth, total_height, kWidth, total_height, escape(title));
  panel(out, left, height, rtt_scale, "round trip p50 (µs, log scale; shorter is better)", false);
  panel(out, right, height, rate_scale, "messages per second (log scale; longer is better)", true);

  std::map<std::string, std::size_t> colour_of;
  int y = kTop;
  first = true;
  for (auto& b : bars) {
    if (first || b.group != last_group) {
      out += fmt::format("<text x=\"10\" y=\"{}\" class=\"heading\">{}</text>\n", y + 17, escape(b.group));
      y += kHeading;
    }
    first = false;
    last_group = b.group;
    const auto colour = kColours[colour_of.try_emplace(b.group, colour_of.size()).first->second % std::size(kColours)];
    out += fmt::format("<text x=\"20\" y=\"{}\">{}</text>\n", y + 13, escape(b.label));
    auto bar = [&](int x0, const LogScale& scale, double v, const std::string& text) {
      if (!(v > 0) || !std::isfinite(v)) {
        out += fmt::format("<text x=\"{}\" y=\"{}\" class=\"value\">not measured</text>\n", x0 + 4, y + 13);
        return;
      }
      const double w = std::max(1.0, kPanelWidth * std::clamp(scale.at(v), 0.0, 1.0));
      out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect>\n", x0,
                         y + 3, w, kRow - 6, colour, escape(b.label + ": " + text));
      out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"value\">{}</text>\n", x0 + w + 4, y + 13, escape(text));
    };
    bar(left, rtt_scale, b.rtt_ns / 1e3, fmt::format("{:.3g} µs", b.rtt_ns / 1e3));
    bar(right, rate_scale, b.msgs_per_s, per_second(b.msgs_per_s));
    y += kRow;
  }
  out += "</svg>\n";
  return out;
}

Status write_text_file(const std::string& path, const std::string& text) {
  // In place: an existing file keeps its permissions, a symlink is followed, a device or a pipe
  // (/dev/stdout) is written through; a FIFO nobody reads is refused (ENXIO) rather than waited
  // for, which would leave the run deaf to signals. Opened non-blocking, then written blocking.
  // The file this process's stdout or stderr writes to (`--svg /dev/stdout >out.txt`) is written
  // through that descriptor, after what is there: reopened and truncated, it would lose it.
  struct stat file {}, std_stream {};
  int fd = -1;
  if (::stat(path.c_str(), &file) == 0 && S_ISREG(file.st_mode))
    for (int s : {STDOUT_FILENO, STDERR_FILENO})
      if (::fstat(s, &std_stream) == 0 && std_stream.st_dev == file.st_dev && std_stream.st_ino == file.st_ino) {
        std::fflush(s == STDOUT_FILENO ? stdout : stderr);
        fd = ::fcntl(s, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) return sys_error("dup", path);
        break;
      }
  if (fd < 0) fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0644);
  if (fd < 0) return errno == ENXIO ? fail(Errc::closed, "open", path + ": a FIFO that nobody reads") : sys_error("open", path);
  Status r;
  if (const int fl = ::fcntl(fd, F_GETFL); fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) r = sys_error("fcntl", path);
  for (std::size_t off = 0; r && off < text.size();) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) r = sys_error("write", path);
    else off += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 && r) r = sys_error("close", path);
  return r;
}

}  // namespace ipcx::bench
