// Shared queue (ipcx/shm_queue.hpp): many writers, one reader. In one process for the API's
// rules, and across real processes (ipcx-queue-peer) killed with SIGKILL half-way through a
// message, stopped with SIGSTOP, and scribbling over the file; the CLI (`ipcx shm push|pop`).
#include <fcntl.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
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

Child peer(std::vector<std::string> args) {
  args.insert(args.begin(), IPCX_QUEUE_PEER);
  return Child::start(std::move(args));
}

std::span<const std::byte> bytes(std::string_view s) { return ipcx::as_bytes(s); }

std::uint64_t fnv(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 14695981039346656037ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Checks one message of ipcx-queue-peer write: intact, and after the last one of its writer.
struct Checker {
  std::map<std::uint32_t, std::uint64_t> last;  // writer id -> last sequence number
  std::uint64_t messages = 0, bad = 0, out_of_order = 0, gaps = 0;
  void take(const std::vector<std::byte>& m) {
    ++messages;
    const auto* p = reinterpret_cast<const unsigned char*>(m.data());
    std::uint32_t id, fill;
    std::uint64_t seq, h;
    if (m.size() < 24) return void(++bad);
    std::memcpy(&id, p, 4);
    std::memcpy(&fill, p + 4, 4);
    std::memcpy(&seq, p + 8, 8);
    if (m.size() != 16 + fill + 8) return void(++bad);
    std::memcpy(&h, p + 16 + fill, 8);
    bool ok = h == fnv(p, 16 + fill) && fill == (seq * 37 + id) % 200;
    for (std::uint32_t i = 0; ok && i < fill; ++i) ok = p[16 + i] == static_cast<unsigned char>(seq * 7 + id + i);
    if (!ok) return void(++bad);
    if (seq <= last[id]) ++out_of_order;
    else if (seq != last[id] + 1) ++gaps;  // a writer loses at most its last message: never one in the middle
    last[id] = seq;
  }
};

std::uint64_t field(const std::string& out, const std::string& word) {
  const auto at = out.find(word + " ");
  return at == std::string::npos ? 0 : std::strtoull(out.c_str() + at + word.size() + 1, nullptr, 10);
}

}  // namespace

