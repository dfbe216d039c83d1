// Publish/subscribe against subscriber processes: many at once over each socket transport,
// one stopped (SIGSTOP) under a publisher at full speed, one killed (SIGKILL) mid-stream, and
// hostile peers sending bad input.
#include <cerrno>
#include <csignal>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include "patterns/pattern_support.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

#ifdef IPCX_TEST_SANITIZED
constexpr int kScale = 10;
#else
constexpr int kScale = 1;
#endif

// The publisher closes: each subscriber process prints its summary and exits.
struct Summary {
  unsigned long long received, gaps, last;
};
Summary finish(Child& c) {
  EXPECT_EQ(c.finish(60s), 0) << c.err();
  return {field(c.out(), "received"), field(c.out(), "gaps"), field(c.out(), "last")};
}

class PubSubTransports : public ::testing::TestWithParam<std::string> {};

TEST_P(PubSubTransports, ManySubscriberProcessesGetEverything) {
  Watchdog wd(100s);
  ScratchDir dir;
  PublisherOptions o;
  o.queue = {.capacity = 1000, .overflow = Overflow::block};  // exact delivery: the publisher waits
  // mq: queues of 512-byte messages (these are a few bytes): six conversations then charge about
  // 70 KiB of the user's RLIMIT_MSGQUEUE (800 KiB by default, shared with the tests beside this one).
  auto pub = Publisher::bind(GetParam() == "mq" ? mq_test_url(512) : url_for(GetParam(), dir, "p.sock"), o);
  IPCX_ASSERT_OK(pub);
  constexpr int kSubs = 6;
  std::vector<Child> subs;
  for (int i = 0; i < kSubs; ++i) subs.push_back(peer({"sub", pub->url(), i % 2 ? "even" : ""}));
  if (auto w = pub->wait_subscribers(kSubs, 30s); !w) {
    // Say why: what the engine accepted and dropped, and what each subscriber printed.
    const auto sv = pub->stats().server;
    ADD_FAILURE() << w.error().message() << "; accepted " << sv.accepted << " connections " << sv.connections
                  << " refused " << sv.refused_limit + sv.refused_resources << " protocol " << sv.dropped_protocol
                  << " other " << sv.dropped_other << " clean " << sv.closed_clean;
    for (auto& c : subs) {
      c.signal(SIGKILL);
      c.finish(10s);
      ADD_FAILURE() << "subscriber " << c.pid() << " printed: " << c.out() << " / " << c.err();
    }
    return;
  }
  const int n = 20000 / kScale;
  for (int i = 0; i < n; ++i) IPCX_ASSERT_OK(pub->publish(i % 2 ? "odd" : "even", as_bytes(std::to_string(i)), 30s));
  IPCX_ASSERT_OK(pub->flush(60s));
  auto st = pub->stats();
  ASSERT_EQ(st.peers.size(), std::size_t(kSubs));
  for (auto& p : st.peers) {
    expect_exact(p.counters, "peer");
    EXPECT_EQ(p.counters.queued, 0u);
    EXPECT_EQ(p.counters.dropped.total(), 0u);
  }
  pub = fail(Errc::closed, "test");  // the publisher goes: subscribers end
  for (int i = 0; i < kSubs; ++i) {
    auto s = finish(subs[i]);
    const unsigned long long want = i % 2 ? n / 2 : n;
    EXPECT_EQ(s.received, want) << "subscriber " << i;
    EXPECT_EQ(s.gaps, 0u);
    EXPECT_EQ(s.last, want);
  }
}

INSTANTIATE_TEST_SUITE_P(Sockets, PubSubTransports, ::testing::Values("unix", "unix+seq", "tcp", "mq", "sysv"),
                         [](const auto& p) { return p.param == "unix+seq" ? std::string("unix_seq") : p.param; });

