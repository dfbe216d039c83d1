// Mailboxes: posts that outlive their sender process, overflow policies and their counters.
#include <fcntl.h>
#include <grp.h>
#include <mqueue.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "server_harness.hpp"
#include "e2e/mq_util.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using namespace mqtest;
using test::unique_name;

// ---- Mailbox --------------------------------------------------------------------------------

// A sender process posts and exits; a receiver process started after it takes every post, in order.
TEST(MqMailbox, PostsOutliveTheSenderProcess) {
  test::Watchdog wd(60s);
  auto name = unique_name("box");
  Cleanup c{name};
  constexpr int kCount = 10;
  pid_t sender = ::fork();
  if (sender == 0) {
    auto box = Mailbox::open(name, {.capacity = kCount, .message_size = 64});
    if (!box) ::_exit(2);
    for (int i = 0; i < kCount; ++i)
      if (!box->post(as_bytes(fmt::format("post {}", i)), 5s)) ::_exit(3);
    ::_exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(sender, &st, 0), sender);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  pid_t receiver = ::fork();
  if (receiver == 0) {
    auto box = Mailbox::open(name);
    if (!box) ::_exit(2);
    for (int i = 0; i < kCount; ++i) {
      auto m = box->take(5s);
      if (!m) ::_exit(3);
      if (m->text() != fmt::format("post {}", i)) ::_exit(4);
    }
    if (box->try_take() || box->stats().received != kCount) ::_exit(5);
    ::_exit(0);
  }
  ASSERT_EQ(::waitpid(receiver, &st, 0), receiver);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "receiver exit " << WEXITSTATUS(st);
}

TEST(MqMailbox, OverflowPoliciesAreAppliedAndCounted) {
  test::Watchdog wd(30s);
  auto take_all = [](Mailbox& b) {
    std::vector<std::string> out;
    while (auto m = b.try_take()) out.emplace_back(m->text());
    return out;
  };
  {
    auto name = unique_name("box");
    Cleanup c{name};
    auto b = Mailbox::open(name, {.capacity = 2, .message_size = 16, .overflow = Overflow::fail});
    IPCX_ASSERT_OK(b);
    IPCX_ASSERT_OK(b->post(as_bytes("a")));
    IPCX_ASSERT_OK(b->post(as_bytes("b")));
    IPCX_EXPECT_ERRC(b->post(as_bytes("c")), Errc::would_block);
    auto s = b->stats();
    EXPECT_EQ(s.sent, 2u);
    EXPECT_EQ(s.dropped.refused, 1u);
    EXPECT_EQ(s.queued, 2u);
    EXPECT_EQ(take_all(*b), (std::vector<std::string>{"a", "b"}));
  }
  {
    auto name = unique_name("box");
    Cleanup c{name};
    auto b = Mailbox::open(name, {.capacity = 2, .message_size = 16, .overflow = Overflow::drop_newest});
    IPCX_ASSERT_OK(b);
    for (auto t : {"a", "b", "c", "d"}) IPCX_ASSERT_OK(b->post(as_bytes(t)));
    EXPECT_EQ(b->stats().dropped.newest, 2u);
    EXPECT_EQ(take_all(*b), (std::vector<std::string>{"a", "b"}));
  }
  {
    auto name = unique_name("box");
    Cleanup c{name};
    auto b = Mailbox::open(name, {.capacity = 2, .message_size = 16, .overflow = Overflow::drop_oldest});
    IPCX_ASSERT_OK(b);
    for (auto t : {"a", "b", "c", "d"}) IPCX_ASSERT_OK(b->post(as_bytes(t)));
    auto s = b->stats();
    EXPECT_EQ(s.dropped.oldest, 2u);
    EXPECT_EQ(s.sent, 4u);
    EXPECT_EQ(take_all(*b), (std::vector<std::string>{"c", "d"}));
    EXPECT_EQ(b->stats().received, 2u);
  }
  {
    auto name = unique_name("box");
    Cleanup c{name};
    auto b = Mailbox::open(name, {.capacity = 1, .message_size = 16});
    IPCX_ASSERT_OK(b);
    IPCX_ASSERT_OK(b->post(as_bytes("a")));
    IPCX_EXPECT_ERRC(b->post(as_bytes("b"), 20ms), Errc::timeout);
    IPCX_EXPECT_ERRC(b->post(std::vector<std::byte>(17)), Errc::too_large);
    auto s = b->stats();
    EXPECT_EQ(s.sent, 1u);
    EXPECT_EQ(s.dropped.total(), 0u);
  }
}

}  // namespace
}  // namespace ipcx
