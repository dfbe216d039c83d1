// ipcx bench: round-trip latency and one-way throughput of each mechanism, measured through the
// ipcx API ("ipcx") and through bare system calls on the same kernel object ("raw"), in the same
// run, so the ratio ipcx/raw is what the figures mean (these machines are noisy).
//
// Each measurement (mechanism, impl, size) forks one echo child pinned to another CPU. The parent
// measures; the child reports "ready" (and any error, as one line) over a control pipe, echoes
// `warmup + rounds` ping-pongs, then receives the throughput burst and answers with one ack.
//
// Adding a mechanism: write a raw and an ipcx Setup (how each process gets its Channel after
// fork), and add one row to kMechanisms. The raw side makes system calls directly on purpose:
// it is the baseline the library is compared with.
#include "cli/bench.hpp"
#include "os/sys.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <expected>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <ipcx/ipcx.hpp>

namespace ipcx::cli {
namespace {

using namespace std::chrono_literals;
using Status = Result<void>;
template <class T>
using Made = Result<std::unique_ptr<T>>;

// ---- small helpers ---------------------------------------------------------------------------

std::unexpected<Error> sys_error(const char* op, std::string detail = {}) {
  return fail_errno(errno, op, std::move(detail));
}

Status set_blocking(int fd) { return os::set_nonblocking(fd, false); }

std::uint64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

constexpr std::byte kFill{0xa5};            // every payload byte
constexpr std::int32_t kWake = 0x0badc0de;  // differs from any value made of kFill bytes
constexpr int kRawSignalOffset = kDefaultSignalOffset + 1;  // raw rows never see ipcx's signal
constexpr std::size_t kBulkRead = 64 * 1024;  // raw stream receivers read this much at once
constexpr std::size_t kMaxSize = std::size_t{64} << 20;  // ipcx's default Options::max_message

// A signal wait is no descriptor: it cannot see the echo child die. SIGCHLD then queues kWake
// on the signal the parent waits for (sigqueue is async-signal-safe), and the receive fails.
volatile std::sig_atomic_t g_child_exited = 0;
volatile std::sig_atomic_t g_wake_signo = 0;
// SIGINT/SIGTERM: kill the echo child, so the parent's blocking calls fail and it cleans up.
volatile std::sig_atomic_t g_interrupted = 0;
volatile pid_t g_child_pid = 0;

void on_sigchld(int) {
  int saved = errno;
  g_child_exited = 1;
  if (int s = g_wake_signo) {
    sigval v{};
    v.sival_int = kWake;
    ::sigqueue(::getpid(), s, v);
  }
  errno = saved;
}

void on_interrupt(int sig) {
  int saved = errno;
  g_interrupted = sig;
  if (pid_t p = g_child_pid) ::kill(p, SIGKILL);
  errno = saved;
}

bool is_wake(std::int32_t value) noexcept { return g_child_exited && value == kWake; }
std::unexpected<Error> child_gone() { return fail(Errc::closed, "recv", "the echo child exited"); }

// ---- Channel: one process's end of an established conversation -------------------------------

class Channel {
 public:
  virtual ~Channel() = default;
  // Sends one message (blocks until the kernel has taken it).
  virtual Status send(std::span<const std::byte> msg) = 0;
  // Receives one message of exactly `size` bytes into the channel's own buffer (blocks).
  virtual Status recv(std::size_t size) = 0;
  // Receives `count` messages of `size` bytes: the throughput receiver.
  virtual Status recv_many(std::size_t count, std::size_t size) {
    for (std::size_t i = 0; i < count; ++i)
      if (auto r = recv(size); !r) return r;
    return {};
  }
};

// Through the ipcx API: blocking calls (timeout forever), one Message reused for every recv.
class IpcxChannel final : public Channel {
 public:
  explicit IpcxChannel(Connection c) : conn_(std::move(c)) {}
  Status send(std::span<const std::byte> msg) override { return conn_.send(msg); }
  Status recv(std::size_t size) override {
    if (auto r = conn_.recv(msg_); !r) return r;
    if (msg_.size() == size) {
      if (size == sizeof kWake && g_child_exited) {
        std::int32_t v;
        std::memcpy(&v, msg_.data.data(), sizeof v);
        if (is_wake(v)) return child_gone();
      }
      return {};
    }
    return fail(Errc::protocol, "recv", fmt::format("expected {} bytes, got {}", size, msg_.size()));
  }

 private:
  Connection conn_;
  Message msg_;
};

// Raw descriptors: read/write on a pipe, FIFO pair or socket. A stream receiver loops on partial
// reads until it has exactly `size` bytes (and reads big chunks for throughput); a record
// receiver (SOCK_SEQPACKET) gets one message per read.
class FdChannel final : public Channel {
 public:
  enum class Kind { stream, records };
  // `wfd` invalid: write to `rfd` (a socket).
  FdChannel(Fd rfd, Fd wfd, Kind kind, std::size_t size)
      : rfd_(std::move(rfd)), wfd_(std::move(wfd)), kind_(kind), buf_(std::max(size + 1, kBulkRead)) {}

  Status send(std::span<const std::byte> msg) override {
    int fd = wfd_.valid() ? wfd_.get() : rfd_.get();
    for (std::size_t off = 0; off < msg.size();) {
      ssize_t n = os::retry([&] { return ::write(fd, msg.data() + off, msg.size() - off); });
      if (n < 0) return sys_error("write");
      off += static_cast<std::size_t>(n);
    }
    return {};
  }

