// Shared state (ipcx/state.hpp) across real processes: ipcx-state-peer writes, reads, holds,
// and scribbles over the file; writers are SIGKILLed and SIGSTOPped for real.
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
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
using ipcx::test::Watchdog;
using ipcx::test::dev_shm;
using ipcx::test::text;
namespace shm = ipcx::shm;

namespace {

Child peer(std::vector<std::string> args) {
  args.insert(args.begin(), IPCX_STATE_PEER);
  return Child::start(std::move(args));
}

std::string state_path(const std::string& name) { return fmt::format("/dev/shm/ipcx-{}-{}", ::geteuid(), name); }
bool exists(const std::string& name) { return std::filesystem::exists(state_path(name)); }

std::vector<std::byte> bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), reinterpret_cast<const std::byte*>(s.data()) + s.size()};
}

struct Pose {
  double x, y, theta;
  std::uint64_t stamp;
};

}  // namespace

TEST(State, StoreLoadVersionsAndErrors) {
  const auto name = ipcx::test::unique_name("state");
  auto w = shm::StateWriter::create(name, {.capacity = 64});
  ASSERT_TRUE(w) << w.error().message();
  auto r = shm::StateReader::open(name);
  ASSERT_TRUE(r) << r.error().message();
  std::vector<std::byte> out;
  auto none = r->load(out);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::not_found);
  EXPECT_EQ(r->version(), 0u);
  ASSERT_TRUE(w->store(bytes("first")));
  ASSERT_TRUE(w->store(bytes("second value")));
  auto v = r->load(out);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, 2u);
  EXPECT_EQ(text(out), "second value");
  ASSERT_TRUE(w->store({}));  // an empty value is a value
  ASSERT_TRUE(r->load(out));
  EXPECT_TRUE(out.empty());
  auto big = w->store(std::vector<std::byte>(65));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
  EXPECT_EQ(w->version(), 3u);
  EXPECT_TRUE(r->writer_alive());

  auto second = shm::StateWriter::create(name, {.capacity = 64});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::already_exists) << second.error().message();

  EXPECT_EQ(shm::StateWriter::create(name + "x", {.capacity = 0}).error().code, Errc::invalid_argument);
  EXPECT_EQ(shm::StateWriter::create("", {.capacity = 8}).error().code, Errc::invalid_argument);
  EXPECT_EQ(shm::StateWriter::create(name + "y", {.capacity = shm::kMaxStateCapacity + 1}).error().code,
            Errc::invalid_argument);
  EXPECT_EQ(shm::StateReader::open(name + "-none").error().code, Errc::not_found);
  w->close();
  EXPECT_FALSE(r->writer_alive());
  auto after = r->load(out);  // the value outlives its writer while someone holds the state
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, 3u);
}

TEST(State, TypedStateChecksTheType) {
  const auto name = ipcx::test::unique_name("state");
  auto w = shm::TypedStateWriter<Pose>::create(name);
  ASSERT_TRUE(w) << w.error().message();
  ASSERT_TRUE(w->store(Pose{1.5, -2.0, 0.25, 42}));
  auto r = shm::TypedStateReader<Pose>::open(name);
  ASSERT_TRUE(r) << r.error().message();
  auto p = r->load();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->x, 1.5);
  EXPECT_EQ(p->stamp, 42u);
  auto wrong = shm::TypedStateReader<std::uint64_t>::open(name);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::type_mismatch);
  // A segment is not a state, and a state's name cannot be taken by a writer of another shape
  // while its writer lives.
  auto seg_name = ipcx::test::unique_name("seg");
  auto seg = shm::Segment::create(seg_name, {.size = 1 << 16});
  ASSERT_TRUE(seg);
  auto not_state = shm::StateReader::open(seg_name);
  ASSERT_FALSE(not_state);
  EXPECT_EQ(not_state.error().code, Errc::protocol);
  auto taken = shm::StateWriter::create(seg_name, {.capacity = 8});
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code, Errc::already_exists);
  ASSERT_TRUE(shm::Segment::remove(seg_name));
}

