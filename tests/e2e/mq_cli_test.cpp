// `ipcx mq` run as the real binary: create, send (text and stdin), recv in priority order, stat,
// ls, rm; errors are one line with exit code 1 (usage: 2); limits and sizes are named.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/mq.hpp>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

using ipcx::test::count_lines;
using ipcx::test::run_cli;
using ipcx::test::run_shell;

namespace {
// `ipcx mq ls` reads /dev/mqueue: mount it when the machine has not (tests run as root).
bool mqueue_mounted() {
  struct stat a{}, b{};
  if (::stat("/dev/mqueue", &a) == 0 && ::stat("/dev", &b) == 0 && a.st_dev != b.st_dev) return true;
  ::mkdir("/dev/mqueue", 01777);
  return ::mount("none", "/dev/mqueue", "mqueue", 0, nullptr) == 0;
}

struct Name {
  std::string name = ipcx::test::unique_name("mqcli");
  ~Name() { (void)ipcx::mq::Queue::remove(name); }
};
}  // namespace

TEST(MqCli, CreateSendRecvStatLsRm) {
  ASSERT_TRUE(mqueue_mounted());
  Name n;
  auto c = run_cli({"mq", "create", n.name, "--capacity", "4", "--msgsize", "32", "--mode", "0640"});
  ASSERT_EQ(c.code, 0) << c.err;
  ASSERT_EQ(run_cli({"mq", "send", n.name, "low"}).code, 0);
  auto piped = run_shell(fmt::format("printf 'from stdin\\n' | {} mq send {}", IPCX_CLI, n.name));
  ASSERT_EQ(piped.code, 0) << piped.err;
  auto hi = run_cli({"mq", "send", n.name, "two\nlines", "--priority", "7"});
  ASSERT_EQ(hi.code, 0) << hi.err;

  auto st = run_cli({"mq", "stat", n.name, "--json"});
  ASSERT_EQ(st.code, 0) << st.err;
  EXPECT_NE(st.out.find("\"capacity\":4,\"message_size\":32,\"messages\":3,\"mode\":\"0640\""), std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find(fmt::format("\"kernel_name\":\"/ipcx-{}-{}\"", ::geteuid(), n.name)), std::string::npos);

  auto ls = run_cli({"mq", "ls"});
  ASSERT_EQ(ls.code, 0) << ls.err;
  EXPECT_NE(ls.out.find(n.name + "\t3/4 messages\t32 bytes max"), std::string::npos) << ls.out;

  // Highest priority first, one message per line (the newline inside shown as \x0a).
  auto r = run_cli({"mq", "recv", n.name, "--count", "3", "--timeout", "5000"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "two\\x0alines\nlow\nfrom stdin\n");

  auto empty = run_cli({"mq", "recv", n.name, "--timeout", "0"});
  EXPECT_EQ(empty.code, 1);
  EXPECT_EQ(count_lines(empty.err), 1) << empty.err;
  EXPECT_NE(empty.err.find("would block"), std::string::npos) << empty.err;

  ASSERT_EQ(run_cli({"mq", "rm", n.name}).code, 0);
  auto again = run_cli({"mq", "rm", n.name});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("not found"), std::string::npos) << again.err;
}

TEST(MqCli, ErrorsAreOneLineAndNameTheLimit) {
  Name n;
  ASSERT_EQ(run_cli({"mq", "create", n.name, "--capacity", "2", "--msgsize", "16"}).code, 0);
  auto big = run_cli({"mq", "send", n.name, std::string(17, 'x')});
  EXPECT_EQ(big.code, 1);
  EXPECT_EQ(count_lines(big.err), 1) << big.err;
  EXPECT_NE(big.err.find("17 bytes > the queue's message size 16"), std::string::npos) << big.err;
  auto st = run_cli({"mq", "stat", n.name, "--json"});
  EXPECT_NE(st.out.find("\"messages\":0"), std::string::npos) << "nothing was enqueued: " << st.out;

  ASSERT_EQ(run_cli({"mq", "send", n.name, "a"}).code, 0);
  ASSERT_EQ(run_cli({"mq", "send", n.name, "b"}).code, 0);
  auto full = run_cli({"mq", "send", n.name, "c", "--timeout", "0"});
  EXPECT_EQ(full.code, 1);
  EXPECT_NE(full.err.find("would block"), std::string::npos) << full.err;

  auto slash = run_cli({"mq", "create", "a/b"});
  EXPECT_EQ(slash.code, 1);
  EXPECT_NE(slash.err.find("contains '/'"), std::string::npos) << slash.err;

  auto excl = run_cli({"mq", "create", n.name, "--exclusive"});
  EXPECT_EQ(excl.code, 1);
  EXPECT_NE(excl.err.find("already exists"), std::string::npos) << excl.err;

  // An unprivileged user asking for more than msg_max is told which limit and how to raise it.
  auto other = ipcx::test::unique_name("mqcli");
  auto lim = run_shell(fmt::format("setpriv --reuid=65534 --regid=65534 --clear-groups {} mq create {} --capacity 65536",
                                   IPCX_CLI, other));
  EXPECT_EQ(lim.code, 1);
  EXPECT_EQ(count_lines(lim.err), 1) << lim.err;
  EXPECT_NE(lim.err.find("capacity 65536 exceeds /proc/sys/fs/mqueue/msg_max"), std::string::npos) << lim.err;
  EXPECT_NE(lim.err.find("raise: sysctl fs.mqueue.msg_max=65536"), std::string::npos) << lim.err;

  for (auto args : std::vector<std::vector<std::string>>{{"mq", "create", n.name, "--capacity", "0"},
                                                         {"mq", "send", n.name, "x", "--priority", "32768"},
                                                         {"mq", "create", n.name, "--mode", "0999"},
                                                         {"mq", "recv", n.name, "--count", "0"},
                                                         {"mq"}}) {
    auto u = run_cli(args);
    EXPECT_EQ(u.code, 2) << args.back() << ": " << u.err;
    EXPECT_EQ(count_lines(u.err), 1) << u.err;
  }
}