  Status recv(std::size_t size) override {
    if (kind_ == Kind::records) {
      ssize_t n = os::retry([&] { return ::read(rfd_.get(), buf_.data(), size + 1); });
      if (n < 0) return sys_error("read");
      if (n == 0) return fail(Errc::closed, "read", "peer closed");
      if (static_cast<std::size_t>(n) != size)
        return fail(Errc::protocol, "read", fmt::format("record of {} bytes, expected {}", n, size));
      return {};
    }
    return read_stream(size, size);
  }

  Status recv_many(std::size_t count, std::size_t size) override {
    if (kind_ == Kind::records) return Channel::recv_many(count, size);
    return read_stream(count * size, buf_.size());
  }

 private:
  Status read_stream(std::size_t total, std::size_t chunk) {
    for (std::size_t got = 0; got < total;) {
      std::size_t want = std::min(chunk, total - got);
      ssize_t n = os::retry([&] { return ::read(rfd_.get(), buf_.data(), want); });
      if (n < 0) return sys_error("read");
      if (n == 0) return fail(Errc::closed, "read", "peer closed");
      got += static_cast<std::size_t>(n);
    }
    return {};
  }

  Fd rfd_, wfd_;
  Kind kind_;
  std::vector<std::byte> buf_;
};

// Raw signals: sigqueue(2) one int, sigwaitinfo(2) for the reply (the signal is blocked).
class SignalChannel final : public Channel {
 public:
  SignalChannel(pid_t peer, int signo) : peer_(peer), signo_(signo) {
    sigemptyset(&set_);
    sigaddset(&set_, signo);
  }
  Status send(std::span<const std::byte> msg) override {
    sigval v{};
    std::memcpy(&v.sival_int, msg.data(), sizeof v.sival_int);
    while (::sigqueue(peer_, signo_, v) != 0) {
      if (errno == EAGAIN) ::sched_yield();  // the peer's queue of pending signals is full
      else if (errno != EINTR) return sys_error("sigqueue");
    }
    return {};
  }
  Status recv(std::size_t) override {
    siginfo_t si{};
    if (os::retry([&] { return ::sigwaitinfo(&set_, &si); }) < 0) return sys_error("sigwaitinfo");
    if (is_wake(si.si_value.sival_int)) return child_gone();
    return {};
  }

 private:
  pid_t peer_;
  int signo_;
  sigset_t set_;
};

// ---- Setup: how both processes get their Channel ---------------------------------------------
//
// Made in the parent before fork() (anything both processes inherit is created here). Then:
//   child:  child_prepare() -> "ready TEXT" on the control pipe -> child_channel() (may block
//           until the parent connects)
//   parent: waits for "ready TEXT" -> parent_channel(TEXT)
// Each side closes or destroys the objects meant for the other one.

struct RunCtx {
  std::size_t size;
  std::string path;  // unique per measurement, inside the run's private directory
};

class Setup {
 public:
  virtual ~Setup() = default;
  // Child: creates what the parent will open or connect to; returns what the parent needs to
  // find it (e.g. a URL with a kernel-chosen port).
  virtual Result<std::string> child_prepare() { return std::string(); }
  virtual Made<Channel> child_channel() = 0;
  virtual Made<Channel> parent_channel(const std::string& ready, pid_t child) = 0;
  // The signal the parent waits on, when it waits on a signal rather than a descriptor.
  virtual int wake_signal() const { return 0; }
};

using MakeSetup = Made<Setup> (*)(const RunCtx&);

Made<Channel> ipcx_channel(Result<Connection> c) {
  if (!c) return std::unexpected(std::move(c.error()));
  return std::make_unique<IpcxChannel>(std::move(*c));
}

// ipcx: the child listens at a URL and accepts; the parent connects.
class IpcxListenSetup final : public Setup {
 public:
  // `connect_url` turns the listener's URL into the one the parent connects to.
  using ConnectUrl = std::string (*)(const std::string& listener_url, pid_t child);
  IpcxListenSetup(std::string url, ConnectUrl connect_url = nullptr, int wake = 0)
      : url_(std::move(url)), connect_url_(connect_url), wake_(wake) {}

  Result<std::string> child_prepare() override {
    auto l = ipcx::listen(url_);
    if (!l) return std::unexpected(std::move(l.error()));
    listener_ = std::move(*l);
    return listener_.url();
  }
  Made<Channel> child_channel() override {
    auto c = listener_.accept();
    listener_.close();  // removes the socket/FIFO files; the connection stays up
    return ipcx_channel(std::move(c));
  }
  Made<Channel> parent_channel(const std::string& ready, pid_t child) override {
    return ipcx_channel(ipcx::connect(connect_url_ ? connect_url_(ready, child) : ready));
  }
  int wake_signal() const override { return wake_; }

 private:
  std::string url_;
  ConnectUrl connect_url_;
  int wake_;
  Listener listener_;
};

Made<Setup> ipcx_listen(std::string url) { return std::make_unique<IpcxListenSetup>(std::move(url)); }

// ipcx: pipe_pair() before fork; each process destroys the Connection meant for the other.
class IpcxPipeSetup final : public Setup {
 public:
  static Made<Setup> make(const RunCtx&) {
    auto p = ipcx::pipe_pair();
    if (!p) return std::unexpected(std::move(p.error()));
    auto s = std::make_unique<IpcxPipeSetup>();
    s->parent_ = std::move(p->first);
    s->child_ = std::move(p->second);
    return s;
  }
  Made<Channel> child_channel() override {
    parent_ = Connection();
    return std::make_unique<IpcxChannel>(std::move(child_));
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    child_ = Connection();
    return std::make_unique<IpcxChannel>(std::move(parent_));
  }

