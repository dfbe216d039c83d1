// The CLI at its edges: many listeners racing for one stale socket path, numbers out of range
// in URLs, and what `ipcx recv/listen pipe:` do with truncated, garbage and empty input.
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/attack_util.hpp"
#include "os/socket.hpp"
#include "e2e/cli_harness.hpp"
#include "test_util.hpp"
#include "wire/frame.hpp"

using namespace std::chrono_literals;
using ipcx::test::Child;
using ipcx::test::count_lines;
using ipcx::test::run_cli;
using ipcx::test::run_shell;
using ipcx::test::ScratchDir;
using ipcx::test::Watchdog;

namespace {

// What a server killed with SIGKILL leaves: a socket file nobody listens on.
void make_stale_socket(const std::string& path) {
  ipcx::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
}

std::string frame(std::string_view payload) {
  auto h = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = static_cast<std::uint32_t>(payload.size())});
  return std::string(reinterpret_cast<const char*>(h.data()), h.size()) + std::string(payload);
}

}  // namespace

// 40 `ipcx listen` started at once on a stale socket path: exactly one takes it over, every
// other one exits non-zero saying the address is in use, and clients reach the winner.
TEST(StalePathStart, FortyConcurrentListenersExactlyOneWins) {
  Watchdog wd(110s);
  ScratchDir dir, gate_dir;
  auto sock = dir.file("s");
  // A starting gate: each starter waits for a line on this FIFO, then all are released with
  // one write, so the 40 really start together.
  auto gate_path = gate_dir.file("gate");
  ASSERT_EQ(::mkfifo(gate_path.c_str(), 0600), 0);
  ipcx::Fd gate(::open(gate_path.c_str(), O_RDWR | O_CLOEXEC));  // readers' opens never block
  ASSERT_TRUE(gate.valid());
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    make_stale_socket(sock);
    std::vector<Child> starters;
    for (int i = 0; i < 40; ++i)
      starters.push_back(Child::shell(fmt::format("read go < {}; exec {} listen unix://{} --echo", gate_path, IPCX_CLI, sock)));
    std::this_thread::sleep_for(200ms);  // most are waiting at the gate by now; the rest find a line
    const std::string lines(40, '\n');
    ASSERT_EQ(::write(gate.get(), lines.data(), lines.size()), 40);
    std::vector<std::size_t> winners;
    for (std::size_t i = 0; i < starters.size(); ++i) {
      // True once it listens; false once it has exited without listening.
      if (starters[i].wait_stderr("listening on ", 30s)) winners.push_back(i);
    }
    ASSERT_EQ(winners.size(), 1u) << "listeners that claimed the address: " << winners.size();
    for (std::size_t i = 0; i < starters.size(); ++i) {
      if (i == winners[0]) continue;
      EXPECT_NE(starters[i].finish(), 0) << starters[i].err();
      EXPECT_NE(starters[i].err().find("address in use"), std::string::npos) << starters[i].err();
      EXPECT_EQ(count_lines(starters[i].err()), 1) << starters[i].err();
    }
    auto& winner = starters[winners[0]];
    EXPECT_TRUE(ipcx::test::alive(winner.pid()));
    auto ping = run_cli({"ping", "unix://" + sock, "--count", "3", "--timeout", "10000"});
    EXPECT_EQ(ping.code, 0) << ping.err;
    winner.signal(SIGTERM);
    EXPECT_EQ(winner.finish(), 0) << winner.err();
    // The winner cleans up after itself: no socket, no lock file.
    EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "left in " << dir.path();
  }
}

TEST(UrlRanges, CliRefusesNumbersOutOfRange) {
  auto port = run_cli({"listen", "tcp://:99999"});
  EXPECT_NE(port.code, 0);
  EXPECT_EQ(count_lines(port.err), 1) << port.err;
  EXPECT_NE(port.err.find("99999"), std::string::npos) << port.err;
  EXPECT_NE(port.err.find("invalid URL"), std::string::npos) << port.err;

  // 2^32 + 1 would wrap to pid 1 in 32 bits (as root: a signal to init).
  auto pid = run_cli({"send", "signal://4294967297", "1"});
  EXPECT_NE(pid.code, 0);
  EXPECT_EQ(count_lines(pid.err), 1) << pid.err;
  EXPECT_NE(pid.err.find("4294967297"), std::string::npos) << pid.err;
}

// A NUL cannot be typed on a command line; through the API it would cut the path short.
TEST(UrlRanges, EmbeddedNulIsAnInvalidUrl) {
  ScratchDir dir;
  std::string url = "unix://" + dir.file("x") + std::string(1, '\0') + "y";
  auto l = ipcx::listen(url);
  ASSERT_FALSE(l.has_value());
  EXPECT_EQ(l.error().code, ipcx::Errc::invalid_url) << l.error().message();
  auto c = ipcx::connect(url);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code, ipcx::Errc::invalid_url) << c.error().message();
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "nothing may be created at the truncated path";
}

