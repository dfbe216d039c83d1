// The command line of `ipcx bench` and of the hidden `__bench-echo` its echo children run: the
// child's argv is built and parsed here, side by side, so the two cannot drift apart.
#include <charconv>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bench/bench.hpp"
#include "bench/harness.hpp"
#include "bench/tour.hpp"

namespace ipcx::bench {
namespace {

constexpr const char* kEchoCommand = "__bench-echo";

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto c = s.find(',', start);
    if (c == std::string::npos) c = s.size();
    if (c > start) out.push_back(s.substr(start, c - start));
    start = c + 1;
  }
  return out;
}

template <class T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Flags are taken as text and converted here, so that every unusable value is one line and
// exit code 2, like the range checks make_plan() does.
struct BenchFlags {
  std::string only, sizes, rounds, repeat, impls;
  bool only_given = false, sizes_given = false, json_given = false, impls_given = false,  // given empty is not the default
       plot_given = false;
  Options options;

  std::expected<Options, std::string> parse() const {
    Options o = options;
    o.only = split_commas(only);
    if (only_given && o.only.empty())
      return std::unexpected(fmt::format("--only wants at least one mechanism (comma-separated), not '{}'", only));
    auto size_list = split_commas(sizes);
    if (sizes_given && size_list.empty())
      return std::unexpected(fmt::format("--sizes wants at least one size in bytes (comma-separated), not '{}'", sizes));
    if (json_given && o.json.empty()) return std::unexpected(std::string("--json wants a file name, not ''"));
    if (plot_given && o.plot.empty()) return std::unexpected(std::string("--plot wants a file name, not ''"));
    o.impls = split_commas(impls);
    if (impls_given && o.impls.empty())
      return std::unexpected(fmt::format("--impls wants at least one of raw,ipcx,peer (comma-separated), not '{}'", impls));
    for (auto& s : size_list) {
      auto v = parse_number<std::size_t>(s);
      if (!v) return std::unexpected(fmt::format("bad size '{}' (bytes, comma-separated)", s));
      o.sizes.push_back(*v);
    }
    if (!rounds.empty()) {
      o.rounds = parse_number<long>(rounds);
      if (!o.rounds) return std::unexpected(fmt::format("--rounds wants a number, not '{}'", rounds));
    }
    if (!repeat.empty()) {
      auto v = parse_number<long>(repeat);
      if (!v) return std::unexpected(fmt::format("--repeat wants a number, not '{}'", repeat));
      o.repeat = *v;
    }
    return o;
  }
};

struct EchoFlags {
  EchoArgs args;
  std::string fds;
};

}  // namespace

std::vector<std::string> echo_argv(const EchoArgs& a) {
  std::vector<std::string> argv{"/proc/self/exe", kEchoCommand,
                                "--mechanism", a.mechanism,
                                "--impl", a.impl,
                                "--size", std::to_string(a.work.size),
                                "--warmup", std::to_string(a.work.warmup),
                                "--rounds", std::to_string(a.work.rounds),
                                "--messages", std::to_string(a.work.messages),
                                "--bursts", std::to_string(a.work.bursts),
                                "--cpu", std::to_string(a.cpu),
                                "--parent", std::to_string(a.parent),
                                "--control-fd", std::to_string(a.control_fd),
                                "--path", a.path};
  if (!a.fds.empty()) {
    argv.push_back("--fds");
    argv.push_back(fmt::format("{}", fmt::join(a.fds, ",")));
  }
  return argv;
}

