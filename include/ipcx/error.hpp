// ipcx error model: every fallible call returns ipcx::Result<T>.
#pragma once

#include <expected>
#include <string>
#include <string_view>

namespace ipcx {

// One error enum for the whole library; areas use disjoint ranges of meaning, not of values.
enum class Errc {
  timeout = 1,         // a deadline passed before the operation could complete
  would_block,         // a non-blocking call (try_*) could not proceed right now
  closed,              // the peer closed the connection (orderly EOF) or the endpoint is closed
  connection_refused,  // nobody is listening at that address
  address_in_use,      // a live server already owns the address
  invalid_argument,    // the caller passed something unusable
  invalid_url,         // the URL could not be parsed
  unknown_scheme,      // no transport is registered for the URL's scheme
  not_supported,       // the transport cannot do this (e.g. fd passing over TCP)
  too_large,           // a message exceeds the configured maximum
  protocol,            // the peer sent bytes that are not a valid frame
  permission_denied,   // the kernel refused (EACCES/EPERM) or an object has unsafe ownership
  not_found,           // a named object does not exist
  already_exists,      // creating a named object that is already there (O_EXCL)
  resource_exhausted,  // a limit was reached: descriptors (EMFILE), memory, a configured cap
  owner_died,          // the previous holder of a lock died holding it; the guarded data may be broken
  not_recoverable,     // a lock whose dead owner's data was never repaired: unusable until re-created
  peer_died,           // a process the operation waited for died (e.g. a barrier member)
  type_mismatch,       // a named object exists with another type, size or layout version
  system,              // any other OS error; see Error::sys_errno
};

std::string_view to_string(Errc code) noexcept;

struct Error {
  Errc code{Errc::system};
  int sys_errno = 0;        // errno when the error came from the kernel, else 0
  const char* op = "";      // the operation that failed (static string, no allocation)
  std::string detail;       // optional context (a path, a length); empty on hot paths

  // One human line: "op: description (detail): strerror".
  std::string message() const;
};

template <class T>
using Result = std::expected<T, Error>;

// Builders used throughout the library.
inline std::unexpected<Error> fail(Errc code, const char* op, std::string detail = {}) {
  return std::unexpected(Error{code, 0, op, std::move(detail)});
}
// Maps an errno value to the closest Errc (the one place where this mapping lives).
Errc errc_from_errno(int err) noexcept;
std::unexpected<Error> fail_errno(int err, const char* op, std::string detail = {});

}  // namespace ipcx
