// Zero-copy publish/subscribe (ipcx/zerocopy.hpp): in one process for the API's rules, and
// across real processes (ipcx-zc-peer) killed with SIGKILL, stopped with SIGSTOP, and scribbled
// over by ipcx-state-peer.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
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

Child zc(std::vector<std::string> args) {
  args.insert(args.begin(), IPCX_ZC_PEER);
  return Child::start(std::move(args));
}

std::string shm_path(const std::string& name) { return fmt::format("/dev/shm/ipcx-{}-{}", ::geteuid(), name); }

// The name (as ipcx-state-peer takes it) of a publisher's data file of `topic`: <topic>@<token>.
std::string data_file(const std::string& topic) {
  const std::string prefix = fmt::format("ipcx-{}-{}@", ::geteuid(), topic);
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
    const auto f = e.path().filename().string();
    if (f.rfind(prefix, 0) == 0) return topic + f.substr(prefix.size() - 1);
  }
  return {};
}

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

}  // namespace

TEST(ZeroCopy, LoanWriteInPlacePublishTakeARead0nlyView) {
  const auto topic = ipcx::test::unique_name("zc");
  auto pub = shm::ZeroCopyPublisher::create(topic, {.max_payload = 256, .chunks = 8});
  ASSERT_TRUE(pub) << pub.error().message();
  auto sub = shm::ZeroCopySubscriber::open(topic);
  ASSERT_TRUE(sub) << sub.error().message();
  auto none = sub->take();
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::would_block);

  auto loan = pub->loan(5);
  ASSERT_TRUE(loan) << loan.error().message();
  std::memcpy(loan->data().data(), "hello", 5);
  const void* where = loan->data().data();
  auto seq = pub->publish(std::move(*loan));
  ASSERT_TRUE(seq);
  EXPECT_EQ(*seq, 1u);
  auto s = sub->take(1s);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(text(s->data()), "hello");
  EXPECT_EQ(s->sequence(), 1u);
  EXPECT_EQ(sub->held(), 1u);
  // The same bytes, seen through the subscriber's own read-only mapping of the publisher's file.
  EXPECT_NE(static_cast<const void*>(s->data().data()), where);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int ro = 0, rw_control = 0;
  while (std::getline(maps, line)) {
    if (line.find(shm_path(topic) + "@") == std::string::npos) continue;
    const auto perms = line.substr(line.find(' ') + 1, 4);
    ro += perms == "r--s";
    rw_control += perms == "rw-s";
  }
  EXPECT_EQ(ro, 1) << "the subscriber maps the chunks read-only";
  EXPECT_EQ(rw_control, 2) << "the publisher's mapping, the subscriber's holder bitmaps";
  s->release();
  EXPECT_EQ(sub->held(), 0u);

  EXPECT_EQ(pub->loan(257).error().code, Errc::too_large);
  EXPECT_EQ(shm::ZeroCopyPublisher::create("a@b").error().code, Errc::invalid_argument);
  EXPECT_EQ(shm::ZeroCopyPublisher::create(topic + "x", {.chunks = 4, .history = 4}).error().code, Errc::invalid_argument);
  EXPECT_EQ(pub->subscribers(), 1u);
  EXPECT_EQ(sub->publishers(), 1u);
}

