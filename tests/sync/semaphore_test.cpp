// Semaphore across processes: every unit posted is taken exactly once, and a waiter killed in
// wait() leaves the semaphore usable.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sync/shared_region.hpp"
#include "sync/sync_shared.hpp"
#include "sync/sync_test_util.hpp"

namespace ipcx::test::sync {
namespace {

TEST(SemaphoreProcesses, ProducersAndConsumersCountExactly) {
  constexpr unsigned kProducers = 3, kConsumers = 2;
  const std::uint64_t total = 30'000 / kScale;  // divisible by both counts
  const auto name = unique_name("sem");
  LastResort wd(name, 100s);
  auto region = SharedRegion<Sem>::create(name, Spin::block());
  ASSERT_TRUE(region) << why(region);
  Sem& s = **region;
  std::vector<Process> procs;
  // Consumers first: most units meet a sleeper.
  IPCX_ASSERT_OK(spawn_into(procs, kConsumers, "sem-take", name, total / kConsumers));
  IPCX_ASSERT_OK(spawn_into(procs, kProducers, "sem-post", name, total / kProducers));
  // Consumers wait at most 20 s per unit, so a lost unit ends them with an error, not a hang.
  for (auto& p : procs) {
    auto code = p.wait(60s);
    ASSERT_TRUE(code) << why(code) << " (posted " << s.posted.load() << ", taken " << s.taken.load() << ")";
    EXPECT_EQ(*code, 0) << "posted " << s.posted.load() << ", taken " << s.taken.load();
  }
  EXPECT_EQ(s.posted.load(), total);
  EXPECT_EQ(s.taken.load(), total);
  EXPECT_EQ(s.sem.value(), 0u) << "units left over: some wait() returned without taking one";
  IPCX_EXPECT_ERRC(s.sem.try_wait(), Errc::would_block);
  IPCX_EXPECT_ERRC(s.sem.wait(50ms), Errc::timeout);
  EXPECT_EQ(s.errors.load(), 0u);
}

TEST(SemaphoreProcesses, KilledWaiterDoesNotBreakLaterUse) {
  const auto name = unique_name("semkill");
  LastResort wd(name, 60s);
  auto region = SharedRegion<Sem>::create(name, Spin::block());
  ASSERT_TRUE(region) << why(region);
  Sem& s = **region;
  {
    std::vector<Process> blocked;
    for (int i = 0; i < 2; ++i) {
      auto p = spawn("sem-block", name);
      ASSERT_TRUE(p) << why(p);
      blocked.push_back(std::move(*p));
    }
    ASSERT_TRUE(eventually([&] { return s.waiting.load() == 2; }, 10s));
    std::this_thread::sleep_for(20ms);  // let them reach the futex (not required for correctness)
    for (auto& p : blocked) {
      IPCX_ASSERT_OK(p.kill(SIGKILL));
      auto code = p.wait(10s);
      ASSERT_TRUE(code) << why(code);
      EXPECT_EQ(*code, 128 + SIGKILL);
    }
  }
  EXPECT_EQ(s.taken.load(), 0u);
  // Later posts and waits work as if the dead waiters had never been there.
  IPCX_ASSERT_OK(s.sem.post(3));
  EXPECT_EQ(s.sem.value(), 3u);
  auto p = spawn("sem-take", name, 3);
  ASSERT_TRUE(p) << why(p);
  auto code = p->wait(30s);
  ASSERT_TRUE(code) << why(code);
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(s.taken.load(), 3u);
  EXPECT_EQ(s.sem.value(), 0u);
  IPCX_EXPECT_ERRC(s.sem.wait(20ms), Errc::timeout);
  // A new waiter blocked in another process is woken by a post from this one.
  auto w = spawn("sem-take", name, 1);
  ASSERT_TRUE(w) << why(w);
  std::this_thread::sleep_for(20ms);
  IPCX_ASSERT_OK(s.sem.post());
  code = w->wait(30s);
  ASSERT_TRUE(code) << why(code);
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(s.sem.value(), 0u);
}

}  // namespace
}  // namespace ipcx::test::sync
