// fifo:///path — framed (or line) messages over named pipes.
//
// A FIFO is one-way, so a conversation uses two: PATH carries client -> listener, and
// PATH.back carries listener -> client. The listener creates both (mode 0600 unless
// Options::mode says otherwise) and removes what it created. Plain shell writers
// (`echo hi > PATH`) need only PATH. A FIFO cannot tell writers apart: one conversation at a
// time; accept() again once the previous connection has ended. One listener per PATH: a live
// listener's lock on PATH.back keeps a second one out.
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>


#include <fmt/format.h>

#include "transport/address.hpp"
#include "transport/stream.hpp"

namespace ipcx::transport {
namespace {

const std::string kBackSuffix(kFifoBackSuffix);  // spelled once, in address.hpp

// Makes `path` a FIFO if it does not exist; refuses anything else found there.
Result<bool> ensure_fifo(const std::string& path, unsigned mode) {
  if (::mkfifo(path.c_str(), 0600) == 0) {
    if (::chmod(path.c_str(), mode & 07777) != 0) {
      int e = errno;
      ::unlink(path.c_str());
      return fail_errno(e, "chmod", path);
    }
    return true;
  }
  if (errno != EEXIST) return fail_errno(errno, "mkfifo", path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return fail_errno(errno, "lstat", path);
  if (!S_ISFIFO(st.st_mode)) return fail(Errc::address_in_use, "listen", fmt::format("{} exists and is not a FIFO", path));
  if (st.st_uid != ::geteuid())
    return fail(Errc::permission_denied, "listen", fmt::format("{} is owned by uid {}", path, st.st_uid));
  return false;
}

Result<Fd> open_fifo(const std::string& path, int flags) {
  int fd = os::retry([&] { return ::open(path.c_str(), flags | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW); });
  if (fd < 0) return fail_errno(errno, "open", path);
  Fd f(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno(errno, "fstat", path);
  if (!S_ISFIFO(st.st_mode)) return fail(Errc::invalid_argument, "open", fmt::format("{} is not a FIFO", path));
  grow_pipe(fd);
  return f;
}

class FifoListener final : public ListenerImpl {
 public:
  FifoListener(std::string url, std::string path, bool created, bool back_created, Fd back, Options o)
      : url_(std::move(url)), path_(std::move(path)), created_(created), back_created_(back_created),
        back_(std::move(back)), options_(o) {}
  ~FifoListener() override { close(); }

  Result<void> open_pending() {
    if (pending_.valid()) return {};
    auto f = open_fifo(path_, O_RDONLY);
    if (!f) return std::unexpected(f.error());
    pending_ = std::move(*f);
    return {};
  }

  // Empties the reply channel: bytes a previous client left unread are not for the next one.
  void discard_replies() noexcept {
    std::byte junk[4096];
    while (::read(back_.get(), junk, sizeof junk) > 0) {
    }
  }

  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline& dl) override {
    if (!is_open()) return fail(Errc::closed, "accept", "listener closed");
    // Asked for the next conversation means the last one is over: drop its unread replies now,
    // not only once the next client has written (it may be reading already).
    discard_replies();
    for (;;) {
      if (auto r = open_pending(); !r) return std::unexpected(r.error());
      auto w = os::wait_fd(pending_.get(), POLLIN, dl);
      if (!w) {
        auto e = std::move(w.error());
        e.op = "accept";
        return std::unexpected(std::move(e));
      }
      if (!(*w & POLLIN)) {  // a writer came and went without a byte: wait for the next one
        pending_.reset();
        continue;
      }
      discard_replies();  // again: the previous conversation may have written more since
      // The reply end gets its own open file description: a dup of back_ would share
      // O_NONBLOCK with it, and once a connection made it blocking the drain above would block
      // forever on the next accept. It must be the very FIFO back_ reads.
      auto write_end = open_fifo(path_ + kBackSuffix, O_WRONLY);
      if (!write_end) return std::unexpected(write_end.error());
      struct stat ours {}, theirs {};
      if (::fstat(back_.get(), &ours) != 0 || ::fstat(write_end->get(), &theirs) != 0 ||
          ours.st_dev != theirs.st_dev || ours.st_ino != theirs.st_ino)
        return fail(Errc::permission_denied, "accept", fmt::format("{}{} was replaced", path_, kBackSuffix));
      if (auto r = os::set_nonblocking(write_end->get(), false); !r) return std::unexpected(r.error());
      Fd read_end = std::move(pending_);
      if (auto r = os::set_nonblocking(read_end.get(), false); !r) return std::unexpected(r.error());
      ++stats_.accepted;
      return std::make_unique<StreamConnection>(StreamConnection::Params{
          .read_fd = std::move(read_end), .write_fd = std::move(*write_end), .options = options_});
    }
  }
  std::optional<int> native_handle() const noexcept override {
    if (!pending_.valid()) return std::nullopt;
    return pending_.get();
  }
  std::string url() const override { return url_; }
  Capabilities capabilities() const noexcept override { return {.pollable = true, .concurrent = false}; }
  ListenerStats stats() const noexcept override { return stats_; }
  bool is_open() const noexcept override { return back_.valid(); }
  void close() noexcept override {
    if (!back_.valid()) return;
    pending_.reset();
    back_.reset();
    if (created_) ::unlink(path_.c_str());
    if (back_created_) ::unlink((path_ + kBackSuffix).c_str());
  }

 private:
  std::string url_, path_;
  bool created_, back_created_;
  Fd back_;     // PATH.back opened read-write: clients never see a false EOF before a reply
  Fd pending_;  // PATH opened for reading, waiting for the next writer
  Options options_;
  ListenerStats stats_;
};

}  // namespace

Scheme fifo_scheme() {
  Scheme s;
  s.name = "fifo";
  s.listen = [](const Url& u, const Options& o) -> Result<std::unique_ptr<ListenerImpl>> {
    auto path = fifo_path(u);
    if (!path) return std::unexpected(path.error());
    if (o.access && !o.access->anyone)
      return fail(Errc::not_supported, "listen",
                  "a FIFO cannot tell who writes to it: its file mode is the access rule (Options::mode)");
    auto created = ensure_fifo(*path, o.mode);
    if (!created) return std::unexpected(created.error());
    auto back_path = *path + kBackSuffix;
    auto back_created = ensure_fifo(back_path, o.mode);
    if (!back_created) {
      if (*created) ::unlink(path->c_str());
      return std::unexpected(back_created.error());
    }
    auto undo = [&] {
      if (*created) ::unlink(path->c_str());
      if (*back_created) ::unlink(back_path.c_str());
    };
    auto back = open_fifo(back_path, O_RDWR);
    if (!back) {
      undo();
      return std::unexpected(back.error());
    }
    // A live listener holds an exclusive lock on PATH.back; the kernel drops it when that
    // listener dies (SIGKILL included), so a stale pair is taken over, a live one never.
    if (::flock(back->get(), LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      undo();
      if (err == EWOULDBLOCK)
        return fail(Errc::address_in_use, "listen", fmt::format("{}: a live listener holds it", *path));
      return fail_errno(err, "flock", back_path);
    }
    auto l = std::make_unique<FifoListener>(u.str(), *path, *created, *back_created, std::move(*back), o);
    if (auto r = l->open_pending(); !r) return std::unexpected(r.error());
    return l;
  };
  s.connect = [](const Url& u, const Options& o, const os::Deadline& dl) -> Result<std::unique_ptr<ConnectionImpl>> {
    auto path = fifo_path(u);
    if (!path) return std::unexpected(path.error());
    Fd read_end;  // optional: a plain FIFO read by `cat` has no reply channel
    if (auto b = open_fifo(*path + kBackSuffix, O_RDONLY)) read_end = std::move(*b);
    for (;;) {
      auto w = open_fifo(*path, O_WRONLY);
      if (w) {
        if (auto r = os::set_nonblocking(w->get(), false); !r) return std::unexpected(r.error());
        if (read_end.valid())
          if (auto r = os::set_nonblocking(read_end.get(), false); !r) return std::unexpected(r.error());
        return std::make_unique<StreamConnection>(
            StreamConnection::Params{.read_fd = std::move(read_end), .write_fd = std::move(*w), .options = o});
      }
      // ENXIO: nobody has the FIFO open for reading yet. Like a shell's `>`, wait for a reader
      // (no descriptor reports one arriving: try again every 2 ms until the deadline).
      if (w.error().sys_errno != ENXIO) return std::unexpected(w.error());
      if (auto p = os::pause_before_retry(dl, std::chrono::milliseconds(2), "connect"); !p) {
        if (p.error().code == Errc::timeout || p.error().code == Errc::would_block) return std::unexpected(w.error());
        return std::unexpected(p.error());
      }
    }
  };
  return s;
}

}  // namespace ipcx::transport
