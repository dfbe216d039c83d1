// Broker rows: confirmed durable messages through a broker, against the disk's own floor.
// The table, what every impl shares (message stamps, the confirm clock, the channel, the server
// processes the bench starts) and the raw setups. rows_broker.hpp says what is measured.
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

// ---- server processes -----------------------------------------------------------------------

namespace {

std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  return last;
}

// The child's exit, without reaping it; nullopt while it runs.
std::optional<siginfo_t> exited(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return std::nullopt;
  return info;
}

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::start(std::string name, const std::vector<std::string>& argv,
                                              const std::vector<std::string>& env, const std::string& log,
                                              const std::vector<std::string>& drop_prefixes) {
  // Everything the child needs is made before fork: the parent may run threads (a client
  // library's), so only async-signal-safe calls happen between fork and exec.
  const std::string owner = fmt::format("{}={}", kOwnerVar, ::getpid());
  std::vector<std::string> envs;
  auto replaced = [&](std::string_view entry) {
    const auto name_eq = entry.substr(0, entry.find('=') + 1);
    if (owner.starts_with(name_eq)) return true;
    for (auto& e : env)
      if (e.starts_with(name_eq)) return true;
    for (auto& p : drop_prefixes)
      if (entry.starts_with(p)) return true;
    return false;
  };
  for (char** e = environ; e && *e; ++e)
    if (!replaced(*e)) envs.emplace_back(*e);
  envs.insert(envs.end(), env.begin(), env.end());
  envs.push_back(owner);
  std::vector<char*> av, ev;
  for (auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (auto& e : envs) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);

  Fd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out) return sys_error("open", log);
  Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null) return sys_error("open", "/dev/null");
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);  // the kernel keeps the CPUs the bench may use
  sigset_t none;
  sigemptyset(&none);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return sys_error("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    ::dup2(null.get(), 0);
    ::dup2(out.get(), 1);
    ::dup2(out.get(), 2);
    ::sched_setaffinity(0, sizeof all, &all);  // not the parent's pinned CPU: the server runs where it can
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD}) ::sigaction(s, &dfl, nullptr);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(av[0], av.data(), ev.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // from both sides: a stop() right away finds the group
  return std::unique_ptr<Daemon>(new Daemon(std::move(name), pid, log));
}

bool Daemon::running() const { return pid_ > 0 && !exited(pid_); }

