// The broker rows (bench/rows_broker.cpp) and their setups.
//
// A broker row's unit is a confirmed durable message: a publisher keeps at most kWindow
// publishes unconfirmed, a consumer in the echo child takes and acknowledges every message at
// the same time, and messages/s is confirms received per second. The measurement times itself
// (SelfTimedChannel): the harness's round trips and one-way bursts mean nothing here.
//
//   raw   the durability floor of the disk, without a broker: 1 KiB records appended to a file
//         in the run directory, fdatasync after each (broker-durable) or one fdatasync per group
//         window (broker-group)
//   ipcx  ipcxd (found next to the ipcx executable), Sync::always or Sync::group
//   peer  RabbitMQ (durable queue, persistent messages, publisher confirms) or NATS JetStream
//         (file storage, asynchronous publish acknowledgements), each started privately
//
// Every server is started by the parent for one measurement and stopped after it, its state
// removed, even when the measurement fails or the bench is interrupted (docs/bench.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <sys/types.h>

#include "bench/setup.hpp"

namespace ipcx::bench::broker {

using namespace std::chrono_literals;

inline constexpr std::size_t kSize = 1024;         // every message's body
inline constexpr std::size_t kWindow = 256;        // unconfirmed publishes at most, every impl
inline constexpr std::uint32_t kPrefetch = 256;    // unacknowledged deliveries at most, every consumer
// Timed messages at least (whatever --rounds says): a group commit confirms a window at a
// time, every 2 ms or so, and a few such cycles make a figure, one does not.
inline constexpr std::uint64_t kMinTimed = 4 * kWindow;
// How far the publisher may run ahead of the consumer's acknowledgements (AckCounter).
inline constexpr std::uint64_t kBacklog = 4 * kWindow;
// Warm-up messages at least: enough for a publisher faster than its consumer to be held back
// (kBacklog ahead) before the clock starts, so that the timed part is the steady state.
inline constexpr std::uint64_t kMinWarmup = 2 * kBacklog;
inline constexpr auto kGroupWindow = 2ms;          // ipcxd's --group-window, and the raw syncer's
inline constexpr auto kIdle = 60s;                 // a consumer waiting this long for a message fails
inline constexpr const char* kQueue = "ipcx-bench";
// Set in the environment of every server the bench starts (and so of their children): the
// bench's pid. Tests look for it to check that nothing was left running.
inline constexpr const char* kOwnerVar = "IPCX_BENCH_OWNER";
// Where the echo child finds the server (a URL or a port), set by the parent's setup.
inline constexpr const char* kServerVar = "IPCX_BENCH_BROKER";

// broker-durable: every message durable on its own; broker-group: fsyncs shared over a window.
enum class Durability { each, group };

// Message n's body: n as 8 little-endian bytes, then bytes that depend on n and their offset.
void stamp(std::span<std::byte> body, std::uint64_t n);
// Whether `body` is message n's, byte for byte; the error names what differs.
Status check(std::span<const std::byte> body, std::uint64_t n);

// Times the confirms of one measurement. The publisher sends warmup + rounds + kWindow
// messages: the warm-up fills the window, the last kWindow keep it full until the last timed
// message is confirmed (a publisher learns of confirms while it waits for room in the window:
// the timed part is the steady state, not the filling or the draining of the window). The
// clock runs from the warm-up's last confirm (max(warmup, kMinWarmup) messages) to the last
// timed one (max(rounds, kMinTimed) messages); a sample is the time per confirmed message
// over a run of kWindow to 2 kWindow - 1 confirms.
class ConfirmClock {
 public:
  ConfirmClock(int warmup, int rounds);
  // `confirmed`: the publisher's count of confirms so far (never decreasing).
  void saw(std::uint64_t confirmed);
  // Messages to publish (and to consume).
  std::uint64_t total() const noexcept { return total_; }
  // The samples, and messages/s over the timed part.
  Result<Timing> timing() const;

 private:
  std::uint64_t warmup_, rounds_, total_;
  std::vector<std::uint64_t> marks_;  // counts at which a time is taken
  std::vector<std::uint64_t> at_;     // the times taken, one per mark reached
};

// The parent's side of one impl: publishes with at most kWindow unconfirmed.
class Publisher {
 public:
  virtual ~Publisher() = default;
  // Sends `body`, first waiting (in slices that watch the echo child and the interrupt) while
  // kWindow publishes are unconfirmed; tells `clock` of the confirms it sees.
  virtual Status publish(std::span<const std::byte> body, ConfirmClock& clock) = 0;
  // Waits until every publish is confirmed.
  virtual Status finish(ConfirmClock& clock) = 0;
};

// The echo child's: takes the next message (waiting up to kIdle), then acknowledges it.
class Consumer {
 public:
  virtual ~Consumer() = default;
  virtual Result<std::span<const std::byte>> next() = 0;
  virtual Status ack() = 0;
};

// How many messages the consumer has acknowledged, in memory both processes map (a memfd the
// parent makes and hands to the echo child). The publisher stays at most kBacklog messages
// ahead of it: the figure is what a broker sustains with its consumer keeping up, not the
// speed at which a backlog builds up (a consumer slower than the publisher is the broker's
// to report, and a queue may not grow without bound).
class AckCounter {
 public:
  AckCounter() = default;
  AckCounter(const AckCounter&) = delete;
  AckCounter& operator=(const AckCounter&) = delete;
  ~AckCounter();
  // Parent: makes the counter (0) and gives it to the echo child.
  Status create(ChildWiring& wiring);
  // Echo child: maps the counter the parent gave (its first inherited descriptor).
  Status open(const std::vector<int>& inherited);
  std::uint64_t get() const noexcept;
  void set(std::uint64_t acked) noexcept;

