// Request/reply over every socket transport: correlation, deadlines, deferred replies, a
// requester or a replier killed for real, back-pressure limits, stat requests.
#include <atomic>
#include <chrono>
#include <csignal>
#include <deque>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <ipcx/process.hpp>

#include "reqrep/reqrep_support.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

class ReqRep : public ::testing::TestWithParam<Transport> {
 protected:
  std::string url() { return GetParam().url(dir_); }
  ScratchDir dir_;
};

Replier::Handler echo() {
  return [](Request& r) { (void)r.reply(r.payload); };
}

TEST_P(ReqRep, EchoRoundTripsAndCountsBalance) {
  Watchdog wd(60s);
  auto rep = Replier::bind(url(), echo());
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  Message reply;
  for (int i = 0; i < 100; ++i) {
    const auto msg = fmt::format("hello {}", i);
    IPCX_ASSERT_OK(req->request(as_bytes(msg), reply, 10s));
    ASSERT_EQ(reply.text(), msg);
  }
  // An empty request and an empty reply are messages too.
  IPCX_ASSERT_OK(req->request({}, reply, 10s));
  EXPECT_EQ(reply.size(), 0u);
  const auto c = req->stats();
  EXPECT_EQ(c.sent, 101u);
  EXPECT_EQ(c.delivered, 101u);
  EXPECT_EQ(c.queued, 0u);
  expect_balanced(c);
  const auto s = run.stats();
  EXPECT_EQ(s.received, 101u);
  EXPECT_EQ(s.delivered, 101u);
  EXPECT_EQ(s.sent, 101u);
  expect_balanced_replier(s);
}

TEST_P(ReqRep, ManyInFlightAnsweredOutOfOrder) {
  Watchdog wd(60s);
  constexpr int kN = 16;
  std::vector<ReplyHandle> held;  // loop thread only
  std::vector<std::string> payloads;
  ReplierOptions o;
  o.max_in_flight = kN;
  auto rep = Replier::bind(
      url(),
      [&](Request& r) {
        payloads.push_back(text(r.payload));
        held.push_back(r.defer());
        if (held.size() == kN)  // all in: answer newest first
          for (int i = kN - 1; i >= 0; --i) (void)held[i].reply(as_bytes("re:" + payloads[i]));
      },
      o);
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url(), {.max_in_flight = kN});
  IPCX_ASSERT_OK(req);
  std::vector<RequestId> ids;
  for (int i = 0; i < kN; ++i) {
    auto id = req->send_request(as_bytes(fmt::format("q{}", i)), 20s);
    IPCX_ASSERT_OK(id);
    ids.push_back(*id);
  }
  EXPECT_EQ(req->in_flight(), std::size_t{kN});
  // Waited for oldest first: every other reply arrives meanwhile and is kept for its waiter.
  for (int i = 0; i < kN; ++i) {
    auto m = req->wait(ids[i], 20s);
    IPCX_ASSERT_OK(m);
    EXPECT_EQ(m->text(), fmt::format("re:q{}", i));
  }
  IPCX_EXPECT_ERRC(req->wait(ids[0], 1s), Errc::not_found);
  expect_balanced(req->stats());
  EXPECT_EQ(req->stats().delivered, std::uint64_t{kN});
}

TEST_P(ReqRep, MaxInFlightBoundsTheRequester) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) { held.push_back(r.defer()); });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url(), {.max_in_flight = 2});
  IPCX_ASSERT_OK(req);
  auto a = req->send_request(as_bytes("a"), 20s);
  auto b = req->send_request(as_bytes("b"), 20s);
  IPCX_ASSERT_OK(a);
  IPCX_ASSERT_OK(b);
  IPCX_EXPECT_ERRC(req->send_request(as_bytes("c"), 20s), Errc::resource_exhausted);
  IPCX_ASSERT_OK(req->cancel(*a));
  IPCX_EXPECT_ERRC(req->cancel(*a), Errc::not_found);
  IPCX_EXPECT_OK(req->send_request(as_bytes("c"), 20s));
  EXPECT_EQ(req->stats().dropped.expired, 1u);  // the cancelled one
  expect_balanced(req->stats());
  run.on_loop([&] { held.clear(); return 0; });
}

