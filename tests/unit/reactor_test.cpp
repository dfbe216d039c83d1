// The epoll reactor: descriptor readiness (always-ready files, paused interest), signals,
// stop() and remove() rules.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/reactor.hpp>

#include "os/eventfd.hpp"
#include "test_util.hpp"
#include "unit/reactor_support.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using test::make_reactor;
using test::run_until;
using test::why;

TEST(Reactor, FdReadiness) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  auto e = os::EventFd::create();
  ASSERT_TRUE(e) << why(e);
  int calls = 0;
  unsigned seen = 0;
  auto id = r.add_fd(e->fd(), Reactor::readable, [&](unsigned ev) {
    ++calls;
    seen = ev;
    (void)e->drain();
  });
  ASSERT_TRUE(id) << why(id);
  auto idle = r.run_once(Timeout::zero());
  ASSERT_TRUE(idle) << why(idle);
  EXPECT_EQ(*idle, 0);
  EXPECT_EQ(calls, 0);
  IPCX_ASSERT_OK(e->signal());
  run_until(r, [&] { return calls > 0; });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(seen & Reactor::readable);
  // Drained: level-triggered readiness is gone.
  auto again = r.run_once(Timeout::zero());
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 0);
  EXPECT_EQ(calls, 1);
  r.remove(*id);
  IPCX_ASSERT_OK(e->signal());
  auto removed = r.run_once(20ms);
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, 0);
  EXPECT_EQ(calls, 1) << "a removed fd still dispatched";
}

TEST(Reactor, WritableAndModify) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  Fd rd(p[0]), wr(p[1]);
  unsigned seen = 0;
  int calls = 0;
  auto id = r.add_fd(wr.get(), Reactor::writable, [&](unsigned ev) {
    seen = ev;
    ++calls;
  });
  ASSERT_TRUE(id) << why(id);
  run_until(r, [&] { return calls > 0; });
  EXPECT_TRUE(seen & Reactor::writable);
  // No longer interested in writability: nothing more.
  IPCX_ASSERT_OK(r.modify_fd(*id, 0));
  calls = 0;
  auto n = r.run_once(20ms);
  ASSERT_TRUE(n);
  EXPECT_EQ(calls, 0);
  IPCX_EXPECT_ERRC(r.modify_fd(9999, Reactor::readable), Errc::not_found);
  IPCX_EXPECT_ERRC(r.add_fd(-1, Reactor::readable, [](unsigned) {}), Errc::invalid_argument);
  r.remove(*id);
  r.remove(*id);     // twice is harmless
  r.remove(123456);  // unknown too
}

TEST(Reactor, HangupIsReported) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  Fd rd(p[0]), wr(p[1]);
  unsigned seen = 0;
  Reactor::Id id = 0;
  auto added = r.add_fd(rd.get(), Reactor::readable, [&](unsigned ev) {
    seen = ev;
    r.remove(id);  // level-triggered hangup would repeat forever
  });
  ASSERT_TRUE(added) << why(added);
  id = *added;
  wr.reset();
  run_until(r, [&] { return seen != 0; });
  EXPECT_TRUE(seen & Reactor::hangup) << seen;
}

TEST(Reactor, ModifyToZeroPausesReadableCallbacks) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  auto e = os::EventFd::create();
  ASSERT_TRUE(e) << why(e);
  int calls = 0;
  auto id = r.add_fd(e->fd(), Reactor::readable, [&](unsigned) { ++calls; });  // never drained
  ASSERT_TRUE(id) << why(id);
  IPCX_ASSERT_OK(e->signal());
  run_until(r, [&] { return calls > 0; });
  IPCX_ASSERT_OK(r.modify_fd(*id, 0));
  const int paused_at = calls;
  for (int i = 0; i < 3; ++i) {
    auto n = r.run_once(10ms);
    ASSERT_TRUE(n) << why(n);
    EXPECT_EQ(*n, 0);
  }
  EXPECT_EQ(calls, paused_at) << "readable reported with no interest";
  // Level-triggered: resuming reports what is still there.
  IPCX_ASSERT_OK(r.modify_fd(*id, Reactor::readable));
  run_until(r, [&] { return calls > paused_at; });
  r.remove(*id);
}

TEST(Reactor, PauseTakesEffectWithinTheSameRound) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  auto a = os::EventFd::create();
  auto b = os::EventFd::create();
  ASSERT_TRUE(a && b);
  int calls = 0;
  Reactor::Id ida = 0, idb = 0;
  auto ra = r.add_fd(a->fd(), Reactor::readable, [&](unsigned) {
    ++calls;
    (void)a->drain();
    IPCX_EXPECT_OK(r.modify_fd(idb, 0));
  });
  auto rb = r.add_fd(b->fd(), Reactor::readable, [&](unsigned) {
    ++calls;
    (void)b->drain();
    IPCX_EXPECT_OK(r.modify_fd(ida, 0));
  });
  ASSERT_TRUE(ra && rb);
  ida = *ra;
  idb = *rb;
  IPCX_ASSERT_OK(a->signal());
  IPCX_ASSERT_OK(b->signal());
  // Both are ready in one epoll_wait; whichever runs first pauses the other.
  run_until(r, [&] { return calls > 0; });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(r.run_once(5ms));
  EXPECT_EQ(calls, 1);
}

