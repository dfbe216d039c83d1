// CondVar and Monitor across processes: producers and consumers pass many thousands of items
// through a one-slot buffer. A lost wake-up leaves everyone asleep: the progress watchdog
// (no hand-off for 5 s) fails the test instead of hanging it.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sync/shared_region.hpp"
#include "sync/sync_shared.hpp"
#include "sync/sync_test_util.hpp"

namespace ipcx::test::sync {
namespace {

// Waits for every child, failing if the shared progress counter stalls for `stall`.
template <class State>
void await_handoffs(std::vector<Process>& procs, State& s, std::uint64_t total) {
  std::uint64_t last = s.progress.load();
  auto last_change = std::chrono::steady_clock::now();
  while (s.progress.load() < total) {
    ASSERT_EQ(s.errors.load(), 0u);
    std::this_thread::sleep_for(5ms);
    auto now = s.progress.load();
    if (now != last) {
      last = now;
      last_change = std::chrono::steady_clock::now();
    } else {
      ASSERT_LT(std::chrono::steady_clock::now() - last_change, 5s)
          << "no hand-off for 5 s at " << now << " of " << total << ": a lost wake-up (everyone asleep)";
    }
  }
  for (auto& p : procs) {
    auto code = p.wait(10s);
    ASSERT_TRUE(code) << why(code);
    EXPECT_EQ(*code, 0);
  }
}

class CondVarHandoff : public ::testing::TestWithParam<bool> {};

TEST_P(CondVarHandoff, NoLostWakeups) {
  const Spin spin = GetParam() ? Spin::block() : Spin{};  // block: every wait sleeps on the futex
  constexpr unsigned kProducers = 2, kConsumers = 2;
  const std::uint64_t per = 10'000 / kScale;  // items per producer
  const auto name = unique_name("cv");
  LastResort wd(name, 100s);
  auto region = SharedRegion<Handoff>::create(name, spin);
  ASSERT_TRUE(region) << why(region);
  std::vector<Process> procs;
  IPCX_ASSERT_OK(spawn_into(procs, kProducers, "cv-producer", name, per));
  IPCX_ASSERT_OK(spawn_into(procs, kConsumers, "cv-consumer", name, per * kProducers / kConsumers));
  const std::uint64_t total = per * kProducers;
  await_handoffs(procs, **region, total);
  if (HasFatalFailure()) return;
  auto& h = **region;
  EXPECT_EQ(h.taken, total);
  EXPECT_EQ(h.sum, kProducers * per * (per + 1) / 2) << "an item was lost or taken twice";
  EXPECT_FALSE(h.full);
  EXPECT_EQ(h.errors.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Spin, CondVarHandoff, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "Block" : "Default"; });

TEST(MonitorHandoff, NoLostWakeups) {
  constexpr unsigned kProducers = 2, kConsumers = 2;
  const std::uint64_t per = 5'000 / kScale;
  const auto name = unique_name("mon");
  LastResort wd(name, 100s);
  auto region = SharedRegion<MonitorHandoff>::create(name);
  ASSERT_TRUE(region) << why(region);
  std::vector<Process> procs;
  IPCX_ASSERT_OK(spawn_into(procs, kProducers, "mon-producer", name, per));
  IPCX_ASSERT_OK(spawn_into(procs, kConsumers, "mon-consumer", name, per * kProducers / kConsumers));
  const std::uint64_t total = per * kProducers;
  await_handoffs(procs, **region, total);
  if (HasFatalFailure()) return;
  auto s = (*region)->mon.with([](Slot& v) { return v; });
  ASSERT_TRUE(s) << why(s);
  EXPECT_EQ(s->taken, total);
  EXPECT_EQ(s->sum, kProducers * per * (per + 1) / 2);
}

}  // namespace
}  // namespace ipcx::test::sync