TEST(State, WaitChangeWakesOnStoreAndTimesOut) {
  Watchdog wd(30s);
  const auto name = ipcx::test::unique_name("state");
  auto w = shm::StateWriter::create(name, {.capacity = 16});
  ASSERT_TRUE(w);
  auto r = shm::StateReader::open(name);
  ASSERT_TRUE(r);
  auto t = r->wait_change(0, 50ms);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, Errc::timeout);
  std::thread writer([&] {
    std::this_thread::sleep_for(50ms);
    (void)w->store(bytes("go"));
  });
  auto v = r->wait_change(0, 10s);
  writer.join();
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, 1u);
}

TEST(State, ReadersMapItReadOnly) {
  const auto name = ipcx::test::unique_name("state");
  auto w = shm::StateWriter::create(name, {.capacity = 16});
  ASSERT_TRUE(w);
  auto r = shm::StateReader::open(name);
  ASSERT_TRUE(r);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int ro = 0, rw = 0;
  while (std::getline(maps, line)) {
    if (line.find(state_path(name)) == std::string::npos) continue;
    const auto perms = line.substr(line.find(' ') + 1, 4);
    ro += perms == "r--s";
    rw += perms == "rw-s";
  }
  EXPECT_EQ(ro, 1) << "the reader's mapping";
  EXPECT_EQ(rw, 1) << "the writer's mapping";
}

// Readers in other processes, a writer storing back to back as fast as it can: every value
// loaded is whole (sequence number and checksum), versions only go forward.
TEST(StateProcesses, ReadersNeverSeeATornValue) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("state");
  for (const char* cap : {"64", "65536"}) {
    SCOPED_TRACE(cap);
    auto w = peer({"write", name, cap});
    ASSERT_TRUE(w.wait_stdout("ready")) << w.err();
    auto r1 = peer({"read", name, "700"});
    auto r2 = peer({"read", name, "700"});
    EXPECT_EQ(r1.finish(), 0) << r1.out() << r1.err();
    EXPECT_EQ(r2.finish(), 0) << r2.out() << r2.err();
    EXPECT_EQ(r1.out().rfind("ok ", 0), 0u) << r1.out();
    std::printf("reader: %s", r1.out().c_str());  // ok LOADS VERSIONS
    w.signal(SIGKILL);
    w.finish();
    // Every user gone (one of them by SIGKILL): the name stays until gc.
    EXPECT_TRUE(exists(name));
    auto gc = ipcx::test::run_cli({"shm", "gc"});
    EXPECT_EQ(gc.code, 0) << gc.err;
    EXPECT_FALSE(exists(name)) << gc.out;
  }
}

// The writer's death is the kernel's news: its lock goes with its process. A stopped writer is
// alive; a killed one is noticed by a waiting reader within one 20 ms slice.
TEST(StateProcesses, AKilledWriterIsNoticedAStoppedOneIsNot) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("state");
  auto w = peer({"write", name, "64", "100"});
  ASSERT_TRUE(w.wait_stdout("done")) << w.err();
  // `write ... 100` exits after 100 values: a writer that ended is not alive.
  EXPECT_EQ(w.finish(), 0);
  EXPECT_FALSE(exists(name)) << "its only user left: removed";

  auto w2 = peer({"write", name, "64"});
  ASSERT_TRUE(w2.wait_stdout("ready")) << w2.err();
  auto r = shm::StateReader::open(name, 5s);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->writer_alive());
  w2.signal(SIGSTOP);
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(r->writer_alive()) << "a stopped writer is not dead";
  }
  const auto seen = r->version();
  auto quiet = r->wait_change(seen, 200ms);
  ASSERT_FALSE(quiet);
  EXPECT_EQ(quiet.error().code, Errc::timeout) << "stopped, not gone";
  std::atomic<std::int64_t> noticed_us{-1};
  std::thread waiter([&] {
    auto v = r->wait_change(seen, 10s);
    if (!v && v.error().code == Errc::closed) noticed_us = 0;
  });
  std::this_thread::sleep_for(50ms);
  const auto killed = std::chrono::steady_clock::now();
  w2.signal(SIGKILL);
  waiter.join();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - killed).count();
  EXPECT_EQ(noticed_us.load(), 0) << "wait_change ends with closed when the writer dies";
  std::printf("writer death noticed %lld us after SIGKILL\n", static_cast<long long>(us));
  EXPECT_FALSE(r->writer_alive());
  (void)w2.finish();
}