TEST(ShmQueue, SendReceiveInOrderAndTheRules) {
  const auto name = ipcx::test::unique_name("q");
  auto r = shm::QueueReader::create(name, {.slots = 4, .max_message = 16, .max_writers = 2});
  ASSERT_TRUE(r) << r.error().message();
  std::vector<std::byte> m;
  auto none = r->recv(m, ipcx::Timeout::zero());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::would_block);
  auto late = r->recv(m, 30ms);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Errc::timeout);

  auto w = shm::QueueWriter::open(name);  // takes the queue as it is
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ(w->max_message(), 16u);
  EXPECT_TRUE(w->reader_alive());
  EXPECT_EQ(r->writers(), 1u);
  ASSERT_TRUE(w->send(bytes("")));
  ASSERT_TRUE(w->send(bytes("one")));
  ASSERT_TRUE(w->send(bytes("sixteen bytes!!!")));
  auto big = w->send(bytes("seventeen bytes!!"));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
  ASSERT_TRUE(w->send(bytes("four")));
  EXPECT_EQ(r->depth(), 4u);
  // Full: would_block at once, timeout after a while.
  auto full = w->send(bytes("five"), ipcx::Timeout::zero());
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::would_block);
  auto full2 = w->send(bytes("five"), 30ms);
  ASSERT_FALSE(full2);
  EXPECT_EQ(full2.error().code, Errc::timeout);
  for (const char* want : {"", "one", "sixteen bytes!!!", "four"}) {
    ASSERT_TRUE(r->recv(m, 1s));
    EXPECT_EQ(text(m), want);
  }
  EXPECT_EQ(r->received(), 4u);
  EXPECT_EQ(r->abandoned(), 0u);

  // The reader publishes its position in batches: a writer still finds each slot it freed.
  {
    const auto name2 = ipcx::test::unique_name("q");
    auto r16 = shm::QueueReader::create(name2, {.slots = 16});
    ASSERT_TRUE(r16);
    auto w16 = shm::QueueWriter::open(name2);
    ASSERT_TRUE(w16);
    for (int i = 0; i < 16; ++i) ASSERT_TRUE(w16->send(bytes(std::to_string(i)), ipcx::Timeout::zero()));
    for (int lap = 0; lap < 40; ++lap) {  // one out, one in: never waits for a batch
      ASSERT_TRUE(r16->recv(m, 1s));
      EXPECT_EQ(text(m), std::to_string(lap));
      auto in = w16->send(bytes(std::to_string(16 + lap)), ipcx::Timeout::zero());
      ASSERT_TRUE(in) << "lap " << lap << ": " << in.error().message();
    }
    for (int i = 40; i < 56; ++i) {  // emptied, it goes with its last user
      ASSERT_TRUE(r16->recv(m, 1s));
      EXPECT_EQ(text(m), std::to_string(i));
    }
    r16->close();
    w16->close();
    EXPECT_TRUE(dev_shm(name2).empty());
  }

  // One reader at a time; writer places are limited.
  auto r2 = shm::QueueReader::create(name);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, Errc::already_exists);
  auto w2 = shm::QueueWriter::open(name);
  ASSERT_TRUE(w2) << w2.error().message();
  auto w3 = shm::QueueWriter::open(name);
  ASSERT_FALSE(w3);
  EXPECT_EQ(w3.error().code, Errc::resource_exhausted);
  EXPECT_EQ(r->writers(), 2u);

  // A full queue whose reader is gone: a send says so at once instead of waiting.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(w->send(bytes("x")));
  r->close();
  EXPECT_FALSE(w->reader_alive());
  auto orphan = w->send(bytes("y"), 5s);
  ASSERT_FALSE(orphan);
  EXPECT_EQ(orphan.error().code, Errc::closed);
  // The messages stay for the next reader, even once everybody has closed.
  w->close();
  w2->close();
  EXPECT_FALSE(dev_shm(name).empty());
  auto r3 = shm::QueueReader::create(name);
  ASSERT_TRUE(r3) << r3.error().message();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(r3->recv(m, 1s));
    EXPECT_EQ(text(m), "x");
  }
  r3->close();  // empty and nobody else: removed
  EXPECT_TRUE(dev_shm(name).empty());
}

TEST(ShmQueue, BadOptionsAndNames) {
  const auto name = ipcx::test::unique_name("q");
  for (auto o : {shm::QueueOptions{.slots = 3}, shm::QueueOptions{.slots = 0}, shm::QueueOptions{.max_message = 0},
                 shm::QueueOptions{.max_message = shm::kMaxQueueMessage + 1}, shm::QueueOptions{.max_writers = 0},
                 shm::QueueOptions{.max_writers = shm::kMaxQueueWriters + 1},
                 shm::QueueOptions{.slots = std::size_t{1} << 20, .max_message = 1024}}) {
    auto r = shm::QueueReader::create(name, o);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << r.error().message();
  }
  for (std::string bad : {std::string(), std::string(201, 'a'), std::string("a\0b", 3)}) {
    auto w = shm::QueueWriter::open(bad);
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().code, Errc::invalid_argument);
  }
  EXPECT_TRUE(dev_shm(name).empty());
  // Another kind of object under the name is refused and left alone.
  auto st = shm::StateWriter::create(name, {.capacity = 8});
  ASSERT_TRUE(st);
  auto q = shm::QueueWriter::open(name);
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, Errc::protocol) << q.error().message();
  EXPECT_FALSE(dev_shm(name).empty());
}

