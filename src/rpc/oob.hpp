// Out-of-band payloads: a message written into a memfd, sealed so that it can no longer
// change, and passed with SCM_RIGHTS; the receiver maps it read-only (Payload::map_sealed).
#pragma once

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/rpc.hpp>

#include <vector>

namespace ipcx::rpc::oob {

// A memfd holding `body`, sealed against writing, growing, shrinking and further seals.
// Errors: resource_exhausted (no memory for it), and the system calls'.
Result<Fd> make_sealed(const Body& body);

}  // namespace ipcx::rpc::oob

namespace ipcx::rpc::buffers {

// A message buffer kept from an earlier message (empty if none): its pages are already there.
std::vector<std::byte> take();
// Keeps `v`'s memory for a later take() (buffers of 64 KiB to 32 MiB, 32 MiB in all; others
// are freed).
void give(std::vector<std::byte>&& v) noexcept;

}  // namespace ipcx::rpc::buffers
