// Rows over messaging patterns: request/reply, push/pull, publish/subscribe to 4 processes.
// raw is a Unix stream socket (one write per message, per subscriber), ipcx is
// <ipcx/reqrep.hpp> and <ipcx/pubsub.hpp>, peer is ZeroMQ over ipc:// when the build found
// libzmq. Every message is numbered and checked by its receiver (rows_patterns.hpp).
#include <cstring>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench/rows_patterns.hpp"
#include "bench/session.hpp"

namespace ipcx::bench::patterns {
namespace {

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  if (path.size() >= sizeof un.sun_path) return fail(Errc::invalid_argument, "bind", "path too long: " + path);
  std::memcpy(un.sun_path, path.c_str(), path.size() + 1);
  return un;
}

Result<Fd> unix_listen(const std::string& path, int backlog) {
  auto addr = unix_address(path);
  if (!addr) return std::unexpected(addr.error());
  Fd l(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l) return sys_error("socket");
  if (::bind(l.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) return sys_error("bind", path);
  if (::listen(l.get(), backlog) != 0) return sys_error("listen");
  return l;
}

Result<Fd> unix_connect(const std::string& path) {
  auto addr = unix_address(path);
  if (!addr) return std::unexpected(addr.error());
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return sys_error("socket");
  if (retry([&] { return ::connect(s.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr); }) != 0)
    return sys_error("connect", path);
  return s;
}

// The parent accepts: an echo child that died before connecting must not hang it.
Result<Fd> accept_watching(int listener) {
  for (;;) {
    pollfd p{.fd = listener, .events = POLLIN, .revents = 0};
    int n = retry([&] { return ::poll(&p, 1, 100); });
    if (n < 0) return sys_error("poll");
    if (n == 0) {
      if (child_exited()) return fail(Errc::closed, "accept", "an echo child exited");
      continue;
    }
    Fd c(retry([&] { return ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC); }));
    if (!c) return sys_error("accept");
    return c;
  }
}

// --- raw point to point: the child listens at the measurement's path, the parent connects
// (as the `unix` row's raw setup); a request/reply or a checked channel over the socket.

template <bool kRoundTrip>
class RawPairSetup final : public Setup {
 public:
  explicit RawPairSetup(const RunCtx& c) : ctx_(c) {}
  Result<std::string> child_prepare() override {
    auto l = unix_listen(ctx_.path, 1);
    if (!l) return std::unexpected(l.error());
    listener_ = std::move(*l);
    return std::string();
  }
  Made<Channel> child_channel() override {
    Fd c(retry([&] { return ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC); }));
    if (!c) return sys_error("accept");
    listener_.reset();
    ::unlink(ctx_.path.c_str());
    return make(std::move(c));
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    auto s = unix_connect(ctx_.path);
    if (!s) return std::unexpected(s.error());
    return make(std::move(*s));
  }

 private:
  Made<Channel> make(Fd s) const {
    auto [out, in] = raw_stream_links(std::move(s), ctx_.size);
    if constexpr (kRoundTrip) return std::make_unique<RoundTripChannel>(std::move(out), std::move(in), ctx_.size);
    else return std::make_unique<CheckedChannel>(std::move(out), std::move(in), ctx_.size);
  }
  RunCtx ctx_;
  Fd listener_;
};

// --- raw fan-out: the parent listens; each subscriber connects; every message is written to
// each subscriber's socket in turn.

class MultiWriteLink final : public Link {
 public:
  explicit MultiWriteLink(std::vector<Fd> fds) : fds_(std::move(fds)) {}
  Status send(std::span<const std::byte> msg) override {
    for (auto& fd : fds_)
      for (std::size_t off = 0; off < msg.size();) {
        ssize_t n = retry([&] { return ::write(fd.get(), msg.data() + off, msg.size() - off); });
        if (n < 0) return sys_error("write");
        off += static_cast<std::size_t>(n);
      }
    return {};
  }
  Result<std::span<const std::byte>> recv() override { return fail(Errc::not_supported, "recv", "publisher"); }