 private:
  Connection parent_, child_;
};

// raw: two pipe2() pairs before fork, "down" (parent -> child) and "up" (child -> parent).
class RawPipeSetup final : public Setup {
 public:
  static Made<Setup> make(const RunCtx& c) {
    int down[2], up[2];
    if (::pipe2(down, O_CLOEXEC) != 0) return sys_error("pipe2");
    Fd down_r(down[0]), down_w(down[1]);
    if (::pipe2(up, O_CLOEXEC) != 0) return sys_error("pipe2");
    auto s = std::make_unique<RawPipeSetup>();
    s->size_ = c.size;
    s->down_r_ = std::move(down_r);
    s->down_w_ = std::move(down_w);
    s->up_r_ = Fd(up[0]);
    s->up_w_ = Fd(up[1]);
    return s;
  }
  Made<Channel> child_channel() override {
    down_w_.reset();
    up_r_.reset();
    return std::make_unique<FdChannel>(std::move(down_r_), std::move(up_w_), FdChannel::Kind::stream, size_);
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    down_r_.reset();
    up_w_.reset();
    return std::make_unique<FdChannel>(std::move(up_r_), std::move(down_w_), FdChannel::Kind::stream, size_);
  }

 private:
  std::size_t size_ = 0;
  Fd down_r_, down_w_, up_r_, up_w_;
};

// raw: two FIFOs. Opening one end of a FIFO blocks until the other end is open, so the parent
// opens its read end (non-blocking) before fork and the child opens its read end before it
// reports ready: no open() ever waits for a process that might have died.
class RawFifoSetup final : public Setup {
 public:
  static Made<Setup> make(const RunCtx& c) {
    auto s = std::make_unique<RawFifoSetup>();
    s->size_ = c.size;
    s->down_ = c.path + ".down";
    s->up_ = c.path + ".up";
    if (::mkfifo(s->down_.c_str(), 0600) != 0) return sys_error("mkfifo", s->down_);
    if (::mkfifo(s->up_.c_str(), 0600) != 0) return sys_error("mkfifo", s->up_);
    s->up_r_ = Fd(::open(s->up_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!s->up_r_) return sys_error("open", s->up_);
    return s;
  }
  ~RawFifoSetup() override {
    ::unlink(down_.c_str());
    ::unlink(up_.c_str());
  }
  Result<std::string> child_prepare() override {
    up_r_.reset();
    down_r_ = Fd(::open(down_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!down_r_) return sys_error("open", down_);
    up_w_ = Fd(::open(up_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));  // the parent reads it
    if (!up_w_) return sys_error("open", up_);
    if (auto r = set_blocking(up_w_.get()); !r) return std::unexpected(r.error());
    return std::string();
  }
  Made<Channel> child_channel() override {
    // Until the parent opens its write end, a read would see end-of-file: wait for its first
    // message (a FIFO never writer-opened does not poll as hung up).
    pollfd p{down_r_.get(), POLLIN, 0};
    if (os::retry([&] { return ::poll(&p, 1, -1); }) < 0) return sys_error("poll", down_);
    if (auto r = set_blocking(down_r_.get()); !r) return std::unexpected(r.error());
    return std::make_unique<FdChannel>(std::move(down_r_), std::move(up_w_), FdChannel::Kind::stream, size_);
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    Fd down_w(::open(down_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));  // the child reads it
    if (!down_w) return sys_error("open", down_);
    if (auto r = set_blocking(down_w.get()); !r) return std::unexpected(r.error());
    if (auto r = set_blocking(up_r_.get()); !r) return std::unexpected(r.error());
    return std::make_unique<FdChannel>(std::move(up_r_), std::move(down_w), FdChannel::Kind::stream, size_);
  }

 private:
  std::size_t size_ = 0;
  std::string down_, up_;
  Fd up_r_, down_r_, up_w_;
};

// raw: socket/bind/listen/accept in the child, socket/connect in the parent. AF_UNIX (stream or
// seqpacket) at the measurement's path, or TCP on 127.0.0.1 with a kernel-chosen port and
// TCP_NODELAY on both ends.
class RawSocketSetup final : public Setup {
 public:
  RawSocketSetup(int family, int type, const RunCtx& c) : family_(family), type_(type), ctx_(c) {}

  Result<std::string> child_prepare() override {
    listener_ = Fd(::socket(family_, type_ | SOCK_CLOEXEC, 0));
    if (!listener_) return sys_error("socket");
    auto addr = address(0);
    if (!addr) return std::unexpected(addr.error());
    if (::bind(listener_.get(), addr->get(), addr->len) != 0) return sys_error("bind", ctx_.path);
    if (::listen(listener_.get(), 1) != 0) return sys_error("listen");
    if (family_ != AF_INET) return std::string();
    sockaddr_in in{};
    socklen_t len = sizeof in;
    if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&in), &len) != 0) return sys_error("getsockname");
    return std::to_string(ntohs(in.sin_port));
  }
  Made<Channel> child_channel() override {
    Fd c(os::retry([&] { return ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC); }));
    if (!c) return sys_error("accept");
    listener_.reset();
    if (family_ == AF_UNIX) ::unlink(ctx_.path.c_str());
    return finish(std::move(c));
  }
  Made<Channel> parent_channel(const std::string& ready, pid_t) override {
    Fd s(::socket(family_, type_ | SOCK_CLOEXEC, 0));
    if (!s) return sys_error("socket");
    auto addr = address(family_ == AF_INET ? static_cast<std::uint16_t>(std::stoi(ready)) : 0);
    if (!addr) return std::unexpected(addr.error());
    if (os::retry([&] { return ::connect(s.get(), addr->get(), addr->len); }) != 0)
      return sys_error("connect", family_ == AF_UNIX ? ctx_.path : "127.0.0.1:" + ready);
    return finish(std::move(s));
  }