// Eight writer processes into a small queue (it fills: writers wait for room): every message
// arrives intact, each writer's in order, none twice, none missing.
TEST(ShmQueueProcesses, ManyWritersOneReaderEverythingIntactAndInOrder) {
  Watchdog wd(120s);
  const auto name = ipcx::test::unique_name("q");
  auto r = shm::QueueReader::create(name, {.slots = 16, .max_message = 256});
  ASSERT_TRUE(r) << r.error().message();
  constexpr int kWriters = 8;
  constexpr std::uint64_t kEach = 5000;
  std::vector<Child> ws;
  for (int i = 0; i < kWriters; ++i) ws.push_back(peer({"write", name, std::to_string(i + 1), std::to_string(kEach)}));
  Checker c;
  std::vector<std::byte> m;
  while (c.messages < kWriters * kEach) {
    auto got = r->recv(m, 20s);
    ASSERT_TRUE(got) << got.error().message() << " after " << c.messages;
    c.take(m);
  }
  for (auto& w : ws) {
    EXPECT_EQ(w.finish(30s), 0) << w.out() << w.err();
    EXPECT_EQ(field(w.out(), "done"), kEach);
  }
  EXPECT_EQ(c.bad, 0u);
  EXPECT_EQ(c.out_of_order, 0u);
  EXPECT_EQ(c.gaps, 0u);
  ASSERT_EQ(c.last.size(), std::size_t(kWriters));
  for (auto& [id, seq] : c.last) EXPECT_EQ(seq, kEach) << "writer " << id;
  EXPECT_EQ(r->abandoned(), 0u);
  EXPECT_EQ(r->recv(m, ipcx::Timeout::zero()).error().code, Errc::would_block);
  r->close();
  EXPECT_TRUE(dev_shm(name).empty());
}