TEST_P(ReqRep, RequestExpiresAtTheRequesterAndItsLateReplyIsDiscarded) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  std::atomic<int> seen{0};
  auto rep = Replier::bind(url(), [&](Request& r) {
    if (text(r.payload) == "slow") held.push_back(r.defer());
    else (void)r.reply(r.payload);
    ++seen;
  });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  IPCX_EXPECT_ERRC(req->request(as_bytes("slow"), 100ms), Errc::timeout);
  EXPECT_EQ(req->stats().dropped.expired, 1u);
  EXPECT_EQ(req->in_flight(), 0u);
  // The replier answers after all: the reply is discarded, the connection goes on.
  ASSERT_TRUE(eventually([&] { return seen.load() == 1; }, 10s));
  auto late = run.on_loop([&] { return held.front().reply(as_bytes("too late")); });
  IPCX_EXPECT_OK(late);
  auto m = req->request(as_bytes("fast"), 10s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "fast");
  EXPECT_EQ(req->late_replies(), 1u);
  expect_balanced(req->stats());
}

TEST_P(ReqRep, WaitShorterThanTheDeadlineKeepsTheRequest) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) { held.push_back(r.defer()); });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  auto id = req->send_request(as_bytes("x"), 30s);
  IPCX_ASSERT_OK(id);
  IPCX_EXPECT_ERRC(req->wait(*id, 20ms), Errc::timeout);
  IPCX_EXPECT_ERRC(req->wait(*id, Timeout::zero()), Errc::timeout);
  EXPECT_EQ(req->in_flight(), 1u);
  ASSERT_TRUE(eventually([&] { return run.on_loop([&] { return held.size(); }) == 1; }, 10s));
  run.on_loop([&] { return held.front().reply(as_bytes("y")); });
  auto m = req->wait(*id, 10s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "y");
}

TEST_P(ReqRep, ReplierSkipsRequestsThatExpiredWhileWaiting) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  std::vector<std::string> handled;
  ReplierOptions o;
  o.max_in_flight = 1;  // the second request waits in the backlog behind the first
  auto rep = Replier::bind(
      url(),
      [&](Request& r) {
        handled.push_back(text(r.payload));
        held.push_back(r.defer());
      },
      o);
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  auto first = req->send_request(as_bytes("first"), 30s);
  auto second = req->send_request(as_bytes("second"), 100ms);
  auto third = req->send_request(as_bytes("third"), 30s);
  IPCX_ASSERT_OK(first);
  IPCX_ASSERT_OK(second);
  IPCX_ASSERT_OK(third);
  ASSERT_TRUE(eventually([&] { return run.stats().received == 3; }, 10s));
  // The second's deadline (counted from when the replier read it) passes while it waits.
  std::this_thread::sleep_for(300ms);
  IPCX_EXPECT_ERRC(req->wait(*second, 10s), Errc::timeout);
  run.on_loop([&] { return held.front().reply(as_bytes("1")); });
  auto m = req->wait(*first, 10s);
  IPCX_ASSERT_OK(m);
  ASSERT_TRUE(eventually([&] { return run.on_loop([&] { return held.size(); }) == 2; }, 10s));
  run.on_loop([&] { return held.back().reply(as_bytes("3")); });
  auto m3 = req->wait(*third, 10s);
  IPCX_ASSERT_OK(m3);
  EXPECT_EQ(m3->text(), "3");
  const auto s = run.stats();
  EXPECT_EQ(s.dropped.expired, 1u);
  EXPECT_EQ(run.on_loop([&] { return handled; }), (std::vector<std::string>{"first", "third"}));
  expect_balanced_replier(s);
}

TEST_P(ReqRep, FullBacklogRefusesAtOnce) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  ReplierOptions o;
  o.max_in_flight = 1;
  o.max_backlog = 1;
  auto rep = Replier::bind(url(), [&](Request& r) { held.push_back(r.defer()); }, o);
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  auto a = req->send_request(as_bytes("a"), 30s);
  auto b = req->send_request(as_bytes("b"), 30s);
  auto c = req->send_request(as_bytes("c"), 30s);
  IPCX_ASSERT_OK(c);
  IPCX_EXPECT_ERRC(req->wait(*c, 20s), Errc::resource_exhausted);
  EXPECT_EQ(req->stats().dropped.refused, 1u);
  EXPECT_EQ(run.stats().dropped.refused, 1u);
  run.on_loop([&] { return held.front().reply(as_bytes("A")); });
  IPCX_EXPECT_OK(req->wait(*a, 10s));
  ASSERT_TRUE(eventually([&] { return run.on_loop([&] { return held.size(); }) == 2; }, 10s));
  run.on_loop([&] { return held.back().reply(as_bytes("B")); });
  IPCX_EXPECT_OK(req->wait(*b, 10s));
  expect_balanced(req->stats());
  expect_balanced_replier(run.stats());
}