 private:
  struct Addr {
    sockaddr_storage storage{};
    socklen_t len = 0;
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  };
  Result<Addr> address(std::uint16_t port) const {
    Addr a;
    if (family_ == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
      in->sin_family = AF_INET;
      in->sin_port = htons(port);
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.len = sizeof *in;
      return a;
    }
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    un->sun_family = AF_UNIX;
    if (ctx_.path.size() >= sizeof un->sun_path) return fail(Errc::invalid_argument, "bind", "path too long: " + ctx_.path);
    std::memcpy(un->sun_path, ctx_.path.c_str(), ctx_.path.size() + 1);
    a.len = sizeof *un;
    return a;
  }
  Made<Channel> finish(Fd s) const {
    if (family_ == AF_INET) {
      int one = 1;
      if (::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) return sys_error("setsockopt");
    }
    auto kind = type_ == SOCK_SEQPACKET ? FdChannel::Kind::records : FdChannel::Kind::stream;
    return std::make_unique<FdChannel>(std::move(s), Fd(), kind, ctx_.size);
  }

  int family_, type_;
  RunCtx ctx_;
  Fd listener_;
};

template <int Family, int Type>
Made<Setup> raw_socket(const RunCtx& c) {
  return std::make_unique<RawSocketSetup>(Family, Type, c);
}

// raw: sigqueue to the peer's pid, sigwaitinfo for the reply (signal blocked before fork).
class RawSignalSetup final : public Setup {
 public:
  static Made<Setup> make(const RunCtx&) { return std::make_unique<RawSignalSetup>(); }
  Made<Channel> child_channel() override { return std::make_unique<SignalChannel>(::getppid(), signo()); }
  Made<Channel> parent_channel(const std::string&, pid_t child) override {
    return std::make_unique<SignalChannel>(child, signo());
  }
  int wake_signal() const override { return signo(); }
  static int signo() { return SIGRTMIN + kRawSignalOffset; }
};

Made<Setup> ipcx_signal(const RunCtx&) {
  return std::make_unique<IpcxListenSetup>(
      "signal://self", [](const std::string&, pid_t child) { return fmt::format("signal://{}", child); },
      SIGRTMIN + kDefaultSignalOffset);
}

// ---- the mechanisms --------------------------------------------------------------------------

struct Mechanism {
  std::string_view name;
  MakeSetup raw;
  MakeSetup ipcx;
  std::size_t only_size = 0;  // non-zero: the one payload size that makes sense (ignores --sizes)
  bool uses_signals = false;
};

const Mechanism kMechanisms[] = {
    {"pipe", RawPipeSetup::make, IpcxPipeSetup::make},
    {"fifo", RawFifoSetup::make, [](const RunCtx& c) { return ipcx_listen("fifo://" + c.path); }},
    {"unix", raw_socket<AF_UNIX, SOCK_STREAM>, [](const RunCtx& c) { return ipcx_listen("unix://" + c.path); }},
    {"unix-seq", raw_socket<AF_UNIX, SOCK_SEQPACKET>,
     [](const RunCtx& c) { return ipcx_listen("unix+seq://" + c.path); }},
    {"tcp", raw_socket<AF_INET, SOCK_STREAM>, [](const RunCtx&) { return ipcx_listen("tcp://127.0.0.1:0"); }},
    {"signal", RawSignalSetup::make, ipcx_signal, sizeof(std::int32_t), true},
};

enum class Impl { raw, ipcx };
std::string_view to_string(Impl i) { return i == Impl::raw ? "raw" : "ipcx"; }

// ---- the plan --------------------------------------------------------------------------------

struct Plan {
  int rounds = 20000;
  int warmup = 2000;
  std::size_t stream_messages = 100000;   // throughput burst...
  std::size_t stream_bytes = 64u << 20;   // ...capped at this many payload bytes
  int bursts = 5;                         // throughput: the best burst of these
  std::vector<std::size_t> sizes{64, 4096, 65536};

  std::size_t messages(std::size_t size) const {
    return std::max<std::size_t>(std::min(stream_messages, stream_bytes / size), 8);
  }
};

struct Measurement {
  std::string_view mechanism;
  Impl impl;
  std::size_t size;
  std::uint64_t rtt_p50_ns, rtt_p99_ns;
  double msgs_per_s, bytes_per_s;
};

// ---- process plumbing ------------------------------------------------------------------------

