// Channel's protocol in one process: both ends over pipe_pair, the receiving end driven by the
// test thread or a second thread. Every option, the exact counters, cancellation, bad input.
#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>

#include <gtest/gtest.h>

#include <ipcx/channel.hpp>

#include "messaging/channel_wire.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;
namespace wire = messaging::channel_wire;

// sent == delivered + dropped + queued, at every call.
void expect_balanced(const Counters& c) {
  EXPECT_EQ(c.sent, c.delivered + c.dropped.total() + c.queued)
      << "sent " << c.sent << " delivered " << c.delivered << " dropped " << c.dropped.total() << " queued " << c.queued;
}

std::string msg(int i) { return fmt::format("m{:05}", i); }

struct Pair {
  Channel a, b;
};
Pair make_pair(const ChannelOptions& oa, const ChannelOptions& ob = {}) {
  auto p = pipe_pair();
  EXPECT_TRUE(p) << why(p);
  auto a = Channel::wrap(std::move(p->first), oa);
  auto b = Channel::wrap(std::move(p->second), ob);
  EXPECT_TRUE(a) << why(a);
  EXPECT_TRUE(b) << why(b);
  return {std::move(*a), std::move(*b)};
}

// Receives everything until `n` messages came, returning their texts.
std::vector<std::string> take(Channel& ch, std::size_t n, Timeout each = 10s) {
  std::vector<std::string> out;
  while (out.size() < n) {
    auto m = ch.recv(each);
    if (!m) {
      ADD_FAILURE() << "recv: " << m.error().message();
      break;
    }
    out.emplace_back(m->text());
  }
  return out;
}

// Reads acknowledgements until nothing sent is unresolved.
void settle(Channel& ch) {
  EXPECT_TRUE(eventually([&] { return ch.poll(10ms).has_value() && ch.stats().queued == 0; }, 20s))
      << "queued " << ch.stats().queued;
}

TEST(Channel, OptionsOutOfRangeAreRefusedByName) {
  auto check = [](ChannelOptions o, Errc want, const char* word) {
    auto p = pipe_pair();
    ASSERT_TRUE(p);
    auto c = Channel::wrap(std::move(p->first), o);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, want);
    EXPECT_NE(c.error().message().find(word), std::string::npos) << c.error().message();
  };
  check({.window = 0}, Errc::invalid_argument, "window");
  check({.window = ChannelOptions::max_window + 1}, Errc::invalid_argument, "window");
  check({.memory_cap = 0}, Errc::invalid_argument, "memory_cap");
  check({.transport = {.max_message = 10}}, Errc::invalid_argument, "max_message");
  check({.overflow = static_cast<Overflow>(9)}, Errc::invalid_argument, "overflow");
  check({.delivery = static_cast<Delivery>(9)}, Errc::invalid_argument, "delivery");
  check({.transport = {.framing = Framing::lines}}, Errc::not_supported, "line");
}

TEST(Channel, SignalTransportIsRefused) {
  auto l = ipcx::listen("signal://self");
  ASSERT_TRUE(l) << why(l);
  auto c = Channel::connect("signal://self");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::not_supported) << c.error().message();
}

TEST(Channel, AsyncKeepsOrderAndCountsEveryMessage) {
  Watchdog wd(60s);
  auto [a, b] = make_pair({.capacity = 16, .window = 8});
  std::vector<std::string> got;
  std::thread rx([&, &peer_b = b] { got = take(peer_b, 2000); });
  for (int i = 0; i < 2000; ++i) {
    IPCX_ASSERT_OK(a.send(as_bytes(msg(i))));
    expect_balanced(a.stats());
  }
  IPCX_ASSERT_OK(a.flush(10s));
  rx.join();
  settle(a);
  ASSERT_EQ(got.size(), 2000u);
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(got[i], msg(i));
  auto s = a.stats();
  EXPECT_EQ(s.sent, 2000u);
  EXPECT_EQ(s.delivered, 2000u);
  EXPECT_EQ(s.dropped.total(), 0u);
  EXPECT_EQ(s.queued_bytes, 0u);
  EXPECT_EQ(b.stats().received, 2000u);
}

// Stops reading on purpose: the window (2) fills the transport, the capacity (3) the queue.
struct Policy {
  Overflow overflow;
  std::vector<int> kept;  // which of messages 0..9 the receiver gets
};
class ChannelPolicy : public ::testing::TestWithParam<Policy> {};

