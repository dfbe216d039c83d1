// Who may connect: clients running as another user (nobody, via setpriv) against listeners
// run as root, through the CLI and through the API. Needs root (to become nobody).
#include <filesystem>
#include <string>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/attack_util.hpp"
#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using ipcx::test::Child;
using ipcx::test::run_cli;
using ipcx::test::run_shell;
using ipcx::test::ScratchDir;
using ipcx::test::Watchdog;

namespace {

constexpr uid_t kNobody = 65534;

// `ipcx ping URL` run as nobody, with no supplementary groups.
std::string ping_as_nobody(const std::string& url) {
  return fmt::format("exec setpriv --reuid={0} --regid={0} --clear-groups {1} ping {2} --count 1 --timeout 10000",
                     kNobody, IPCX_CLI, url);
}

#define IPCX_NEEDS_ROOT()                                                                  \
  do {                                                                                     \
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another user";    \
  } while (0)

}  // namespace

// unix:@name has no file permissions: by default only the listener's own user gets in.
TEST(AccessRule, AbstractSocketAdmitsOnlyItsOwnUserByDefault) {
  IPCX_NEEDS_ROOT();
  Watchdog wd(60s);
  auto url = "unix:@" + ipcx::test::unique_name("acl");
  auto server = Child::cli({"listen", url, "--echo"});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();

  auto nobody = run_shell(ping_as_nobody(url));
  EXPECT_NE(nobody.code, 0) << nobody.out;
  EXPECT_NE(nobody.err.find("access denied"), std::string::npos) << nobody.err;

  auto root = run_cli({"ping", url, "--count", "3", "--timeout", "10000"});
  EXPECT_EQ(root.code, 0) << root.err;
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 0) << server.err();
}

TEST(AccessRule, AllowUidAdmitsThatUser) {
  IPCX_NEEDS_ROOT();
  Watchdog wd(60s);
  auto url = "unix:@" + ipcx::test::unique_name("acl");
  auto server = Child::cli({"listen", url, "--echo", "--allow-uid", std::to_string(kNobody)});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  auto nobody = run_shell(ping_as_nobody(url));
  EXPECT_EQ(nobody.code, 0) << nobody.err;
  EXPECT_NE(nobody.out.find("1 round trips"), std::string::npos) << nobody.out;
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 0) << server.err();
}

// shm:// across users: the client (nobody) opens its own descriptions of the listener's (root's)
// wake pipes and the listener maps the client's memory; a polled ping goes both ways.
TEST(AccessRule, AllowUidAdmitsThatUserOverShm) {
  IPCX_NEEDS_ROOT();
  Watchdog wd(60s);
  const auto name = ipcx::test::unique_name("acl");
  auto server = Child::cli({"listen", "shm://" + name, "--echo", "--allow-uid", std::to_string(kNobody)});
  ASSERT_TRUE(server.wait_stderr("listening on ")) << server.err();
  auto nobody = run_shell(ping_as_nobody("'shm://" + name + "?user=0&wait=block'"));
  EXPECT_EQ(nobody.code, 0) << nobody.err;
  EXPECT_NE(nobody.out.find("1 round trips"), std::string::npos) << nobody.out;
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 0) << server.err();
}

// A path socket anyone may open (mode 0666) still enforces its rule at accept, and the
// listener counts the refusal.
TEST(AccessRule, OpenModePathSocketStillEnforcesTheRule) {
  IPCX_NEEDS_ROOT();
  Watchdog wd(60s);
  ScratchDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);  // nobody must be able to reach the socket
  auto url = "unix://" + dir.file("s");
  ipcx::Options o;
  o.mode = 0666;
  o.access = ipcx::AccessRule::user(0);
  auto l = ipcx::listen(url, o);
  ASSERT_TRUE(l.has_value()) << l.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("s").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);

  auto nobody = Child::shell(ping_as_nobody(url));
  auto until = std::chrono::steady_clock::now() + 20s;
  while (l->stats().refused == 0 && std::chrono::steady_clock::now() < until) {
    auto c = l->accept(100ms);
    EXPECT_FALSE(c.has_value()) << "a refused peer was handed out";
  }
  EXPECT_EQ(l->stats().refused, 1u);
  EXPECT_EQ(l->stats().accepted, 0u);
  EXPECT_NE(nobody.finish(), 0) << nobody.out();
  EXPECT_NE(nobody.err().find("access denied"), std::string::npos) << nobody.err();

  // The rule's own user is admitted.
  auto root = ipcx::connect(url);
  ASSERT_TRUE(root.has_value()) << root.error().message();
  auto s = l->accept(10s);
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(s->peer().uid, 0u);
  EXPECT_EQ(l->stats().accepted, 1u);
}

// A refused client that writes before it reads (as `ipcx ping` does) must still learn why it
// was refused. The listener has refused and closed it before its first send here, every time.
TEST(AccessRule, RefusedClientThatSendsFirstStillLearnsWhy) {
  ScratchDir dir;
  auto url = "unix://" + dir.file("s");
  ipcx::Options o;
  o.access = ipcx::AccessRule::user(::geteuid() + 1);  // anyone but us
  auto l = ipcx::listen(url, o);
  ASSERT_TRUE(l.has_value()) << l.error().message();
  auto c = ipcx::connect(url);
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_FALSE(l->accept(200ms).has_value());
  ASSERT_EQ(l->stats().refused, 1u);

  auto sent = c->send(ipcx::as_bytes("hello?"), 5s);
  if (!sent) {
    EXPECT_EQ(sent.error().code, ipcx::Errc::permission_denied) << sent.error().message();
    EXPECT_NE(sent.error().message().find("access denied"), std::string::npos) << sent.error().message();
  }
  auto r = c->recv(5s);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ipcx::Errc::permission_denied) << r.error().message();
  EXPECT_NE(r.error().message().find("access denied"), std::string::npos) << r.error().message();
}

// Anyone may bind a free abstract name. A client that cares who serves it says so with an
// access rule of its own, checked against the listener's kernel credentials before it sends.
TEST(AccessRule, ClientRuleRefusesAListenerOfAnotherUser) {
  IPCX_NEEDS_ROOT();
  Watchdog wd(60s);
  auto url = "unix:@" + ipcx::test::unique_name("squat");
  auto squatter = Child::shell(fmt::format("exec setpriv --reuid={0} --regid={0} --clear-groups {1} listen {2} --allow-anyone",
                                           kNobody, IPCX_CLI, url));
  ASSERT_TRUE(squatter.wait_stderr("listening on ")) << squatter.err();

  ipcx::Options mine;
  mine.access = ipcx::AccessRule::user(0);
  auto c = ipcx::connect(url, mine, 10s);
  ASSERT_FALSE(c.has_value()) << "connected to a listener run by uid " << kNobody;
  EXPECT_EQ(c.error().code, ipcx::Errc::permission_denied) << c.error().message();
  EXPECT_NE(c.error().message().find("uid 65534"), std::string::npos) << c.error().message();
  // Without a rule the client does not ask (and the squatter would get what it sends).
  auto any = ipcx::connect(url, {}, 10s);
  EXPECT_TRUE(any.has_value()) << any.error().message();
  squatter.signal(SIGTERM);
  (void)squatter.finish();
}