// An event loop's reader: it polls native_handle() and takes what is there with zero timeouts.
// Writers in three other processes wake it for every message it has not seen (none lost, each
// writer's in order); right after a would_block the descriptor is not readable; a writer
// SIGKILLed half-way through a message is given up by the next zero-timeout call.
TEST(ShmQueueProcesses, APolledReaderIsWokenForEveryMessage) {
  Watchdog wd(120s);
  const auto name = ipcx::test::unique_name("q");
  auto r = shm::QueueReader::create(name, {.slots = 16, .max_message = 256});
  ASSERT_TRUE(r) << r.error().message();
  // reader_wait (offset 192, docs/shm.md): a reader that never asked for its descriptor asks
  // nobody for datagrams; once it has, a would_block sets bit 2.
  const auto reader_wait = [&] {
    std::uint32_t v = 0;
    ipcx::Fd f(::open(r->path().c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::pread(f.get(), &v, sizeof v, 192), static_cast<ssize_t>(sizeof v));
    return v;
  };
  std::vector<std::byte> m;
  ASSERT_EQ(r->recv(m, ipcx::Timeout::zero()).error().code, Errc::would_block);
  EXPECT_EQ(reader_wait(), 0u);
  const int fd = r->native_handle();
  ASSERT_GE(fd, 0);
  ASSERT_EQ(r->recv(m, ipcx::Timeout::zero()).error().code, Errc::would_block);
  EXPECT_EQ(reader_wait(), 2u);
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  EXPECT_EQ(::poll(&p, 1, 100), 0) << "readable with nothing sent";

  constexpr int kWriters = 3;
  constexpr std::uint64_t kEach = 2000;
  std::vector<Child> ws;
  for (int i = 0; i < kWriters; ++i) ws.push_back(peer({"write", name, std::to_string(i + 1), std::to_string(kEach)}));
  Checker c;
  std::uint64_t polls = 0;
  while (c.messages < kWriters * kEach) {
    p.revents = 0;
    const int n = ::poll(&p, 1, 10000);
    ASSERT_EQ(n, 1) << "no wake-up within 10 s after " << c.messages << " messages";
    ++polls;
    for (;;) {
      auto got = r->recv(m, ipcx::Timeout::zero());
      if (!got) {
        ASSERT_EQ(got.error().code, Errc::would_block) << got.error().message();
        break;
      }
      c.take(m);
    }
  }
  for (auto& w : ws) EXPECT_EQ(w.finish(30s), 0) << w.out() << w.err();
  EXPECT_EQ(c.bad, 0u);
  EXPECT_EQ(c.out_of_order, 0u);
  EXPECT_EQ(c.gaps, 0u);
  EXPECT_GE(polls, 2u);

  // Anyone may send to the socket (@ipcx-ev.<reader_uid>.<reader_token>, header bytes 52 and
  // 56): stray datagrams make a spurious wake-up, and the next would_block empties the socket.
  {
    std::uint32_t uid = 0;
    std::uint64_t token = 0;
    ipcx::Fd f(::open(r->path().c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(::pread(f.get(), &uid, sizeof uid, 52), 4);
    ASSERT_EQ(::pread(f.get(), &token, sizeof token, 56), 8);
    const auto sock_name = fmt::format("ipcx-ev.{}.{:016x}", uid, token);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, sock_name.data(), sock_name.size());
    ipcx::Fd stray(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    for (int i = 0; i < 3; ++i)
      ASSERT_EQ(::sendto(stray.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&a),
                         static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + sock_name.size())),
                1)
          << std::strerror(errno);
    p.revents = 0;
    EXPECT_EQ(::poll(&p, 1, 1000), 1);
    EXPECT_EQ(r->recv(m, ipcx::Timeout::zero()).error().code, Errc::would_block);
    p.revents = 0;
    EXPECT_EQ(::poll(&p, 1, 0), 0) << "still readable after a would_block";
  }

  // Half a message, then its writer dies: the message after it comes through a zero timeout.
  auto half = peer({"claim", name, "writing"});
  ASSERT_TRUE(half.wait_stdout("claimed", 10s)) << half.err();
  auto w = shm::QueueWriter::open(name);
  ASSERT_TRUE(w) << w.error().message();
  ASSERT_TRUE(w->send(bytes("after the dead one")));
  p.revents = 0;
  ASSERT_EQ(::poll(&p, 1, 10000), 1) << "the message after a half-written one woke nobody";
  EXPECT_EQ(r->recv(m, ipcx::Timeout::zero()).error().code, Errc::would_block);  // its writer lives
  half.signal(SIGKILL);
  (void)half.finish(5s);
  auto got = r->recv(m, ipcx::Timeout::zero());
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(text(m), "after the dead one");
  EXPECT_EQ(r->abandoned(), 1u);
  w->close();
  r->close();
  EXPECT_TRUE(dev_shm(name).empty());
}

// A writer SIGKILLed after claiming a position, before (empty) or while (writing) filling it:
// the reader waits while it lives (a stopped writer is alive), and skips that position within
// 100 ms of its death; the messages after it come through.
TEST(ShmQueueProcesses, AWriterKilledHalfWayIsSkippedAStoppedOneIsWaitedFor) {
  Watchdog wd(60s);
  for (const char* how : {"empty", "writing"}) {
    SCOPED_TRACE(how);
    const auto name = ipcx::test::unique_name("q");
    auto r = shm::QueueReader::create(name, {.slots = 8});
    ASSERT_TRUE(r) << r.error().message();
    auto w = shm::QueueWriter::open(name);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->send(bytes("before")));
    auto half = peer({"claim", name, how});
    ASSERT_TRUE(half.wait_stdout("claimed", 10s)) << half.err();
    ASSERT_TRUE(w->send(bytes("after")));
    std::vector<std::byte> m;
    ASSERT_TRUE(r->recv(m, 1s));
    EXPECT_EQ(text(m), "before");
    half.signal(SIGSTOP);
    auto waited = r->recv(m, 1500ms);  // stopped is not dead
    ASSERT_FALSE(waited);
    EXPECT_EQ(waited.error().code, Errc::timeout);
    EXPECT_EQ(r->abandoned(), 0u);
    half.signal(SIGCONT);
    auto waited2 = r->recv(m, 200ms);
    ASSERT_FALSE(waited2);
    half.signal(SIGKILL);
    (void)half.finish(5s);
    const auto killed = std::chrono::steady_clock::now();
    auto got = r->recv(m, 5s);
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_LT(std::chrono::steady_clock::now() - killed, 100ms);
    EXPECT_EQ(text(m), "after");
    EXPECT_EQ(r->abandoned(), 1u);
    // The slot is usable again: a full lap goes through.
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(w->send(bytes(std::to_string(i)), 1s));
      ASSERT_TRUE(r->recv(m, 1s));
      EXPECT_EQ(text(m), std::to_string(i));
    }
    w->close();
    r->close();
    EXPECT_TRUE(dev_shm(name).empty());
  }
}

