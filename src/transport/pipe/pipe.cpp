// pipe: — framed messages over a pair of anonymous pipes.
//   pipe:                 the descriptors named in IPCX_PIPE_FDS="R,W", else stdin and stdout
//   pipe:?rfd=R&wfd=W     explicit descriptors
// Listening on pipe: yields that one connection once (a pipe has exactly one peer).
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

#include <ipcx/process.hpp>

#include "transport/stream.hpp"

namespace ipcx {
namespace transport {
namespace {

Result<int> parse_fd(std::string_view s) {
  int v = 0;
  if (s.empty() || s.size() > 9) return fail(Errc::invalid_url, "parse URL", fmt::format("bad fd '{}'", s));
  for (char c : s) {
    if (c < '0' || c > '9') return fail(Errc::invalid_url, "parse URL", fmt::format("bad fd '{}'", s));
    v = v * 10 + (c - '0');
  }
  return v;
}

Result<std::pair<int, int>> pipe_fds(const Url& u) {
  if (!u.body.empty() && u.body != "//")
    return fail(Errc::invalid_url, "parse URL", "pipe: takes no path (pipe: or pipe:?rfd=R&wfd=W)");
  std::string_view r = "0", w = "1";
  if (const char* env = std::getenv("IPCX_PIPE_FDS")) {
    std::string_view e(env);
    auto comma = e.find(',');
    if (comma != std::string_view::npos) {
      r = e.substr(0, comma);
      w = e.substr(comma + 1);
    }
  }
  if (auto it = u.query.find("rfd"); it != u.query.end()) r = it->second;
  if (auto it = u.query.find("wfd"); it != u.query.end()) w = it->second;
  auto rf = parse_fd(r);
  if (!rf) return std::unexpected(rf.error());
  auto wf = parse_fd(w);
  if (!wf) return std::unexpected(wf.error());
  return std::pair{*rf, *wf};
}

std::unique_ptr<ConnectionImpl> make_conn(Fd r, Fd w, const Options& o) {
  return std::make_unique<StreamConnection>(
      StreamConnection::Params{std::move(r), std::move(w), false, false, {}, o});
}

// The connection owns duplicates, so closing it never closes the process's stdin/stdout.
Result<std::unique_ptr<ConnectionImpl>> connect_inherited(const Url& u, const Options& o) {
  auto fds = pipe_fds(u);
  if (!fds) return std::unexpected(fds.error());
  int r = ::fcntl(fds->first, F_DUPFD_CLOEXEC, 3);
  if (r < 0) return fail_errno(errno, "pipe", fmt::format("read fd {}", fds->first));
  Fd rfd(r);
  int w = ::fcntl(fds->second, F_DUPFD_CLOEXEC, 3);
  if (w < 0) return fail_errno(errno, "pipe", fmt::format("write fd {}", fds->second));
  return make_conn(std::move(rfd), Fd(w), o);
}

class PipeListener final : public ListenerImpl {
 public:
  PipeListener(std::unique_ptr<ConnectionImpl> c, std::string url) : conn_(std::move(c)), url_(std::move(url)) {
    fd_ = conn_->native_handle();
  }
  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline& dl) override {
    if (conn_) return std::move(conn_);
    if (fd_ < 0) return fail(Errc::closed, "accept", "listener closed");
    // A pipe has one peer only: later accepts wait out the deadline like an idle listener.
    if (dl.immediate()) return fail(Errc::would_block, "accept");
    if (dl.infinite()) return fail(Errc::closed, "accept", "a pipe has a single peer, already accepted");
    while (!dl.expired()) ::poll(nullptr, 0, dl.poll_ms());
    return fail(Errc::timeout, "accept");
  }
  int native_handle() const noexcept override { return conn_ ? fd_ : -1; }
  std::string url() const override { return url_; }
  void close() noexcept override {
    conn_.reset();
    fd_ = -1;
  }
  bool is_open() const noexcept override { return fd_ >= 0; }

 private:
  std::unique_ptr<ConnectionImpl> conn_;
  std::string url_;
  int fd_ = -1;
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
  Connection first(transport::make_conn(std::move(b->first), std::move(a->second), options));
  Connection second(transport::make_conn(std::move(a->first), std::move(b->second), options));
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
  c.connection = Connection(transport::make_conn(std::move(from_child->first), std::move(to_child->second), options));
  return c;
}

}  // namespace ipcx
