// ipcxd's queues against the real daemon: durability across SIGKILL, at-least-once delivery
// with consumers that die, redelivery, dead-lettering, TTL, deduplication, limits, corrupted
// files, malformed requests, and the CLI.
#include <sys/wait.h>

#include <map>
#include <set>

#include "broker/broker_harness.hpp"
#include "e2e/cli_harness.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

std::string body_text(const broker::Delivery& d) { return std::string(d.text()); }

TEST(Broker, PublishConsumeAckRoundTrip) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto b = d.client();
  ASSERT_TRUE(b.declare("jobs").value());
  EXPECT_FALSE(b.declare("jobs").value());  // exists: kept
  for (int i = 0; i < 10; ++i) {
    auto c = b.publish("jobs", bytes_of("m" + std::to_string(i)));
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_FALSE(c->duplicate);
  }
  ASSERT_TRUE(b.consume("jobs", 4));
  for (int i = 0; i < 10; ++i) {
    auto m = b.next(5s);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(body_text(*m), "m" + std::to_string(i));
    EXPECT_EQ(m->attempt, 1u);
    ASSERT_TRUE(b.ack(*m));
  }
  auto qs = b.queues().value();
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(qs[0].ready, 0u);
  EXPECT_EQ(qs[0].unacked, 0u);
  EXPECT_EQ(qs[0].acked, 10u);
  // An ack of a message that is not out is refused, clearly.
  auto again = b.ack("jobs", 1);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::not_found);
}

TEST(Broker, ConfirmedMessagesSurviveSigkillOfTheDaemon) {
  Daemon d;
  ASSERT_TRUE(d.start());
  std::map<std::uint64_t, std::string> confirmed;
  {
    auto b = d.client();
    for (auto sync : {broker::Sync::always, broker::Sync::group, broker::Sync::none}) {
      const std::string q = "q" + std::to_string(static_cast<int>(sync));
      ASSERT_TRUE(b.declare(q, {.sync = sync}));
      for (int i = 0; i < 50; ++i) {
        const std::string text = q + "-" + std::to_string(i);
        auto c = b.publish(q, bytes_of(text));
        ASSERT_TRUE(c) << c.error().message();
      }
    }
    // Pipelined publishes: every one confirmed before the kill.
    for (int i = 0; i < 200; ++i) ASSERT_TRUE(b.publish_async("q1", bytes_of("async-" + std::to_string(i))));
    ASSERT_TRUE(b.confirm_all());
  }
  EXPECT_EQ(d.kill(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(d.start());
  auto b = d.client();
  for (auto [q, n] : {std::pair{"q0", 50}, std::pair{"q1", 250}, std::pair{"q2", 50}}) {
    ASSERT_TRUE(b.consume(q, 64));
    std::set<std::string> got;
    for (int i = 0; i < n; ++i) {
      auto m = b.next(5s);
      ASSERT_TRUE(m) << q << " " << i << ": " << m.error().message();
      got.insert(body_text(*m));
      ASSERT_TRUE(b.ack(*m));
    }
    EXPECT_EQ(got.size(), static_cast<std::size_t>(n)) << q;
  }
}

// A consumer process that takes messages and is SIGKILLed before acking them: they are
// delivered again, marked as a second attempt.
TEST(Broker, UnackedMessagesOfAKilledConsumerAreRedelivered) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto b = d.client();
  ASSERT_TRUE(b.declare("work"));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.publish("work", bytes_of("w" + std::to_string(i))));
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto c = broker::Client::connect(d.url());
    if (!c || !c->consume("work", 3)) ::_exit(3);
    for (int i = 0; i < 3; ++i)
      if (!c->next(5s)) ::_exit(4);
    (void)!::write(ready[1], "k", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char ch = 0;
  ASSERT_EQ(::read(ready[0], &ch, 1), 1);
  ::close(ready[0]);
  auto before = b.queues().value();
  EXPECT_EQ(before[0].unacked, 3u);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_TRUE(b.consume("work", 10));
  std::map<std::string, std::uint32_t> attempts;
  for (int i = 0; i < 5; ++i) {
    auto m = b.next(5s);
    ASSERT_TRUE(m) << m.error().message();
    attempts[body_text(*m)] = m->attempt;
    ASSERT_TRUE(b.ack(*m));
  }
  EXPECT_EQ(attempts.size(), 5u);
  EXPECT_EQ(attempts["w0"], 2u);
  EXPECT_EQ(attempts["w2"], 2u);
  EXPECT_EQ(attempts["w3"], 1u);
}

TEST(Broker, AckTimeoutRedeliversAndMaxAttemptsDeadLetters) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto b = d.client();
  ASSERT_TRUE(b.declare("slow", {.max_attempts = 3, .ack_timeout = 100ms}));
  ASSERT_TRUE(b.publish("slow", bytes_of("never acked")));
  ASSERT_TRUE(b.consume("slow", 1));
  for (std::uint32_t attempt = 1; attempt <= 3; ++attempt) {
    auto m = b.next(5s);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(m->attempt, attempt);
  }
  // After the third timeout it goes to slow.dlq instead of a fourth delivery.
  EXPECT_FALSE(b.next(400ms));
  auto dead = b.get("slow.dlq", 5s);
  ASSERT_TRUE(dead) << dead.error().message();
  EXPECT_EQ(body_text(*dead), "never acked");
  ASSERT_TRUE(b.ack(*dead));
  auto qs = b.queues().value();
  auto slow = std::find_if(qs.begin(), qs.end(), [](auto& q) { return q.name == "slow"; });
  ASSERT_NE(slow, qs.end());
  EXPECT_EQ(slow->dead_lettered, 1u);
  EXPECT_EQ(slow->ready + slow->unacked, 0u);
}