TEST(ZeroCopy, HeldLimitQueueOverflowHistoryAndPoolExhaustion) {
  const auto topic = ipcx::test::unique_name("zc");
  auto pub = shm::ZeroCopyPublisher::create(topic, {.max_payload = 64, .chunks = 16, .history = 3});
  ASSERT_TRUE(pub);
  auto sub = shm::ZeroCopySubscriber::open(topic, {.queue = 4, .max_held = 2});
  ASSERT_TRUE(sub);
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(pub->publish_copy(bytes(std::to_string(i))));
  // Queue of 4: the six oldest are dropped, counted.
  auto a = sub->take();
  ASSERT_TRUE(a);
  EXPECT_EQ(text(a->data()), "7");
  EXPECT_EQ(sub->dropped(), 6u);
  auto b = sub->take();
  ASSERT_TRUE(b);
  auto c = sub->take();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::resource_exhausted) << c.error().message();
  EXPECT_NE(c.error().message().find("max_held"), std::string::npos);
  b->release();
  c = sub->take();
  ASSERT_TRUE(c);
  EXPECT_EQ(text(c->data()), "9");

  // A late joiner asks for 5 samples of history; the publisher keeps 3.
  auto late = shm::ZeroCopySubscriber::open(topic, {.history = 5});
  ASSERT_TRUE(late);
  std::vector<std::string> got;
  while (auto s = late->take()) got.push_back(text(s->data()));
  EXPECT_EQ(got, (std::vector<std::string>{"8", "9", "10"}));

  // A subscriber that holds chunks keeps them from being reused: with 16 chunks, 3 kept as
  // history (8, 9, 10) and 2 held (7, and 9 again), the pool runs dry when the other 12 are loaned.
  std::vector<shm::Loan> loans;
  for (;;) {
    auto l = pub->loan(8);
    if (!l) {
      EXPECT_EQ(l.error().code, Errc::resource_exhausted) << l.error().message();
      break;
    }
    loans.push_back(std::move(*l));
  }
  EXPECT_EQ(loans.size(), 12u);
  loans.clear();  // back to the pool unpublished
  EXPECT_TRUE(pub->loan(8));
}

// Publishers and subscribers in separate processes; every sample whole; subscribers that hold
// samples for a while still read them intact (the publisher never reuses a held chunk).
TEST(ZeroCopyProcesses, EverySampleIsIntactAcrossProcesses) {
  Watchdog wd(60s);
  const auto topic = ipcx::test::unique_name("zc");
  const auto before = dev_shm(topic);
  {
    std::vector<Child> subs;
    for (const char* hold : {"0", "8", "3"}) {
      subs.push_back(zc({"sub", topic, "1500", hold}));
      ASSERT_TRUE(subs.back().wait_stdout("ready")) << subs.back().err();
    }
    auto p1 = zc({"pub", topic, "4096", "0", "0", "32"});
    auto p2 = zc({"pub", topic, "65536", "0", "2", "16"});
    ASSERT_TRUE(p1.wait_stdout("ready")) << p1.err();
    for (auto& s : subs) {
      EXPECT_EQ(s.finish(), 0) << s.out() << s.err();
      EXPECT_NE(s.out().find("\nok "), std::string::npos) << s.out();
      std::printf("subscriber: %s", s.out().c_str());
    }
    p1.signal(SIGTERM);
    p2.signal(SIGTERM);
    (void)p1.finish();
    (void)p2.finish();
  }
  // The publishers died by a signal: what they held stays until gc.
  auto gc = ipcx::test::run_cli({"shm", "gc"});
  EXPECT_EQ(gc.code, 0) << gc.err;
  EXPECT_EQ(dev_shm(topic), before) << gc.out;
}

// A subscriber killed while holding chunks: the publisher gets them back when its pool runs dry.
TEST(ZeroCopyProcesses, ChunksAKilledSubscriberHeldAreReclaimed) {
  Watchdog wd(60s);
  const auto topic = ipcx::test::unique_name("zc");
  auto pub = shm::ZeroCopyPublisher::create(topic, {.max_payload = 64, .chunks = 8});
  ASSERT_TRUE(pub);
  auto holder = zc({"hold", topic, "6"});
  while (pub->subscribers() == 0) std::this_thread::sleep_for(1ms);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(pub->publish_copy(bytes("x")));
  ASSERT_TRUE(holder.wait_stdout("held")) << holder.err();
  std::vector<shm::Loan> loans;
  while (auto l = pub->loan(8)) loans.push_back(std::move(*l));
  EXPECT_EQ(loans.size(), 2u) << "six chunks held by the other process";
  loans.clear();
  holder.signal(SIGKILL);
  (void)holder.finish();
  while (auto l = pub->loan(8)) loans.push_back(std::move(*l));
  EXPECT_EQ(loans.size(), 8u) << "every chunk back after the holder's death";
}

