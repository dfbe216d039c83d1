// End-to-end tests: the real `ipcx` binary in separate processes, real kernel objects,
// real shell tools (sh, socat), real signals (SIGTERM, SIGKILL).
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <sys/socket.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using ipcx::test::Child;
using ipcx::test::count_lines;
using ipcx::test::run_cli;
using ipcx::test::run_shell;
using ipcx::test::ScratchDir;

namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

}  // namespace

// listen / send / SIGTERM over every connection-oriented scheme.
class SchemeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SchemeTest, SendIsPrintedByListenAndSigtermCleansUp) {
  ScratchDir dir;
  std::string url = GetParam();
  std::string path;
  if (url == "unix") {
    url = "unix://" + (path = dir.file("s"));
  } else if (url == "unix+seq") {
    url = "unix+seq://" + (path = dir.file("s"));
  } else if (url == "fifo") {
    url = "fifo://" + (path = dir.file("f"));
  } else if (url == "abstract") {
    url = "unix:@" + ipcx::test::unique_name("e2e");
  } else if (url == "shm") {
    url = "shm://" + ipcx::test::unique_name("e2e");
  } else {
    url = "tcp://127.0.0.1:0";
  }

  auto server = Child::cli({"listen", url});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  if (url.starts_with("tcp")) {  // the real port is in the readiness line
    auto pos = server.err().find("listening on ") + 13;
    url = server.err().substr(pos, server.err().find('\n', pos) - pos);
  }
  if (!path.empty()) {
    EXPECT_TRUE(exists(path));
  }

  auto sent = run_cli({"send", url, "hello", "from", "e2e"});
  EXPECT_EQ(sent.code, 0) << sent.err;
  EXPECT_TRUE(server.wait_stdout("hello from e2e\n")) << server.out() << server.err();

  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 0) << server.err();
  if (!path.empty()) {
    EXPECT_FALSE(exists(path)) << "listener left " << path;
    EXPECT_FALSE(exists(path + ".back"));
  }
}

INSTANTIATE_TEST_SUITE_P(Schemes, SchemeTest, ::testing::Values("unix", "abstract", "unix+seq", "tcp", "fifo", "shm"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           std::string n = p.param;
                           std::replace(n.begin(), n.end(), '+', '_');
                           return n;
                         });

TEST(Cli, PingAgainstEchoPrintsPercentiles) {
  ScratchDir dir;
  const auto shm = ipcx::test::unique_name("ping");
  for (std::string url : {"unix://" + dir.file("s"), "fifo://" + dir.file("f"), "unix+seq://" + dir.file("q"),
                          "shm://" + shm, "shm://" + shm + "-spin?wait=spin", "shm://" + shm + "-block?wait=block"}) {
    auto server = Child::cli({"listen", url, "--echo"});
    ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
    auto ping = run_cli({"ping", url, "--count", "50", "--size", "100"});
    EXPECT_EQ(ping.code, 0) << ping.err;
    EXPECT_NE(ping.out.find("50 round trips of 100 B"), std::string::npos) << ping.out;
    EXPECT_NE(ping.out.find("p50"), std::string::npos);
    EXPECT_NE(ping.out.find("p99"), std::string::npos);
    server.signal(SIGINT);
    EXPECT_EQ(server.finish(), 0);
  }
}

TEST(Cli, ShellEchoIntoFifoIsReceivedAsLines) {
  ScratchDir dir;
  auto fifo = dir.file("f");
  auto recv = Child::cli({"recv", "fifo://" + fifo, "--lines", "--count", "3", "--timeout", "10000"});
  ASSERT_TRUE(recv.wait_stderr("listening on "));
  auto sh = run_shell("echo hi > " + fifo + " && echo there > " + fifo + " && printf 'no newline' > " + fifo);
  EXPECT_EQ(sh.code, 0) << sh.err;
  EXPECT_EQ(recv.finish(), 0) << recv.err();
  EXPECT_EQ(recv.out(), "hi\nthere\nno newline\n");
  EXPECT_FALSE(exists(fifo));
}

