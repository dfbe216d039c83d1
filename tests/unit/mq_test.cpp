// POSIX message queues: the Queue API (names, limits, modes, owners, sizes, priorities), the
// Mailbox (posts that outlive their sender process, overflow policies), and the mq:// transport
// (the server engine with several clients, a SIGKILLed client, stale and live listeners).
#include <fcntl.h>
#include <grp.h>
#include <mqueue.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "server_harness.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using test::unique_name;

// Removes the caller's queue `name` at scope exit.
struct Cleanup {
  std::string name;
  ~Cleanup() { (void)mq::Queue::remove(name); }
};

std::string text_of(const Message& m) { return std::string(m.text()); }

// Runs `body` in a forked child that has become uid/gid 65534 (root's capabilities gone with
// the uid change, as setpriv --reuid does); returns the child's exit status and what it wrote.
struct ChildResult {
  int status = -1;
  std::string out;
};
template <class F>
ChildResult as_nobody(F body) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
      ::_exit(90);
    std::string out = body();
    (void)!::write(p[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(p[1]);
  ChildResult r;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    r.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = st;
  return r;
}

std::string describe(const Error& e) { return fmt::format("{}|{}", to_string(e.code), e.message()); }

// /dev/mqueue lists every queue; mount it when the machine has not (tests run as root).
bool mqueue_mounted() {
  if (std::filesystem::exists("/dev/mqueue/.")) {
    struct stat a{}, b{};
    if (::stat("/dev/mqueue", &a) == 0 && ::stat("/dev", &b) == 0 && a.st_dev != b.st_dev) return true;
  }
  std::filesystem::create_directories("/dev/mqueue");
  return ::mount("none", "/dev/mqueue", "mqueue", 0, nullptr) == 0;
}

std::vector<std::string> queues_starting(const std::string& prefix) {
  std::vector<std::string> out;
  for (auto& e : std::filesystem::directory_iterator("/dev/mqueue"))
    if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path().filename().string());
  return out;
}

// ---- Queue ----------------------------------------------------------------------------------

TEST(MqQueue, SendRecvByPriorityThenFifo) {
  test::Watchdog wd(30s);
  auto name = unique_name("mq");
  Cleanup c{name};
  auto q = mq::Queue::create(name, {.capacity = 8, .message_size = 64});
  IPCX_ASSERT_OK(q);
  IPCX_ASSERT_OK(q->send(as_bytes("low-1"), 1));
  IPCX_ASSERT_OK(q->send(as_bytes("high"), 9));
  IPCX_ASSERT_OK(q->send(as_bytes("low-2"), 1));
  IPCX_ASSERT_OK(q->send(as_bytes("zero"), 0));
  std::vector<std::pair<std::string, unsigned>> got;
  for (int i = 0; i < 4; ++i) {
    auto r = q->recv(5s);
    IPCX_ASSERT_OK(r);
    got.emplace_back(text_of(r->message), r->priority);
  }
  std::vector<std::pair<std::string, unsigned>> want{{"high", 9}, {"low-1", 1}, {"low-2", 1}, {"zero", 0}};
  EXPECT_EQ(got, want);
  IPCX_EXPECT_ERRC(q->try_recv(), Errc::would_block);
  IPCX_EXPECT_ERRC(q->recv(20ms), Errc::timeout);
  IPCX_EXPECT_ERRC(q->send(as_bytes("x"), mq::kMaxPriority + 1), Errc::invalid_argument);
}

TEST(MqQueue, AttributesAndFullQueue) {
  test::Watchdog wd(30s);
  auto name = unique_name("mq");
  Cleanup c{name};
  auto q = mq::Queue::create(name, {.capacity = 3, .message_size = 100});
  IPCX_ASSERT_OK(q);
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(q->try_send(as_bytes("m")));
  IPCX_EXPECT_ERRC(q->try_send(as_bytes("m")), Errc::would_block);
  IPCX_EXPECT_ERRC(q->send(as_bytes("m"), 0, 20ms), Errc::timeout);
  auto a = q->attributes();
  IPCX_ASSERT_OK(a);
  EXPECT_EQ(a->capacity, 3);
  EXPECT_EQ(a->message_size, 100);
  EXPECT_EQ(a->messages, 3);
  EXPECT_GE(q->native_handle(), 0);
}