// A new writer takes over a dead writer's state in place: readers keep their reader and see
// the new writer's values; versions go on from where the dead one stopped.
TEST(StateProcesses, ARestartedWriterTakesOverInPlace) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("state");
  auto w = peer({"write", name, "128"});
  ASSERT_TRUE(w.wait_stdout("ready")) << w.err();
  auto r = shm::StateReader::open(name, 5s);
  ASSERT_TRUE(r);
  while (r->version() < 1000) std::this_thread::yield();
  w.signal(SIGKILL);
  (void)w.finish();
  const auto before = r->version();
  EXPECT_FALSE(r->writer_alive());
  auto again = peer({"write", name, "128", "10"});
  ASSERT_TRUE(again.wait_stdout("done")) << again.err();
  EXPECT_NE(again.out().find(fmt::format("ready {}", before)), std::string::npos) << again.out();
  EXPECT_EQ(again.finish(), 0);
  std::vector<std::byte> v;
  auto got = r->load(v);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, before + 10);
  // Another shape under the same name while we still hold the old one: a new file.
  auto other = shm::StateWriter::create(name, {.capacity = 4096});
  ASSERT_TRUE(other) << other.error().message();
  ASSERT_TRUE(other->store(bytes("new shape")));
  EXPECT_EQ(r->version(), before + 10) << "the old readers keep the old state";
  auto r2 = shm::StateReader::open(name);
  ASSERT_TRUE(r2);
  ASSERT_TRUE(r2->load(v));
  EXPECT_EQ(text(v), "new shape");
}

// Random values written all over the file at a high rate: a reader never crashes nor hangs; it
// gets values, protocol errors or timeouts, and reports them.
TEST(StateProcesses, AHostileWriterCannotCrashOrHangAReader) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("state");
  auto w = shm::StateWriter::create(name, {.capacity = 256});
  ASSERT_TRUE(w);
  ASSERT_TRUE(w->store(bytes("honest")));
  auto r = shm::StateReader::open(name);
  ASSERT_TRUE(r);
  auto h = peer({"hostile", name, "1000", "7"});
  ASSERT_TRUE(h.wait_stdout("ready")) << h.err();
  std::vector<std::byte> v;
  int ok = 0, protocol = 0, other = 0;
  const auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    auto got = r->load(v, 5ms);
    if (got) {
      ++ok;
      EXPECT_LE(v.size(), 256u);
    } else if (got.error().code == Errc::protocol) {
      ++protocol;
    } else {
      ++other;
      EXPECT_TRUE(got.error().code == Errc::timeout || got.error().code == Errc::not_found) << got.error().message();
    }
    (void)r->wait_change(r->version(), 1ms);
  }
  EXPECT_EQ(h.finish(), 0) << h.err();
  std::printf("under attack: %d values, %d protocol errors, %d timeouts/empty\n", ok, protocol, other);
  // The file's header is garbage now: a new reader refuses it clearly.
  auto fresh = shm::StateReader::open(name, 100ms);
  if (!fresh) {
    EXPECT_TRUE(fresh.error().code == Errc::protocol || fresh.error().code == Errc::type_mismatch ||
                fresh.error().code == Errc::timeout)
        << fresh.error().message();
  }
}

