// Rows over pipes: anonymous pipes and FIFOs.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/mechanism.hpp"

namespace ipcx::bench {
namespace {

// raw: two pipe2() pairs, "down" (parent -> child) and "up" (child -> parent); the child's ends
// are inherited.
class RawPipeSetup final : public Setup {
 public:
  explicit RawPipeSetup(const RunCtx& c) : ctx_(c) {}

  Status parent_prepare(ChildWiring& wiring) override {
    int down[2], up[2];
    if (::pipe2(down, O_CLOEXEC) != 0) return sys_error("pipe2");
    Fd down_r(down[0]);
    down_w_ = Fd(down[1]);
    if (::pipe2(up, O_CLOEXEC) != 0) return sys_error("pipe2");
    up_r_ = Fd(up[0]);
    wiring.give(std::move(down_r));
    wiring.give(Fd(up[1]));
    return {};
  }
  Made<Channel> child_channel() override {
    if (ctx_.inherited.size() != 2) return fail(Errc::invalid_argument, "pipe", "expected two inherited descriptors");
    return std::make_unique<FdChannel>(Fd(ctx_.inherited[0]), Fd(ctx_.inherited[1]), FdChannel::Kind::stream,
                                       ctx_.size);
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return std::make_unique<FdChannel>(std::move(up_r_), std::move(down_w_), FdChannel::Kind::stream, ctx_.size);
  }

 private:
  RunCtx ctx_;
  Fd down_w_, up_r_;
};

// ipcx: spawn_connected() wires the pipes; the child reaches its end with connect("pipe:").
class IpcxPipeSetup final : public Setup {
 public:
  Result<Process> spawn(const std::vector<std::string>& argv, const SpawnOptions& options) override {
    auto c = ipcx::spawn_connected(argv, {}, options);
    if (!c) return std::unexpected(std::move(c.error()));
    conn_ = std::move(c->connection);
    return std::move(c->process);
  }
  Made<Channel> child_channel() override { return ipcx_channel(ipcx::connect("pipe:")); }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return std::make_unique<IpcxChannel>(std::move(conn_));
  }

 private:
  Connection conn_;
};

// raw: two FIFOs. Opening one end of a FIFO blocks until the other end is open, so the parent
// opens its read end (non-blocking) before the child starts and the child opens its read end
// before it reports ready: no open() ever waits for a process that might have died.
class RawFifoSetup final : public Setup {
 public:
  explicit RawFifoSetup(const RunCtx& c) : size_(c.size), down_(c.path + ".down"), up_(c.path + ".up") {}
  ~RawFifoSetup() override {
    if (!made_) return;
    ::unlink(down_.c_str());
    ::unlink(up_.c_str());
  }

  Status parent_prepare(ChildWiring&) override {
    if (::mkfifo(down_.c_str(), 0600) != 0) return sys_error("mkfifo", down_);
    made_ = true;
    if (::mkfifo(up_.c_str(), 0600) != 0) return sys_error("mkfifo", up_);
    up_r_ = Fd(::open(up_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!up_r_) return sys_error("open", up_);
    return {};
  }
  Result<std::string> child_prepare() override {
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
    if (retry([&] { return ::poll(&p, 1, -1); }) < 0) return sys_error("poll", down_);
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
  std::size_t size_;
  std::string down_, up_;
  bool made_ = false;  // by this process: the parent removes the FIFOs, the child never does
  Fd up_r_, down_r_, up_w_;
};

template <class S>
std::unique_ptr<Setup> make(const RunCtx& c) {
  return std::make_unique<S>(c);
}

const Mechanism kRows[] = {
    {.name = "pipe",
     .group = Group::message_passing,
     .purpose = "parent to child, a byte stream: shell pipelines, a spawned helper",
     .raw = make<RawPipeSetup>, .ipcx = [](const RunCtx&) -> std::unique_ptr<Setup> {
       return std::make_unique<IpcxPipeSetup>();
     }},
    {.name = "fifo",
     .group = Group::message_passing,
     .purpose = "a pipe with a name in the file system: unrelated processes, shell scripts",
     .raw = make<RawFifoSetup>, .ipcx = [](const RunCtx& c) { return ipcx_listen("fifo://" + c.path); }},
};

}  // namespace

std::span<const Mechanism> pipe_rows() { return kRows; }

}  // namespace ipcx::bench
