// Out-of-band payloads: a message written into a memfd, sealed so that it can no longer
// change, and passed with SCM_RIGHTS; the receiver maps it read-only (Payload::map_sealed).
#pragma once

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/rpc.hpp>

namespace ipcx::rpc::oob {

// A memfd holding `body`, sealed against writing, growing, shrinking and further seals.
// Errors: resource_exhausted (no memory for it), and the system calls'.
Result<Fd> make_sealed(const Body& body);

}  // namespace ipcx::rpc::oob
