// Push/pull: fair distribution over worker processes, a worker killed holding messages, the
// backlog's overflow policy, bad input.
#include <csignal>
#include <thread>
#include <string>
#include <vector>

#include "patterns/pattern_support.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

struct Pulled {
  unsigned long long n, sum;
};
Pulled finish(Child& c) {
  EXPECT_EQ(c.finish(60s), 0) << c.err();
  return {field(c.out(), "pulled"), field(c.out(), "sum")};
}

TEST(PushPull, InProcessRoundTrip) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto push = Pusher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(push);
  auto pull = Puller::connect(push->url());
  IPCX_ASSERT_OK(pull);
  IPCX_ASSERT_OK(push->wait_workers(1, 10s));
  IPCX_ASSERT_OK(push->push(as_bytes("job 1")));
  IPCX_ASSERT_OK(push->push({}));
  auto a = pull->pull(10s);
  IPCX_ASSERT_OK(a);
  EXPECT_EQ(a->text(), "job 1");
  auto b = pull->pull(10s);
  IPCX_ASSERT_OK(b);
  EXPECT_EQ(b->size(), 0u);
  IPCX_ASSERT_OK(push->flush(10s));
  auto st = push->stats().total;
  EXPECT_EQ(st.sent, 2u);
  EXPECT_EQ(st.delivered, 2u);
  expect_exact(st, "pusher");
  EXPECT_EQ(pull->received(), 2u);
}

// A burst is written in batches; its tail goes out although the application makes no further
// call on the pusher (the flusher writes it).
TEST(PushPull, BurstTailIsWrittenWithoutFurtherCalls) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto push = Pusher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(push);
  auto pull = Puller::connect(push->url(), {.window = 5000});
  IPCX_ASSERT_OK(pull);
  IPCX_ASSERT_OK(push->wait_workers(1, 10s));
  const int n = 3000;  // within the window: no acknowledgement is needed to send them all
  for (int i = 0; i < n; ++i) IPCX_ASSERT_OK(push->push(as_bytes(std::to_string(i))));
  // From here on, nothing is called on the pusher until every message has arrived.
  for (int i = 0; i < n; ++i) {
    auto m = pull->pull(20s);
    IPCX_ASSERT_OK(m);
    ASSERT_EQ(m->text(), std::to_string(i));
  }
}

TEST(PushPull, FairAcrossWorkerProcesses) {
  Watchdog wd(100s);
  ScratchDir dir;
  auto push = Pusher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(push);
  constexpr int kWorkers = 3;
  std::vector<Child> workers;
  for (int i = 0; i < kWorkers; ++i) workers.push_back(peer({"pull", push->url(), "4"}));
  IPCX_ASSERT_OK(push->wait_workers(kWorkers, 30s));
  // Every worker stopped: the first 3 x 4 messages fill their windows in turn (round robin),
  // the rest waits in the backlog.
  for (auto& w : workers) w.signal(SIGSTOP);
  for (int i = 0; i < 12; ++i) IPCX_ASSERT_OK(push->push(as_bytes(std::to_string(i))));
  auto st = push->stats();
  ASSERT_EQ(st.peers.size(), std::size_t(kWorkers));
  for (auto& p : st.peers) EXPECT_EQ(p.in_flight, 4u);
  for (auto& w : workers) w.signal(SIGCONT);
  const unsigned long long n = 3000;
  for (unsigned long long i = 12; i < n; ++i) IPCX_ASSERT_OK(push->push(as_bytes(std::to_string(i)), 30s));
  IPCX_ASSERT_OK(push->flush(60s));
  st = push->stats();
  expect_exact(st.total, "pusher");
  EXPECT_EQ(st.total.delivered, n);
  push = fail(Errc::closed, "test");
  unsigned long long total = 0, sum = 0;
  for (auto& w : workers) {
    auto p = finish(w);
    // Round robin among workers with credit is checked exactly above (4 each while stopped).
    // Once running, a worker's share follows its speed, which the scheduler decides (one got
    // 8% on a loaded 2-core host): the check is that none is starved, i.e. each received more
    // after resuming than the window it was handed while stopped.
    EXPECT_GT(p.n, 4u) << w.out();
    total += p.n;
    sum += p.sum;
  }
  EXPECT_EQ(total, n);
  EXPECT_EQ(sum, n * (n - 1) / 2);  // each message exactly once
}

