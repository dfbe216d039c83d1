// The reactor's work without descriptors: timers (a heap in process memory, usable when the
// process is out of descriptors) and posted functions (FIFO, cross-thread, never starving I/O).
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

}  // namespace
}  // namespace ipcx
