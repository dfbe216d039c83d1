// Events (ipcx/event.hpp) across real processes: `ipcx event listen|notify` as listeners and
// notifiers, SIGKILLed for real; 256 listeners; a process scribbling over the file.
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using ipcx::Errc;
using ipcx::test::Child;
using ipcx::test::run_cli;
using ipcx::test::Watchdog;
using ipcx::test::dev_shm;
namespace shm = ipcx::shm;

namespace {

std::string event_path(const std::string& name) { return fmt::format("/dev/shm/ipcx-{}-{}", ::geteuid(), name); }
bool exists(const std::string& name) { return std::filesystem::exists(event_path(name)); }

bool readable(int fd, int ms = 0) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

std::vector<unsigned> ids_in(const std::string& out) {
  std::vector<unsigned> v;
  std::istringstream in(out);
  unsigned id;
  while (in >> id) v.push_back(id);
  return v;
}

Child listener(const std::string& name, int count, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"event", "listen", name, "--count", std::to_string(count), "--timeout", "20000"};
  args.insert(args.end(), extra.begin(), extra.end());
  return Child::cli(std::move(args));
}

}  // namespace

TEST(Event, NotifyTakeMergeRangeAndPoll) {
  const auto name = ipcx::test::unique_name("event");
  auto l = shm::EventListener::open(name);
  ASSERT_TRUE(l) << l.error().message();
  auto n = shm::EventNotifier::open(name);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(n->listeners(), 1u);
  EXPECT_FALSE(readable(l->native_handle()));
  EXPECT_TRUE(l->take().empty());
  ASSERT_TRUE(n->notify(7));
  ASSERT_TRUE(n->notify(3));
  ASSERT_TRUE(n->notify(7));  // merges with the first 7: not taken yet
  ASSERT_TRUE(n->notify(shm::kMaxEventId));
  EXPECT_TRUE(readable(l->native_handle()));
  EXPECT_EQ(l->take(), (std::vector<std::uint32_t>{3, 7, shm::kMaxEventId}));
  EXPECT_FALSE(readable(l->native_handle()));
  EXPECT_TRUE(l->take().empty());
  auto bad = n->notify(shm::kMaxEventId + 1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  auto t = l->wait(30ms);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, Errc::timeout);
  std::thread later([&] {
    std::this_thread::sleep_for(30ms);
    (void)n->notify(11);
  });
  auto w = l->wait(10s);
  later.join();
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ(*w, std::vector<std::uint32_t>{11});

  EXPECT_EQ(shm::EventNotifier::open("").error().code, Errc::invalid_argument);
  EXPECT_EQ(shm::EventNotifier::open(name + "x", {.max_listeners = 0}).error().code, Errc::invalid_argument);
  // A state is not an event.
  auto st = shm::StateWriter::create(name + "-state", {.capacity = 8});
  ASSERT_TRUE(st);
  EXPECT_EQ(shm::EventListener::open(name + "-state").error().code, Errc::protocol);
}

// A listener's slot is held by a lock its process holds: a full event refuses another
// listener, and a killed listener's slot goes to the next one.
TEST(EventProcesses, SlotsAreHeldByLiveListenersAndReusedAfterAKill) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("event");
  auto a = listener(name, 1, {"--max-listeners", "2"});
  ASSERT_TRUE(a.wait_stderr("listening")) << a.err();
  auto b = listener(name, 1);
  ASSERT_TRUE(b.wait_stderr("listening")) << b.err();
  auto full = shm::EventListener::open(name);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::resource_exhausted) << full.error().message();
  a.signal(SIGKILL);
  (void)a.finish();
  auto c = shm::EventListener::open(name);
  ASSERT_TRUE(c) << c.error().message();
  auto n = shm::EventNotifier::open(name);
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->notify(9));
  EXPECT_EQ(b.finish(), 0) << b.err();
  EXPECT_EQ(b.out(), "9\n");
  auto got = c->wait(5s);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, std::vector<std::uint32_t>{9});
}

