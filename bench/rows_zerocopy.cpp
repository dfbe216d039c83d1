// The zero-copy publish/subscribe row, shm-zerocopy (docs/bench.md, "Zero-copy row").
//
//   raw:  the `shm` row's raw setup, reused as is: the busy-polling SPSC byte ring in a memfd
//   ipcx: two topics of <ipcx/zerocopy.hpp>, one per direction; the sender loans a chunk, writes
//         a header of 64 bytes into it (the rest of a real payload is produced in the chunk,
//         not copied: what is measured is the handing over) and publishes it; the receiver take()s without waiting
//         (Timeout::zero()) in a loop, cpu_relax() between looks, and drops the Sample unread
//   peer: Eclipse iceoryx 2.0 (untyped publisher/subscriber, busy-polling), through a RouDi
//         daemon the bench starts itself; compiled only when bench/CMakeLists.txt found iceoryx
//
// Both zero-copy impls are set up not to drop: the subscriber makes the publisher wait when its
// queue is full (ipcx: Overflow::block; iceoryx: BLOCK_PRODUCER / WAIT_FOR_CONSUMER), and every
// receiver checks that each sample is the next one and has the expected size.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include <unistd.h>

#include <fmt/format.h>

#include "bench/mechanism.hpp"
#include "bench/session.hpp"

namespace ipcx::bench {
namespace {

using namespace std::chrono_literals;

// Two topic names of the measurement's own, derived from its unique path (which holds the
// bench's pid), known to the parent and the echo child alike.
std::string topic_base(const RunCtx& c) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a
  for (char ch : c.path) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return fmt::format("ipcx-bench-zc-{:016x}", h);
}

// Chunks per publisher: 64, fewer for big messages so that the two pools stay within 128 MiB
// (4 MiB: 16 chunks each), never fewer than 3: one loaned, one held by the subscriber, one queued.
std::size_t pool_chunks(std::size_t size) { return std::clamp<std::size_t>((std::size_t{64} << 20) / size, 3, 64); }

// ---- raw ----------------------------------------------------------------------------------------

// The spin ring of the `shm` row (rows_shm.cpp): the same baseline, measured again in this row
// so that the ratios compare measurements of the same moment.
std::unique_ptr<Setup> raw_ring(const RunCtx& c) { return find_mechanism("shm")->raw(c); }

// ---- ipcx ---------------------------------------------------------------------------------------

// The bytes of each message a zero-copy send writes into its loan (the rest of the chunk is not
// touched: handing it over is the point) and the receiver keeps for the verify rounds.
constexpr std::size_t kWritten = 64;

class ZeroCopyChannel final : public Channel {
 public:
  ZeroCopyChannel(shm::ZeroCopyPublisher pub, shm::ZeroCopySubscriber sub, bool parent)
      : pub_(std::move(pub)), sub_(std::move(sub)), parent_(parent) {}

  // One loan, a 64-byte header written into it (the payload's first bytes), one publish.
  Status send(std::span<const std::byte> msg) override {
    auto loan = pub_.loan(msg.size());
    while (!loan && loan.error().code == Errc::resource_exhausted) {  // no free chunk yet
      if (parent_ && child_exited()) return child_gone("loan");
      cpu_relax();
      loan = pub_.loan(msg.size());
    }
    if (!loan) return std::unexpected(loan.error());
    std::memcpy(loan->data().data(), msg.data(), std::min<std::size_t>(msg.size(), kWritten));
    for (;;) {  // waits (up to block_timeout) while the subscriber's queue is full
      auto r = pub_.publish(std::move(*loan));
      if (r) return {};
      if (r.error().code != Errc::timeout) return std::unexpected(r.error());
      if (parent_ && child_exited()) return child_gone("publish");  // the loan is still ours
    }
  }

  Status recv(std::size_t size) override {
    for (;;) {
      auto s = sub_.take(Timeout::zero());
      if (s) {
        if (s->sequence() != next_)
          return fail(Errc::protocol, "take", fmt::format("sample {}, expected {}", s->sequence(), next_));
        if (s->data().size() != size)
          return fail(Errc::protocol, "take", fmt::format("a sample of {} bytes, expected {}", s->data().size(), size));
        ++next_;
        const auto head = s->data().first(std::min<std::size_t>(size, kWritten));
        prefix_.assign(head.begin(), head.end());
        return {};  // the Sample goes back to the publisher's pool here
      }
      if (s.error().code != Errc::would_block) return std::unexpected(s.error());
      if (parent_ && child_exited()) return child_gone("take");
      cpu_relax();
    }
  }

