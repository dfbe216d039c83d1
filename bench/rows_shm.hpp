// What the shared-memory rows (bench/rows_shm.cpp) lend to other rows.
#pragma once

#include <memory>
#include <string>

#include "bench/setup.hpp"

namespace ipcx::bench {

// An shm:// name of the measurement's own (names are 1 to 64 of letters, digits, . _ - /),
// derived from its unique path, which the parent and the echo child both know.
std::string shm_name(const RunCtx& c);

// The shm row's raw measurement: two single-producer rings in a shared mapping, both sides
// busy-polling (the cost of two cores passing a cache line, and the copies).
std::unique_ptr<Setup> raw_spin_ring(const RunCtx& c);

}  // namespace ipcx::bench