TEST(PushPull, KilledWorkerHoldingMessagesIsCountedNeverResent) {
  Watchdog wd(100s);
  ScratchDir dir;
  auto push = Pusher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(push);
  auto victim = peer({"pull", push->url(), "50"});
  IPCX_ASSERT_OK(push->wait_workers(1, 30s));
  victim.signal(SIGSTOP);
  auto survivor = peer({"pull", push->url(), "50"});
  IPCX_ASSERT_OK(push->wait_workers(2, 30s));
  const unsigned long long n = 2000;
  for (unsigned long long i = 0; i < n; ++i) IPCX_ASSERT_OK(push->push(as_bytes(std::to_string(i)), 30s));
  victim.signal(SIGKILL);
  IPCX_ASSERT_OK(push->flush(60s));
  ASSERT_TRUE(eventually([&] { (void)push->poll(1ms); return push->workers() == 1; }, 30s));
  auto st = push->stats();
  expect_exact(st.total, "pusher");
  EXPECT_EQ(st.total.sent, n);
  EXPECT_EQ(st.total.queued, 0u);
  EXPECT_EQ(st.total.dropped.peer_died, 50u);  // its whole window, unacknowledged
  EXPECT_EQ(st.total.delivered, n - 50);
  push = fail(Errc::closed, "test");
  auto s = finish(survivor);
  EXPECT_EQ(s.n, n - 50);  // nothing re-sent to it
}

TEST(PushPull, BacklogWithoutWorkersAppliesItsPolicy) {
  Watchdog wd(60s);
  ScratchDir dir;
  PusherOptions o;
  o.queue = {.capacity = 3, .overflow = Overflow::fail};
  auto push = Pusher::bind("unix://" + dir.file("p.sock"), o);
  IPCX_ASSERT_OK(push);
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(push->push(as_bytes(std::to_string(i))));
  IPCX_EXPECT_ERRC(push->push(as_bytes("x")), Errc::would_block);
  auto st = push->stats().total;
  EXPECT_EQ(st.sent, 4u);
  EXPECT_EQ(st.dropped.refused, 1u);
  EXPECT_EQ(st.queued, 3u);
  expect_exact(st, "pusher");
  auto pull = Puller::connect(push->url());
  IPCX_ASSERT_OK(pull);
  IPCX_ASSERT_OK(push->wait_workers(1, 10s));
  for (int i = 0; i < 3; ++i) {
    auto m = pull->pull(10s);
    IPCX_ASSERT_OK(m);
    EXPECT_EQ(m->text(), std::to_string(i));  // the backlog keeps its order
  }
  IPCX_ASSERT_OK(push->flush(10s));
  st = push->stats().total;
  EXPECT_EQ(st.delivered, 3u);
  expect_exact(st, "pusher");
}

TEST(PushPull, BlockingBacklogTimesOut) {
  ScratchDir dir;
  PusherOptions o;
  o.queue = {.capacity = 1, .overflow = Overflow::block};
  auto push = Pusher::bind("unix://" + dir.file("p.sock"), o);
  IPCX_ASSERT_OK(push);
  IPCX_ASSERT_OK(push->push(as_bytes("a")));
  IPCX_EXPECT_ERRC(push->push(as_bytes("b"), 20ms), Errc::timeout);
  EXPECT_EQ(push->stats().total.sent, 1u);
}

TEST(PushPull, SubscriberAtAPusherIsTurnedAway) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto push = Pusher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(push);
  auto sub = Subscriber::connect(push->url(), {""});
  IPCX_ASSERT_OK(sub);
  Result<Publication> r = fail(Errc::timeout, "test");
  ASSERT_TRUE(eventually([&] {
    (void)push->poll(1ms);
    r = sub->recv(Timeout::zero());
    return !r && r.error().code != Errc::timeout && r.error().code != Errc::would_block;
  }, 20s));
  EXPECT_EQ(r.error().code, Errc::closed);
  EXPECT_NE(r.error().detail.find("role"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace ipcx::test