TEST(Cli, SendLinesIsReadableByCat) {
  ScratchDir dir;
  auto fifo = dir.file("plain");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto cat = Child::shell("cat " + fifo);
  auto sent = Child::shell("printf 'one\\ntwo\\n' | " + std::string(IPCX_CLI) + " send fifo://" + fifo + " --lines");
  EXPECT_EQ(sent.finish(), 0) << sent.err();
  EXPECT_EQ(cat.finish(), 0);
  EXPECT_EQ(cat.out(), "one\ntwo\n");
}

TEST(Cli, FrameWrittenWithSocatIsDecoded) {
  ScratchDir dir;
  auto sock = dir.file("s");
  auto recv = Child::cli({"recv", "unix://" + sock, "--count", "2", "--timeout", "10000"});
  ASSERT_TRUE(recv.wait_stderr("listening on "));
  // docs/wire.md: magic "IX", version 1, type 1 (data), flags 0, fd_count 0, length LE, reserved 0.
  auto sh = run_shell(
      "printf 'IX\\001\\001\\000\\000\\000\\000\\005\\000\\000\\000\\000\\000\\000\\000hello"
      "IX\\001\\001\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000' | socat - UNIX-CONNECT:" + sock);
  EXPECT_EQ(sh.code, 0) << sh.err;
  EXPECT_EQ(recv.finish(), 0) << recv.err();
  EXPECT_EQ(recv.out(), "hello\n\n");  // then the empty message
}

TEST(Cli, FrameOverTcpFromSocat) {
  auto recv = Child::cli({"recv", "tcp://127.0.0.1:0", "--count", "1", "--timeout", "10000"});
  ASSERT_TRUE(recv.wait_stderr("listening on "));
  auto pos = recv.err().find("127.0.0.1:") + 10;
  auto port = recv.err().substr(pos, recv.err().find('\n', pos) - pos);
  auto sh = run_shell("printf 'IX\\001\\001\\000\\000\\000\\000\\003\\000\\000\\000\\000\\000\\000\\000tcp' | socat - TCP:127.0.0.1:" + port);
  EXPECT_EQ(sh.code, 0) << sh.err;
  EXPECT_EQ(recv.finish(), 0) << recv.err();
  EXPECT_EQ(recv.out(), "tcp\n");
}

TEST(Cli, AnonymousPipeBetweenTwoProcesses) {
  auto r = run_shell(std::string(IPCX_CLI) + " send pipe: 'over a pipe' | " + IPCX_CLI + " recv pipe:");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "over a pipe\n");
}

TEST(Cli, SpawnConnectedChildEchoesOverPipes) {
  auto child = ipcx::spawn_connected({IPCX_CLI, "listen", "pipe:", "--echo"});
  ASSERT_TRUE(child.has_value()) << child.error().message();
  for (const std::string& m : std::vector<std::string>{"one", "two", std::string(100000, 'x')}) {
    ASSERT_TRUE(child->connection.send(ipcx::as_bytes(m), 5s).has_value());
    auto back = child->connection.recv(10s);
    ASSERT_TRUE(back.has_value()) << back.error().message();
    EXPECT_EQ(back->text(), m);
  }
  child->connection.close();  // EOF: the child's only connection ends, so it exits
  auto code = child->process.wait(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
}

TEST(Cli, SignalCarriesAnInt) {
  auto recv = Child::cli({"recv", "signal://self", "--count", "2", "--timeout", "10000"});
  ASSERT_TRUE(recv.wait_stderr("listening on "));  // printed after the signal is blocked
  auto a = run_cli({"signal", std::to_string(recv.pid()), "--value", "42"});
  EXPECT_EQ(a.code, 0) << a.err;
  auto b = run_cli({"signal", std::to_string(recv.pid()), "--value", "-7"});
  EXPECT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(recv.finish(), 0) << recv.err();
  EXPECT_EQ(recv.out(), "42\n-7\n");
}

TEST(Cli, BadInputDropsOnlyThatClient) {
  ScratchDir dir;
  auto sock = dir.file("s");
  auto server = Child::cli({"listen", "unix://" + sock, "--echo"});
  ASSERT_TRUE(server.wait_stderr("listening on "));
  auto good = ipcx::connect("unix://" + sock);
  ASSERT_TRUE(good.has_value());

  struct Case {
    std::string bytes, expect;
  };
  std::vector<Case> cases = {
      {"this is not a frame at all", "bad magic"},
      {std::string("IX\x01\x01\x00\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00", 16), "exceeds maximum"},
      {std::string("IX\x07\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00", 16), "unsupported version"},
      {std::string("IX\x01\x01\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00half", 20), "peer closed mid-frame"},
  };
  for (auto& c : cases) {
    auto bad = ipcx::test::raw_unix_client(sock);
    ASSERT_TRUE(bad.valid());
    ASSERT_EQ(::write(bad.get(), c.bytes.data(), c.bytes.size()), static_cast<ssize_t>(c.bytes.size()));
    ::shutdown(bad.get(), SHUT_WR);
    EXPECT_TRUE(server.wait_stderr(c.expect)) << server.err();
    // The well-behaved client is still served after each bad one.
    ASSERT_TRUE(good->send(ipcx::as_bytes("still there?"), 5s).has_value());
    auto echo = good->recv(10s);
    ASSERT_TRUE(echo.has_value()) << echo.error().message();
    EXPECT_EQ(echo->text(), "still there?");
  }
  // One clear line per dropped client.
  EXPECT_EQ(count_lines(server.err()), 1 + static_cast<int>(cases.size())) << server.err();
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 1) << "dropped connections make the exit status non-zero";
}

