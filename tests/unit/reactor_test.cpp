// The epoll reactor: descriptor readiness (always-ready files, paused interest), timers without
// descriptors, posted functions, signals, stop() and remove() rules.
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

// Every descriptor of this process, whatever the limit (listing /proc opens one more for a
// moment; it is counted in neither `before` nor `after` of a comparison).
std::vector<int> open_fds() {
  std::vector<int> fds;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = std::stoi(e.path().filename().string());
    if (::fcntl(fd, F_GETFD) != -1) fds.push_back(fd);
  }
  std::sort(fds.begin(), fds.end());
  return fds;
}

// Lowers the soft RLIMIT_NOFILE to a few descriptors above the highest open one; restores it.
class FewDescriptors {
 public:
  explicit FewDescriptors(int spare) {
    ::getrlimit(RLIMIT_NOFILE, &old_);
    auto fds = open_fds();
    rlimit lower = old_;
    lower.rlim_cur = static_cast<rlim_t>((fds.empty() ? 0 : fds.back() + 1) + spare);
    ok_ = lower.rlim_cur <= old_.rlim_cur && ::setrlimit(RLIMIT_NOFILE, &lower) == 0;
  }
  ~FewDescriptors() { ::setrlimit(RLIMIT_NOFILE, &old_); }
  FewDescriptors(const FewDescriptors&) = delete;
  FewDescriptors& operator=(const FewDescriptors&) = delete;
  bool ok() const { return ok_; }

 private:
  rlimit old_{};
  bool ok_ = false;
};

TEST(Reactor, TimersUseNoDescriptors) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  const auto before = open_fds();
  int fired = 0;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(r.add_timer(1ms, Timeout::zero(), [&] { ++fired; }));
  ASSERT_TRUE(r.add_timer(1h, 1h, [] {}));
  EXPECT_EQ(open_fds(), before);
  run_until(r, [&] { return fired == 20; });
  EXPECT_EQ(open_fds(), before);
}

TEST(Reactor, TimersFireInDeadlineOrderAndNeverEarly) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  const std::vector<Timeout> delays = {30ms, 10ms, 20ms, Timeout::zero(), 5ms, 25ms};
  std::vector<std::size_t> order;
  std::vector<Timeout> elapsed(delays.size());
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < delays.size(); ++i) {
    auto id = r.add_timer(delays[i], Timeout::zero(), [&, i] {
      elapsed[i] = std::chrono::steady_clock::now() - start;
      order.push_back(i);
    });
    ASSERT_TRUE(id) << why(id);
  }
  run_until(r, [&] { return order.size() == delays.size(); });
  EXPECT_EQ(order, (std::vector<std::size_t>{3, 4, 1, 2, 5, 0}));
  for (std::size_t i = 0; i < delays.size(); ++i)
    EXPECT_GE(elapsed[i].count(), delays[i].count()) << "timer " << i << " fired early";
}

TEST(Reactor, TimersDueInTheSameRoundFireInDeadlineOrder) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  std::vector<int> order;
  // Added latest deadline first: the order must come from the deadlines, not the ids.
  for (int i = 4; i >= 0; --i)
    ASSERT_TRUE(r.add_timer(std::chrono::milliseconds(i + 1), Timeout::zero(), [&, i] { order.push_back(i); }));
  std::this_thread::sleep_for(30ms);  // all of them due before the round starts
  auto n = r.run_once(Timeout::zero());
  ASSERT_TRUE(n) << why(n);
  EXPECT_EQ(*n, 5);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(Reactor, RunOnceWaitsItsTimeoutWhenNoTimerIsDue) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  bool fired = false;
  ASSERT_TRUE(r.add_timer(1h, Timeout::zero(), [&] { fired = true; }));
  const auto start = std::chrono::steady_clock::now();
  auto n = r.run_once(30ms);
  ASSERT_TRUE(n) << why(n);
  EXPECT_EQ(*n, 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_FALSE(fired);
}

TEST(Reactor, OneShotTimerIsGoneOnceItFires) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int fired = 0;
  Reactor::Id id = 0;
  auto added = r.add_timer(1ms, Timeout::zero(), [&] {
    ++fired;
    // Already unregistered while its callback runs: nothing left to re-arm or remove.
    IPCX_EXPECT_ERRC(r.rearm_timer(id, 1ms), Errc::not_found);
    r.remove(id);
  });
  ASSERT_TRUE(added) << why(added);
  id = *added;
  run_until(r, [&] { return fired > 0; });
  IPCX_EXPECT_ERRC(r.rearm_timer(id, 1ms), Errc::not_found);
  r.remove(id);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(r.run_once(5ms));
  EXPECT_EQ(fired, 1);
}