// /tmp/ipcx-bench-<pid>/: every FIFO and socket file of the run; removed with its contents.
class RunDir {
 public:
  static Result<RunDir> create() {
    RunDir d;
    d.path_ = fmt::format("/tmp/ipcx-bench-{}", ::getpid());
    if (::mkdir(d.path_.c_str(), 0700) != 0) {
      if (errno != EEXIST) return sys_error("mkdir", d.path_);
      // Left by an earlier run with our pid: reuse it only if it is really ours.
      struct stat st {};
      if (::lstat(d.path_.c_str(), &st) != 0) return sys_error("lstat", d.path_);
      if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
        return fail(Errc::permission_denied, "mkdir", d.path_ + " exists and is not our directory");
      d.empty();
    }
    d.made_ = true;
    return d;
  }
  RunDir() = default;
  RunDir(RunDir&& o) noexcept : path_(std::move(o.path_)), made_(std::exchange(o.made_, false)) {}
  RunDir& operator=(RunDir&&) = delete;
  ~RunDir() {
    if (!made_) return;
    empty();
    ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  void empty() {
    DIR* dir = ::opendir(path_.c_str());
    if (!dir) return;
    while (auto* e = ::readdir(dir))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
        ::unlinkat(::dirfd(dir), e->d_name, 0);
    ::closedir(dir);
  }
  std::string path_;
  bool made_ = false;
};

// The parent's process-wide settings for the run, restored on every exit path: CPU affinity,
// blocked transport signals, SIGCHLD and SIGPIPE dispositions.
class ProcessState {
 public:
  ProcessState() {
    ::sched_getaffinity(0, sizeof affinity_, &affinity_);
    ::pthread_sigmask(SIG_SETMASK, nullptr, &mask_);
    ::sigaction(SIGCHLD, nullptr, &old_chld_);
    ::sigaction(SIGPIPE, nullptr, &old_pipe_);
    ::sigaction(SIGINT, nullptr, &old_int_);
    ::sigaction(SIGTERM, nullptr, &old_term_);
    g_interrupted = 0;
    struct sigaction sa {};
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_interrupt;
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    sa.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &sa, nullptr);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    ::sigaction(SIGCHLD, &sa, nullptr);
  }
  ProcessState(const ProcessState&) = delete;
  ProcessState& operator=(const ProcessState&) = delete;
  ~ProcessState() {
    if (signals_blocked_) drain_signals();  // a queued RT signal would kill us once unblocked
    ::pthread_sigmask(SIG_SETMASK, &mask_, nullptr);
    ::sigaction(SIGCHLD, &old_chld_, nullptr);
    ::sigaction(SIGPIPE, &old_pipe_, nullptr);
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    ::sched_setaffinity(0, sizeof affinity_, &affinity_);
  }

  // Pins the parent to the first allowed CPU; the child goes to the second (the same one if
  // there is only one).
  Status pin() {
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
      if (CPU_ISSET(c, &affinity_)) cpus.push_back(c);
    if (cpus.empty()) return fail(Errc::system, "sched_getaffinity", "no CPU allowed");
    parent_cpu_ = cpus[0];
    child_cpu_ = cpus.back();
    return pin_to(parent_cpu_);
  }
  static Status pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) return sys_error("sched_setaffinity", fmt::format("cpu {}", cpu));
    return {};
  }
  int parent_cpu() const { return parent_cpu_; }
  int child_cpu() const { return child_cpu_; }
  int allowed_cpus() const { return CPU_COUNT(&affinity_); }

  // Both processes must have the signals blocked before the first one is sent: block before fork.
  Status block_signals() {
    if (auto r = block_transport_signal(); !r) return r;
    if (auto r = block_transport_signal(kRawSignalOffset); !r) return r;
    signals_blocked_ = true;
    return {};
  }
  // Discards signals still queued (e.g. a wake sent after the last ack).
  static void drain_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + kDefaultSignalOffset);
    sigaddset(&set, SIGRTMIN + kRawSignalOffset);
    timespec zero{};
    while (::sigtimedwait(&set, nullptr, &zero) > 0 || errno == EINTR) {
    }
  }

 private:
  cpu_set_t affinity_{};
  sigset_t mask_{};
  struct sigaction old_chld_ {}, old_pipe_ {}, old_int_ {}, old_term_ {};
  bool signals_blocked_ = false;
  int parent_cpu_ = -1, child_cpu_ = -1;
};

// The child's side of the control pipe: "ready TEXT\n", or "error MESSAGE\n" before exiting.
void write_control(int fd, std::string_view kind, std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  auto line = fmt::format("{} {}\n", kind, text);
  for (std::size_t off = 0; off < line.size();) {
    ssize_t n = os::retry([&] { return ::write(fd, line.data() + off, line.size() - off); });
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

// The parent's side of the control pipe.
class Control {
 public:
  explicit Control(Fd fd) : fd_(std::move(fd)) {}

  // The next line, waiting up to `timeout`; Errc::closed if the child exited first.
  Result<std::string> line(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = text_.find('\n'); nl != std::string::npos) {
        auto l = text_.substr(0, nl);
        text_.erase(0, nl + 1);
        return l;
      }
      auto r = read_some(until);
      if (!r) return std::unexpected(r.error());
      if (*r == 0) return fail(Errc::closed, "echo child", "exited without a word");
    }
  }
  // Waits up to `timeout` for the child to close its end (it exits); false on timeout.
  bool wait_eof(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto r = read_some(until);
      if (!r) return false;
      if (*r == 0) return true;
    }
  }
  // What the child reported with "error ...", if anything.
  std::string child_error() const {
    auto at = text_.rfind("error ");
    if (at == std::string::npos || (at > 0 && text_[at - 1] != '\n')) return {};
    auto end = text_.find('\n', at);
    return text_.substr(at + 6, end == std::string::npos ? std::string::npos : end - at - 6);
  }

 private:
  Result<std::size_t> read_some(std::chrono::steady_clock::time_point until) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    pollfd p{fd_.get(), POLLIN, 0};
    int r = os::retry([&] { return ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0))); });
    if (r < 0) return sys_error("poll");
    if (r == 0) return fail(Errc::timeout, "echo child", "no answer");
    char buf[512];
    ssize_t n = os::retry([&] { return ::read(fd_.get(), buf, sizeof buf); });
    if (n < 0) return sys_error("read");
    text_.append(buf, static_cast<std::size_t>(n));
    return static_cast<std::size_t>(n);
  }
  Fd fd_;
  std::string text_;
};