 private:
  shm::ZeroCopyPublisher pub_;
  shm::ZeroCopySubscriber sub_;
  std::uint64_t next_ = 1;  // the subscriber opened before the first publication
  bool parent_;
  std::vector<std::byte> prefix_;  // the last sample's first bytes (those send() writes)

 public:
  std::span<const std::byte> received() const override { return prefix_; }
};

// Topic "<base>.down" (parent -> child) and "<base>.up" (child -> parent), one publisher and one
// subscriber each. The parent opens its ends before the child starts, the child its ends before
// it says ready: each subscriber exists before the first sample it must see is published.
class IpcxZeroCopySetup final : public Setup {
 public:
  explicit IpcxZeroCopySetup(const RunCtx& c)
      : size_(c.size), down_(topic_base(c) + ".down"), up_(topic_base(c) + ".up") {}
  // The parent, once the measurement is over (its channel closed, the echo child reaped): an
  // echo child killed mid-run (Ctrl-C) never closed its publisher and subscriber, so their topic
  // and data files stay (`ipcx shm gc` would take them); they are this run's own: removed here.
  ~IpcxZeroCopySetup() override {
    if (!parent_) return;
    pub_ = {};
    sub_ = {};
    const auto prefix = fmt::format("ipcx-{}-", ::geteuid());
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
      const auto name = e.path().filename().string();
      for (auto* topic : {&down_, &up_})
        if (name == prefix + *topic || name.starts_with(prefix + *topic + "@")) std::filesystem::remove(e.path(), ec);
    }
  }

  Status parent_prepare(ChildWiring&) override {
    parent_ = true;
    return open(down_, up_);
  }
  Result<std::string> child_prepare() override {
    if (auto r = open(up_, down_); !r) return std::unexpected(r.error());
    return std::string();
  }
  Made<Channel> child_channel() override { return channel(false); }
  Made<Channel> parent_channel(const std::string&, pid_t) override { return channel(true); }

 private:
  Status open(const std::string& out, const std::string& in) {
    const shm::TopicLimits limits{.max_publishers = 1, .max_subscribers = 1};
    const std::size_t chunks = pool_chunks(size_);
    auto pub = shm::ZeroCopyPublisher::create(
        out, {.max_payload = size_, .chunks = chunks, .block_timeout = 100ms, .topic = limits});
    if (!pub) return std::unexpected(pub.error());
    // Queued samples keep their chunks: room is left for the one loaned and the one held.
    auto sub = shm::ZeroCopySubscriber::open(
        in, {.queue = chunks - 2, .overflow = Overflow::block, .max_held = 1, .topic = limits});
    if (!sub) return std::unexpected(sub.error());
    pub_ = std::move(*pub);
    sub_ = std::move(*sub);
    return {};
  }
  Made<Channel> channel(bool parent) {
    return std::make_unique<ZeroCopyChannel>(std::move(pub_), std::move(sub_), parent);
  }

  std::size_t size_;
  std::string down_, up_;
  bool parent_ = false;
  shm::ZeroCopyPublisher pub_;
  shm::ZeroCopySubscriber sub_;
};

std::unique_ptr<Setup> ipcx_zerocopy(const RunCtx& c) { return std::make_unique<IpcxZeroCopySetup>(c); }

}  // namespace
}  // namespace ipcx::bench

#if IPCX_BENCH_ICEORYX
// ---- peer: Eclipse iceoryx 2.0 --------------------------------------------------------------------
//
// iceoryx needs its daemon, RouDi, and each process one runtime registered with it for its whole
// life (PoshRuntime::initRuntime, once per process). The bench therefore starts one RouDi of its
// own at its first peer measurement and keeps it until it exits: the bench's runtime could not
// follow a RouDi restarted per measurement. The echo children (new processes each time)
// register and unregister as they come and go.
//
// RouDi 2.0 has fixed, machine-wide names (/tmp/roudi, /tmp/iox-unique-roudi.lock,
// /dev/shm/iceoryx_mgmt and /dev/shm/<user>): it cannot be private, and a RouDi already running
// makes ours refuse to start, which fails the measurement with RouDi's own words.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include <iceoryx_hoofs/log/logmanager.hpp>
#include <iceoryx_posh/mepoo/chunk_header.hpp>
#include <iceoryx_posh/popo/untyped_publisher.hpp>
#include <iceoryx_posh/popo/untyped_subscriber.hpp>
#include <iceoryx_posh/runtime/posh_runtime.hpp>

