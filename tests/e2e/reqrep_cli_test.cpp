// `ipcx req` and `ipcx rep`, the real binary: replies printed, stdin lines as requests,
// --exec bounded in time and output, usage errors, clean exit on SIGTERM.
#include <csignal>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

class ReqRepCli : public ::testing::Test {
 protected:
  std::string url() const { return "unix://" + dir_.file("rep.sock"); }
  // An `ipcx rep URL ARGS...` that is ready to answer.
  Child replier(std::vector<std::string> args) {
    args.insert(args.begin(), {"rep", url()});
    auto c = Child::cli(std::move(args));
    EXPECT_TRUE(c.wait_stderr("replying on")) << c.err();
    return c;
  }
  ScratchDir dir_;
};

TEST_F(ReqRepCli, EchoReplyIsPrinted) {
  Watchdog wd(60s);
  auto rep = replier({"--echo"});
  auto r = run_cli({"req", url(), "hello there", "--timeout", "30000"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "hello there\n");
  rep.signal(SIGTERM);
  EXPECT_EQ(rep.finish(), 0) << rep.err();
  EXPECT_FALSE(std::filesystem::exists(dir_.file("rep.sock")));  // removed on the way out
}

TEST_F(ReqRepCli, EachStdinLineIsARequest) {
  Watchdog wd(60s);
  auto rep = replier({"--echo", "--count", "3"});
  auto r = run_shell("printf 'one\\ntwo\\nthree\\n' | " + std::string(IPCX_CLI) + " req " + url() + " - --timeout 30000");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "one\ntwo\nthree\n");
  EXPECT_EQ(rep.finish(), 0) << rep.err();  // --count 3: done
}

TEST_F(ReqRepCli, ExecRepliesWithTheCommandsOutput) {
  Watchdog wd(60s);
  auto rep = replier({"--exec", "tr a-z A-Z"});
  auto r = run_cli({"req", url(), "shout", "--timeout", "30000"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "SHOUT\n");
  rep.signal(SIGTERM);
  EXPECT_EQ(rep.finish(), 0) << rep.err();
}

TEST_F(ReqRepCli, ExecThatOverrunsItsTimeIsKilledAndUnanswered) {
  Watchdog wd(60s);
  auto rep = replier({"--exec", "sleep 30", "--exec-timeout", "200"});
  auto r = run_cli({"req", url(), "x", "--timeout", "3000"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("timed out"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_TRUE(rep.wait_stderr("did not finish in time")) << rep.err();
  rep.signal(SIGTERM);
  EXPECT_EQ(rep.finish(), 0) << rep.err();
}

TEST_F(ReqRepCli, ExecThatWritesTooMuchIsKilled) {
  Watchdog wd(60s);
  auto rep = replier({"--exec", "head -c 1000000 /dev/zero", "--max-output", "1"});
  auto r = run_cli({"req", url(), "x", "--timeout", "3000"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(rep.wait_stderr("more than 1024 bytes")) << rep.err();
  rep.signal(SIGTERM);
  EXPECT_EQ(rep.finish(), 0) << rep.err();
}

TEST_F(ReqRepCli, ExecThatFailsIsNotUsed) {
  Watchdog wd(60s);
  auto rep = replier({"--exec", "echo partial; exit 3"});
  auto r = run_cli({"req", url(), "x", "--timeout", "1000"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(rep.wait_stderr("exited with 3")) << rep.err();
  rep.signal(SIGTERM);
  EXPECT_EQ(rep.finish(), 0) << rep.err();
}

TEST_F(ReqRepCli, NobodyThereIsOneLineAndExitOne) {
  Watchdog wd(60s);
  auto r = run_cli({"req", url(), "x", "--timeout", "500"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("ipcx req:"), std::string::npos) << r.err;
}

TEST_F(ReqRepCli, UsageErrors) {
  Watchdog wd(60s);
  auto none = run_cli({"rep", url()});
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("--echo or --exec"), std::string::npos) << none.err;
  auto both = run_cli({"rep", url(), "--echo", "--exec", "cat"});
  EXPECT_EQ(both.code, 2) << both.err;
  auto zero = run_cli({"req", url(), "x", "--timeout", "0"});
  EXPECT_EQ(zero.code, 2) << zero.err;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("rep.sock")));
}

}  // namespace
}  // namespace ipcx::test