TEST_P(ChannelPolicy, FullQueueAppliesThePolicyExactly) {
  Watchdog wd(60s);
  const auto p = GetParam();
  auto [a, b] = make_pair({.capacity = 3, .overflow = p.overflow, .window = 2}, {.window = 2});
  int ok = 0;
  for (int i = 0; i < 10; ++i) {
    auto r = a.send(as_bytes(msg(i)), 20ms);
    if (r) {
      ++ok;
    } else if (p.overflow == Overflow::fail) {
      EXPECT_EQ(r.error().code, Errc::would_block);
    } else {
      EXPECT_EQ(r.error().code, Errc::timeout) << r.error().message();
    }
    expect_balanced(a.stats());
  }
  auto s = a.stats();
  EXPECT_EQ(s.queued, 5u);
  EXPECT_EQ(s.queued_bytes, 3u * 6u);
  switch (p.overflow) {
    case Overflow::block: EXPECT_EQ(s.sent, 5u); EXPECT_EQ(ok, 5); break;  // timed out: never accepted
    case Overflow::fail: EXPECT_EQ(s.dropped.refused, 5u); EXPECT_EQ(ok, 5); break;
    case Overflow::drop_newest: EXPECT_EQ(s.dropped.newest, 5u); EXPECT_EQ(ok, 10); break;
    case Overflow::drop_oldest: EXPECT_EQ(s.dropped.oldest, 5u); EXPECT_EQ(ok, 10); break;
  }
  std::vector<std::string> want;
  for (int i : p.kept) want.push_back(msg(i));
  std::vector<std::string> got;
  std::thread rx([&, &peer_b = b] { got = take(peer_b, want.size()); });
  IPCX_ASSERT_OK(a.flush(10s));
  rx.join();
  settle(a);
  EXPECT_EQ(got, want);
  s = a.stats();
  EXPECT_EQ(s.delivered, want.size());
  expect_balanced(s);
  // Nothing more arrives: the dropped ones are gone for good.
  IPCX_EXPECT_ERRC(b.recv(20ms), Errc::timeout);
}

