// System V queues: the Queue API (keys, types, limits, permissions) and the sysv:// transport
// (conversations over one queue, peer death, stale listeners, the server engine).
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <fstream>
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
using test::pattern;
using test::why;

std::string test_key() { return test::sysv_test_url(); }

using sysvtest::QueueGuard;
using sysvtest::queue_exists;

std::size_t proc_limit(const char* name) {
  std::ifstream in(fmt::format("/proc/sys/kernel/{}", name));
  std::size_t v = 0;
  in >> v;
  return v;
}

// CAP_SYS_RESOURCE in the effective set (containers often drop it, even for root).
bool has_sys_resource() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("CapEff:")) return (std::stoull(line.substr(7), nullptr, 16) >> 24) & 1;
  return false;
}

// Runs `body` in a forked child; returns its exit status (or -1 when it did not exit).
template <class F>
int in_child(F body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// ---- keys --------------------------------------------------------------------------------

TEST(SysvKey, Forms) {
  auto a = sysv::parse_key("sysv://0x1234");
  ASSERT_TRUE(a) << why(a);
  EXPECT_EQ(a->value, 0x1234);
  EXPECT_EQ(a->str(), "0x00001234");
  auto b = sysv::parse_key("4660");
  ASSERT_TRUE(b) << why(b);
  EXPECT_EQ(b->value, 0x1234);
  auto top = sysv::parse_key("sysv://0xffffffff");
  ASSERT_TRUE(top) << why(top);
  EXPECT_EQ(top->str(), "0xffffffff");
  auto dec_top = sysv::parse_key("sysv://4294967295");
  ASSERT_TRUE(dec_top) << why(dec_top);
  EXPECT_EQ(dec_top->value, top->value);
  test::ScratchDir dir;
  { std::ofstream(dir.file("f")) << "x"; }
  auto f = sysv::parse_key("sysv://" + dir.file("f") + "?proj=7");
  ASSERT_TRUE(f) << why(f);
  EXPECT_EQ(f->value, ::ftok(dir.file("f").c_str(), 7));
}

TEST(SysvKey, OutOfRangeAndPrivateAreInvalid) {
  for (const char* bad : {"sysv://0", "sysv://0x0", "sysv://0x100000000", "sysv://4294967296",
                          "sysv://99999999999999999999999", "sysv://-1", "sysv://0x", "sysv://12ab", "sysv://",
                          "sysv:0x12", "sysv:///tmp?proj=0", "sysv:///tmp?proj=256", "sysv:///tmp",
                          "sysv:///tmp?mode=1"}) {
    auto k = sysv::parse_key(bad);
    ASSERT_FALSE(k) << bad;
    EXPECT_EQ(k.error().code, Errc::invalid_argument) << bad << ": " << k.error().message();
  }
  auto priv = sysv::parse_key("sysv://0");
  EXPECT_NE(priv.error().detail.find("IPC_PRIVATE"), std::string::npos) << priv.error().detail;
  auto missing = sysv::parse_key("sysv:///nonexistent/ipcx-test-none?proj=1");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  // The transport refuses the same keys as invalid URLs.
  IPCX_EXPECT_ERRC(ipcx::listen("sysv://0"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect("sysv://0x100000000"), Errc::invalid_url);
}

// ---- the Queue API -------------------------------------------------------------------------

TEST(SysvQueue, LimitsAreTheKernels) {
  auto l = sysv::limits();
  ASSERT_TRUE(l) << why(l);
  EXPECT_EQ(l->max_message, proc_limit("msgmax"));
  EXPECT_EQ(l->max_queue_bytes, proc_limit("msgmnb"));
  EXPECT_EQ(l->max_queues, proc_limit("msgmni"));
}

TEST(SysvQueue, CreateOpenExclusiveRemove) {
  auto key = test_key();
  QueueGuard g{key};
  IPCX_EXPECT_ERRC(sysv::Queue::open(key), Errc::not_found);
  auto q = sysv::Queue::create(key);
  ASSERT_TRUE(q) << why(q);
  IPCX_EXPECT_ERRC(sysv::Queue::create(key), Errc::already_exists);
  auto again = sysv::Queue::create(key, {.exclusive = false});
  ASSERT_TRUE(again) << why(again);
  EXPECT_EQ(again->id(), q->id());
  auto attrs = q->attributes();
  ASSERT_TRUE(attrs) << why(attrs);
  EXPECT_EQ(attrs->mode, 0600u);  // the default, whatever the umask
  EXPECT_EQ(attrs->uid, ::geteuid());
  EXPECT_EQ(attrs->capacity_bytes, proc_limit("msgmnb"));
  IPCX_EXPECT_ERRC(sysv::Queue::create(test_key(), {.mode = 01000}), Errc::invalid_argument);
  IPCX_ASSERT_OK(sysv::Queue::remove(key));
  EXPECT_FALSE(queue_exists(key));
  IPCX_EXPECT_ERRC(q->send(1, as_bytes("x"), 0s), Errc::closed);
  IPCX_EXPECT_ERRC(sysv::Queue::remove(key), Errc::not_found);
}

TEST(SysvQueue, SelectiveReceiveByType) {
  auto key = test_key();
  QueueGuard g{key};
  auto q = sysv::Queue::create(key);
  ASSERT_TRUE(q) << why(q);
  IPCX_ASSERT_OK(q->send(5, as_bytes("five")));
  IPCX_ASSERT_OK(q->send(2, as_bytes("two")));
  IPCX_ASSERT_OK(q->send(9, as_bytes("nine")));
  IPCX_ASSERT_OK(q->send(2, as_bytes("two again")));
  IPCX_EXPECT_ERRC(q->send(0, as_bytes("x")), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(q->send(-3, as_bytes("x")), Errc::invalid_argument);
  auto nine = q->recv(1s, 9);
  ASSERT_TRUE(nine) << why(nine);
  EXPECT_EQ(nine->type, 9);
  EXPECT_EQ(nine->message.text(), "nine");
  IPCX_EXPECT_ERRC(q->recv(0s, 7), Errc::would_block);
  auto low = q->recv(1s, -6);  // the lowest type <= 6 first
  ASSERT_TRUE(low) << why(low);
  EXPECT_EQ(low->type, 2);
  EXPECT_EQ(low->message.text(), "two");
  auto any = q->recv(1s);  // the oldest of any type
  ASSERT_TRUE(any) << why(any);
  EXPECT_EQ(any->message.text(), "five");
  auto attrs = q->attributes();
  ASSERT_TRUE(attrs) << why(attrs);
  EXPECT_EQ(attrs->messages, 1u);
  EXPECT_EQ(attrs->bytes, std::string_view("two again").size());
  EXPECT_EQ(attrs->last_send_pid, ::getpid());
  EXPECT_EQ(attrs->last_recv_pid, ::getpid());
}

TEST(SysvQueue, SelectiveReceiveAcrossProcesses) {
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto q = sysv::Queue::create(key);
  ASSERT_TRUE(q) << why(q);
  // The child sends types 3, 1, 2 (two each) and answers on type 10 with what it received on 4.
  pid_t child = ::fork();
  if (child == 0) {
    auto c = sysv::Queue::open(key);
    if (!c) ::_exit(2);
    for (long t : {3L, 1L, 2L, 3L, 1L, 2L})
      if (!c->send(t, as_bytes(fmt::format("t{}", t)))) ::_exit(3);
    auto req = c->recv(30s, 4);
    if (!req) ::_exit(4);
    if (!c->send(10, req->message.bytes())) ::_exit(5);
    ::_exit(0);
  }
  for (long t : {2L, 2L, 3L}) {
    auto m = q->recv(30s, t);
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->type, t);
    EXPECT_EQ(m->message.text(), fmt::format("t{}", t));
  }
  IPCX_ASSERT_OK(q->send(4, as_bytes("ping")));
  auto pong = q->recv(30s, 10);
  ASSERT_TRUE(pong) << why(pong);
  EXPECT_EQ(pong->message.text(), "ping");
  auto rest = q->attributes();
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->messages, 3u);  // 3, 1, 1 are still there
  EXPECT_EQ(rest->last_send_pid, child);
  int st = 0;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

TEST(SysvQueue, OversizedMessageIsRefusedAndNothingQueued) {
  auto key = test_key();
  QueueGuard g{key};
  auto q = sysv::Queue::create(key);
  ASSERT_TRUE(q) << why(q);
  const auto msgmax = proc_limit("msgmax");
  auto big = q->send(1, pattern(msgmax + 1, 1), 0s);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
  EXPECT_NE(big.error().detail.find(fmt::format("kernel.msgmax = {}", msgmax)), std::string::npos) << big.error().detail;
  EXPECT_NE(big.error().detail.find("sysctl"), std::string::npos) << big.error().detail;
  IPCX_ASSERT_OK(q->set_capacity_bytes(100));
  auto over = q->send(1, pattern(101, 1));  // forever: would wait for room that cannot appear
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, Errc::too_large);
  EXPECT_NE(over.error().detail.find("msg_qbytes = 100"), std::string::npos) << over.error().detail;
  auto attrs = q->attributes();
  ASSERT_TRUE(attrs);
  EXPECT_EQ(attrs->messages, 0u);
  EXPECT_EQ(attrs->bytes, 0u);
  // Exactly msgmax fits (with the capacity raised to hold it).
  IPCX_ASSERT_OK(q->set_capacity_bytes(msgmax));
  IPCX_ASSERT_OK(q->send(1, pattern(msgmax, 2), 0s));
  auto m = q->recv(1s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(test::mismatch(m->message.bytes(), pattern(msgmax, 2)), "");
}

TEST(SysvQueue, FullQueueWaitsUntilTheDeadline) {
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto q = sysv::Queue::create(key);
  ASSERT_TRUE(q) << why(q);
  // The capacity bounds the message count too: empty messages cannot fill it without bound.
  IPCX_ASSERT_OK(q->set_capacity_bytes(3));
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(q->send(1, {}, 0s));
  IPCX_EXPECT_ERRC(q->send(1, {}, 0s), Errc::would_block);
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(q->recv(0s));
  IPCX_ASSERT_OK(q->set_capacity_bytes(64));
  IPCX_ASSERT_OK(q->send(1, pattern(64, 1), 0s));
  IPCX_EXPECT_ERRC(q->send(1, pattern(1, 2), 0s), Errc::would_block);
  IPCX_EXPECT_ERRC(q->send(1, pattern(1, 2), 50ms), Errc::timeout);
  // Room appears while a sender waits: it gets in.
  std::thread reader([&] {
    std::this_thread::sleep_for(50ms);
    (void)q->recv(10s);
  });
  IPCX_EXPECT_OK(q->send(1, pattern(10, 3), 30s));
  reader.join();
  auto attrs = q->attributes();
  ASSERT_TRUE(attrs);
  EXPECT_EQ(attrs->messages, 1u);
  EXPECT_EQ(attrs->bytes, 10u);
}

TEST(SysvQueue, RecvTimeoutAndRemovalWakesABlockedReceiver) {
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto q = sysv::Queue::create(key);
  ASSERT_TRUE(q) << why(q);
  IPCX_EXPECT_ERRC(q->recv(0s), Errc::would_block);
  IPCX_EXPECT_ERRC(q->recv(30ms), Errc::timeout);
  Result<sysv::Received> got = fail(Errc::system, "none");
  std::thread blocked([&] { got = q->recv(forever, 3); });
  std::this_thread::sleep_for(50ms);
  IPCX_ASSERT_OK(sysv::Queue::remove(key));
  blocked.join();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::closed) << got.error().message();
}

TEST(SysvQueue, AnotherUserIsDenied) {
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  auto q = sysv::Queue::create(key);  // 0600, ours
  ASSERT_TRUE(q) << why(q);
  IPCX_ASSERT_OK(q->send(1, as_bytes("secret")));
  int rc = in_child([&] {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) return 10;
    auto o = sysv::Queue::open(key);
    if (o || o.error().code != Errc::permission_denied) return 11;
    if (o.error().detail.find("uid 65534") == std::string::npos) return 12;
    if (sysv::Queue::remove(key).error().code != Errc::permission_denied) return 13;
    auto c = ipcx::connect(key, {}, 1s);
    if (c || c.error().code != Errc::permission_denied) return 14;
    return 0;
  });
  EXPECT_EQ(rc, 0);
  auto attrs = q->attributes();
  ASSERT_TRUE(attrs);
  EXPECT_EQ(attrs->messages, 1u);
}