// Owns a forked child: killed (SIGKILL) and reaped on every path that does not reap it, and
// known to the signal handlers until then.
class ChildProcess {
 public:
  // Before fork() (the child may die at once): whose waiters SIGCHLD must wake.
  static void arm(int wake_signo) noexcept {
    g_child_exited = 0;
    g_wake_signo = wake_signo;
  }
  static void disarm() noexcept {
    g_child_pid = 0;
    g_wake_signo = 0;
  }
  explicit ChildProcess(pid_t pid) : pid_(pid) {
    g_child_pid = pid;
    if (g_interrupted) ::kill(pid, SIGKILL);  // the interrupt came during fork()
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { kill(); }
  pid_t pid() const { return pid_; }
  void kill() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    (void)reap();
  }
  // Waits for the exit; the wait status.
  int reap() noexcept {
    int status = 0;
    os::retry([&] { return ::waitpid(pid_, &status, 0); });
    disarm();
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

struct Work {
  std::size_t size;
  int warmup, rounds;
  std::size_t messages;
  int bursts;  // throughput is the best of this many bursts: capacity, not a neighbour's load
};

Status echo(Channel& ch, const Work& w, std::span<const std::byte> payload) {
  for (int i = 0; i < w.warmup + w.rounds; ++i) {
    if (auto r = ch.recv(w.size); !r) return r;
    if (auto r = ch.send(payload); !r) return r;
  }
  for (int b = 0; b < w.bursts; ++b) {
    if (auto r = ch.recv_many(w.messages, w.size); !r) return r;
    if (auto r = ch.send(payload); !r) return r;  // the ack
  }
  return {};
}

[[noreturn]] void child_main(Setup& setup, const Work& w, std::span<const std::byte> payload, int ctl,
                             pid_t parent, int cpu) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the parent, even a SIGKILLed one
  if (::getppid() != parent) ::_exit(1);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM}) ::signal(sig, SIG_DFL);
  // Whatever happens, this process ends here: an exception must not unwind into the frames
  // it shares with the parent. _exit: no atexit, no stdio flush, those belong to the parent.
  try {
    auto st = [&]() -> Status {
      if (auto r = ProcessState::pin_to(cpu); !r) return r;
      auto ready = setup.child_prepare();
      if (!ready) return std::unexpected(ready.error());
      write_control(ctl, "ready", *ready);
      auto ch = setup.child_channel();
      if (!ch) return std::unexpected(ch.error());
      return echo(**ch, w, payload);
    }();
    if (!st) write_control(ctl, "error", st.error().message());
    ::_exit(st ? 0 : 1);
  } catch (const std::exception& e) {
    write_control(ctl, "error", e.what());
  } catch (...) {
  }
  ::_exit(1);
}

Status ping_pong(Channel& ch, std::span<const std::byte> payload, int rounds, std::uint64_t* samples) {
  auto t0 = now_ns();
  for (int i = 0; i < rounds; ++i) {
    if (auto r = ch.send(payload); !r) return r;
    if (auto r = ch.recv(payload.size()); !r) return r;
    if (samples) {
      auto t1 = now_ns();
      samples[i] = t1 - t0;
      t0 = t1;
    }
  }
  return {};
}