INSTANTIATE_TEST_SUITE_P(
    All, ChannelPolicy,
    ::testing::Values(Policy{Overflow::block, {0, 1, 2, 3, 4}}, Policy{Overflow::fail, {0, 1, 2, 3, 4}},
                      Policy{Overflow::drop_newest, {0, 1, 2, 3, 4}}, Policy{Overflow::drop_oldest, {0, 1, 7, 8, 9}}),
    [](const auto& pinfo) {
      std::string n(to_string(pinfo.param.overflow));
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

TEST(Channel, UnboundedCapacityIsBoundedByMemoryCap) {
  auto [a, b] = make_pair({.capacity = unbounded, .memory_cap = 6 * 4, .overflow = Overflow::fail, .window = 2},
                          {.window = 2});
  int ok = 0;
  for (int i = 0; i < 100; ++i) ok += a.send(as_bytes(msg(i)), 0ms).has_value();
  auto s = a.stats();
  EXPECT_EQ(ok, 6);  // 2 in the window, 4 held (24 bytes)
  EXPECT_EQ(s.queued_bytes, 24u);
  EXPECT_EQ(s.dropped.refused, 94u);
  expect_balanced(s);
  IPCX_EXPECT_ERRC(a.send(std::vector<std::byte>(25)), Errc::too_large);
  EXPECT_EQ(a.stats().sent, 100u);  // too_large is not a send
}

TEST(Channel, ConfirmedSendReturnsOnceTaken) {
  Watchdog wd(60s);
  auto [a, b] = make_pair({.capacity = 8, .delivery = Delivery::confirmed});
  std::vector<std::string> got;
  std::thread rx([&, &peer_b = b] { got = take(peer_b, 200); });
  for (int i = 0; i < 200; ++i) {
    IPCX_ASSERT_OK(a.send(as_bytes(msg(i)), 10s));
    auto s = a.stats();
    EXPECT_EQ(s.delivered, static_cast<std::uint64_t>(i + 1));
    EXPECT_EQ(s.queued, 0u);
  }
  rx.join();
  EXPECT_EQ(got.size(), 200u);
}

TEST(Channel, RendezvousWaitsForTheReceiver) {
  Watchdog wd(60s);
  auto [a, b] = make_pair({.capacity = 0});
  std::atomic<bool> done{false};
  std::thread tx([&, &peer_a = a] {
    EXPECT_TRUE(peer_a.send(as_bytes("one"), 20s).has_value());
    done = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(done.load());  // nobody took it yet
  auto m = b.recv(10s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "one");
  tx.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(a.stats().delivered, 1u);
}

TEST(Channel, RendezvousTimeoutLeavesNothingHalfDelivered) {
  auto [a, b] = make_pair({.capacity = 0});
  IPCX_EXPECT_ERRC(a.send(as_bytes("late"), 30ms), Errc::timeout);
  auto s = a.stats();
  EXPECT_EQ(s.sent, 1u);
  EXPECT_EQ(s.queued, 1u);  // withdrawn; settles when the receiver has seen the cancel
  // The receiver reads the message and its cancel together: the application never sees it.
  IPCX_EXPECT_ERRC(b.recv(30ms), Errc::timeout);
  EXPECT_EQ(b.stats().received, 0u);
  settle(a);
  s = a.stats();
  EXPECT_EQ(s.dropped.expired, 1u);
  EXPECT_EQ(s.delivered, 0u);
  // The channel goes on.
  std::thread rx([&, &peer_b = b] {
    auto m = peer_b.recv(10s);
    EXPECT_TRUE(m && m->text() == "next");
  });
  IPCX_EXPECT_OK(a.send(as_bytes("next"), 10s));
  rx.join();
  EXPECT_EQ(a.stats().delivered, 1u);
  expect_balanced(a.stats());
}

TEST(Channel, ConfirmedTimeoutOfAHeldMessageRemovesIt) {
  auto [a, b] = make_pair({.capacity = 4, .window = 1, .delivery = Delivery::confirmed}, {.window = 1});
  IPCX_EXPECT_ERRC(a.send(as_bytes("first"), 20ms), Errc::timeout);   // in the transport: cancelled
  IPCX_EXPECT_ERRC(a.send(as_bytes("second"), 20ms), Errc::timeout);  // still held: removed
  auto s = a.stats();
  EXPECT_EQ(s.dropped.expired, 1u);
  EXPECT_EQ(s.queued, 1u);
  EXPECT_EQ(s.queued_bytes, 0u);
  expect_balanced(s);
  IPCX_EXPECT_ERRC(b.recv(20ms), Errc::timeout);
  settle(a);
  EXPECT_EQ(a.stats().dropped.expired, 2u);
  EXPECT_EQ(b.stats().received, 0u);
}

TEST(Channel, PeerClosingCountsWhatItNeverTook) {
  auto [a, b] = make_pair({.capacity = 5, .window = 2}, {.window = 2});
  for (int i = 0; i < 6; ++i) IPCX_ASSERT_OK(a.send(as_bytes(msg(i)), 0ms));
  b.close();
  IPCX_EXPECT_ERRC(a.flush(5s), Errc::closed);
  auto s = a.stats();
  EXPECT_EQ(s.dropped.peer_died, 6u);
  EXPECT_EQ(s.queued, 0u);
  expect_balanced(s);
}

TEST(Channel, BothDirectionsAtOnce) {
  Watchdog wd(60s);
  auto [a, b] = make_pair({.capacity = 4, .window = 4}, {.capacity = 4, .window = 4});
  auto run = [](Channel& ch) {
    int sent = 0, got = 0;
    while (sent < 500 || got < 500) {
      if (sent < 500 && ch.send(as_bytes(msg(sent)), 0ms)) ++sent;
      if (got < 500) {
        if (auto m = ch.recv(1ms)) {
          EXPECT_EQ(m->text(), msg(got));
          ++got;
        }
      }
    }
    EXPECT_TRUE(ch.flush(10s).has_value());
  };
  std::thread t([&, &peer_b = b] { run(peer_b); });
  run(a);
  t.join();
  settle(a);
  settle(b);
  EXPECT_EQ(a.stats().delivered, 500u);
  EXPECT_EQ(b.stats().delivered, 500u);
}

TEST(Channel, TrySendUnderBlockIsWouldBlockAndNotCounted) {
  auto [a, b] = make_pair({.capacity = 1, .window = 1}, {.window = 1});
  IPCX_ASSERT_OK(a.try_send(as_bytes("1")));  // in flight
  IPCX_ASSERT_OK(a.try_send(as_bytes("2")));  // held
  IPCX_EXPECT_ERRC(a.try_send(as_bytes("3")), Errc::would_block);
  EXPECT_EQ(a.stats().sent, 2u);
  EXPECT_EQ(a.stats().dropped.total(), 0u);
}

TEST(Channel, TooLargeForMemoryCapOrTransportIsRefusedAndNotCounted) {
  auto [a, b] = make_pair({.memory_cap = 200, .transport = {.max_message = 100}}, {.transport = {.max_message = 100}});
  IPCX_EXPECT_ERRC(a.send(std::vector<std::byte>(91), 1s), Errc::too_large);  // 91 + 10 > 100
  IPCX_EXPECT_OK(a.send(std::vector<std::byte>(90), 1s));
  auto [c, d] = make_pair({.memory_cap = 50});
  IPCX_EXPECT_ERRC(c.send(std::vector<std::byte>(51), 1s), Errc::too_large);
  EXPECT_EQ(a.stats().sent, 1u);
  EXPECT_EQ(c.stats().sent, 0u);
  auto m = b.recv(1s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->size(), 90u);
}

// An event loop: the descriptor polls readable once acknowledgements came; poll() then hands
// the held messages on.
TEST(Channel, NativeHandleAndPollDriveHeldMessages) {
  auto [a, b] = make_pair({.capacity = 10, .window = 1}, {.window = 1});
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(a.try_send(as_bytes(msg(i))));
  EXPECT_EQ(a.stats().queued_bytes, 12u);  // two held
  ASSERT_TRUE(a.native_handle().has_value());
  for (int i = 0; i < 3; ++i) {
    auto m = b.recv(5s);
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), msg(i));
    pollfd p{.fd = *a.native_handle(), .events = POLLIN, .revents = 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);  // the acknowledgement
    auto n = a.poll();
    ASSERT_TRUE(n) << why(n);
  }
  EXPECT_EQ(a.stats().delivered, 3u);
  EXPECT_EQ(a.stats().queued, 0u);
}

TEST(Channel, PeerErrorMessageClosesWithItsReason) {
  auto p = pipe_pair();
  ASSERT_TRUE(p);
  auto ch = Channel::wrap(std::move(p->first));
  ASSERT_TRUE(ch);
  IPCX_ASSERT_OK(p->second.send(as_bytes("\x7f" "shutting down"), 1s));
  auto r = ch->recv(1s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed);
  EXPECT_NE(r.error().message().find("shutting down"), std::string::npos) << r.error().message();
  EXPECT_FALSE(ch->is_open());
}

// Messages larger than the pipe's buffer, both ways at once: held messages go out in slices
// while each end keeps reading the other's acknowledgements and messages.
TEST(Channel, LargeMessagesBothWaysMakeProgress) {
  Watchdog wd(100s);
  constexpr int kCount = 60;
  const std::size_t size = 256 * 1024;
  auto [a, b] = make_pair({.capacity = 4, .window = 4}, {.capacity = 4, .window = 4});
  auto run = [&](Channel& ch, std::uint32_t seed) {
    int sent = 0, got = 0;
    Message m;
    while (sent < kCount || got < kCount) {
      if (sent < kCount && ch.send(pattern(size, seed + sent), 5ms)) ++sent;
      if (got < kCount && ch.recv(m, 1ms)) {
        EXPECT_EQ(mismatch(m.data, pattern(size, (seed ^ 1u) + got)), "");
        ++got;
      }
    }
    EXPECT_TRUE(ch.flush(30s).has_value());
  };
  std::thread t([&, &peer_b = b] { run(peer_b, 1001); });
  run(a, 1000);
  t.join();
  settle(a);
  settle(b);
  EXPECT_EQ(a.stats().delivered, static_cast<std::uint64_t>(kCount));
  EXPECT_EQ(b.stats().delivered, static_cast<std::uint64_t>(kCount));
}

TEST(Channel, PeerClosingAfterSendingLeavesWhatArrivedToReceive) {
  auto [a, b] = make_pair({.window = 8}, {.window = 8});
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(a.send(as_bytes(msg(i)), 1s));
  a.close();
  for (int i = 0; i < 3; ++i) {
    auto m = b.recv(1s);
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), msg(i));
  }
  IPCX_EXPECT_ERRC(b.recv(1s), Errc::closed);
  // Closing this end drops nothing from its counters: what the peer never acknowledged stays queued.
  auto s = a.stats();
  EXPECT_EQ(s.sent, 3u);
  EXPECT_EQ(s.queued, 3u);
  EXPECT_EQ(s.dropped.total(), 0u);
  IPCX_EXPECT_ERRC(a.send(as_bytes("x")), Errc::closed);
}