 private:
  void* map_ = nullptr;
};

// The channel of every broker measurement: the parent publishes warmup + rounds stamped
// messages and times the confirms; the echo child consumes and checks every one of them.
class BrokerChannel final : public SelfTimedChannel {
 public:
  BrokerChannel(std::unique_ptr<Publisher> p, std::shared_ptr<AckCounter> acks) : pub_(std::move(p)), acks_(std::move(acks)) {}
  BrokerChannel(std::unique_ptr<Consumer> c, std::shared_ptr<AckCounter> acks) : sub_(std::move(c)), acks_(std::move(acks)) {}
  Result<Timing> measure(int warmup, int rounds) override;
  Status answer(int warmup, int rounds) override;

 private:
  std::unique_ptr<Publisher> pub_;
  std::unique_ptr<Consumer> sub_;
  std::shared_ptr<AckCounter> acks_;
};

// What every broker impl's setup shares: the ack counter, the channels. An impl starts its
// server (parent), and makes its publisher (parent) and its consumer (echo child).
class BrokerSetup : public Setup {
 public:
  explicit BrokerSetup(const RunCtx& c) : inherited_(c.inherited) {}
  Status parent_prepare(ChildWiring& wiring) final;
  Result<std::string> child_prepare() final;
  Made<Channel> child_channel() final;
  Made<Channel> parent_channel(const std::string& ready, pid_t child) final;

 protected:
  // Parent: starts the server and makes the queue; tells the child where (ChildWiring::env).
  virtual Status start(ChildWiring& wiring) = 0;
  // Echo child: connected and subscribed before it says ready.
  virtual Made<Consumer> consumer() = 0;
  // Parent, once the child is ready.
  virtual Made<Publisher> publisher() = 0;

 private:
  std::vector<int> inherited_;
  std::shared_ptr<AckCounter> acks_ = std::make_shared<AckCounter>();
  std::unique_ptr<Consumer> consumer_;
};

// A server process the bench starts for one measurement: its own process group (a ^C on the
// terminal is the bench's to handle), every CPU the bench may use (not the parent's pinned one),
// no signal blocked, stdout and stderr to `log`, PR_SET_PDEATHSIG(SIGKILL) so that it dies with
// a bench killed by SIGKILL. stop() (and the destructor): SIGTERM to the group (SIGKILL once the
// bench is interrupted), up to `grace` to exit, then SIGKILL to whatever of the group is left.
class Daemon {
 public:
  // `env`: "NAME=value" entries that replace the bench's own; names starting with one of
  // `drop_prefixes` are not passed on either.
  static Result<std::unique_ptr<Daemon>> start(std::string name, const std::vector<std::string>& argv,
                                               const std::vector<std::string>& env, const std::string& log,
                                               const std::vector<std::string>& drop_prefixes = {});
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  ~Daemon() { stop(); }

  // Not exited (it is not reaped until stop()).
  bool running() const;
  // Whether it exits within `grace`.
  bool exits_within(std::chrono::milliseconds grace) const;
  // An error naming the server and the last line it logged, for a server found dead.
  std::unexpected<Error> died(const char* op) const;
  void stop(std::chrono::milliseconds grace = 10s) noexcept;
  pid_t pid() const noexcept { return pid_; }

 private:
  Daemon(std::string name, pid_t pid, std::string log) : name_(std::move(name)), pid_(pid), log_(std::move(log)) {}
  std::string name_;
  pid_t pid_;
  std::string log_;
};

// Whether the server still runs; `grace`: how long to wait for it to finish exiting (its
// sockets close a moment before the kernel reports its exit).
using Alive = std::function<Status(std::chrono::milliseconds grace)>;
Alive alive_while(const Daemon& d, const char* what);
// Whether the parent should go on waiting: not after an interrupt, nor once the server is gone
// (`alive` says), nor (`watch_child`) once the echo child exited. The consumer may end before
// the last confirms arrive (it had every message): finish() does not watch it.
Status keep_going(const char* op, const Alive& alive, bool watch_child);
// What to report for a client call that failed with `e`: the server's death or the interrupt
// when that is the cause, else `e`.
Status explain(const Alive& alive, std::unexpected<Error> e);

// Polls `ready` every 50 ms until it succeeds, for at most `timeout`, giving up when the bench
// is interrupted or `daemon` exits. Returns the last error otherwise.
Status wait_ready(const Daemon& daemon, std::chrono::milliseconds timeout, const std::function<Status()>& ready);
// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice).
Result<int> free_port();
// Writes `text` to a new file `path` (mode `mode`).
Status write_file(const std::string& path, const std::string& text, mode_t mode = 0600);
// The echo child's server address (kServerVar), or an error.
Result<std::string> server_from_env();

// ipcx: ipcxd next to the ipcx executable; empty when there is none.
std::string ipcxd_path();
std::unique_ptr<Setup> raw_log_setup(const RunCtx& c, Durability d);  // rows_broker_raw.cpp
std::unique_ptr<Setup> ipcx_setup(const RunCtx& c, Durability d);
// RabbitMQ (rabbitmq-c in both processes, a private rabbitmq-server). Compiled only with
// librabbitmq (IPCX_BENCH_RABBITMQ); `rabbitmq_missing()` says why the server cannot run here
// (empty when it can).
std::unique_ptr<Setup> rabbitmq_setup(const RunCtx& c, Durability d);
std::string rabbitmq_missing();
// NATS JetStream (cnats in both processes, a private nats-server). Compiled only with libnats
// (IPCX_BENCH_NATS).
std::unique_ptr<Setup> nats_setup(const RunCtx& c, Durability d);
std::string nats_missing();

}  // namespace ipcx::bench::broker