std::uint64_t percentile(std::vector<std::uint64_t>& v, double p) {
  auto k = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// The parent's half of one measurement.
Result<Measurement> measure_parent(Setup& setup, Control& ctl, pid_t child, const Work& w,
                                   std::span<const std::byte> payload) {
  auto ready = ctl.line(30s);
  if (!ready) return std::unexpected(ready.error());
  if (!ready->starts_with("ready ")) return fail(Errc::protocol, "echo child", *ready);
  auto ch = setup.parent_channel(ready->substr(6), child);
  if (!ch) return std::unexpected(ch.error());

  if (auto r = ping_pong(**ch, payload, w.warmup, nullptr); !r) return std::unexpected(r.error());
  std::vector<std::uint64_t> samples(static_cast<std::size_t>(w.rounds));
  if (auto r = ping_pong(**ch, payload, w.rounds, samples.data()); !r) return std::unexpected(r.error());

  double secs = 0;
  for (int b = 0; b < w.bursts; ++b) {
    auto t0 = now_ns();
    for (std::size_t i = 0; i < w.messages; ++i)
      if (auto r = (*ch)->send(payload); !r) return std::unexpected(r.error());
    if (auto r = (*ch)->recv(w.size); !r) return std::unexpected(r.error());
    double t = static_cast<double>(now_ns() - t0) / 1e9;
    if (b == 0 || t < secs) secs = t;
  }

  Measurement m{};
  m.size = w.size;
  m.rtt_p50_ns = percentile(samples, 0.50);
  m.rtt_p99_ns = percentile(samples, 0.99);
  m.msgs_per_s = static_cast<double>(w.messages) / secs;
  m.bytes_per_s = m.msgs_per_s * static_cast<double>(w.size);
  return m;
}

// One (mechanism, impl, size): set up, fork the echo child, measure, reap. One line on error.
std::expected<Measurement, std::string> measure(const Mechanism& mech, Impl impl, const Work& w, const RunDir& dir,
                                         const ProcessState& ps) {
  auto where = fmt::format("{} {} {} B", mech.name, to_string(impl), w.size);
  auto failed = [&](const std::string& why) { return std::unexpected(fmt::format("{}: {}", where, why)); };

  RunCtx ctx{w.size, fmt::format("{}/{}-{}-{}", dir.path(), mech.name, to_string(impl), w.size)};
  auto setup = (impl == Impl::raw ? mech.raw : mech.ipcx)(ctx);
  if (!setup) return failed(setup.error().message());
  const std::vector<std::byte> payload(w.size, kFill);

  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return failed(sys_error("pipe2").error().message());
  Control ctl{Fd(p[0])};
  Fd ctl_w(p[1]);
  std::fflush(nullptr);
  ChildProcess::arm((*setup)->wake_signal());
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ChildProcess::disarm();
    return failed(sys_error("fork").error().message());
  }
  if (pid == 0) child_main(**setup, w, payload, ctl_w.get(), parent, ps.child_cpu());
  ChildProcess child(pid);
  ctl_w.reset();

  auto m = measure_parent(**setup, ctl, pid, w, payload);
  if (m && !ctl.wait_eof(30s)) m = fail(Errc::timeout, "echo child", "did not exit after the ack");
  if (!m) child.kill();
  int status = m ? child.reap() : 0;
  if (mech.uses_signals) ProcessState::drain_signals();
  if (!m) {
    (void)ctl.wait_eof(1s);  // the child is gone: collect what it said
    auto said = ctl.child_error();
    return failed(said.empty() ? m.error().message() : "echo child: " + said);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    auto said = ctl.child_error();
    return failed(said.empty() ? fmt::format("echo child failed (wait status {:#x})", status) : "echo child: " + said);
  }
  m->mechanism = mech.name;
  m->impl = impl;
  return *m;
}

// ---- output ----------------------------------------------------------------------------------

const Measurement* find_raw(const std::vector<Measurement>& all, const Measurement& m) {
  for (auto& r : all)
    if (r.impl == Impl::raw && r.mechanism == m.mechanism && r.size == m.size) return &r;
  return nullptr;
}

void print_header() {
  fmt::print("{:<9} {:<5} {:>7} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9}\n", "mechanism", "impl", "size",
             "p50 (µs)", "p99 (µs)", "msgs/s", "MB/s", "p50/raw", "tput/raw");
}

void print_row(const Measurement& m, const Measurement* raw) {
  auto line = fmt::format("{:<9} {:<5} {:>7} {:>9.2f} {:>9.2f} {:>11.0f} {:>9.1f}", m.mechanism, to_string(m.impl),
                          m.size, static_cast<double>(m.rtt_p50_ns) / 1e3, static_cast<double>(m.rtt_p99_ns) / 1e3,
                          m.msgs_per_s, m.bytes_per_s / 1e6);
  if (raw && m.impl == Impl::ipcx)
    line += fmt::format(" {:>9.2f} {:>9.2f}", static_cast<double>(m.rtt_p50_ns) / static_cast<double>(raw->rtt_p50_ns),
                        m.msgs_per_s / raw->msgs_per_s);
  fmt::print("{}\n", line);
}

// Rows go out as they are measured; a reader that went away (`| head`) ends the run.
Status flush_stdout() {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) return sys_error("write", "stdout");
  return {};
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += fmt::format("\\{}", c);
    else if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    else out += c;
  }
  return out + "\"";
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    if (key == "model name" || key == "Model" || key == "cpu model") {
      auto v = line.substr(std::min(colon + 2, line.size()));
      if (!v.empty()) return v;
    }
  }
  return "unknown";
}

Status write_json(const std::string& file, const ProcessState& ps, const std::vector<Measurement>& results) {
  utsname u{};
  ::uname(&u);
  std::string out = fmt::format(
      "{{\"machine\":{{\"cpus\":{},\"kernel\":{},\"cpu_model\":{},\"pinned\":[{},{}]}},\n\"results\":[",
      ps.allowed_cpus(), json_string(u.release), json_string(cpu_model()), ps.parent_cpu(), ps.child_cpu());
  for (std::size_t i = 0; i < results.size(); ++i) {
    auto& m = results[i];
    out += fmt::format(
        "{}\n{{\"mechanism\":{},\"impl\":\"{}\",\"size\":{},\"rtt_p50_ns\":{},\"rtt_p99_ns\":{},"
        "\"msgs_per_s\":{:.1f},\"bytes_per_s\":{:.0f}}}",
        i ? "," : "", json_string(m.mechanism), to_string(m.impl), m.size, m.rtt_p50_ns, m.rtt_p99_ns,
        m.msgs_per_s, m.bytes_per_s);
  }
  out += "\n]}\n";
  std::FILE* f = std::fopen(file.c_str(), "w");
  if (!f) return sys_error("open", file);
  bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return fail_errno(err ? err : EIO, "write", file);
  return {};
}

