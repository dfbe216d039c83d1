// The mq:// transport: URL options, framing, end of conversation, peer death, stale and live
// listeners, the server engine with several client processes, RLIMIT_MSGQUEUE.
#include <fcntl.h>
#include <grp.h>
#include <mqueue.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "server_harness.hpp"
#include "e2e/mq_util.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using namespace mqtest;
using test::unique_name;

// ---- mq:// ----------------------------------------------------------------------------------

std::string mq_url(const std::string& name, std::string_view query = {}) {
  return fmt::format("mq:///{}{}", name, query);
}

TEST(MqTransport, UrlOptionsAreRangeChecked) {
  auto n = unique_name("mqt");
  for (auto q : {"?capacity=0", "?capacity=65537", "?msgsize=0", "?msgsize=16777217", "?priority=32766",
                 "?priority=-1", "?capacity=ten", "?bogus=1"}) {
    auto l = ipcx::listen(mq_url(n, q));
    ASSERT_FALSE(l) << q;
    EXPECT_EQ(l.error().code, Errc::invalid_url) << q << ": " << l.error().message();
  }
  IPCX_EXPECT_ERRC(ipcx::listen("mq://host/x"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen("mq:///a/b"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen("mq:///" + std::string(201, 'x')), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect(mq_url(n), {}, 1s), Errc::connection_refused);
}

TEST(MqTransport, EchoSizesPrioritiesAndEof) {
  test::Watchdog wd(30s);
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n, "?msgsize=100"));
  IPCX_ASSERT_OK(l);
  auto c = ipcx::connect(l->url(), {}, 5s);
  IPCX_ASSERT_OK(c);
  auto s = l->accept(5s);
  IPCX_ASSERT_OK(s);
  EXPECT_TRUE(c->capabilities().records);
  EXPECT_FALSE(c->capabilities().verified_peer);
  EXPECT_FALSE(c->capabilities().fd_passing);
  EXPECT_TRUE(l->capabilities().concurrent);
  EXPECT_EQ(s->peer().pid, ::getpid());
  IPCX_ASSERT_OK(c->send(std::vector<std::byte>(100)));
  auto big = c->send(std::vector<std::byte>(101));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
  EXPECT_NE(big.error().detail.find("message size of 100"), std::string::npos) << big.error().message();
  IPCX_ASSERT_OK(c->send({}));
  auto m = s->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->size(), 100u);
  m = s->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->size(), 0u) << "an empty message is data, not the end";
  IPCX_ASSERT_OK(s->send(as_bytes("back")));
  m = c->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "back");
  c->close();
  IPCX_EXPECT_ERRC(s->recv(5s), Errc::closed);
}

// Raw garbage written into a conversation queue (data at the reserved priority 0) is a protocol
// error for that connection only.
TEST(MqTransport, RawGarbageAtTheReservedPriorityIsProtocol) {
  test::Watchdog wd(30s);
  ASSERT_TRUE(mqueue_mounted());
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(l);
  auto c = ipcx::connect(l->url(), {}, 5s);
  IPCX_ASSERT_OK(c);
  // Before accept the client's queues still have names: write into the client->server one.
  auto names = queues_starting(n + ".");
  ASSERT_EQ(names.size(), 2u);
  auto cs = std::find_if(names.begin(), names.end(), [](auto& x) { return x.ends_with(".cs"); });
  ASSERT_NE(cs, names.end());
  mqd_t raw = ::mq_open(("/" + *cs).c_str(), O_WRONLY);
  ASSERT_NE(raw, static_cast<mqd_t>(-1));
  ASSERT_EQ(::mq_send(raw, "garbage", 7, 0), 0);
  ::mq_close(raw);
  auto s = l->accept(5s);
  IPCX_ASSERT_OK(s);
  EXPECT_TRUE(queues_starting(n + ".").empty()) << "accept unlinks the conversation's queues";
  IPCX_EXPECT_ERRC(s->recv(5s), Errc::protocol);
  IPCX_EXPECT_ERRC(s->recv(5s), Errc::closed);
}

TEST(MqTransport, SendToAClosedPeerIsClosed) {
  test::Watchdog wd(30s);
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n, "?capacity=2"));
  IPCX_ASSERT_OK(l);
  auto c = ipcx::connect(l->url(), {}, 5s);
  IPCX_ASSERT_OK(c);
  auto s = l->accept(5s);
  IPCX_ASSERT_OK(s);
  s->close();
  Result<void> r;
  for (int i = 0; i < 10 && r; ++i) r = c->send(as_bytes("anyone?"), 5s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
}

