#include "cli/commands.hpp"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <limits>
#include <map>
#include <optional>

#include <fmt/format.h>

#include <ipcx/reactor.hpp>
#include <ipcx/signal.hpp>

namespace ipcx::cli {

int report(const std::string& what, const Error& e) {
  std::fprintf(stderr, "ipcx %s: %s\n", what.c_str(), e.message().c_str());
  return 1;
}

namespace {

Options options_for(bool lines) {
  Options o;
  if (lines) o.framing = Framing::lines;
  return o;
}

// signal: messages are one little-endian int: print it as a number.
void print_message(const Message& m, bool as_int) {
  if (as_int && m.data.size() == 4) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(m.data[static_cast<std::size_t>(i)]);
    std::fprintf(stdout, "%d\n", static_cast<std::int32_t>(v));
    std::fflush(stdout);
    return;
  }
  std::fwrite(m.data.data(), 1, m.data.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// Serves one listener with many connections on a reactor until a signal, a count or a timeout.
// A listener without a pollable handle (pipe:, fifo: while a conversation is open, signal:)
// carries one conversation at a time: it is asked for the next only when none is open.
class Server {
 public:
  Server(Listener listener, Reactor reactor, const ListenArgs& args, const char* name)
      : listener_(std::move(listener)), reactor_(std::move(reactor)), args_(args), name_(name) {}

  int run() {
    for (int sig : {SIGINT, SIGTERM}) {
      auto r = reactor_.add_signal(sig, [this](const SignalInfo&) { finish(); });
      if (!r) return report(name_, r.error());
    }
    rearm();
    // --timeout counts from the last message. run_once() also returns early without one (EINTR
    // after a stop/continue, a connection that came and went): only the clock says it passed.
    const auto idle_limit = std::chrono::milliseconds(args_.timeout_ms);
    auto idle_since = std::chrono::steady_clock::now();
    while (!done_) {
      auto wait = forever;
      if (args_.timeout_ms > 0) wait = std::max(Timeout::zero(), Timeout(idle_since + idle_limit - std::chrono::steady_clock::now()));
      auto before = received_;
      auto n = reactor_.run_once(wait);
      if (!n) return report(name_, n.error());
      if (received_ != before) idle_since = std::chrono::steady_clock::now();
      else if (!done_ && args_.timeout_ms > 0 && std::chrono::steady_clock::now() - idle_since >= idle_limit) {
        std::fprintf(stderr, "ipcx %s: %s: timed out after %ld ms (%ld message%s received)\n", name_, args_.url.c_str(),
                     args_.timeout_ms, received_, received_ == 1 ? "" : "s");
        return 1;
      }
    }
    return exit_code_;
  }

 private:
  void rearm() {
    // Unregister first: an accepted connection may take over the listener's descriptor (FIFO).
    if (listener_id_) {
      reactor_.remove(*listener_id_);
      listener_id_.reset();
    }
    for (;;) {
      if (listener_.native_handle() < 0 && !conns_.empty()) break;
      auto c = listener_.try_accept();
      if (!c) {
        auto code = c.error().code;
        int err = c.error().sys_errno;
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
          // Out of descriptors or memory: keep serving the clients we have, try again shortly.
          if (!backing_off_) report(name_, c.error());
          backing_off_ = true;
          auto t = reactor_.add_timer(std::chrono::milliseconds(100), Timeout::zero(), [this] { rearm(); });
          if (!t) {
            exit_code_ = report(name_, t.error());
            return finish();
          }
          return;
        }
        if (code != Errc::would_block && code != Errc::not_supported && code != Errc::closed) {
          exit_code_ = report(name_, c.error());
          finish();
          return;
        }
        break;
      }
      backing_off_ = false;
      add(std::move(*c));
    }
    if (int fd = listener_.native_handle(); fd >= 0) {
      auto id = reactor_.add_fd(fd, Reactor::readable, [this](unsigned) { rearm(); });
      if (!id) {
        exit_code_ = report(name_, id.error());
        return finish();
      }
      listener_id_ = *id;
    }
    if (!listener_id_ && conns_.empty()) finish();  // nothing more can arrive
  }

  void add(Connection c) {
    auto key = next_key_++;
    int fd = c.native_handle();
    auto& slot = conns_[key];
    slot.conn = std::move(c);
    auto id = reactor_.add_fd(fd, Reactor::readable, [this, key](unsigned) { drain(key); });
    if (!id) {
      report(name_, id.error());
      conns_.erase(key);
      return;
    }
    slot.id = *id;  // level-triggered: bytes already waiting in the kernel are reported at once
  }

  void drain(std::uint64_t key) {
    auto it = conns_.find(key);
    if (it == conns_.end()) return;
    auto& slot = it->second;
    for (;;) {
      auto r = slot.conn.recv(msg_, Timeout::zero());
      if (r) {
        ++received_;
        print_message(msg_, args_.url.starts_with("signal:"));
        if (args_.echo) {
          if (auto s = slot.conn.send(msg_.data, std::chrono::seconds(5)); !s) {
            if (s.error().code != Errc::closed) report(name_, s.error());
            return drop(key);
          }
        }
        if (args_.count > 0 && received_ >= args_.count) return finish();
        continue;
      }
      if (r.error().code == Errc::would_block) return;
      if (r.error().code != Errc::closed) {
        // A bad client is dropped with one line on stderr; the others keep being served.
        auto peer = slot.conn.peer();
        std::fprintf(stderr, "ipcx %s: dropping client%s: %s\n", name_,
                     peer.verified ? fmt::format(" (pid {})", peer.pid).c_str() : "", r.error().message().c_str());
      }
      drop(key);
      if (args_.until_first_close && args_.count == 0) return finish();
      return rearm();
    }
  }

  void drop(std::uint64_t key) {
    auto it = conns_.find(key);
    if (it == conns_.end()) return;
    reactor_.remove(it->second.id);
    conns_.erase(it);
  }

  void finish() {
    done_ = true;
    reactor_.stop();
  }

  struct Slot {
    Connection conn;
    Reactor::Id id = 0;
  };

  Listener listener_;
  Reactor reactor_;
  ListenArgs args_;
  const char* name_;
  std::map<std::uint64_t, Slot> conns_;
  std::uint64_t next_key_ = 1;
  std::optional<Reactor::Id> listener_id_;
  Message msg_;
  long received_ = 0;
  int exit_code_ = 0;
  bool done_ = false;
  bool backing_off_ = false;  // accept ran out of descriptors: retrying on a timer
};

}  // namespace

int cmd_listen(const ListenArgs& args, const char* name) {
  // Block SIGINT/SIGTERM before anything else so they arrive through the reactor and the
  // listener's destructor removes its socket/FIFO files on the way out.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto reactor = Reactor::create();
  if (!reactor) return report(name, reactor.error());
  auto listener = listen(args.url, options_for(args.lines));
  if (!listener) return report(name, listener.error());
  // Readiness for scripts (and the real port when tcp asked for port 0).
  std::fprintf(stderr, "ipcx %s: listening on %s\n", name, listener->url().c_str());
  Server server(std::move(*listener), std::move(*reactor), args, name);
  return server.run();
}

int cmd_send(const SendArgs& args) {
  auto timeout = Timeout(std::chrono::milliseconds(args.timeout_ms));
  auto conn = connect(args.url, options_for(args.lines), timeout);
  if (!conn) return report("send", conn.error());
  std::vector<std::string> messages;
  if (args.text.empty() || (args.text.size() == 1 && args.text[0] == "-")) {
    std::string all((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    if (args.lines) {
      std::size_t start = 0;
      while (start < all.size()) {
        auto nl = all.find('\n', start);
        if (nl == std::string::npos) nl = all.size();
        messages.push_back(all.substr(start, nl - start));
        start = nl + 1;
      }
    } else {
      messages.push_back(std::move(all));
    }
  } else {
    std::string joined;
    for (std::size_t i = 0; i < args.text.size(); ++i) joined += (i ? " " : "") + args.text[i];
    messages.push_back(std::move(joined));
  }
  for (auto& m : messages) {
    if (auto r = conn->send(as_bytes(m), timeout); !r) return report("send", r.error());
  }
  if (auto r = conn->flush(timeout); !r) return report("send", r.error());
  return 0;
}

int cmd_ping(const PingArgs& args) {
  auto timeout = Timeout(std::chrono::milliseconds(args.timeout_ms));
  auto conn = connect(args.url, {}, timeout);
  if (!conn) return report("ping", conn.error());
  std::vector<std::byte> payload(args.size);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = std::byte('a' + i % 26);  // printable: a listener shows it
  std::vector<double> rtts;
  Message reply;
  for (long i = 0; i < args.count; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (auto r = conn->send(payload, timeout); !r) return report("ping", r.error());
    if (auto r = conn->recv(reply, timeout); !r) return report("ping", r.error());
    auto t1 = std::chrono::steady_clock::now();
    if (reply.data != payload) {
      std::fprintf(stderr, "ipcx ping: reply %ld differs from what was sent (%zu bytes back)\n", i, reply.data.size());
      return 1;
    }
    rtts.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  if (rtts.empty()) return 0;
  auto sorted = rtts;
  std::sort(sorted.begin(), sorted.end());
  auto pct = [&](double p) { return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(p * sorted.size()))]; };
  fmt::print("{} round trips of {} B to {}: min {:.1f} us, p50 {:.1f} us, p99 {:.1f} us, max {:.1f} us\n",
             rtts.size(), args.size, args.url, sorted.front(), pct(0.50), pct(0.99), sorted.back());
  return 0;
}

int cmd_signal(long pid, long value, int offset) {
  // pid_t is 32 bits: a larger number would be truncated into some other process's pid.
  if (pid <= 0 || pid > std::numeric_limits<pid_t>::max()) {
    std::fprintf(stderr, "ipcx signal: pid %ld is not a process id (1..%d)\n", pid, std::numeric_limits<pid_t>::max());
    return 1;
  }
  if (value < INT32_MIN || value > INT32_MAX) {
    std::fprintf(stderr, "ipcx signal: value %ld does not fit in an int\n", value);
    return 1;
  }
  if (auto r = send_signal(static_cast<pid_t>(pid), static_cast<int>(value), offset); !r)
    return report("signal", r.error());
  return 0;
}

}  // namespace ipcx::cli