TEST(SysvQueue, CapacityAboveMsgmnbNeedsRoot) {
  test::Watchdog wd(60s);
  auto key = test_key();
  QueueGuard g{key};
  const auto mnb = proc_limit("msgmnb");
  int rc = in_child([&] {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) return 10;
    auto q = sysv::Queue::create(key);
    if (!q) return 11;
    if (!q->set_capacity_bytes(mnb / 2)) return 12;  // lowering is fine
    auto up = q->set_capacity_bytes(mnb + 1);
    if (up || up.error().code != Errc::permission_denied) return 13;
    if (up.error().detail.find(fmt::format("kernel.msgmnb = {}", mnb)) == std::string::npos) return 14;
    return 0;
  });
  EXPECT_EQ(rc, 0);
  auto q = sysv::Queue::open(key);  // root: may raise it only with CAP_SYS_RESOURCE
  ASSERT_TRUE(q) << why(q);
  if (has_sys_resource()) {
    IPCX_EXPECT_OK(q->set_capacity_bytes(mnb * 2));
  } else {
    IPCX_EXPECT_ERRC(q->set_capacity_bytes(mnb * 2), Errc::permission_denied);
  }
  IPCX_EXPECT_ERRC(q->set_capacity_bytes(0), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(q->set_capacity_bytes(std::size_t{1} << 40), Errc::invalid_argument);
}

}  // namespace
}  // namespace ipcx