TEST_P(ReqRep, DeferredReplyForOneClientDoesNotBlockOthers) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) {
    if (text(r.payload) == "slow") held.push_back(r.defer());
    else (void)r.reply(r.payload);
  });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto slow = Requester::connect(run.url());
  auto fast = Requester::connect(run.url());
  IPCX_ASSERT_OK(slow);
  IPCX_ASSERT_OK(fast);
  auto pending = slow->send_request(as_bytes("slow"), 30s);
  IPCX_ASSERT_OK(pending);
  ASSERT_TRUE(eventually([&] { return run.on_loop([&] { return held.size(); }) == 1; }, 10s));
  for (int i = 0; i < 20; ++i) {
    auto m = fast->request(as_bytes(fmt::format("f{}", i)), 10s);
    IPCX_ASSERT_OK(m);
    EXPECT_EQ(m->text(), fmt::format("f{}", i));
  }
  EXPECT_EQ(slow->in_flight(), 1u);
  run.on_loop([&] { return held.front().reply(as_bytes("done")); });
  auto m = slow->wait(*pending, 10s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "done");
}

// A real `ipcx req` process, SIGKILLed while its request is being handled: the reply made
// afterwards is discarded and counted, and the replier goes on serving others.
TEST_P(ReqRep, RequesterKilledWhileItsRequestIsHandled) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) {
    if (text(r.payload) == "doomed") held.push_back(r.defer());
    else (void)r.reply(r.payload);
  });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto child = Process::spawn({IPCX_CLI, "req", run.url(), "doomed", "--timeout", "60000"});
  IPCX_ASSERT_OK(child);
  ASSERT_TRUE(eventually([&] { return run.on_loop([&] { return held.size(); }) == 1; }, 20s));
  IPCX_ASSERT_OK(child->kill(SIGKILL));
  IPCX_ASSERT_OK(child->wait(20s));
  ASSERT_TRUE(eventually([&] { return run.server_stats().connections == 0; }, 20s));
  auto r = run.on_loop([&] { return held.front().reply(as_bytes("for nobody")); });
  IPCX_EXPECT_ERRC(r, Errc::closed);
  const auto s = run.stats();
  EXPECT_EQ(s.dropped.peer_died, 1u);
  expect_balanced_replier(s);
  auto other = Requester::connect(run.url());
  IPCX_ASSERT_OK(other);
  auto m = other->request(as_bytes("still here"), 10s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "still here");
}

// The replier's process is SIGKILLed while it holds our request: the requester learns at once
// (Errc::closed), not when the request's deadline passes.
TEST_P(ReqRep, ReplierKilledMidCall) {
  const auto where = url();
  std::string bound = where;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    std::vector<ReplyHandle> held;  // never answered
    auto rep = Replier::bind(where, [&](Request& r) { held.push_back(r.defer()); });
    if (!rep) ::_exit(3);
    const auto u = rep->url();
    (void)!::write(ready[1], u.data(), u.size());
    ::close(ready[1]);
    (void)rep->run();
    ::_exit(0);
  }
  ::close(ready[1]);
  Watchdog wd(60s);  // (started after the fork: the child has no use for its thread)
  char buf[512];
  ssize_t n = ::read(ready[0], buf, sizeof buf);
  ::close(ready[0]);
  ASSERT_GT(n, 0);
  bound.assign(buf, static_cast<std::size_t>(n));
  auto req = Requester::connect(bound);
  ASSERT_TRUE(req.has_value()) << why(req);
  auto id = req->send_request(as_bytes("never answered"), 100s);
  IPCX_ASSERT_OK(id);
  IPCX_EXPECT_ERRC(req->wait(*id, 50ms), Errc::timeout);  // it is being "handled"
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  auto r = req->wait(*id, 100s);
  IPCX_EXPECT_ERRC(r, Errc::closed);
  EXPECT_EQ(req->stats().dropped.peer_died, 1u);
  expect_balanced(req->stats());
  IPCX_EXPECT_ERRC(req->request(as_bytes("again"), 1s), Errc::closed);
  // What the killed replier left at its address (a socket file, a POSIX or System V queue) is
  // taken over by the next listener there, which removes it when it closes.
  if (GetParam().name != std::string("tcp")) {
    auto again = ipcx::listen(bound);
    ASSERT_TRUE(again.has_value()) << why(again);
    again->close();
  }
}