TEST(PubSubProcs, StoppedSubscriberNeverBlocksAndAccountingIsExact) {
  Watchdog wd(100s);
  ScratchDir dir;
  PublisherOptions o;
  o.queue = {.capacity = 2000, .memory_cap = 256 * 1024, .overflow = Overflow::drop_oldest};
  o.memory_cap = 512 * 1024;
  o.server.memory_limit = 2 << 20;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"), o);
  IPCX_ASSERT_OK(pub);
  auto stopped = peer({"sub", pub->url(), ""});
  auto healthy = peer({"sub", pub->url(), ""});
  IPCX_ASSERT_OK(pub->wait_subscribers(2, 30s));
  stopped.signal(SIGSTOP);
  // Full speed: nothing waits for the stopped one (publish never blocks under drop_oldest).
  const int n = 200000 / kScale;
  const std::vector<std::byte> payload(200, std::byte{'x'});
  std::size_t max_queue_bytes = 0, max_engine = 0;
  for (int i = 0; i < n; ++i) {
    IPCX_ASSERT_OK(pub->publish("t", payload, Timeout::zero()));
    if (i % 256 == 0) {
      auto st = pub->stats();
      max_queue_bytes = std::max(max_queue_bytes, st.queue_bytes);
      max_engine = std::max(max_engine, st.server.memory_in_use);
    }
  }
  auto mid = pub->stats();
  EXPECT_LE(max_queue_bytes, o.memory_cap);
  EXPECT_LE(mid.server.memory_peak, o.server.memory_limit);
  EXPECT_GT(mid.total.dropped.oldest, 0u) << "the stopped subscriber's queue never overflowed";
  expect_exact(mid.total, "publisher under a stopped subscriber");
  stopped.signal(SIGCONT);
  IPCX_ASSERT_OK(pub->flush(60s));
  auto st = pub->stats();
  expect_exact(st.total, "publisher");
  EXPECT_EQ(st.total.queued, 0u);
  EXPECT_EQ(st.total.sent, 2ull * n);
  ASSERT_EQ(st.peers.size(), 2u);
  pub = fail(Errc::closed, "test");
  auto a = finish(stopped), b = finish(healthy);
  // For each: what it received plus the gaps it saw is every publication, and the publisher's
  // drops for it are exactly its gaps.
  EXPECT_EQ(a.received + a.gaps, static_cast<unsigned long long>(n));
  EXPECT_EQ(b.received + b.gaps, static_cast<unsigned long long>(n));
  EXPECT_EQ(a.received + b.received, st.total.delivered);
  EXPECT_EQ(a.gaps + b.gaps, st.total.dropped.total());
  EXPECT_GT(a.gaps, 0u);
}

TEST(PubSubProcs, KilledSubscriberIsCountedAndOthersGetEverything) {
  Watchdog wd(100s);
  ScratchDir dir;
  PublisherOptions o;
  o.queue = {.capacity = 100000, .memory_cap = 64 << 20, .overflow = Overflow::drop_oldest};
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"), o);
  IPCX_ASSERT_OK(pub);
  auto victim = peer({"sub", pub->url(), ""});
  auto survivor = peer({"sub", pub->url(), ""});
  IPCX_ASSERT_OK(pub->wait_subscribers(2, 30s));
  victim.signal(SIGSTOP);  // so it surely holds messages when it dies
  const int n = 20000 / kScale;
  for (int i = 0; i < n / 2; ++i) IPCX_ASSERT_OK(pub->publish("t", as_bytes(std::to_string(i))));
  victim.signal(SIGKILL);
  for (int i = n / 2; i < n; ++i) IPCX_ASSERT_OK(pub->publish("t", as_bytes(std::to_string(i))));
  IPCX_ASSERT_OK(pub->flush(60s));
  ASSERT_TRUE(eventually([&] { (void)pub->poll(1ms); return pub->subscribers() == 1; }, 30s));
  auto st = pub->stats();
  expect_exact(st.total, "publisher");
  EXPECT_GT(st.total.dropped.peer_died, 0u);
  EXPECT_EQ(st.total.dropped.total(), st.total.dropped.peer_died);
  EXPECT_EQ(st.total.queued, 0u);
  pub = fail(Errc::closed, "test");
  auto s = finish(survivor);
  EXPECT_EQ(s.received, static_cast<unsigned long long>(n));
  EXPECT_EQ(s.gaps, 0u);
  EXPECT_EQ(st.total.delivered, s.received + (st.total.sent - n - st.total.dropped.peer_died));
}