 private:
  std::vector<Fd> fds_;
};

class RawFanoutSetup final : public Setup {
 public:
  explicit RawFanoutSetup(const RunCtx& c) : ctx_(c) {}
  ~RawFanoutSetup() override {
    if (listener_) ::unlink(ctx_.path.c_str());
  }
  Status parent_prepare(ChildWiring& wiring) override {
    if (auto r = acks_.create(wiring); !r) return r;
    auto l = unix_listen(ctx_.path, kSubscribers);
    if (!l) return std::unexpected(l.error());
    listener_ = std::move(*l);
    return {};
  }
  Made<Channel> child_channel() override {
    auto acks = AckPipe::inherited(ctx_);
    if (!acks) return std::unexpected(acks.error());
    auto s = unix_connect(ctx_.path);
    if (!s) return std::unexpected(s.error());
    auto links = raw_stream_links(std::move(*s), ctx_.size);
    auto ch = std::make_unique<SubscriberChannel>(std::move(links.in), std::move(*acks), ctx_.size);
    if (auto r = ch->join(); !r) return std::unexpected(r.error());
    return ch;
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return fail(Errc::invalid_argument, "pubsub", "a fan-out row has several echo children");
  }
  Made<Channel> parent_channel_all(const std::vector<std::string>& ready, const std::vector<pid_t>&) override {
    std::vector<Fd> subs;
    for (std::size_t i = 0; i < ready.size(); ++i) {
      auto c = accept_watching(listener_.get());
      if (!c) return std::unexpected(c.error());
      subs.push_back(std::move(*c));
    }
    auto ch = std::make_unique<FanoutChannel>(std::make_unique<MultiWriteLink>(std::move(subs)), std::move(acks_.read),
                                              static_cast<int>(ready.size()), ctx_.size);
    if (auto r = ch->join(); !r) return std::unexpected(r.error());
    return ch;
  }

 private:
  RunCtx ctx_;
  AckPipe acks_;
  Fd listener_;
};

template <class S>
std::unique_ptr<Setup> make(const RunCtx& c) {
  return std::make_unique<S>(c);
}

#if IPCX_BENCH_ZMQ
#define IPCX_BENCH_ZMQ_PEER(setup) setup
#else
#define IPCX_BENCH_ZMQ_PEER(setup) nullptr
#endif
constexpr std::string_view kPeerSkipped = kZmqSkipped;

const Mechanism kRows[] = {
    {.name = "reqrep-unix",
     .group = Group::message_passing,
     .purpose = "request/reply: a call and its answer, many clients per server",
     .raw = make<RawPairSetup<true>>,
     .ipcx = ipcx_reqrep,
     .peer = IPCX_BENCH_ZMQ_PEER(zmq_reqrep),
     .peer_skipped = kPeerSkipped,
     .peer_row = "zmq-ipc",
     .min_size = kMinSize},
    {.name = "pushpull-unix",
     .group = Group::message_passing,
     .purpose = "push/pull: work spread over a pool of workers",
     .raw = make<RawPairSetup<false>>,
     .ipcx = ipcx_pushpull,
     .peer = IPCX_BENCH_ZMQ_PEER(zmq_pushpull),
     .peer_skipped = kPeerSkipped,
     .peer_row = "zmq-pushpull-ipc",
     .min_size = kMinSize},
    {.name = "pubsub-unix",
     .group = Group::message_passing,
     .purpose = "publish/subscribe: every subscriber gets each message (4 here)",
     .raw = make<RawFanoutSetup>,
     .ipcx = ipcx_pubsub,
     .peer = IPCX_BENCH_ZMQ_PEER(zmq_pubsub),
     .peer_skipped = kPeerSkipped,
     .children = kSubscribers,
     .peer_row = "zmq-pubsub-ipc",
     .min_size = kMinSize},
};

#undef IPCX_BENCH_ZMQ_PEER

}  // namespace
}  // namespace ipcx::bench::patterns

namespace ipcx::bench {
std::span<const Mechanism> pattern_rows() { return patterns::kRows; }
}  // namespace ipcx::bench