bool Daemon::exits_within(std::chrono::milliseconds grace) const {
  for (auto until = std::chrono::steady_clock::now() + grace;; std::this_thread::sleep_for(5ms)) {
    if (!running()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
  }
}

std::unexpected<Error> Daemon::died(const char* op) const {
  std::string how = "exited";
  if (auto info = pid_ > 0 ? exited(pid_) : std::nullopt) {
    if (info->si_code == CLD_EXITED) how = fmt::format("exited with status {}", info->si_status);
    else how = fmt::format("was killed by signal {}", info->si_status);
  }
  auto said = last_line(log_);
  return fail(Errc::closed, op, fmt::format("{} {}{}{}", name_, how, said.empty() ? "" : ": ", said));
}

void Daemon::stop(std::chrono::milliseconds grace) noexcept {
  if (pid_ <= 0) return;
  if (running()) {
    ::kill(-pid_, interrupted() ? SIGKILL : SIGTERM);
    for (auto until = std::chrono::steady_clock::now() + grace; running() && std::chrono::steady_clock::now() < until;) {
      if (interrupted()) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  // The leader is a zombie now (or still running after the grace): nothing of its group outlives
  // it, helpers included. Its pid, hence the group's id, stays taken until it is reaped below.
  ::kill(-pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = 0;
}

Status wait_ready(const Daemon& daemon, std::chrono::milliseconds timeout, const std::function<Status()>& ready) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto r = ready();
    if (r) return r;
    if (interrupted()) return fail(Errc::closed, "start", "interrupted");
    if (!daemon.running()) return daemon.died("start");
    if (std::chrono::steady_clock::now() >= until)
      return fail(Errc::timeout, "start", fmt::format("not ready after {} s: {}", timeout.count() / 1000, describe(r.error())));
    std::this_thread::sleep_for(50ms);
  }
}

Result<int> free_port() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return sys_error("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return sys_error("bind", "127.0.0.1:0");
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return sys_error("getsockname");
  return ntohs(a.sin_port);
}

Status write_file(const std::string& path, const std::string& text, mode_t mode) {
  Fd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!f) return sys_error("open", path);
  for (std::size_t off = 0; off < text.size();) {
    auto n = retry([&] { return ::write(f.get(), text.data() + off, text.size() - off); });
    if (n < 0) return sys_error("write", path);
    off += static_cast<std::size_t>(n);
  }
  return {};
}

Result<std::string> server_from_env() {
  const char* v = std::getenv(kServerVar);
  if (!v || !*v) return fail(Errc::invalid_argument, "echo child", fmt::format("{} not set", kServerVar));
  return std::string(v);
}

// ---- raw: the disk without a broker ---------------------------------------------------------
//
// The parent appends 1 KiB records (write(2), O_APPEND) to a file of its own in the run
// directory, the file system the servers keep their state on. broker-durable: fdatasync after
// each record, a record confirmed when its fdatasync returns. broker-group: the writer writes
// as fast as the window lets it and wakes a syncer thread, which waits the group window (2 ms),
// then fdatasyncs: the records written before the fdatasync began are confirmed when it returns
// (and a record written meanwhile wakes it again), as ipcxd's group commit does. After the
// timed part the file is read back and every record compared. No consumer: the echo child only
// starts and exits.

namespace {

class RawLogChannel final : public SelfTimedChannel {
 public:
  RawLogChannel() = default;  // the echo child's: nothing to do
  RawLogChannel(std::string path, Fd fd, Durability d) : path_(std::move(path)), fd_(std::move(fd)), d_(d) {}

  Result<Timing> measure(int warmup, int rounds) override {
    ConfirmClock clock(warmup, rounds);
    auto r = d_ == Durability::each ? each(clock) : group(clock);
    if (!r) return std::unexpected(r.error());
    auto t = clock.timing();
    if (!t) return t;
    if (auto v = read_back(clock.total()); !v) return std::unexpected(v.error());
    t->compared = true;
    return t;
  }
  Status answer(int, int) override { return {}; }

 private:
  Status write_record(std::span<const std::byte> body) {
    for (std::size_t off = 0; off < body.size();) {
      auto n = retry([&] { return ::write(fd_.get(), body.data() + off, body.size() - off); });
      if (n < 0) return sys_error("write", path_);
      off += static_cast<std::size_t>(n);
    }
    return {};
  }

  Status each(ConfirmClock& clock) {
    std::vector<std::byte> body(kSize);
    for (std::uint64_t n = 0; n < clock.total(); ++n) {
      if (interrupted()) return fail(Errc::closed, "raw log", "interrupted");
      stamp(body, n);
      if (auto s = write_record(body); !s) return s;
      if (::fdatasync(fd_.get()) != 0) return sys_error("fdatasync", path_);
      clock.saw(n + 1);
    }
    return {};
  }

  Status group(ConfirmClock& clock) {
    std::mutex m;
    std::condition_variable wake_syncer, wake_writer;
    std::uint64_t written = 0, durable = 0;
    bool requested = false, stop = false;
    std::optional<Error> failed;
    std::thread syncer([&] {
      std::unique_lock lk(m);
      for (;;) {
        wake_syncer.wait(lk, [&] { return stop || requested; });
        if (stop) return;
        lk.unlock();
        std::this_thread::sleep_for(kGroupWindow);  // more records share the fdatasync
        lk.lock();
        const auto upto = written;
        lk.unlock();
        std::optional<Error> bad;
        if (::fdatasync(fd_.get()) != 0) bad = sys_error("fdatasync", path_).error();
        lk.lock();
        if (bad) {
          failed = std::move(bad);
          stop = true;
          wake_writer.notify_all();
          return;
        }
        durable = std::max(durable, upto);
        requested = written > durable;  // written during the fdatasync: the next one
        wake_writer.notify_all();
      }
    });
    auto finish = [&](Status s) {
      {
        std::lock_guard lk(m);
        stop = true;
      }
      wake_syncer.notify_all();
      syncer.join();
      if (s && failed) return Status(std::unexpected(*failed));
      return s;
    };
    std::vector<std::byte> body(kSize);
    for (std::uint64_t n = 0; n <= clock.total(); ++n) {
      {
        std::unique_lock lk(m);
        // The window (as every impl's), and at the end every record confirmed.
        const auto limit = n < clock.total() ? n + 1 - std::min<std::uint64_t>(n + 1, kWindow) : clock.total();
        while (durable < limit && !failed) {
          wake_writer.wait_for(lk, 100ms);
          clock.saw(durable);
          if (interrupted()) {
            lk.unlock();
            return finish(fail(Errc::closed, "raw log", "interrupted"));
          }
        }
        if (failed) break;
        clock.saw(durable);
      }
      if (n == clock.total()) break;
      stamp(body, n);
      if (auto s = write_record(body); !s) return finish(s);
      std::lock_guard lk(m);
      written = n + 1;
      if (!requested) {
        requested = true;
        wake_syncer.notify_one();
      }
    }
    return finish({});
  }

  Status read_back(std::uint64_t total) const {
    Fd in(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return sys_error("open", path_);
    std::vector<std::byte> buf(kSize * 64);
    std::uint64_t n = 0;
    std::size_t have = 0;
    for (;;) {
      auto r = retry([&] { return ::read(in.get(), buf.data() + have, buf.size() - have); });
      if (r < 0) return sys_error("read", path_);
      have += static_cast<std::size_t>(r);
      std::size_t at = 0;
      for (; have - at >= kSize; at += kSize, ++n)
        if (auto s = check(std::span(buf).subspan(at, kSize), n); !s) return s;
      std::memmove(buf.data(), buf.data() + at, have - at);
      have -= at;
      if (r == 0) break;
    }
    if (n != total || have != 0)
      return fail(Errc::protocol, "verify", fmt::format("{} records read back from {}, {} written", n, path_, total));
    return {};
  }

  std::string path_;
  Fd fd_;
  Durability d_ = Durability::each;
};

class RawLogSetup final : public Setup {
 public:
  RawLogSetup(const RunCtx& c, Durability d) : path_(c.path + ".log"), d_(d) {}
  ~RawLogSetup() override {
    if (made_) ::unlink(path_.c_str());
  }
  Made<Channel> child_channel() override { return std::make_unique<RawLogChannel>(); }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    Fd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return sys_error("open", path_);
    made_ = true;
    return std::make_unique<RawLogChannel>(path_, std::move(fd), d_);
  }

 private:
  std::string path_;
  Durability d_;
  bool made_ = false;
};

template <Durability D>
std::unique_ptr<Setup> raw_log(const RunCtx& c) {
  return std::make_unique<RawLogSetup>(c, D);
}
template <Durability D>
std::unique_ptr<Setup> ipcxd(const RunCtx& c) {
  return ipcx_setup(c, D);
}

// ---- the table ------------------------------------------------------------------------------
//
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
