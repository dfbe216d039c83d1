// Child processes: spawn, exit codes, kill, fd mapping, environment, no zombies.
#include <csignal>
#include <fstream>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/process.hpp>

#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using test::why;

// Reads `fd` until EOF, each wait bounded.
std::string read_all(int fd) {
  std::string out;
  char buf[256];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20000) <= 0) return out + "<timeout>";
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

struct Pipe {
  Fd r, w;
  Pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) {
      r.reset(p[0]);
      w.reset(p[1]);
    }
  }
};

// True when `pid` is no child of ours any more (reaped: no zombie).
bool reaped(pid_t pid) {
  int st;
  return ::waitpid(pid, &st, WNOHANG) == -1 && errno == ECHILD;
}

TEST(Process, ExitCode) {
  test::Watchdog wd(60s);
  auto p = Process::spawn({"/bin/sh", "-c", "exit 3"});
  ASSERT_TRUE(p) << why(p);
  EXPECT_GT(p->pid(), 0);
  EXPECT_GE(p->pidfd(), 0);
  auto code = p->wait(30s);
  ASSERT_TRUE(code) << why(code);
  EXPECT_EQ(*code, 3);
  EXPECT_FALSE(p->running());
  auto again = p->wait();  // the status is kept
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 3);
  EXPECT_TRUE(reaped(p->pid()));
}

TEST(Process, KilledBySigkill) {
  test::Watchdog wd(60s);
  auto p = Process::spawn({"/bin/sleep", "30"});
  ASSERT_TRUE(p) << why(p);
  EXPECT_TRUE(p->running());
  IPCX_ASSERT_OK(p->kill(SIGKILL));
  auto code = p->wait(30s);
  ASSERT_TRUE(code) << why(code);
  EXPECT_EQ(*code, 128 + SIGKILL);
  IPCX_EXPECT_ERRC(p->kill(SIGKILL), Errc::not_found);  // never signals a recycled pid
}

TEST(Process, WaitTimesOutWhileRunning) {
  test::Watchdog wd(60s);
  auto p = Process::spawn({"/bin/sleep", "30"});
  ASSERT_TRUE(p) << why(p);
  IPCX_EXPECT_ERRC(p->wait(20ms), Errc::timeout);
  EXPECT_TRUE(p->running());
  IPCX_ASSERT_OK(p->kill(SIGTERM));
  auto code = p->wait(30s);
  ASSERT_TRUE(code) << why(code);
  EXPECT_EQ(*code, 128 + SIGTERM);
}

TEST(Process, DestructorKillsAndReaps) {
  test::Watchdog wd(60s);
  pid_t pid = -1;
  {
    auto p = Process::spawn({"/bin/sleep", "30"});
    ASSERT_TRUE(p) << why(p);
    pid = p->pid();
  }
  EXPECT_TRUE(reaped(pid)) << "the child outlived its Process, or is a zombie";
}

TEST(Process, MoveAssignmentReleasesTheOldChild) {
  test::Watchdog wd(60s);
  auto a = Process::spawn({"/bin/sleep", "30"});
  auto b = Process::spawn({"/bin/sleep", "30"});
  ASSERT_TRUE(a && b) << why(a) << why(b);
  pid_t old_b = b->pid(), pa = a->pid();
  *b = std::move(*a);
  EXPECT_TRUE(reaped(old_b));
  EXPECT_EQ(b->pid(), pa);
  EXPECT_FALSE(a->running());  // NOLINT(bugprone-use-after-move)
  IPCX_ASSERT_OK(b->kill(SIGKILL));
  auto code = b->wait(30s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 128 + SIGKILL);
}

TEST(Process, MissingProgramIsNotFound) {
  auto abs = Process::spawn({"/nonexistent/ipcx-no-such-program"});
  ASSERT_FALSE(abs);
  EXPECT_EQ(abs.error().code, Errc::not_found) << abs.error().message();
  EXPECT_NE(abs.error().message().find("ipcx-no-such-program"), std::string::npos) << abs.error().message();
  IPCX_EXPECT_ERRC(Process::spawn({"ipcx-no-such-program-on-path"}), Errc::not_found);
  IPCX_EXPECT_ERRC(Process::spawn({}), Errc::invalid_argument);
}

// The child reports an exec failure through a close-on-exec pipe. A mapping onto that pipe's
// descriptor number must not hide the failure (fds are allocated lowest-first, so the next
// two free numbers are where spawn() will put its pipe).
TEST(Process, ExecFailureIsReportedWhateverTheMappedNumbers) {
  test::Watchdog wd(60s);
  Pipe out;
  int probe[2];
  ASSERT_EQ(::pipe2(probe, O_CLOEXEC), 0);
  ::close(probe[0]);
  ::close(probe[1]);
  for (int child_fd : {probe[0], probe[1]}) {
    auto p = Process::spawn({"/nonexistent/ipcx-no-such-program"}, {.fds = {{child_fd, out.w.get()}}});
    ASSERT_FALSE(p) << "spawn of a missing program succeeded (child fd " << child_fd << ")";
    EXPECT_EQ(p.error().code, Errc::not_found) << p.error().message();
  }
  out.w.reset();
  EXPECT_EQ(read_all(out.r.get()), "") << "the child wrote its errno into a mapped descriptor";
}

TEST(Process, NonExecutableIsPermissionDenied) {
  test::ScratchDir dir;
  auto path = dir.file("script");
  { std::ofstream(path) << "#!/bin/sh\nexit 0\n"; }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  IPCX_EXPECT_ERRC(Process::spawn({path}), Errc::permission_denied);
}

