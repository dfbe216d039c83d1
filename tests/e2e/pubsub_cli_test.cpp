// `ipcx pub`, `ipcx sub` and `ipcx stat`: the real binary against each other and the API.
#include <atomic>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <ipcx/pubsub.hpp>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

TEST(PubSubCli, SubPrintsWhatPubPublishes) {
  Watchdog wd(60s);
  ScratchDir dir;
  const auto url = "unix://" + dir.file("p.sock");
  auto pub = Child::cli({"pub", url, "eur.usd", "1.09", "--wait-subscribers", "2", "--timeout", "20000"});
  auto sub = Child::cli({"sub", url, "eur.", "--count", "1", "--timeout", "20000"});
  auto other = Child::cli({"sub", url, "usd.", "--timeout", "20000"});
  EXPECT_EQ(sub.finish(), 0) << sub.err();
  EXPECT_EQ(sub.out(), "eur.usd 1.09\n");
  EXPECT_EQ(pub.finish(), 0) << pub.err();
  // The other subscriber matched nothing; it ends with the publisher, having printed nothing.
  EXPECT_EQ(other.finish(), 0) << other.err();
  EXPECT_EQ(other.out(), "");
}

TEST(PubSubCli, PubReadsLinesFromStdin) {
  Watchdog wd(60s);
  ScratchDir dir;
  const auto url = "unix://" + dir.file("p.sock");
  auto pub = Child::shell("printf 'a\\nb b\\n\\nc\\n' | " + std::string(IPCX_CLI) + " pub " + url +
                          " t - --wait-subscribers 1 --timeout 20000");
  auto sub = Child::cli({"sub", url, "", "--timeout", "20000"});
  EXPECT_EQ(pub.finish(), 0) << pub.err();
  EXPECT_EQ(sub.finish(), 0) << sub.err();
  EXPECT_EQ(sub.out(), "t a\nt b b\nt \nt c\n");
}

TEST(PubSubCli, SubSaysWhenPublicationsWereDropped) {
  Watchdog wd(60s);
  ScratchDir dir;
  PublisherOptions o;
  o.window = 1;
  o.queue = {.capacity = 1, .overflow = Overflow::drop_oldest};
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"), o);
  ASSERT_TRUE(pub.has_value());
  auto sub = Child::cli({"sub", pub->url(), "", "--count", "2"});
  ASSERT_TRUE(pub->wait_subscribers(1, 20s).has_value());
  // Window 1 and a queue of 1: of these 5, the subscriber gets the first and the last.
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(pub->publish("t", as_bytes(std::to_string(i))).has_value());
  std::atomic<bool> done{false};
  std::thread serve([&] {
    while (!done) (void)pub->poll(5ms);
  });
  const int rc = sub.finish();
  done = true;
  serve.join();
  EXPECT_EQ(rc, 0) << sub.err();
  EXPECT_EQ(sub.out(), "t 1\nt 5\n");
  EXPECT_NE(sub.err().find("3 publication(s) dropped"), std::string::npos) << sub.err();
}

TEST(PubSubCli, StatPrintsTheCounters) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto pub = Publisher::bind("unix://" + dir.file("p.sock"));
  ASSERT_TRUE(pub.has_value());
  ASSERT_TRUE(pub->publish("t", as_bytes("nobody listens")).has_value());
  std::atomic<bool> done{false};
  std::thread serve([&] {
    while (!done) (void)pub->poll(5ms);
  });
  auto json = run_cli({"stat", pub->url(), "--json"});
  auto text = run_cli({"stat", pub->url()});
  done = true;
  serve.join();
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_NE(json.out.find(R"("sent":1)"), std::string::npos) << json.out;
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("sent 1\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("dropped.no_route 1\n"), std::string::npos) << text.out;
}

TEST(PubSubCli, BadArgumentsAreOneLineErrors) {
  ScratchDir dir;
  auto r = run_cli({"pub", "unix://" + dir.file("p.sock"), std::string(256, 't'), "x"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("topic of 256 bytes"), std::string::npos) << r.err;
  auto s = run_cli({"stat", "unix://" + dir.file("none.sock"), "--timeout", "100"});
  EXPECT_EQ(s.code, 1);
  EXPECT_EQ(count_lines(s.err), 1) << s.err;
}

}  // namespace
}  // namespace ipcx::test