TEST(Cli, StaleSocketOfKilledServerIsReplaced) {
  ScratchDir dir;
  auto sock = dir.file("s");
  {
    auto first = Child::cli({"listen", "unix://" + sock});
    ASSERT_TRUE(first.wait_stderr("listening on "));
    first.signal(SIGKILL);
    EXPECT_EQ(first.finish(), 128 + SIGKILL);
  }
  ASSERT_TRUE(exists(sock)) << "SIGKILL leaves the socket file behind";
  auto second = Child::cli({"listen", "unix://" + sock});
  ASSERT_TRUE(second.wait_stderr("listening on ")) << second.err();
  auto sent = run_cli({"send", "unix://" + sock, "after restart"});
  EXPECT_EQ(sent.code, 0) << sent.err;
  EXPECT_TRUE(second.wait_stdout("after restart\n"));
  second.signal(SIGTERM);
  EXPECT_EQ(second.finish(), 0);
  EXPECT_FALSE(exists(sock));
}

TEST(Cli, FifoPairOfKilledListenerIsTakenOver) {
  ScratchDir dir;
  auto fifo = dir.file("f");
  {
    auto first = Child::cli({"listen", "fifo://" + fifo});
    ASSERT_TRUE(first.wait_stderr("listening on "));
    first.signal(SIGKILL);
    EXPECT_EQ(first.finish(), 128 + SIGKILL);
  }
  ASSERT_TRUE(exists(fifo)) << "SIGKILL leaves the FIFOs behind";
  auto second = Child::cli({"listen", "fifo://" + fifo});
  ASSERT_TRUE(second.wait_stderr("listening on ")) << second.err();
  auto third = run_cli({"listen", "fifo://" + fifo});  // the live one is never taken
  EXPECT_NE(third.code, 0);
  EXPECT_NE(third.err.find("live listener"), std::string::npos) << third.err;
  auto sent = run_cli({"send", "fifo://" + fifo, "after restart"});
  EXPECT_EQ(sent.code, 0) << sent.err;
  EXPECT_TRUE(second.wait_stdout("after restart\n"));
  second.signal(SIGTERM);
  EXPECT_EQ(second.finish(), 0);
}

TEST(Cli, LiveServerSocketIsNeverStolen) {
  ScratchDir dir;
  auto sock = dir.file("s");
  auto first = Child::cli({"listen", "unix://" + sock});
  ASSERT_TRUE(first.wait_stderr("listening on "));
  auto second = run_cli({"listen", "unix://" + sock});
  EXPECT_NE(second.code, 0);
  EXPECT_EQ(count_lines(second.err), 1) << second.err;
  EXPECT_NE(second.err.find("a live listener"), std::string::npos) << second.err;
  auto sent = run_cli({"send", "unix://" + sock, "first still serves"});
  EXPECT_EQ(sent.code, 0);
  EXPECT_TRUE(first.wait_stdout("first still serves\n"));
  first.signal(SIGTERM);
  EXPECT_EQ(first.finish(), 0);
}