// A killed publisher is the kernel's news (its slot lock); a new one under the same name works.
TEST(ZeroCopyProcesses, AKilledPublisherIsNoticedAndARestartedOneIsHeard) {
  Watchdog wd(60s);
  const auto topic = ipcx::test::unique_name("zc");
  auto sub = shm::ZeroCopySubscriber::open(topic, {.queue = 1024});
  ASSERT_TRUE(sub);
  auto p = zc({"pub", topic, "128", "0"});
  ASSERT_TRUE(p.wait_stdout("ready")) << p.err();
  auto s = sub->take(5s);
  ASSERT_TRUE(s) << s.error().message();
  s->release();
  EXPECT_EQ(sub->publishers(), 1u);
  p.signal(SIGKILL);
  (void)p.finish();
  EXPECT_EQ(sub->publishers(), 0u) << "its lock went with it";
  while (sub->take()) {
  }
  auto again = zc({"pub", topic, "128", "5"});
  ASSERT_TRUE(again.wait_stdout("done")) << again.err();
  int fresh = 0;
  while (auto t = sub->take(200ms)) {
    if (t->sequence() <= 5) ++fresh;
  }
  EXPECT_EQ(fresh, 5) << "the restarted publisher's five samples";
  EXPECT_EQ(again.finish(), 0);
}

// 256 subscribers (the default number of slots) of a publisher in another process.
TEST(ZeroCopyProcesses, TwoHundredFiftySixSubscribers) {
  Watchdog wd(60s);
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 1024) GTEST_SKIP() << "needs two descriptors per subscriber";
  const auto topic = ipcx::test::unique_name("zc");
  std::vector<shm::ZeroCopySubscriber> subs;
  for (int i = 0; i < 256; ++i) {
    auto s = shm::ZeroCopySubscriber::open(topic, {.queue = 64});
    ASSERT_TRUE(s) << i << ": " << s.error().message();
    subs.push_back(std::move(*s));
  }
  EXPECT_EQ(shm::ZeroCopySubscriber::open(topic).error().code, Errc::resource_exhausted);
  auto p = zc({"pub", topic, "1024", "20", "0", "64"});
  ASSERT_TRUE(p.wait_stdout("done")) << p.err();
  EXPECT_EQ(p.finish(), 0);
  for (std::size_t i = 0; i < subs.size(); ++i) {
    int n = 0;
    while (auto s = subs[i].take()) ++n;
    EXPECT_EQ(n, 20) << "subscriber " << i;
  }
}

// Random values written over the topic file and a publisher's data file at a high rate: a
// subscriber neither crashes nor hangs; it takes samples, drops them, or reports protocol.
TEST(ZeroCopyProcesses, AHostileWriterCannotCrashOrHangASubscriber) {
  Watchdog wd(60s);
  const auto topic = ipcx::test::unique_name("zc");
  auto pub = shm::ZeroCopyPublisher::create(topic, {.max_payload = 256, .chunks = 16});
  ASSERT_TRUE(pub);
  auto sub = shm::ZeroCopySubscriber::open(topic, {.max_held = 4});
  ASSERT_TRUE(sub);
  ASSERT_TRUE(pub->publish_copy(bytes("before")));
  ASSERT_FALSE(data_file(topic).empty());
  auto h1 = Child::start({IPCX_STATE_PEER, "hostile", data_file(topic), "1000", "3"});
  auto h2 = Child::start({IPCX_STATE_PEER, "hostile", topic, "1000", "4"});
  ASSERT_TRUE(h1.wait_stdout("ready") && h2.wait_stdout("ready"));
  int ok = 0, protocol = 0, other = 0;
  const auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    (void)pub->publish_copy(bytes("during"));
    auto s = sub->take(1ms);
    if (s) {
      ++ok;
      EXPECT_LE(s->data().size(), 256u);
    } else if (s.error().code == Errc::protocol) {
      ++protocol;
    } else {
      ++other;
    }
  }
  EXPECT_EQ(h1.finish(), 0);
  EXPECT_EQ(h2.finish(), 0);
  std::printf("under attack: %d samples, %d protocol errors, %d timeouts\n", ok, protocol, other);
}