TEST(MqQueue, NamesAreCheckedAndNamespaced) {
  IPCX_EXPECT_ERRC(mq::Queue::create("a/b"), Errc::invalid_argument);
  auto e = mq::Queue::create("jobs/x");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().detail.find("'/'"), std::string::npos) << e.error().message();
  IPCX_EXPECT_ERRC(mq::Queue::create(""), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(mq::Queue::create(std::string(mq::kMaxName + 1, 'n')), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(mq::Queue::create(std::string("a\0b", 3)), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(mq::Queue::open(".."), Errc::invalid_argument);
  // The longest name fits the kernel's NAME_MAX with the widest uid.
  auto longest = "ipcx-test-" + std::string(mq::kMaxName - 10, 'n');
  Cleanup c{longest};
  IPCX_EXPECT_OK(mq::Queue::create(longest, {.capacity = 1, .message_size = 8}));
  auto k = mq::Queue::kernel_name("jobs", 4294967294u);
  IPCX_ASSERT_OK(k);
  EXPECT_EQ(*k, "/ipcx-4294967294-jobs");
  EXPECT_LE(("/ipcx-4294967294-" + longest).size(), 256u);
  auto mine = mq::Queue::kernel_name("jobs");
  IPCX_ASSERT_OK(mine);
  EXPECT_EQ(*mine, fmt::format("/ipcx-{}-jobs", ::geteuid()));
}

TEST(MqQueue, OversizedMessageIsRefusedAndNothingChanges) {
  test::Watchdog wd(30s);
  auto name = unique_name("mq");
  Cleanup c{name};
  auto q = mq::Queue::create(name, {.capacity = 4, .message_size = 16});
  IPCX_ASSERT_OK(q);
  IPCX_ASSERT_OK(q->send(as_bytes("first"), 2));
  IPCX_ASSERT_OK(q->send(as_bytes("second"), 1));
  auto r = q->send(std::vector<std::byte>(17), 5);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::too_large);
  EXPECT_NE(r.error().detail.find("16"), std::string::npos) << "the queue's message size is named: " << r.error().message();
  EXPECT_EQ(q->attributes()->messages, 2);
  auto a = q->recv(5s), b = q->recv(5s);
  IPCX_ASSERT_OK(a);
  IPCX_ASSERT_OK(b);
  EXPECT_EQ(text_of(a->message), "first");
  EXPECT_EQ(text_of(b->message), "second");
  IPCX_EXPECT_ERRC(q->try_recv(), Errc::would_block);
  // Exactly the message size fits.
  IPCX_EXPECT_OK(q->send(std::vector<std::byte>(16)));
}

TEST(MqQueue, ModeIsExactWhateverTheUmask) {
  for (unsigned mode : {0600u, 0640u, 0666u}) {
    auto name = unique_name("mq");
    Cleanup c{name};
    mode_t old = ::umask(0077);
    auto q = mq::Queue::create(name, {.capacity = 1, .message_size = 8, .mode = mode});
    ::umask(old);
    IPCX_ASSERT_OK(q);
    struct stat st{};
    ASSERT_EQ(::fstat(q->native_handle(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, mode);
  }
  IPCX_EXPECT_ERRC(mq::Queue::create(unique_name("mq"), {.mode = 04700}), Errc::invalid_argument);
}

TEST(MqQueue, ExclusiveCreateAndOpenExisting) {
  auto name = unique_name("mq");
  Cleanup c{name};
  auto q = mq::Queue::create(name, {.capacity = 2, .message_size = 32, .exclusive = true});
  IPCX_ASSERT_OK(q);
  IPCX_EXPECT_ERRC(mq::Queue::create(name, {.exclusive = true}), Errc::already_exists);
  // Not exclusive: the existing queue, with its own attributes.
  auto again = mq::Queue::create(name, {.capacity = 5, .message_size = 64});
  IPCX_ASSERT_OK(again);
  EXPECT_EQ(again->attributes()->capacity, 2);
  auto o = mq::Queue::open(name);
  IPCX_ASSERT_OK(o);
  IPCX_ASSERT_OK(q->send(as_bytes("via q")));
  auto m = o->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(text_of(m->message), "via q");
  IPCX_ASSERT_OK(mq::Queue::remove(name));
  IPCX_EXPECT_ERRC(mq::Queue::open(name), Errc::not_found);
  IPCX_EXPECT_ERRC(mq::Queue::remove(name), Errc::not_found);
  // Read-only and write-only descriptors refuse the other direction.
  auto w = mq::Queue::create(name, {.capacity = 1, .message_size = 8});
  IPCX_ASSERT_OK(w);
  auto ro = mq::Queue::open(name, {.write = false});
  IPCX_ASSERT_OK(ro);
  IPCX_EXPECT_ERRC(ro->try_send(as_bytes("x")), Errc::not_supported);
}

TEST(MqQueue, ZeroOrNegativeSizesAreRefused) {
  IPCX_EXPECT_ERRC(mq::Queue::create(unique_name("mq"), {.capacity = 0}), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(mq::Queue::create(unique_name("mq"), {.message_size = -1}), Errc::invalid_argument);
}

TEST(MqQueue, HardLimitsAreNamedForRoot) {
  auto r = mq::Queue::create(unique_name("mq"), {.capacity = 70000, .message_size = 8});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::resource_exhausted);
  EXPECT_NE(r.error().detail.find("hard maximum 65536"), std::string::npos) << r.error().message();
  auto s = mq::Queue::create(unique_name("mq"), {.capacity = 1, .message_size = (16L << 20) + 1});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().detail.find("hard maximum 16777216"), std::string::npos) << s.error().message();
}

TEST(MqQueue, CapacityAboveMsgMaxIsExplainedForAnUnprivilegedUser) {
  test::Watchdog wd(30s);
  auto name = unique_name("mq");
  long msg_max = 0, msgsize_max = 0;
  {
    std::FILE* f = std::fopen("/proc/sys/fs/mqueue/msg_max", "r");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fscanf(f, "%ld", &msg_max), 1);
    std::fclose(f);
    f = std::fopen("/proc/sys/fs/mqueue/msgsize_max", "r");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fscanf(f, "%ld", &msgsize_max), 1);
    std::fclose(f);
  }
  ASSERT_LT(msg_max, 65536) << "msg_max is at the hard maximum: nothing to exceed";
  auto r = as_nobody([&] {
    auto a = mq::Queue::create(name, {.capacity = msg_max + 1, .message_size = 8});
    auto b = mq::Queue::create(name, {.capacity = 1, .message_size = msgsize_max + 1});
    return (a ? std::string("created") : describe(a.error())) + "\n" + (b ? std::string("created") : describe(b.error()));
  });
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status;
  EXPECT_NE(r.out.find(fmt::format("capacity {} exceeds /proc/sys/fs/mqueue/msg_max = {} (raise: sysctl fs.mqueue.msg_max={})",
                                   msg_max + 1, msg_max, msg_max + 1)),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(fmt::format("message size {} exceeds /proc/sys/fs/mqueue/msgsize_max = {}", msgsize_max + 1,
                                   msgsize_max)),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("created"), std::string::npos) << r.out;
}

