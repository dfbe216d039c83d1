#include "bench/harness.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <span>

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bench/control.hpp"

namespace ipcx::bench {
namespace {

using namespace std::chrono_literals;

constexpr std::byte kFill{0xa5};  // every payload byte; kWake is made of other bytes

// The verify rounds' payloads: byte i of round r's message, one pattern each way.
void pattern(std::vector<std::byte>& buf, int round, bool reply) {
  for (std::size_t i = 0; i < buf.size(); ++i)
    buf[i] = static_cast<std::byte>((static_cast<std::size_t>(round) * 167 + i * 31 + (reply ? 97 : 0)) % 251 + 1);
}

// What `ch` shows of the message it just received against what was sent: true when compared,
// false when the channel keeps nothing to compare; an error names the first changed byte.
Result<bool> same_as_sent(const Channel& ch, std::span<const std::byte> sent, int round, const char* way) {
  const auto got = ch.received();
  if (got.empty()) return sent.empty();
  if (got.size() > sent.size())
    return fail(Errc::protocol, "verify", fmt::format("round {} {}: {} bytes arrived, {} were sent", round, way, got.size(), sent.size()));
  const auto at = std::mismatch(got.begin(), got.end(), sent.begin()).first;
  if (at != got.end())
    return fail(Errc::protocol, "verify",
                fmt::format("round {} {}: byte {} of {} arrived changed", round, way, at - got.begin(), sent.size()));
  return true;
}

// Measurement::verified: how a row's messages were checked.
std::string verdict(std::size_t size, bool self_checked, bool compared) {
  if (size == 0) return "no payload";
  if (self_checked) return "stamps";
  return compared ? "content" : "none";
}

// The parent's verify rounds: what they showed of the row (Measurement::verified).
// Both sides go through the rounds whatever the channel (a self-checked channel sends its own
// stamped bytes, and checks them itself).
Result<std::string> verify_parent(Channel& ch, std::size_t size) {
  std::vector<std::byte> out(size), back(size);
  bool compared = true;
  for (int r = 0; r < kVerifyRounds; ++r) {
    pattern(out, r, false);
    pattern(back, r, true);
    if (auto s = ch.send(out); !s) return std::unexpected(s.error());
    if (auto s = ch.recv(size); !s) return std::unexpected(s.error());
    if (ch.self_checked()) continue;
    auto same = same_as_sent(ch, back, r, "back");
    if (!same) return std::unexpected(same.error());
    compared = compared && *same;
  }
  return verdict(size, ch.self_checked(), compared);
}

// The echo child's: each message checked, answered with the round's reply.
Status verify_child(Channel& ch, std::size_t size) {
  std::vector<std::byte> in(size), out(size);
  for (int r = 0; r < kVerifyRounds; ++r) {
    pattern(in, r, false);
    pattern(out, r, true);
    if (auto s = ch.recv(size); !s) return s;
    if (!ch.self_checked())
      if (auto same = same_as_sent(ch, in, r, "out"); !same) return std::unexpected(same.error());
    if (auto s = ch.send(out); !s) return s;
  }
  return {};
}

// `samples[i]`: round i's round trip; `sent[i]`: when round i's send began (for one way).
Status ping_pong(Channel& ch, std::span<const std::byte> payload, int rounds, std::uint64_t* samples,
                 std::uint64_t* sent = nullptr) {
  auto t0 = now_ns();
  for (int i = 0; i < rounds; ++i) {
    if (sent) sent[i] = t0;
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

Result<Measurement> self_timed(SelfTimedChannel& ch, const Work& w) {
  auto t = ch.measure(w.warmup, w.rounds);
  if (!t) return std::unexpected(t.error());
  if (t->samples_ns.empty()) return fail(Errc::protocol, "measure", "no samples");
  Measurement m{};
  m.size = w.size;
  m.rtt_p50_ns = percentile(t->samples_ns, 0.50);
  m.rtt_p99_ns = percentile(t->samples_ns, 0.99);
  m.msgs_per_s = t->per_s;
  m.bytes_per_s = m.msgs_per_s * static_cast<double>(w.size);
  m.verified = verdict(w.size, ch.self_checked(), t->compared);
  return m;
}

// One way from the send times the parent kept and the receive times the echo child reported
// ("received T0 T1 ..." on the control pipe, after its last ack): their p50 and p99.
void one_way(Measurement& m, const std::vector<std::uint64_t>& sent, const std::string& received) {
  std::vector<std::uint64_t> d;
  d.reserve(sent.size());
  const char* p = received.c_str();
  for (std::size_t i = 0; i < sent.size(); ++i) {
    char* end = nullptr;
    const auto t = std::strtoull(p, &end, 10);
    if (end == p) return;  // fewer than the rounds: not measured
    p = end;
    if (t < sent[i]) return;  // not the same clock: not measured
    d.push_back(t - sent[i]);
  }
  if (d.empty()) return;
  m.oneway_p50_ns = percentile(d, 0.50);
  m.oneway_p99_ns = percentile(d, 0.99);
}

Result<Measurement> measure_parent(Setup& setup, std::vector<Control>& ctls, const std::vector<pid_t>& children,
                                   const Work& w, std::span<const std::byte> payload, std::vector<std::uint64_t>& sent) {
  std::vector<std::string> readies;
  for (auto& ctl : ctls) {
    auto ready = ctl.line(30s);
    if (!ready) return std::unexpected(ready.error());
    if (!ready->starts_with("ready ")) return fail(Errc::protocol, "echo child", *ready);
    readies.push_back(ready->substr(6));
  }
  auto ch = children.size() == 1 ? setup.parent_channel(readies[0], children[0])
                                  : setup.parent_channel_all(readies, children);
  if (!ch) return std::unexpected(ch.error());
  if (auto* timed = dynamic_cast<SelfTimedChannel*>(ch->get())) {
    return self_timed(*timed, w);
  }

  auto verified = verify_parent(**ch, w.size);
  if (!verified) return std::unexpected(verified.error());
  if (auto r = ping_pong(**ch, payload, w.warmup, nullptr); !r) return std::unexpected(r.error());
  std::vector<std::uint64_t> samples(static_cast<std::size_t>(w.rounds));
  sent.resize(samples.size());
  if (auto r = ping_pong(**ch, payload, w.rounds, samples.data(), sent.data()); !r) return std::unexpected(r.error());

  double secs = 0;
  for (int b = 0; b < w.bursts; ++b) {
    auto t0 = now_ns();
    for (std::size_t i = 0; i < w.messages; ++i)
      if (auto r = (*ch)->send(payload); !r) return std::unexpected(r.error());
    if (auto r = (*ch)->recv(w.size); !r) return std::unexpected(r.error());  // the ack
    double t = static_cast<double>(now_ns() - t0) / 1e9;
    if (b == 0 || t < secs) secs = t;
  }

  Measurement m{};
  m.size = w.size;
  m.rtt_p50_ns = percentile(samples, 0.50);
  m.rtt_p99_ns = percentile(samples, 0.99);
  m.msgs_per_s = static_cast<double>(w.messages) / secs;
  m.bytes_per_s = m.msgs_per_s * static_cast<double>(w.size);
  m.verified = std::move(*verified);
  return m;
}

// The echo child's side; `received[i]`: when timed round i's message had arrived.
Status echo(Channel& ch, const Work& w, std::span<const std::byte> payload, std::vector<std::uint64_t>& received) {
  received.resize(static_cast<std::size_t>(w.rounds));
  if (auto r = verify_child(ch, w.size); !r) return r;
  for (int i = 0; i < w.warmup + w.rounds; ++i) {
    if (auto r = ch.recv(w.size); !r) return r;
    if (i >= w.warmup) received[static_cast<std::size_t>(i - w.warmup)] = now_ns();
    if (auto r = ch.send(payload); !r) return r;
  }
  for (int b = 0; b < w.bursts; ++b) {
    if (auto r = ch.recv_many(w.messages, w.size); !r) return r;
    if (auto r = ch.send(payload); !r) return r;  // the ack
  }
  return {};
}

Status echo_child(const EchoArgs& a, int ctl) {
  if (auto r = pin_to(a.cpu); !r) return r;
  auto* mech = find_mechanism(a.mechanism);
  if (!mech) return fail(Errc::invalid_argument, "echo child", "unknown mechanism " + a.mechanism);
  auto impl = impl_from_string(a.impl);
  auto make = impl ? mech->setup(*impl) : nullptr;
  if (!make) return fail(Errc::invalid_argument, "echo child", fmt::format("{} has no {} setup", a.mechanism, a.impl));
  if (auto r = block_signals(mech->blocked_signals()); !r) return r;

  auto setup = make(RunCtx{.size = a.work.size, .path = a.path, .inherited = a.fds});
  auto ready = setup->child_prepare();
  if (!ready) return std::unexpected(ready.error());
  write_control(ctl, "ready", *ready);
  auto ch = setup->child_channel();
  if (!ch) return std::unexpected(ch.error());
  if (auto* timed = dynamic_cast<SelfTimedChannel*>(ch->get())) return timed->answer(a.work.warmup, a.work.rounds);
  const std::vector<std::byte> payload(a.work.size, kFill);
  std::vector<std::uint64_t> received;
  if (auto r = echo(**ch, a.work, payload, received); !r) return r;
  // After the last ack: the parent reads it once it has stopped measuring.
  write_control(ctl, "received", fmt::format("{}", fmt::join(received, " ")));
  return {};
}

}  // namespace

std::expected<Measurement, std::string> measure(const Mechanism& mech, Impl impl, const Work& w,
                                                const Session& session, const RunDir& dir) {
  auto where = fmt::format("{} {} {} B", mech.row_name(impl), to_string(impl), w.size);
  auto failed = [&](const std::string& why) { return std::unexpected(fmt::format("{}: {}", where, why)); };

  RunCtx ctx{.size = w.size, .path = fmt::format("{}/{}-{}-{}", dir.path(), mech.name, to_string(impl), w.size)};
  auto setup = mech.setup(impl)(ctx);
  ChildWiring wiring;
  if (auto r = setup->parent_prepare(wiring); !r) return failed(describe(r.error()));
  const auto n = static_cast<std::size_t>(std::clamp(mech.children, 1, static_cast<int>(WatchedChildren::kMax)));
  std::vector<Control> ctls;
  WatchedChildren children(setup->wake_signal());
  std::vector<pid_t> pids;
  auto argv = echo_argv(EchoArgs{.mechanism = std::string(mech.name),
                                 .impl = std::string(to_string(impl)),
                                 .work = w,
                                 .cpu = session.child_cpu(),  // a fan-out row's children share it
                                 .parent = ::getpid(),
                                 .control_fd = ChildWiring::kControlFd,
                                 .path = ctx.path,
                                 .fds = wiring.child_fds()});
  for (std::size_t i = 0; i < n; ++i) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return failed(describe(sys_error("pipe2").error()));
    ctls.emplace_back(Fd(p[0]));
    wiring.control(Fd(p[1]));  // replaces (closes) the previous child's write end
    auto proc = setup->spawn(argv, wiring.options());
    if (!proc) return failed(describe(proc.error()));
    pids.push_back(proc->pid());
    children.adopt(std::move(*proc));
  }
  wiring.close_parent_copies();
  const std::vector<std::byte> payload(w.size, kFill);

  std::vector<std::uint64_t> sent;
  auto m = measure_parent(*setup, ctls, pids, w, payload, sent);
  for (auto& ctl : ctls)
    if (m && !ctl.wait_eof(30s)) m = fail(Errc::timeout, "echo child", "did not exit after the ack");
  if (m && ctls.size() == 1 && !sent.empty()) one_way(*m, sent, ctls[0].reported("received"));
  int code = 0;
  for (auto& proc : children.processes()) {
    if (!m) break;
    auto c = proc.wait(30s);
    if (!c) m = std::unexpected(c.error());
    else if (code == 0) code = *c;
  }
  if (!m)
    for (auto& proc : children.processes()) {
      (void)proc.kill(SIGKILL);
      (void)proc.wait();
    }
  drain_signals(mech.blocked_signals());  // e.g. the wake SIGCHLD queued after the last ack
  auto said = [&] {
    for (auto& ctl : ctls)
      if (auto e = ctl.child_error(); !e.empty()) return e;
    return std::string();
  };
  if (!m) {
    for (auto& ctl : ctls) (void)ctl.wait_eof(1s);  // the children are gone: collect what they said
    auto e = said();
    return failed(e.empty() ? describe(m.error()) : "echo child: " + e);
  }
  if (code != 0) {
    auto e = said();
    return failed(e.empty() ? fmt::format("echo child failed (exit status {})", code) : "echo child: " + e);
  }
  m->mechanism = std::string(mech.row_name(impl));
  m->baseline = std::string(mech.name);
  m->receivers = static_cast<int>(n);
  m->impl = impl;
  return *m;
}

Result<RunDir> start_run(Session& session, const std::vector<const Mechanism*>& mechanisms) {
  auto dir = RunDir::create();
  if (!dir) return std::unexpected(dir.error());
  if (auto r = session.pin(); !r) return std::unexpected(r.error());
  std::vector<int> signals;
  for (auto* m : mechanisms)
    for (int s : m->blocked_signals()) signals.push_back(s);
  if (auto r = session.block(signals); !r) return std::unexpected(r.error());
  return dir;
}

int run_echo(const EchoArgs& a) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the parent, even a SIGKILLed one
  if (::getppid() != a.parent) return 1;  // it died before the line above
  Fd ctl(a.control_fd);
  try {
    auto st = echo_child(a, ctl.get());
    if (!st) write_control(ctl.get(), "error", describe(st.error()));
    return st ? 0 : 1;
  } catch (const std::exception& e) {
    write_control(ctl.get(), "error", e.what());
  }
  return 1;
}

}  // namespace ipcx::bench