// ---- arguments -------------------------------------------------------------------------------

// The plan from the arguments, or the one line explaining why they are unusable.
std::expected<Plan, std::string> make_plan(const BenchArgs& args, std::vector<const Mechanism*>& selected) {
  for (auto& name : args.only) {
    auto it = std::find_if(std::begin(kMechanisms), std::end(kMechanisms), [&](auto& m) { return m.name == name; });
    if (it == std::end(kMechanisms)) {
      std::string known;
      for (auto& m : kMechanisms) known += fmt::format("{}{}", known.empty() ? "" : ",", m.name);
      return std::unexpected(fmt::format("unknown mechanism '{}' (known: {})", name, known));
    }
  }
  for (auto& m : kMechanisms)
    if (args.only.empty() || std::find(args.only.begin(), args.only.end(), m.name) != args.only.end())
      selected.push_back(&m);

  Plan plan;
  constexpr double kQuick = 20;
  double scale = args.quick ? 1 / kQuick : 1;
  if (args.rounds < 0) return std::unexpected(fmt::format("--rounds must be positive, not {}", args.rounds));
  if (args.rounds > 0) scale = static_cast<double>(args.rounds) / plan.rounds;
  plan.rounds = std::max(1, static_cast<int>(std::lround(plan.rounds * scale)));
  plan.warmup = std::max(10, plan.rounds / 10);
  plan.stream_messages = std::max<std::size_t>(100, static_cast<std::size_t>(std::llround(double(plan.stream_messages) * scale)));
  plan.stream_bytes = std::max<std::size_t>(1u << 20, static_cast<std::size_t>(double(plan.stream_bytes) * scale));
  if (args.quick) plan.bursts = 3;
  if (!args.sizes.empty()) plan.sizes = args.sizes;
  for (auto s : plan.sizes)
    if (s == 0 || s > kMaxSize)
      return std::unexpected(fmt::format("size {} outside 1..{} bytes", s, kMaxSize));
  return plan;
}

int bench(const BenchArgs& args) {
  std::vector<const Mechanism*> selected;
  auto plan = make_plan(args, selected);
  if (!plan) {
    fmt::print(stderr, "ipcx bench: {}\n", plan.error());
    return 2;
  }

  ProcessState ps;
  auto dir = RunDir::create();
  if (!dir) {
    fmt::print(stderr, "ipcx bench: {}\n", dir.error().message());
    return 1;
  }
  if (auto r = ps.pin(); !r) {
    fmt::print(stderr, "ipcx bench: {}\n", r.error().message());
    return 1;
  }
  if (std::any_of(selected.begin(), selected.end(), [](auto* m) { return m->uses_signals; }))
    if (auto r = ps.block_signals(); !r) {
      fmt::print(stderr, "ipcx bench: {}\n", r.error().message());
      return 1;
    }

  fmt::print("ipcx bench: parent on cpu {}, echo child on cpu {}; {} round trips (+{} warm-up), "
             "throughput: best of {} bursts of {} messages or {} MiB\n",
             ps.parent_cpu(), ps.child_cpu(), plan->rounds, plan->warmup, plan->bursts, plan->stream_messages,
             plan->stream_bytes >> 20);
  print_header();
  if (auto r = flush_stdout(); !r) {
    fmt::print(stderr, "ipcx bench: {}\n", r.error().message());
    return 1;
  }

  std::vector<Measurement> results;
  for (auto* mech : selected) {
    auto sizes = mech->only_size ? std::vector<std::size_t>{mech->only_size} : plan->sizes;
    for (auto size : sizes) {
      Work w{size, plan->warmup, plan->rounds, plan->messages(size), plan->bursts};
      for (auto impl : {Impl::raw, Impl::ipcx}) {  // interleaved: noise hits both alike
        auto m = g_interrupted ? std::unexpected(std::string()) : measure(*mech, impl, w, *dir, ps);
        if (int sig = g_interrupted) {
          fmt::print(stderr, "ipcx bench: interrupted by {}\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
          return 128 + sig;
        }
        if (!m) {
          fmt::print(stderr, "ipcx bench: {}\n", m.error());
          return 1;
        }
        results.push_back(*m);
        print_row(results.back(), find_raw(results, results.back()));
        if (auto r = flush_stdout(); !r) {
          fmt::print(stderr, "ipcx bench: {}\n", r.error().message());
          return 1;
        }
      }
    }
  }

  if (!args.json.empty())
    if (auto r = write_json(args.json, ps, results); !r) {
      fmt::print(stderr, "ipcx bench: {}\n", r.error().message());
      return 1;
    }
  return 0;
}

}  // namespace

int run_bench(const BenchArgs& args) {
  try {
    return bench(args);  // every early return has killed and reaped its child, removed its files
  } catch (const std::exception& e) {  // e.g. fmt's system_error when stdout is a closed pipe
    std::fprintf(stderr, "ipcx bench: %s\n", e.what());
    return 1;
  }
}

}  // namespace ipcx::cli
