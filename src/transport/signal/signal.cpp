// signal://PID — see include/ipcx/signal.hpp.
#include <ipcx/signal.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <deque>
#include <mutex>

#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

#include "os/signals.hpp"
#include "transport/address.hpp"
#include "transport/transport.hpp"

namespace ipcx {

Result<int> transport_signal(int offset) {
  if (offset < 0 || offset > SIGRTMAX - SIGRTMIN)
    return fail(Errc::invalid_argument, "signal", fmt::format("offset {} outside 0..{}", offset, SIGRTMAX - SIGRTMIN));
  return SIGRTMIN + offset;
}

Result<void> block_transport_signal(int offset) {
  auto sig = transport_signal(offset);
  if (!sig) return std::unexpected(sig.error());
  return os::block_signals({*sig});
}

namespace {
// A real-time signal nobody blocks, ignores or catches terminates its target: refuse to send
// one to a process that is not set up to receive it (as far as /proc/PID/status tells; a
// status we cannot read is not held against the target). `op` names the refused call.
Result<void> check_receives(pid_t pid, int sig, const char* op) {
  std::FILE* f = std::fopen(fmt::format("/proc/{}/status", pid).c_str(), "re");
  if (!f) {
    if (errno == ENOENT) return fail(Errc::connection_refused, op, fmt::format("no process {}", pid));
    return {};
  }
  char line[256];
  bool handled = false, known = false;
  while (std::fgets(line, sizeof line, f)) {
    std::string_view l(line);
    for (std::string_view key : {"SigBlk:", "SigIgn:", "SigCgt:"}) {
      if (!l.starts_with(key)) continue;
      known = true;
      auto mask = std::strtoull(line + key.size(), nullptr, 16);
      if (sig - 1 < 64 && (mask >> (sig - 1)) & 1) handled = true;
    }
  }
  std::fclose(f);
  if (known && !handled)
    return fail(Errc::connection_refused, op,
                fmt::format("process {} neither blocks nor catches SIGRTMIN+{}: it would be killed (receive with "
                            "signal://self, or block the signal first)",
                            pid, sig - SIGRTMIN));
  return {};
}
}  // namespace

Result<void> send_signal(pid_t pid, int value, int offset) {
  auto sig = transport_signal(offset);
  if (!sig) return std::unexpected(sig.error());
  if (pid <= 0) return fail(Errc::invalid_argument, "signal", fmt::format("bad pid {}", pid));
  if (auto r = check_receives(pid, *sig, "signal"); !r) return r;
  return os::queue_signal(pid, *sig, value);
}

std::array<std::byte, 4> signal_message(std::int32_t value) noexcept {
  auto v = static_cast<std::uint32_t>(value);
  return {std::byte(v & 0xff), std::byte((v >> 8) & 0xff), std::byte((v >> 16) & 0xff), std::byte(v >> 24)};
}

std::optional<std::int32_t> signal_value(std::span<const std::byte> m) noexcept {
  if (m.size() != 4) return std::nullopt;
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(m[static_cast<std::size_t>(i)]);
  return static_cast<std::int32_t>(v);
}

namespace transport {
namespace {

class SignalConnection final : public ConnectionImpl {
 public:
  // target 0 (an accepted signal://self connection): replies go to whoever signalled last.
  SignalConnection(Fd sfd, int signo, pid_t target)
      : sfd_(std::move(sfd)), signo_(signo), target_(target), reply_to_sender_(target <= 0) {}
  ~SignalConnection() override { release(); }

  Result<void> send(std::span<const std::byte> data, std::span<const int> fds, const os::Deadline& dl) override {
    auto v = validate(data, fds);
    if (!v) return std::unexpected(v.error());
    if (auto r = flush(dl); !r) return r;
    for (;;) {
      auto r = queue_one(*v);
      if (r || r.error().code != Errc::would_block) return r;
      // The receiver's queue of pending real-time signals is full: wait for it to drain.
      if (auto p = os::pause_before_retry(dl, std::chrono::microseconds(20), "send"); !p) return p;
    }
  }
  Result<void> enqueue(std::span<const std::byte> data, std::span<const int> fds) override {
    auto v = validate(data, fds);
    if (!v) return std::unexpected(v.error());
    out_.push_back(*v);
    return {};
  }
  Result<void> flush(const os::Deadline& dl) override {
    while (!out_.empty()) {
      auto r = queue_one(out_.front());
      if (r) {
        out_.pop_front();
        continue;
      }
      if (r.error().code != Errc::would_block) return r;
      if (auto p = os::pause_before_retry(dl, std::chrono::microseconds(20), "flush"); !p) return p;
    }
    return {};
  }
  std::size_t queued() const noexcept override { return out_.size() * sizeof(std::int32_t); }

  Result<void> recv(Message& into, const os::Deadline& dl, ReadBudget* budget) override {
    // Without a deadline, one blocking read (like sigwaitinfo); otherwise non-blocking + poll.
    if (nonblock_ == dl.infinite()) {
      if (auto r = os::set_nonblocking(sfd_.get(), !dl.infinite()); !r) return r;
      nonblock_ = !dl.infinite();
    }
    for (;;) {
      if (budget && budget->bytes == 0) return fail(Errc::would_block, "recv");
      auto si = os::read_signal(sfd_.get());
      if (si) {
        if (budget) budget->bytes -= std::min(budget->bytes, sizeof(signalfd_siginfo));
        if (reply_to_sender_) target_.store(static_cast<pid_t>(si->ssi_pid));
        {
          std::lock_guard lk(sender_mu_);
          sender_ = PeerCred{static_cast<pid_t>(si->ssi_pid), si->ssi_uid, static_cast<gid_t>(-1), false};
        }
        into.fds.clear();
        auto bytes = signal_message(si->ssi_int);
        into.data.assign(bytes.begin(), bytes.end());
        return {};
      }
      if (si.error().code != Errc::would_block) return std::unexpected(si.error());
      if (auto w = os::await(sfd_.get(), POLLIN, dl, "recv"); !w) return w;
    }
  }