TEST(MqQueue, RlimitMsgqueueIsNamed) {
  test::Watchdog wd(30s);
  auto name = unique_name("mq");
  Cleanup c{name};
  auto r = as_nobody([&] {
    rlimit small{.rlim_cur = 4096, .rlim_max = 4096};
    if (::setrlimit(RLIMIT_MSGQUEUE, &small) != 0) return std::string("setrlimit failed");
    auto q = mq::Queue::create(name, {.capacity = 10, .message_size = 1024});
    return q ? std::string("created") : describe(q.error());
  });
  EXPECT_NE(r.out.find("resource exhausted|"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("RLIMIT_MSGQUEUE = 4096 bytes (raise: ulimit -q"), std::string::npos) << r.out;
}

TEST(MqQueue, AnotherUserCannotOpenA0600Queue) {
  test::Watchdog wd(30s);
  auto name = unique_name("mq");
  Cleanup c{name};
  auto q = mq::Queue::create(name, {.capacity = 2, .message_size = 16});
  IPCX_ASSERT_OK(q);
  IPCX_ASSERT_OK(q->send(as_bytes("secret")));
  auto r = as_nobody([&] {
    auto o = mq::Queue::open(name, {.owner = 0});
    auto w = mq::Queue::open(name, {.owner = 0, .read = false});
    return (o ? std::string("opened") : describe(o.error())) + "\n" + (w ? std::string("opened") : describe(w.error()));
  });
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status;
  EXPECT_EQ(r.out.find("opened"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("permission denied|"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("you are uid 65534"), std::string::npos) << r.out;
  EXPECT_EQ(q->attributes()->messages, 1);
  // With 0666 the same user gets in.
  auto open_name = unique_name("mq");
  Cleanup c2{open_name};
  IPCX_ASSERT_OK(mq::Queue::create(open_name, {.capacity = 2, .message_size = 16, .mode = 0666}));
  auto ok = as_nobody([&] {
    auto o = mq::Queue::open(open_name, {.owner = 0});
    return o ? std::string("opened") : describe(o.error());
  });
  EXPECT_EQ(ok.out, "opened");
}

TEST(MqQueue, AQueueSquattedByAnotherUserIsRefused) {
  test::Watchdog wd(30s);
  auto name = unique_name("mq");
  auto kernel = mq::Queue::kernel_name(name);
  IPCX_ASSERT_OK(kernel);
  // Another user creates the name in our namespace first (anyone may create any name).
  auto r = as_nobody([&] {
    mq_attr a{};
    a.mq_maxmsg = 2;
    a.mq_msgsize = 16;
    mqd_t q = ::mq_open(kernel->c_str(), O_RDWR | O_CREAT | O_EXCL, 0666, &a);
    return std::string(q == static_cast<mqd_t>(-1) ? "failed" : "made");
  });
  ASSERT_EQ(r.out, "made");
  auto created = mq::Queue::create(name);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, Errc::permission_denied);
  EXPECT_NE(created.error().detail.find("belongs to uid 65534"), std::string::npos) << created.error().message();
  IPCX_EXPECT_ERRC(mq::Queue::open(name), Errc::permission_denied);
  ASSERT_EQ(::mq_unlink(kernel->c_str()), 0);
}

TEST(MqQueue, ListShowsTheCallersQueues) {
  ASSERT_TRUE(mqueue_mounted());
  auto a = unique_name("mq"), b = unique_name("mq");
  Cleanup ca{a}, cb{b};
  IPCX_ASSERT_OK(mq::Queue::create(a, {.capacity = 1, .message_size = 8}));
  IPCX_ASSERT_OK(mq::Queue::create(b, {.capacity = 1, .message_size = 8}));
  auto l = mq::list();
  IPCX_ASSERT_OK(l);
  EXPECT_NE(std::find(l->begin(), l->end(), a), l->end());
  EXPECT_NE(std::find(l->begin(), l->end(), b), l->end());
  IPCX_ASSERT_OK(mq::Queue::remove(a));
  l = mq::list();
  IPCX_ASSERT_OK(l);
  EXPECT_EQ(std::find(l->begin(), l->end(), a), l->end());
}

// ---- Mailbox --------------------------------------------------------------------------------

// A sender process posts and exits; a receiver process started after it takes every post, in order.
TEST(MqMailbox, PostsOutliveTheSenderProcess) {
  test::Watchdog wd(60s);
  auto name = unique_name("box");
  Cleanup c{name};
  constexpr int kCount = 10;
  pid_t sender = ::fork();
  if (sender == 0) {
    auto box = Mailbox::open(name, {.capacity = kCount, .message_size = 64});
    if (!box) ::_exit(2);
    for (int i = 0; i < kCount; ++i)
      if (!box->post(as_bytes(fmt::format("post {}", i)), 5s)) ::_exit(3);
    ::_exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(sender, &st, 0), sender);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  pid_t receiver = ::fork();
  if (receiver == 0) {
    auto box = Mailbox::open(name);
    if (!box) ::_exit(2);
    for (int i = 0; i < kCount; ++i) {
      auto m = box->take(5s);
      if (!m) ::_exit(3);
      if (m->text() != fmt::format("post {}", i)) ::_exit(4);
    }
    if (box->try_take() || box->stats().received != kCount) ::_exit(5);
    ::_exit(0);
  }
  ASSERT_EQ(::waitpid(receiver, &st, 0), receiver);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "receiver exit " << WEXITSTATUS(st);
}

TEST(MqMailbox, OverflowPoliciesAreAppliedAndCounted) {
  test::Watchdog wd(30s);
  auto take_all = [](Mailbox& b) {
    std::vector<std::string> out;
    while (auto m = b.try_take()) out.emplace_back(m->text());
    return out;
  };
  {
    auto name = unique_name("box");
    Cleanup c{name};
    auto b = Mailbox::open(name, {.capacity = 2, .message_size = 16, .overflow = Overflow::fail});
    IPCX_ASSERT_OK(b);
    IPCX_ASSERT_OK(b->post(as_bytes("a")));
    IPCX_ASSERT_OK(b->post(as_bytes("b")));
    IPCX_EXPECT_ERRC(b->post(as_bytes("c")), Errc::would_block);
    auto s = b->stats();
    EXPECT_EQ(s.sent, 2u);
    EXPECT_EQ(s.dropped.refused, 1u);
    EXPECT_EQ(s.queued, 2u);
    EXPECT_EQ(take_all(*b), (std::vector<std::string>{"a", "b"}));
  }
  {
    auto name = unique_name("box");
    Cleanup c{name};
    auto b = Mailbox::open(name, {.capacity = 2, .message_size = 16, .overflow = Overflow::drop_newest});
    IPCX_ASSERT_OK(b);
    for (auto t : {"a", "b", "c", "d"}) IPCX_ASSERT_OK(b->post(as_bytes(t)));
    EXPECT_EQ(b->stats().dropped.newest, 2u);
    EXPECT_EQ(take_all(*b), (std::vector<std::string>{"a", "b"}));
  }
  {
    auto name = unique_name("box");
    Cleanup c{name};
    auto b = Mailbox::open(name, {.capacity = 2, .message_size = 16, .overflow = Overflow::drop_oldest});
    IPCX_ASSERT_OK(b);
    for (auto t : {"a", "b", "c", "d"}) IPCX_ASSERT_OK(b->post(as_bytes(t)));
    auto s = b->stats();
    EXPECT_EQ(s.dropped.oldest, 2u);
    EXPECT_EQ(s.sent, 4u);
    EXPECT_EQ(take_all(*b), (std::vector<std::string>{"c", "d"}));
    EXPECT_EQ(b->stats().received, 2u);
  }
  {
    auto name = unique_name("box");
    Cleanup c{name};
    auto b = Mailbox::open(name, {.capacity = 1, .message_size = 16});
    IPCX_ASSERT_OK(b);
    IPCX_ASSERT_OK(b->post(as_bytes("a")));
    IPCX_EXPECT_ERRC(b->post(as_bytes("b"), 20ms), Errc::timeout);
    IPCX_EXPECT_ERRC(b->post(std::vector<std::byte>(17)), Errc::too_large);
    auto s = b->stats();
    EXPECT_EQ(s.sent, 1u);
    EXPECT_EQ(s.dropped.total(), 0u);
  }
}

// ---- mq:// ----------------------------------------------------------------------------------

std::string mq_url(const std::string& name, std::string_view query = {}) {
  return fmt::format("mq:///{}{}", name, query);
}

TEST(MqTransport, UrlOptionsAreRangeChecked) {
  auto n = unique_name("mqt");
  for (auto q : {"?capacity=0", "?capacity=65537", "?msgsize=0", "?msgsize=16777217", "?priority=32766",
                 "?priority=-1", "?capacity=ten", "?bogus=1"}) {
    auto l = ipcx::listen(mq_url(n, q));
    ASSERT_FALSE(l) << q;
    EXPECT_EQ(l.error().code, Errc::invalid_url) << q << ": " << l.error().message();
  }
  IPCX_EXPECT_ERRC(ipcx::listen("mq://host/x"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen("mq:///a/b"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen("mq:///" + std::string(201, 'x')), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect(mq_url(n), {}, 1s), Errc::connection_refused);
}

TEST(MqTransport, EchoSizesPrioritiesAndEof) {
  test::Watchdog wd(30s);
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n, "?msgsize=100"));
  IPCX_ASSERT_OK(l);
  auto c = ipcx::connect(l->url(), {}, 5s);
  IPCX_ASSERT_OK(c);
  auto s = l->accept(5s);
  IPCX_ASSERT_OK(s);
  EXPECT_TRUE(c->capabilities().records);
  EXPECT_FALSE(c->capabilities().verified_peer);
  EXPECT_FALSE(c->capabilities().fd_passing);
  EXPECT_TRUE(l->capabilities().concurrent);
  EXPECT_EQ(s->peer().pid, ::getpid());
  IPCX_ASSERT_OK(c->send(std::vector<std::byte>(100)));
  auto big = c->send(std::vector<std::byte>(101));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
  EXPECT_NE(big.error().detail.find("message size of 100"), std::string::npos) << big.error().message();
  IPCX_ASSERT_OK(c->send({}));
  auto m = s->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->size(), 100u);
  m = s->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->size(), 0u) << "an empty message is data, not the end";
  IPCX_ASSERT_OK(s->send(as_bytes("back")));
  m = c->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "back");
  c->close();
  IPCX_EXPECT_ERRC(s->recv(5s), Errc::closed);
}

