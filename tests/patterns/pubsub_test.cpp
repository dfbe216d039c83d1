// Publish/subscribe in one process: prefix matching, late join, limits, bad input, stat.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "patterns/pattern_support.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

// Receives until a publication on `marker` arrives; returns the topics before it.
std::vector<std::string> topics_until(Subscriber& s, const std::string& marker) {
  std::vector<std::string> got;
  for (;;) {
    auto p = s.recv(10s);
    EXPECT_TRUE(p.has_value()) << why(p);
    if (!p || p->topic == marker) return got;
    got.push_back(p->topic);
  }
}

TEST(PubSub, PrefixMatchingEmptyPrefixMatchesAll) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(pub);
  auto all = Subscriber::connect(pub->url(), {""});
  auto eur = Subscriber::connect(pub->url(), {"eur.", "end"});
  auto one = Subscriber::connect(pub->url(), {"eur.usd", "end"});
  auto none = Subscriber::connect(pub->url(), {"end"});
  IPCX_ASSERT_OK(all);
  IPCX_ASSERT_OK(eur);
  IPCX_ASSERT_OK(one);
  IPCX_ASSERT_OK(none);
  IPCX_ASSERT_OK(pub->wait_subscribers(4, 10s));
  for (auto t : {"eur.usd", "eur.gbp", "usd.jpy", "", "eur", "eur.usd.x"})
    IPCX_ASSERT_OK(pub->publish(t, as_bytes(std::string("payload of ") + t)));
  IPCX_ASSERT_OK(pub->publish("end", as_bytes("")));
  EXPECT_EQ(topics_until(*all, "end"), (std::vector<std::string>{"eur.usd", "eur.gbp", "usd.jpy", "", "eur", "eur.usd.x"}));
  EXPECT_EQ(topics_until(*eur, "end"), (std::vector<std::string>{"eur.usd", "eur.gbp", "eur.usd.x"}));
  EXPECT_EQ(topics_until(*one, "end"), (std::vector<std::string>{"eur.usd", "eur.usd.x"}));
  EXPECT_EQ(topics_until(*none, "end"), (std::vector<std::string>{}));
  IPCX_ASSERT_OK(pub->flush(10s));
  auto st = pub->stats();
  EXPECT_EQ(st.total.sent, 6u + 3u + 2u + 0u + 4u);  // copies, "end" to each of the four
  EXPECT_EQ(st.total.delivered, st.total.sent);
  expect_exact(st.total, "publisher");
}

TEST(PubSub, PayloadAndSequenceArriveIntact) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(pub);
  auto sub = Subscriber::connect(pub->url(), {"t"});
  IPCX_ASSERT_OK(sub);
  IPCX_ASSERT_OK(pub->wait_subscribers(1, 10s));
  const auto big = pattern(100000, 7);
  IPCX_ASSERT_OK(pub->publish("t", big));
  IPCX_ASSERT_OK(pub->publish("t", {}));
  auto a = sub->recv(10s);
  IPCX_ASSERT_OK(a);
  EXPECT_EQ(mismatch(a->payload.bytes(), big), "");
  EXPECT_EQ(a->sequence, 1u);
  EXPECT_EQ(a->gap, 0u);
  auto b = sub->recv(10s);
  IPCX_ASSERT_OK(b);
  EXPECT_EQ(b->payload.size(), 0u);
  EXPECT_EQ(b->sequence, 2u);
}

TEST(PubSub, SubscribeAndUnsubscribeWhileConnected) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(pub);
  auto sub = Subscriber::connect(pub->url(), {"a"});
  IPCX_ASSERT_OK(sub);
  IPCX_ASSERT_OK(pub->wait_subscribers(1, 10s));
  IPCX_ASSERT_OK(sub->unsubscribe("a"));
  IPCX_ASSERT_OK(sub->subscribe("b"));
  // The publisher applies them once it has read them.
  ASSERT_TRUE(eventually([&] {
    (void)pub->poll(1ms);
    auto st = pub->stats();
    return st.peers.size() == 1 && st.peers[0].prefixes == std::vector<std::string>{"b"};
  }, 10s));
  IPCX_ASSERT_OK(pub->publish("a1", as_bytes("x")));
  IPCX_ASSERT_OK(pub->publish("b1", as_bytes("y")));
  auto p = sub->recv(10s);
  IPCX_ASSERT_OK(p);
  EXPECT_EQ(p->topic, "b1");
  EXPECT_EQ(p->sequence, 1u);  // sequences count this subscriber's copies only
  EXPECT_EQ(pub->stats().total.dropped.no_route, 1u);
}