TEST(Broker, NackRequeuesOrDeadLetters) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto b = d.client();
  ASSERT_TRUE(b.declare("n"));
  ASSERT_TRUE(b.publish("n", bytes_of("a")));
  ASSERT_TRUE(b.publish("n", bytes_of("b")));
  auto a = b.get("n", 1s).value();
  ASSERT_TRUE(b.nack("n", a.seq, true));
  auto again = b.get("n", 1s).value();
  EXPECT_EQ(body_text(again), "a");
  EXPECT_EQ(again.attempt, 2u);
  ASSERT_TRUE(b.nack("n", again.seq, false));
  EXPECT_EQ(body_text(b.get("n.dlq", 1s).value()), "a");
  EXPECT_EQ(body_text(b.get("n", 1s).value()), "b");
}

TEST(Broker, ExpiredMessagesAreDeadLettered) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto b = d.client();
  ASSERT_TRUE(b.declare("ttl", {.ttl = 100ms}));
  ASSERT_TRUE(b.publish("ttl", bytes_of("stale")));
  std::this_thread::sleep_for(300ms);
  auto none = b.get("ttl");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::timeout);
  EXPECT_EQ(body_text(b.get("ttl.dlq", 2s).value()), "stale");
}

TEST(Broker, RepeatedIdsWithinTheWindowAreDuplicatesAcrossRestarts) {
  Daemon d;
  ASSERT_TRUE(d.start());
  {
    auto b = d.client();
    ASSERT_TRUE(b.declare("dd"));
    auto first = b.publish("dd", bytes_of("once"), {.id = "order-7"}).value();
    auto second = b.publish("dd", bytes_of("once"), {.id = "order-7"}).value();
    EXPECT_FALSE(first.duplicate);
    EXPECT_TRUE(second.duplicate);
    EXPECT_EQ(first.seq, second.seq);
  }
  d.kill(SIGKILL);
  ASSERT_TRUE(d.start());
  auto b = d.client();
  auto third = b.publish("dd", bytes_of("once"), {.id = "order-7"}).value();
  EXPECT_TRUE(third.duplicate);
  auto m = b.get("dd", 1s).value();
  EXPECT_EQ(m.id, "order-7");
  ASSERT_TRUE(b.ack(m));
  EXPECT_FALSE(b.get("dd"));
}

