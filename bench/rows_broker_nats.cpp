// The broker rows' NATS peer (nats-js-durable, nats-js-group): a private nats-server 2.9 with
// JetStream for one measurement, driven through cnats 3.4 in both processes.
//
// The server listens on a free port of 127.0.0.1, keeps its JetStream store in the
// measurement's directory (a config file: listen, jetstream.store_dir) and logs to a file there.
// The parent makes a stream with file storage and work-queue retention (a message is removed
// once acknowledged: a queue) on one subject, publishes with js_PublishAsync(), never more than
// kWindow unacknowledged (its own count, kept by the publish-ack handler), and waits for the last
// acknowledgements; the echo child consumes through a durable push consumer with explicit acks
// (MaxAckPending kPrefetch) and acks each message once it has checked it.
//
// Durability: nats-server 2.9.10 has no setting that fsyncs a stream's messages before their
// publish acknowledgement (`sync_interval`, with `always`, came in 2.10 and 2.9 refuses the
// key): it acknowledges once the message is written to its file (the page cache), and its file
// store flushes to disk on its own schedule. A NATS confirm therefore survives a crash of the
// server, not of the machine: weaker than the raw floor's and ipcxd's. broker-durable and
// broker-group run it the same way (docs/bench.md).
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include <sys/stat.h>
#include <unistd.h>

#include <nats/nats.h>

#include <fmt/format.h>

#include "bench/rows_broker.hpp"

namespace ipcx::bench::broker {
namespace {

constexpr const char* kStream = "ipcx-bench";
constexpr const char* kSubject = "ipcx-bench.queue";
constexpr const char* kDurable = "ipcx-bench";

std::string nats_text(natsStatus s) {
  const char* last = nats_GetLastError(nullptr);
  return last && *last ? std::string(last) : std::string(natsStatus_GetText(s));
}

// One connection (no reconnection: a server gone is an error) and its JetStream context.
class NatsConn {
 public:
  static Result<std::unique_ptr<NatsConn>> open(const std::string& url, jsOptions* jo = nullptr) {
    auto c = std::unique_ptr<NatsConn>(new NatsConn);
    natsStatus s = natsOptions_Create(&c->opts_);
    if (s == NATS_OK) s = natsOptions_SetURL(c->opts_, url.c_str());
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(c->opts_, false);
    if (s == NATS_OK) s = natsOptions_SetTimeout(c->opts_, 2000);
    if (s != NATS_OK) return fail(Errc::system, "nats options", nats_text(s));
    if (s = natsConnection_Connect(&c->nc_, c->opts_); s != NATS_OK)
      return fail(Errc::connection_refused, "nats connect", fmt::format("{}: {}", url, nats_text(s)));
    if (s = natsConnection_JetStream(&c->js_, c->nc_, jo); s != NATS_OK) return fail(Errc::system, "nats jetstream", nats_text(s));
    return c;
  }
  NatsConn(const NatsConn&) = delete;
  NatsConn& operator=(const NatsConn&) = delete;
  ~NatsConn() {
    if (js_) jsCtx_Destroy(js_);
    if (nc_) natsConnection_Destroy(nc_);
    if (opts_) natsOptions_Destroy(opts_);
  }
  natsConnection* nc() const noexcept { return nc_; }
  jsCtx* js() const noexcept { return js_; }

