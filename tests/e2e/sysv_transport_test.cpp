// sysv:// conversations between real processes: several clients on one queue, the server
// engine, peer death (SIGKILL) in both directions, stale listeners and what is left behind.
#include <sys/ipc.h>
#include <sys/msg.h>
#include <poll.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/sysv_util.hpp"
#include "server_harness.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"


namespace ipcx {
namespace {

using namespace std::chrono_literals;
using test::why;

std::string test_key() { return test::sysv_test_url(); }

using sysvtest::QueueGuard;
using sysvtest::queue_exists;

std::size_t queued_messages(const std::string& key) {
  auto q = sysv::Queue::open(key);
  if (!q) return 0;
  auto a = q->attributes();
  return a ? a->messages : 0;
}

// A forked child running `body`; killed (SIGKILL) and reaped on destruction if still there.
class Child {
 public:
  template <class F>
  explicit Child(F body) {
    pid_ = ::fork();
    if (pid_ == 0) ::_exit(body());
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void kill() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int wait() {
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }

 private:
  pid_t pid_ = -1;
};

TEST(SysvTransport, EchoAndCapabilities) {
  IPCX_SKIP_FORK_UNDER_SANITIZERS();
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto l = ipcx::listen(key);
  ASSERT_TRUE(l) << why(l);
  EXPECT_EQ(l->url(), key);
  EXPECT_TRUE(l->native_handle().has_value());
  Child child([&] {
    auto c = ipcx::connect(key, {}, 10s);
    if (!c) return 2;
    if (!c->send(as_bytes("hello"))) return 3;
    auto m = c->recv(10s);
    if (!m || m->text() != "HELLO") return 4;
    return 0;
  });
  auto s = l->accept(10s);
  ASSERT_TRUE(s) << why(s);
  auto caps = s->capabilities();
  EXPECT_TRUE(caps.records);
  EXPECT_FALSE(caps.fd_passing);
  EXPECT_FALSE(caps.verified_peer);
  EXPECT_TRUE(caps.pollable);
  const auto msgmax = sysv::limits().value().max_message;
  auto big = s->send(std::vector<std::byte>(msgmax), 1s);  // + the kind byte: one too many
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
  EXPECT_NE(big.error().detail.find("kernel.msgmax"), std::string::npos) << big.error().detail;
  IPCX_EXPECT_ERRC(ipcx::listen(test_key(), {.access = AccessRule::user(0)}), Errc::not_supported);
  // The descriptor (a waiter thread's eventfd) polls readable once the message is there.
  int fd = s->native_handle().value_or(-1);
  ASSERT_GE(fd, 0);
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  auto m = s->try_recv();
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "hello");
  IPCX_ASSERT_OK(s->send(as_bytes("HELLO")));
  EXPECT_EQ(child.wait(), 0);
  // The client closed: EOF.
  IPCX_EXPECT_ERRC(s->recv(10s), Errc::closed);
  s->close();
  l->close();
  EXPECT_FALSE(queue_exists(key)) << "the listener removes its queue on close";
}

TEST(SysvTransport, LiveListenerIsNotStolenStaleOneIsTakenOver) {
  IPCX_SKIP_FORK_UNDER_SANITIZERS();
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  Child owner([&] {
    auto l = ipcx::listen(key);
    char c = l ? 1 : 0;
    (void)!::write(ready[1], &c, 1);
    ::pause();
    return 0;
  });
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  ASSERT_EQ(ok, 1);
  auto taken = ipcx::listen(key);
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code, Errc::address_in_use) << taken.error().message();
  EXPECT_NE(taken.error().detail.find(fmt::format("pid {}", owner.pid())), std::string::npos) << taken.error().detail;
  owner.kill();
  // SIGKILL leaves the queue behind; clients are refused, and the next listener takes it over.
  EXPECT_TRUE(queue_exists(key));
  IPCX_EXPECT_ERRC(ipcx::connect(key, {}, 1s), Errc::connection_refused);
  auto l = ipcx::listen(key);
  ASSERT_TRUE(l) << why(l);
  auto c = ipcx::connect(key, {}, 5s);
  ASSERT_TRUE(c) << why(c);
  auto s = l->accept(5s);
  ASSERT_TRUE(s) << why(s);
}

TEST(SysvTransport, ClosingTheListenerKeepsAcceptedConversations) {
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto l = ipcx::listen(key);
  ASSERT_TRUE(l) << why(l);
  auto c = ipcx::connect(key, {}, 5s);
  ASSERT_TRUE(c) << why(c);
  auto s = l->accept(5s);
  ASSERT_TRUE(s) << why(s);
  auto never_accepted = ipcx::connect(key, {}, 5s);
  ASSERT_TRUE(never_accepted) << why(never_accepted);
  l->close();
  // New clients are refused; one that was never accepted learns its conversation is over.
  IPCX_EXPECT_ERRC(ipcx::connect(key, {}, 1s), Errc::connection_refused);
  IPCX_EXPECT_ERRC(never_accepted->recv(10s), Errc::closed);
  IPCX_EXPECT_ERRC(never_accepted->send(as_bytes("x"), 1s), Errc::closed);
  // The accepted one goes on.
  IPCX_ASSERT_OK(c->send(as_bytes("still")));
  auto m = s->recv(10s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "still");
  EXPECT_TRUE(queue_exists(key));
  s->close();
  EXPECT_FALSE(queue_exists(key)) << "the queue goes with the last accepted conversation";
  IPCX_EXPECT_ERRC(c->recv(10s), Errc::closed);
}

// A hand-made client: its hello and then raw messages of its conversation's type, as any
// process allowed to write the queue could send (docs/sysv.md, "Protocol").
struct RawClient {
  sysv::Queue q;
  std::uint64_t id;
  long to_server() const { return 16 + 4 * static_cast<long>(id); }
  static std::vector<std::byte> hello(std::uint64_t id, std::uint32_t pid) {
    std::vector<std::byte> b{std::byte{0x04}};
    for (int i = 0; i < 8; ++i) b.push_back(std::byte((id >> (8 * i)) & 0xff));
    for (int i = 0; i < 4; ++i) b.push_back(std::byte((pid >> (8 * i)) & 0xff));
    return b;
  }
};

TEST(SysvTransport, MalformedInputDropsOnlyThatConversation) {
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto l = ipcx::listen(key, {.max_message = 100});
  ASSERT_TRUE(l) << why(l);
  auto q = sysv::Queue::open(key);
  ASSERT_TRUE(q) << why(q);
  // Garbage where hellos go is skipped: the listener still accepts the next real client.
  IPCX_ASSERT_OK(q->send(1, as_bytes("GET / HTTP/1.1\r\n")));
  IPCX_ASSERT_OK(q->send(1, std::span<const std::byte>{}));
  const auto short_hello = RawClient::hello(77, 0);
  IPCX_ASSERT_OK(q->send(1, std::span(short_hello).first(5)));
  auto good = ipcx::connect(key, {}, 5s);
  ASSERT_TRUE(good) << why(good);
  auto good_s = l->accept(10s);
  ASSERT_TRUE(good_s) << why(good_s);

  const auto pid = static_cast<std::uint32_t>(::getpid());
  struct Case {
    std::vector<std::byte> text;
    Errc want;
  };
  std::vector<std::byte> unknown_kind{std::byte{0x7f}, std::byte{1}, std::byte{2}};
  std::vector<std::byte> oversized(201, std::byte{0x41});
  oversized[0] = std::byte{0x01};  // data, 200 bytes: over max_message = 100
  std::vector<Case> cases{{unknown_kind, Errc::protocol}, {{}, Errc::protocol}, {oversized, Errc::too_large}};
  for (std::size_t i = 0; i < cases.size(); ++i) {
    RawClient raw{.q = std::move(*sysv::Queue::open(key)), .id = 0xabc000 + i};
    IPCX_ASSERT_OK(raw.q.send(1, RawClient::hello(raw.id, pid)));
    auto s = l->accept(10s);
    ASSERT_TRUE(s) << why(s);
    IPCX_ASSERT_OK(raw.q.send(raw.to_server(), cases[i].text));
    auto m = s->recv(10s);
    ASSERT_FALSE(m) << "case " << i << " was delivered";
    EXPECT_EQ(m.error().code, cases[i].want) << "case " << i << ": " << m.error().message();
    EXPECT_FALSE(s->is_open());
    IPCX_EXPECT_ERRC(s->recv(1s), Errc::closed);
  }
  // The real client never noticed.
  IPCX_ASSERT_OK(good->send(as_bytes("fine")));
  auto m = good_s->recv(10s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "fine");
}

TEST(SysvTransport, AQueueThatIsNoListenersIsNotTaken) {
  auto key = test_key();
  QueueGuard g{key};
  auto q = sysv::Queue::create(key);
  ASSERT_TRUE(q) << why(q);
  auto l = ipcx::listen(key);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, Errc::address_in_use);
  EXPECT_NE(l.error().detail.find("ipcrm -Q " + sysv::parse_key(key)->str()), std::string::npos) << l.error().detail;
  IPCX_EXPECT_ERRC(ipcx::connect(key, {}, 1s), Errc::connection_refused);
  EXPECT_TRUE(queue_exists(key));
  IPCX_EXPECT_ERRC(ipcx::connect(test_key(), {}, 1s), Errc::connection_refused);
}

