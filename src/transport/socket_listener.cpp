#include "transport/socket_listener.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include "wire/frame.hpp"

namespace ipcx::transport {

namespace {
bool same_inode(const std::string& path, dev_t dev, ino_t ino) {
  struct stat st {};
  return !path.empty() && ::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}
}  // namespace

SocketListener::SocketListener(Params p)
    : bound_(std::move(p.bound)),
      url_(std::move(p.url)),
      caps_(p.caps),
      access_(std::move(p.access)),
      goodbye_(p.goodbye),
      make_(std::move(p.make)) {
  struct stat st {};
  if (!bound_.path.empty() && ::lstat(bound_.path.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  if (bound_.lock.valid() && ::fstat(bound_.lock.get(), &st) == 0) {
    lock_dev_ = st.st_dev;
    lock_ino_ = st.st_ino;
  }
}

std::optional<int> SocketListener::native_handle() const noexcept {
  if (!bound_.fd.valid()) return std::nullopt;
  return bound_.fd.get();
}

void SocketListener::close() noexcept {
  if (!bound_.fd.valid()) return;
  // Only remove files that are still ours: a later server may have replaced them.
  if (same_inode(bound_.path, dev_, ino_)) ::unlink(bound_.path.c_str());
  // The lock file goes while we still hold its lock: a listener that opened it meanwhile finds
  // it unlinked after taking the lock, and starts over with a fresh one.
  if (bound_.lock.valid() && same_inode(bound_.lock_path, lock_dev_, lock_ino_)) ::unlink(bound_.lock_path.c_str());
  bound_.fd.reset();
  bound_.lock.reset();
}

Result<std::unique_ptr<ConnectionImpl>> SocketListener::accept(const os::Deadline& deadline) {
  if (!bound_.fd.valid()) return fail(Errc::closed, "accept", "listener closed");
  for (;;) {
    int c = ::accept4(bound_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) {
      Fd conn(c);
      if (access_ && !access_->anyone) {
        auto peer = os::peer_credentials(c);
        auto groups = os::peer_groups(c);
        if (!access_->allows(peer, groups)) {
          ++stats_.refused;
          if (on_refused_) on_refused_(peer);
          if (goodbye_) {  // a fresh socket's buffer always has room for this
            auto bye = wire::encode_goodbye(wire::Goodbye::access_denied,
                                            fmt::format("uid {} is not allowed here", peer.uid));
            (void)::send(c, bye.data(), bye.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
          }
          continue;
        }
      }
      ++stats_.accepted;
      return make_(std::move(conn));
    }
    int err = errno;
    // accept(2): these are the pending connection's network errors, not the listener's.
    if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == ENETDOWN || err == ENOPROTOOPT ||
        err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH || err == ENETUNREACH)
      continue;
    if (err == EAGAIN) {
      if (auto w = os::await(bound_.fd.get(), POLLIN, deadline, "accept"); !w) return std::unexpected(w.error());
      continue;
    }
    return fail_errno(err, "accept");
  }
}

namespace {

// Takes PATH.lock: exclusive, never waiting. Whoever holds it owns the address.
Result<Fd> take_lock(const std::string& lock_path) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = os::retry([&] { return ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600); });
    if (fd < 0) return fail_errno(errno, "listen", fmt::format("lock file {}", lock_path));
    Fd lock(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) return fail_errno(errno, "fstat", lock_path);
    if (!S_ISREG(st.st_mode))
      return fail(Errc::permission_denied, "listen", fmt::format("{} is not a regular file", lock_path));
    if (st.st_uid != ::geteuid())
      return fail(Errc::permission_denied, "listen", fmt::format("{} is owned by uid {}", lock_path, st.st_uid));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return fail(Errc::address_in_use, "listen", fmt::format("a live listener holds {}", lock_path));
      return fail_errno(errno, "flock", lock_path);
    }
    if (same_inode(lock_path, st.st_dev, st.st_ino)) {
      (void)::fchmod(fd, 0600);
      return lock;
    }
    // A closing listener unlinked it between our open and our flock: start over.
  }
  return fail(Errc::address_in_use, "listen", fmt::format("{} keeps being replaced", lock_path));
}

}  // namespace

Result<BoundUnix> bind_unix(std::string_view where, int type, const Options& options) {
  auto addr = os::unix_address(where);
  if (!addr) return std::unexpected(addr.error());
  auto fd = os::make_socket(AF_UNIX, type);
  if (!fd) return std::unexpected(fd.error());
  BoundUnix out;
  // Until the socket listens, a failure removes the files this call made (while `out` still
  // holds the lock: this is destroyed first).
  struct Undo {
    std::string lock, sock;
    bool done = false;
    ~Undo() {
      if (done) return;
      if (!sock.empty()) ::unlink(sock.c_str());
      if (!lock.empty()) ::unlink(lock.c_str());
    }
  } undo;
  const bool abstract = where.front() == '@';
  std::string path(where);

  if (!abstract) {
    out.lock_path = path + ".lock";
    auto lock = take_lock(out.lock_path);
    if (!lock) return std::unexpected(lock.error());
    out.lock = std::move(*lock);
    undo.lock = out.lock_path;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return fail(Errc::address_in_use, "listen", fmt::format("{} exists and is not a socket", path));
      // A socket file: is a server still behind it? (One without our lock: another program.)
      auto probe = os::make_socket(AF_UNIX, type);
      if (!probe) return std::unexpected(probe.error());
      int rc = os::retry([&] { return ::connect(probe->get(), addr->get(), addr->len); });
      // EPROTOTYPE: a live socket of another type (stream vs seqpacket) is bound there.
      if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS || errno == EPROTOTYPE)
        return fail(Errc::address_in_use, "listen", fmt::format("{}: a live listener (not ipcx) is bound there", path));
      if (errno != ECONNREFUSED) return fail_errno(errno, "listen", fmt::format("probing {}", path));
      ::unlink(path.c_str());  // stale: its server is gone, and the lock says no listener is starting
    }
    out.path = path;
  }
  if (::bind(fd->get(), addr->get(), addr->len) != 0) return fail_errno(errno, "bind", path);
  if (!abstract) undo.sock = path;
  // Set the mode before listen(): nobody can connect yet, whatever the umask allowed.
  if (!abstract && ::chmod(path.c_str(), options.mode & 07777) != 0) return fail_errno(errno, "chmod", path);
  if (::listen(fd->get(), options.backlog) != 0) return fail_errno(errno, "listen", path);
  undo.done = true;
  out.fd = std::move(*fd);
  return out;
}

}  // namespace ipcx::transport
