// RwLock across processes: readers that keep the lock busy all the time cannot starve a
// writer; a dead reader is forgotten; a dead writer is reported until a writer repairs.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sync/shared_region.hpp"
#include "sync/sync_shared.hpp"
#include "sync/sync_test_util.hpp"

namespace ipcx::test::sync {
namespace {

std::string counters(const Rw& s) {
  return fmt::format("reads={} writes={} violations={} errors={} max_readers={}", s.reads.load(), s.writes.load(),
                     s.violations.load(), s.errors.load(), s.max_readers_inside.load());
}

TEST(RwLockProcesses, BusyReadersDoNotStarveAWriter) {
  constexpr unsigned kReaders = 3;
  const std::uint64_t writes = 20;
  const auto name = unique_name("rw");
  LastResort wd(name, 100s);
  auto region = SharedRegion<Rw>::create(name);
  ASSERT_TRUE(region) << why(region);
  Rw& s = **region;
  std::vector<Process> readers;
  for (unsigned i = 0; i < kReaders; ++i) {
    auto p = spawn("rw-reader", name, 2000);  // each read holds the lock for 2 ms
    ASSERT_TRUE(p) << why(p);
    readers.push_back(std::move(*p));
  }
  // Readers overlap: the lock is never free for long, and often held by several at once.
  ASSERT_TRUE(eventually([&] { return s.max_readers_inside.load() >= 2 && s.reads.load() > 20; }, 20s))
      << counters(s);
  auto writer = spawn("rw-writer", name, writes);
  ASSERT_TRUE(writer) << why(writer);
  // A starved writer would never finish: generous bound, a hang detector.
  auto code = writer->wait(30s);
  ASSERT_TRUE(code) << "the writer did not get the lock " << writes << " times within 30 s: " << counters(s);
  EXPECT_EQ(*code, 0) << counters(s);
  EXPECT_EQ(s.writes.load(), writes);
  const auto reads_during = s.reads.load();
  s.stop.store(1);
  for (auto& r : readers) {
    auto c = r.wait(30s);
    ASSERT_TRUE(c) << why(c);
    EXPECT_EQ(*c, 0);
  }
  EXPECT_GT(reads_during, 20u);
  EXPECT_EQ(s.violations.load(), 0u) << "a reader beside a writer, or a torn read: " << counters(s);
  EXPECT_EQ(s.errors.load(), 0u) << counters(s);
  EXPECT_EQ(s.x, writes);
  EXPECT_EQ(s.y, writes);
}

TEST(RwLockProcesses, KilledReaderDoesNotBlockWriters) {
  const auto name = unique_name("rwr");
  LastResort wd(name, 60s);
  auto region = SharedRegion<Rw>::create(name);
  ASSERT_TRUE(region) << why(region);
  Rw& s = **region;
  auto p = spawn("rw-hold-read", name);
  ASSERT_TRUE(p) << why(p);
  ASSERT_TRUE(eventually([&] { return s.holding.load() == 1; }, 10s));
  IPCX_EXPECT_ERRC(s.rw.lock(50ms), Errc::timeout);  // the live reader keeps writers out
  IPCX_ASSERT_OK(p->kill(SIGKILL));
  ASSERT_TRUE(p->wait(10s));
  {
    auto w = s.rw.lock(10s);
    ASSERT_TRUE(w) << why(w);
    EXPECT_FALSE(w->owner_died()) << "a dead reader changed nothing: nothing to repair";
  }
  auto r = s.rw.lock_shared(10s);
  ASSERT_TRUE(r) << why(r);
}

class RwLockWriterDeath : public ::testing::TestWithParam<bool> {};

TEST_P(RwLockWriterDeath, ReportedUntilRepaired) {
  const bool repair = GetParam();
  const auto name = unique_name("rww");
  LastResort wd(name, 60s);
  auto region = SharedRegion<Rw>::create(name);
  ASSERT_TRUE(region) << why(region);
  Rw& s = **region;
  auto p = spawn("rw-hold-write", name);
  ASSERT_TRUE(p) << why(p);
  ASSERT_TRUE(eventually([&] { return s.holding.load() == 1; }, 10s));
  IPCX_EXPECT_ERRC(s.rw.lock_shared(50ms), Errc::timeout);
  IPCX_ASSERT_OK(p->kill(SIGKILL));
  ASSERT_TRUE(p->wait(10s));
  EXPECT_NE(s.x, s.y);  // the writer died half-way

  // Readers are refused (the data may be torn), as often as they ask, until a writer repairs.
  IPCX_EXPECT_ERRC(s.rw.lock_shared(10s), Errc::owner_died);
  IPCX_EXPECT_ERRC(s.rw.lock_shared(10s), Errc::owner_died);
  {
    auto w = s.rw.lock(10s);
    ASSERT_TRUE(w) << why(w);
    EXPECT_TRUE(w->owner_died());
    if (repair) {
      s.y = s.x;
      w->mark_consistent();
      EXPECT_FALSE(w->owner_died());
    }
  }
  if (repair) {
    auto r = s.rw.lock_shared(10s);
    ASSERT_TRUE(r) << why(r);
    EXPECT_EQ(s.x, s.y);
    r->unlock();
    auto w = s.rw.lock(10s);
    ASSERT_TRUE(w) << why(w);
    EXPECT_FALSE(w->owner_died());
  } else {
    IPCX_EXPECT_ERRC(s.rw.lock_shared(10s), Errc::not_recoverable);
    IPCX_EXPECT_ERRC(s.rw.lock(10s), Errc::not_recoverable);
    // Also for another process.
    auto r = spawn("rw-hold-read", name);
    ASSERT_TRUE(r) << why(r);
    auto code = r->wait(30s);
    ASSERT_TRUE(code) << why(code);
    EXPECT_EQ(*code, 3) << "a reader in another process got the lock";
  }
}

INSTANTIATE_TEST_SUITE_P(Repair, RwLockWriterDeath, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "Repaired" : "NotRepaired"; });

}  // namespace
}  // namespace ipcx::test::sync