TEST(Broker, LimitsRejectOrDropTheOldest) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto b = d.client();
  ASSERT_TRUE(b.declare("full", {.max_messages = 2}));
  ASSERT_TRUE(b.publish("full", bytes_of("1")));
  ASSERT_TRUE(b.publish("full", bytes_of("2")));
  auto over = b.publish("full", bytes_of("3"));
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, Errc::resource_exhausted);
  ASSERT_TRUE(b.declare("ring", {.max_messages = 2, .overflow = broker::Overflow::drop_oldest}));
  for (auto t : {"1", "2", "3"}) ASSERT_TRUE(b.publish("ring", bytes_of(t)));
  EXPECT_EQ(body_text(b.get("ring", 1s).value()), "2");
  EXPECT_EQ(body_text(b.get("ring.dlq", 1s).value()), "1");
}

TEST(Broker, CompetingConsumersShareTheQueueOnce) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto pub = d.client();
  ASSERT_TRUE(pub.declare("shared", {.sync = broker::Sync::none}));
  auto c1 = d.client();
  auto c2 = d.client();
  ASSERT_TRUE(c1.consume("shared", 8));
  ASSERT_TRUE(c2.consume("shared", 8));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(pub.publish_async("shared", bytes_of(std::to_string(i))));
  ASSERT_TRUE(pub.confirm_all());
  std::multiset<std::string> got;
  int from1 = 0, from2 = 0;
  while (got.size() < 100) {
    bool any = false;
    for (auto* c : {&c1, &c2}) {
      if (auto m = c->next(20ms)) {
        got.insert(body_text(*m));
        (c == &c1 ? from1 : from2)++;
        ASSERT_TRUE(c->ack(*m));
        any = true;
      }
    }
    if (!any && got.size() < 100) {
      // Both idle: the rest must still be coming.
      ASSERT_GT(pub.queues().value()[0].ready + pub.queues().value()[0].unacked, 0u);
    }
  }
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), 100u);
  EXPECT_GT(from1, 0);
  EXPECT_GT(from2, 0);
}

TEST(Broker, BadRequestsGetAnErrorAndOthersAreServed) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto b = d.client();
  // A name that would escape the state directory.
  auto bad = b.declare("../etc");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  auto none = b.publish("nosuch", bytes_of("x"));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::not_found);
  auto bad_sync = b.declare("s", {.sync = static_cast<broker::Sync>(9)});
  ASSERT_FALSE(bad_sync);
  EXPECT_EQ(bad_sync.error().code, Errc::invalid_argument);
  // Garbage frames from a raw client: that connection is dropped, nobody else notices.
  auto raw = ipcx::connect(d.url());
  ASSERT_TRUE(raw);
  ASSERT_TRUE(raw->send(as_bytes(std::string_view("\x09garbage that is no request"))));
  auto r = raw->recv(5s);
  EXPECT_FALSE(r);
  ASSERT_TRUE(b.declare("still-serving"));
  ASSERT_TRUE(b.publish("still-serving", bytes_of("ok")));
}

// A flipped bit in a stopped daemon's queue log: the changed message is never delivered, the
// others are, and the damage is quarantined and reported.
TEST(Broker, ACorruptedRecordIsQuarantinedNeverDelivered) {
  Daemon d;
  ASSERT_TRUE(d.start());
  {
    auto b = d.client();
    ASSERT_TRUE(b.declare("c"));
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(b.publish("c", bytes_of("message-number-" + std::to_string(i))));
  }
  ASSERT_EQ(d.kill(SIGTERM), 0);
  std::string seg;
  for (auto& e : std::filesystem::directory_iterator(d.queue_dir("c") + "/log"))
    if (e.path().extension() == ".seg") seg = e.path();
  ASSERT_FALSE(seg.empty());
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto at = all.find("message-number-1");
    ASSERT_NE(at, std::string::npos);
    f.seekp(static_cast<std::streamoff>(at + 3));
    f.put(static_cast<char>(all[at + 3] ^ 0x01));
  }
  ASSERT_TRUE(d.start());
  auto b = d.client();
  std::set<std::string> got;
  while (auto m = b.get("c", 200ms)) {
    got.insert(body_text(*m));
    ASSERT_TRUE(b.ack(*m));
  }
  EXPECT_EQ(got, (std::set<std::string>{"message-number-0", "message-number-2"}));
  EXPECT_NE(d.log().find("queue c:"), std::string::npos) << d.log();
  EXPECT_TRUE(std::filesystem::exists(d.queue_dir("c") + "/log/quarantine"));
}

