// `ipcx shm ls`, `ipcx shm rm` and `ipcx state` against objects this test creates, run as the real binary.
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>
#include <ipcx/segment.hpp>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

using ipcx::shm::Segment;
using ipcx::test::Child;
using ipcx::test::run_cli;
using ipcx::test::run_shell;

namespace {
struct Name {
  std::string name = ipcx::test::unique_name("shmcli");
  ~Name() { (void)Segment::remove(name); }
};

// The table row naming `name`, or "".
std::string row(const std::string& table, const std::string& name) {
  std::size_t at = 0;
  while ((at = table.find(name + " ", at)) != std::string::npos) {
    if (at == 0 || table[at - 1] == '\n') {
      auto end = table.find('\n', at);
      return table.substr(at, end - at);
    }
    ++at;
  }
  return {};
}
}  // namespace

TEST(ShmCli, LsShowsCreatorAliveAndObjects) {
  Name n;
  auto s = Segment::create(n.name, {.size = 64 << 10}).value();
  ASSERT_TRUE(s.construct<int>("ticks", 0));
  auto r = run_cli({"shm", "ls"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("NAME", 0), 0u) << r.out;
  auto line = row(r.out, n.name);
  ASSERT_FALSE(line.empty()) << r.out;
  EXPECT_NE(line.find(" 64K "), std::string::npos) << line;
  EXPECT_NE(line.find(" 0600 "), std::string::npos) << line;
  EXPECT_NE(line.find(fmt::format(" {} ", ::getpid())), std::string::npos) << line;
  EXPECT_NE(line.find(" yes "), std::string::npos) << line;
  EXPECT_NE(line.find("1 ticks"), std::string::npos) << line;

  auto j = run_cli({"shm", "ls", "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  EXPECT_NE(j.out.find(fmt::format("\"name\":\"{}\"", n.name)), std::string::npos) << j.out;
  EXPECT_NE(j.out.find(fmt::format("\"creator\":{},\"creator_alive\":true", ::getpid())), std::string::npos) << j.out;
  EXPECT_NE(j.out.find("{\"name\":\"ticks\""), std::string::npos) << j.out;
}

TEST(ShmCli, LsShowsADeadCreator) {
  Name n;
  // The segment is held here from before its creator exits: a test running `ipcx shm gc` at the
  // same time removes a dead creator's segment that nobody holds.
  int made[2], go[2];
  ASSERT_EQ(::pipe(made), 0);
  ASSERT_EQ(::pipe(go), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto s = Segment::create(n.name);
    char c = s ? 1 : 0;
    (void)!::write(made[1], &c, 1);
    (void)!::read(go[0], &c, 1);
    ::_exit(s ? 0 : 1);
  }
  char c = 0;
  ASSERT_EQ(::read(made[0], &c, 1), 1);
  auto held = Segment::open(n.name);
  (void)!::write(go[1], &c, 1);
  for (int fd : {made[0], made[1], go[0], go[1]}) ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(held) << held.error().message();
  auto r = run_cli({"shm", "ls"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto line = row(r.out, n.name);
  EXPECT_NE(line.find(fmt::format(" {} ", pid)), std::string::npos) << r.out;
  EXPECT_NE(line.find(" no "), std::string::npos) << line;
}

TEST(ShmCli, RmRemovesAndMissingNameFails) {
  Name a, b;
  ASSERT_TRUE(Segment::create(a.name));
  ASSERT_TRUE(Segment::create(b.name));
  auto r = run_cli({"shm", "rm", a.name, b.name});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(Segment::open(a.name).error().code, ipcx::Errc::not_found);
  EXPECT_EQ(Segment::open(b.name).error().code, ipcx::Errc::not_found);
  EXPECT_TRUE(row(run_cli({"shm", "ls"}).out, a.name).empty());

  auto again = run_cli({"shm", "rm", a.name});
  EXPECT_EQ(again.code, 1);
  EXPECT_EQ(again.err, fmt::format("ipcx shm rm: no object named '{}' (see ipcx shm ls)\n", a.name));

  auto usage = run_cli({"shm", "rm"});
  EXPECT_EQ(usage.code, 2) << usage.err;
}

TEST(ShmCli, LsEscapesNamesThatCouldForgeLines) {
  // A name chosen by whoever created the file: a newline must not start a fake row, an escape
  // sequence must not reach the terminal.
  Name n;
  const std::string evil = n.name + "\nprod-db 1M 0600 1 yes 1 lock\x1b[2J";
  auto s = Segment::create(evil, {.size = 64 << 10});
  ASSERT_TRUE(s) << s.error().message();
  auto r = run_cli({"shm", "ls"});
  (void)Segment::remove(evil);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("\nprod-db"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(n.name + "\\x0aprod-db 1M 0600 1 yes 1 lock\\x1b[2J"), std::string::npos) << r.out;
}

// `ipcx state write NAME TEXT` holds the value until a signal; `ipcx state read` prints it, and
// `--watch` follows it until the writer goes; `ipcx shm ls` shows the state and its writer.
TEST(StateCli, WriteReadWatchAndLs) {
  Name n;
  auto writer = Child::cli({"state", "write", n.name, "first value"});
  ASSERT_TRUE(writer.wait_stderr("holds 11 bytes")) << writer.err();
  auto r = run_cli({"state", "read", n.name});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "first value\n");

  auto ls = run_cli({"shm", "ls"});
  auto line = row(ls.out, n.name);
  ASSERT_FALSE(line.empty()) << ls.out;
  EXPECT_NE(line.find(" state "), std::string::npos) << line;
  EXPECT_NE(line.find(" yes "), std::string::npos) << line;
  auto j = run_cli({"shm", "ls", "--json"});
  EXPECT_NE(j.out.find(fmt::format("\"kind\":\"state\",\"size\":")), std::string::npos) << j.out;
  EXPECT_NE(j.out.find(fmt::format("\"writer_alive\":true,\"listeners\":0,\"holders\":[{}]", writer.pid())), std::string::npos) << j.out;

  auto watch = Child::cli({"state", "read", n.name, "--watch", "--timeout", "10000"});
  ASSERT_TRUE(watch.wait_stdout("first value\n")) << watch.err();
  writer.signal(SIGTERM);
  EXPECT_EQ(writer.finish(), 0) << writer.err();
  EXPECT_EQ(watch.finish(), 0) << watch.err();
  EXPECT_NE(watch.err().find("the writer is gone"), std::string::npos) << watch.err();
  // Both gone: the last one out removed it.
  EXPECT_TRUE(row(run_cli({"shm", "ls"}).out, n.name).empty());
  auto missing = run_cli({"state", "read", n.name});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("No such file"), std::string::npos) << missing.err;
}

