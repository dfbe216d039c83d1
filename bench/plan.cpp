#include "bench/plan.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace ipcx::bench {

std::vector<std::size_t> Plan::sizes_for(const Mechanism& m) const {
  if (m.fixed_size) return {*m.fixed_size};
  std::vector<std::size_t> out;
  for (auto s : sizes) {
    s = std::max(s, m.min_size);
    if (m.max_size) s = std::min(s, m.max_size());
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

bool Plan::measures(Impl impl) const { return std::find(impls.begin(), impls.end(), impl) != impls.end(); }

Work Plan::work(std::size_t size, bool byte_cap) const {
  auto messages = size && byte_cap ? std::max<std::size_t>(std::min(stream_messages, stream_bytes / size), 8) : stream_messages;
  return Work{.size = size, .warmup = warmup, .rounds = rounds, .messages = messages, .bursts = bursts};
}

std::expected<Plan, std::string> make_plan(const Options& o) {
  Plan plan;
  for (auto& name : o.only) {
    if (find_mechanism(name, true)) continue;
    std::string known;
    for (auto* m : mechanisms()) known += fmt::format("{}{}", known.empty() ? "" : ",", m->name);
    return std::unexpected(fmt::format("unknown mechanism '{}' (known: {})", name, known));
  }
  for (auto* m : mechanisms())
    if (o.only.empty() || std::any_of(o.only.begin(), o.only.end(), [&](auto& n) { return find_mechanism(n, true) == m; }))
      plan.mechanisms.push_back(m);

  if (!o.impls.empty()) {
    plan.impls.clear();
    for (auto i : kImpls)
      if (std::find(o.impls.begin(), o.impls.end(), to_string(i)) != o.impls.end()) plan.impls.push_back(i);
    for (auto& name : o.impls)
      if (!impl_from_string(name)) return std::unexpected(fmt::format("unknown impl '{}' (known: raw,ipcx,peer)", name));
  }

  if (o.repeat < 1 || o.repeat > kMaxRepeat)
    return std::unexpected(fmt::format("--repeat must be in 1..{}, not {}", kMaxRepeat, o.repeat));
  plan.repeat = static_cast<int>(o.repeat);
  if (o.rounds && (*o.rounds < 1 || *o.rounds > kMaxRounds))
    return std::unexpected(fmt::format("--rounds must be in 1..{}, not {}", kMaxRounds, *o.rounds));
  for (auto s : o.sizes)
    if (s == 0 || s > kMaxSize) return std::unexpected(fmt::format("size {} outside 1..{} bytes", s, kMaxSize));
  if (!o.sizes.empty()) plan.sizes = o.sizes;

  // --quick and --rounds scale every count alike, so a short run keeps the default run's shape.
  constexpr double kQuick = 20;
  double scale = o.quick ? 1 / kQuick : 1;
  if (o.rounds) scale = static_cast<double>(*o.rounds) / plan.rounds;
  plan.rounds = std::max(1, static_cast<int>(std::lround(plan.rounds * scale)));
  plan.warmup = std::max(10, plan.rounds / 10);
  plan.stream_messages =
      std::max<std::size_t>(100, static_cast<std::size_t>(std::llround(static_cast<double>(plan.stream_messages) * scale)));
  plan.stream_bytes =
      std::max<std::size_t>(1u << 20, static_cast<std::size_t>(static_cast<double>(plan.stream_bytes) * scale));
  if (o.quick) plan.bursts = 3;
  return plan;
}

}  // namespace ipcx::bench