TEST(Reactor, RearmTimerMovesTheDeadlineLater) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  bool fired = false;
  auto elapsed = Timeout::zero();
  auto start = std::chrono::steady_clock::now();
  auto id = r.add_timer(5ms, Timeout::zero(), [&] {
    fired = true;
    elapsed = std::chrono::steady_clock::now() - start;
  });
  ASSERT_TRUE(id) << why(id);
  // An idle deadline pushed back by activity, several times before it could fire.
  for (int i = 0; i < 3; ++i) {
    start = std::chrono::steady_clock::now();
    IPCX_ASSERT_OK(r.rearm_timer(*id, 60ms));
    ASSERT_TRUE(r.run_once(2ms));
    ASSERT_FALSE(fired) << "fired at its old deadline";
  }
  start = std::chrono::steady_clock::now();
  IPCX_ASSERT_OK(r.rearm_timer(*id, 60ms));
  run_until(r, [&] { return fired; });
  EXPECT_GE(elapsed, 60ms);
  IPCX_EXPECT_ERRC(r.rearm_timer(9999, 1ms), Errc::not_found);
}

TEST(Reactor, RearmTimerMovesTheDeadlineEarlier) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  bool fired = false;
  auto id = r.add_timer(1h, Timeout::zero(), [&] { fired = true; });
  ASSERT_TRUE(id) << why(id);
  const auto start = std::chrono::steady_clock::now();
  IPCX_ASSERT_OK(r.rearm_timer(*id, 20ms));
  // Bounded (not stalled): with its old deadline it would not fire for an hour.
  while (!fired && std::chrono::steady_clock::now() - start < 10s) ASSERT_TRUE(r.run_once(100ms));
  ASSERT_TRUE(fired);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
}

TEST(Reactor, TimerArmedForeverWaitsForRearm) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int fired = 0;
  auto id = r.add_timer(forever, Timeout::zero(), [&] { ++fired; });
  ASSERT_TRUE(id) << why(id);
  auto idle = r.run_once(20ms);  // returns: a timer that never comes does not shorten the wait either
  ASSERT_TRUE(idle) << why(idle);
  EXPECT_EQ(*idle, 0);
  IPCX_ASSERT_OK(r.rearm_timer(*id, 1ms));
  run_until(r, [&] { return fired > 0; });
  EXPECT_EQ(fired, 1);
}

TEST(Reactor, TimerRearmedForNowFromItsCallbackFiresOncePerRound) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int fired = 0;
  Reactor::Id id = 0;
  auto added = r.add_timer(Timeout::zero(), 1h, [&] {
    ++fired;
    IPCX_EXPECT_OK(r.rearm_timer(id, Timeout::zero()));
  });
  ASSERT_TRUE(added) << why(added);
  id = *added;
  run_until(r, [&] { return fired > 0; });
  EXPECT_EQ(fired, 1);
  for (int i = 2; i <= 4; ++i) {
    auto n = r.run_once(10s);
    ASSERT_TRUE(n) << why(n);
    EXPECT_EQ(*n, 1);
    EXPECT_EQ(fired, i);
  }
  r.remove(id);
}

TEST(Reactor, PeriodicTimerThatFellBehindFiresOnce) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  int fired = 0;
  ASSERT_TRUE(r.add_timer(1ms, 200ms, [&] { ++fired; }));
  std::this_thread::sleep_for(450ms);  // the deadlines at 1, 201 and 401 ms all passed
  const auto caught_up = std::chrono::steady_clock::now();
  auto n = r.run_once(Timeout::zero());
  ASSERT_TRUE(n) << why(n);
  EXPECT_EQ(fired, 1) << "a burst of missed periods";
  ASSERT_TRUE(r.run_once(Timeout::zero()));
  EXPECT_EQ(fired, 1);
  // The next period counts from the round that caught up, not from the missed deadlines.
  run_until(r, [&] { return fired == 2; });
  EXPECT_GE(std::chrono::steady_clock::now() - caught_up, 200ms);
}

TEST(Reactor, TenThousandTimersWithFewDescriptors) {
  test::Watchdog wd(60s);
  auto r = make_reactor();
  const auto before = open_fds();
  FewDescriptors limit(4);
  ASSERT_TRUE(limit.ok());
  constexpr int count = 10'000;
  int fired = 0, early = 0;
  for (int i = 0; i < count; ++i) {
    const Timeout delay = std::chrono::milliseconds(i % 50);
    const auto due = std::chrono::steady_clock::now() + delay;
    auto id = r.add_timer(delay, Timeout::zero(), [&, due] {
      ++fired;
      if (std::chrono::steady_clock::now() < due) ++early;
    });
    ASSERT_TRUE(id) << "timer " << i << ": " << why(id);
  }
  EXPECT_EQ(open_fds(), before);
  run_until(r, [&] { return fired == count; });
  EXPECT_EQ(fired, count);
  EXPECT_EQ(early, 0);
}

TEST(Reactor, TimerAndPostWhileOutOfDescriptors) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(null.valid());
  std::vector<Fd> filler;
  {
    FewDescriptors limit(16);
    ASSERT_TRUE(limit.ok());
    for (;;) {
      int fd = ::fcntl(null.get(), F_DUPFD_CLOEXEC, 0);
      if (fd < 0) {
        ASSERT_EQ(errno, EMFILE);
        break;
      }
      filler.emplace_back(fd);
    }
    ASSERT_FALSE(os::EventFd::create()) << "the descriptor table is not full";
    bool fired = false, posted = false;
    auto id = r.add_timer(5ms, Timeout::zero(), [&] { fired = true; });
    ASSERT_TRUE(id) << why(id);
    r.post([&] { posted = true; });
    run_until(r, [&] { return fired && posted; });
  }
  filler.clear();
}

