// Broker rows: confirmed durable messages through a broker, against the disk's own floor.
// The table and what every impl shares (message stamps, the confirm clock, the channel); the
// raw side is rows_broker_raw.cpp, the server processes broker_servers.cpp. rows_broker.hpp says
// what is measured.
#include "bench/rows_broker.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string_view>
#include <thread>

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "bench/mechanism.hpp"
#include "bench/session.hpp"

extern char** environ;

namespace ipcx::bench::broker {

// ---- messages -------------------------------------------------------------------------------

namespace {
std::byte body_byte(std::uint64_t n, std::size_t i) {
  return static_cast<std::byte>((n * 131 + i * 7) % 251 + 1);
}
}  // namespace

void stamp(std::span<std::byte> body, std::uint64_t n) {
  for (std::size_t i = 0; i < 8 && i < body.size(); ++i) body[i] = static_cast<std::byte>(n >> (8 * i));
  for (std::size_t i = 8; i < body.size(); ++i) body[i] = body_byte(n, i);
}

Status check(std::span<const std::byte> body, std::uint64_t n) {
  if (body.size() != kSize)
    return fail(Errc::protocol, "verify", fmt::format("message {}: {} bytes arrived, {} were sent", n, body.size(), kSize));
  std::uint64_t got = 0;
  for (std::size_t i = 0; i < 8; ++i) got |= static_cast<std::uint64_t>(body[i]) << (8 * i);
  if (got != n)
    return fail(Errc::protocol, "verify",
                fmt::format("message {} expected, message {} arrived (lost, repeated or out of order)", n, got));
  for (std::size_t i = 8; i < body.size(); ++i)
    if (body[i] != body_byte(n, i))
      return fail(Errc::protocol, "verify", fmt::format("message {}: byte {} of {} arrived changed", n, i, body.size()));
  return {};
}

// ---- the confirm clock ----------------------------------------------------------------------

ConfirmClock::ConfirmClock(int warmup, int rounds)
    : warmup_(std::max<std::uint64_t>(static_cast<std::uint64_t>(std::max(warmup, 0)), kMinWarmup)),
      rounds_(std::max<std::uint64_t>(static_cast<std::uint64_t>(std::max(rounds, 1)), kMinTimed)),
      total_(warmup_ + rounds_ + kWindow) {
  // Runs of kWindow to 2 kWindow - 1 confirms: one observation (at most kWindow confirms)
  // never crosses two marks.
  const auto runs = std::max<std::uint64_t>(rounds_ / kWindow, 1);
  for (std::uint64_t k = 0; k <= runs; ++k) marks_.push_back(warmup_ + rounds_ * k / runs);
  at_.reserve(marks_.size());
}

void ConfirmClock::saw(std::uint64_t confirmed) {
  while (at_.size() < marks_.size() && marks_[at_.size()] <= confirmed) at_.push_back(now_ns());
}

Result<Timing> ConfirmClock::timing() const {
  if (at_.size() != marks_.size())
    return fail(Errc::protocol, "confirms", fmt::format("the clock stopped before message {} was confirmed", marks_[at_.size()]));
  Timing t;
  // Cannot be 0 (a run is kWindow confirms or more): 1 ns at least all the same.
  for (std::size_t i = 1; i < at_.size(); ++i)
    t.samples_ns.push_back(std::max<std::uint64_t>((at_[i] - at_[i - 1]) / (marks_[i] - marks_[i - 1]), 1));
  const auto span = std::max<std::uint64_t>(at_.back() - at_.front(), 1);
  t.per_s = static_cast<double>(rounds_) * 1e9 / static_cast<double>(span);
  return t;
}

// ---- the channel ----------------------------------------------------------------------------

Status keep_going(const char* op, const Alive& alive, bool watch_child) {
  if (interrupted()) return fail(Errc::closed, op, "interrupted");
  // A server that died also raised SIGCHLD: name it rather than the echo child.
  if (alive && (child_exited() || !watch_child))
    if (auto a = alive(0ms); !a) return a;
  if (watch_child && child_exited()) return child_gone(op);
  return {};
}

Status explain(const Alive& alive, std::unexpected<Error> e) {
  if (interrupted()) return fail(Errc::closed, e.error().op, "interrupted");
  if (alive)
    if (auto a = alive(200ms); !a) return a;
  return e;
}

Alive alive_while(const Daemon& d, const char* what) {
  return [&d, what](std::chrono::milliseconds grace) -> Status {
    if (!d.exits_within(grace)) return {};
    return d.died(what);
  };
}

AckCounter::~AckCounter() {
  if (map_) ::munmap(map_, sizeof(std::uint64_t));
}

Status AckCounter::create(ChildWiring& wiring) {
  Fd fd(::memfd_create("ipcx-bench-broker-acks", MFD_CLOEXEC));
  if (!fd) return sys_error("memfd_create");
  if (::ftruncate(fd.get(), sizeof(std::uint64_t)) != 0) return sys_error("ftruncate");
  map_ = ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    return sys_error("mmap");
  }
  wiring.give(std::move(fd));
  return {};
}