// Raw garbage written into a conversation queue (data at the reserved priority 0) is a protocol
// error for that connection only.
TEST(MqTransport, RawGarbageAtTheReservedPriorityIsProtocol) {
  test::Watchdog wd(30s);
  ASSERT_TRUE(mqueue_mounted());
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(l);
  auto c = ipcx::connect(l->url(), {}, 5s);
  IPCX_ASSERT_OK(c);
  // Before accept the client's queues still have names: write into the client->server one.
  auto names = queues_starting(n + ".");
  ASSERT_EQ(names.size(), 2u);
  auto cs = std::find_if(names.begin(), names.end(), [](auto& x) { return x.ends_with(".cs"); });
  ASSERT_NE(cs, names.end());
  mqd_t raw = ::mq_open(("/" + *cs).c_str(), O_WRONLY);
  ASSERT_NE(raw, static_cast<mqd_t>(-1));
  ASSERT_EQ(::mq_send(raw, "garbage", 7, 0), 0);
  ::mq_close(raw);
  auto s = l->accept(5s);
  IPCX_ASSERT_OK(s);
  EXPECT_TRUE(queues_starting(n + ".").empty()) << "accept unlinks the conversation's queues";
  IPCX_EXPECT_ERRC(s->recv(5s), Errc::protocol);
  IPCX_EXPECT_ERRC(s->recv(5s), Errc::closed);
}