// A file under /tmp removed on scope exit.
struct TempFile {
  std::string path = "/tmp/" + test::unique_name("reactor-file");
  ~TempFile() { ::unlink(path.c_str()); }
};

TEST(Reactor, RegularFileIsAlwaysReadable) {
  test::Watchdog wd(30s);
  TempFile tmp;
  {
    Fd w(::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(w.valid()) << tmp.path;
    ASSERT_EQ(::write(w.get(), "data", 4), 4);
  }
  Fd f(::open(tmp.path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(f.valid());
  auto r = make_reactor();
  std::vector<unsigned> seen;
  auto id = r.add_fd(f.get(), Reactor::readable, [&](unsigned ev) { seen.push_back(ev); });
  ASSERT_TRUE(id) << "epoll refuses regular files; the reactor must not: " << why(id);
  for (int i = 1; i <= 3; ++i) {
    auto n = r.run_once(10s);  // must not wait: the file is ready
    ASSERT_TRUE(n) << why(n);
    EXPECT_EQ(*n, 1);
    ASSERT_EQ(seen.size(), static_cast<std::size_t>(i));
    EXPECT_EQ(seen.back(), Reactor::readable);
  }
  r.remove(*id);
  auto n = r.run_once(10ms);
  ASSERT_TRUE(n) << why(n);
  EXPECT_EQ(*n, 0);
  EXPECT_EQ(seen.size(), 3u);
  IPCX_EXPECT_ERRC(r.modify_fd(*id, Reactor::readable), Errc::not_found);
}

TEST(Reactor, DevNullIsAlwaysReadyForWhatWasAsked) {
  test::Watchdog wd(30s);
  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(null.valid());
  auto r = make_reactor();
  std::vector<unsigned> seen;
  Reactor::Id id = 0;
  auto added = r.add_fd(null.get(), Reactor::readable | Reactor::writable, [&](unsigned ev) { seen.push_back(ev); });
  ASSERT_TRUE(added) << why(added);
  id = *added;
  ASSERT_TRUE(r.run_once(10s));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen.back(), Reactor::readable | Reactor::writable);
  IPCX_ASSERT_OK(r.modify_fd(id, Reactor::writable));
  ASSERT_TRUE(r.run_once(10s));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen.back(), Reactor::writable);
  // Paused: no callbacks, and the loop sleeps its timeout instead of spinning.
  IPCX_ASSERT_OK(r.modify_fd(id, 0));
  const auto start = std::chrono::steady_clock::now();
  auto n = r.run_once(30ms);
  ASSERT_TRUE(n) << why(n);
  EXPECT_EQ(*n, 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_EQ(seen.size(), 2u);
  r.remove(id);
  IPCX_EXPECT_ERRC(r.modify_fd(id, Reactor::readable), Errc::not_found);
}

TEST(Reactor, AlwaysReadyEntriesRemovedFromCallbacks) {
  test::Watchdog wd(30s);
  Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  Fd other(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  Fd victim_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(null.valid() && other.valid() && victim_fd.valid());
  auto r = make_reactor();
  int self_calls = 0, killer_calls = 0, victim_calls = 0;
  Reactor::Id self = 0, victim = 0;
  auto a = r.add_fd(null.get(), Reactor::readable, [&](unsigned) {
    ++self_calls;
    r.remove(self);  // destroys this callback while it runs
  });
  // Registered before its victim: both are reported in the same round, the killer first.
  auto b = r.add_fd(other.get(), Reactor::readable, [&](unsigned) {
    ++killer_calls;
    r.remove(victim);
  });
  auto c = r.add_fd(victim_fd.get(), Reactor::readable, [&](unsigned) { ++victim_calls; });
  ASSERT_TRUE(a && b && c);
  self = *a;
  victim = *c;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(r.run_once(10s));
  EXPECT_EQ(self_calls, 1);
  EXPECT_EQ(killer_calls, 3);
  EXPECT_EQ(victim_calls, 0);
  r.remove(*b);
  auto n = r.run_once(10ms);
  ASSERT_TRUE(n) << why(n);
  EXPECT_EQ(*n, 0);
}

TEST(Reactor, PeriodicTimerAndStopFromCallback) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int fired = 0;
  auto id = r.add_timer(1ms, 1ms, [&] {
    if (++fired == 5) r.stop();
  });
  ASSERT_TRUE(id) << why(id);
  IPCX_ASSERT_OK(r.run());
  EXPECT_EQ(fired, 5);
  // run() can be called again after a stop.
  auto id2 = r.add_timer(1ms, Timeout::zero(), [&] { r.stop(); });
  ASSERT_TRUE(id2);
  r.remove(*id);
  IPCX_ASSERT_OK(r.run());
  EXPECT_EQ(fired, 5);
}

TEST(Reactor, RemoveFromItsOwnCallback) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int fired = 0;
  Reactor::Id id = 0;
  auto added = r.add_timer(1ms, 1ms, [&] {
    if (++fired == 3) r.remove(id);  // destroys the timer while its callback runs
  });
  ASSERT_TRUE(added) << why(added);
  id = *added;
  run_until(r, [&] { return fired >= 3; });
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(r.run_once(5ms));
  EXPECT_EQ(fired, 3);
}

TEST(Reactor, RemoveAnotherEntryOfTheSameBatch) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  auto a = os::EventFd::create();
  auto b = os::EventFd::create();
  ASSERT_TRUE(a && b);
  int calls = 0;
  Reactor::Id ida = 0, idb = 0;
  auto ra = r.add_fd(a->fd(), Reactor::readable, [&](unsigned) {
    ++calls;
    r.remove(idb);
    r.remove(ida);
  });
  auto rb = r.add_fd(b->fd(), Reactor::readable, [&](unsigned) {
    ++calls;
    r.remove(ida);
    r.remove(idb);
  });
  ASSERT_TRUE(ra && rb);
  ida = *ra;
  idb = *rb;
  IPCX_ASSERT_OK(a->signal());
  IPCX_ASSERT_OK(b->signal());
  // Both are ready in one epoll_wait; whichever runs first removes the other.
  run_until(r, [&] { return calls > 0; });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(r.run_once(5ms));
  EXPECT_EQ(calls, 1);
}

