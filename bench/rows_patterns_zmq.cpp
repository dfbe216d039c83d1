// The pattern rows' peer: ZeroMQ (libzmq's C API) over ipc:// (a Unix socket at the
// measurement's path). Compiled only when bench/CMakeLists.txt found libzmq.
//
// The parent binds every socket before the echo child starts, so the child's connects find them;
// the parent's blocking calls take a 100 ms timeout (ZMQ_SNDTIMEO/ZMQ_RCVTIMEO) and give up once
// an echo child exited, since a ZeroMQ socket does not report a peer's death.
#include <cerrno>
#include <string>

#include <zmq.h>

#include "bench/rows_patterns.hpp"
#include "bench/session.hpp"

namespace ipcx::bench::patterns {
namespace {

constexpr int kSliceMs = 100;

std::unexpected<Error> zmq_error(const char* op, int e = zmq_errno()) {
  return fail(Errc::system, op, zmq_strerror(e));
}

// One context per process and measurement; closed after its sockets (declared first).
class Context {
 public:
  Context() = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() {
    if (ctx_) zmq_ctx_term(ctx_);
  }
  Status open() {
    ctx_ = zmq_ctx_new();
    if (!ctx_) return zmq_error("zmq_ctx_new");
    return {};
  }
  void* get() const { return ctx_; }

 private:
  void* ctx_ = nullptr;
};

class Socket {
 public:
  Socket() = default;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() {
    zmq_msg_close(&msg_);
    if (s_) zmq_close(s_);
  }
  // `parent`: its waits are sliced (child_exited()).
  Status open(Context& ctx, int type, bool parent) {
    s_ = zmq_socket(ctx.get(), type);
    if (!s_) return zmq_error("zmq_socket");
    parent_ = parent;
    // The parent closes at once: nothing queued must outlive the measurement. The echo child's
    // last send is the final ack, which a close that discards it at once (linger 0) could drop
    // before ZeroMQ's I/O thread wrote it: it waits up to a second for it to go out.
    int linger = parent ? 0 : 1000;
    if (zmq_setsockopt(s_, ZMQ_LINGER, &linger, sizeof linger) != 0) return zmq_error("zmq_setsockopt");
    if (parent) {
      int slice = kSliceMs;
      if (zmq_setsockopt(s_, ZMQ_SNDTIMEO, &slice, sizeof slice) != 0 ||
          zmq_setsockopt(s_, ZMQ_RCVTIMEO, &slice, sizeof slice) != 0)
        return zmq_error("zmq_setsockopt");
    }
    return {};
  }
  Status option(int name, const void* value, std::size_t len) {
    if (zmq_setsockopt(s_, name, value, len) != 0) return zmq_error("zmq_setsockopt");
    return {};
  }
  Status get_option(int name, void* value, std::size_t* len) {
    if (zmq_getsockopt(s_, name, value, len) != 0) return zmq_error("zmq_getsockopt");
    return {};
  }
  Status bind(const std::string& url) {
    if (zmq_bind(s_, url.c_str()) != 0) return zmq_error("zmq_bind");
    return {};
  }
  Status connect(const std::string& url) {
    if (zmq_connect(s_, url.c_str()) != 0) return zmq_error("zmq_connect");
    return {};
  }
  Status send(std::span<const std::byte> msg) {
    for (;;) {
      if (zmq_send(s_, msg.data(), msg.size(), 0) >= 0) return {};
      int e = zmq_errno();
      if (e == EINTR || (e == EAGAIN && parent_)) {
        if (child_exited()) return fail(Errc::closed, "zmq_send", "an echo child exited");
        continue;
      }
      return zmq_error("zmq_send", e);
    }
  }
  Result<std::span<const std::byte>> recv() {
    zmq_msg_close(&msg_);
    zmq_msg_init(&msg_);
    for (;;) {
      if (zmq_msg_recv(&msg_, s_, 0) >= 0)
        return std::span<const std::byte>(static_cast<const std::byte*>(zmq_msg_data(&msg_)), zmq_msg_size(&msg_));
      int e = zmq_errno();
      if (e == EINTR || (e == EAGAIN && parent_)) {
        if (child_exited()) return fail(Errc::closed, "zmq_msg_recv", "an echo child exited");
        continue;
      }
      return zmq_error("zmq_msg_recv", e);
    }
  }
 private:
  void* s_ = nullptr;
  bool parent_ = false;
  zmq_msg_t msg_ = [] {
    zmq_msg_t m;
    zmq_msg_init(&m);
    return m;
  }();
};

// A Link over a socket the setup owns (both directions of a REQ or REP socket share it).
class SocketLink final : public Link {
 public:
  explicit SocketLink(std::shared_ptr<Socket> s) : s_(std::move(s)) {}
  Status send(std::span<const std::byte> msg) override { return s_->send(msg); }
  Result<std::span<const std::byte>> recv() override { return s_->recv(); }