// A short kill torture: writer processes SIGKILLed at random and replaced (each incarnation a
// new id), the reader goes on; every delivered message is intact and in its writer's order,
// at most one message is lost per kill, and nothing is left in /dev/shm at the end.
TEST(ShmQueueProcesses, RandomKillsOfWritersLoseAtMostTheMessageInHand) {
  Watchdog wd(170s);
  const auto name = ipcx::test::unique_name("q");
  auto r = shm::QueueReader::create(name, {.slots = 64});
  ASSERT_TRUE(r) << r.error().message();
  const int kills = std::getenv("IPCX_QUEUE_KILLS") ? std::atoi(std::getenv("IPCX_QUEUE_KILLS")) : 40;
  std::mt19937 rng(7);
  std::uint32_t next_id = 1;
  std::vector<std::pair<std::uint32_t, Child>> ws;
  for (int i = 0; i < 4; ++i) {
    ws.emplace_back(next_id, peer({"write", name, std::to_string(next_id), "0"}));
    ++next_id;
  }
  Checker c;
  std::vector<std::byte> m;
  for (int k = 0; k < kills; ++k) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5 + rng() % 30);
    while (std::chrono::steady_clock::now() < until) {
      auto got = r->recv(m, 2s);
      ASSERT_TRUE(got) << got.error().message();
      c.take(m);
    }
    auto& victim = ws[rng() % ws.size()];
    victim.second.signal(SIGKILL);
    (void)victim.second.finish(5s);
    victim = {next_id, peer({"write", name, std::to_string(next_id), "0"})};
    ++next_id;
  }
  for (auto& w : ws) {
    w.second.signal(SIGKILL);
    (void)w.second.finish(5s);
  }
  // What is left: the claimed positions, each complete or given up.
  while (true) {
    auto got = r->recv(m, 300ms);
    if (!got) {
      EXPECT_EQ(got.error().code, Errc::timeout);
      break;
    }
    c.take(m);
  }
  EXPECT_GT(c.messages, 0u);
  EXPECT_EQ(c.bad, 0u);
  EXPECT_EQ(c.out_of_order, 0u);
  EXPECT_EQ(c.gaps, 0u);
  EXPECT_LE(r->abandoned(), static_cast<std::uint64_t>(kills + 4));
  EXPECT_EQ(r->depth(), 0u);
  r->close();
  EXPECT_TRUE(dev_shm(name).empty());
}

