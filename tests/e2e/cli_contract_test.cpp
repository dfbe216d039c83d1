// What the CLI promises a careless user: replies written before --count exits, a refused
// `send` exits non-zero, stdout failures and dropped clients change the exit status, SIGHUP
// cleans up like SIGTERM, usage errors are one line with exit code 2, and input larger than a
// message is refused before it is all read.
#include <algorithm>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/attack_util.hpp"
#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using ipcx::test::Child;
using ipcx::test::count_lines;
using ipcx::test::run_cli;
using ipcx::test::run_shell;
using ipcx::test::ScratchDir;
using ipcx::test::Watchdog;


// --count 1 with --echo: the one echo (1 MB here) is written whole before the listener exits.
TEST(CliContract, CountExitsOnlyAfterTheLastEchoIsOut) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto url = "unix://" + dir.file("s");
  auto server = Child::shell(fmt::format("exec {} listen {} --echo --count 1 >/dev/null", IPCX_CLI, url));
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  auto ping = run_cli({"ping", url, "--count", "1", "--size", "1000000", "--timeout", "20000"});
  EXPECT_EQ(ping.code, 0) << ping.err;
  EXPECT_EQ(server.finish(), 0) << server.err();
  EXPECT_FALSE(std::filesystem::exists(dir.file("s")));
}

// A send the server refuses (here: over its connection limit) fails, with the reason.
TEST(CliContract, RefusedSendExitsNonZeroWithTheReason) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto url = "unix://" + dir.file("s");
  auto server = Child::cli({"listen", url, "--max-connections", "1", "--quiet"});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  auto holder = ipcx::connect(url);
  ASSERT_TRUE(holder.has_value());
  ASSERT_TRUE(holder->send(ipcx::as_bytes("hold"), 5s).has_value());
  for (int i = 0; i < 5; ++i) {
    auto r = run_cli({"send", url, "refused?"});
    EXPECT_NE(r.code, 0) << "a refused send exited 0";
    EXPECT_NE(r.err.find("connection limit"), std::string::npos) << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
  }
  EXPECT_TRUE(server.wait_stderr("refused a client"));
  holder->close();
  auto ok = run_cli({"send", url, "accepted"});  // the slot is free again
  EXPECT_EQ(ok.code, 0) << ok.err;
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 0) << "refusals are not failures of the listener\n" << server.err();
}

// Messages go to stdout: when stdout cannot take them, the run fails instead of exiting 0.
TEST(CliContract, StdoutThatCannotBeWrittenIsAFailure) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto frames = dir.file("frames");
  ASSERT_EQ(run_shell(fmt::format("{} send pipe: hello > {}", IPCX_CLI, frames)).code, 0);
  auto r = run_shell(fmt::format("{} recv pipe: < {} > /dev/full", IPCX_CLI, frames));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("stdout"), std::string::npos) << r.err;
  // --quiet prints nothing, so nothing can fail.
  auto q = run_shell(fmt::format("{} recv pipe: --quiet < {} > /dev/full", IPCX_CLI, frames));
  EXPECT_EQ(q.code, 0) << q.err;
}

// With pipe:, stdout is the connection: --quiet keeps printed text out of the echoed frames.
TEST(CliContract, QuietKeepsAPipeEchoClean) {
  Watchdog wd(60s);
  auto r = run_shell(fmt::format("{0} send pipe: 'round trip' | {0} listen pipe: --echo --quiet | {0} recv pipe:", IPCX_CLI));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "round trip\n");
}

// A client dropped for not reading (--slow-peer drop) is reported, and counts as a failure.
TEST(CliContract, SlowPeerDropIsReportedAndFailsTheRun) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto sock = dir.file("s");
  auto server = Child::shell(fmt::format("exec {} listen unix://{} --echo --slow-peer drop --max-queued 64 >/dev/null", IPCX_CLI, sock));
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  auto c = ipcx::connect("unix://" + sock);
  ASSERT_TRUE(c.has_value());
  std::vector<std::byte> big(32 * 1024, std::byte{'z'});
  for (int i = 0; i < 200; ++i)
    if (!c->send(big, 5s)) break;  // never reads: its echoes pile up until it is dropped
  EXPECT_TRUE(server.wait_stderr("dropping client")) << server.err();
  EXPECT_NE(server.err().find("outgoing queue full"), std::string::npos) << server.err();
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 1) << server.err();
}

// Closing the terminal (SIGHUP) removes the socket and lock files, as SIGINT/SIGTERM do.
TEST(CliContract, SighupCleansUpLikeSigterm) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto sock = dir.file("s");
  auto server = Child::cli({"listen", "unix://" + sock});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  ASSERT_TRUE(std::filesystem::exists(sock + ".lock"));
  server.signal(SIGHUP);
  EXPECT_EQ(server.finish(), 0) << server.err();
  EXPECT_FALSE(std::filesystem::exists(sock));
  EXPECT_FALSE(std::filesystem::exists(sock + ".lock"));
}

// Standard input longer than a message is refused as soon as it is, not after reading it all.
TEST(CliContract, OversizedStdinIsRefusedEarly) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto url = "unix://" + dir.file("s");
  auto server = Child::cli({"listen", url});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  // An endless stream: only an early refusal ends this.
  auto r = run_shell(fmt::format("{} send {} - < /dev/zero", IPCX_CLI, url));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("longer than the maximum"), std::string::npos) << r.err;
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 0) << server.err();
  EXPECT_EQ(server.out(), "") << "nothing of the refused input was delivered";
}

// Numbers out of range and conflicting flags: one line, exit code 2.
TEST(CliContract, UsageErrorsAreOneLineWithExitTwo) {
  ScratchDir dir;
  auto url = "unix://" + dir.file("s");
  for (std::vector<std::string> args : {
           std::vector<std::string>{"frobnicate"},
           {"ping", url, "--size", "0"},
           {"ping", url, "--size", "18446744073709551615"},
           {"ping", url, "--size", "-1"},
           {"ping", url, "--count", "0"},
           {"ping", url, "--timeout", "0"},
           {"send", url, "x", "--timeout", "0"},
           {"recv", url, "--count", "0"},
           {"listen", url, "--count", "-1"},
           {"listen", url, "--allow-uid", "0", "--allow-anyone"},
           {"listen", url, "--mode", "999"},
           {"listen", url, "--mode", "rw"},
           {"listen", url, "--bogus"},
       }) {
    auto r = run_cli(args);
    EXPECT_EQ(r.code, 2) << args[0] << " " << (args.size() > 2 ? args[2] : "") << ": " << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_EQ(r.out, "");
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("s")));
}

// --mode opens a path socket to other users (an access rule alone cannot: the file's 0600
// keeps them out before the rule is asked).
TEST(CliContract, ModeSetsTheSocketFilePermissions) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto sock = dir.file("s");
  auto server = Child::cli({"listen", "unix://" + sock, "--mode", "0660"});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  auto perms = std::filesystem::status(sock).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                                     std::filesystem::perms::group_read | std::filesystem::perms::group_write);
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 0) << server.err();
}
