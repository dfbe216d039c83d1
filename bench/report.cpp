#include "bench/report.hpp"

#include "bench/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace ipcx::bench {
namespace {

// Mean of the two middle values when there is an even number: with two runs it lies between them.
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

Summary::Range range(const std::vector<double>& v) {
  return {median(v), *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
}

bool same_row(const Measurement& a, const Measurement& b) {
  return a.mechanism == b.mechanism && a.impl == b.impl && a.size == b.size;
}

double us(double ns) { return ns / 1e3; }
// Sub-microsecond rows (an uncontended lock) need a third decimal to be told apart.
int us_digits(double ns) { return ns < 1e3 ? 3 : 2; }

// Rows go out as they are measured; a reader that went away (`| head`) ends the run.
}  // namespace

nlohmann::ordered_json machine_json(const Machine& m) {
  return {{"cpu_model", m.cpu_model},
          {"cpus", m.cpus},
          {"kernel", m.kernel},
          {"pinned", {m.pinned[0], m.pinned[1]}},
          {"smt_siblings", m.smt_siblings}};
}

namespace {

nlohmann::ordered_json metrics_json(const Metrics& m) {
  auto oneway = [](double ns) { return ns > 0 ? nlohmann::ordered_json(std::llround(ns)) : nlohmann::ordered_json(nullptr); };
  return {{"rtt_p50_ns", std::llround(m.rtt_p50_ns)},
          {"rtt_p99_ns", std::llround(m.rtt_p99_ns)},
          {"oneway_p50_ns", oneway(m.oneway_p50_ns)},
          {"oneway_p99_ns", oneway(m.oneway_p99_ns)},
          {"msgs_per_s", std::round(m.msgs_per_s * 10) / 10},
          {"bytes_per_s", std::round(m.bytes_per_s)}};
}

// The one-way p50 column: "-" when not measured.
std::string oneway_cell(double ns) { return ns > 0 ? fmt::format("{:.{}f}", us(ns), us_digits(ns)) : "-"; }

// (mechanism, why) for each selected row whose peer measurement this build left out.
std::vector<std::pair<std::string_view, std::string_view>> skipped_peers(const Plan& plan) {
  std::vector<std::pair<std::string_view, std::string_view>> v;
  for (auto* m : plan.mechanisms)
    if (!m->peer && !m->peer_skipped.empty() && plan.measures(Impl::peer))
      v.emplace_back(m->row_name(Impl::peer), m->peer_skipped);
  return v;
}

std::vector<std::string> impl_names(const Plan& plan) {
  std::vector<std::string> v;
  for (auto i : plan.impls) v.emplace_back(to_string(i));
  return v;
}

std::vector<std::string> mechanism_names(const Plan& plan) {
  std::vector<std::string> v;
  for (auto* m : plan.mechanisms) v.emplace_back(m->name);
  return v;
}

}  // namespace

std::vector<Summary> summarize(const std::vector<Measurement>& all, const std::vector<int>& run_of) {
  std::vector<Summary> out;
  std::vector<bool> done(all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (done[i]) continue;
    std::vector<double> p50, p99, msgs, bytes, p50_ratio, tput_ratio, ow50, ow99;
    for (std::size_t j = i; j < all.size(); ++j) {
      if (done[j] || !same_row(all[i], all[j])) continue;
      done[j] = true;
      auto& m = all[j];
      p50.push_back(static_cast<double>(m.rtt_p50_ns));
      p99.push_back(static_cast<double>(m.rtt_p99_ns));
      msgs.push_back(m.msgs_per_s);
      bytes.push_back(m.bytes_per_s);
      if (m.oneway_p50_ns > 0) {
        ow50.push_back(static_cast<double>(m.oneway_p50_ns));
        ow99.push_back(static_cast<double>(m.oneway_p99_ns));
      }
      if (m.impl == Impl::raw) continue;
      for (std::size_t k = 0; k < all.size(); ++k) {
        auto& r = all[k];
        if (run_of[k] == run_of[j] && r.impl == Impl::raw && r.mechanism == m.baseline && r.size == m.size) {
          p50_ratio.push_back(static_cast<double>(m.rtt_p50_ns) / static_cast<double>(r.rtt_p50_ns));
          tput_ratio.push_back(m.msgs_per_s / r.msgs_per_s);
        }
      }
    }
    Summary s{.mechanism = all[i].mechanism,
              .baseline = all[i].baseline,
              .receivers = all[i].receivers,
              .impl = all[i].impl,
              .size = all[i].size,
              .verified = all[i].verified,
              .runs = static_cast<int>(p50.size())};
    auto a = range(p50), b = range(p99), c = range(msgs), d = range(bytes);
    s.median = {a.median, b.median, c.median, d.median};
    s.min = {a.min, b.min, c.min, d.min};
    s.max = {a.max, b.max, c.max, d.max};
    if (!ow50.empty()) {
      auto e = range(ow50), f = range(ow99);
      s.median.oneway_p50_ns = e.median, s.min.oneway_p50_ns = e.min, s.max.oneway_p50_ns = e.max;
      s.median.oneway_p99_ns = f.median, s.min.oneway_p99_ns = f.min, s.max.oneway_p99_ns = f.max;
    }
    if (!p50_ratio.empty()) {
      s.p50_vs_raw = range(p50_ratio);
      s.tput_vs_raw = range(tput_ratio);
    }
    out.push_back(std::move(s));
  }
  return out;
}

Report::Report(const Options& options, const Plan& plan, Machine machine)
    : options_(options), plan_(plan), machine_(std::move(machine)) {
  for (auto* m : plan_.mechanisms)
    for (auto impl : kImpls) name_width_ = std::max(name_width_, m->row_name(impl).size());
}

Status Report::begin() {
  fmt::print("ipcx bench: parent on cpu {}, echo child on cpu {}{}; {} round trips (+{} warm-up), "
             "throughput: best of {} bursts of {} messages or {} MiB{}\n",
             machine_.pinned[0], machine_.pinned[1], machine_.smt_siblings ? " (SMT siblings)" : "", plan_.rounds,
             plan_.warmup, plan_.bursts, plan_.stream_messages, plan_.stream_bytes >> 20,
             plan_.repeat > 1 ? fmt::format("; {} runs", plan_.repeat) : "");
  // Measurements this build cannot make, said once per reason rather than left out silently.
  std::vector<std::pair<std::string_view, std::string>> skipped;  // reason, rows
  for (auto& [mech, reason] : skipped_peers(plan_)) {
    auto at = std::find_if(skipped.begin(), skipped.end(), [&](auto& e) { return e.first == reason; });
    if (at == skipped.end()) at = skipped.insert(skipped.end(), {reason, std::string()});
    at->second += fmt::format("{}{} peer", at->second.empty() ? "" : ", ", mech);
  }
  for (auto& [reason, rows] : skipped) fmt::print("skipped: {} ({})\n", rows, reason);
  fmt::print("{:<{}} {:<5} {:>7} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9}\n", "mechanism", name_width_, "impl", "size",
             "p50 (µs)", "p99 (µs)", "1-way p50", "msgs/s", "MB/s", "p50/raw", "tput/raw");
  return flush_stdout();
}

Status Report::start_run(int run) {
  run_ = run;
  if (plan_.repeat > 1) fmt::print("-- run {} of {}\n", run + 1, plan_.repeat);
  return flush_stdout();
}

Status Report::add(Measurement m) {
  const Measurement* raw = nullptr;
  for (std::size_t i = 0; i < all_.size(); ++i)
    if (run_of_[i] == run_ && all_[i].impl == Impl::raw && all_[i].mechanism == m.baseline && all_[i].size == m.size)
      raw = &all_[i];
  auto p50 = static_cast<double>(m.rtt_p50_ns), p99 = static_cast<double>(m.rtt_p99_ns);
  auto line = fmt::format("{:<{}} {:<5} {:>7} {:>9.{}f} {:>9.{}f} {:>9} {:>11.0f} {:>9.1f}", m.mechanism, name_width_,
                          to_string(m.impl), m.size, us(p50), us_digits(p50), us(p99), us_digits(p99),
                          oneway_cell(static_cast<double>(m.oneway_p50_ns)), m.msgs_per_s, m.bytes_per_s / 1e6);
  if (raw && m.impl != Impl::raw)
    line += fmt::format(" {:>9.2f} {:>9.2f}", static_cast<double>(m.rtt_p50_ns) / static_cast<double>(raw->rtt_p50_ns),
                        m.msgs_per_s / raw->msgs_per_s);
  if (m.receivers > 1)  // msgs/s is per receiver; each got every message
    line += fmt::format("{}  {} receivers: {:.0f} msgs/s delivered in all", raw && m.impl != Impl::raw ? "" : std::string(20, ' '),
                        m.receivers, m.msgs_per_s * m.receivers);
  fmt::print("{}\n", line);
  all_.push_back(std::move(m));
  run_of_.push_back(run_);
  return flush_stdout();
}

Status Report::finish() {
  if (plan_.repeat < 2) return {};
  // Cells first, then columns as wide as their widest cell: ranges vary in width.
  std::vector<std::vector<std::string>> rows{{"mechanism", "impl", "size", "p50 (µs)", "p99 (µs)", "1-way p50", "msgs/s",
                                              "MB/s", "p50/raw", "tput/raw"}};
  auto cell = [](double med, double lo, double hi, int prec) {
    return fmt::format("{:.{}f} [{:.{}f}–{:.{}f}]", med, prec, lo, prec, hi, prec);
  };
  for (auto& s : summarize(all_, run_of_)) {
    std::vector<std::string> r{s.mechanism, std::string(to_string(s.impl)), std::to_string(s.size),
                               cell(us(s.median.rtt_p50_ns), us(s.min.rtt_p50_ns), us(s.max.rtt_p50_ns),
                                    us_digits(s.min.rtt_p50_ns)),
                               cell(us(s.median.rtt_p99_ns), us(s.min.rtt_p99_ns), us(s.max.rtt_p99_ns),
                                    us_digits(s.min.rtt_p99_ns)),
                               s.median.oneway_p50_ns > 0
                                   ? cell(us(s.median.oneway_p50_ns), us(s.min.oneway_p50_ns), us(s.max.oneway_p50_ns),
                                          us_digits(s.min.oneway_p50_ns))
                                   : std::string("-"),
                               cell(s.median.msgs_per_s, s.min.msgs_per_s, s.max.msgs_per_s, 0),
                               cell(s.median.bytes_per_s / 1e6, s.min.bytes_per_s / 1e6, s.max.bytes_per_s / 1e6, 1)};
    if (s.p50_vs_raw) {
      r.push_back(cell(s.p50_vs_raw->median, s.p50_vs_raw->min, s.p50_vs_raw->max, 2));
      r.push_back(cell(s.tput_vs_raw->median, s.tput_vs_raw->min, s.tput_vs_raw->max, 2));
    }
    rows.push_back(std::move(r));
  }
  std::vector<std::size_t> width(rows[0].size());
  for (auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], display_width(r[i]));
  fmt::print("median of {} runs [min–max]; ratios per run, to the raw row of the same run:\n", plan_.repeat);
  for (auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      auto pad = std::string(width[i] - display_width(r[i]), ' ');
      line += i ? " " : "";
      line += i < 2 ? r[i] + pad : pad + r[i];  // names left, figures right
    }
    fmt::print("{}\n", line.substr(0, line.find_last_not_of(' ') + 1));
  }
  return flush_stdout();
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec1, ec2;
  const auto ca = std::filesystem::weakly_canonical(a, ec1), cb = std::filesystem::weakly_canonical(b, ec2);
  return ec1 || ec2 ? a == b : ca == cb;
}