std::function<std::optional<int>()> add_commands(CLI::App& app) {
  auto bench = std::make_shared<BenchFlags>();
  auto* bench_cmd = app.add_subcommand("bench", "Round-trip latency and throughput per mechanism, ipcx vs raw");
  std::string names;
  for (auto* m : mechanisms()) names += fmt::format("{}{}", names.empty() ? "" : ",", m->name);
  bench_cmd->add_option("--only", bench->only, "Mechanisms, comma-separated: " + names)->type_name("LIST");
  bench_cmd->add_option("--sizes", bench->sizes, "Payload sizes in bytes, comma-separated (default 64,4096,65536)")
      ->type_name("LIST");
  bench_cmd->add_option("--impls", bench->impls, "Ways to measure, comma-separated: raw,ipcx,peer (default all)")
      ->type_name("LIST");
  bench_cmd->add_option("--rounds", bench->rounds, "Round trips per measurement (default 20000)")->type_name("N");
  bench_cmd->add_option("--repeat", bench->repeat, "Whole runs (1-100); the table shows median [min–max]")
      ->type_name("N");
  bench_cmd->add_flag("--quick", bench->options.quick, "Fewer rounds (a smoke run)");
  bench_cmd->add_option("--json", bench->options.json, "Also write the results as JSON to FILE")->type_name("FILE");
  bench_cmd->add_option("--plot", bench->options.plot, "Also draw the results as an SVG chart in FILE (docs/bench.md)")
      ->type_name("FILE");

  auto tour = std::make_shared<TourOptions>();
  auto* tour_cmd = app.add_subcommand(
      "tour", "Every mechanism between two processes: what each is for and costs, checked, charted (under a minute)");
  auto tour_only = std::make_shared<std::string>();
  std::string ipcx_names;
  for (auto* m : mechanisms())
    if (m->ipcx) ipcx_names += fmt::format("{}{}", ipcx_names.empty() ? "" : ",", m->name);
  tour_cmd->add_option("--only", *tour_only, "Mechanisms, comma-separated: " + ipcx_names + " (default all)")
      ->type_name("LIST");
  tour_cmd->add_flag("--quick", tour->quick, "Far fewer rounds (a smoke run, a few seconds)");
  tour_cmd->add_option("--svg", tour->svg, "Where the chart goes (default ipcx-tour.svg)")->type_name("FILE");
  tour_cmd->add_option("--json", tour->json, "Also write the rows as JSON to FILE")->type_name("FILE");

  auto echo = std::make_shared<EchoFlags>();
  auto& a = echo->args;
  auto* echo_cmd = app.add_subcommand(kEchoCommand, "The echo child of one `ipcx bench` measurement");
  echo_cmd->group("");  // internal: not in --help
  echo_cmd->add_option("--mechanism", a.mechanism)->required();
  echo_cmd->add_option("--impl", a.impl)->required();
  echo_cmd->add_option("--size", a.work.size)->required();
  echo_cmd->add_option("--warmup", a.work.warmup)->required();
  echo_cmd->add_option("--rounds", a.work.rounds)->required();
  echo_cmd->add_option("--messages", a.work.messages)->required();
  echo_cmd->add_option("--bursts", a.work.bursts)->required();
  echo_cmd->add_option("--cpu", a.cpu)->required();
  echo_cmd->add_option("--parent", a.parent)->required();
  echo_cmd->add_option("--control-fd", a.control_fd)->required();
  echo_cmd->add_option("--path", a.path)->required();
  echo_cmd->add_option("--fds", echo->fds);

  return [bench, bench_cmd, tour, tour_cmd, tour_only, echo, echo_cmd]() -> std::optional<int> {
    if (*tour_cmd) {
      tour->only = split_commas(*tour_only);
      if (tour_cmd->count("--only") > 0 && tour->only.empty()) {
        fmt::print(stderr, "ipcx tour: --only wants at least one mechanism (comma-separated), not '{}'\n", *tour_only);
        return 2;
      }
      if (tour_cmd->count("--json") > 0 && tour->json.empty()) {
        fmt::print(stderr, "ipcx tour: --json wants a file name, not ''\n");
        return 2;
      }
      return run_tour(*tour);
    }
    if (*bench_cmd) {
      bench->only_given = bench_cmd->count("--only") > 0;
      bench->sizes_given = bench_cmd->count("--sizes") > 0;
      bench->json_given = bench_cmd->count("--json") > 0;
      bench->plot_given = bench_cmd->count("--plot") > 0;
      bench->impls_given = bench_cmd->count("--impls") > 0;
      auto o = bench->parse();
      if (!o) {
        fmt::print(stderr, "ipcx bench: {}\n", o.error());
        return 2;
      }
      return run(*o);
    }
    if (*echo_cmd) {
      for (auto& s : split_commas(echo->fds)) {
        auto fd = parse_number<int>(s);
        if (!fd) return 2;
        echo->args.fds.push_back(*fd);
      }
      return run_echo(echo->args);
    }
    return std::nullopt;
  };
}

}  // namespace ipcx::bench
