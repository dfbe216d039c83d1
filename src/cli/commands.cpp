#include "cli/commands.hpp"

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>

#include <unistd.h>

#include <fmt/format.h>

#include <ipcx/reactor.hpp>
#include <ipcx/server.hpp>
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

// Messages of a transport that carries one int (fixed_size 4) print as that number. False when
// stdout cannot take it (a full disk, a reader that went away).
bool print_message(const Message& m, const Capabilities& caps) {
  if (caps.fixed_size == 4)
    if (auto v = signal_value(m.bytes())) {
      std::fprintf(stdout, "%d\n", *v);
      return std::fflush(stdout) == 0 && !std::ferror(stdout);
    }
  std::fwrite(m.data.data(), 1, m.data.size(), stdout);
  std::fputc('\n', stdout);
  return std::fflush(stdout) == 0 && !std::ferror(stdout);
}

Timeout ms_or(long ms, Timeout fallback) {
  if (ms < 0) return fallback;
  if (ms == 0) return forever;
  return std::chrono::milliseconds(ms);
}

// (The flags' ranges and --slow-peer's two words are checked when they are parsed.)
ServerOptions server_options(const ListenArgs& a) {
  ServerOptions o;
  if (a.max_connections) o.max_connections = a.max_connections;
  if (a.memory_limit_mib) o.memory_limit = a.memory_limit_mib << 20;
  if (a.max_queued_kib) o.max_queued = a.max_queued_kib << 10;
  if (a.slow_peer == "drop") o.slow_peer = SlowPeer::drop;
  o.frame_timeout = ms_or(a.frame_timeout_ms, o.frame_timeout);
  o.idle_timeout = ms_or(a.idle_timeout_ms, o.idle_timeout);
  o.send_timeout = ms_or(a.send_timeout_ms, o.send_timeout);
  return o;
}

std::string peer_text(const PeerCred& peer) {
  return peer.verified ? fmt::format(" (pid {}, uid {})", peer.pid, peer.uid) : std::string();
}

}  // namespace

int cmd_listen(const ListenArgs& args, const char* name) {
  // Block the signals that end us before anything else, so they arrive through the reactor
  // and the listener's destructor removes its socket/FIFO files on the way out.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);

  const ServerOptions so = server_options(args);
  Options o = options_for(args.lines);
  o.mode = args.mode;
  if (args.allow_anyone) {
    o.access = AccessRule::everyone();
  } else if (!args.allow_uids.empty() || !args.allow_gids.empty()) {
    AccessRule rule;
    for (auto u : args.allow_uids) rule.uids.push_back(static_cast<uid_t>(u));
    for (auto g : args.allow_gids) rule.gids.push_back(static_cast<gid_t>(g));
    o.access = rule;
  }
  auto listener = listen(args.url, o);
  if (!listener) return report(name, listener.error());
  const auto url = listener->url();
  if (listener->capabilities().remote)
    std::fprintf(stderr,
                 "ipcx %s: warning: %s is reachable from other machines, and anyone who reaches it can send "
                 "(no authentication)\n",
                 name, url.c_str());

  long received = 0;
  bool failed = false;
  bool timed_out = false;
  bool finishing = false;  // --count reached: the last replies go out, then we stop
  std::optional<Server> server;
  std::optional<Reactor::Id> idle_timer;

  auto finish_up = [&] {
    if (finishing) return;
    finishing = true;
    server->post([&] {
      server->close_listeners();
      server->for_each([](Session& s) { s.close(); });  // after their queued replies
    });
  };
  Server::Handlers h;
  h.on_message = [&](Session& s, Message& m) {
    if (finishing) return;
    ++received;
    if (idle_timer) (void)server->reactor().rearm_timer(*idle_timer, std::chrono::milliseconds(args.timeout_ms));
    if (!args.quiet && !print_message(m, s.capabilities())) {
      report(name, fail_errno(errno ? errno : EIO, "write", "stdout").error());
      failed = true;
      server->stop();
      return;
    }
    if (args.echo)
      if (auto r = s.send(m.bytes()); !r && r.error().code != Errc::closed) {
        report(name, r.error());
        failed = true;
        s.abort(r.error().message());
        return;
      }
    if (args.count > 0 && received >= args.count) finish_up();
  };
  h.on_close = [&](Session& s, const Error& why) {
    if (why.code != Errc::closed) {
      // A bad or stuck client is dropped with one line on stderr; the others keep being served.
      std::fprintf(stderr, "ipcx %s: dropping client%s: %s\n", name, peer_text(s.peer()).c_str(),
                   why.message().c_str());
      failed = true;
    }
    if (args.until_first_close && args.count == 0) finish_up();
  };
  h.on_refused = [&](const PeerCred& peer, const Error& why) {
    // Turned away at the door (by design, not a failure of this run): said, not counted.
    std::fprintf(stderr, "ipcx %s: refused a client%s: %s\n", name, peer_text(peer).c_str(), why.message().c_str());
  };
  // Nothing left to serve (a pipe's single peer gone, or --count reached and flushed).
  h.on_exhausted = [&] { server->stop(); };
  auto created = Server::create(std::move(h), so);
  if (!created) return report(name, created.error());
  server.emplace(std::move(*created));
  for (int sig : {SIGINT, SIGTERM, SIGHUP})
    if (auto r = server->reactor().add_signal(sig, [&](const SignalInfo&) { server->stop(); }); !r)
      return report(name, r.error());
  if (args.timeout_ms > 0) {
    auto t = server->reactor().add_timer(std::chrono::milliseconds(args.timeout_ms), forever, [&] {
      std::fprintf(stderr, "ipcx %s: %s: timed out after %ld ms (%ld message%s received)\n", name, url.c_str(),
                   args.timeout_ms, received, received == 1 ? "" : "s");
      timed_out = true;
      server->stop();
    });
    if (!t) return report(name, t.error());
    idle_timer = *t;
  }
  // Readiness for scripts (and the real port when tcp asked for port 0).
  std::fprintf(stderr, "ipcx %s: listening on %s\n", name, url.c_str());
  if (auto r = server->add_listener(std::move(*listener)); !r) return report(name, r.error());
  if (auto r = server->run(); !r) return report(name, r.error());
  if (timed_out) return 1;
  return failed ? 1 : 0;
}

