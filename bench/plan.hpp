// What a run measures, from the command's options: rows, sizes, counts.
#pragma once

#include <cstddef>
#include <expected>
#include <string>
#include <vector>

#include "bench/bench.hpp"
#include "bench/mechanism.hpp"

namespace ipcx::bench {

// One measurement's counts.
struct Work {
  std::size_t size;
  int warmup, rounds;
  std::size_t messages;  // per throughput burst
  int bursts;            // throughput is the best of this many: capacity, not a neighbour's load
};

struct Plan {
  int rounds = 20000;
  int warmup = 2000;
  std::size_t stream_messages = 100000;  // throughput burst...
  std::size_t stream_bytes = 64u << 20;  // ...capped at this many payload bytes
  int bursts = 5;
  std::vector<std::size_t> sizes{64, 4096, 65536};
  int repeat = 1;
  std::vector<const Mechanism*> mechanisms;
  std::vector<Impl> impls{kImpls[0], kImpls[1], kImpls[2]};  // measured, in this order

  bool measures(Impl impl) const;

  std::vector<std::size_t> sizes_for(const Mechanism& m) const;
  // A burst is stream_messages long, or shorter so as to carry at most stream_bytes when
  // `byte_cap` (rows that copy the payload; see Mechanism::handover).
  Work work(std::size_t size, bool byte_cap = true) const;
};

inline constexpr std::size_t kMaxSize = std::size_t{64} << 20;  // ipcx's default Options::max_message
inline constexpr long kMaxRepeat = 100;
inline constexpr long kMaxRounds = 10'000'000;  // one 8-byte sample per round trip

// The plan, or the one line explaining why the options are unusable.
std::expected<Plan, std::string> make_plan(const Options& options);

}  // namespace ipcx::bench