TEST(Broker, ASecondDaemonOnTheSameStateIsRefused) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto second = Child::start({IPCX_DAEMON, "--socket", "unix://" + d.dir().file("other.sock"), "--state-dir", d.state_dir(), "--http", "off"});
  EXPECT_EQ(second.finish(), 1);
  EXPECT_NE(second.err().find("another ipcxd uses the state directory"), std::string::npos) << second.err();
  // And a second one on the same socket: the live daemon's address is never taken.
  auto third = Child::start({IPCX_DAEMON, "--socket", d.url(), "--state-dir", d.dir().file("state2"), "--http", "off"});
  EXPECT_EQ(third.finish(), 1);
  EXPECT_TRUE(d.client().status());
}

// A queue removed and made again continues its numbering: a stale ack or lease of the old
// one never settles a message of the new one; its consumers are told it ended.
TEST(Broker, ARecreatedQueueNeverReusesASeqAndItsConsumersAreTold) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto a = d.client();
  auto watcher = d.client();
  ASSERT_TRUE(a.declare("re"));
  ASSERT_TRUE(a.publish("re", bytes_of("old")));
  ASSERT_TRUE(a.publish("re", bytes_of("old 2")));
  auto old = a.get("re", 1s).value();
  ASSERT_TRUE(watcher.consume("re", 1));
  ASSERT_EQ(body_text(watcher.next(5s).value()), "old 2");
  auto b = d.client();
  ASSERT_TRUE(b.remove("re"));
  auto ended = watcher.next(5s);
  ASSERT_FALSE(ended);
  EXPECT_EQ(ended.error().code, Errc::not_found);
  EXPECT_NE(ended.error().detail.find("queue re was removed"), std::string::npos) << ended.error().detail;
  ASSERT_TRUE(b.declare("re"));
  auto fresh = b.publish("re", bytes_of("new")).value();
  EXPECT_GT(fresh.seq, old.seq);
  auto lease = b.get("re", 1s).value();
  auto stale = a.ack("re", old.seq);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Errc::not_found);
  EXPECT_TRUE(b.ack(lease));
  d.kill(SIGKILL);  // and across a restart
  ASSERT_TRUE(d.start());
  auto c = d.client();
  EXPECT_GT(c.publish("re", bytes_of("newer")).value().seq, fresh.seq);
}

TEST(Broker, OnlyItsOwnConnectionSettlesASubscriptionsDelivery) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto owner = d.client();
  auto other = d.client();
  ASSERT_TRUE(owner.declare("own"));
  ASSERT_TRUE(owner.publish("own", bytes_of("mine")));
  ASSERT_TRUE(owner.consume("own", 1));
  auto m = owner.next(5s).value();
  auto theft = other.ack("own", m.seq);
  ASSERT_FALSE(theft);
  EXPECT_EQ(theft.error().code, Errc::permission_denied);
  auto nack = other.nack("own", m.seq, false);
  ASSERT_FALSE(nack);
  EXPECT_EQ(nack.error().code, Errc::permission_denied);
  EXPECT_TRUE(owner.ack(m));
}