TEST(PubSub, LateJoinerGetsOnlyWhatFollowsItsSubscription) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(pub);
  for (int i = 0; i < 5; ++i) IPCX_ASSERT_OK(pub->publish("t", as_bytes("early")));
  auto early = pub->stats().total;
  EXPECT_EQ(early.sent, 5u);
  EXPECT_EQ(early.dropped.no_route, 5u);
  auto sub = Subscriber::connect(pub->url(), {""});
  IPCX_ASSERT_OK(sub);
  IPCX_ASSERT_OK(pub->wait_subscribers(1, 10s));
  IPCX_ASSERT_OK(pub->publish("t", as_bytes("late")));
  auto p = sub->recv(10s);
  IPCX_ASSERT_OK(p);
  EXPECT_EQ(p->payload.text(), "late");
  EXPECT_EQ(p->sequence, 1u);
  EXPECT_EQ(p->gap, 0u);
  IPCX_ASSERT_OK(pub->flush(10s));
  expect_exact(pub->stats().total, "publisher");
}

TEST(PubSub, TopicLengthIsChecked) {
  ScratchDir dir;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(pub);
  IPCX_EXPECT_OK(pub->publish(std::string(max_topic, 't'), as_bytes("x")));
  IPCX_EXPECT_ERRC(pub->publish(std::string(max_topic + 1, 't'), as_bytes("x")), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(Subscriber::connect(pub->url(), {std::string(max_topic + 1, 't')}), Errc::invalid_argument);
  auto sub = Subscriber::connect(pub->url(), {std::string(max_topic, 't')});
  IPCX_ASSERT_OK(sub);
  IPCX_EXPECT_ERRC(sub->subscribe(std::string(max_topic + 1, 'u')), Errc::invalid_argument);
  // Refused publications were never accepted: nothing counted for them.
  EXPECT_EQ(pub->stats().total.sent, 1u);
}

TEST(PubSub, OversizedPublicationIsRefusedNotCounted) {
  ScratchDir dir;
  PublisherOptions o;
  o.queue.memory_cap = 1000;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"), o);
  IPCX_ASSERT_OK(pub);
  IPCX_EXPECT_ERRC(pub->publish("t", std::vector<std::byte>(1000)), Errc::too_large);
  EXPECT_EQ(pub->stats().total.sent, 0u);
  IPCX_EXPECT_ERRC(Publisher::bind("unix://" + dir.file("q.sock"), {.window = 0}), Errc::invalid_argument);
}

TEST(PubSub, DropOldestKeepsTheNewestAndCountsTheGap) {
  Watchdog wd(60s);
  ScratchDir dir;
  PublisherOptions o;
  o.window = 1;
  o.queue = {.capacity = 3, .overflow = Overflow::drop_oldest};
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"), o);
  IPCX_ASSERT_OK(pub);
  auto sub = Subscriber::connect(pub->url(), {""}, {.window = 1});
  IPCX_ASSERT_OK(sub);
  IPCX_ASSERT_OK(pub->wait_subscribers(1, 10s));
  // One goes out (window 1); the queue keeps the 3 newest of the 9 others.
  for (int i = 1; i <= 10; ++i) IPCX_ASSERT_OK(pub->publish("t", as_bytes(std::to_string(i))));
  auto st = pub->stats();
  EXPECT_EQ(st.total.dropped.oldest, 6u);
  EXPECT_EQ(st.total.queued, 4u);
  std::vector<std::pair<std::string, std::uint64_t>> got;
  for (int i = 0; i < 4; ++i) {
    auto p = sub->recv(10s);
    IPCX_ASSERT_OK(p);
    got.emplace_back(std::string(p->payload.text()), p->gap);
    (void)pub->poll(Timeout::zero());  // reads the acknowledgement, sends the next
    for (int k = 0; k < 100 && pub->stats().total.queued == 4u - i; ++k) (void)pub->poll(10ms);
  }
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::uint64_t>>{{"1", 0}, {"8", 6}, {"9", 0}, {"10", 0}}));
  EXPECT_EQ(sub->stats().gaps, 6u);
  EXPECT_EQ(sub->stats().received, 4u);
  IPCX_ASSERT_OK(pub->flush(10s));
  expect_exact(pub->stats().total, "publisher");
}