namespace {

// 0 when `file` can be written (in place, or created), else why not (an errno).
int output_errno(const std::string& file, int links) {
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return EISDIR;
    // Not opened: that would truncate it, or block on a FIFO. AT_EACCESS: as open() will check.
    return ::faccessat(AT_FDCWD, file.c_str(), W_OK, AT_EACCESS) == 0 ? 0 : errno;
  }
  if (errno != ENOENT) return errno;  // e.g. ENOTDIR, EACCES on the way
  if (::lstat(file.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    // A dangling symlink: the write will create its target, so that is what must be creatable.
    if (links >= 40) return ELOOP;
    std::error_code ec;
    auto target = std::filesystem::read_symlink(file, ec);
    if (ec) return ec.value();
    if (target.is_relative()) target = std::filesystem::path(file).parent_path() / target;
    return output_errno(target.string(), links + 1);
  }
  // Not there yet: create it to know that we can (its directory exists, is writable, not on a
  // read-only file system), then remove it until there are results to write.
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) return errno == EEXIST ? 0 : errno;  // EEXIST: made just now, the write will tell
  ::close(fd);
  ::unlink(file.c_str());
  return 0;
}

}  // namespace

std::expected<void, std::string> check_output_file(const std::string& file, std::string_view option) {
  if (int e = output_errno(file, 0); e != 0)
    return std::unexpected(fmt::format("cannot write {} {}: {}", option, file, std::strerror(e)));
  return {};
}

