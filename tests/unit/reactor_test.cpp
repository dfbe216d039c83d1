// The epoll reactor: descriptor readiness, timers, signals, stop() and remove() rules.
#include <atomic>
#include <csignal>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/reactor.hpp>

#include "os/eventfd.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using test::why;

Reactor make_reactor() {
  auto r = Reactor::create();
  if (!r) {
    ADD_FAILURE() << why(r);
    std::abort();
  }
  return std::move(*r);
}

// Runs the reactor until `done()` holds (each round bounded; the watchdog bounds the total).
template <class Pred>
void run_until(Reactor& r, Pred done) {
  while (!done()) {
    auto n = r.run_once(10s);
    ASSERT_TRUE(n) << why(n);
  }
}

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

TEST(Reactor, OneShotTimerFiresOnce) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int fired = 0;
  auto id = r.add_timer(5ms, Timeout::zero(), [&] { ++fired; });
  ASSERT_TRUE(id) << why(id);
  run_until(r, [&] { return fired > 0; });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(r.run_once(10ms));
  EXPECT_EQ(fired, 1);
  // A zero first delay still fires (a zero it_value would disarm a timerfd).
  int immediate = 0;
  ASSERT_TRUE(r.add_timer(Timeout::zero(), Timeout::zero(), [&] { ++immediate; }));
  run_until(r, [&] { return immediate > 0; });
  EXPECT_EQ(immediate, 1);
}

int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd)
    if (::fcntl(fd, F_GETFD) != -1) ++n;
  return n;
}

TEST(Reactor, FiredOneShotTimersGiveBackTheirDescriptors) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  const int before = open_fds();
  int fired = 0;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(r.add_timer(1ms, Timeout::zero(), [&] { ++fired; }));
  EXPECT_EQ(open_fds(), before + 20);
  run_until(r, [&] { return fired == 20; });
  EXPECT_EQ(open_fds(), before);
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