TEST(MqTransport, SendToAClosedPeerIsClosed) {
  test::Watchdog wd(30s);
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n, "?capacity=2"));
  IPCX_ASSERT_OK(l);
  auto c = ipcx::connect(l->url(), {}, 5s);
  IPCX_ASSERT_OK(c);
  auto s = l->accept(5s);
  IPCX_ASSERT_OK(s);
  s->close();
  Result<void> r;
  for (int i = 0; i < 10 && r; ++i) r = c->send(as_bytes("anyone?"), 5s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
}

TEST(MqTransport, LiveListenerIsNotStolenStaleOneIsReplaced) {
  test::Watchdog wd(30s);
  ASSERT_TRUE(mqueue_mounted());
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(l);
  IPCX_EXPECT_ERRC(ipcx::listen(mq_url(n)), Errc::address_in_use);
  l->close();
  EXPECT_TRUE(queues_starting(n).empty()) << "close removes the service queue";
  // A listener process SIGKILLed leaves its service queue and a pending client's queues.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  if (child == 0) {
    auto cl = ipcx::listen(mq_url(n));
    if (!cl) ::_exit(2);
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char b;
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  ::close(ready[0]);
  auto pending = ipcx::connect(mq_url(n), {}, 5s);
  IPCX_ASSERT_OK(pending);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(queues_starting(n).size(), 3u);
  auto fresh = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(fresh);
  EXPECT_EQ(queues_starting(n).size(), 1u) << "the stale announcement's queues were removed";
  IPCX_EXPECT_ERRC(pending->recv(5s), Errc::closed);
  auto c = ipcx::connect(fresh->url(), {}, 5s);
  IPCX_ASSERT_OK(c);
  auto s = fresh->accept(5s);
  IPCX_ASSERT_OK(s);
}

