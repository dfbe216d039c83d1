// Asymmetric memory barriers (membarrier(2)): a side that rarely waits pays for a barrier on
// every CPU, so that the side that runs hot needs only a compiler barrier.
#pragma once

namespace ipcx::os {

// Registers this process for expedited global barriers, once; true when the kernel offers them
// (Linux 4.16+, and not refused by a seccomp filter). Until it returns true, use fences.
bool asymmetric_barriers() noexcept;
// A full memory barrier on every CPU that runs a thread of a registered process (this one
// included). Only valid after asymmetric_barriers() returned true.
void heavy_barrier() noexcept;

// The same within this process only (cheaper: it reaches only CPUs running our threads), for
// guards shared by the threads of one process. False when the kernel does not offer it.
bool private_barriers() noexcept;
void heavy_barrier_private() noexcept;

}  // namespace ipcx::os