// A dead letter is never destroyed because its dead-letter queue is full, and a TTL near
// 2^64 does not wrap around into "expired".
TEST(Broker, DeadLettersPassAFullDeadLetterQueueAndHugeTtlsNeverExpire) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto b = d.client();
  ASSERT_TRUE(b.declare("y.dlq", {.max_messages = 1, .max_attempts = 0}));
  ASSERT_TRUE(b.declare("y"));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(b.publish("y", bytes_of("p" + std::to_string(i))));
  for (int i = 0; i < 3; ++i) {
    auto m = b.get("y", 1s).value();
    ASSERT_TRUE(b.nack("y", m.seq, false));
  }
  std::set<std::string> dead;
  while (auto m = b.get("y.dlq", 200ms)) {
    dead.insert(body_text(*m));
    ASSERT_TRUE(b.ack(*m));
  }
  EXPECT_EQ(dead, (std::set<std::string>{"p0", "p1", "p2"}));
  ASSERT_TRUE(b.declare("forever", {.ttl = std::chrono::milliseconds(std::numeric_limits<std::int64_t>::max())}));
  ASSERT_TRUE(b.publish("forever", bytes_of("kept")));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(body_text(b.get("forever", 1s).value()), "kept");
}

// Odd things in the state directory: that queue is not opened (and said so), the rest serve.
TEST(Broker, AStrangeQueueDirectoryIsReportedNotFatal) {
  Daemon d;
  ASSERT_TRUE(d.start());
  {
    auto b = d.client();
    ASSERT_TRUE(b.declare("good"));
    ASSERT_TRUE(b.declare("odd"));
    ASSERT_TRUE(b.publish("good", bytes_of("x")));
  }
  ASSERT_EQ(d.kill(SIGTERM), 0);
  std::filesystem::remove(d.queue_dir("odd") + "/queue.conf");
  std::filesystem::create_directory(d.queue_dir("odd") + "/queue.conf");
  ASSERT_TRUE(d.start());
  auto b = d.client();
  EXPECT_EQ(body_text(b.get("good", 1s).value()), "x");
  EXPECT_NE(d.log().find("queue odd not opened"), std::string::npos) << d.log();
}

TEST(Broker, SigtermStopsCleanly) {
  Daemon d;
  ASSERT_TRUE(d.start());
  EXPECT_EQ(d.kill(SIGTERM), 0);
  EXPECT_FALSE(broker::Client::connect(d.url(), 200ms));
}

