// Barrier and Monitor across processes, with members and holders SIGKILLed.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sync/shared_region.hpp"
#include "sync/sync_shared.hpp"
#include "sync/sync_test_util.hpp"

namespace ipcx::test::sync {
namespace {

TEST(BarrierProcesses, KilledMemberBreaksItAndResetMendsIt) {
  constexpr std::uint64_t kPhases = 200;
  const auto name = unique_name("bar");
  LastResort wd(name, 100s);
  auto region = SharedRegion<Bar>::create(name, 3u);
  ASSERT_TRUE(region) << why(region);
  Bar& s = **region;

  auto hanger = spawn("barrier-hang", name);  // joins, never arrives
  ASSERT_TRUE(hanger) << why(hanger);
  ASSERT_TRUE(eventually([&] { return s.joined.load() == 1; }, 10s));
  std::vector<Process> members;
  for (int i = 0; i < 2; ++i) {
    auto p = spawn("barrier-member-first", name, kPhases);
    ASSERT_TRUE(p) << why(p);
    members.push_back(std::move(*p));
  }
  ASSERT_TRUE(eventually([&] { return s.arriving.load() == 2; }, 10s));
  std::this_thread::sleep_for(30ms);  // most likely asleep in arrive_and_wait by now
  EXPECT_EQ(s.peer_died.load(), 0u) << "the barrier broke while every member lived";
  IPCX_ASSERT_OK(hanger->kill(SIGKILL));
  ASSERT_TRUE(hanger->wait(10s));
  // Both waiters learn of the death (within kDeathPoll; the bound only detects a hang).
  ASSERT_TRUE(eventually([&] { return s.peer_died.load() == 2; }, 10s))
      << "waiters still blocked after a member died: peer_died=" << s.peer_died.load()
      << " other_errors=" << s.other_errors.load();
  EXPECT_EQ(s.other_errors.load(), 0u);
  EXPECT_TRUE(s.b.broken());

  IPCX_ASSERT_OK(s.b.reset());
  EXPECT_FALSE(s.b.broken());
  auto replacement = spawn("barrier-member", name, kPhases);
  ASSERT_TRUE(replacement) << why(replacement);
  members.push_back(std::move(*replacement));
  ASSERT_TRUE(eventually([&] { return s.joined.load() == 4; }, 10s)) << "the replacement could not join";
  s.go.store(1);
  for (auto& m : members) {
    auto code = m.wait(60s);
    ASSERT_TRUE(code) << why(code) << " phases_done=" << s.phases_done.load();
    EXPECT_EQ(*code, 0) << "other_errors=" << s.other_errors.load();
  }
  EXPECT_EQ(s.finished.load(), 3u);
  EXPECT_EQ(s.phases_done.load(), 3 * kPhases);
  EXPECT_EQ(s.serial.load(), kPhases) << "exactly one member per phase is the last to arrive";
  EXPECT_EQ(s.other_errors.load(), 0u);
}

TEST(BarrierProcesses, ExtraMemberIsRefused) {
  const auto name = unique_name("bar2");
  LastResort wd(name, 60s);
  auto region = SharedRegion<Bar>::create(name, 1u);
  ASSERT_TRUE(region) << why(region);
  auto mine = (*region)->b.join();
  ASSERT_TRUE(mine) << why(mine);
  auto other = spawn("barrier-hang", name);
  ASSERT_TRUE(other) << why(other);
  auto code = other->wait(30s);
  ASSERT_TRUE(code) << why(code);
  EXPECT_EQ(*code, 3) << "a second member joined a one-party barrier";
}

// A worker SIGKILLed inside Monitor::with, holding the lock.
void kill_holder_inside_with(Mon& s, const std::string& name) {
  auto p = spawn("monitor-die", name);
  ASSERT_TRUE(p) << why(p);
  ASSERT_TRUE(eventually([&] { return s.inside.load() == 1; }, 10s));
  IPCX_ASSERT_OK(p->kill(SIGKILL));
  ASSERT_TRUE(p->wait(10s));
}

TEST(MonitorProcesses, HolderKilledInsideWithRunsRepair) {
  const auto name = unique_name("mon");
  LastResort wd(name, 60s);
  auto region = SharedRegion<Mon>::create(name);
  ASSERT_TRUE(region) << why(region);
  Mon& s = **region;
  ASSERT_NO_FATAL_FAILURE(kill_holder_inside_with(s, name));

  int repaired = 0, ran = 0;
  auto r = s.mon.with(
      [&](MonState& v) {
        ++ran;
        return v.a == v.b;
      },
      [&](MonState& v) {
        ++repaired;
        EXPECT_NE(v.a, v.b) << "repair sees the half-written value";
        v.b = v.a;
        return true;
      },
      10s);
  ASSERT_TRUE(r) << why(r);
  EXPECT_TRUE(*r);
  EXPECT_EQ(repaired, 1);
  EXPECT_EQ(ran, 1);
  // Repaired: later calls run normally, without repair.
  auto again = s.mon.with([](MonState& v) { return v.a; }, [&](MonState&) { return ++repaired, true; }, 10s);
  ASSERT_TRUE(again) << why(again);
  EXPECT_EQ(*again, 1u);
  EXPECT_EQ(repaired, 1);
}

TEST(MonitorProcesses, HolderKilledWithoutRepairLeavesItNotRecoverable) {
  const auto name = unique_name("mon2");
  LastResort wd(name, 60s);
  auto region = SharedRegion<Mon>::create(name);
  ASSERT_TRUE(region) << why(region);
  Mon& s = **region;
  ASSERT_NO_FATAL_FAILURE(kill_holder_inside_with(s, name));

  bool ran = false;
  IPCX_EXPECT_ERRC(s.mon.with([&](MonState&) { ran = true; }, 10s), Errc::owner_died);
  EXPECT_FALSE(ran) << "f ran on possibly torn data";
  bool repair_ran = false;
  IPCX_EXPECT_ERRC(s.mon.with([&](MonState&) { ran = true; },
                              [&](MonState&) { return repair_ran = true; }, 10s),
                   Errc::not_recoverable);
  EXPECT_FALSE(ran);
  EXPECT_FALSE(repair_ran) << "too late to repair: nobody did when it was reported";
  IPCX_EXPECT_ERRC(s.mon.lock(10s), Errc::not_recoverable);
  // Another process sees the same.
  auto q = spawn("monitor-die", name);
  ASSERT_TRUE(q) << why(q);
  auto code = q->wait(30s);
  ASSERT_TRUE(code) << why(code);
  EXPECT_EQ(*code, 3);
}

}  // namespace
}  // namespace ipcx::test::sync