// A peer that speaks the frame format but not the pattern: it is told why and dropped; a
// subscriber connected meanwhile misses nothing.
TEST(PubSubProcs, BadInputDropsOnlyThatConnection) {
  Watchdog wd(100s);
  ScratchDir dir;
  PublisherOptions o;
  o.max_subscriptions = 8;
  o.queue.overflow = Overflow::block;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"), o);
  IPCX_ASSERT_OK(pub);
  auto good = peer({"sub", pub->url(), ""});
  IPCX_ASSERT_OK(pub->wait_subscribers(1, 30s));
  auto hello = [](std::string role) {
    std::vector<std::byte> m{std::byte{0x7e}};
    for (char c : role) m.push_back(std::byte(c));
    return m;
  };
  std::vector<std::pair<std::string, std::vector<std::vector<std::byte>>>> attacks = {
      {"unknown kind", {hello("sub"), {std::byte{0x55}, std::byte{1}}}},
      {"empty message", {hello("sub"), {}}},
      {"wrong role", {hello("pull")}},
      {"before hello", {{std::byte{0x11}, std::byte{'a'}}}},
      {"short credit", {hello("sub"), {std::byte{0x19}, std::byte{1}}}},
      {"credit for unsent", {hello("sub"), {std::byte{0x19}, std::byte{5}, {}, {}, {}, {}, {}, {}, {}, std::byte{1}, {}, {}, {}}}},
      {"zero window", {hello("sub"), {std::byte{0x19}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}}},
      {"prefix too long", {hello("sub"), std::vector<std::byte>(1 + max_topic + 1, std::byte{0x11})}},
  };
  std::vector<std::vector<std::byte>> flood{hello("sub")};
  for (int i = 0; i < 9; ++i) {
    std::vector<std::byte> m{std::byte{0x11}};
    for (char c : std::to_string(i)) m.push_back(std::byte(c));
    flood.push_back(m);
  }
  attacks.push_back({"subscription flood", flood});
  int published = 0;
  for (auto& [name, msgs] : attacks) {
    SCOPED_TRACE(name);
    auto c = connect(pub->url());
    IPCX_ASSERT_OK(c);
    for (auto& m : msgs) IPCX_ASSERT_OK(c->send(m, 5s));
    // Served while the attacker waits for its verdict.
    Result<Message> verdict = fail(Errc::timeout, "test");
    for (int k = 0; k < 2000; ++k) {
      IPCX_ASSERT_OK(pub->publish("t", as_bytes(std::to_string(published++)), 10s));
      (void)pub->poll(1ms);
      verdict = c->recv(Timeout::zero());
      if (verdict || verdict.error().code != Errc::would_block) break;
    }
    ASSERT_TRUE(verdict.has_value()) << why(verdict);
    ASSERT_FALSE(verdict->data.empty());
    EXPECT_EQ(verdict->data[0], std::byte{0x7f});  // error, with the reason
    EXPECT_NE(verdict->text().find("protocol"), std::string::npos) << verdict->text();
    auto after = c->recv(10s);
    EXPECT_FALSE(after.has_value());  // then the connection ends
  }
  // Bytes that are not even frames, from a raw socket: the engine drops that connection.
  {
    auto raw = raw_unix_client(dir.file("p.sock"));
    ASSERT_TRUE(raw.valid());
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::write(raw.get(), junk, sizeof junk - 1), static_cast<ssize_t>(sizeof junk - 1));
    bool ended = false;
    for (int k = 0; k < 2000 && !ended; ++k) {
      IPCX_ASSERT_OK(pub->publish("t", as_bytes(std::to_string(published++)), 10s));
      (void)pub->poll(1ms);
      char buf[256];
      const auto n = ::recv(raw.get(), buf, sizeof buf, MSG_DONTWAIT);
      ended = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
      while (n > 0 && !ended) {  // a goodbye frame, then the end
        const auto m = ::recv(raw.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (m == 0 || (m < 0 && errno != EAGAIN)) ended = true;
        if (m <= 0) break;
      }
    }
    EXPECT_TRUE(ended) << "the junk-sending connection was not closed";
  }
  IPCX_ASSERT_OK(pub->flush(60s));
  EXPECT_EQ(pub->subscribers(), 1u);
  pub = fail(Errc::closed, "test");
  auto s = finish(good);
  EXPECT_EQ(s.received, static_cast<unsigned long long>(published));
  EXPECT_EQ(s.gaps, 0u);
}

}  // namespace
}  // namespace ipcx::test
