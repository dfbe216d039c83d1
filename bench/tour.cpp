#include "bench/tour.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/harness.hpp"
#include "bench/machine.hpp"
#include "bench/plan.hpp"
#include "bench/plot.hpp"
#include "bench/report.hpp"
#include "bench/session.hpp"

namespace ipcx::bench {
namespace {

constexpr std::size_t kSmall = 64;         // round trip and messages/s
constexpr std::size_t kLarge = 64 * 1024;  // MB/s (or the largest message the mechanism carries)

// The bench's counts scaled down: the whole tour stays within a minute on two cores.
Plan tour_plan(const TourOptions& o) {
  const bool quick = o.quick;
  Plan p;
  p.rounds = quick ? 200 : 10000;
  p.warmup = quick ? 20 : 1000;
  p.stream_messages = quick ? 2000 : 50000;
  p.stream_bytes = quick ? (std::size_t{2} << 20) : (std::size_t{32} << 20);
  p.bursts = quick ? 2 : 3;
  p.sizes = {kSmall, kLarge};
  p.impls = {Impl::ipcx};
  for (auto* m : mechanisms())
    if (m->ipcx && (o.only.empty() || std::find(o.only.begin(), o.only.end(), m->name) != o.only.end()))
      p.mechanisms.push_back(m);
  return p;
}

struct Row {
  const Mechanism* mech;
  std::optional<Measurement> small, large;  // large: the MB/s figure (unset: the mechanism has one size)
  std::string failed;                       // why a measurement of it failed
};

// Progress on stderr: a bar redrawn in place on a terminal, one plain line per measurement
// otherwise (a log, a pipe).
class Progress {
 public:
  explicit Progress(int total) : total_(total), tty_(::isatty(STDERR_FILENO) == 1) {}
  void start(int done, const Mechanism& m, std::size_t size) {
    if (!tty_) return;
    constexpr int kWidth = 30;
    const int filled = total_ ? done * kWidth / total_ : kWidth;
    std::fprintf(stderr, "\r\033[K[%s%s] %d/%d  %.*s, %zu B", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(), done, total_,
                 static_cast<int>(m.name.size()), m.name.data(), size);
    std::fflush(stderr);
  }
  void done(int done, const Mechanism& m, std::size_t size, const std::string& what) {
    if (tty_) return;
    std::fprintf(stderr, "ipcx tour: [%d/%d] %.*s, %zu B: %s\n", done, total_, static_cast<int>(m.name.size()), m.name.data(),
                 size, what.c_str());
  }
  void finish() {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  int total_;
  bool tty_;
};

std::string us_text(double ns) { return ns < 1e4 ? fmt::format("{:.2f} µs", ns / 1e3) : fmt::format("{:.0f} µs", ns / 1e3); }

std::string rate_text(double per_s) {
  if (per_s >= 1e6) return fmt::format("{:.2f} M", per_s / 1e6);
  if (per_s >= 1e3) return fmt::format("{:.1f} k", per_s / 1e3);
  return fmt::format("{:.0f}", per_s);
}

// MB/s, and the size when it is not kLarge.
std::string mb_text(const Measurement& m) {
  if (m.size == 0) return "-";
  const auto mb = fmt::format("{:.0f}", m.bytes_per_s / 1e6);
  if (m.size == kLarge) return mb;
  return m.size % 1024 == 0 ? fmt::format("{} @{} KiB", mb, m.size / 1024) : fmt::format("{} @{} B", mb, m.size);
}

// What the tour says a row's check was.
std::string checked_text(const Row& r) {
  if (!r.small) return "-";
  const auto& v = r.small->verified;
  if (v == "content") return "every byte";
  if (v == "stamps") return "stamps";
  return v;
}

void print_table(const std::vector<Row>& rows, const Machine& machine) {
  fmt::print("ipcx tour: every mechanism between two processes (parent on cpu {}, echo child on cpu {}{}; {})\n",
             machine.pinned[0], machine.pinned[1], machine.smt_siblings ? ", hyper-threads of one core" : "",
             machine.cpu_model);
  fmt::print("p50, p99: round trips of {} B messages; msgs/s: {} B messages one way, in bursts; MB/s: {} KiB messages "
             "one way (@: the size a mechanism carries instead)\n",
             kSmall, kSmall, kLarge / 1024);
  std::size_t name_w = 9, purpose_w = 14;
  for (auto& r : rows) {
    name_w = std::max(name_w, r.mech->name.size());
    purpose_w = std::max(purpose_w, r.mech->purpose.size());
  }
  std::vector<Group> absent;  // groups with no mechanism in ipcx at all (not those --only left out)
  for (auto g : kGroups) {
    bool any = false, exists = false;
    for (auto& r : rows) any |= r.mech->group == g;
    for (auto* m : mechanisms()) exists |= m->group == g && m->ipcx;
    if (!exists) absent.push_back(g);
    if (!any) continue;
    fmt::print("\n{}\n", to_string(g));
    fmt::print("  {:<{}}  {:<{}}  {:>10}  {:>10}  {:>9}  {:>13}  {}\n", "mechanism", name_w, "what it is for", purpose_w,
               "p50", "p99", "msgs/s", "MB/s", "checked");
    for (auto& r : rows) {
      if (r.mech->group != g) continue;
      if (!r.failed.empty()) {
        fmt::print("  {:<{}}  {:<{}}  failed: {}\n", r.mech->name, name_w, r.mech->purpose, purpose_w, r.failed);
        continue;
      }
      const auto& s = *r.small;
      const auto& big = r.large ? *r.large : s;
      auto cell = [](const std::string& t, std::size_t w) {
        return std::string(w > display_width(t) ? w - display_width(t) : 0, ' ') + t;
      };
      fmt::print("  {:<{}}  {:<{}}  {}  {}  {}  {}  {}\n", r.mech->name, name_w, r.mech->purpose, purpose_w,
                 cell(us_text(static_cast<double>(s.rtt_p50_ns)), 10), cell(us_text(static_cast<double>(s.rtt_p99_ns)), 10),
                 cell(rate_text(s.msgs_per_s), 9), cell(mb_text(big), 13), checked_text(r));
    }
  }
  bool handover = false;
  for (auto& r : rows) handover |= r.mech->handover && r.failed.empty();
  if (handover)
    fmt::print("\nzero copy: MB/s counts the bytes handed over by reference (the receiver reads 64 of them), not copied\n");
  if (!absent.empty()) {
    std::string names;
    for (auto g : absent) names += fmt::format("{}{}", names.empty() ? "" : ", ", to_string(g));
    fmt::print("\nnot in ipcx yet: {}\n", names);
  }
  std::string bench_only;  // rows the bench measures without an ipcx side (raw and peer)
  for (auto* m : mechanisms())
    if (!m->ipcx) bench_only += fmt::format("{}{}", bench_only.empty() ? "" : ",", m->name);
  if (!bench_only.empty()) fmt::print("measured without ipcx by `ipcx bench --only {}`: the raw mechanism and its peers\n", bench_only);
}

std::vector<Bar> bars_of(const std::vector<Row>& rows) {
  std::vector<Bar> bars;
  for (auto g : kGroups)
    for (auto& r : rows)
      if (r.mech->group == g)
        bars.push_back(Bar{.group = std::string(to_string(g)),
                           .label = std::string(r.mech->name),
                           .rtt_ns = r.small ? static_cast<double>(r.small->rtt_p50_ns) : 0,
                           .msgs_per_s = r.small ? r.small->msgs_per_s : 0});
  return bars;
}

nlohmann::ordered_json json_of(const std::vector<Row>& rows, const Machine& machine) {
  auto out = nlohmann::ordered_json::array();
  for (auto& r : rows) {
    nlohmann::ordered_json j{{"mechanism", r.mech->name}, {"group", to_string(r.mech->group)}, {"purpose", r.mech->purpose}};
    if (!r.failed.empty()) {
      j["failed"] = r.failed;
    } else {
      const auto& s = *r.small;
      const auto& big = r.large ? *r.large : s;
      j["size"] = s.size;
      j["rtt_p50_ns"] = s.rtt_p50_ns;
      j["rtt_p99_ns"] = s.rtt_p99_ns;
      j["msgs_per_s"] = std::round(s.msgs_per_s * 10) / 10;
      j["large_size"] = big.size;
      j["large_bytes_per_s"] = std::round(big.bytes_per_s);
      j["verified"] = s.verified;
    }
    out.push_back(std::move(j));
  }
  return {{"schema", 1}, {"machine", machine_json(machine)}, {"rows", std::move(out)}};
}

std::string stdout_lost(const Error& e) { return fmt::format("cannot write to stdout: {}", std::strerror(e.sys_errno)); }

int complain(const std::string& what, int code) {
  std::fprintf(stderr, "ipcx tour: %s\n", what.c_str());
  return code;
}

int tour(const TourOptions& o) {
  const Plan plan = tour_plan(o);
  Session session;  // restores signals and affinity on every return below
  auto dir = start_run(session, plan.mechanisms);
  if (!dir) return complain(dir.error().message(), 1);
  const auto machine = machine_facts(session.allowed_cpus(), session.parent_cpu(), session.child_cpu());

  int total = 0;
  for (auto* m : plan.mechanisms) total += static_cast<int>(std::min<std::size_t>(2, plan.sizes_for(*m).size()));
  Progress progress(total);
  std::vector<Row> rows;
  int done = 0;
  bool any_failed = false;
  for (auto* mech : plan.mechanisms) {
    Row row{.mech = mech};
    auto sizes = plan.sizes_for(*mech);
    if (sizes.size() > 2) sizes.resize(2);
    for (std::size_t i = 0; i < sizes.size() && row.failed.empty(); ++i) {
      progress.start(done, *mech, sizes[i]);
      const auto work = plan.work(sizes[i], !mech->handover);
      auto m = interrupted() ? std::unexpected(std::string()) : measure(*mech, Impl::ipcx, work, session, *dir);
      if (int sig = interrupted()) {
        progress.finish();
        return complain(fmt::format("interrupted by {}", sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP"),
                        128 + sig);
      }
      ++done;
      if (!m) {
        row.failed = m.error();
        any_failed = true;
        progress.done(done, *mech, sizes[i], "failed: " + m.error());
        break;
      }
      progress.done(done, *mech, sizes[i],
                    fmt::format("{} p50, {} msgs/s, checked: {}", us_text(static_cast<double>(m->rtt_p50_ns)),
                                rate_text(m->msgs_per_s), m->verified));
      (i == 0 ? row.small : row.large) = std::move(*m);
    }
    rows.push_back(std::move(row));
  }
  progress.finish();

  print_table(rows, machine);
  // Before the chart: the table is lost on a closed stdout, and is not overwritten by a chart
  // sent to the same file (--svg /dev/stdout).
  if (auto r = flush_stdout(); !r) return complain(stdout_lost(r.error()), 1);
  const auto svg = svg_chart(fmt::format("ipcx tour: round trip and messages/s per mechanism ({}, {} CPUs)",
                                         machine.cpu_model, machine.cpus),
                             bars_of(rows));
  if (auto r = write_text_file(o.svg, svg); !r) return complain(fmt::format("chart: {}", r.error().message()), 1);
  fmt::print("\nchart: {} (round trip and messages/s per mechanism, log scales)\n", o.svg);
  if (!o.json.empty())
    if (auto r = write_text_file(o.json, json_of(rows, machine).dump(1) + "\n"); !r)
      return complain(fmt::format("json: {}", r.error().message()), 1);
  if (auto r = flush_stdout(); !r) return complain(stdout_lost(r.error()), 1);
  return any_failed ? 1 : 0;
}

}  // namespace

int run_tour(const TourOptions& o) {
  if (o.svg.empty()) return complain("--svg wants a file name, not ''", 2);
  for (auto& name : o.only) {
    const auto* m = find_mechanism(name);
    if (m && m->ipcx) continue;
    std::string known;
    for (auto* k : mechanisms())
      if (k->ipcx) known += fmt::format("{}{}", known.empty() ? "" : ",", k->name);
    return complain(fmt::format("unknown mechanism '{}' (known: {})", name, known), 2);
  }
  if (auto r = check_output_file(o.svg, "--svg"); !r) return complain(r.error(), 2);  // before measuring
  if (!o.json.empty()) {
    if (auto r = check_output_file(o.json, "--json"); !r) return complain(r.error(), 2);
    if (same_file(o.svg, o.json))
      return complain(fmt::format("--svg and --json name the same file ({}): one would be lost", o.svg), 2);
  }
  try {
    return tour(o);
  } catch (const std::exception& e) {  // e.g. fmt's system_error when stdout is a closed pipe
    std::fprintf(stderr, "ipcx tour: %s\n", e.what());
    return 1;
  }
}

}  // namespace ipcx::bench
