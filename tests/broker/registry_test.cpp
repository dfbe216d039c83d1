// ipcxd's service registry and topics against the real daemon: death notifications for
// SIGKILLed providers, no false death for stopped ones, wildcards, and access control for
// another uid on every right.
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <set>

#include "broker/broker_harness.hpp"
#include "e2e/cli_harness.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

// A provider in a process of its own: registers `name`, says so on a pipe, then waits (or spins).
pid_t spawn_provider(const std::string& url, const std::string& name, bool spin) {
  int ready[2];
  if (::pipe(ready) != 0) return -1;
  pid_t child = ::fork();
  if (child == 0) {
    ::close(ready[0]);
    auto c = broker::Client::connect(url);
    if (!c || !c->register_service(name, "unix:///run/" + name + ".sock", {{"version", "2"}})) ::_exit(3);
    (void)!::write(ready[1], "r", 1);
    if (spin) {
      std::atomic<std::uint64_t> x{0};
      for (;;) x.fetch_add(1, std::memory_order_relaxed);  // busy: a provider under load is not dead
    }
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char ch = 0;
  const bool ok = ::read(ready[0], &ch, 1) == 1;
  ::close(ready[0]);
  if (!ok) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    return -1;
  }
  return child;
}

TEST(BrokerRegistry, RegisterLookupListAndLease) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto a = d.client();
  auto b = d.client();
  ASSERT_TRUE(a.register_service("camera", "unix:///run/cam.sock", {{"model", "x1"}}));
  auto again = b.register_service("camera", "unix:///elsewhere");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::already_exists);
  auto s = b.lookup("camera");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->url, "unix:///run/cam.sock");
  EXPECT_EQ(s->pid, ::getpid());  // the kernel's word, not the client's
  ASSERT_EQ(s->metadata.size(), 1u);
  EXPECT_EQ(s->metadata[0].second, "x1");
  ASSERT_TRUE(a.register_service("camera.aux", "tcp://127.0.0.1:9"));
  EXPECT_EQ(b.services("camera*").value().size(), 2u);
  EXPECT_EQ(b.services("camera").value().size(), 1u);
  auto bad = b.unregister_service("camera");  // not b's
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::not_found);
  a.close();  // the lease ends with the connection
  ASSERT_TRUE(eventually([&] { return !b.lookup("camera"); }, 5s));
  EXPECT_TRUE(b.register_service("camera", "unix:///elsewhere"));
  EXPECT_FALSE(b.register_service("no spaces allowed", "x"));
  // Metadata keys are names too, each given once; a refusal leaves the connection usable.
  for (const auto& meta : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {{"", "v"}}, {{"a b", "v"}}, {{"line\nbreak", "v"}}, {{"k", "1"}, {"k", "2"}}}) {
    auto r = b.register_service("meta.bad", "unix:///x", meta);
    ASSERT_FALSE(r) << meta[0].first;
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << meta[0].first;
    EXPECT_FALSE(b.lookup("meta.bad"));
  }
  EXPECT_TRUE(b.register_service("meta.good", "unix:///x", {{"zone", "a\nb"}, {"k.1/x:y-z_", ""}}));
}

TEST(BrokerRegistry, WatcherHearsOfASigkilledProviderWithin100ms) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto w = d.client();
  ASSERT_TRUE(w.watch("svc.*"));
  pid_t provider = spawn_provider(d.url(), "svc.kill", false);
  ASSERT_GT(provider, 0);
  auto up = w.next_event(5s);
  ASSERT_TRUE(up) << up.error().message();
  EXPECT_TRUE(up->up);
  EXPECT_EQ(up->service.name, "svc.kill");
  EXPECT_EQ(up->service.pid, provider);
  const auto t0 = std::chrono::steady_clock::now();
  ::kill(provider, SIGKILL);
  auto down = w.next_event(5s);
  const auto latency = std::chrono::steady_clock::now() - t0;
  ::waitpid(provider, nullptr, 0);
  ASSERT_TRUE(down) << down.error().message();
  EXPECT_FALSE(down->up);
  EXPECT_EQ(down->service.name, "svc.kill");
  EXPECT_EQ(down->reason, "provider disconnected");
  // The bound: the kernel closes the socket at the kill and the daemon reacts in the
  // same loop round; this is a functional bound on an event-driven path, not a speed test.
  EXPECT_LT(latency, 100ms) << std::chrono::duration_cast<std::chrono::microseconds>(latency).count() << " µs";
}

TEST(BrokerRegistry, NoFalseDeathForAStoppedOrBusyProvider) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto w = d.client();
  ASSERT_TRUE(w.watch("*"));
  pid_t stopped = spawn_provider(d.url(), "stopped", false);
  pid_t busy = spawn_provider(d.url(), "busy", true);
  ASSERT_GT(stopped, 0);
  ASSERT_GT(busy, 0);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(w.next_event(5s));
  ::kill(stopped, SIGSTOP);
  auto none = w.next_event(5500ms);
  ASSERT_FALSE(none) << "false death: " << none->service.name;
  EXPECT_EQ(none.error().code, Errc::timeout);
  EXPECT_TRUE(w.lookup("stopped"));
  EXPECT_TRUE(w.lookup("busy"));
  ::kill(stopped, SIGCONT);
  for (pid_t p : {stopped, busy}) {
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
  }
  std::set<std::string> gone;
  for (int i = 0; i < 2; ++i)
    if (auto e = w.next_event(5s); e && !e->up) gone.insert(e->service.name);
  EXPECT_EQ(gone, (std::set<std::string>{"busy", "stopped"}));
}

