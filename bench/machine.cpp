#include "bench/machine.hpp"

#include <charconv>
#include <fstream>

#include <sys/utsname.h>

#include <fmt/format.h>

namespace ipcx::bench {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0) continue;
    auto key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    // x86 says "model name"; arm64 and others say "Model" or "cpu model".
    if (key == "model name" || key == "Model" || key == "cpu model") {
      auto v = line.substr(std::min(colon + 2, line.size()));
      if (!v.empty()) return v;
    }
  }
  return "unknown";
}

bool parse_int(std::string_view s, int& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

bool cpu_list_contains(std::string_view list, int cpu) {
  while (!list.empty() && (list.back() == '\n' || list.back() == ' ')) list.remove_suffix(1);
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    auto dash = item.find('-');
    int lo = 0, hi = 0;
    if (dash == std::string_view::npos) {
      if (!parse_int(item, lo)) return false;
      hi = lo;
    } else if (!parse_int(item.substr(0, dash), lo) || !parse_int(item.substr(dash + 1), hi)) {
      return false;
    }
    if (lo <= cpu && cpu <= hi) return true;
  }
  return false;
}

Machine machine_facts(int cpus, int parent_cpu, int child_cpu) {
  Machine m;
  m.cpu_model = cpu_model();
  m.cpus = cpus;
  utsname u{};
  if (::uname(&u) == 0) m.kernel = u.release;
  m.pinned[0] = parent_cpu;
  m.pinned[1] = child_cpu;
  if (parent_cpu != child_cpu) {
    std::ifstream in(fmt::format("/sys/devices/system/cpu/cpu{}/topology/thread_siblings_list", parent_cpu));
    std::string list;
    if (std::getline(in, list)) m.smt_siblings = cpu_list_contains(list, child_cpu);
  }
  return m;
}

}  // namespace ipcx::bench
