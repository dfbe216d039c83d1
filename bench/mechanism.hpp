// The rows of the benchmark and their registry.
//
// A row is a mechanism measured up to three ways over the same kernel object: raw (bare system
// calls: the baseline), ipcx (the public API) and peer (another IPC library). Each family of rows
// lives in one rows_<family>.cpp holding its setups and a table; adding a row is one entry in
// that table, adding a family is one file plus one line in mechanism.cpp. docs/bench.md.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "bench/setup.hpp"

namespace ipcx::bench {

enum class Impl { raw, ipcx, peer };
inline constexpr Impl kImpls[] = {Impl::raw, Impl::ipcx, Impl::peer};  // measured in this order
std::string_view to_string(Impl impl) noexcept;
std::optional<Impl> impl_from_string(std::string_view s) noexcept;

// How textbooks group the mechanisms: the tour's sections, in this order.
enum class Group { message_passing, shared_memory, synchronisation, signals, rpc, brokers };
inline constexpr Group kGroups[] = {Group::message_passing, Group::shared_memory, Group::synchronisation,
                                    Group::signals,         Group::rpc,           Group::brokers};
std::string_view to_string(Group g) noexcept;

struct Mechanism {
  std::string_view name;
  Group group;               // where `ipcx tour` shows it
  std::string_view purpose;  // what it is for, in one line (the tour prints it)
  MakeSetup raw = nullptr;   // absent: the row has no such measurement
  MakeSetup ipcx = nullptr;
  MakeSetup peer = nullptr;
  // Set: the one payload size that makes sense (ignores --sizes); 0 for rows that carry no
  // payload (locks, semaphores).
  std::optional<std::size_t> fixed_size;
  // Set when this build left the peer measurement out: why (printed, and listed in the JSON).
  std::string_view peer_skipped;
  // Signals both processes must block before the first one is sent (rows that talk by signal).
  std::vector<int> (*signals)() = nullptr;
  // Echo children per measurement: more than one for a fan-out row (its receivers), at most
  // WatchedChildren::kMax.
  int children = 1;
  // Set: the peer measurement is reported as a row of this name (e.g. "zmq-ipc"), with its
  // ratios to this row's raw measurement; --only accepts either name.
  std::string_view peer_row;
  // Sizes below this are measured at this size (rows whose messages carry a sequence number).
  std::size_t min_size = 0;
  // Set: the largest message the mechanism carries on this machine (a kernel limit); larger
  // sizes are measured at that size.
  std::size_t (*max_size)() = nullptr;
  // Set: the ipcx and peer measurements hand the payload over by reference (zero-copy) rather
  // than copy it: their throughput bursts are not shortened for large sizes (the byte cap keeps
  // copying rows' bursts short; here it would leave a handful of messages and time the ack).
  bool handover = false;

  MakeSetup setup(Impl impl) const noexcept;
  // The name a measurement of `impl` is reported under.
  std::string_view row_name(Impl impl) const noexcept { return impl == Impl::peer && !peer_row.empty() ? peer_row : name; }
  std::vector<int> blocked_signals() const { return signals ? signals() : std::vector<int>{}; }
};

// The families, one per rows_*.cpp.
std::span<const Mechanism> pipe_rows();
std::span<const Mechanism> socket_rows();
std::span<const Mechanism> signal_rows();
std::span<const Mechanism> sync_rows();
std::span<const Mechanism> pattern_rows();
std::span<const Mechanism> mq_rows();
std::span<const Mechanism> sysv_rows();
std::span<const Mechanism> shm_rows();
std::span<const Mechanism> zerocopy_rows();
std::span<const Mechanism> rpc_rows();
std::span<const Mechanism> broker_rows();

// Every row, in table order.
const std::vector<const Mechanism*>& mechanisms();
// By name (or, with peer_rows, also by peer_row name).
const Mechanism* find_mechanism(std::string_view name, bool peer_rows = false);

}  // namespace ipcx::bench
