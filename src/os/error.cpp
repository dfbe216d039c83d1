#include <ipcx/error.hpp>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace ipcx {

std::string_view to_string(Errc code) noexcept {
  switch (code) {
    case Errc::timeout: return "timed out";
    case Errc::would_block: return "would block";
    case Errc::closed: return "connection closed";
    case Errc::connection_refused: return "connection refused";
    case Errc::address_in_use: return "address in use";
    case Errc::invalid_argument: return "invalid argument";
    case Errc::invalid_url: return "invalid URL";
    case Errc::unknown_scheme: return "unknown URL scheme";
    case Errc::not_supported: return "not supported";
    case Errc::too_large: return "message too large";
    case Errc::protocol: return "protocol error";
    case Errc::permission_denied: return "permission denied";
    case Errc::not_found: return "not found";
    case Errc::already_exists: return "already exists";
    case Errc::resource_exhausted: return "resource exhausted";
    case Errc::owner_died: return "previous owner died holding the lock";
    case Errc::not_recoverable: return "lock not recoverable (a dead owner's data was never repaired)";
    case Errc::peer_died: return "a peer process died";
    case Errc::type_mismatch: return "object has another type or layout";
    case Errc::system: return "system error";
  }
  return "unknown error";
}

std::string Error::message() const {
  std::string out;
  if (op && *op) out = fmt::format("{}: ", op);
  out += to_string(code);
  if (!detail.empty()) out += fmt::format(" ({})", detail);
  if (sys_errno != 0) {
    char buf[128];
    out += fmt::format(": {}", strerror_r(sys_errno, buf, sizeof buf));
  }
  return out;
}

Errc errc_from_errno(int err) noexcept {
  switch (err) {
    case ETIMEDOUT: return Errc::timeout;
    case EAGAIN: return Errc::would_block;
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
    case ESHUTDOWN: return Errc::closed;
    case ECONNREFUSED:
    case ENXIO: return Errc::connection_refused;  // FIFO without a reader
    case EADDRINUSE: return Errc::address_in_use;
    case EINVAL:
    case EBADF: return Errc::invalid_argument;
    case EMSGSIZE: return Errc::too_large;
    case EACCES:
    case EPERM: return Errc::permission_denied;
    case EEXIST: return Errc::already_exists;
    case ENOENT:
    case ESRCH: return Errc::not_found;
    case EOPNOTSUPP: return Errc::not_supported;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM: return Errc::resource_exhausted;
    case EOWNERDEAD: return Errc::owner_died;
    case ENOTRECOVERABLE: return Errc::not_recoverable;
    default: return Errc::system;
  }
}

std::unexpected<Error> fail_errno(int err, const char* op, std::string detail) {
  return std::unexpected(Error{errc_from_errno(err), err, op, std::move(detail)});
}

}  // namespace ipcx
