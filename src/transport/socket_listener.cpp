#include "transport/socket_listener.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

namespace ipcx::transport {

SocketListener::SocketListener(Fd fd, std::string url, std::string owned_path, MakeConnection make)
    : fd_(std::move(fd)), url_(std::move(url)), owned_path_(std::move(owned_path)), make_(std::move(make)) {
  struct stat st {};
  if (!owned_path_.empty() && ::lstat(owned_path_.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
}

void SocketListener::close() noexcept {
  if (!fd_.valid()) return;
  struct stat st {};
  // Only remove the file if it is still ours: a later server may have replaced it.
  if (!owned_path_.empty() && ::lstat(owned_path_.c_str(), &st) == 0 && st.st_dev == dev_ &&
      st.st_ino == ino_)
    ::unlink(owned_path_.c_str());
  fd_.reset();
}

Result<std::unique_ptr<ConnectionImpl>> SocketListener::accept(const os::Deadline& deadline) {
  if (!fd_.valid()) return fail(Errc::closed, "accept", "listener closed");
  for (;;) {
    int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) return make_(Fd(c));
    int err = errno;
    // accept(2): these are the pending connection's network errors, not the listener's.
    if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == ENETDOWN || err == ENOPROTOOPT ||
        err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH || err == ENETUNREACH)
      continue;
    if (err == EAGAIN) {
      if (deadline.immediate()) return fail(Errc::would_block, "accept");
      if (auto w = os::wait_fd(fd_.get(), POLLIN, deadline); !w) return std::unexpected(w.error());
      continue;
    }
    return fail_errno(err, "accept");
  }
}

Result<Fd> bind_unix(std::string_view where, int type, const Options& options) {
  auto addr = os::unix_address(where);
  if (!addr) return std::unexpected(addr.error());
  auto fd = os::make_socket(AF_UNIX, type);
  if (!fd) return fd;
  const bool abstract = where.front() == '@';
  std::string path(where);

  if (!abstract) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return fail(Errc::address_in_use, "listen", fmt::format("{} exists and is not a socket", path));
      // A socket file: is a server still behind it?
      auto probe = os::make_socket(AF_UNIX, type);
      if (!probe) return std::unexpected(probe.error());
      int rc = os::retry([&] { return ::connect(probe->get(), addr->get(), addr->len); });
      // EPROTOTYPE: a live socket of another type (stream vs seqpacket) is bound there.
      if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS || errno == EPROTOTYPE)
        return fail(Errc::address_in_use, "listen", fmt::format("{}: a live server is listening", path));
      if (errno != ECONNREFUSED)
        return fail_errno(errno, "listen", fmt::format("probing {}", path));
      ::unlink(path.c_str());  // stale: its server is gone
    }
  }
  if (::bind(fd->get(), addr->get(), addr->len) != 0)
    return fail_errno(errno, "bind", path);
  // Set the mode before listen(): nobody can connect yet, whatever the umask allowed.
  if (!abstract && ::chmod(path.c_str(), options.mode & 07777) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return fail_errno(err, "chmod", path);
  }
  if (::listen(fd->get(), options.backlog) != 0) {
    int err = errno;
    if (!abstract) ::unlink(path.c_str());
    return fail_errno(err, "listen", path);
  }
  return fd;
}

}  // namespace ipcx::transport