TEST_P(ReqRep, AnswersStatRequests) {
  Watchdog wd(60s);
  auto rep = Replier::bind(url(), echo());
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  IPCX_ASSERT_OK(req->request(as_bytes("one"), 10s));
  auto raw = connect(run.url());
  IPCX_ASSERT_OK(raw);
  const std::byte ask{static_cast<unsigned char>(messaging::Kind::stat_request)};
  IPCX_ASSERT_OK(raw->send({&ask, 1}, 10s));
  auto m = raw->recv(10s);
  IPCX_ASSERT_OK(m);
  ASSERT_GE(m->size(), 2u);
  EXPECT_EQ(m->data[0], std::byte{static_cast<unsigned char>(messaging::Kind::stat_reply)});
  const auto json = text(m->bytes().subspan(1));
  EXPECT_NE(json.find("\"received\":1"), std::string::npos) << json;
  EXPECT_NE(json.find("\"delivered\":1"), std::string::npos) << json;
}

TEST_P(ReqRep, UnansweredRequestsAreCountedNoRoute) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) {
    if (text(r.payload) == "defer") held.push_back(r.defer());
    else if (text(r.payload) == "echo") (void)r.reply(r.payload);
    // anything else: neither replied nor deferred
  });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  IPCX_EXPECT_ERRC(req->request(as_bytes("ignored"), 200ms), Errc::timeout);
  IPCX_EXPECT_ERRC(req->request(as_bytes("defer"), 200ms), Errc::timeout);
  ASSERT_TRUE(eventually([&] { return run.on_loop([&] { return held.size(); }) == 1; }, 10s));
  run.on_loop([&] { held.clear(); return 0; });  // the handle dies unanswered
  const auto s = run.stats();
  EXPECT_EQ(s.dropped.no_route, 2u);
  expect_balanced_replier(s);
  auto m = req->request(as_bytes("echo"), 10s);  // the connection goes on
  IPCX_ASSERT_OK(m);
}

TEST_P(ReqRep, BacklogBytesAreBounded) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  ReplierOptions o;
  o.max_in_flight = 1;
  o.max_backlog_bytes = 1000;
  auto rep = Replier::bind(url(), [&](Request& r) { held.push_back(r.defer()); }, o);
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  auto a = req->send_request(as_bytes("a"), 30s);
  auto small = req->send_request(as_bytes(std::string(500, 's')), 30s);
  auto big = req->send_request(as_bytes(std::string(600, 'b')), 30s);  // 500 + 600 > 1000
  IPCX_ASSERT_OK(big);
  IPCX_EXPECT_ERRC(req->wait(*big, 20s), Errc::resource_exhausted);
  EXPECT_EQ(run.stats().dropped.refused, 1u);
  run.on_loop([&] { held.clear(); return 0; });
}

// A client that sends requests and never reads a reply: its replies fill its queue up to
// max_queued, then the engine stops reading it, so its own sends block (the kernel's buffers
// fill); the replier's memory for it stays bounded and the others are served.
TEST_P(ReqRep, RequesterThatNeverReadsIsPushedBack) {
  Watchdog wd(60s);
  ReplierOptions o;
  o.server.max_queued = 64 * 1024;
  auto rep = Replier::bind(url(), echo(), o);
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto raw = connect(run.url());
  IPCX_ASSERT_OK(raw);
  const std::string big(std::min<std::size_t>(32 * 1024, GetParam().largest - 64), 'x');
  int sent = 0;
  for (RequestId id = 1; id < 4096; ++id) {  // until the kernel stops taking them
    if (!raw->send(raw_request(id, big), 500ms)) break;
    ++sent;
  }
  ASSERT_LT(sent, 4095) << "the replier never stopped reading";
  const auto s = run.stats();
  if (GetParam().name != std::string("sysv")) {
    EXPECT_LT(s.received, static_cast<std::uint64_t>(sent));  // the rest wait in the kernel
  } else {
    // One queue carries both directions (docs/sysv.md): the unread replies fill it, and that is
    // what stops the requester.
    EXPECT_LE(s.received, static_cast<std::uint64_t>(sent));
  }
  EXPECT_EQ(s.dropped.total(), 0u);
  expect_balanced_replier(s);
  // Its queued replies: at most max_queued plus one reply.
  const auto mem = run.server_stats().memory_in_use;
  EXPECT_LE(mem, std::size_t{(64 + 33) * 1024} + std::size_t{256 * 1024});  // + read buffers
  auto other = Requester::connect(run.url());
  IPCX_ASSERT_OK(other);
  IPCX_EXPECT_OK(other->request(as_bytes("hi"), 10s));
  raw->close();
}