TEST(BrokerTopics, WildcardsReachTheRightSubscribers) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto one = d.client();
  auto rest = d.client();
  auto exact = d.client();
  auto pub = d.client();
  ASSERT_TRUE(one.subscribe("sensors.*.temp"));
  ASSERT_TRUE(rest.subscribe("sensors.>"));
  ASSERT_TRUE(exact.subscribe("sensors.kitchen.temp"));
  EXPECT_EQ(pub.publish_topic("sensors.kitchen.temp", bytes_of("21.5")).value(), 3u);
  EXPECT_EQ(pub.publish_topic("sensors.kitchen.door.open", bytes_of("1")).value(), 1u);
  EXPECT_EQ(pub.publish_topic("sensors", bytes_of("x")).value(), 0u);  // '>' needs at least one token
  EXPECT_EQ(pub.publish_topic("other.kitchen.temp", bytes_of("x")).value(), 0u);
  auto m = one.next_message(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->topic, "sensors.kitchen.temp");
  EXPECT_EQ(m->text(), "21.5");
  EXPECT_FALSE(one.next_message(100ms));
  EXPECT_EQ(rest.next_message(5s).value().text(), "21.5");
  EXPECT_EQ(rest.next_message(5s).value().topic, "sensors.kitchen.door.open");
  EXPECT_EQ(exact.next_message(5s).value().text(), "21.5");
  // Subscribers that leave are not sent to; bad names are refused clearly.
  exact.close();
  ASSERT_TRUE(eventually([&] { return pub.publish_topic("sensors.kitchen.temp", bytes_of("22")).value() == 2u; }, 5s));
  for (auto bad : {"a..b", "a.>.b", "a b", ""}) {
    auto r = pub.subscribe(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << bad;
  }
  auto wild = pub.publish_topic("a.*", bytes_of("x"));
  ASSERT_FALSE(wild);
  EXPECT_EQ(wild.error().code, Errc::invalid_argument);
}

// A subscriber that never reads does not slow the publisher or the other subscribers: it
// misses messages once its connection's queue is full.
TEST(BrokerTopics, ASubscriberThatNeverReadsMissesMessagesAndNobodyWaits) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto stuck = d.client();
  auto good = d.client();
  auto pub = d.client();
  ASSERT_TRUE(stuck.subscribe("flood"));
  ASSERT_TRUE(good.subscribe("flood"));
  const std::string big(64 * 1024, 'x');
  std::size_t got = 0;
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(pub.publish_topic("flood", bytes_of(big), 10s));
    while (good.next_message(0ms)) ++got;
  }
  while (good.next_message(200ms)) ++got;
  EXPECT_EQ(got, 400u);
}

// ---- access control: another uid ----

// Runs `body` as uid/gid 65534 (nobody) in a child; its exit code is the result.
template <class F>
int as_nobody(F body) {
  pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(77);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Tries every right; exit code: a bit per right that was denied.
int try_every_right(const std::string& url) {
  auto c = broker::Client::connect(url);
  if (!c) return 100;
  int denied = 0;
  auto is_denied = [](const auto& r) { return !r && r.error().code == Errc::permission_denied; };
  if (is_denied(c->declare("acl.q"))) denied |= 1;                               // admin
  if (is_denied(c->publish("acl.q", as_bytes("x")))) denied |= 2;                // publish
  if (is_denied(c->get("acl.q", 0ms))) denied |= 4;                              // consume
  if (is_denied(c->subscribe("acl.t"))) denied |= 8;                             // subscribe
  if (is_denied(c->register_service("acl.s", "unix:///x"))) denied |= 16;        // register
  if (is_denied(c->lookup("acl.owned"))) denied |= 32;                           // lookup
  if (is_denied(c->publish_topic("acl.t", as_bytes("x")))) denied |= 64;         // publish (topic)
  return denied;
}

TEST(BrokerAccess, AnotherUidIsDeniedEveryRightWithoutARuleAndAllowedWithOne) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another uid";
  for (bool with_rule : {false, true}) {
    Daemon d;
    const auto policy = d.dir().file("policy.toml");
    {
      std::ofstream f(policy);
      f << "[[allow]]\nkind = \"queue\"\nnames = [\"elsewhere\"]\nrights = [\"all\"]\nuids = [65534]\n";
      if (with_rule) {
        f << "[[allow]]\nkind = [\"queue\", \"topic\", \"service\"]\nnames = [\"acl.*\"]\nrights = [\"all\"]\nuids = [65534]\n";
      }
    }
    // The scratch directory must be reachable by nobody for it to reach the socket.
    ::chmod(d.dir().path().c_str(), 0755);
    ASSERT_TRUE(d.start({"--policy", policy}));
    auto owner = d.client();
    ASSERT_TRUE(owner.register_service("acl.owned", "unix:///y"));
    const int denied = as_nobody([&] { return try_every_right(d.url()); });
    ASSERT_NE(denied, 77) << "could not become nobody";
    ASSERT_NE(denied, 100) << "nobody could not connect";
    if (with_rule) {
      EXPECT_EQ(denied, 0) << "denied bits " << denied;
    } else {
      EXPECT_EQ(denied, 127) << "denied bits " << denied;
      EXPECT_NE(d.log().find("denied: uid 65534"), std::string::npos) << d.log();
    }
  }
}

TEST(BrokerAccess, WithoutAPolicyOnlyTheOwnerCanReachTheSocket) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another uid";
  Daemon d;
  ::chmod(d.dir().path().c_str(), 0755);
  ASSERT_TRUE(d.start());
  const int rc = as_nobody([&] {
    auto c = broker::Client::connect(d.url(), 1s);
    if (!c) return 1;  // the socket (0600) refuses other users outright
    auto s = c->status();
    return s ? 0 : (s.error().code == Errc::permission_denied ? 1 : 2);
  });
  EXPECT_EQ(rc, 1);
}

}  // namespace
}  // namespace ipcx::test
