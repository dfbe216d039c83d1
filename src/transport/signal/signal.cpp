// signal://PID — see include/ipcx/signal.hpp.
#include <ipcx/signal.hpp>

#include <csignal>
#include <cstring>
#include <thread>

#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

#include "os/signals.hpp"
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

Result<void> send_signal(pid_t pid, int value, int offset) {
  auto sig = transport_signal(offset);
  if (!sig) return std::unexpected(sig.error());
  if (pid <= 0) return fail(Errc::invalid_argument, "signal", fmt::format("bad pid {}", pid));
  return os::queue_signal(pid, *sig, value);
}

namespace transport {
namespace {

class SignalConnection final : public ConnectionImpl {
 public:
  // target 0 (an accepted signal://self connection): replies go to whoever signalled last.
  SignalConnection(Fd sfd, int signo, pid_t target)
      : sfd_(std::move(sfd)), signo_(signo), target_(target), reply_to_sender_(target <= 0) {}

  Result<void> send(std::span<const std::byte> data, std::span<const int> fds, const os::Deadline& dl) override {
    if (!is_open()) return fail(Errc::closed, "send", "connection closed");
    if (!fds.empty()) return fail(Errc::not_supported, "send", "signals cannot carry file descriptors");
    if (data.size() != sizeof(int))
      return fail(Errc::invalid_argument, "send", fmt::format("a signal carries one 4-byte int, not {} bytes", data.size()));
    if (target_ <= 0) return fail(Errc::invalid_argument, "send", "no peer yet: receive a signal first");
    int value = 0;
    for (int i = 3; i >= 0; --i) value = (value << 8) | std::to_integer<int>(data[static_cast<std::size_t>(i)]);
    for (;;) {
      auto r = os::queue_signal(target_, signo_, value);
      if (r || r.error().sys_errno != EAGAIN) {
        if (!r && r.error().sys_errno == ESRCH) return fail(Errc::closed, "send", fmt::format("process {} is gone", target_));
        return r;
      }
      // The receiver's queue of pending real-time signals is full: wait for it to drain.
      if (dl.immediate()) return fail(Errc::would_block, "send");
      if (dl.expired()) return fail(Errc::timeout, "send");
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  Result<void> recv(Message& into, const os::Deadline& dl) override {
    if (!is_open()) return fail(Errc::closed, "recv", "connection closed");
    // Without a deadline, one blocking read (like sigwaitinfo); otherwise non-blocking + poll.
    if (nonblock_ == dl.infinite()) {
      if (auto r = os::set_nonblocking(sfd_.get(), !dl.infinite()); !r) return r;
      nonblock_ = !dl.infinite();
    }
    for (;;) {
      auto si = os::read_signal(sfd_.get());
      if (si) {
        if (reply_to_sender_) target_ = static_cast<pid_t>(si->ssi_pid);
        peer_ = PeerCred{static_cast<pid_t>(si->ssi_pid), si->ssi_uid, static_cast<gid_t>(-1), false};
        into.fds.clear();
        into.data.resize(sizeof(int));
        auto v = static_cast<std::uint32_t>(si->ssi_int);
        for (std::size_t i = 0; i < 4; ++i) into.data[i] = std::byte((v >> (8 * i)) & 0xff);
        return {};
      }
      if (si.error().code != Errc::would_block) return std::unexpected(si.error());
      if (dl.immediate()) return fail(Errc::would_block, "recv");
      if (auto w = os::wait_fd(sfd_.get(), POLLIN, dl); !w) return std::unexpected(w.error());
    }
  }

  int native_handle() const noexcept override { return sfd_.get(); }
  PeerCred peer() const noexcept override { return peer_; }
  void close() noexcept override { sfd_.reset(); }
  bool is_open() const noexcept override { return sfd_.valid(); }

 private:
  Fd sfd_;
  int signo_;
  pid_t target_;
  bool reply_to_sender_;
  PeerCred peer_{};
  bool nonblock_ = true;  // the signalfd is created non-blocking
};

Result<int> signal_from(const Url& u) {
  int offset = kDefaultSignalOffset;
  if (auto it = u.query.find("sig"); it != u.query.end()) {
    const auto& v = it->second;
    char* end = nullptr;
    long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < INT32_MIN || n > INT32_MAX)  // range: transport_signal
      return fail(Errc::invalid_url, "parse URL", fmt::format("bad sig '{}' (an offset from SIGRTMIN)", v));
    offset = static_cast<int>(n);
  }
  return transport_signal(offset);
}

Result<std::unique_ptr<ConnectionImpl>> open_conn(int signo, pid_t target) {
  if (auto r = os::block_signals({signo}); !r) return std::unexpected(r.error());
  auto sfd = os::make_signalfd({signo});
  if (!sfd) return std::unexpected(sfd.error());
  return std::make_unique<SignalConnection>(std::move(*sfd), signo, target);
}

class SignalListener final : public ListenerImpl {
 public:
  SignalListener(int signo, std::string url) : signo_(signo), url_(std::move(url)) {}
  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline&) override {
    if (!open_) return fail(Errc::closed, "accept", "listener closed");
    if (handed_out_) return fail(Errc::not_supported, "accept", "signal://self yields one connection");
    handed_out_ = true;
    return open_conn(signo_, 0);
  }
  int native_handle() const noexcept override { return -1; }
  std::string url() const override { return url_; }
  void close() noexcept override { open_ = false; }
  bool is_open() const noexcept override { return open_; }

 private:
  int signo_;
  std::string url_;
  bool open_ = true, handed_out_ = false;
};

}  // namespace

Scheme signal_scheme() {
  Scheme s;
  s.name = "signal";
  s.listen = [](const Url& u, const Options&) -> Result<std::unique_ptr<ListenerImpl>> {
    auto who = u.authority_and_path();
    if (!who.empty() && who != "self")
      return fail(Errc::invalid_url, "listen", "signal: listens as signal://self");
    auto sig = signal_from(u);
    if (!sig) return std::unexpected(sig.error());
    // Block now, before anyone can signal us: an unblocked real-time signal would kill us.
    if (auto r = os::block_signals({*sig}); !r) return std::unexpected(r.error());
    return std::make_unique<SignalListener>(*sig, fmt::format("signal://self?sig={}", *sig - SIGRTMIN));
  };
  s.connect = [](const Url& u, const Options&, const os::Deadline&) -> Result<std::unique_ptr<ConnectionImpl>> {
    auto who = std::string(u.authority_and_path());
    pid_t pid = 0;
    if (who == "self") pid = ::getpid();
    else {
      char* end = nullptr;
      long v = std::strtol(who.c_str(), &end, 10);
      if (who.empty() || *end != '\0' || v <= 0)
        return fail(Errc::invalid_url, "parse URL", fmt::format("'{}': expected signal://PID", u.str()));
      pid = static_cast<pid_t>(v);
    }
    auto sig = signal_from(u);
    if (!sig) return std::unexpected(sig.error());
    if (::kill(pid, 0) != 0 && errno == ESRCH) return fail(Errc::connection_refused, "connect", fmt::format("no process {}", pid));
    return open_conn(*sig, pid);
  };
  return s;
}

}  // namespace transport
}  // namespace ipcx