// A client that sends its requests and then shuts down its sending side still gets the
// replies made before the replier reads that end; one deferred past it is discarded.
TEST_P(ReqRep, HalfClosedRequesterGetsRepliesMadeBeforeItsEnd) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) {
    if (text(r.payload) == "later") held.push_back(r.defer());
    else (void)r.reply(r.payload);
  });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto raw = connect(run.url());
  IPCX_ASSERT_OK(raw);
  IPCX_ASSERT_OK(raw->send(raw_request(1, "now"), 10s));
  IPCX_ASSERT_OK(raw->send(raw_request(2, "later"), 10s));
  IPCX_ASSERT_OK(raw->close_send(10s));
  auto m = raw->recv(10s);
  IPCX_ASSERT_OK(m);
  ASSERT_EQ(m->size(), messaging::rr::kReplyHeader + 3);
  EXPECT_EQ(messaging::rr::get_u64(m->data.data() + 1), 1u);
  EXPECT_EQ(text(m->bytes().subspan(messaging::rr::kReplyHeader)), "now");
  IPCX_EXPECT_ERRC(raw->recv(10s), Errc::closed);  // the replier closed after its last reply
  IPCX_EXPECT_ERRC(run.on_loop([&] { return held.front().reply(as_bytes("x")); }), Errc::closed);
  EXPECT_EQ(run.stats().dropped.peer_died, 1u);
}

TEST_P(ReqRep, CloseFromAnotherThreadEndsABlockedWait) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) { held.push_back(r.defer()); });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url());
  IPCX_ASSERT_OK(req);
  auto id = req->send_request(as_bytes("x"), 100s);
  IPCX_ASSERT_OK(id);
  ASSERT_TRUE(eventually([&] { return run.on_loop([&] { return held.size(); }) == 1; }, 10s));
  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    req->close();
  });
  auto r = req->wait(*id, 100s);
  closer.join();
  IPCX_EXPECT_ERRC(r, Errc::closed);
  EXPECT_EQ(req->stats().dropped.peer_died, 1u);
  run.on_loop([&] { held.clear(); return 0; });
}

TEST_P(ReqRep, UnwaitedRequestsExpireOnTheirOwn) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) { held.push_back(r.defer()); });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto req = Requester::connect(run.url(), {.max_in_flight = 2});
  IPCX_ASSERT_OK(req);
  auto brief = req->send_request(as_bytes("brief"), 50ms);
  auto lasting = req->send_request(as_bytes("lasting"), 60s);
  IPCX_ASSERT_OK(brief);
  IPCX_ASSERT_OK(lasting);
  std::this_thread::sleep_for(100ms);
  IPCX_EXPECT_ERRC(req->wait(*lasting, 1ms), Errc::timeout);  // still in flight
  EXPECT_EQ(req->in_flight(), 1u);  // the brief one was counted expired meanwhile
  IPCX_EXPECT_ERRC(req->wait(*brief, 1s), Errc::not_found);
  IPCX_EXPECT_OK(req->send_request(as_bytes("room again"), 60s));  // its place is free
  const auto c = req->stats();
  EXPECT_EQ(c.dropped.expired, 1u);
  expect_balanced(c);
  run.on_loop([&] { held.clear(); return 0; });
}

INSTANTIATE_TEST_SUITE_P(Transports, ReqRep, ::testing::ValuesIn(transports()), transport_name);

}  // namespace
}  // namespace ipcx::test