TEST(StateCli, EachInputLineBecomesTheValue) {
  Name n;
  // The reader holds the state open, so it outlives the writer that ends at the input's end.
  auto r = run_shell(fmt::format("(printf 'one\\ntwo\\n'; sleep 0.5) | {0} state write {1} & sleep 0.2; "
                                 "{0} state read {1}; wait",
                                 IPCX_CLI, n.name));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "two\n") << r.err;
  auto big = run_shell(fmt::format("printf '12345\\n' | {} state write {} --capacity 4", IPCX_CLI, n.name));
  EXPECT_EQ(big.code, 1);
  EXPECT_NE(big.err.find("5 bytes (the capacity is 4)"), std::string::npos) << big.err;
}

// A writer reading standard input ends on SIGTERM while the input stays open (it waited for the
// next line before), storing what it read, a last line without a newline included, and closing.
TEST(StateCli, SigtermEndsAWriterWaitingForInput) {
  using namespace std::chrono_literals;
  Name n;
  int in[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ipcx::Fd rd(in[0]), wr(in[1]);
  ipcx::SpawnOptions so;
  so.fds = {{0, rd.get()}};
  auto p = ipcx::Process::spawn({IPCX_CLI, "state", "write", n.name}, so);
  ASSERT_TRUE(p) << p.error().message();
  rd.reset();
  ASSERT_EQ(::write(wr.get(), "one\ntw", 6), 6);
  ASSERT_EQ(::write(wr.get(), "o", 1), 1);
  std::string value;
  for (int i = 0; i < 500 && value != "one"; ++i) {
    std::this_thread::sleep_for(10ms);
    auto r = run_cli({"state", "read", n.name});
    if (r.code == 0) value = r.out.substr(0, r.out.find('\n'));
  }
  EXPECT_EQ(value, "one");
  ASSERT_TRUE(p->kill(SIGTERM));
  auto code = p->wait(10s);
  ASSERT_TRUE(code) << "still running 10 s after SIGTERM";
  EXPECT_EQ(*code, 0);
  EXPECT_TRUE(ipcx::test::dev_shm(n.name).empty());
  // The input's end stores a last line that has no newline (a reader here keeps the state).
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  rd = ipcx::Fd(in[0]);
  wr = ipcx::Fd(in[1]);
  so.fds = {{0, rd.get()}};
  auto p2 = ipcx::Process::spawn({IPCX_CLI, "state", "write", n.name}, so);
  ASSERT_TRUE(p2) << p2.error().message();
  rd.reset();
  ASSERT_EQ(::write(wr.get(), "a\nlast", 6), 6);
  std::optional<ipcx::shm::StateReader> reader;
  for (int i = 0; i < 500 && !reader; ++i) {
    std::this_thread::sleep_for(10ms);
    if (auto r = ipcx::shm::StateReader::open(n.name)) reader.emplace(std::move(*r));
  }
  ASSERT_TRUE(reader);
  wr.reset();
  auto code2 = p2->wait(10s);
  ASSERT_TRUE(code2);
  EXPECT_EQ(*code2, 0);
  std::vector<std::byte> v;
  ASSERT_TRUE(reader->load(v));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.data()), v.size()), "last");
}

// `ipcx pub shm://TOPIC` and `ipcx sub shm://TOPIC`: zero-copy publish/subscribe from the shell.
TEST(ZeroCopyCli, PubLinesReachASubscriberAndSubEndsWithThePublisher) {
  Name n;
  auto sub = Child::cli({"sub", "shm://" + n.name, "--timeout", "10000"});
  // The subscriber is there once `shm ls` shows the topic.
  for (int i = 0; i < 500 && row(run_cli({"shm", "ls"}).out, n.name).empty(); ++i) usleep(10000);
  auto pub = run_shell(fmt::format("printf 'one\\ntwo\\nthree\\n' | {} pub shm://{} --wait-subscribers 1", IPCX_CLI, n.name));
  EXPECT_EQ(pub.code, 0) << pub.err;
  EXPECT_EQ(sub.finish(), 0) << sub.err();
  EXPECT_EQ(sub.out(), "one\ntwo\nthree\n");
  auto one = run_cli({"pub", "shm://" + n.name, "a", "b"});
  EXPECT_EQ(one.code, 2);
  EXPECT_NE(one.err.find("takes one TEXT"), std::string::npos) << one.err;
  auto none = run_cli({"sub", "shm://" + n.name, "--timeout", "100"});
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("no publisher"), std::string::npos) << none.err;
  EXPECT_TRUE(row(run_cli({"shm", "ls"}).out, n.name).empty()) << "nothing left behind";
}