 private:
  NatsConn() = default;
  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

// What the publish-ack handler (on a thread of the library) shares with the publisher. The
// library may still run the handler while a failed measurement unwinds: the state is kept for
// the rest of the process rather than freed under it (one small object per measurement).
struct AckState {
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t acked = 0;
  std::optional<std::string> error;
};

void on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* st = static_cast<AckState*>(closure);
  {
    std::lock_guard lk(st->m);
    if (pa) ++st->acked;
    else if (!st->error)
      st->error = pae ? fmt::format("{} (status {}, error code {})", pae->ErrText ? pae->ErrText : "?", natsStatus_GetText(pae->Err),
                                    static_cast<int>(pae->ErrCode))
                      : std::string("no acknowledgement");
  }
  st->cv.notify_all();
  natsMsg_Destroy(msg);
}

class NatsPublisher final : public Publisher {
 public:
  static Result<std::unique_ptr<NatsPublisher>> open(const std::string& url, Alive alive) {
    auto p = std::unique_ptr<NatsPublisher>(new NatsPublisher(std::move(alive)));
    jsOptions jo;
    jsOptions_Init(&jo);
    // The window is the publisher's own count (as for every impl); the library's limit is
    // above it so that it never stalls a publish by itself.
    jo.PublishAsync.MaxPending = 2 * kWindow;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = p->state_.get();
    auto c = NatsConn::open(url, &jo);
    if (!c) return std::unexpected(c.error());
    p->conn_ = std::move(*c);
    return p;
  }
  ~NatsPublisher() override {
    conn_.reset();
    static std::mutex m;
    static std::vector<std::shared_ptr<AckState>> kept;  // see AckState
    std::lock_guard lk(m);
    kept.push_back(std::move(state_));
  }

  Status publish(std::span<const std::byte> body, ConfirmClock& clock) override {
    if (auto s = keep_going("nats publish", alive_, true); !s) return s;
    if (auto s = wait_until([&] { return sent_ - state_->acked < kWindow; }, clock, true); !s) return s;
    if (natsStatus s = js_PublishAsync(conn_->js(), kSubject, body.data(), static_cast<int>(body.size()), nullptr); s != NATS_OK)
      return failed(fail(Errc::closed, "nats publish", nats_text(s)));
    ++sent_;
    return {};
  }

  Status finish(ConfirmClock& clock) override {
    return wait_until([&] { return state_->acked >= sent_; }, clock, false);
  }

 private:
  explicit NatsPublisher(Alive alive) : alive_(std::move(alive)), state_(std::make_shared<AckState>()) {}

  // Waits (in slices) until `done` (called under the state's lock), telling `clock` of the acks.
  template <class Done>
  Status wait_until(Done done, ConfirmClock& clock, bool watch_child) {
    std::unique_lock lk(state_->m);
    for (;;) {
      clock.saw(state_->acked);
      if (state_->error) {
        auto why = *state_->error;
        lk.unlock();
        return explain(alive_, fail(Errc::system, "nats publish ack", why));
      }
      if (done()) return {};
      if (state_->cv.wait_for(lk, 100ms) == std::cv_status::timeout) {
        lk.unlock();
        if (auto s = keep_going("nats publish acks", alive_, watch_child); !s) return s;
        lk.lock();
      }
    }
  }

  // The server's death explains a failed call better than the call's own error.
  Status failed(std::unexpected<Error> e) { return explain(alive_, std::move(e)); }

  Alive alive_;
  std::shared_ptr<AckState> state_;
  std::unique_ptr<NatsConn> conn_;
  std::uint64_t sent_ = 0;
};

class NatsConsumer final : public Consumer {
 public:
  NatsConsumer(std::unique_ptr<NatsConn> conn, natsSubscription* sub) : conn_(std::move(conn)), sub_(sub) {}
  ~NatsConsumer() override {
    natsMsg_Destroy(msg_);
    // The acks are published asynchronously: they leave before the connection closes.
    (void)natsConnection_FlushTimeout(conn_->nc(), 5000);
    natsSubscription_Destroy(sub_);
  }

  Result<std::span<const std::byte>> next() override {
    natsMsg_Destroy(msg_);
    msg_ = nullptr;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(kIdle).count();
    if (natsStatus s = natsSubscription_NextMsg(&msg_, sub_, ms); s != NATS_OK) {
      if (s == NATS_TIMEOUT) return fail(Errc::timeout, "nats consume", fmt::format("no message for {} s", ms / 1000));
      return fail(Errc::closed, "nats consume", nats_text(s));
    }
    return std::span<const std::byte>(reinterpret_cast<const std::byte*>(natsMsg_GetData(msg_)),
                                      static_cast<std::size_t>(natsMsg_GetDataLength(msg_)));
  }

