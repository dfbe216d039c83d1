#include "bench/bench.hpp"

#include <csignal>
#include <cstdio>

#include <fmt/format.h>

#include "bench/harness.hpp"
#include "bench/machine.hpp"
#include "bench/plan.hpp"
#include "bench/report.hpp"
#include "bench/session.hpp"

namespace ipcx::bench {
namespace {

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
  }
  return "a signal";
}

// std::fprintf, not fmt::print: a failed write (a hung-up terminal) must not change the exit code.
int complain(const std::string& what, int code) {
  std::fprintf(stderr, "ipcx bench: %s\n", what.c_str());
  return code;
}

int run_plan(const Options& options, const Plan& plan) {
  Session session;  // restores signals and affinity on every return below
  auto dir = start_run(session, plan.mechanisms);
  if (!dir) return complain(dir.error().message(), 1);

  Report report(options, plan, machine_facts(session.allowed_cpus(), session.parent_cpu(), session.child_cpu()));
  if (auto r = report.begin(); !r) return complain(r.error().message(), 1);
  for (int run = 0; run < plan.repeat; ++run) {
    if (auto r = report.start_run(run); !r) return complain(r.error().message(), 1);
    for (auto* mech : plan.mechanisms) {
      for (auto size : plan.sizes_for(*mech)) {
        for (auto impl : kImpls) {  // interleaved: noise hits raw and ipcx alike
          if (!mech->setup(impl) || !plan.measures(impl)) continue;
          const auto work = plan.work(size, !(mech->handover && impl != Impl::raw));
          auto m = interrupted() ? std::unexpected(std::string()) : measure(*mech, impl, work, session, *dir);
          if (int sig = interrupted())
            return complain(fmt::format("interrupted by {}", signal_name(sig)), 128 + sig);
          if (!m) return complain(m.error(), 1);
          if (auto r = report.add(std::move(*m)); !r) return complain(r.error().message(), 1);
        }
      }
    }
  }
  if (auto r = report.finish(); !r) return complain(r.error().message(), 1);
  if (!options.json.empty())
    if (auto r = report.write_json(options.json); !r) return complain(r.error().message(), 1);
  if (!options.plot.empty()) {
    if (auto r = report.write_plot(options.plot); !r) return complain(r.error().message(), 1);
    fmt::print("chart: {}\n", options.plot);
  }
  return 0;
}

}  // namespace

int run(const Options& options) {
  auto plan = make_plan(options);
  if (!plan) return complain(plan.error(), 2);
  if (!options.json.empty())  // before measuring: a run is too long to lose at the end
    if (auto r = check_output_file(options.json, "--json"); !r) return complain(r.error(), 2);
  if (!options.plot.empty()) {
    if (auto r = check_output_file(options.plot, "--plot"); !r) return complain(r.error(), 2);
    if (!options.json.empty() && same_file(options.plot, options.json))
      return complain(fmt::format("--plot and --json name the same file ({}): one would be lost", options.plot), 2);
  }
  try {
    return run_plan(options, *plan);  // every early return has killed and reaped its child, removed its files
  } catch (const std::exception& e) {  // e.g. fmt's system_error when stdout is a closed pipe
    std::fprintf(stderr, "ipcx bench: %s\n", e.what());
    return 1;
  }
}

}  // namespace ipcx::bench