// The server engine serves several mq:// clients, each in its own process; one SIGKILLed in the
// middle leaves nothing in /dev/mqueue and the others go on.
TEST(MqTransport, ServerEngineWithSeveralClientProcesses) {
  test::Watchdog wd(60s);
  ASSERT_TRUE(mqueue_mounted());
  auto n = unique_name("mqt");
  // Small queues: RLIMIT_MSGQUEUE (819200 bytes by default) holds only four conversations of the
  // default 10 x 8192 bytes each way.
  auto l = ipcx::listen(mq_url(n, "?msgsize=1024"));
  IPCX_ASSERT_OK(l);
  const std::string url = l->url();
  std::atomic<int> closed_sessions{0};
  Server::Handlers h;
  h.on_message = [](Session& s, Message& m) { (void)s.send(m.bytes()); };
  h.on_close = [&](Session&, const Error&) { ++closed_sessions; };
  auto srv = Server::create(std::move(h));
  IPCX_ASSERT_OK(srv);
  IPCX_ASSERT_OK(srv->add_listener(std::move(*l)));
  test::ServerThread st(std::move(*srv));

  constexpr int kClients = 4;
  std::vector<pid_t> kids;
  for (int i = 0; i < kClients; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      auto c = ipcx::connect(url, {}, 5s);
      if (!c) ::_exit(2);
      for (int k = 0; k < 50; ++k) {
        auto text = fmt::format("client {} message {}", i, k);
        if (!c->send(as_bytes(text), 5s)) ::_exit(3);
        auto m = c->recv(5s);
        if (!m || m->text() != text) ::_exit(4);
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  // One more that connects, talks once, then hangs until SIGKILL.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t victim = ::fork();
  if (victim == 0) {
    auto c = ipcx::connect(url, {}, 5s);
    if (!c) ::_exit(2);
    if (!c->send(as_bytes("hi"), 5s)) ::_exit(3);
    auto m = c->recv(5s);
    if (!m) {
      std::fprintf(stderr, "victim: %s\n", m.error().message().c_str());
      ::_exit(4);
    }
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  for (pid_t k : kids) {
    int s = 0;
    ASSERT_EQ(::waitpid(k, &s, 0), k);
    EXPECT_TRUE(WIFEXITED(s) && WEXITSTATUS(s) == 0) << "client exit " << WEXITSTATUS(s);
  }
  char b;
  if (::read(ready[0], &b, 1) != 1) {
    int vs = 0;
    ::waitpid(victim, &vs, 0);
    ADD_FAILURE() << "the last client could not talk: exit " << WEXITSTATUS(vs);
  }
  ::close(ready[0]);
  ::kill(victim, SIGKILL);
  ::waitpid(victim, nullptr, 0);
  EXPECT_TRUE(test::eventually([&] { return closed_sessions.load() == kClients + 1; }, 20s))
      << closed_sessions.load() << " sessions ended";
  auto left = queues_starting(n + ".");
  EXPECT_TRUE(left.empty()) << left.size() << " conversation queues left, e.g. " << (left.empty() ? "" : left[0]);
}


// A writer that closes while its queue is full cannot queue the end marker: the reader still
// gets every message, then closed (the writer's lock is gone).
TEST(MqTransport, CloseWithAFullQueueIsStillEof) {
  test::Watchdog wd(30s);
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(l);
  auto c = ipcx::connect(mq_url(n, "?capacity=3&msgsize=64"), {}, 5s);
  IPCX_ASSERT_OK(c);
  auto s = l->accept(5s);
  IPCX_ASSERT_OK(s);
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(c->try_send(as_bytes(fmt::format("m{}", i))));
  IPCX_EXPECT_ERRC(c->try_send(as_bytes("full")), Errc::would_block);
  c->close();
  for (int i = 0; i < 3; ++i) {
    auto m = s->recv(5s);
    IPCX_ASSERT_OK(m);
    EXPECT_EQ(m->text(), fmt::format("m{}", i));
  }
  IPCX_EXPECT_ERRC(s->recv(5s), Errc::closed);
}

// A client waiting in recv learns that the server process was SIGKILLed.
TEST(MqTransport, ClientSeesAKilledServer) {
  test::Watchdog wd(30s);
  ASSERT_TRUE(mqueue_mounted());
  auto n = unique_name("mqt");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t server = ::fork();
  if (server == 0) {
    auto l = ipcx::listen(mq_url(n));
    if (!l) ::_exit(2);
    (void)!::write(ready[1], "l", 1);
    auto s = l->accept(10s);
    if (!s || !s->send(as_bytes("hello"), 5s)) ::_exit(3);
    (void)!::write(ready[1], "a", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char b;
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  auto c = ipcx::connect(mq_url(n), {}, 5s);
  IPCX_ASSERT_OK(c);
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  ::close(ready[0]);
  auto m = c->recv(5s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "hello");
  ::kill(server, SIGKILL);
  ::waitpid(server, nullptr, 0);
  IPCX_EXPECT_ERRC(c->recv(10s), Errc::closed);
  // Sends go into the queue until it is full; then the reader's absence is noticed.
  Result<void> r;
  for (int i = 0; i < 11 && r; ++i) r = c->send(as_bytes("x"), 10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
  // The dead listener's service queue is stale: a new listener replaces it.
  auto fresh = ipcx::listen(mq_url(n));
  IPCX_EXPECT_OK(fresh);
  EXPECT_TRUE(queues_starting(n + ".").empty());
}

// A client that never reads fills only its own queue: the others are served.
TEST(MqTransport, ANonReadingClientDoesNotStallOthers) {
  test::Watchdog wd(60s);
  auto n = unique_name("mqt");
  auto l = ipcx::listen(mq_url(n));
  IPCX_ASSERT_OK(l);
  const std::string url = l->url();
  Server::Handlers h;
  h.on_message = [](Session& s, Message& m) { (void)s.send(m.bytes()); };
  auto srv = Server::create(std::move(h));
  IPCX_ASSERT_OK(srv);
  IPCX_ASSERT_OK(srv->add_listener(std::move(*l)));
  test::ServerThread st(std::move(*srv));
  auto idle = ipcx::connect(url + "?capacity=2&msgsize=64", {}, 5s);
  IPCX_ASSERT_OK(idle);
  for (int i = 0; i < 50; ++i) IPCX_ASSERT_OK(idle->send(as_bytes("never read"), 5s));
  auto busy = ipcx::connect(url + "?capacity=2&msgsize=64", {}, 5s);
  IPCX_ASSERT_OK(busy);
  for (int i = 0; i < 100; ++i) {
    auto text = fmt::format("busy {}", i);
    IPCX_ASSERT_OK(busy->send(as_bytes(text), 5s));
    auto m = busy->recv(5s);
    IPCX_ASSERT_OK(m);
    EXPECT_EQ(m->text(), text);
  }
}

// With the default sizes, RLIMIT_MSGQUEUE (819200 bytes) holds four conversations of a user;
// the fifth connect is refused naming the limit. Run as uid 65534, whose budget is its own.
TEST(MqTransport, RlimitMsgqueueRefusesTheFifthDefaultConversation) {
  test::Watchdog wd(30s);
  rlimit q{};
  ASSERT_EQ(::getrlimit(RLIMIT_MSGQUEUE, &q), 0);
  if (q.rlim_cur != 819200) GTEST_SKIP() << "RLIMIT_MSGQUEUE is " << q.rlim_cur << ", not the default";
  auto n = unique_name("mqt");
  auto r = as_nobody([&] {
    auto l = ipcx::listen(mq_url(n));
    if (!l) return "listen: " + l.error().message();
    std::vector<Connection> conns;
    std::string out;
    for (int i = 0; i < 5; ++i) {
      auto c = ipcx::connect(mq_url(n), {}, 5s);
      out += c ? "ok\n" : describe(c.error()) + "\n";
      if (c) conns.push_back(std::move(*c));
    }
    return out;
  });
  EXPECT_EQ(r.out.substr(0, 12), "ok\nok\nok\nok\n") << r.out;
  EXPECT_NE(r.out.find("resource exhausted|"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("RLIMIT_MSGQUEUE = 819200 bytes (raise: ulimit -q"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ipcx
