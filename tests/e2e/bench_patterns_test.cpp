// The pattern rows of `ipcx bench` count only messages that arrived intact: every receiver checks
// each message's size, sequence number and content. These tests feed the checks a lost, a
// repeated, a damaged and a short message, over a real Unix socket pair, and expect each to fail
// the measurement rather than pass unnoticed.
#include <cstring>
#include <vector>

#include <sys/socket.h>

#include <gtest/gtest.h>

#include "bench/rows_patterns.hpp"
#include "unit/support.hpp"

namespace {

using namespace ipcx;
using namespace ipcx::bench;
using namespace ipcx::bench::patterns;

constexpr std::size_t kSize = 64;

struct Pair {
  LinkPair a, b;  // a.out -> b.in and b.out -> a.in
};

Pair socket_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {raw_stream_links(Fd(sv[0]), kSize), raw_stream_links(Fd(sv[1]), kSize)};
}

std::vector<std::byte> copy(std::span<const std::byte> s) { return {s.begin(), s.end()}; }

TEST(BenchPatterns, InOrderMessagesPass) {
  auto p = socket_pair();
  Stamps out(kSize), in(kSize);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(p.a.out->send(out.next()));
  for (int i = 0; i < 100; ++i) {
    auto m = p.b.in->recv();
    ASSERT_TRUE(m) << m.error().message();
    IPCX_ASSERT_OK(in.check(*m));
  }
  EXPECT_EQ(in.received(), 100u);
}

TEST(BenchPatterns, LostMessageFails) {
  auto p = socket_pair();
  Stamps out(kSize), in(kSize);
  ASSERT_TRUE(p.a.out->send(out.next()));
  (void)out.next();  // number 1 never sent
  ASSERT_TRUE(p.a.out->send(out.next()));
  auto m = p.b.in->recv();
  ASSERT_TRUE(m);
  IPCX_ASSERT_OK(in.check(*m));
  m = p.b.in->recv();
  ASSERT_TRUE(m);
  auto r = in.check(*m);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol);
  EXPECT_NE(r.error().message().find("message 1 carries number 2"), std::string::npos) << r.error().message();
}

TEST(BenchPatterns, RepeatedMessageFails) {
  auto p = socket_pair();
  Stamps out(kSize), in(kSize);
  auto first = copy(out.next());
  ASSERT_TRUE(p.a.out->send(first));
  ASSERT_TRUE(p.a.out->send(first));
  auto m = p.b.in->recv();
  ASSERT_TRUE(m);
  IPCX_ASSERT_OK(in.check(*m));
  m = p.b.in->recv();
  ASSERT_TRUE(m);
  EXPECT_FALSE(in.check(*m));
}

TEST(BenchPatterns, DamagedOrShortMessageFails) {
  Stamps out(kSize), in(kSize);
  auto damaged = copy(out.next());
  damaged[kSize - 1] ^= std::byte{1};  // the number is right, the last byte is not
  auto r = in.check(damaged);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("content damaged"), std::string::npos) << r.error().message();
  auto shorter = copy(out.next());
  shorter.pop_back();
  EXPECT_FALSE(in.check(shorter));
}

// The checked channel the push/pull rows run on: a message missing in the middle of a burst
// fails recv(), whichever end it was lost at.
TEST(BenchPatterns, CheckedChannelFailsOnGap) {
  auto p = socket_pair();
  CheckedChannel receiver(std::move(p.b.out), std::move(p.b.in), kSize);
  Stamps out(kSize);
  for (int i = 0; i < 10; ++i) {
    auto m = out.next();
    if (i != 5) {
      ASSERT_TRUE(p.a.out->send(m));
    }
  }
  auto r = receiver.recv_many(9, kSize);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::protocol);
}

// Join messages (what a publisher repeats until every subscriber is in) are never data.
TEST(BenchPatterns, JoinIsNotData) {
  Stamps out(kSize), in(kSize);
  auto j = copy(out.join());
  EXPECT_TRUE(Stamps::is_join(j));
  EXPECT_FALSE(in.check(j));
  auto d = copy(out.next());
  EXPECT_FALSE(Stamps::is_join(d));
  IPCX_EXPECT_OK(in.check(d));
}

}  // namespace
