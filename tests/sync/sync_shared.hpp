// The shared-memory layouts the multi-process sync tests and their worker (sync_worker.cpp)
// agree on. Plain data, atomics and ipcx sync objects only: no pointers.
#pragma once

#include <atomic>
#include <cstdint>

#include <ipcx/sync.hpp>

namespace ipcx::test::sync {

// Mutex torture: workers take the lock, write `a`, pause, write `b = a`.
struct Torture {
  explicit Torture(Spin spin) : m(Mutex::Options{.spin = spin}) {}
  Mutex m;
  std::uint64_t a = 0, b = 0;  // under m
  std::atomic<std::uint64_t> acquisitions{0};
  std::atomic<std::uint64_t> owner_died_seen{0};
  std::atomic<std::uint64_t> repairs{0};          // owner_died() and a != b: a kill landed mid-write
  std::atomic<std::uint64_t> torn_unreported{0};  // a != b without owner_died(): the lock failed
  std::atomic<std::uint64_t> not_recoverable{0};
  std::atomic<std::uint64_t> other_errors{0};
  std::atomic<std::uint32_t> stop{0};
};

// A one-slot buffer between producers and consumers (Mutex + two CondVars).
struct Handoff {
  explicit Handoff(Spin spin) : m(Mutex::Options{.spin = spin}), not_full({.spin = spin}), not_empty({.spin = spin}) {}
  Mutex m;
  CondVar not_full, not_empty;
  bool full = false;       // under m
  std::uint64_t item = 0;  // under m
  std::uint64_t taken = 0, sum = 0;  // under m
  std::atomic<std::uint64_t> progress{0};  // hand-offs so far (for the watchdog)
  std::atomic<std::uint64_t> errors{0};
};

// The same over a Monitor.
struct Slot {
  bool full = false;
  std::uint64_t item = 0;
  std::uint64_t taken = 0, sum = 0;
};
struct MonitorHandoff {
  Monitor<Slot> mon;
  std::atomic<std::uint64_t> progress{0};
  std::atomic<std::uint64_t> errors{0};
};

struct Sem {
  explicit Sem(Spin spin) : sem({.initial = 0, .spin = spin}) {}
  Semaphore sem;
  std::atomic<std::uint64_t> posted{0}, taken{0};
  std::atomic<std::uint32_t> waiting{0};  // a waiter is about to block
  std::atomic<std::uint64_t> errors{0};
};

struct Rw {
  RwLock rw;
  std::uint64_t x = 0, y = 0;  // written under the write lock, x then y
  std::atomic<std::int32_t> readers_inside{0};
  std::atomic<std::int32_t> max_readers_inside{0};
  std::atomic<std::int32_t> writer_inside{0};
  std::atomic<std::uint64_t> reads{0}, writes{0};
  std::atomic<std::uint64_t> violations{0};  // a reader beside a writer, or a torn read
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint32_t> holding{0};     // a hold-* worker has its lock
  std::atomic<std::uint32_t> stop{0};
};

struct Bar {
  explicit Bar(std::uint32_t parties) : b({.parties = parties}) {}
  Barrier b;
  std::atomic<std::uint32_t> joined{0};
  std::atomic<std::uint32_t> arriving{0};
  std::atomic<std::uint32_t> peer_died{0};   // arrivals that returned peer_died
  std::atomic<std::uint32_t> other_errors{0};
  std::atomic<std::uint32_t> go{0};          // survivors may start the next phases
  std::atomic<std::uint32_t> serial{0};      // arrivals that returned true (one per phase)
  std::atomic<std::uint32_t> phases_done{0}; // completed phases, summed over members
  std::atomic<std::uint32_t> finished{0};
};

struct MonState {
  std::uint64_t a = 0, b = 0;
};
struct Mon {
  Monitor<MonState> mon;
  std::atomic<std::uint32_t> inside{0};
};

}  // namespace ipcx::test::sync