namespace ipcx::bench {
namespace {

// RouDi's memory: it reserves (and touches) every chunk at start. The config file's size is
// the user payload a chunk holds (RouDi adds the chunk header). 64 B to 4 MiB messages fit; the
// pool of a size must hold the subscriber queue (iox_queue()) plus the chunks in flight both
// ways. About 120 MiB, plus RouDi's fixed 64 MiB management segment.
constexpr struct {
  std::size_t size, count;
} kPools[] = {{128, 256},    {1024, 256},   {4096, 256},   {16384, 128},
              {65536, 64},   {262144, 64},  {1 << 20, 32}, {4 << 20, 16}};
constexpr std::size_t kIoxMaxSize = 4 << 20;

std::uint64_t iox_queue(std::size_t size) { return size > (1 << 20) ? 8 : 16; }

template <class S>
S iox_string(const std::string& s) {
  return S(iox::cxx::TruncateToCapacity, s.c_str(), s.size());
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (off_t at = 0;;) {
    auto n = ::pread(fd, buf, sizeof buf, at);
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
}

// The last non-empty line of RouDi's log, for an error message.
std::string last_line(std::string log) {
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  auto nl = log.rfind('\n');
  return nl == std::string::npos ? log : log.substr(nl + 1);
}

// Set when an echo child ended without unregistering from RouDi.
bool g_child_lost = false;

// The bench's RouDi: started once, stopped (SIGTERM, which it answers by removing its files)
// when the bench exits. It dies with the bench (PR_SET_PDEATHSIG(SIGTERM)). Its config and its
// log are memfds: nothing of the bench's own is left on disk.
class Roudi {
 public:
  ~Roudi() { stop(); }

  // The parent, before its first iceoryx call. Never twice per process.
  Status start() {
    if (pid_ > 0) return {};
    if (!error_.empty()) return fail(Errc::system, "iox-roudi", error_);
    auto r = spawn();
    if (!r) error_ = r.error().message();
    return r;
  }

 private:
  Status spawn() {
    Fd config(::memfd_create("ipcx-bench-roudi.toml", 0));  // inherited: RouDi reads it by path
    log_ = Fd(::memfd_create("ipcx-bench-roudi.log", MFD_CLOEXEC));  // dup2 gives RouDi its own
    if (!config || !log_) return sys_error("memfd_create");
    std::string toml = "[general]\nversion = 1\n\n[[segment]]\n";
    for (auto& p : kPools) toml += fmt::format("\n[[segment.mempool]]\nsize = {}\ncount = {}\n", p.size, p.count);
    if (::write(config.get(), toml.data(), toml.size()) != static_cast<ssize_t>(toml.size())) return sys_error("write");
    const std::string path = fmt::format("/proc/self/fd/{}", config.get());
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return sys_error("fork");
    if (pid == 0) {  // async-signal-safe calls only until exec
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(log_.get(), 1);
      ::dup2(log_.get(), 2);
      ::setpgid(0, 0);  // a ^C on the terminal is the bench's to handle, not RouDi's
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the bench blocks some rows' signals
      ::execl(IPCX_BENCH_IOX_ROUDI, IPCX_BENCH_IOX_ROUDI, "-l", "info", "-m", "on", "-c", path.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    pid_ = pid;
    // Ready once it says so (its log line at level info), for at most 10 s.
    for (int i = 0; i < 1000; ++i) {
      auto log = read_all(log_.get());
      if (log.find("RouDi is ready for clients") != std::string::npos) return {};
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return fail(Errc::system, "iox-roudi",
                    fmt::format("exited at start ({}): {}", IPCX_BENCH_IOX_ROUDI, last_line(read_all(log_.get()))));
      }
      std::this_thread::sleep_for(10ms);
    }
    stop();
    return fail(Errc::timeout, "iox-roudi", "not ready for clients after 10 s");
  }

  void stop() noexcept {
    if (pid_ <= 0) return;
    // RouDi 2.0.3 aborts in its shutdown, leaving its files behind, when a process it still
    // counts as registered is gone (kill() fails with ESRCH: POSH__ROUDI_PROCESS_SHUTDOWN_FAILED).
    // An echo child killed (interrupt, failure) never unregistered: wait until RouDi's
    // monitoring has dropped it.
    if (g_child_lost) std::this_thread::sleep_for(iox::runtime::PROCESS_KEEP_ALIVE_TIMEOUT.toMilliseconds() * 1ms + 500ms);
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1000 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(10ms);
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = 0;
  }

  pid_t pid_ = 0;
  Fd log_;
  std::string error_;  // a RouDi that failed to start is not tried again
};

// iceoryx logs every registration to the console by default: the bench's output is its table.
void init_runtime(const std::string& name) {
  iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kError, iox::log::LogLevelOutput::kHideLogLevel);
  iox::runtime::PoshRuntime::initRuntime(iox_string<iox::RuntimeName_t>(name));
}

// The parent's RouDi and runtime, once per process. RouDi is constructed first, so it is
// destroyed (stopped) after the runtime, which unregisters from it on the way out: RouDi would
// otherwise SIGTERM the bench as an application still registered.
Status parent_runtime() {
  static Roudi roudi;
  if (auto r = roudi.start(); !r) return r;
  static const bool once = [] {
    // A runtime binds a socket /tmp/<its name>: not the run directory's name, /tmp/ipcx-bench-PID.
    init_runtime(fmt::format("ipcx-bench-iox-{}", ::getpid()));
    return true;
  }();
  (void)once;
  return {};
}

std::unexpected<Error> iox_error(const char* op, std::string what) { return fail(Errc::system, op, std::move(what)); }

class IceoryxChannel final : public Channel {
 public:
  IceoryxChannel(std::unique_ptr<iox::popo::UntypedPublisher> pub, std::unique_ptr<iox::popo::UntypedSubscriber> sub,
                 bool parent)
      : pub_(std::move(pub)), sub_(std::move(sub)), parent_(parent) {}

  Status send(std::span<const std::byte> msg) override {
    for (;;) {
      auto loan = pub_->loan(static_cast<std::uint32_t>(msg.size()));
      if (!loan.has_error()) {
        std::memcpy(loan.value(), msg.data(), std::min<std::size_t>(msg.size(), 64));  // as the ipcx impl
        pub_->publish(loan.value());  // waits while the subscriber's queue is full (WAIT_FOR_CONSUMER)
        return {};
      }
      auto e = loan.get_error();
      if (e != iox::popo::AllocationError::RUNNING_OUT_OF_CHUNKS)
        return iox_error("loan", fmt::format("iceoryx allocation error {} for {} bytes", static_cast<int>(e), msg.size()));
      if (parent_ && child_exited()) return child_gone("loan");
      cpu_relax();
    }
  }

  Status recv(std::size_t size) override {
    for (;;) {
      auto got = sub_->take();
      if (!got.has_error()) {
        const void* p = got.value();
        const auto* h = iox::mepoo::ChunkHeader::fromUserPayload(p);
        const auto n = h->userPayloadSize();
        const auto seq = h->sequenceNumber();
        sub_->release(p);
        if (seq != next_) return fail(Errc::protocol, "take", fmt::format("sample {}, expected {}", seq, next_));
        if (n != size) return fail(Errc::protocol, "take", fmt::format("a sample of {} bytes, expected {}", n, size));
        ++next_;
        return {};
      }
      if (got.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE)
        return iox_error("take", "iceoryx: too many chunks held");
      if (parent_ && child_exited()) return child_gone("take");
      cpu_relax();
    }
  }

 private:
  std::unique_ptr<iox::popo::UntypedPublisher> pub_;
  std::unique_ptr<iox::popo::UntypedSubscriber> sub_;
  std::uint64_t next_ = 0;  // iceoryx numbers a publisher's chunks from 0
  bool parent_;
};

// Service ("ipcx-bench", <measurement>, "down" | "up"): the parent publishes down, the child up.
class IceoryxSetup final : public Setup {
 public:
  explicit IceoryxSetup(const RunCtx& c) : size_(c.size), instance_(topic_base(c)) {}
  // Parent, the echo child reaped: a child that exited normally removed its runtime's socket.
  ~IceoryxSetup() override {
    if (child_ <= 0) return;
    const auto sock = fmt::format("/tmp/{}", runtime_name(child_));
    if (::access(sock.c_str(), F_OK) != 0) return;
    g_child_lost = true;  // killed: it left its socket and lock file, and its registration
    ::unlink(sock.c_str());
    ::unlink((sock + ".lock").c_str());
  }

  Status parent_prepare(ChildWiring&) override {
    if (size_ > kIoxMaxSize)
      return fail(Errc::too_large, "iceoryx",
                  fmt::format("the bench's RouDi pools carry up to {} bytes (measure larger sizes with --impls raw,ipcx)",
                              kIoxMaxSize));
    if (auto r = parent_runtime(); !r) return r;
    open("down", "up");
    return {};
  }
  Result<std::string> child_prepare() override {
    init_runtime(runtime_name(::getpid()));
    open("up", "down");
    // Connected both ways before the parent publishes: RouDi matches ports asynchronously.
    for (int i = 0; i < 1000; ++i) {
      if (sub_->getSubscriptionState() == iox::SubscribeState::SUBSCRIBED && pub_->hasSubscribers())
        return std::string();
      std::this_thread::sleep_for(10ms);
    }
    return fail(Errc::timeout, "iceoryx", "publisher and subscriber not connected by RouDi after 10 s");
  }
  Made<Channel> child_channel() override { return std::make_unique<IceoryxChannel>(std::move(pub_), std::move(sub_), false); }
  Made<Channel> parent_channel(const std::string&, pid_t child) override {
    child_ = child;
    for (int i = 0; !(pub_->hasSubscribers() && sub_->getSubscriptionState() == iox::SubscribeState::SUBSCRIBED); ++i) {
      if (child_exited()) return child_gone("iceoryx connect");
      if (i == 1000) return fail(Errc::timeout, "iceoryx", "publisher and subscriber not connected by RouDi after 10 s");
      std::this_thread::sleep_for(10ms);
    }
    return std::make_unique<IceoryxChannel>(std::move(pub_), std::move(sub_), true);
  }

 private:
  void open(const char* out, const char* in) {
    const auto service = iox_string<iox::capro::IdString_t>("ipcx-bench");
    const auto instance = iox_string<iox::capro::IdString_t>(instance_);
    iox::popo::PublisherOptions po;
    po.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
    pub_ = std::make_unique<iox::popo::UntypedPublisher>(
        iox::capro::ServiceDescription(service, instance, iox_string<iox::capro::IdString_t>(out)), po);
    iox::popo::SubscriberOptions so;
    so.queueCapacity = iox_queue(size_);
    so.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
    sub_ = std::make_unique<iox::popo::UntypedSubscriber>(
        iox::capro::ServiceDescription(service, instance, iox_string<iox::capro::IdString_t>(in)), so);
  }

  static std::string runtime_name(pid_t pid) { return fmt::format("ipcx-bench-iox-echo-{}", pid); }

  std::size_t size_;
  pid_t child_ = 0;
  std::string instance_;
  std::unique_ptr<iox::popo::UntypedPublisher> pub_;
  std::unique_ptr<iox::popo::UntypedSubscriber> sub_;
};

std::unique_ptr<Setup> iceoryx_zerocopy(const RunCtx& c) { return std::make_unique<IceoryxSetup>(c); }

}  // namespace
}  // namespace ipcx::bench
#endif

namespace ipcx::bench {
namespace {

#if IPCX_BENCH_ICEORYX
constexpr std::string_view kPeerSkipped{};
#define IPCX_BENCH_ICEORYX_PEER(setup) setup
#elif IPCX_BENCH_ICEORYX_TSAN
constexpr std::string_view kPeerSkipped = "iceoryx left out of ThreadSanitizer builds (iceoryx is not instrumented)";
#define IPCX_BENCH_ICEORYX_PEER(setup) nullptr
#else
constexpr std::string_view kPeerSkipped =
    "Eclipse iceoryx (iceoryx_posh, CMake package, and the iox-roudi daemon) not found when ipcx was built";
#define IPCX_BENCH_ICEORYX_PEER(setup) nullptr
#endif

const Mechanism kRows[] = {
    {.name = "shm-zerocopy",
     .group = Group::shared_memory,
     .purpose = "zero-copy publish/subscribe: loan, write in place, publish; no copy at any size",
     .raw = raw_ring,
     .ipcx = ipcx_zerocopy,
     .peer = IPCX_BENCH_ICEORYX_PEER(iceoryx_zerocopy),
     .peer_skipped = kPeerSkipped,
     .handover = true},
};

#undef IPCX_BENCH_ICEORYX_PEER

}  // namespace

std::span<const Mechanism> zerocopy_rows() { return kRows; }

}  // namespace ipcx::bench