// A process writing random values over the positions, writer entries and slots: the reader
// never crashes nor waits past its deadline; it reports protocol and stops, or goes on.
TEST(ShmQueueProcesses, AHostileWriterCannotCrashOrHangTheReader) {
  Watchdog wd(120s);
  for (int seed = 1; seed <= 4; ++seed) {
    const auto name = ipcx::test::unique_name("q");
    auto r = shm::QueueReader::create(name, {.slots = 32, .max_message = 256});
    ASSERT_TRUE(r) << r.error().message();
    auto honest = peer({"write", name, "1", "0"});
    ASSERT_TRUE(honest.wait_stdout("ready", 10s));
    auto hostile = peer({"hostile", name, "1500", std::to_string(seed)});
    ASSERT_TRUE(hostile.wait_stdout("ready", 10s));
    std::vector<std::byte> m;
    std::uint64_t got = 0, protocol = 0;
    const auto until = std::chrono::steady_clock::now() + 1500ms;
    while (std::chrono::steady_clock::now() < until) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r1 = r->recv(m, 50ms);
      EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);  // bounded by the deadline
      if (r1) {
        ++got;
        EXPECT_LE(m.size(), 256u);
      } else if (r1.error().code == Errc::protocol) {
        ++protocol;
        auto again = r->recv(m, 10ms);  // stays refused, at once
        ASSERT_FALSE(again);
        EXPECT_EQ(again.error().code, Errc::protocol);
        break;
      } else {
        EXPECT_EQ(r1.error().code, Errc::timeout) << r1.error().message();
      }
    }
    EXPECT_EQ(hostile.finish(30s), 0);
    honest.signal(SIGKILL);
    // The honest writer either still ran (our SIGKILL) or stopped on an error it reported.
    const int code = honest.finish(5s);
    EXPECT_TRUE(code == 128 + SIGKILL || (code == 1 && honest.out().find("error ") != std::string::npos))
        << code << " " << honest.out() << honest.err();
    RecordProperty(fmt::format("seed{}", seed), fmt::format("{} messages, protocol {}", got, protocol));
    r->close();
    // Whatever the scribbler left: nobody holds it now.
    (void)std::filesystem::remove(fmt::format("/dev/shm/ipcx-{}-{}", ::geteuid(), name));
  }
}

// Another user can neither open nor remove it (run as nobody; needs root to become nobody).
TEST(ShmQueueProcesses, AnotherUserCannotOpenIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a process as another user";
  const auto name = ipcx::test::unique_name("q");
  auto r = shm::QueueReader::create(name);
  ASSERT_TRUE(r);
  const auto path = fmt::format("/dev/shm/ipcx-{}-{}", ::geteuid(), name);
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto open = ipcx::test::run_shell(fmt::format(
      "exec setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'cat {0} >/dev/null || echo refused; rm -f {0} 2>&1; "
      "test -e {0} && echo still-there'",
      path));
  EXPECT_NE(open.out.find("refused"), std::string::npos) << open.out << open.err;
  EXPECT_NE(open.out.find("still-there"), std::string::npos) << open.out << open.err;
}

// The CLI: lines pushed by a shell pipeline before any reader exists wait in the queue; `shm ls`
// shows it, `shm gc` keeps it; `shm pop` prints them and the queue goes with its last user.
TEST(ShmQueueCli, PushBeforeAReaderPopPrintsThem) {
  const auto name = ipcx::test::unique_name("q");
  auto push = Child::shell(fmt::format("printf 'a\\nb b\\n' | {0} shm push {1} && {0} shm push {1} 'c'", IPCX_CLI, name));
  EXPECT_EQ(push.finish(10s), 0) << push.err();
  auto ls = Child::cli({"shm", "ls"});
  EXPECT_EQ(ls.finish(10s), 0);
  EXPECT_NE(ls.out().find(name), std::string::npos) << ls.out();
  EXPECT_NE(ls.out().find("queue"), std::string::npos) << ls.out();
  auto gc = Child::cli({"shm", "gc"});  // held by nobody, but it holds messages: kept
  EXPECT_EQ(gc.finish(10s), 0);
  EXPECT_EQ(gc.out().find(name), std::string::npos) << gc.out();
  EXPECT_FALSE(dev_shm(name).empty());
  auto pop = Child::cli({"shm", "pop", name, "--count", "3", "--timeout", "5000"});
  EXPECT_EQ(pop.finish(10s), 0) << pop.err();
  EXPECT_EQ(pop.out(), "a\nb b\nc\n");
  EXPECT_TRUE(dev_shm(name).empty());
  // Nothing comes: a timeout is an error, exit non-zero.
  auto idle = Child::cli({"shm", "pop", name, "--count", "1", "--timeout", "200"});
  EXPECT_NE(idle.finish(10s), 0);
  EXPECT_NE(idle.err().find("no message within 200 ms"), std::string::npos) << idle.err();
  EXPECT_TRUE(dev_shm(name).empty());
  auto big = Child::cli({"shm", "push", name, std::string(2000, 'z')});
  EXPECT_NE(big.finish(10s), 0);
  EXPECT_NE(big.err().find("at most 1024"), std::string::npos) << big.err();
  EXPECT_TRUE(dev_shm(name).empty());
}