Result<std::string> read_stdin_message(std::size_t max) {
  std::string all;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(errno, "read", "standard input");
    if (n == 0) return all;
    if (all.size() + static_cast<std::size_t>(n) > max)
      return fail(Errc::too_large, "send", fmt::format("standard input is longer than the maximum message ({} bytes)", max));
    all.append(buf, static_cast<std::size_t>(n));
  }
}

namespace {

// After the last message: tell the peer we are done and give it a moment to say whether it
// took them (an ipcx server closes at once; a refusal arrives as a goodbye).
Result<void> await_verdict(Connection& conn, Timeout within) {
  if (!conn.capabilities().goodbye) return {};
  if (auto r = conn.close_send(within); !r) return r;
  Message m;
  auto until = std::chrono::steady_clock::now() + std::min<Timeout>(within, std::chrono::seconds(2));
  for (;;) {
    auto left = until - std::chrono::steady_clock::now();
    if (left <= Timeout::zero()) return {};  // it keeps the connection open: nothing refused
    auto r = conn.recv(m, std::chrono::duration_cast<Timeout>(left));
    if (r) continue;  // replies (an echo) are not what we wait for
    switch (r.error().code) {
      case Errc::closed:
      case Errc::timeout:
        return {};
      default:
        return std::unexpected(std::move(r.error()));
    }
  }
}

}  // namespace

int cmd_send(const SendArgs& args) {
  auto timeout = Timeout(std::chrono::milliseconds(args.timeout_ms));
  const Options options = options_for(args.lines);
  auto conn = connect(args.url, options, timeout);
  if (!conn) return report("send", conn.error());
  const bool ints = conn->capabilities().fixed_size == 4;  // e.g. signal://: the text is a number
  auto send_one = [&](std::string_view m) -> Result<void> {
    if (!ints) return conn->send(as_bytes(m), timeout);
    std::int32_t v = 0;
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.remove_suffix(1);
    auto [end, ec] = std::from_chars(m.data(), m.data() + m.size(), v);
    if (ec != std::errc() || end != m.data() + m.size())
      return fail(Errc::invalid_argument, "send", fmt::format("'{}' is not a 32-bit integer", m));
    auto bytes = signal_message(v);
    return conn->send(bytes, timeout);
  };
  if (args.text.empty() || (args.text.size() == 1 && args.text[0] == "-")) {
    if (args.lines) {
      // One message per line, sent as they are read: no need to hold all of the input.
      std::string line;
      while (std::getline(std::cin, line))
        if (auto r = send_one(line); !r) return report("send", r.error());
    } else {
      auto all = read_stdin_message(options.max_message);
      if (!all) return report("send", all.error());
      if (auto r = send_one(*all); !r) return report("send", r.error());
    }
  } else {
    std::string joined;
    for (std::size_t i = 0; i < args.text.size(); ++i) joined += (i ? " " : "") + args.text[i];
    if (auto r = send_one(joined); !r) return report("send", r.error());
  }
  if (auto r = conn->flush(timeout); !r) return report("send", r.error());
  if (auto r = await_verdict(*conn, timeout); !r) return report("send", r.error());
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