Status Report::write_json(const std::string& file) const {
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (auto& s : summarize(all_, run_of_)) {
    auto row = nlohmann::ordered_json{{"mechanism", s.mechanism}, {"impl", std::string(to_string(s.impl))}, {"size", s.size},
                              {"repeat", s.runs}};
    if (s.baseline != s.mechanism) row["baseline"] = s.baseline;  // ratios to this row's raw
    row["verified"] = s.verified;
    row.update(metrics_json(s.median));
    if (s.receivers > 1) {
      row["receivers"] = s.receivers;
      row["delivered_msgs_per_s"] = std::round(s.median.msgs_per_s * s.receivers * 10) / 10;
    }
    row["min"] = metrics_json(s.min);
    row["max"] = metrics_json(s.max);
    results.push_back(std::move(row));
  }
  nlohmann::ordered_json doc = {
      {"schema", 1},
      {"machine", machine_json(machine_)},
      {"args",
       {{"only", options_.only},
        {"mechanisms", mechanism_names(plan_)},
        {"sizes", plan_.sizes},
        {"impls", impl_names(plan_)},
        {"quick", options_.quick},
        {"repeat", plan_.repeat},
        {"rounds", plan_.rounds},
        {"warmup", plan_.warmup},
        {"bursts", plan_.bursts},
        {"stream_messages", plan_.stream_messages},
        {"stream_bytes", plan_.stream_bytes}}},
      {"results", std::move(results)},
  };
  auto skipped = nlohmann::ordered_json::array();
  for (auto& [mech, reason] : skipped_peers(plan_))
    skipped.push_back({{"mechanism", std::string(mech)}, {"impl", "peer"}, {"reason", std::string(reason)}});
  doc["skipped"] = std::move(skipped);
  std::ofstream out(file, std::ios::trunc);
  if (!out) return sys_error("open", file);
  out << doc.dump(2) << '\n';
  out.flush();
  if (!out) return fail(Errc::system, "write", file);
  return {};
}

Status Report::write_plot(const std::string& file) const {
  std::vector<Bar> bars;
  const auto summaries = summarize(all_, run_of_);
  for (auto g : kGroups)
    for (auto& s : summaries) {
      const auto* mech = find_mechanism(s.baseline);
      if (!mech || mech->group != g) continue;
      bars.push_back(Bar{.group = std::string(to_string(g)),
                         .label = fmt::format("{} {} {} B", s.mechanism, to_string(s.impl), s.size),
                         .rtt_ns = s.median.rtt_p50_ns,
                         .msgs_per_s = s.median.msgs_per_s});
    }
  const auto title = fmt::format("ipcx bench: round trip and messages/s{} ({}, {} CPUs)",
                                 plan_.repeat > 1 ? fmt::format(", median of {} runs", plan_.repeat) : "",
                                 machine_.cpu_model, machine_.cpus);
  return write_text_file(file, svg_chart(title, bars));
}

}  // namespace ipcx::bench
