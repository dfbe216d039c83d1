// One measurement: an echo child started as `ipcx __bench-echo ...`, pinned to the other CPU,
// answering `warmup + rounds` ping-pongs (timed per round trip), then `bursts` one-way bursts
// of `messages` messages, each answered with one ack. A fan-out row starts several echo
// children, all pinned to that CPU; its channel reaches all of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <vector>

#include <sys/types.h>

#include "bench/mechanism.hpp"
#include "bench/plan.hpp"
#include "bench/session.hpp"

namespace ipcx::bench {

struct Measurement {
  std::string mechanism;  // the row's name (Mechanism::row_name)
  std::string baseline;   // the row whose raw measurement the ratios compare with
  int receivers = 1;      // a fan-out row: msgs_per_s is per receiver, each got every message
  Impl impl;
  std::size_t size;
  std::uint64_t rtt_p50_ns, rtt_p99_ns;
  // One way, parent to echo child: from just before the parent's send to just after the child's
  // receive, both on CLOCK_MONOTONIC (0: not measured, as for self-timed and fan-out rows).
  std::uint64_t oneway_p50_ns = 0, oneway_p99_ns = 0;
  double msgs_per_s, bytes_per_s;
  // How the messages were checked: "content" (the verify rounds compared every byte each way,
  // or the leading bytes a zero-copy channel writes), "stamps" (the channel stamps and checks
  // every message itself), "no payload" (locks, semaphores), "none" (the channel keeps nothing
  // to compare).
  std::string verified;
};

// Round trips before the timed ones whose payload differs from round to round and way to way;
// each side compares what arrived with what was sent (Channel::received()).
inline constexpr int kVerifyRounds = 64;

// The parent's side: starts the child, measures, reaps it. Any failure is one line naming the
// measurement (and what the child said, if it said anything).
std::expected<Measurement, std::string> measure(const Mechanism& mech, Impl impl, const Work& work,
                                                const Session& session, const RunDir& dir);

// A run's start, for the bench and the tour alike: its run directory made, the parent pinned,
// and the signals of every selected row blocked (`session` restores both when it goes).
Result<RunDir> start_run(Session& session, const std::vector<const Mechanism*>& mechanisms);

// What the echo child is told on its command line.
struct EchoArgs {
  std::string mechanism;
  std::string impl;
  Work work{};
  int cpu = 0;
  pid_t parent = 0;  // the child exits at once if its parent is not (or no longer) this one
  int control_fd = -1;
  std::string path;      // RunCtx::path
  std::vector<int> fds;  // RunCtx::inherited
};

// The child's command line, and the child itself (the hidden `__bench-echo` subcommand).
std::vector<std::string> echo_argv(const EchoArgs& args);
int run_echo(const EchoArgs& args);

}  // namespace ipcx::bench