TEST(BrokerCli, QueueCommandsAndStatus) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto r = run_cli({"queue", "create", "cli-q", "--sync", "group", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli({"queue", "publish", "cli-q", "hello world", "--id", "h1", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  r = run_cli({"queue", "publish", "cli-q", "hello world", "--id", "h1", "--broker", d.url()});
  EXPECT_EQ(r.out, "1 duplicate\n");
  r = run_shell(fmt::format("printf 'a\\nb\\n' | {} queue publish cli-q --broker {}", IPCX_CLI, d.url()));
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli({"queue", "ls", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("cli-q"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("group"), std::string::npos) << r.out;
  // Created again with other options: kept, and the ones that differ are named.
  r = run_cli({"queue", "create", "cli-q", "--sync", "group", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "cli-q exists (its options kept)\n");
  r = run_cli({"queue", "create", "cli-q", "--sync", "none", "--ttl", "5000", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "cli-q exists (its options kept: sync group (not none), ttl 0 ms (not 5000 ms))\n");
  // Options left out ask for nothing: the queue's group is not compared with the default always.
  r = run_cli({"queue", "create", "cli-q", "--max-attempts", "7", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "cli-q exists (its options kept: max-attempts 5 (not 7))\n");
  r = run_cli({"queue", "consume", "cli-q", "--count", "2", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "hello world\na\n");
  // Leased: not acked, so it comes back after the lease — unless acked by seq.
  r = run_cli({"queue", "consume", "cli-q", "--no-ack", "--lease", "60000", "--json", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"body\":\"b\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"seq\":3"), std::string::npos) << r.out;
  r = run_cli({"queue", "ack", "cli-q", "3", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli({"queue", "ack", "cli-q", "3", "--broker", d.url()});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  r = run_cli({"queue", "consume", "cli-q", "--timeout", "100", "--broker", d.url()});
  EXPECT_EQ(r.code, 1);
  r = run_cli({"broker", "status", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("socket:  " + d.url()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("queues:  1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(fmt::format("pid {}", d.pid())), std::string::npos) << r.out;
  r = run_cli({"queue", "purge", "cli-q", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli({"queue", "rm", "cli-q", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d.queue_dir("cli-q")));
  d.kill(SIGTERM);
  r = run_cli({"broker", "status", "--broker", d.url()});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

TEST(BrokerCli, ServicesRegisterListAndWatch) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto watch = Child::cli({"svc", "watch", "cam*", "--count", "2", "--broker", d.url()});
  auto reg = Child::cli({"svc", "register", "cam", "unix:///run/cam.sock", "--meta", "model=x1", "--broker", d.url()});
  ASSERT_TRUE(reg.wait_stdout("registered cam")) << reg.err();
  auto ls = run_cli({"svc", "ls", "--json", "--broker", d.url()});
  ASSERT_EQ(ls.code, 0) << ls.err;
  EXPECT_NE(ls.out.find("\"name\":\"cam\""), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("\"model\":\"x1\""), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find(fmt::format("\"pid\":{}", reg.pid())), std::string::npos) << ls.out;
  reg.signal(SIGKILL);
  reg.finish();
  EXPECT_EQ(watch.finish(), 0) << watch.err();
  EXPECT_NE(watch.out().find("up cam unix:///run/cam.sock"), std::string::npos) << watch.out();
  EXPECT_NE(watch.out().find("down cam"), std::string::npos) << watch.out();
  auto bad = run_cli({"svc", "register", "cam", "x", "--meta", "novalue", "--broker", d.url()});
  EXPECT_EQ(bad.code, 2);
}

TEST(BrokerCli, TopicPubSub) {
  Daemon d;
  ASSERT_TRUE(d.start());
  auto sub = Child::cli({"topic", "sub", "room.>", "--count", "2", "--broker", d.url()});
  ASSERT_TRUE(sub.wait_stderr("subscribed")) << sub.err();
  auto r = run_cli({"topic", "pub", "room.kitchen", "hello", "--broker", d.url()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
  r = run_shell(fmt::format("printf 'x\\n' | {} topic pub room.hall.light --broker {}", IPCX_CLI, d.url()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(sub.finish(), 0) << sub.err();
  EXPECT_EQ(sub.out(), "room.kitchen hello\nroom.hall.light x\n");
  r = run_cli({"topic", "pub", "room.*", "x", "--broker", d.url()});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

// systemd socket activation, by systemd's own tool: the socket exists before ipcxd runs, the
// first client starts it, and ipcxd serves on the descriptor it was given.
TEST(Broker, SocketActivation) {
  if (::access("/usr/bin/systemd-socket-activate", X_OK) != 0) GTEST_SKIP() << "no systemd-socket-activate";
  ScratchDir dir;
  const auto sock = dir.file("activated.sock");
  auto act = Child::start({"/usr/bin/systemd-socket-activate", "-l", sock, IPCX_DAEMON, "--state-dir", dir.file("state"), "--http", "off"});
  // The file appears at bind(), a moment before listen(): a refused connect is tried again.
  Result<broker::Client> b = fail(Errc::connection_refused, "connect");
  ASSERT_TRUE(eventually([&] { return (b = broker::Client::connect("unix://" + sock, 1s)).has_value(); }, 10s))
      << b.error().message() << act.err();
  auto st = b->status(10s);
  ASSERT_TRUE(st) << st.error().message() << act.err();
  EXPECT_EQ(st->socket, "unix://" + sock);
  EXPECT_EQ(st->pid, act.pid());  // the activator execs ipcxd in its place
  ASSERT_TRUE(b->declare("activated"));
  ASSERT_TRUE(b->publish("activated", bytes_of("x")));
  act.signal(SIGTERM);
  EXPECT_EQ(act.finish(), 0) << act.err();
}

}  // namespace
}  // namespace ipcx::test
