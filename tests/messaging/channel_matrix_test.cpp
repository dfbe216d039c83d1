// The semantics matrix: every option on every transport, with the receiver in another process
// (ipcx-channel-worker). Exact counters, and exactly the messages not dropped arrive, in order.
#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "messaging/channel_worker.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

constexpr int kStoppedSends = 20;  // window 4 + capacity 4 fit; 12 overflow

struct Case {
  const char* name;
  ChannelOptions options;
  bool stopped;            // the receiver is SIGSTOPped while the messages are sent
  int sends;
  std::vector<int> kept;   // labels the receiver gets, in order
  std::uint64_t DropCounts::*reason = nullptr;  // where the others are counted
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<int> range(int from, int to) {
  std::vector<int> v;
  for (int i = from; i < to; ++i) v.push_back(i);
  return v;
}
std::vector<int> join(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<Case> cases() {
  return {
      {"block_async", {.capacity = 8, .window = 8}, false, 300, range(0, 300)},
      {"block_stopped", {.capacity = 4, .window = 4}, true, kStoppedSends, range(0, kStoppedSends)},
      {"fail", {.capacity = 4, .overflow = Overflow::fail, .window = 4}, true, kStoppedSends, range(0, 8),
       &DropCounts::refused},
      {"drop_newest", {.capacity = 4, .overflow = Overflow::drop_newest, .window = 4}, true, kStoppedSends,
       range(0, 8), &DropCounts::newest},
      {"drop_oldest", {.capacity = 4, .overflow = Overflow::drop_oldest, .window = 4}, true, kStoppedSends,
       join(range(0, 4), range(16, 20)), &DropCounts::oldest},
      // Unbounded count, 4 labels of 6 bytes fit under memory_cap.
      {"unbounded_memory_cap", {.capacity = unbounded, .memory_cap = 24, .overflow = Overflow::drop_oldest, .window = 4},
       true, kStoppedSends, join(range(0, 4), range(16, 20)), &DropCounts::oldest},
      {"confirmed", {.capacity = 8, .window = 8, .delivery = Delivery::confirmed}, false, 50, range(0, 50)},
      {"rendezvous", {.capacity = 0}, false, 50, range(0, 50)},
  };
}

class ChannelMatrix : public ::testing::TestWithParam<std::tuple<TransportRow, Case>> {};

TEST_P(ChannelMatrix, ExactAccountingAcrossProcesses) {
  Watchdog wd(100s);
  const auto& [row, c] = GetParam();
  ChannelPeer w;
  ASSERT_NO_FATAL_FAILURE(start_worker(w, row, c.options));
  Channel& ch = w.channel;
  const bool waits = c.options.capacity == 0 || c.options.delivery == Delivery::confirmed;

  if (c.stopped) {
    ASSERT_NO_FATAL_FAILURE(stop(w.process));
  }
  int accepted = 0;
  for (int i = 0; i < c.sends; ++i) {
    if (c.stopped && std::string_view(c.name) == "block_stopped" && i == 8) {
      // Full: block waits for room until the deadline, then nothing was sent.
      IPCX_EXPECT_ERRC(ch.send(as_bytes(label(i)), 100ms), Errc::timeout);
      EXPECT_EQ(ch.stats().sent, 8u);
      ASSERT_NO_FATAL_FAILURE(resume(w.process));
    }
    auto r = ch.send(as_bytes(label(i)), c.stopped && c.reason ? 0ms : 30s);
    if (r) {
      ++accepted;
    } else {
      EXPECT_EQ(c.options.overflow, Overflow::fail) << r.error().message();
      EXPECT_EQ(r.error().code, Errc::would_block);
    }
    const auto s = ch.stats();
    expect_balanced(s);
    if (waits) {  // a confirmed (or rendezvous) send returned: the receiver took it
      EXPECT_EQ(s.delivered, static_cast<std::uint64_t>(i + 1));
      EXPECT_EQ(s.queued, 0u);
    }
  }
  if (c.stopped && c.reason) {
    const auto s = ch.stats();
    EXPECT_EQ(s.sent, static_cast<std::uint64_t>(c.sends));
    EXPECT_EQ(s.dropped.*c.reason, static_cast<std::uint64_t>(c.sends - 8));
    EXPECT_EQ(s.dropped.total(), static_cast<std::uint64_t>(c.sends - 8));
    EXPECT_EQ(s.queued, 8u);  // 4 in the transport, 4 held
    EXPECT_EQ(s.queued_bytes, 4u * 6u);
    EXPECT_EQ(s.delivered, 0u);
    ASSERT_NO_FATAL_FAILURE(resume(w.process));
  }
  IPCX_ASSERT_OK(ch.flush(30s));
  settle(ch);

  std::vector<std::string> want;
  for (int i : c.kept) want.push_back(label(i));
  const auto got = finish(w);
  EXPECT_EQ(got, want);
  const auto s = ch.stats();
  expect_balanced(s);
  EXPECT_EQ(s.delivered, want.size() + 1);  // and "end"
  EXPECT_EQ(s.sent, static_cast<std::uint64_t>(c.sends) + 1);
  EXPECT_EQ(s.received, 1u);                 // the worker's reply
  EXPECT_EQ(s.queued_bytes, 0u);
  (void)accepted;
}

INSTANTIATE_TEST_SUITE_P(All, ChannelMatrix, ::testing::Combine(::testing::ValuesIn(transports()), ::testing::ValuesIn(cases())),
                         [](const auto& pinfo) {
                           return std::string(std::get<0>(pinfo.param).name) + "_" + std::get<1>(pinfo.param).name;
                         });

}  // namespace
}  // namespace ipcx::test