  Handles handles() const noexcept override {
    Handles h;
    if (sfd_.valid()) h.read = sfd_.get();
    return h;  // sending needs no descriptor, and a full signal queue has none to wait on
  }
  PeerCred peer() const noexcept override {
    std::lock_guard lk(sender_mu_);  // peer() may be asked from any thread while recv updates it
    return sender_;
  }
  Capabilities capabilities() const noexcept override { return {.pollable = true, .fixed_size = sizeof(std::int32_t)}; }
  void release() noexcept override { sfd_.reset(); }

 private:
  Result<std::int32_t> validate(std::span<const std::byte> data, std::span<const int> fds) const {
    if (!fds.empty()) return fail(Errc::not_supported, "send", "signals cannot carry file descriptors");
    auto v = signal_value(data);
    if (!v) return fail(Errc::invalid_argument, "send", fmt::format("a signal carries one 4-byte int, not {} bytes", data.size()));
    if (target_.load() <= 0) return fail(Errc::invalid_argument, "send", "no peer yet: receive a signal first");
    return *v;
  }
  Result<void> queue_one(std::int32_t value) {
    pid_t to = target_.load();
    auto r = os::queue_signal(to, signo_, value);
    if (r) return {};
    if (r.error().sys_errno == EAGAIN) return fail(Errc::would_block, "send", "the receiver's signal queue is full");
    if (r.error().sys_errno == ESRCH) return fail(Errc::closed, "send", fmt::format("process {} is gone", to));
    return r;
  }

  Fd sfd_;
  const int signo_;
  std::atomic<pid_t> target_;  // written by recv (reply to the last sender), read by send
  const bool reply_to_sender_;
  mutable std::mutex sender_mu_;
  PeerCred sender_{};
  bool nonblock_ = true;  // the signalfd is created non-blocking
  std::deque<std::int32_t> out_;
};

Result<std::unique_ptr<ConnectionImpl>> open_conn(int signo, pid_t target) {
  if (auto r = os::block_signals({signo}); !r) return std::unexpected(r.error());
  auto sfd = os::make_signalfd({signo});
  if (!sfd) return std::unexpected(sfd.error());
  return std::make_unique<SignalConnection>(std::move(*sfd), signo, target);
}

// signal://self yields one connection: whoever signals this process talks to it.
class SignalListener final : public ListenerImpl {
 public:
  SignalListener(int signo, std::string url) : signo_(signo), url_(std::move(url)) {}
  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline&) override {
    if (!open_) return fail(Errc::closed, "accept", "listener closed");
    if (handed_out_) return fail(Errc::closed, "accept", "signal://self yields one connection, already accepted");
    handed_out_ = true;
    ++stats_.accepted;
    return open_conn(signo_, 0);
  }
  std::optional<int> native_handle() const noexcept override { return std::nullopt; }
  std::string url() const override { return url_; }
  Capabilities capabilities() const noexcept override { return {.concurrent = false, .fixed_size = sizeof(std::int32_t)}; }
  ListenerStats stats() const noexcept override { return stats_; }
  void close() noexcept override { open_ = false; }
  bool is_open() const noexcept override { return open_; }

 private:
  int signo_;
  std::string url_;
  bool open_ = true, handed_out_ = false;
  ListenerStats stats_;
};

}  // namespace

Scheme signal_scheme() {
  Scheme s;
  s.name = "signal";
  s.listen = [](const Url& u, const Options& o) -> Result<std::unique_ptr<ListenerImpl>> {
    auto t = signal_target(u, Role::listen);
    if (!t) return std::unexpected(t.error());
    if (o.access && !o.access->anyone)
      return fail(Errc::not_supported, "listen", "signal senders are not verified (sigqueue's siginfo can be forged)");
    auto sig = transport_signal(t->offset);
    if (!sig) return std::unexpected(sig.error());
    // Block now, before anyone can signal us: an unblocked real-time signal would kill us.
    if (auto r = os::block_signals({*sig}); !r) return std::unexpected(r.error());
    return std::make_unique<SignalListener>(*sig, fmt::format("signal://self?sig={}", t->offset));
  };
  s.connect = [](const Url& u, const Options&, const os::Deadline&) -> Result<std::unique_ptr<ConnectionImpl>> {
    auto t = signal_target(u, Role::connect);
    if (!t) return std::unexpected(t.error());
    pid_t pid = t->self ? ::getpid() : t->pid;
    auto sig = transport_signal(t->offset);
    if (!sig) return std::unexpected(sig.error());
    if (::kill(pid, 0) != 0 && errno == ESRCH) return fail(Errc::connection_refused, "connect", fmt::format("no process {}", pid));
    if (auto r = check_receives(pid, *sig, "connect"); !r) return std::unexpected(std::move(r.error()));
    return open_conn(*sig, pid);
  };
  return s;
}

}  // namespace transport
}  // namespace ipcx