// Random SIGKILLs of publishers and subscribers (IPCX_ZC_KILLS, 40 by default; the `stress`
// run makes 1000): every sample a survivor takes is whole, survivors go on, and once everything
// is gone and gc has run, /dev/shm holds what it held before.
TEST(ZeroCopyTorture, RandomKillsOfPublishersAndSubscribers) {
  const char* env = std::getenv("IPCX_ZC_KILLS");
  const int kills = env ? std::atoi(env) : 40;
  Watchdog wd(std::chrono::seconds(60 + kills / 2 * 10));
  const auto topic = ipcx::test::unique_name("zc");
  const auto before = dev_shm(topic);
  std::mt19937 rng(12345);
  struct Proc {
    Child child;
    bool pub;
  };
  std::vector<Proc> procs;
  auto spawn = [&](bool pub) {
    if (pub) procs.push_back({zc({"pub", topic, std::to_string(64 + rng() % 8192), "0", "1", "16"}), true});
    else procs.push_back({zc({"sub", topic, "600000", std::to_string(rng() % 4)}), false});
  };
  for (int i = 0; i < 2; ++i) spawn(true);
  for (int i = 0; i < 4; ++i) spawn(false);
  int done = 0;
  std::uint64_t survivors_checked = 0, progress_lines = 0;
  auto count_progress = [&](const std::string& out) {
    for (std::size_t at = 0; (at = out.find("progress ", at)) != std::string::npos; ++at) ++progress_lines;
  };
#ifdef IPCX_TEST_SANITIZED
  constexpr int kPace = 10;  // processes start and run slower under a sanitizer
#else
  constexpr int kPace = 1;
#endif
  while (done < kills) {
    std::this_thread::sleep_for(std::chrono::milliseconds((5 + rng() % 20) * kPace));
    const std::size_t victim = rng() % procs.size();
    auto& v = procs[victim];
    const bool was_pub = v.pub;
    // A subscriber that finished by itself must have found every sample whole.
    v.child.signal(SIGKILL);
    const int code = v.child.finish();
    if (code != 128 + SIGKILL && code != -SIGKILL && code != SIGKILL) {
      EXPECT_EQ(code, 0) << v.child.out() << v.child.err();
    }
    EXPECT_EQ(v.child.out().find("bad"), std::string::npos) << v.child.out();
    count_progress(v.child.out());
    procs.erase(procs.begin() + static_cast<long>(victim));
    spawn(was_pub);
    ++done;
  }
  // The survivors: subscribers are stopped with SIGTERM-free means: they are killed too, after
  // checking they printed nothing bad; then gc.
  for (auto& p : procs) {
    p.child.signal(SIGKILL);
    (void)p.child.finish();
    EXPECT_EQ(p.child.out().find("bad"), std::string::npos) << p.child.out();
    count_progress(p.child.out());
    ++survivors_checked;
  }
  auto gc = ipcx::test::run_cli({"shm", "gc"});
  EXPECT_EQ(gc.code, 0) << gc.err;
  EXPECT_EQ(dev_shm(topic), before) << gc.out;
  std::printf("%d kills, %llu survivors checked, %llu x 256 samples checked whole\n", done,
              static_cast<unsigned long long>(survivors_checked), static_cast<unsigned long long>(progress_lines));
  EXPECT_GT(progress_lines, 0u) << "subscribers took samples between the kills";
}

// A subscriber stopped for 5 s is not dead: its slot stays claimed and what it holds is kept.
TEST(ZeroCopySlow, AStoppedSubscriberIsNotTakenForDead) {
  Watchdog wd(60s);
  const auto topic = ipcx::test::unique_name("zc");
  auto pub = shm::ZeroCopyPublisher::create(topic, {.max_payload = 64, .chunks = 8});
  ASSERT_TRUE(pub);
  auto holder = zc({"hold", topic, "4"});
  while (pub->subscribers() == 0) std::this_thread::sleep_for(1ms);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(pub->publish_copy(bytes("x")));
  ASSERT_TRUE(holder.wait_stdout("held"));
  holder.signal(SIGSTOP);
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    EXPECT_EQ(pub->subscribers(), 1u);
    std::vector<shm::Loan> loans;
    while (auto l = pub->loan(8)) loans.push_back(std::move(*l));
    EXPECT_EQ(loans.size(), 4u) << "its four chunks are still its own";
    std::this_thread::sleep_for(250ms);
  }
  holder.signal(SIGKILL);
  (void)holder.finish();
}