TEST(UrlRanges, TcpWithoutHostListensOnLoopbackOnly) {
  auto l = ipcx::listen("tcp://:0");
  ASSERT_TRUE(l.has_value()) << l.error().message();
  EXPECT_TRUE(l->url().starts_with("tcp://127.0.0.1:")) << l->url();
  EXPECT_FALSE(l->capabilities().remote);
  auto c = ipcx::connect(l->url());
  ASSERT_TRUE(c.has_value()) << c.error().message();

  auto cli = Child::cli({"listen", "tcp://:0"});
  ASSERT_TRUE(cli.wait_stderr("listening on ")) << cli.err();
  EXPECT_NE(cli.err().find("listening on tcp://127.0.0.1:"), std::string::npos) << cli.err();
  EXPECT_EQ(cli.err().find("reachable from other machines"), std::string::npos) << cli.err();
  cli.signal(SIGTERM);
  EXPECT_EQ(cli.finish(), 0);
}

TEST(UrlRanges, WildcardTcpIsRemoteAndTheCliWarns) {
  auto l = ipcx::listen("tcp://0.0.0.0:0");
  ASSERT_TRUE(l.has_value()) << l.error().message();
  EXPECT_TRUE(l->capabilities().remote) << l->url();

  auto cli = Child::cli({"listen", "tcp://0.0.0.0:0"});
  ASSERT_TRUE(cli.wait_stderr("listening on ")) << cli.err();
  EXPECT_NE(cli.err().find("reachable from other machines"), std::string::npos) << cli.err();
  // The warning comes before the readiness line, so a script sees it before it can connect.
  EXPECT_LT(cli.err().find("reachable from other machines"), cli.err().find("listening on ")) << cli.err();
  cli.signal(SIGTERM);
  EXPECT_EQ(cli.finish(), 0);
}

// ---- pipe: on stdin -----------------------------------------------------------------------------

TEST(CliStdin, TruncatedFrameFailsWithAClearMessage) {
  auto r = run_shell(fmt::format(
      "printf 'IX\\001\\001\\000\\000\\000\\000\\020\\000\\000\\000\\000\\000\\000\\000half' | {} recv pipe:", IPCX_CLI));
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(r.err.find("truncated") != std::string::npos || r.err.find("mid-frame") != std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliStdin, GarbageFails) {
  auto r = run_shell(fmt::format("printf 'this is not an ipcx frame' | {} recv pipe:", IPCX_CLI));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("bad magic"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliStdin, TwoFramesFromAFileArePrintedAndExitZero) {
  ScratchDir dir;
  auto file = dir.file("frames");
  std::ofstream(file, std::ios::binary) << frame("first") << frame("second");
  auto r = run_shell(fmt::format("{} recv pipe: < {}", IPCX_CLI, file));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "first\nsecond\n");
}

TEST(CliStdin, EmptyInputExitsZero) {
  auto r = run_shell(fmt::format("{} recv pipe: < /dev/null", IPCX_CLI));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliStdin, ListenOnPipeWhoseOnlyClientIsDroppedFails) {
  auto r = run_shell(fmt::format("printf 'garbage garbage garbage' | {} listen pipe:", IPCX_CLI));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("bad magic"), std::string::npos) << r.err;
}

// A frame that announces 2 descriptors with 1 attached: the listener names the mismatch.
TEST(CliFds, FrameAnnouncingMoreDescriptorsThanArrivedIsNamed) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto sock = dir.file("s");
  auto server = Child::cli({"listen", "unix://" + sock});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  auto fd = ipcx::test::raw_unix_client(sock);
  ASSERT_TRUE(fd.valid());
  ipcx::Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto bytes = [] {
    auto h = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .fd_count = 2, .length = 2});
    std::string s(reinterpret_cast<const char*>(h.data()), h.size());
    return s + "hi";
  }();
  iovec iov{bytes.data(), bytes.size()};
  const int one[] = {devnull.get()};
  ASSERT_EQ(ipcx::os::send_with_fds(fd.get(), &iov, 1, one, false), static_cast<ssize_t>(bytes.size()));
  EXPECT_TRUE(server.wait_stderr("announces 2 fds but 1 arrived")) << server.err();
  EXPECT_NE(server.err().find("dropping client"), std::string::npos) << server.err();
  EXPECT_EQ(server.out(), "") << "the bad frame must not be printed";
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 1) << server.err();
}