TEST(Cli, FailuresAreOneLineAndNonZero) {
  ScratchDir dir;
  for (std::vector<std::string> args : {
           std::vector<std::string>{"send", "unix://" + dir.file("nobody"), "x"},
           std::vector<std::string>{"send", "bogus://x", "x"},
           std::vector<std::string>{"send", "tcp://127.0.0.1", "x"},
           std::vector<std::string>{"recv", "unix://" + dir.file("s"), "--timeout", "100"},
           std::vector<std::string>{"signal", "999999999", "--value", "1"},
           std::vector<std::string>{"send", "unix://" + dir.file("s"), "--timeout", "-5", "x"},
           std::vector<std::string>{"ping", "unix://" + dir.file("s"), "--no-such-flag"},
       }) {
    auto r = run_cli(args);
    EXPECT_NE(r.code, 0) << args[1];
    // recv prints its readiness line first, then the failure.
    int expected_lines = args[0] == "recv" ? 2 : 1;
    EXPECT_EQ(count_lines(r.err), expected_lines) << r.err;
    EXPECT_TRUE(r.err.starts_with("ipcx ") || r.err.starts_with("ipcx: ")) << r.err;
  }
}

// A pid that does not fit in pid_t is refused, not truncated into another process's pid
// (both would become 999999999; 2^32 + 1 would become init, and as root signal it).
TEST(Cli, SignalRefusesPidsOutOfRange) {
  for (std::string pid : {"5294967295", "-3294967297"}) {
    auto r = run_cli({"signal", pid, "--value", "1"});
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(pid), std::string::npos) << "the error should name the bad pid: " << r.err;
  }
}

// Stop/continue (Ctrl-Z, fg) interrupts epoll_wait with EINTR: that is not the --timeout
// passing, and recv must keep waiting for its message.
TEST(Cli, RecvTimeoutSurvivesStopAndContinue) {
  ScratchDir dir;
  auto sock = dir.file("s");
  auto recv = Child::cli({"recv", "unix://" + sock, "--count", "1", "--timeout", "60000"});
  ASSERT_TRUE(recv.wait_stderr("listening on "));
  // Wait until it sleeps in epoll_wait, so the stop really interrupts it.
  auto wchan = [&] {
    std::ifstream f(fmt::format("/proc/{}/wchan", recv.pid()));
    std::string w;
    std::getline(f, w);
    return w;
  };
  auto state = [&] {
    std::ifstream f(fmt::format("/proc/{}/stat", recv.pid()));
    std::string line;
    std::getline(f, line);
    auto paren = line.rfind(')');
    return paren == std::string::npos || paren + 2 >= line.size() ? '?' : line[paren + 2];
  };
  for (int i = 0; i < 1000 && wchan().find("epoll") == std::string::npos; ++i) std::this_thread::sleep_for(10ms);
  recv.signal(SIGSTOP);
  for (int i = 0; i < 1000 && state() != 'T'; ++i) std::this_thread::sleep_for(10ms);
  recv.signal(SIGCONT);
  auto sent = run_cli({"send", "unix://" + sock, "after the pause"});
  EXPECT_EQ(sent.code, 0) << sent.err;
  EXPECT_EQ(recv.finish(), 0) << recv.err();
  EXPECT_EQ(recv.out(), "after the pause\n");
}

TEST(Cli, ListenExitsCleanlyOnSigintWithFifoFilesRemoved) {
  ScratchDir dir;
  auto fifo = dir.file("f");
  auto server = Child::cli({"listen", "fifo://" + fifo});
  ASSERT_TRUE(server.wait_stderr("listening on "));
  EXPECT_TRUE(exists(fifo));
  EXPECT_TRUE(exists(fifo + ".back"));
  server.signal(SIGINT);
  EXPECT_EQ(server.finish(), 0);
  EXPECT_FALSE(exists(fifo));
  EXPECT_FALSE(exists(fifo + ".back"));
}
