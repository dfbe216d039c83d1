// The broker rows' ipcx side: an ipcxd of the bench's own (the one next to the ipcx executable)
// for one measurement, on a Unix socket and a state directory in the run directory, with
// `--http off --quiet --group-window 2000`. The parent declares the queue (Sync::always for
// broker-durable, Sync::group for broker-group) and publishes with publish_async() (at most
// kWindow unconfirmed) then confirm_all(); the echo child consumes (prefetch kPrefetch) and
// acks every delivery once it has checked it. The daemon is stopped (SIGTERM) and its state
// removed when the measurement ends, however it ends.
#include <filesystem>
#include <string>
#include <utility>

#include <unistd.h>

#include <fmt/format.h>

#include <ipcx/broker.hpp>

#include "bench/rows_broker.hpp"

namespace ipcx::bench::broker {
namespace {

namespace ib = ipcx::broker;

class IpcxPublisher final : public Publisher {
 public:
  IpcxPublisher(ib::Client client, Alive alive) : client_(std::move(client)), alive_(std::move(alive)) {}

  Status publish(std::span<const std::byte> body, ConfirmClock& clock) override {
    if (auto s = keep_going("ipcx publish", alive_, true); !s) return s;
    // Waits for the oldest confirm while kWindow are outstanding.
    if (auto t = client_.publish_async(kQueue, body, {}, kWindow, 10s); !t) return failed(t.error());
    ++sent_;
    clock.saw(sent_ - client_.unconfirmed());
    return {};
  }

  Status finish(ConfirmClock& clock) override {
    if (auto r = client_.confirm_all(30s); !r) return failed(r.error());
    clock.saw(sent_);
    return {};
  }

 private:
  // The daemon's death explains a failed call better than the call's own error.
  Status failed(const Error& e) { return explain(alive_, std::unexpected(e)); }

  ib::Client client_;
  Alive alive_;
  std::uint64_t sent_ = 0;
};

class IpcxConsumer final : public Consumer {
 public:
  explicit IpcxConsumer(ib::Client client) : client_(std::move(client)) {}
  Result<std::span<const std::byte>> next() override {
    auto d = client_.next(kIdle);
    if (!d) return fail(d.error().code, "ipcx consume", describe(d.error()));
    last_ = std::move(*d);
    return std::span<const std::byte>(last_.body);
  }
  Status ack() override {
    // Not waiting for each answer, like the peers' consumers (a refusal surfaces at the next wait).
    if (auto r = client_.ack_async(last_); !r) return fail(r.error().code, "ipcx ack", describe(r.error()));
    return {};
  }

 private:
  ib::Client client_;
  ib::Delivery last_;
};

class IpcxBrokerSetup final : public BrokerSetup {
 public:
  IpcxBrokerSetup(const RunCtx& c, Durability d)
      : BrokerSetup(c), url_("unix://" + c.path + ".sock"), state_(c.path + ".state"), log_(c.path + ".ipcxd.log"), d_(d) {}
  ~IpcxBrokerSetup() override {
    if (!parent_) return;
    if (daemon_) daemon_->stop();
    std::error_code ec;
    std::filesystem::remove_all(state_, ec);
    ::unlink(url_.substr(7).c_str());  // a daemon killed before it removed its socket
    ::unlink(log_.c_str());
  }

 private:
  Status start(ChildWiring& wiring) override {
    parent_ = true;
    const auto exe = ipcxd_path();
    if (exe.empty()) return fail(Errc::not_found, "ipcxd", "not found next to the ipcx executable");
    auto d = Daemon::start("ipcxd", {exe, "--socket", url_, "--state-dir", state_, "--http", "off", "--quiet", "--group-window",
                                     fmt::format("{}", std::chrono::microseconds(kGroupWindow).count())},
                           {}, log_);
    if (!d) return std::unexpected(d.error());
    daemon_ = std::move(*d);
    ib::Client admin;
    auto up = wait_ready(*daemon_, 10s, [&]() -> Status {
      auto c = ib::Client::connect(url_, 200ms);
      if (!c) return std::unexpected(c.error());
      admin = std::move(*c);
      return {};
    });
    if (!up) return up;
    ib::QueueOptions o;
    o.sync = d_ == Durability::each ? ib::Sync::always : ib::Sync::group;
    if (auto r = admin.declare(kQueue, o); !r) return std::unexpected(r.error());
    wiring.env(fmt::format("{}={}", kServerVar, url_));
    return {};
  }

  Made<Consumer> consumer() override {
    auto url = server_from_env();
    if (!url) return std::unexpected(url.error());
    auto c = ib::Client::connect(*url);
    if (!c) return std::unexpected(c.error());
    if (auto r = c->consume(kQueue, kPrefetch); !r) return std::unexpected(r.error());
    return std::make_unique<IpcxConsumer>(std::move(*c));
  }

  Made<Publisher> publisher() override {
    auto c = ib::Client::connect(url_);
    if (!c) return std::unexpected(c.error());
    return std::make_unique<IpcxPublisher>(std::move(*c), alive_while(*daemon_, "broker"));
  }

  std::string url_, state_, log_;
  Durability d_;
  bool parent_ = false;
  std::unique_ptr<Daemon> daemon_;
};

}  // namespace

std::string ipcxd_path() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  auto path = (exe.parent_path() / "ipcxd").string();
  return ::access(path.c_str(), X_OK) == 0 ? path : std::string();
}

std::unique_ptr<Setup> ipcx_setup(const RunCtx& c, Durability d) { return std::make_unique<IpcxBrokerSetup>(c, d); }

}  // namespace ipcx::bench::broker
