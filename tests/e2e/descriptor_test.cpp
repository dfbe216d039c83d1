// `ipcx listen` under a small RLIMIT_NOFILE: more clients than descriptors, and a client that
// floods it with descriptors nobody announced. The listener must shed with a reason, stay up,
// and serve again once descriptors are free.
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/attack_util.hpp"
#include "os/socket.hpp"
#include "e2e/cli_harness.hpp"
#include "test_util.hpp"
#include "wire/frame.hpp"

using namespace std::chrono_literals;
using ipcx::test::Child;
using ipcx::test::run_cli;
using ipcx::test::ScratchDir;
using ipcx::test::Watchdog;

namespace {

struct Held {
  int held = -1, refused = -1, failed = -1;
};

Held parse_held(const std::string& out) {
  Held h;
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(held (\d+) refused (\d+) failed (\d+))")))
    h = {std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3])};
  return h;
}

// 100 clients connect and hold against a listener limited to 64 descriptors. `extra` picks the
// limit that bites first.
void hundred_clients_against_64_descriptors(const std::string& extra, const std::vector<std::string>& reasons) {
  Watchdog wd(90s);
  ScratchDir dir;
  auto sock = dir.file("s");
  auto url = "unix://" + sock;
  auto server = Child::shell(fmt::format("ulimit -n 64 && exec {} listen {} --echo {} >/dev/null", IPCX_CLI, url, extra));
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();

  auto holders = Child::start({IPCX_HOSTILE_PEER, "hold", url, "100", "1500"});
  ASSERT_TRUE(holders.wait_stdout("held ", 60s)) << holders.out() << holders.err();
  auto h = parse_held(holders.out());
  EXPECT_EQ(h.failed, 0) << holders.out();
  EXPECT_EQ(h.held + h.refused, 100) << holders.out();
  EXPECT_GT(h.refused, 0) << "64 descriptors cannot hold 100 clients:\n" << holders.out();
  EXPECT_GT(h.held, 0) << holders.out();
  // Every refusal carries a reason the client can read, mapped to an error code.
  std::regex refusal(R"(refused: ([^:]+): (.*))");
  int seen = 0;
  for (std::sregex_iterator it(holders.out().begin(), holders.out().end(), refusal), end; it != end; ++it, ++seen) {
    std::string code = (*it)[1], message = (*it)[2];
    EXPECT_TRUE(code == "connection refused" || code == "resource exhausted") << it->str();
    bool named = false;
    for (auto& r : reasons) named = named || message.find(r) != std::string::npos;
    EXPECT_TRUE(named) << "no readable reason in: " << it->str();
  }
  EXPECT_EQ(seen, h.refused);
  EXPECT_TRUE(ipcx::test::alive(server.pid())) << server.err();

  holders.signal(SIGKILL);
  (void)holders.finish();
  // Descriptors are free again: a new client is served.
  auto ping = run_cli({"ping", url, "--count", "5", "--timeout", "10000"});
  EXPECT_EQ(ping.code, 0) << ping.err;
  EXPECT_NE(ping.out.find("5 round trips"), std::string::npos) << ping.out;

  server.signal(SIGTERM);
  EXPECT_LT(server.finish(), 128) << server.err();
}

}  // namespace

// --max-connections above what the descriptors allow: accept(2) fails with EMFILE and the
// listener sheds the waiting clients with "out of resources".
TEST(DescriptorExhaustion, ListenerShedsWithAReasonAndRecovers) {
  hundred_clients_against_64_descriptors("--max-connections 1000", {"out of descriptors", "out of resources"});
}

// The default connection limit comes from RLIMIT_NOFILE, so the limit bites before EMFILE.
TEST(DescriptorExhaustion, DefaultConnectionLimitFollowsTheDescriptorLimit) {
  hundred_clients_against_64_descriptors("", {"connection limit", "out of descriptors", "out of resources"});
}

// One client sends 4 x 252 descriptors with frames that announce none, to fill the listener's
// descriptor table. It is dropped with a line on stderr; the listener serves the next client.
TEST(DescriptorExhaustion, UnannouncedDescriptorFloodDropsOnlyThatClient) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto sock = dir.file("s");
  auto url = "unix://" + sock;
  auto server = Child::shell(fmt::format("ulimit -n 1024 && exec {} listen {} --echo >/dev/null", IPCX_CLI, url));
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();

  ipcx::Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(devnull.valid());
  auto fd = ipcx::test::raw_unix_client(sock);
  ASSERT_TRUE(fd.valid());
  auto header = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .fd_count = 0, .length = 1});
  std::vector<std::byte> frame(header.begin(), header.end());
  frame.push_back(std::byte{'x'});
  constexpr int kPerBatch = 252;
  int sent_batches = 0;
  for (int batch = 0; batch < 4; ++batch) {
    std::vector<int> fds(kPerBatch, devnull.get());
    iovec iov{frame.data(), frame.size()};
    // Once dropped, the rest fail with EPIPE: that is the listener defending itself.
    if (ipcx::os::send_with_fds(fd.get(), &iov, 1, fds, false) != static_cast<ssize_t>(frame.size())) break;
    ++sent_batches;
  }
  EXPECT_GE(sent_batches, 1);
  EXPECT_TRUE(server.wait_stderr("dropping client")) << server.err();
  EXPECT_TRUE(server.err().find("descriptors") != std::string::npos) << server.err();
  fd.reset();
  EXPECT_TRUE(ipcx::test::alive(server.pid()));

  auto ping = run_cli({"ping", url, "--count", "5", "--timeout", "10000"});
  EXPECT_EQ(ping.code, 0) << ping.err;
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 1) << "a dropped client makes the exit status non-zero\n" << server.err();
  EXPECT_EQ(ipcx::test::count_of(server.err(), "dropping client"), 1) << server.err();
}