 private:
  std::shared_ptr<Socket> s_;
};

std::string ipc_url(const RunCtx& c, const char* suffix) { return "ipc://" + c.path + suffix; }

// The sockets of one process; the context closes last (zmq_ctx_term waits for its sockets).
struct Sockets {
  Context ctx;
  std::shared_ptr<Socket> a, b;
};

// REQ (parent, bound) / REP (echo child, connected): one request, one reply.
class ReqRepSetup final : public Setup {
 public:
  explicit ReqRepSetup(const RunCtx& c) : ctx_(c) {}
  Status parent_prepare(ChildWiring&) override {
    if (auto r = open(ZMQ_REQ, true); !r) return r;
    return z_.a->bind(ipc_url(ctx_, ""));
  }
  Made<Channel> child_channel() override {
    if (auto r = open(ZMQ_REP, false); !r) return std::unexpected(r.error());
    if (auto r = z_.a->connect(ipc_url(ctx_, "")); !r) return std::unexpected(r.error());
    return channel();
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override { return channel(); }

 private:
  Status open(int type, bool parent) {
    if (auto r = z_.ctx.open(); !r) return r;
    z_.a = std::make_shared<Socket>();
    return z_.a->open(z_.ctx, type, parent);
  }
  Made<Channel> channel() {
    return std::make_unique<RoundTripChannel>(std::make_unique<SocketLink>(z_.a), std::make_unique<SocketLink>(z_.a),
                                              ctx_.size);
  }
  RunCtx ctx_;
  Sockets z_;
};

// Two pipelines, one each way: PUSH (parent, bound at PATH.down) -> PULL (child), and PUSH
// (child) -> PULL (parent, bound at PATH.up) for the replies and acks.
class PushPullSetup final : public Setup {
 public:
  explicit PushPullSetup(const RunCtx& c) : ctx_(c) {}
  Status parent_prepare(ChildWiring&) override {
    if (auto r = open(true); !r) return r;
    if (auto r = z_.a->bind(ipc_url(ctx_, ".down")); !r) return r;
    return z_.b->bind(ipc_url(ctx_, ".up"));
  }
  Made<Channel> child_channel() override {
    if (auto r = open(false); !r) return std::unexpected(r.error());
    if (auto r = z_.a->connect(ipc_url(ctx_, ".up")); !r) return std::unexpected(r.error());
    if (auto r = z_.b->connect(ipc_url(ctx_, ".down")); !r) return std::unexpected(r.error());
    return channel();
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override { return channel(); }

 private:
  // a: this process's PUSH, b: its PULL.
  Status open(bool parent) {
    if (auto r = z_.ctx.open(); !r) return r;
    z_.a = std::make_shared<Socket>();
    z_.b = std::make_shared<Socket>();
    if (auto r = z_.a->open(z_.ctx, ZMQ_PUSH, parent); !r) return r;
    return z_.b->open(z_.ctx, ZMQ_PULL, parent);
  }
  Made<Channel> channel() {
    return std::make_unique<CheckedChannel>(std::make_unique<SocketLink>(z_.a), std::make_unique<SocketLink>(z_.b),
                                            ctx_.size);
  }
  RunCtx ctx_;
  Sockets z_;
};

// PUB (parent, bound) -> SUB (each echo child, subscribed to everything). ZMQ_XPUB_NODROP: at
// the high-water mark a publish waits for room instead of dropping the message for that
// subscriber (ZeroMQ's default), so that the row measures delivery, not loss.
class PubSubSetup final : public Setup {
 public:
  explicit PubSubSetup(const RunCtx& c) : ctx_(c) {}
  Status parent_prepare(ChildWiring& wiring) override {
    if (auto r = acks_.create(wiring); !r) return r;
    if (auto r = open(ZMQ_PUB, true); !r) return r;
    int one = 1;
    if (auto r = z_.a->option(ZMQ_XPUB_NODROP, &one, sizeof one); !r) return r;
    return z_.a->bind(ipc_url(ctx_, ""));
  }
  Made<Channel> child_channel() override {
    auto acks = AckPipe::inherited(ctx_);
    if (!acks) return std::unexpected(acks.error());
    if (auto r = open(ZMQ_SUB, false); !r) return std::unexpected(r.error());
    if (auto r = z_.a->option(ZMQ_SUBSCRIBE, "", 0); !r) return std::unexpected(r.error());
    if (auto r = z_.a->connect(ipc_url(ctx_, "")); !r) return std::unexpected(r.error());
    auto ch = std::make_unique<SubscriberChannel>(std::make_unique<SocketLink>(z_.a), std::move(*acks), ctx_.size);
    if (auto r = ch->join(); !r) return std::unexpected(r.error());
    return ch;
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return fail(Errc::invalid_argument, "pubsub", "a fan-out row has several echo children");
  }
  Made<Channel> parent_channel_all(const std::vector<std::string>& ready, const std::vector<pid_t>&) override {
    auto ch = std::make_unique<FanoutChannel>(std::make_unique<SocketLink>(z_.a), std::move(acks_.read),
                                              static_cast<int>(ready.size()), ctx_.size);
    if (auto r = ch->join(); !r) return std::unexpected(r.error());
    return ch;
  }