namespace {
struct Frame {
  std::uint64_t id;
  double pose[3];
  std::uint8_t pixels[200];
};
}  // namespace

TEST(ZeroCopy, TypedPublishAndTakeInPlace) {
  const auto topic = ipcx::test::unique_name("zc");
  auto pub = shm::TypedPublisher<Frame>::create(topic);
  ASSERT_TRUE(pub) << pub.error().message();
  auto sub = shm::TypedSubscriber<Frame>::open(topic);
  ASSERT_TRUE(sub);
  auto loan = pub->loan();
  ASSERT_TRUE(loan);
  (*loan)->id = 7;
  (*loan)->pose[2] = 1.5;
  (*loan)->pixels[199] = 9;
  ASSERT_TRUE(pub->publish(std::move(*loan)));
  ASSERT_TRUE(pub->publish(Frame{.id = 8, .pose = {}, .pixels = {}}));
  auto a = sub->take(1s);
  ASSERT_TRUE(a);
  EXPECT_EQ((*a)->id, 7u);
  EXPECT_EQ((*a)->pose[2], 1.5);
  EXPECT_EQ((*a)->pixels[199], 9);
  auto b = sub->take(1s);
  ASSERT_TRUE(b);
  EXPECT_EQ((**b).id, 8u);
  // Bytes of another size on the same topic: refused as another type.
  auto raw = shm::ZeroCopyPublisher::create(topic, {.max_payload = 8});
  ASSERT_TRUE(raw);
  ASSERT_TRUE(raw->publish_copy(bytes("abc")));
  auto c = sub->take(1s);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::type_mismatch);
}

// Overflow::block: a publisher waits (up to its block_timeout) for a full blocking subscriber
// instead of dropping; the loan stays the caller's; nothing is dropped; a killed blocking
// subscriber stops blocking anyone.
TEST(ZeroCopyProcesses, ABlockingSubscriberMakesPublishersWaitAndItsDeathReleasesThem) {
  Watchdog wd(60s);
  const auto topic = ipcx::test::unique_name("zc");
  auto pub = shm::ZeroCopyPublisher::create(topic, {.max_payload = 64, .chunks = 16, .block_timeout = 100ms});
  ASSERT_TRUE(pub);
  auto sub = shm::ZeroCopySubscriber::open(topic, {.queue = 4, .overflow = ipcx::Overflow::block});
  ASSERT_TRUE(sub);
  EXPECT_EQ(shm::ZeroCopySubscriber::open(topic, {.overflow = ipcx::Overflow::fail}).error().code, Errc::invalid_argument);
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(pub->publish_copy(bytes(std::to_string(i))));
  auto loan = pub->loan(1);
  ASSERT_TRUE(loan);
  loan->data()[0] = std::byte{'5'};
  auto full = pub->publish(std::move(*loan));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::timeout) << full.error().message();
  ASSERT_TRUE(*loan) << "the loan is still the caller's";
  {
    auto first = sub->take(1s);
    ASSERT_TRUE(first);
    EXPECT_EQ(text(first->data()), "1");
  }
  ASSERT_TRUE(pub->publish(std::move(*loan)));
  std::vector<std::string> got;
  while (auto s = sub->take()) got.push_back(text(s->data()));
  EXPECT_EQ(got, (std::vector<std::string>{"2", "3", "4", "5"}));
  EXPECT_EQ(sub->dropped(), 0u);
  sub->close();

  // In another process, killed: its lock goes, and so does the wait.
  auto blocker = Child::start({IPCX_ZC_PEER, "hold", topic, "1"});
  while (pub->subscribers() == 0) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(pub->publish_copy(bytes("x")));
  ASSERT_TRUE(blocker.wait_stdout("held"));
  blocker.signal(SIGKILL);
  (void)blocker.finish();
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(pub->publish_copy(bytes("after"))) << i;
}