TEST(Reactor, PostFromAnotherThreadWakesABlockedRun) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  const auto loop_thread = std::this_thread::get_id();
  std::atomic<bool> ran_on_loop{false};
  std::thread poster([&] {
    std::this_thread::sleep_for(50ms);  // most likely blocked in epoll_wait by now
    r.post([&] {
      ran_on_loop = std::this_thread::get_id() == loop_thread;
      r.stop();
    });
  });
  auto res = r.run();  // nothing registered: only the post can end it
  poster.join();
  IPCX_EXPECT_OK(res);
  EXPECT_TRUE(ran_on_loop.load());
}

TEST(Reactor, PostsFromManyThreadsRunInOrderPerThread) {
  test::Watchdog wd(60s);
  auto r = make_reactor();
  constexpr int threads = 4, per_thread = 2000;
  std::vector<std::vector<int>> seen(threads);  // touched by the loop thread only
  int total = 0;
  std::vector<std::thread> posters;
  for (int t = 0; t < threads; ++t)
    posters.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i)
        r.post([&, t, i] {
          seen[t].push_back(i);
          ++total;
        });
    });
  run_until(r, [&] { return total == threads * per_thread; });
  for (auto& p : posters) p.join();
  for (int t = 0; t < threads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<std::size_t>(per_thread));
    EXPECT_TRUE(std::is_sorted(seen[t].begin(), seen[t].end())) << "thread " << t;
  }
}

TEST(Reactor, PostsRunInFifoOrderAndLaterPostsInTheNextRound) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  std::vector<int> order;
  for (int i = 0; i < 100; ++i)
    r.post([&, i] {
      order.push_back(i);
      if (i == 50) r.post([&] { order.push_back(1000); });
    });
  auto first = r.run_once(10s);  // posts pending: does not wait
  ASSERT_TRUE(first) << why(first);
  EXPECT_EQ(*first, 100);
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
  auto second = r.run_once(10s);
  ASSERT_TRUE(second) << why(second);
  EXPECT_EQ(*second, 1);
  ASSERT_EQ(order.size(), 101u);
  EXPECT_EQ(order.back(), 1000);
}

TEST(Reactor, PostFromACallbackRunsAfterTheRoundsEvents) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  auto a = os::EventFd::create();
  auto b = os::EventFd::create();
  ASSERT_TRUE(a && b);
  std::vector<std::string> order;
  auto on = [&](os::EventFd* e, std::string name) {
    return [&r, &order, e, name](unsigned) {
      (void)e->drain();
      order.push_back(name);
      r.post([&order, name] { order.push_back("post " + name); });
    };
  };
  ASSERT_TRUE(r.add_fd(a->fd(), Reactor::readable, on(&*a, "a")));
  ASSERT_TRUE(r.add_fd(b->fd(), Reactor::readable, on(&*b, "b")));
  IPCX_ASSERT_OK(a->signal());
  IPCX_ASSERT_OK(b->signal());
  auto n = r.run_once(10s);
  ASSERT_TRUE(n) << why(n);
  EXPECT_EQ(*n, 4);
  ASSERT_EQ(order.size(), 4u);
  // The epoll batch comes in any order; the posts come after both, in the order posted.
  EXPECT_EQ(order[2], "post " + order[0]);
  EXPECT_EQ(order[3], "post " + order[1]);
}

TEST(Reactor, SelfRepostingPostDoesNotStarveDescriptors) {
  test::Watchdog wd(30s);
  auto r = make_reactor();
  auto e = os::EventFd::create();
  ASSERT_TRUE(e) << why(e);
  bool seen = false;
  int rounds = 0;
  long spins = 0;
  std::function<void()> again = [&] {
    // The descriptor becomes ready while posts are running; the cap only keeps a starving
    // loop from spinning until the watchdog fires.
    if (++spins == 3) (void)e->signal();
    if (!seen && spins < 1'000'000) r.post(again);
  };
  r.post(again);
  auto id = r.add_fd(e->fd(), Reactor::readable, [&](unsigned) {
    (void)e->drain();
    seen = true;
  });
  ASSERT_TRUE(id) << why(id);
  for (; rounds < 10 && !seen; ++rounds) ASSERT_TRUE(r.run_once(10s));
  EXPECT_TRUE(seen) << "starved after " << spins << " posts in " << rounds << " rounds";
  EXPECT_LE(spins, 5) << "posts made by posts ran in the same round";
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(r.run_once(Timeout::zero()));  // let the chain end
  const long ended = spins;
  ASSERT_TRUE(r.run_once(Timeout::zero()));
  EXPECT_EQ(spins, ended);
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
