// Rendezvous, a stopped receiver under a flood, and bad input, with the receiving end in
// another process that is stopped (SIGSTOP) for real.
#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "messaging/channel_worker.hpp"
#include "messaging/envelope.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

const TransportRow& row(std::string_view name) {
  for (const auto& r : transports())
    if (name == r.name) return r;
  std::abort();
}

class Rendezvous : public ::testing::TestWithParam<TransportRow> {};

// The sender's thread says when send() returned; the receiver process is stopped meanwhile.
TEST_P(Rendezvous, SenderBlockedUntilTheReceiverTakesTheMessage) {
  Watchdog wd(100s);
  ChannelPeer w;
  ASSERT_NO_FATAL_FAILURE(start_worker(w, GetParam(), {.capacity = 0}));
  ASSERT_NO_FATAL_FAILURE(stop(w.process));
  std::atomic<bool> returned{false};
  Result<void> result;
  std::thread sender([&] {
    result = w.channel.send(as_bytes(label(1)), 60s);
    returned = true;
  });
  // A stopped receiver cannot take it: the send is still waiting (the message is in the
  // transport, the acknowledgement cannot come).
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(returned.load());
  ASSERT_NO_FATAL_FAILURE(resume(w.process));
  EXPECT_TRUE(eventually([&] { return returned.load(); }, 30s));
  sender.join();
  IPCX_EXPECT_OK(result);
  auto s = w.channel.stats();
  EXPECT_EQ(s.delivered, 1u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(finish(w), std::vector<std::string>{label(1)});
}

// Nobody receives: a clean timeout, and the receiver's application never gets the message
// when it reads later (it was withdrawn): counted as expired, nothing half-delivered.
TEST_P(Rendezvous, TimesOutCleanlyWhenNobodyReceives) {
  Watchdog wd(100s);
  ChannelPeer w;
  ASSERT_NO_FATAL_FAILURE(start_worker(w, GetParam(), {.capacity = 0}));
  ASSERT_NO_FATAL_FAILURE(stop(w.process));
  IPCX_EXPECT_ERRC(w.channel.send(as_bytes(label(1)), 200ms), Errc::timeout);
  auto s = w.channel.stats();
  EXPECT_EQ(s.sent, 1u);
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_EQ(s.queued, 1u);  // withdrawn; settled by the receiver's acknowledgement
  expect_balanced(s);
  ASSERT_NO_FATAL_FAILURE(resume(w.process));
  settle(w.channel);
  s = w.channel.stats();
  EXPECT_EQ(s.dropped.expired, 1u);
  EXPECT_EQ(s.delivered, 0u);
  IPCX_EXPECT_OK(w.channel.send(as_bytes(label(2)), 30s));
  EXPECT_EQ(finish(w), std::vector<std::string>{label(2)});
  s = w.channel.stats();
  EXPECT_EQ(s.delivered, 2u);  // label 2 and "end"
  EXPECT_EQ(s.dropped.expired, 1u);
  expect_balanced(s);
}

INSTANTIATE_TEST_SUITE_P(All, Rendezvous, ::testing::ValuesIn(transports()),
                         [](const auto& pinfo) { return std::string(pinfo.param.name); });

std::uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// A stopped receiver, a sender at full speed: memory stays under memory_cap, every message is
// counted, and exactly the kept ones arrive.
class Flood : public ::testing::TestWithParam<Overflow> {};

TEST_P(Flood, StoppedReceiverExactAccountingAndBoundedMemory) {
  Watchdog wd(100s);
  constexpr std::size_t kPayload = 1024;
  constexpr std::size_t kCap = 256 * 1024;  // 256 messages held
  constexpr std::uint32_t kWindow = 64;
#ifdef IPCX_TEST_SANITIZED
  constexpr int kSends = 5000;
#else
  constexpr int kSends = 40000;  // 40 MiB offered
#endif
  const Overflow policy = GetParam();
  ChannelPeer w;
  ASSERT_NO_FATAL_FAILURE(start_worker(w, row("unix"),
                                       {.capacity = unbounded, .memory_cap = kCap, .overflow = policy, .window = kWindow}));
  ASSERT_NO_FATAL_FAILURE(stop(w.process));
  const auto rss_before = rss_bytes();
  std::string payload(kPayload, 'x');
  std::uint64_t max_bytes = 0;
  for (int i = 0; i < kSends; ++i) {
    payload.replace(0, 6, label(i));
    IPCX_ASSERT_OK(w.channel.try_send(as_bytes(payload)));
    const auto s = w.channel.stats();
    max_bytes = std::max(max_bytes, s.queued_bytes);
    if (i % 1000 == 0) expect_balanced(s);
  }
  const auto rss_after = rss_bytes();
  auto s = w.channel.stats();
  const std::uint64_t held = kCap / kPayload;
  EXPECT_LE(max_bytes, kCap);
  EXPECT_EQ(s.queued, kWindow + held);
  EXPECT_EQ(s.queued_bytes, held * kPayload);
  const auto reason = policy == Overflow::drop_oldest ? &DropCounts::oldest : &DropCounts::newest;
  EXPECT_EQ(s.dropped.*reason, kSends - kWindow - held);
  expect_balanced(s);
#ifndef IPCX_TEST_SANITIZED
  // What was offered (40 MiB) never accumulated: growth stays within the cap plus slack for
  // the allocator and buffers reused.
  EXPECT_LT(rss_after, rss_before + kCap + (8u << 20)) << "before " << rss_before << " after " << rss_after;
#else
  (void)rss_before;
  (void)rss_after;
#endif
  ASSERT_NO_FATAL_FAILURE(resume(w.process));
  IPCX_ASSERT_OK(w.channel.flush(30s));
  settle(w.channel);
  std::vector<std::string> want;
  for (int i = 0; i < static_cast<int>(kWindow); ++i) want.push_back(label(i));
  const int from = policy == Overflow::drop_oldest ? kSends - static_cast<int>(held) : static_cast<int>(kWindow);
  for (int i = from; i < from + static_cast<int>(held); ++i) want.push_back(label(i));
  EXPECT_EQ(finish(w), want);
  s = w.channel.stats();
  EXPECT_EQ(s.delivered, want.size() + 1);
  expect_balanced(s);
}

INSTANTIATE_TEST_SUITE_P(All, Flood, ::testing::Values(Overflow::drop_oldest, Overflow::drop_newest),
                         [](const auto& pinfo) { return pinfo.param == Overflow::drop_oldest ? "drop_oldest" : "drop_newest"; });

// A raw peer sends an unknown kind to the worker: the worker's channel reports a protocol
// error (exit code 3) after telling the peer why; this process carries on.
TEST(ChannelProcess, BadInputFromARawPeerIsAProtocolError) {
  Watchdog wd(60s);
  ScratchDir dir;
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  Fd r(out[0]), wr(out[1]);
  auto p = Process::spawn({IPCX_CHANNEL_WORKER, "unix://" + dir.file("bad.sock"), "4"}, {.fds = {{1, wr.get()}}});
  ASSERT_TRUE(p) << why(p);
  wr = Fd();
  const auto url = read_line(r.get());
  auto raw = ipcx::connect(url);
  ASSERT_TRUE(raw) << why(raw);
  const std::byte junk[] = {std::byte{0x55}, std::byte{1}, std::byte{2}};
  IPCX_ASSERT_OK(raw->send(junk, 5s));
  auto told = raw->recv(20s);
  ASSERT_TRUE(told) << why(told);
  ASSERT_FALSE(told->data.empty());
  EXPECT_EQ(told->data[0], std::byte(messaging::Kind::error));
  EXPECT_NE(told->text().find("unknown message kind"), std::string_view::npos) << told->text();
  auto rc = p->wait(20s);
  ASSERT_TRUE(rc) << why(rc);
  EXPECT_EQ(*rc, 3);
}

}  // namespace
}  // namespace ipcx::test