// A publisher that closes while a subscriber has not read its samples yet leaves its file; gc
// keeps it while the topic has users, and the subscriber still gets everything.
TEST(ZeroCopyProcesses, GcKeepsAClosedPublishersFileWhileItsTopicHasUsers) {
  Watchdog wd(60s);
  const auto topic = ipcx::test::unique_name("zc");
  auto sub = shm::ZeroCopySubscriber::open(topic, {.queue = 64});
  ASSERT_TRUE(sub);
  auto p = zc({"pub", topic, "64", "10"});
  ASSERT_TRUE(p.wait_stdout("done")) << p.err();
  EXPECT_EQ(p.finish(), 0);
  EXPECT_FALSE(data_file(topic).empty()) << "left for the subscriber";
  auto gc = ipcx::test::run_cli({"shm", "gc"});
  EXPECT_EQ(gc.out.find(topic), std::string::npos) << gc.out;
  int n = 0;
  while (auto s = sub->take(100ms)) ++n;
  EXPECT_EQ(n, 10);
  sub->close();
  EXPECT_EQ(dev_shm(topic), std::set<std::string>{}) << "the last user removed the topic and the file";
}

// Names of the user's namespace that another user created first (/dev/shm is writable by all)
// cannot keep a publisher out (its data file has a random name), and the topic's last user
// removes none of them.
TEST(ZeroCopyProcesses, SquattedNamesNeitherBlockAPublisherNorGetRemoved) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to plant files owned by another user";
  const auto topic = ipcx::test::unique_name("zc");
  std::vector<std::string> planted;
  for (const char* suffix : {"@p0", "@p1", "@0000000000000000"}) {
    planted.push_back(shm_path(topic) + suffix);
    std::ofstream(planted.back()) << "not ours";
    ASSERT_EQ(::chown(planted.back().c_str(), 65534, 65534), 0);
  }
  {
    auto pub = shm::ZeroCopyPublisher::create(topic, {.max_payload = 64, .chunks = 4});
    ASSERT_TRUE(pub) << pub.error().message();
    auto sub = shm::ZeroCopySubscriber::open(topic);
    ASSERT_TRUE(sub);
    ASSERT_TRUE(pub->publish_copy(bytes("through")));
    auto s = sub->take(1s);
    ASSERT_TRUE(s);
    EXPECT_EQ(text(s->data()), "through");
  }
  for (const auto& p : planted) {
    EXPECT_TRUE(std::filesystem::exists(p)) << p << " is not ours to remove";
    ::unlink(p.c_str());
  }
  EXPECT_EQ(dev_shm(topic), std::set<std::string>{});
}

// A `latest` that goes back or leaps (a corrupt or hostile data file) is Errc::protocol at once,
// not a take that walks through billions of sequence numbers past its timeout.
TEST(ZeroCopyProcesses, AnImpossibleLatestIsProtocolNotAnEndlessTake) {
  Watchdog wd(30s);
  const auto topic = ipcx::test::unique_name("zc");
  auto pub = shm::ZeroCopyPublisher::create(topic, {.max_payload = 64, .chunks = 4});
  ASSERT_TRUE(pub);
  auto sub = shm::ZeroCopySubscriber::open(topic, {.overflow = ipcx::Overflow::block});
  ASSERT_TRUE(sub);
  ASSERT_TRUE(pub->publish_copy(bytes("one")));
  ASSERT_TRUE(sub->take(1s));
  const std::string path = "/dev/shm/" + fmt::format("ipcx-{}-", ::geteuid()) + data_file(topic);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  const std::uint64_t leap = std::uint64_t{1} << 62;
  ASSERT_EQ(::pwrite(fd, &leap, sizeof leap, 64), static_cast<ssize_t>(sizeof leap));  // `latest`
  ::close(fd);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = sub->take(100ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_LT(sub->dropped(), 10u);
}
