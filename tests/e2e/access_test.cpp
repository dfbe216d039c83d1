// Who may connect: clients running as another user (nobody, via setpriv) against listeners
// run as root, through the CLI and through the API. Needs root (to become nobody).
#include <atomic>
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

// Named shared-memory objects created for a group (0660): a process of another uid in that group
// opens them as ~OWNER/NAME (reads a state, writes into a queue, notifies an event, opens a
// segment); one outside the group is refused; nobody but the owner creates under the owner's
// name; and nothing is left once everyone has closed.
TEST(GroupAccess, MembersOfTheGroupOpenOthersAreRefused) {
  IPCX_NEEDS_ROOT();
  Watchdog wd(60s);
  const auto as = [](bool member) {  // nobody, with (65534, "nogroup") as its group or not
    return fmt::format("exec setpriv --reuid={0} --regid={1} --clear-groups {2} ", kNobody, member ? 65534 : 65533,
                       IPCX_CLI);
  };
  const auto state = ipcx::test::unique_name("gst"), queue = ipcx::test::unique_name("gq"),
             event = ipcx::test::unique_name("gev"), seg = ipcx::test::unique_name("gseg");

  auto w = ipcx::shm::StateWriter::create(state, {.capacity = 16, .group = "65534"});
  ASSERT_TRUE(w) << w.error().message();
  ASSERT_TRUE(w->store(std::as_bytes(std::span("shared", 6))));
  struct stat st {};
  ASSERT_EQ(::stat(w->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);  // members read a state, only its owner writes it
  EXPECT_EQ(st.st_gid, 65534u);
  auto read = run_shell(as(true) + "state read '~0/" + state + "'");
  EXPECT_EQ(read.code, 0) << read.err;
  EXPECT_EQ(read.out, "shared\n");
  auto refused = run_shell(as(false) + "state read '~0/" + state + "'");
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("ermission denied"), std::string::npos) << refused.err;
  auto squat = run_shell(as(true) + "state write '~0/" + state + "' mine");
  EXPECT_NE(squat.code, 0);
  EXPECT_NE(squat.err.find("own namespace"), std::string::npos) << squat.err;

  auto q = ipcx::shm::QueueReader::create(queue, {.group = "nogroup"});
  ASSERT_TRUE(q) << q.error().message();
  auto push = run_shell(as(true) + "shm push '~0/" + queue + "' 'from nobody'");
  EXPECT_EQ(push.code, 0) << push.err;
  auto push_refused = run_shell(as(false) + "shm push '~0/" + queue + "' 'no'");
  EXPECT_NE(push_refused.code, 0);
  std::vector<std::byte> m;
  ASSERT_TRUE(q->recv(m, 5s));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()), "from nobody");
  EXPECT_EQ(q->recv(m, 100ms).error().code, ipcx::Errc::timeout);  // the refused one never came

  auto pop_refused = run_shell(as(true) + "shm pop '~0/" + queue + "' --count 1 --timeout 100");
  EXPECT_NE(pop_refused.code, 0);  // a member writes; only the owner's process reads
  EXPECT_NE(pop_refused.err.find("owner"), std::string::npos) << pop_refused.err;

  auto l = ipcx::shm::EventListener::open(event, {.group = "65534"});
  ASSERT_TRUE(l) << l.error().message();
  auto notify = run_shell(as(true) + "event notify '~0/" + event + "' 42");
  EXPECT_EQ(notify.code, 0) << notify.err;
  auto ids = l->wait(5s);
  ASSERT_TRUE(ids) << ids.error().message();
  EXPECT_EQ(*ids, std::vector<std::uint32_t>{42});
  // A member listens too: its wake-up socket is named after its own uid, which the slot says.
  auto member = Child::shell(as(true) + "event listen '~0/" + event + "' --count 1 --timeout 10000");
  ASSERT_TRUE(member.wait_stderr("listening on ", 10s)) << member.err();
  auto n = ipcx::shm::EventNotifier::open(event);
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->notify(7));
  EXPECT_EQ(member.finish(10s), 0) << member.err();
  EXPECT_EQ(member.out(), "7\n");
  n->close();

  // A segment made for the group: a member opens it as ~0/NAME through the library and works in
  // it; it cannot remove it; a process outside the group cannot open it.
  auto s = ipcx::shm::Segment::create(seg, {.size = 1 << 16, .group = "65534"});
  ASSERT_TRUE(s) << s.error().message();
  ASSERT_EQ(::stat(fmt::format("/dev/shm/ipcx-0-{}", seg).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  auto count = s->find_or_construct<std::atomic<long>>("count", 41L);
  ASSERT_TRUE(count) << count.error().message();
  const auto in_segment = [&](gid_t gid) {
    return run_shell(fmt::format("exec {} segment {} {} '~0/{}'", IPCX_SHM_PEER, kNobody, gid, seg));
  };
  auto member_seg = in_segment(65534);
  EXPECT_EQ(member_seg.code, 0) << member_seg.err;
  EXPECT_NE(member_seg.out.find("count 42\n"), std::string::npos) << member_seg.out << member_seg.err;
  EXPECT_EQ(member_seg.out.find("remove: ok"), std::string::npos) << member_seg.out;
  EXPECT_EQ((*count)->load(), 42);
  auto outsider_seg = in_segment(65533);
  EXPECT_EQ(outsider_seg.code, 0) << outsider_seg.err;
  EXPECT_NE(outsider_seg.out.find("open: permission denied"), std::string::npos) << outsider_seg.out << outsider_seg.err;
  EXPECT_EQ((*count)->load(), 42);
  ASSERT_TRUE(ipcx::shm::Segment::remove(seg));

  // Topics stay with one user.
  auto topic = ipcx::shm::ZeroCopySubscriber::open("~0/" + queue);
  ASSERT_FALSE(topic);
  EXPECT_EQ(topic.error().code, ipcx::Errc::invalid_argument);

  const auto paths = {w->path(), q->path(), l->path()};
  w->close();
  q->close();
  l->close();
  for (const auto& p : paths) EXPECT_FALSE(std::filesystem::exists(p)) << p;
}