TEST(MqTransport, LiveListenerIsNotStolenStaleOneIsReplaced) {
  test::Watchdog wd(30s);
  ASSERT_TRUE(mqueue_mounted());
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(l);
  IPCX_EXPECT_ERRC(ipcx::listen(mq_url(n)), Errc::address_in_use);
  l->close();
  EXPECT_TRUE(queues_starting(n).empty()) << "close removes the service queue";
  // A listener process SIGKILLed leaves its service queue and a pending client's queues.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  if (child == 0) {
    auto cl = ipcx::listen(mq_url(n));
    if (!cl) ::_exit(2);
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char b;
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  ::close(ready[0]);
  auto pending = ipcx::connect(mq_url(n), {}, 5s);
  IPCX_ASSERT_OK(pending);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(queues_starting(n).size(), 3u);
  auto fresh = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(fresh);
  EXPECT_EQ(queues_starting(n).size(), 1u) << "the stale announcement's queues were removed";
  IPCX_EXPECT_ERRC(pending->recv(5s), Errc::closed);
  auto c = ipcx::connect(fresh->url(), {}, 5s);
  IPCX_ASSERT_OK(c);
  auto s = fresh->accept(5s);
  IPCX_ASSERT_OK(s);
}

// The server engine serves several mq:// clients, each in its own process; one SIGKILLed in the
// middle leaves nothing in /dev/mqueue and the others go on.
TEST(MqTransport, ServerEngineWithSeveralClientProcesses) {
  IPCX_SKIP_FORK_UNDER_SANITIZERS();  // the children fork while the server thread runs
  test::Watchdog wd(60s);
  ASSERT_TRUE(mqueue_mounted());
  auto n = unique_name("mqt");
  // Small queues: RLIMIT_MSGQUEUE (819200 bytes by default) holds only four conversations of the
  // default 10 x 8192 bytes each way.
  auto l = ipcx::listen(mq_url(n, "?msgsize=1024"));
  IPCX_ASSERT_OK(l);
  const std::string url = l->url();
  std::atomic<int> closed_sessions{0};
  Server::Handlers h;
  h.on_message = [](Session& s, Message& m) { (void)s.send(m.bytes()); };
  h.on_close = [&](Session&, const Error&) { ++closed_sessions; };
  auto srv = Server::create(std::move(h));
  IPCX_ASSERT_OK(srv);
  IPCX_ASSERT_OK(srv->add_listener(std::move(*l)));
  test::ServerThread st(std::move(*srv));

  constexpr int kClients = 4;
  std::vector<pid_t> kids;
  for (int i = 0; i < kClients; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      auto c = ipcx::connect(url, {}, 5s);
      if (!c) ::_exit(2);
      for (int k = 0; k < 50; ++k) {
        auto text = fmt::format("client {} message {}", i, k);
        if (!c->send(as_bytes(text), 5s)) ::_exit(3);
        auto m = c->recv(5s);
        if (!m || m->text() != text) ::_exit(4);
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  // One more that connects, talks once, then hangs until SIGKILL.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t victim = ::fork();
  if (victim == 0) {
    auto c = ipcx::connect(url, {}, 5s);
    if (!c) ::_exit(2);
    if (!c->send(as_bytes("hi"), 5s)) ::_exit(3);
    auto m = c->recv(5s);
    if (!m) {
      std::fprintf(stderr, "victim: %s\n", m.error().message().c_str());
      ::_exit(4);
    }
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  for (pid_t k : kids) {
    int s = 0;
    ASSERT_EQ(::waitpid(k, &s, 0), k);
    EXPECT_TRUE(WIFEXITED(s) && WEXITSTATUS(s) == 0) << "client exit " << WEXITSTATUS(s);
  }
  char b;
  if (::read(ready[0], &b, 1) != 1) {
    int vs = 0;
    ::waitpid(victim, &vs, 0);
    ADD_FAILURE() << "the last client could not talk: exit " << WEXITSTATUS(vs);
  }
  ::close(ready[0]);
  ::kill(victim, SIGKILL);
  ::waitpid(victim, nullptr, 0);
  EXPECT_TRUE(test::eventually([&] { return closed_sessions.load() == kClients + 1; }, 20s))
      << closed_sessions.load() << " sessions ended";
  auto left = queues_starting(n + ".");
  EXPECT_TRUE(left.empty()) << left.size() << " conversation queues left, e.g. " << (left.empty() ? "" : left[0]);
}


// A writer that closes while its queue is full cannot queue the end marker: the reader still
// gets every message, then closed (the writer's lock is gone).
TEST(MqTransport, CloseWithAFullQueueIsStillEof) {
  test::Watchdog wd(30s);
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(l);
  auto c = ipcx::connect(mq_url(n, "?capacity=3&msgsize=64"), {}, 5s);
  IPCX_ASSERT_OK(c);
  auto s = l->accept(5s);
  IPCX_ASSERT_OK(s);
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(c->try_send(as_bytes(fmt::format("m{}", i))));
  IPCX_EXPECT_ERRC(c->try_send(as_bytes("full")), Errc::would_block);
  c->close();
  for (int i = 0; i < 3; ++i) {
    auto m = s->recv(5s);
    IPCX_ASSERT_OK(m);
    EXPECT_EQ(m->text(), fmt::format("m{}", i));
  }
  IPCX_EXPECT_ERRC(s->recv(5s), Errc::closed);
}

// A client waiting in recv learns that the server process was SIGKILLed.
TEST(MqTransport, ClientSeesAKilledServer) {
  test::Watchdog wd(30s);
  ASSERT_TRUE(mqueue_mounted());
  auto n = unique_name("mqt");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t server = ::fork();
  if (server == 0) {
    auto l = ipcx::listen(mq_url(n));
    if (!l) ::_exit(2);
    (void)!::write(ready[1], "l", 1);
    auto s = l->accept(10s);
    if (!s || !s->send(as_bytes("hello"), 5s)) ::_exit(3);
    (void)!::write(ready[1], "a", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char b;
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  auto c = ipcx::connect(mq_url(n), {}, 5s);
  IPCX_ASSERT_OK(c);
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  ::close(ready[0]);
  auto m = c->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "hello");
  ::kill(server, SIGKILL);
  ::waitpid(server, nullptr, 0);
  IPCX_EXPECT_ERRC(c->recv(10s), Errc::closed);
  // Sends go into the queue until it is full; then the reader's absence is noticed.
  Result<void> r;
  for (int i = 0; i < 11 && r; ++i) r = c->send(as_bytes("x"), 10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
  // The dead listener's service queue is stale: a new listener replaces it.
  auto fresh = ipcx::listen(mq_url(n));
  IPCX_EXPECT_OK(fresh);
  EXPECT_TRUE(queues_starting(n + ".").empty());
}

// A client that never reads fills only its own queue: the others are served.
TEST(MqTransport, ANonReadingClientDoesNotStallOthers) {
  test::Watchdog wd(60s);
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(l);
  const std::string url = l->url();
  Server::Handlers h;
  h.on_message = [](Session& s, Message& m) { (void)s.send(m.bytes()); };
  auto srv = Server::create(std::move(h));
  IPCX_ASSERT_OK(srv);
  IPCX_ASSERT_OK(srv->add_listener(std::move(*l)));
  test::ServerThread st(std::move(*srv));
  auto idle = ipcx::connect(url + "?capacity=2&msgsize=64", {}, 5s);
  IPCX_ASSERT_OK(idle);
  for (int i = 0; i < 50; ++i) IPCX_ASSERT_OK(idle->send(as_bytes("never read"), 5s));
  auto busy = ipcx::connect(url + "?capacity=2&msgsize=64", {}, 5s);
  IPCX_ASSERT_OK(busy);
  for (int i = 0; i < 100; ++i) {
    auto text = fmt::format("busy {}", i);
    IPCX_ASSERT_OK(busy->send(as_bytes(text), 5s));
    auto m = busy->recv(5s);
    IPCX_ASSERT_OK(m);
    EXPECT_EQ(m->text(), text);
  }
}

// With the default sizes, RLIMIT_MSGQUEUE (819200 bytes) holds four conversations of a user;
// the fifth connect is refused naming the limit. Run as uid 65534, whose budget is its own.
TEST(MqTransport, RlimitMsgqueueRefusesTheFifthDefaultConversation) {
  test::Watchdog wd(30s);
  rlimit q{};
  ASSERT_EQ(::getrlimit(RLIMIT_MSGQUEUE, &q), 0);
  if (q.rlim_cur != 819200) GTEST_SKIP() << "RLIMIT_MSGQUEUE is " << q.rlim_cur << ", not the default";
  auto n = unique_name("mqt");
  auto r = as_nobody([&] {
    auto l = ipcx::listen(mq_url(n));
    if (!l) return "listen: " + l.error().message();
    std::vector<Connection> conns;
    std::string out;
    for (int i = 0; i < 5; ++i) {
      auto c = ipcx::connect(mq_url(n), {}, 5s);
      out += c ? "ok\n" : describe(c.error()) + "\n";
      if (c) conns.push_back(std::move(*c));
    }
    return out;
  });
  EXPECT_EQ(r.out.substr(0, 12), "ok\nok\nok\nok\n") << r.out;
  EXPECT_NE(r.out.find("resource exhausted|"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("RLIMIT_MSGQUEUE = 819200 bytes (raise: ulimit -q"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ipcx