  Status ack() override {
    if (natsStatus s = natsMsg_Ack(msg_, nullptr); s != NATS_OK) return fail(Errc::closed, "nats ack", nats_text(s));
    return {};
  }

 private:
  std::unique_ptr<NatsConn> conn_;
  natsSubscription* sub_;
  natsMsg* msg_ = nullptr;
};

class NatsSetup final : public BrokerSetup {
 public:
  explicit NatsSetup(const RunCtx& c) : BrokerSetup(c), dir_(c.path + ".nats") {}
  ~NatsSetup() override {
    if (!parent_) return;
    if (server_) server_->stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Status start(ChildWiring& wiring) override {
    parent_ = true;
    if (::mkdir(dir_.c_str(), 0700) != 0) return sys_error("mkdir", dir_);
    auto port = free_port();
    if (!port) return std::unexpected(port.error());
    url_ = fmt::format("nats://127.0.0.1:{}", *port);
    const std::string conf = dir_ + "/nats.conf";
    if (auto s = write_file(conf, fmt::format("listen: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}/js\"\n}}\n", *port, dir_)); !s)
      return s;
    auto d = Daemon::start("nats-server", {IPCX_BENCH_NATS_SERVER, "-c", conf}, {}, dir_ + "/nats.log");
    if (!d) return std::unexpected(d.error());
    server_ = std::move(*d);
    // Ready once it takes a connection and makes the stream.
    if (auto s = wait_ready(*server_, 10s, [&]() -> Status {
          auto c = NatsConn::open(url_);
          if (!c) return std::unexpected(c.error());
          jsStreamConfig sc;
          jsStreamConfig_Init(&sc);
          const char* subjects[] = {kSubject};
          sc.Name = kStream;
          sc.Subjects = subjects;
          sc.SubjectsLen = 1;
          sc.Storage = js_FileStorage;
          sc.Retention = js_WorkQueuePolicy;
          jsStreamInfo* si = nullptr;
          jsErrCode jerr{};
          natsStatus st = js_AddStream(&si, (*c)->js(), &sc, nullptr, &jerr);
          jsStreamInfo_Destroy(si);
          if (st != NATS_OK) return fail(Errc::system, "nats add stream", fmt::format("{} (error code {})", nats_text(st), static_cast<int>(jerr)));
          return {};
        });
        !s)
      return s;
    wiring.env(fmt::format("{}={}", kServerVar, url_));
    return {};
  }

  Made<Consumer> consumer() override {
    auto url = server_from_env();
    if (!url) return std::unexpected(url.error());
    auto c = NatsConn::open(*url);
    if (!c) return std::unexpected(c.error());
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = kStream;
    so.ManualAck = true;
    so.Config.Durable = kDurable;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.MaxAckPending = kPrefetch;
    natsSubscription* sub = nullptr;
    jsErrCode jerr{};
    if (natsStatus s = js_SubscribeSync(&sub, (*c)->js(), kSubject, nullptr, &so, &jerr); s != NATS_OK)
      return fail(Errc::system, "nats subscribe", fmt::format("{} (error code {})", nats_text(s), static_cast<int>(jerr)));
    return std::make_unique<NatsConsumer>(std::move(*c), sub);
  }

  Made<Publisher> publisher() override {
    auto p = NatsPublisher::open(url_, alive_while(*server_, "broker"));
    if (!p) return std::unexpected(p.error());
    return std::unique_ptr<Publisher>(std::move(*p));
  }

 private:
  std::string dir_, url_;
  bool parent_ = false;
  std::unique_ptr<Daemon> server_;
};

}  // namespace

std::string nats_missing() {
  if (::access(IPCX_BENCH_NATS_SERVER, X_OK) != 0)
    return fmt::format("{} not found (scripts/install-deps.sh --peers installs nats-server)", IPCX_BENCH_NATS_SERVER);
  return {};
}

std::unique_ptr<Setup> nats_setup(const RunCtx& c, Durability) { return std::make_unique<NatsSetup>(c); }

}  // namespace ipcx::bench::broker