Status AckCounter::open(const std::vector<int>& inherited) {
  if (inherited.empty()) return fail(Errc::invalid_argument, "echo child", "no ack counter handed over");
  Fd fd(inherited[0]);
  map_ = ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    return sys_error("mmap");
  }
  return {};
}

// One writer (the consumer), one reader (the publisher): a plain atomic word in the mapping.
std::uint64_t AckCounter::get() const noexcept {
  return std::atomic_ref(*static_cast<std::uint64_t*>(map_)).load(std::memory_order_acquire);
}
void AckCounter::set(std::uint64_t acked) noexcept {
  std::atomic_ref(*static_cast<std::uint64_t*>(map_)).store(acked, std::memory_order_release);
}

Result<Timing> BrokerChannel::measure(int warmup, int rounds) {
  ConfirmClock clock(warmup, rounds);
  std::vector<std::byte> body(kSize);
  for (std::uint64_t n = 0; n < clock.total(); ++n) {
    // Not more than kBacklog ahead of the consumer: looked at between publishes, slept on in
    // 20 µs naps (the consumer, kBacklog messages behind, is not starved meanwhile).
    while (n - std::min(n, acks_->get()) >= kBacklog) {
      if (auto s = keep_going("publish", {}, true); !s) return std::unexpected(s.error());
      std::this_thread::sleep_for(20us);
    }
    stamp(body, n);
    if (auto s = pub_->publish(body, clock); !s) return std::unexpected(s.error());
  }
  if (auto s = pub_->finish(clock); !s) return std::unexpected(s.error());
  auto t = clock.timing();
  // The echo child compared every message with what was sent; a difference fails the measurement.
  if (t) t->compared = true;
  return t;
}

Status BrokerChannel::answer(int warmup, int rounds) {
  const auto total = ConfirmClock(warmup, rounds).total();
  for (std::uint64_t n = 0; n < total; ++n) {
    auto body = sub_->next();
    if (!body) return std::unexpected(body.error());
    if (auto s = check(*body, n); !s) return s;
    if (auto s = sub_->ack(); !s) return s;
    acks_->set(n + 1);
  }
  return {};
}

Status BrokerSetup::parent_prepare(ChildWiring& wiring) {
  if (auto s = acks_->create(wiring); !s) return s;
  return start(wiring);
}

Result<std::string> BrokerSetup::child_prepare() {
  if (auto s = acks_->open(inherited_); !s) return std::unexpected(s.error());
  auto c = consumer();
  if (!c) return std::unexpected(c.error());
  consumer_ = std::move(*c);
  return std::string();
}

Made<Channel> BrokerSetup::child_channel() { return std::make_unique<BrokerChannel>(std::move(consumer_), acks_); }

Made<Channel> BrokerSetup::parent_channel(const std::string&, pid_t) {
  auto p = publisher();
  if (!p) return std::unexpected(p.error());
  return std::make_unique<BrokerChannel>(std::move(*p), acks_);
}