TEST(SysvTransport, KilledClientIsClosedAndLeavesNothingInTheQueue) {
  IPCX_SKIP_FORK_UNDER_SANITIZERS();
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto l = ipcx::listen(key);
  ASSERT_TRUE(l) << why(l);
  Child client([&] {
    auto c = ipcx::connect(key, {}, 10s);
    if (!c) return 2;
    (void)c->send(as_bytes("last words"));
    ::pause();
    return 0;
  });
  auto s = l->accept(10s);
  ASSERT_TRUE(s) << why(s);
  auto m = s->recv(10s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "last words");
  // Messages for the client it will never read.
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(s->send(as_bytes("unread")));
  client.kill();
  // Sending to it fails with closed within 32 sends (the sender looks every 32nd send).
  Result<void> sent;
  int tries = 0;
  for (; tries < 100 && sent; ++tries) sent = s->send(as_bytes("anyone?"), 10s);
  ASSERT_FALSE(sent) << "sends to a dead client kept succeeding";
  EXPECT_EQ(sent.error().code, Errc::closed) << sent.error().message();
  EXPECT_LE(tries, 33);
  auto r = s->recv(10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
  EXPECT_NE(r.error().detail.find("died"), std::string::npos) << r.error().detail;
  s->close();
  EXPECT_EQ(queued_messages(key), 1u) << "only the listener's owner record stays";
}

TEST(SysvTransport, AClientDeadBeforeAcceptIsSkippedAndRemoved) {
  IPCX_SKIP_FORK_UNDER_SANITIZERS();
  auto key = test_key();
  QueueGuard g{key};
  // The client is forked before this process has threads (the listener's, the watchdog's): a
  // child forked beside running threads can inherit a lock one of them held.
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  Child client([&] {
    ::close(go[1]);
    char c = 0;
    if (::read(go[0], &c, 1) != 1 || c != 1) return 4;
    auto conn = ipcx::connect(key, {}, 10s);
    if (!conn) return 2;
    for (int i = 0; i < 3; ++i)
      if (!conn->send(as_bytes("orphan"))) return 3;
    ::_exit(0);  // no close: as if killed
  });
  ::close(go[0]);
  test::Watchdog wd(60s);
  auto l = ipcx::listen(key);
  const char ready = l ? 1 : 0;
  ASSERT_EQ(::write(go[1], &ready, 1), 1);
  ::close(go[1]);
  ASSERT_TRUE(l) << why(l);
  ASSERT_EQ(client.wait(), 0);
  IPCX_EXPECT_ERRC(l->accept(200ms), Errc::timeout);
  EXPECT_EQ(queued_messages(key), 1u) << "only the owner record stays";
}

TEST(SysvTransport, KilledServerIsClosedForTheClient) {
  IPCX_SKIP_FORK_UNDER_SANITIZERS();
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  Child server([&] {
    auto l = ipcx::listen(key);
    char c = l ? 1 : 0;
    (void)!::write(ready[1], &c, 1);
    if (!l) return 2;
    auto s = l->accept(10s);
    if (!s) return 3;
    (void)s->send(as_bytes("welcome"));
    ::pause();
    return 0;
  });
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  ASSERT_EQ(ok, 1);
  auto c = ipcx::connect(key, {}, 10s);
  ASSERT_TRUE(c) << why(c);
  auto m = c->recv(10s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "welcome");
  server.kill();
  auto r = c->recv(forever);  // blocked in msgrcv: the watch thread's wake ends it
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
}

TEST(SysvTransport, CloseWakesABlockedRecv) {
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto l = ipcx::listen(key);
  ASSERT_TRUE(l) << why(l);
  auto c = ipcx::connect(key, {}, 10s);
  ASSERT_TRUE(c) << why(c);
  auto s = l->accept(10s);
  ASSERT_TRUE(s) << why(s);
  Result<Message> got = fail(Errc::system, "none");
  std::thread t([&] { got = c->recv(forever); });
  std::this_thread::sleep_for(50ms);
  c->close();
  t.join();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::closed);
  IPCX_EXPECT_ERRC(s->recv(10s), Errc::closed);  // the client's bye
}