// Two notifier processes, four listener processes: every listener gets every id.
TEST(EventProcesses, ManyNotifiersManyListenersEveryIdArrives) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("event");
  std::vector<Child> listeners;
  for (int i = 0; i < 4; ++i) {
    listeners.push_back(listener(name, 200));
    ASSERT_TRUE(listeners.back().wait_stderr("listening")) << listeners.back().err();
  }
  std::vector<std::string> low = {"event", "notify", name}, high = low;
  for (int id = 0; id < 100; ++id) {
    low.push_back(std::to_string(id));
    high.push_back(std::to_string(1000 + id));
  }
  auto n1 = Child::cli(low);
  auto n2 = Child::cli(high);
  EXPECT_EQ(n1.finish(), 0) << n1.err();
  EXPECT_EQ(n2.finish(), 0) << n2.err();
  for (auto& l : listeners) {
    EXPECT_EQ(l.finish(), 0) << l.err();
    auto ids = ids_in(l.out());
    std::set<unsigned> distinct(ids.begin(), ids.end());
    EXPECT_EQ(ids.size(), 200u);
    EXPECT_EQ(distinct.size(), 200u);
    EXPECT_EQ(*distinct.begin(), 0u);
    EXPECT_EQ(*distinct.rbegin(), 1099u);
  }
  EXPECT_FALSE(exists(name)) << "the last one out removes it";
}

// 256 listeners (the default number of slots) and a notifier in another process.
TEST(EventProcesses, TwoHundredFiftySixListeners) {
  Watchdog wd(60s);
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 1024) GTEST_SKIP() << "needs 2 descriptors per listener";
  const auto name = ipcx::test::unique_name("event");
  std::vector<shm::EventListener> ls;
  for (int i = 0; i < 256; ++i) {
    auto l = shm::EventListener::open(name);
    ASSERT_TRUE(l) << i << ": " << l.error().message();
    ls.push_back(std::move(*l));
  }
  auto extra = shm::EventListener::open(name);
  ASSERT_FALSE(extra);
  EXPECT_EQ(extra.error().code, Errc::resource_exhausted);
  auto n = run_cli({"event", "notify", name, "42", "4000"});
  ASSERT_EQ(n.code, 0) << n.err;
  for (std::size_t i = 0; i < ls.size(); ++i) {
    auto& l = ls[i];
    auto got = l.wait(5s);
    ASSERT_TRUE(got) << "listener " << i << ": " << got.error().message();
    EXPECT_EQ(*got, (std::vector<std::uint32_t>{42, 4000}));
  }
}

// Random values written over the whole file at a high rate: listeners and notifiers go on
// without crashing or hanging; every id a listener reports is in range.
TEST(EventProcesses, AHostileWriterCannotCrashOrHangListenersOrNotifiers) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("event");
  auto l = shm::EventListener::open(name, {.max_listeners = 8});
  ASSERT_TRUE(l);
  auto n = shm::EventNotifier::open(name);
  ASSERT_TRUE(n);
  auto h = Child::start({IPCX_STATE_PEER, "hostile", name, "1000", "11"});
  ASSERT_TRUE(h.wait_stdout("ready")) << h.err();
  std::size_t ids = 0;
  const auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_TRUE(n->notify(5));
    (void)n->listeners();
    auto got = l->wait(2ms);
    if (!got) {
      EXPECT_EQ(got.error().code, Errc::timeout);
      continue;
    }
    for (auto id : *got) EXPECT_LE(id, shm::kMaxEventId);
    ids += got->size();
  }
  EXPECT_EQ(h.finish(), 0) << h.err();
  std::printf("under attack: %zu ids taken\n", ids);
}

// Everything closed: /dev/shm is as it was. Everything killed: `ipcx shm gc` cleans up, and
// leaves an event someone holds.
TEST(EventProcesses, NothingIsLeftAfterCloseAndGcCleansUpAfterKills) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("event");
  const auto before = dev_shm(name);
  {
    auto l = listener(name, 1);
    ASSERT_TRUE(l.wait_stderr("listening")) << l.err();
    EXPECT_EQ(run_cli({"event", "notify", name, "1"}).code, 0);
    EXPECT_EQ(l.finish(), 0);
  }
  EXPECT_EQ(dev_shm(name), before);
  auto a = listener(name, 0);
  auto b = listener(name, 0);
  ASSERT_TRUE(a.wait_stderr("listening") && b.wait_stderr("listening"));
  auto ls = run_cli({"shm", "ls"});
  EXPECT_NE(ls.out.find("2 listeners"), std::string::npos) << ls.out;
  auto gc = run_cli({"shm", "gc"});
  EXPECT_TRUE(exists(name)) << gc.out;
  a.signal(SIGKILL);
  b.signal(SIGKILL);
  (void)a.finish();
  (void)b.finish();
  EXPECT_TRUE(exists(name));
  gc = run_cli({"shm", "gc"});
  // Removed by this gc, or just before by another test's `ipcx shm gc` running beside it.
  EXPECT_TRUE(gc.out.find(event_path(name)) != std::string::npos || !exists(name)) << gc.out;
  EXPECT_EQ(dev_shm(name), before);
}