// `push NAME ''` is an empty message (not "read standard input"); a push or pop ended by
// SIGTERM closes first, so an empty queue goes with it.
TEST(ShmQueueCli, EmptyTextIsAnEmptyMessageAndSigtermLeavesNothing) {
  const auto name = ipcx::test::unique_name("q");
  auto push = Child::shell(fmt::format("echo typed | {} shm push {} ''", IPCX_CLI, name));
  EXPECT_EQ(push.finish(10s), 0) << push.err();
  auto r = shm::QueueReader::create(name);
  ASSERT_TRUE(r);
  std::vector<std::byte> m;
  ASSERT_TRUE(r->recv(m, 1s));
  EXPECT_TRUE(m.empty()) << text(m);
  EXPECT_EQ(r->recv(m, 50ms).error().code, Errc::timeout);
  r->close();
  EXPECT_TRUE(dev_shm(name).empty());
  for (std::string cmd : {"push", "pop"}) {
    // Its standard input: a pipe we keep open (a push waits for lines on it).
    int in[2];
    ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
    ipcx::Fd rd(in[0]), wr(in[1]);
    ipcx::SpawnOptions so;
    so.fds = {{0, rd.get()}};
    auto p = ipcx::Process::spawn({IPCX_CLI, "shm", cmd, name}, so);
    ASSERT_TRUE(p) << p.error().message();
    rd.reset();
    for (int i = 0; i < 500 && dev_shm(name).empty(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_FALSE(dev_shm(name).empty()) << cmd;
    ASSERT_TRUE(p->kill(SIGTERM));
    auto code = p->wait(10s);
    ASSERT_TRUE(code) << cmd;
    EXPECT_EQ(*code, 130) << cmd;
    EXPECT_TRUE(dev_shm(name).empty()) << cmd;
  }
}

// A file its creator left without a header (killed between creating and initialising it) is
// removed by `ipcx shm gc` once it is older than 10 s, never while it may still be in the making.
TEST(ShmQueueCli, GcRemovesWhatACreatorLeftUnfinished) {
  const auto name = ipcx::test::unique_name("unf");
  const auto path = fmt::format("/dev/shm/ipcx-{}-{}", ::geteuid(), name);
  ASSERT_EQ(ipcx::test::run_shell(fmt::format("truncate -s 4096 {}", path)).code, 0);
  auto fresh = Child::cli({"shm", "gc"});
  EXPECT_EQ(fresh.finish(10s), 0);
  EXPECT_TRUE(std::filesystem::exists(path)) << fresh.out();
  ASSERT_EQ(ipcx::test::run_shell(fmt::format("touch -d '1 minute ago' {}", path)).code, 0);
  auto old = Child::cli({"shm", "gc"});
  EXPECT_EQ(old.finish(10s), 0);
  EXPECT_NE(old.out().find(path), std::string::npos) << old.out();
  EXPECT_FALSE(std::filesystem::exists(path));
}