TEST(Process, SearchesPath) {
  test::Watchdog wd(60s);
  auto p = Process::spawn({"sh", "-c", "exit 7"});
  ASSERT_TRUE(p) << why(p);
  auto code = p->wait(30s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 7);
}

TEST(Process, FdMapping) {
  test::Watchdog wd(60s);
  Pipe out;
  auto p = Process::spawn({"/bin/sh", "-c", "echo hi >&5"}, {.fds = {{5, out.w.get()}}});
  ASSERT_TRUE(p) << why(p);
  out.w.reset();  // the child holds the only write end now
  EXPECT_EQ(read_all(out.r.get()), "hi\n");
  auto code = p->wait(30s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
}

TEST(Process, FdMappingsDoNotClobberEachOther) {
  test::Watchdog wd(60s);
  Pipe a, b;
  // Map each pipe onto the other's descriptor number: a naive dup2 sequence would overwrite
  // the second source with the first mapping.
  int na = a.w.get(), nb = b.w.get();
  auto p = Process::spawn({"/bin/sh", "-c", "echo A >&" + std::to_string(nb) + "; echo B >&" + std::to_string(na)},
                          {.fds = {{nb, a.w.get()}, {na, b.w.get()}}});
  ASSERT_TRUE(p) << why(p);
  a.w.reset();
  b.w.reset();
  EXPECT_EQ(read_all(a.r.get()), "A\n");
  EXPECT_EQ(read_all(b.r.get()), "B\n");
  ASSERT_TRUE(p->wait(30s));
}

TEST(Process, UnmappedDescriptorsDoNotLeak) {
  test::Watchdog wd(60s);
  Pipe out, secret;  // both close-on-exec; only `out` is mapped
  auto cmd = "if [ -e /proc/self/fd/" + std::to_string(secret.w.get()) + " ]; then echo leaked; else echo clean; fi >&5";
  auto p = Process::spawn({"/bin/sh", "-c", cmd}, {.fds = {{5, out.w.get()}}});
  ASSERT_TRUE(p) << why(p);
  out.w.reset();
  EXPECT_EQ(read_all(out.r.get()), "clean\n");
  ASSERT_TRUE(p->wait(30s));
}

TEST(Process, Environment) {
  test::Watchdog wd(60s);
  Pipe out;
  ASSERT_EQ(::setenv("IPCX_TEST_OVERRIDE", "parent", 1), 0);
  auto p = Process::spawn({"/bin/sh", "-c", "echo \"$IPCX_TEST_NEW $IPCX_TEST_OVERRIDE $IPCX_TEST_KEEP\" >&5"},
                          {.fds = {{5, out.w.get()}}, .env = {"IPCX_TEST_NEW=new", "IPCX_TEST_OVERRIDE=child"}});
  ::unsetenv("IPCX_TEST_OVERRIDE");
  ASSERT_TRUE(p) << why(p);
  out.w.reset();
  EXPECT_EQ(read_all(out.r.get()), "new child \n");
  ASSERT_TRUE(p->wait(30s));
}

TEST(Process, NewProcessGroup) {
  test::Watchdog wd(60s);
  auto p = Process::spawn({"/bin/sleep", "30"}, {.new_process_group = true});
  ASSERT_TRUE(p) << why(p);
  EXPECT_EQ(::getpgid(p->pid()), p->pid());
  auto q = Process::spawn({"/bin/sleep", "30"});
  ASSERT_TRUE(q) << why(q);
  EXPECT_EQ(::getpgid(q->pid()), ::getpgrp());
}

TEST(Process, PidfdPollsReadableOnExit) {
  test::Watchdog wd(60s);
  auto p = Process::spawn({"/bin/sh", "-c", "exit 0"});
  ASSERT_TRUE(p) << why(p);
  pollfd pfd{p->pidfd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 30000), 1);
  auto code = p->wait(Timeout::zero());
  ASSERT_TRUE(code) << why(code);
  EXPECT_EQ(*code, 0);
}

TEST(Process, ChildStartsWithDefaultSignalState) {
  test::Watchdog wd(60s);
  // The parent blocks SIGUSR1 and ignores SIGPIPE (as ipcx itself does); the child must get
  // neither: a blocked mask is inherited across exec, and so is an ignored SIGPIPE.
  sigset_t usr1, old_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr1, &old_mask), 0);
  struct sigaction ign {}, old_pipe {};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGPIPE, &ign, &old_pipe), 0);
  auto usr = Process::spawn({"/bin/sh", "-c", "kill -USR1 $$; exit 0"});
  auto pipe = Process::spawn({"/bin/sh", "-c", "kill -PIPE $$; exit 0"});
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ASSERT_TRUE(usr && pipe) << why(usr) << why(pipe);
  auto u = usr->wait(30s);
  auto pp = pipe->wait(30s);
  ASSERT_TRUE(u && pp);
  EXPECT_EQ(*u, 128 + SIGUSR1);
  EXPECT_EQ(*pp, 128 + SIGPIPE);
}

TEST(Process, DefaultConstructedIsInert) {
  Process p;
  EXPECT_FALSE(p.running());
  EXPECT_EQ(p.pid(), -1);
  IPCX_EXPECT_ERRC(p.wait(Timeout::zero()), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(p.kill(SIGTERM), Errc::not_found);
}

}  // namespace
}  // namespace ipcx