TEST(PubSub, OverflowFailAndDropNewestAreCounted) {
  Watchdog wd(60s);
  ScratchDir dir;
  for (auto policy : {Overflow::fail, Overflow::drop_newest}) {
    PublisherOptions o;
    o.window = 1;
    o.queue = {.capacity = 2, .overflow = policy};
    auto pub = Publisher::bind("unix://" + dir.file(std::string(to_string(policy)) + ".sock"), o);
    IPCX_ASSERT_OK(pub);
    auto sub = Subscriber::connect(pub->url(), {""}, {.window = 1});
    IPCX_ASSERT_OK(sub);
    IPCX_ASSERT_OK(pub->wait_subscribers(1, 10s));
    for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(pub->publish("t", as_bytes("x")));  // 1 in flight, 2 queued
    auto r = pub->publish("t", as_bytes("y"));
    if (policy == Overflow::fail) IPCX_EXPECT_ERRC(r, Errc::would_block);
    else IPCX_EXPECT_OK(r);
    auto st = pub->stats().total;
    EXPECT_EQ(policy == Overflow::fail ? st.dropped.refused : st.dropped.newest, 1u);
    EXPECT_EQ(st.sent, 4u);
    expect_exact(st, "publisher");
  }
}

TEST(PubSub, BlockWaitsForRoomThenTimesOutQueuingNothing) {
  Watchdog wd(60s);
  ScratchDir dir;
  PublisherOptions o;
  o.window = 1;
  o.queue = {.capacity = 1, .overflow = Overflow::block};
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"), o);
  IPCX_ASSERT_OK(pub);
  auto sub = Subscriber::connect(pub->url(), {""}, {.window = 1});
  IPCX_ASSERT_OK(sub);
  IPCX_ASSERT_OK(pub->wait_subscribers(1, 10s));
  IPCX_ASSERT_OK(pub->publish("t", as_bytes("1")));
  IPCX_ASSERT_OK(pub->publish("t", as_bytes("2")));
  IPCX_EXPECT_ERRC(pub->publish("t", as_bytes("3"), 50ms), Errc::timeout);
  EXPECT_EQ(pub->stats().total.sent, 2u);
  // Once the subscriber takes one, there is room again.
  IPCX_ASSERT_OK(sub->recv(10s));
  IPCX_ASSERT_OK(pub->publish("t", as_bytes("3"), 10s));
  EXPECT_EQ(pub->stats().total.sent, 3u);
}

TEST(PubSub, StatRequestAnswersTheCounters) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"));
  IPCX_ASSERT_OK(pub);
  IPCX_ASSERT_OK(pub->publish("t", as_bytes("x")));
  Result<std::string> answer = fail(Errc::timeout, "test");
  std::atomic<bool> answered{false};
  std::thread asker([&] {
    answer = query_stats(pub->url(), 10s);
    answered = true;
  });
  ASSERT_TRUE(eventually([&] { (void)pub->poll(1ms); return answered.load(); }, 20s));
  asker.join();
  IPCX_ASSERT_OK(answer);
  EXPECT_NE(answer->find(R"("sent":1)"), std::string::npos) << *answer;
  EXPECT_NE(answer->find(R"("no_route":1)"), std::string::npos) << *answer;
}

}  // namespace
}  // namespace ipcx::test