 private:
  Status open(int type, bool parent) {
    if (auto r = z_.ctx.open(); !r) return r;
    z_.a = std::make_shared<Socket>();
    return z_.a->open(z_.ctx, type, parent);
  }
  RunCtx ctx_;
  AckPipe acks_;
  Sockets z_;
};

// The tcp row's peer (zmq-tcp): PAIR sockets over TCP on loopback, the harness's own bytes. The
// echo child binds a port the kernel chooses and says which (ZMQ_LAST_ENDPOINT); the parent
// connects to it.
class TcpPairSetup final : public Setup {
 public:
  Result<std::string> child_prepare() override {
    if (auto r = open(false); !r) return std::unexpected(r.error());
    if (auto r = z_.a->bind("tcp://127.0.0.1:*"); !r) return std::unexpected(r.error());
    char endpoint[256] = {};
    std::size_t len = sizeof endpoint;
    if (auto r = z_.a->get_option(ZMQ_LAST_ENDPOINT, endpoint, &len); !r) return std::unexpected(r.error());
    return std::string(endpoint);
  }
  Made<Channel> child_channel() override { return channel(); }
  Made<Channel> parent_channel(const std::string& ready, pid_t) override {
    if (auto r = open(true); !r) return std::unexpected(r.error());
    if (auto r = z_.a->connect(ready); !r) return std::unexpected(r.error());
    return channel();
  }

 private:
  Status open(bool parent) {
    if (auto r = z_.ctx.open(); !r) return r;
    z_.a = std::make_shared<Socket>();
    return z_.a->open(z_.ctx, ZMQ_PAIR, parent);
  }
  Made<Channel> channel() {
    return std::make_unique<PlainChannel>(std::make_unique<SocketLink>(z_.a), std::make_unique<SocketLink>(z_.a));
  }
  Sockets z_;
};

}  // namespace

std::unique_ptr<Setup> zmq_tcp_pair(const RunCtx&) { return std::make_unique<TcpPairSetup>(); }
std::unique_ptr<Setup> zmq_reqrep(const RunCtx& c) { return std::make_unique<ReqRepSetup>(c); }
std::unique_ptr<Setup> zmq_pushpull(const RunCtx& c) { return std::make_unique<PushPullSetup>(c); }
std::unique_ptr<Setup> zmq_pubsub(const RunCtx& c) { return std::make_unique<PubSubSetup>(c); }

}  // namespace ipcx::bench::patterns