// The last one to close removes the name; a crowd opening and closing at once leaves nothing
// behind and never fails an open.
TEST(StateProcesses, TheLastOneOutRemovesItAndACrowdLeavesNothing) {
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("state");
  const auto before = dev_shm(name);
  {
    auto w = shm::StateWriter::create(name, {.capacity = 32});
    ASSERT_TRUE(w);
    auto h = peer({"hold", name});
    ASSERT_TRUE(h.wait_stdout("ready")) << h.err();
    w->close();
    EXPECT_TRUE(exists(name)) << "a reader still holds it";
    auto gc = ipcx::test::run_cli({"shm", "gc"});
    EXPECT_TRUE(exists(name)) << "gc leaves a state someone holds: " << gc.out;
    h.signal(SIGKILL);
    (void)h.finish();
    EXPECT_TRUE(exists(name)) << "a killed process cannot remove anything";
    gc = ipcx::test::run_cli({"shm", "gc"});
    EXPECT_EQ(gc.code, 0) << gc.err;
    // Removed by this gc, or just before by another test's `ipcx shm gc` (gc takes every dead
    // object of the user, and tests run side by side): gone either way.
    EXPECT_TRUE(gc.out.find(name) != std::string::npos || !exists(name)) << gc.out;
    EXPECT_FALSE(exists(name));
  }
  for (int round = 0; round < 20; ++round) {
    auto w = peer({"write", name, "64", "2000"});
    std::vector<Child> readers;
    for (int i = 0; i < 3; ++i) readers.push_back(peer({"open", name}));
    EXPECT_EQ(w.finish(), 0) << w.err();
    for (auto& c : readers) {
      const int code = c.finish();
      // A reader that came after everyone left finds nothing: that is the only refusal.
      if (code != 0) {
        EXPECT_NE(c.out().find("No such file"), std::string::npos) << c.out();
      }
    }
  }
  EXPECT_EQ(dev_shm(name), before);
}

// Another user can neither open nor remove it (run as nobody; needs root to become nobody).
TEST(StateProcesses, AnotherUserCannotOpenIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a process as another user";
  const auto name = ipcx::test::unique_name("state");
  auto w = shm::StateWriter::create(name, {.capacity = 32});
  ASSERT_TRUE(w);
  struct stat st {};
  ASSERT_EQ(::stat(state_path(name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // nobody looks in the namespace of uid 0 through the path: the file mode refuses it.
  auto open = ipcx::test::run_shell(fmt::format(
      "exec setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'cat {0} >/dev/null || echo refused; rm -f {0} 2>&1; "
      "test -e {0} && echo still-there'",
      state_path(name)));
  EXPECT_NE(open.out.find("refused"), std::string::npos) << open.out << open.err;
  EXPECT_NE(open.out.find("still-there"), std::string::npos) << open.out << open.err;
}

// Refusing a file never removes it: a state, event or topic opened under the name of a segment
// (or of a file that is none of ours) reports the mismatch and leaves the file where it was.
TEST(StateProcesses, RefusingAnotherKindOfFileNeverRemovesIt) {
  const auto name = ipcx::test::unique_name("state-foreign");
  {
    auto seg = shm::Segment::create(name, {.size = 1 << 16});
    ASSERT_TRUE(seg);
  }  // unmapped: the segment stays until remove()
  EXPECT_EQ(shm::StateReader::open(name).error().code, Errc::protocol);
  EXPECT_EQ(shm::StateWriter::create(name, {.capacity = 8}).error().code, Errc::already_exists);
  EXPECT_EQ(shm::EventListener::open(name).error().code, Errc::protocol);
  EXPECT_EQ(shm::EventNotifier::open(name).error().code, Errc::protocol);
  EXPECT_EQ(shm::ZeroCopySubscriber::open(name).error().code, Errc::protocol);
  EXPECT_TRUE(exists(name)) << "the segment must survive every refusal";
  EXPECT_TRUE(shm::Segment::open(name));
  ASSERT_TRUE(shm::Segment::remove(name));
  // A file of zeros nobody holds: a reader refuses it (and leaves it); `shm rm` removes it.
  {
    std::ofstream(state_path(name)) << std::string(4096, '\0');
  }
  auto r = shm::StateReader::open(name, 100ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
  EXPECT_TRUE(exists(name));
  EXPECT_EQ(ipcx::test::run_cli({"shm", "rm", name}).code, 0);
}

// A FIFO planted at the name is refused at once, not waited on (opening a FIFO would block).
TEST(StateProcesses, APlantedFifoIsRefusedWithoutBlocking) {
  Watchdog wd(30s);
  const auto name = ipcx::test::unique_name("state-fifo");
  ASSERT_EQ(::mkfifo(state_path(name).c_str(), 0600), 0);
  auto r = shm::StateReader::open(name, 100ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::permission_denied) << r.error().message();
  EXPECT_FALSE(shm::EventListener::open(name));
  EXPECT_FALSE(shm::ZeroCopySubscriber::open(name));
  ::unlink(state_path(name).c_str());
}
