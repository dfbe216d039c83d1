// POSIX message queues, the Queue API: names, limits, modes, owners, sizes, priorities.
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
#include "e2e/mq_util.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using namespace mqtest;
using test::unique_name;

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

}  // namespace
}  // namespace ipcx
