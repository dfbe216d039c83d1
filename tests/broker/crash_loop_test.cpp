// The crash loop: a producer publishing with confirms and a consumer acknowledging, in
// processes of their own, while ipcxd is SIGKILLed at random moments and restarted on the
// same state. The checker then proves: every confirmed message was delivered at least once,
// no delivered message was changed, and duplicates stay within what the kills explain.
//
// The default suite runs a short loop; the `stress` label runs 200 kills, 2–10 s apart
// (IPCX_CRASH_KILLS, IPCX_CRASH_MIN_MS and IPCX_CRASH_MAX_MS override both).
#include <fcntl.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "broker/broker_harness.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kPrefetch = 16;

// What message n carries: a body the consumer can check on its own.
std::string body_for(std::uint64_t n) {
  std::uint64_t h = n * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  return fmt::format("message {} check {:016x} {}", n, h, std::string(n % 200, static_cast<char>('a' + n % 26)));
}

void append_line(int fd, const std::string& line) {
  const std::string l = line + "\n";
  (void)!::write(fd, l.data(), l.size());  // O_APPEND: one write per line, never interleaved
}

broker::Client connect_until(const std::string& url, std::chrono::steady_clock::time_point until) {
  while (std::chrono::steady_clock::now() < until) {
    if (auto c = broker::Client::connect(url, 500ms)) return std::move(*c);
    std::this_thread::sleep_for(20ms);
  }
  ::_exit(5);
}

// Publishes messages 0..count-1, each with its id, until each is confirmed (reconnecting and
// republishing the same id after a crash); writes each confirmed n to `confirmed`.
[[noreturn]] void producer(const std::string& url, const std::string& confirmed, std::uint64_t count, std::chrono::seconds budget) {
  const auto until = std::chrono::steady_clock::now() + budget;
  int fd = ::open(confirmed.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  auto c = connect_until(url, until);
  std::uint64_t n = 0;
  bool declared = false;
  while (n < count && std::chrono::steady_clock::now() < until) {
    if (!declared) declared = c.declare("crash", {.sync = broker::Sync::always}).has_value();
    auto r = declared ? c.publish("crash", as_bytes(body_for(n)), {.id = fmt::format("m-{}", n)}, 5s) : Result<broker::Confirm>(fail(Errc::closed, "x"));
    if (r) {
      append_line(fd, std::to_string(n));
      ++n;
      continue;
    }
    c = connect_until(url, until);
    declared = false;
  }
  ::_exit(n == count ? 0 : 6);
}

// Consumes and acknowledges, checking each body; writes "n attempt" per delivery, or
// "CHANGED n" for a body that is not what message n carries.
[[noreturn]] void consumer(const std::string& url, const std::string& received, std::chrono::seconds budget) {
  const auto until = std::chrono::steady_clock::now() + budget;
  int fd = ::open(received.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  for (;;) {
    auto c = connect_until(url, until);
    bool subscribed = false;
    while (std::chrono::steady_clock::now() < until) {
      if (!subscribed) {
        auto d = c.declare("crash", {.sync = broker::Sync::always});
        if (!d || !c.consume("crash", kPrefetch)) break;
        subscribed = true;
      }
      auto m = c.next(200ms);
      if (!m) {
        if (m.error().code == Errc::timeout) continue;
        break;
      }
      const auto n = std::strtoull(m->id.c_str() + 2, nullptr, 10);
      if (m->text() != body_for(n)) append_line(fd, fmt::format("CHANGED {}", m->id));
      else append_line(fd, fmt::format("{} {}", n, m->attempt));
      if (!c.ack(*m)) break;
    }
    if (std::chrono::steady_clock::now() >= until) ::_exit(0);
  }
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

long env_or(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

void crash_loop(long kills, long min_ms, long max_ms) {
  Daemon d;
  ASSERT_TRUE(d.start({"--http", "off"}));
  const auto confirmed = d.dir().file("confirmed");
  const auto received = d.dir().file("received");
  // Enough messages that the producer is still publishing when the last kill comes.
  const std::uint64_t count = 1'000'000;
  const auto budget = std::chrono::seconds(kills * max_ms / 1000 + 120);
  pid_t prod = ::fork();
  if (prod == 0) producer(d.url(), confirmed, count, budget);
  pid_t cons = ::fork();
  if (cons == 0) consumer(d.url(), received, budget);

  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  std::uniform_int_distribution<long> wait(min_ms, max_ms);
  for (long k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(wait(rng)));
    ASSERT_EQ(d.kill(SIGKILL), 128 + SIGKILL);
    ASSERT_TRUE(d.start({"--http", "off"}));
  }
  // The producer stops; the consumer drains what was confirmed.
  ::kill(prod, SIGKILL);
  ::waitpid(prod, nullptr, 0);
  std::set<std::uint64_t> sent;
  for (auto& l : lines_of(confirmed)) sent.insert(std::stoull(l));
  ASSERT_GT(sent.size(), 0u);
  std::map<std::uint64_t, int> got;
  std::vector<std::string> changed;
  auto all_there = [&] {
    got.clear();
    changed.clear();
    for (auto& l : lines_of(received)) {
      if (l.starts_with("CHANGED")) changed.push_back(l);
      else ++got[std::stoull(l.substr(0, l.find(' ')))];
    }
    return std::all_of(sent.begin(), sent.end(), [&](auto n) { return got.contains(n); });
  };
  EXPECT_TRUE(eventually(all_there, 60s)) << "confirmed but never delivered: "
                                          << std::count_if(sent.begin(), sent.end(), [&](auto n) { return !got.contains(n); });
  ::kill(cons, SIGKILL);
  ::waitpid(cons, nullptr, 0);
  all_there();
  EXPECT_TRUE(changed.empty()) << changed.size() << " changed, first: " << changed.front();
  std::size_t duplicates = 0;
  for (auto& [n, times] : got) duplicates += static_cast<std::size_t>(times - 1);
  // Each kill may redeliver what the consumer held unacknowledged (its prefetch) and the one
  // message whose confirm or ack was lost in flight.
  const std::size_t bound = static_cast<std::size_t>(kills) * (kPrefetch + 2);
  EXPECT_LE(duplicates, bound);
  ::testing::Test::RecordProperty("confirmed", static_cast<int>(sent.size()));
  ::testing::Test::RecordProperty("duplicates", static_cast<int>(duplicates));
  std::fprintf(stderr, "crash loop: %ld kills, %zu confirmed, %zu delivered, %zu duplicates (bound %zu), %zu changed\n", kills,
               sent.size(), got.size(), duplicates, bound, changed.size());
}

TEST(BrokerCrashLoop, Short) {
  crash_loop(env_or("IPCX_CRASH_KILLS", 6), env_or("IPCX_CRASH_MIN_MS", 300), env_or("IPCX_CRASH_MAX_MS", 1000));
}

TEST(BrokerCrashLoopStress, TwoHundredKills) {
  crash_loop(env_or("IPCX_CRASH_KILLS", 200), env_or("IPCX_CRASH_MIN_MS", 2000), env_or("IPCX_CRASH_MAX_MS", 10000));
}

}  // namespace
}  // namespace ipcx::test