// ---- bad input from a raw peer ----

std::vector<std::byte> data_msg(std::uint8_t flags, std::uint64_t seq, std::string_view payload = "x") {
  std::vector<std::byte> out;
  wire::encode_data(out, flags, seq, as_bytes(payload));
  return out;
}
std::vector<std::byte> ack_msg(std::uint64_t r, std::uint64_t d) {
  std::byte b[wire::ack_size];
  wire::encode_ack(b, r, d);
  return {b, b + wire::ack_size};
}

struct Bad {
  const char* name;
  std::vector<std::vector<std::byte>> input;
};
class ChannelBadInput : public ::testing::TestWithParam<Bad> {};

TEST_P(ChannelBadInput, IsAProtocolErrorAndClosesTheChannel) {
  auto p = pipe_pair();
  ASSERT_TRUE(p);
  auto ch = Channel::wrap(std::move(p->first), {.window = 4});
  ASSERT_TRUE(ch);
  Connection raw = std::move(p->second);
  for (auto& m : GetParam().input) IPCX_ASSERT_OK(raw.send(m, 1s));
  Result<void> r;
  for (int i = 0; i < 10 && r; ++i) {
    auto m = ch->recv(1s);
    if (!m) r = std::unexpected(m.error());
  }
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
  EXPECT_FALSE(ch->is_open());
  IPCX_EXPECT_ERRC(ch->send(as_bytes("x")), Errc::protocol);
  // The peer is told why before the channel closes.
  bool told = false;
  for (int i = 0; i < 20 && !told; ++i) {  // acknowledgements of what was taken come first
    auto m = raw.recv(1s);
    ASSERT_TRUE(m) << ipcx::test::why(m);
    told = !m->data.empty() && m->data[0] == std::byte(messaging::Kind::error);
  }
  EXPECT_TRUE(told);
}

