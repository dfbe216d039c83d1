// pipe: — framed messages over a pair of anonymous pipes.
//   pipe:                 the descriptors named in IPCX_PIPE_FDS="R,W", else stdin and stdout
//   pipe:?rfd=R&wfd=W     explicit descriptors
// Listening on pipe: yields that one connection once (a pipe has exactly one peer).
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

#include <ipcx/spawn.hpp>

#include "transport/address.hpp"
#include "transport/stream.hpp"

namespace ipcx {
namespace transport {
namespace {

std::unique_ptr<ConnectionImpl> make_conn(Fd r, Fd w, const Options& o) {
  return std::make_unique<StreamConnection>(
      StreamConnection::Params{.read_fd = std::move(r), .write_fd = std::move(w), .options = o});
}

// The connection owns duplicates, so closing it never closes the process's stdin/stdout.
Result<std::unique_ptr<ConnectionImpl>> connect_inherited(const Url& u, const Options& o) {
  if (o.access && !o.access->anyone)
    return fail(Errc::not_supported, "pipe", "a pipe's peer is whoever holds its other end: no access rule applies");
  auto fds = pipe_fds(u, std::getenv("IPCX_PIPE_FDS"));
  if (!fds) return std::unexpected(fds.error());
  int r = ::fcntl(fds->read_fd, F_DUPFD_CLOEXEC, 3);
  if (r < 0) return fail_errno(errno, "pipe", fmt::format("read fd {}", fds->read_fd));
  Fd rfd(r);
  int w = ::fcntl(fds->write_fd, F_DUPFD_CLOEXEC, 3);
  if (w < 0) return fail_errno(errno, "pipe", fmt::format("write fd {}", fds->write_fd));
  return make_conn(std::move(rfd), Fd(w), o);
}

// A pipe has exactly one peer: the listener yields that one connection, then reports closed.
class PipeListener final : public ListenerImpl {
 public:
  PipeListener(std::unique_ptr<ConnectionImpl> c, std::string url) : conn_(std::move(c)), url_(std::move(url)) {}
  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline&) override {
    if (!open_) return fail(Errc::closed, "accept", "listener closed");
    if (!conn_) return fail(Errc::closed, "accept", "a pipe has a single peer, already accepted");
    ++stats_.accepted;
    return std::move(conn_);
  }
  std::optional<int> native_handle() const noexcept override {
    if (!conn_) return std::nullopt;
    return conn_->handles().read;
  }
  std::string url() const override { return url_; }
  Capabilities capabilities() const noexcept override { return {.pollable = true, .concurrent = false}; }
  ListenerStats stats() const noexcept override { return stats_; }
  void close() noexcept override {
    conn_.reset();
    open_ = false;
  }
  bool is_open() const noexcept override { return open_; }

 private:
  std::unique_ptr<ConnectionImpl> conn_;
  std::string url_;
  bool open_ = true;
  ListenerStats stats_;
};

}  // namespace

Scheme pipe_scheme() {
  Scheme s;
  s.name = "pipe";
  s.listen = [](const Url& u, const Options& o) -> Result<std::unique_ptr<ListenerImpl>> {
    auto c = connect_inherited(u, o);
    if (!c) return std::unexpected(c.error());
    return std::make_unique<PipeListener>(std::move(*c), u.str());
  };
  s.connect = [](const Url& u, const Options& o, const os::Deadline&) { return connect_inherited(u, o); };
  return s;
}

}  // namespace transport

namespace {
Result<std::pair<Fd, Fd>> make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail_errno(errno, "pipe2");
  transport::grow_pipe(p[1]);
  return std::pair{Fd(p[0]), Fd(p[1])};
}
}  // namespace

Result<std::pair<Connection, Connection>> pipe_pair(const Options& options) {
  auto a = make_pipe();
  if (!a) return std::unexpected(a.error());
  auto b = make_pipe();
  if (!b) return std::unexpected(b.error());
  // a: first -> second; b: second -> first
  auto first = detail::Access::wrap(transport::make_conn(std::move(b->first), std::move(a->second), options));
  auto second = detail::Access::wrap(transport::make_conn(std::move(a->first), std::move(b->second), options));
  return std::pair{std::move(first), std::move(second)};
}

Result<Child> spawn_connected(const std::vector<std::string>& argv, const Options& options, SpawnOptions spawn) {
  auto to_child = make_pipe();
  if (!to_child) return std::unexpected(to_child.error());
  auto from_child = make_pipe();
  if (!from_child) return std::unexpected(from_child.error());
  constexpr int kChildRead = 3, kChildWrite = 4;
  spawn.fds.push_back({kChildRead, to_child->first.get()});
  spawn.fds.push_back({kChildWrite, from_child->second.get()});
  spawn.env.push_back(fmt::format("IPCX_PIPE_FDS={},{}", kChildRead, kChildWrite));
  auto proc = Process::spawn(argv, spawn);
  if (!proc) return std::unexpected(proc.error());
  to_child->first.reset();
  from_child->second.reset();
  Child c;
  c.process = std::move(*proc);
  c.connection =
      detail::Access::wrap(transport::make_conn(std::move(from_child->first), std::move(to_child->second), options));
  return c;
}

}  // namespace ipcx