TEST(Reactor, AddFromCallback) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  bool inner = false;
  ASSERT_TRUE(r.add_timer(1ms, Timeout::zero(), [&] {
    (void)r.add_timer(1ms, Timeout::zero(), [&] { inner = true; });
  }));
  run_until(r, [&] { return inner; });
  EXPECT_TRUE(inner);
}

TEST(Reactor, StopFromAnotherThread) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  std::atomic<bool> running{false};
  ASSERT_TRUE(r.add_timer(1ms, Timeout::zero(), [&] { running = true; }));
  std::thread stopper([&] {
    while (!running.load()) std::this_thread::sleep_for(1ms);
    r.stop();
  });
  auto res = r.run();  // returns only because of stop()
  stopper.join();
  EXPECT_TRUE(res) << why(res);
  EXPECT_TRUE(running.load());
}

TEST(Reactor, StopBeforeRunReturnsAtOnce) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  r.stop();
  IPCX_EXPECT_OK(r.run());
}

TEST(Reactor, MoveKeepsRegistrations) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int fired = 0;
  ASSERT_TRUE(r.add_timer(1ms, Timeout::zero(), [&] { ++fired; }));
  Reactor moved(std::move(r));
  run_until(moved, [&] { return fired > 0; });
  EXPECT_EQ(fired, 1);
}

TEST(Reactor, SignalsThroughSignalfd) {
  // Block SIGUSR1 before any thread exists (the watchdog below inherits the mask): a
  // process-directed signal goes to any thread that does not block it.
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr1, &old), 0);
  {
    test::Watchdog wd(30s);
    auto r = make_reactor();
    std::vector<SignalInfo> got;
    auto id = r.add_signal(SIGUSR1, [&](const SignalInfo& si) { got.push_back(si); });
    ASSERT_TRUE(id) << why(id);
    ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
    run_until(r, [&] { return got.size() >= 1; });
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].signo, SIGUSR1);
    EXPECT_EQ(got[0].sender_pid, ::getpid());
    EXPECT_EQ(got[0].sender_uid, ::getuid());
    EXPECT_EQ(got[0].value, 0);
    sigval v{};
    v.sival_int = 42;
    ASSERT_EQ(::sigqueue(::getpid(), SIGUSR1, v), 0);
    run_until(r, [&] { return got.size() >= 2; });
    EXPECT_EQ(got[1].value, 42);
    r.remove(*id);
  }
  sigset_t pending;
  ::sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGUSR1)) << "a SIGUSR1 was left pending";
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, &old, nullptr), 0);
}

TEST(Reactor, StopIsAsyncSignalSafe) {
  // stop() from a real signal handler (the documented use for SIGINT/SIGTERM).
  static Reactor* target = nullptr;
  test::Watchdog wd(30s);
  auto r = make_reactor();
  target = &r;
  struct sigaction sa {}, old {};
  sa.sa_handler = [](int) { target->stop(); };
  ASSERT_EQ(::sigaction(SIGUSR2, &sa, &old), 0);
  // Whichever thread takes the signal (this one or the watchdog's), the handler stops the
  // reactor: a handler interrupts epoll_wait, or stop() wakes it through its eventfd.
  ASSERT_TRUE(r.add_timer(1ms, Timeout::zero(), [] { ::kill(::getpid(), SIGUSR2); }));
  IPCX_EXPECT_OK(r.run());
  ::sigaction(SIGUSR2, &old, nullptr);
  target = nullptr;
}

}  // namespace
}  // namespace ipcx