INSTANTIATE_TEST_SUITE_P(
    All, ChannelBadInput,
    ::testing::Values(Bad{"empty", {{}}}, Bad{"unknown_kind", {{std::byte{0x55}, std::byte{0}}}},
                      Bad{"short_header", {{std::byte{0x01}, std::byte{0}, std::byte{1}}}},
                      Bad{"unknown_flags", {data_msg(0x80, 1)}},
                      Bad{"sequence_backwards", {data_msg(0, 1), data_msg(0, 2), data_msg(0, 1)}},
                      Bad{"sequence_skips", {data_msg(0, 2)}},
                      Bad{"cancel_never_sent", {data_msg(wire::cancel, 7, "")}},
                      Bad{"cancel_with_payload", {data_msg(0, 1), data_msg(wire::cancel, 1, "x")}},
                      Bad{"ack_never_sent", {ack_msg(1, 0)}},
                      Bad{"ack_wrong_size", {{std::byte{0x02}, std::byte{0}, std::byte{0}}}},
                      Bad{"discard_never_cancelled", {ack_msg(0, 1)}}),
    [](const auto& pinfo) { return std::string(pinfo.param.name); });

// The receiver's application never takes the messages beyond the window a sender runs ahead of.
TEST(Channel, BeyondWindowIsCheckedWhileTheApplicationTakesNothing) {
  auto p = pipe_pair();
  ASSERT_TRUE(p);
  auto ch = Channel::wrap(std::move(p->first), {.window = 2});
  ASSERT_TRUE(ch);
  for (std::uint64_t s = 1; s <= 3; ++s) IPCX_ASSERT_OK(p->second.send(data_msg(0, s), 1s));
  auto n = ch->poll(1s);
  // poll reads what arrived: the third message is beyond the window of 2.
  for (int i = 0; i < 3 && n; ++i) n = ch->poll(100ms);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, Errc::protocol);
}

}  // namespace
}  // namespace ipcx::test