TEST(SysvTransport, ServedByTheEngineWithSeveralClients) {
  IPCX_SKIP_FORK_UNDER_SANITIZERS();
  test::Watchdog wd(100s);
  auto key = test_key();
  QueueGuard g{key};
  auto l = ipcx::listen(key);
  ASSERT_TRUE(l) << why(l);
  Server::Handlers h;
  h.on_message = [](Session& s, Message& m) {
    if (m.text() == "big") (void)s.send(std::vector<std::byte>(8000));
    else (void)s.send(m.bytes());
  };
  auto srv = Server::create(std::move(h), {.send_timeout = 2s});
  ASSERT_TRUE(srv) << why(srv);
  IPCX_ASSERT_OK(srv->add_listener(std::move(*l)));
  test::ServerThread thread(std::move(*srv));
  // A client that never reads: its replies fill the shared queue (16 KiB by default) until the
  // engine drops it for making no progress; that removes them, and the others get through.
  auto idle = ipcx::connect(key, {}, 10s);
  ASSERT_TRUE(idle) << why(idle);
  // Three requests for 8000-byte replies: the third cannot fit while the first two are unread.
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(idle->send(as_bytes("big"), 5s));
  EXPECT_TRUE(thread.wait_stats([](const ServerStats& s) { return s.dropped_send_timeout == 1; }, 30s));
  constexpr int kClients = 4;
  constexpr int kEach = 200;
  std::vector<std::unique_ptr<Child>> children;
  for (int c = 0; c < kClients; ++c)
    children.push_back(std::make_unique<Child>([&, c] {
      auto conn = ipcx::connect(key, {}, 10s);
      if (!conn) return 2;
      for (int i = 0; i < kEach; ++i) {
        auto text = fmt::format("{}:{}", c, i);
        if (!conn->send(as_bytes(text), 10s)) return 3;
        auto m = conn->recv(10s);
        if (!m) { fmt::print(stderr, "client {}: {}\n", c, m.error().message()); return 4; }
        if (m->text() != text) { fmt::print(stderr, "client {}: got {}\n", c, m->text()); return 5; }
      }
      return 0;
    }));
  for (auto& c : children) EXPECT_EQ(c->wait(), 0);
  EXPECT_TRUE(thread.wait_stats([](const ServerStats& s) { return s.closed_clean >= kClients; }, 30s));
  IPCX_EXPECT_ERRC(idle->recv(10s), Errc::closed);
  idle->close();
  // Only the owner record: the idle client took its bye and took back what it sent after the
  // server left; what the exited clients sent after the server closed went with them.
  EXPECT_TRUE(test::eventually([&] { return queued_messages(key) == 1; }, 10s)) << queued_messages(key);
}

}  // namespace
}  // namespace ipcx