// ---- the table ------------------------------------------------------------------------------

namespace {

template <Durability D>
std::unique_ptr<Setup> raw_log(const RunCtx& c) {
  return raw_log_setup(c, D);
}
template <Durability D>
std::unique_ptr<Setup> ipcxd(const RunCtx& c) {
  return ipcx_setup(c, D);
}

// One row per durability with raw, ipcx and RabbitMQ, and one per durability with raw and NATS
// JetStream: the harness reports one peer per row, and ratios against its row's raw measurement.
// Built at first use: the servers are looked for on this machine (ipcxd next to the ipcx
// executable, rabbitmq-server and nats-server where the build found them).

#if IPCX_BENCH_RABBITMQ
template <Durability D>
std::unique_ptr<Setup> rabbitmq(const RunCtx& c) {
  return rabbitmq_setup(c, D);
}
#endif
#if IPCX_BENCH_NATS
template <Durability D>
std::unique_ptr<Setup> nats(const RunCtx& c) {
  return nats_setup(c, D);
}
#endif

struct Peer {
  MakeSetup each = nullptr, group = nullptr;
  std::string skipped;
};

Peer rabbitmq_peer() {
#if IPCX_BENCH_RABBITMQ
  if (auto why = rabbitmq_missing(); !why.empty()) return {.skipped = why};
  return {.each = rabbitmq<Durability::each>, .group = rabbitmq<Durability::group>};
#else
  return {.skipped = "RabbitMQ's C client (librabbitmq-dev) not found when ipcx was built"};
#endif
}

Peer nats_peer() {
#if IPCX_BENCH_NATS
  if (auto why = nats_missing(); !why.empty()) return {.skipped = why};
  return {.each = nats<Durability::each>, .group = nats<Durability::group>};
#elif IPCX_BENCH_NATS_TSAN
  return {.skipped = "NATS left out of ThreadSanitizer builds (libnats is not instrumented)"};
#else
  return {.skipped = "the NATS C client (libnats-dev) not found when ipcx was built"};
#endif
}

}  // namespace
}  // namespace ipcx::bench::broker

namespace ipcx::bench {

std::span<const Mechanism> broker_rows() {
  using namespace broker;
  static const Peer rabbit = rabbitmq_peer(), js = nats_peer();
  static const bool have_ipcxd = !ipcxd_path().empty();
  static const std::array<Mechanism, 4> rows{{
      {.name = "broker-durable",
       .group = Group::brokers,
       .purpose = "a durable queue: each message on disk (fdatasync) before its confirm, a consumer draining it",
       .raw = raw_log<Durability::each>,
       .ipcx = have_ipcxd ? ipcxd<Durability::each> : nullptr,
       .peer = rabbit.each,
       .fixed_size = kSize,
       .peer_skipped = rabbit.skipped,
       .peer_row = "rabbitmq-durable"},
      {.name = "broker-group",
       .group = Group::brokers,
       .purpose = "the same with group commit: one fdatasync for the messages of a 2 ms window",
       .raw = raw_log<Durability::group>,
       .ipcx = have_ipcxd ? ipcxd<Durability::group> : nullptr,
       .peer = rabbit.group,
       .fixed_size = kSize,
       .peer_skipped = rabbit.skipped,
       .peer_row = "rabbitmq-group"},
      {.name = "broker-durable-nats",
       .group = Group::brokers,
       .purpose = "broker-durable's raw floor beside NATS JetStream (file storage)",
       .raw = raw_log<Durability::each>,
       .peer = js.each,
       .fixed_size = kSize,
       .peer_skipped = js.skipped,
       .peer_row = "nats-js-durable"},
      {.name = "broker-group-nats",
       .group = Group::brokers,
       .purpose = "broker-group's raw floor beside NATS JetStream (file storage)",
       .raw = raw_log<Durability::group>,
       .peer = js.group,
       .fixed_size = kSize,
       .peer_skipped = js.skipped,
       .peer_row = "nats-js-group"},
  }};
  return rows;
}

}  // namespace ipcx::bench
