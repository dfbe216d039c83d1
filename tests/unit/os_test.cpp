// The OS layer: Fd, Deadline, wait_fd, EventFd, futex, shared memory and mappings.
#include <atomic>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/fd.hpp>

#include "os/eventfd.hpp"
#include "os/futex.hpp"
#include "os/shm.hpp"
#include "os/sys.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx::os {
namespace {

using namespace std::chrono_literals;
using test::why;

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// ---- Fd ----------------------------------------------------------------------------------

TEST(Fd, ClosesOnDestruction) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  int raw = p[0];
  {
    Fd f(raw);
    EXPECT_TRUE(f.valid());
    EXPECT_TRUE(static_cast<bool>(f));
    EXPECT_EQ(f.get(), raw);
  }
  EXPECT_FALSE(fd_is_open(raw));
  ::close(p[1]);
}

TEST(Fd, MoveTransfersOwnership) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd a(p[0]), b(p[1]);
  Fd c(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): the moved-from state is the point
  EXPECT_EQ(a.get(), -1);   // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.get(), p[0]);
  c = std::move(b);  // closes p[0], takes p[1]
  EXPECT_FALSE(fd_is_open(p[0]));
  EXPECT_EQ(c.get(), p[1]);
  EXPECT_TRUE(fd_is_open(p[1]));
  auto& self = c;
  c = std::move(self);  // self-move keeps the descriptor
  EXPECT_TRUE(fd_is_open(p[1]));
  EXPECT_EQ(c.get(), p[1]);
}

TEST(Fd, ReleaseAndReset) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd f(p[0]);
  int released = f.release();
  EXPECT_EQ(released, p[0]);
  EXPECT_FALSE(f.valid());
  EXPECT_TRUE(fd_is_open(released));  // release() does not close
  f.reset(released);
  EXPECT_EQ(f.get(), p[0]);
  f.reset(p[1]);  // closes the old one
  EXPECT_FALSE(fd_is_open(p[0]));
  f.reset();
  EXPECT_FALSE(fd_is_open(p[1]));
  EXPECT_FALSE(f.valid());
  Fd empty;
  EXPECT_FALSE(empty.valid());
  empty.reset();  // harmless
}

// ---- Deadline / wait_fd ------------------------------------------------------------------

TEST(Deadline, Kinds) {
  auto never = Deadline::never();
  EXPECT_TRUE(never.infinite());
  EXPECT_FALSE(never.immediate());
  EXPECT_FALSE(never.expired());
  EXPECT_EQ(never.poll_ms(), -1);
  EXPECT_TRUE(Deadline::after(forever).infinite());
  // Timeouts too long for the clock are forever, not an overflow.
  EXPECT_TRUE(Deadline::after(forever - 1ns).infinite());
  EXPECT_TRUE(Deadline::after(std::chrono::hours(24 * 365 * 200)).infinite());
  EXPECT_FALSE(Deadline::after(std::chrono::hours(24 * 365)).infinite());

  for (auto d : {Deadline::now(), Deadline::after(Timeout::zero()), Deadline::after(-5s)}) {
    EXPECT_FALSE(d.infinite());
    EXPECT_TRUE(d.immediate());
    EXPECT_TRUE(d.expired());
    EXPECT_EQ(d.poll_ms(), 0);
  }

  auto later = Deadline::after(1h);
  EXPECT_FALSE(later.infinite());
  EXPECT_FALSE(later.immediate());
  EXPECT_FALSE(later.expired());
  EXPECT_GT(later.poll_ms(), 0);
  EXPECT_LE(later.poll_ms(), 3600 * 1000);

  // Sub-millisecond deadlines round up: poll(2) must not return before the deadline.
  auto tiny = Deadline::after(1ns);
  EXPECT_FALSE(tiny.immediate());
  EXPECT_LE(tiny.poll_ms(), 1);

  // Huge finite timeouts saturate instead of overflowing int.
  auto huge = Deadline::after(std::chrono::hours(24 * 365));
  EXPECT_EQ(huge.poll_ms(), 0x7fffffff);
}

TEST(Deadline, ExpiresEventually) {
  auto d = Deadline::after(1ms);
  while (!d.expired()) std::this_thread::sleep_for(200us);
  EXPECT_EQ(d.poll_ms(), 0);
}

TEST(WaitFd, ReadinessTimeoutAndWouldBlock) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd r(p[0]), w(p[1]);
  IPCX_EXPECT_ERRC(wait_fd(r.get(), POLLIN, Deadline::now()), Errc::would_block);
  IPCX_EXPECT_ERRC(wait_fd(r.get(), POLLIN, Deadline::after(20ms)), Errc::timeout);
  auto wr = wait_fd(w.get(), POLLOUT, Deadline::now());
  ASSERT_TRUE(wr) << why(wr);
  EXPECT_TRUE(*wr & POLLOUT);
  ASSERT_EQ(::write(w.get(), "x", 1), 1);
  auto rd = wait_fd(r.get(), POLLIN, Deadline::never());
  ASSERT_TRUE(rd) << why(rd);
  EXPECT_TRUE(*rd & POLLIN);
  w.reset();
  char c;
  ASSERT_EQ(::read(r.get(), &c, 1), 1);
  auto hup = wait_fd(r.get(), POLLIN, Deadline::after(10s));
  ASSERT_TRUE(hup) << why(hup);
  EXPECT_TRUE(*hup & POLLHUP);
}

TEST(SetNonblocking, TogglesTheFlag) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd r(p[0]), w(p[1]);
  IPCX_ASSERT_OK(set_nonblocking(r.get(), true));
  EXPECT_TRUE(::fcntl(r.get(), F_GETFL) & O_NONBLOCK);
  IPCX_ASSERT_OK(set_nonblocking(r.get(), true));  // idempotent
  IPCX_ASSERT_OK(set_nonblocking(r.get(), false));
  EXPECT_FALSE(::fcntl(r.get(), F_GETFL) & O_NONBLOCK);
  IPCX_EXPECT_ERRC(set_nonblocking(-1, true), Errc::invalid_argument);
}

TEST(Check, CapturesErrnoAndOp) {
  auto r = check("close", [] { return ::close(-1); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno, EBADF);
  EXPECT_STREQ(r.error().op, "close");
  auto ok = check("getpid", [] { return ::getpid(); });
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, ::getpid());
}

// ---- EventFd -----------------------------------------------------------------------------

TEST(EventFd, CountsAndDrains) {
  auto e = EventFd::create();
  ASSERT_TRUE(e) << why(e);
  EXPECT_GE(e->fd(), 0);
  EXPECT_TRUE(::fcntl(e->fd(), F_GETFD) & FD_CLOEXEC);
  IPCX_EXPECT_ERRC(e->drain(), Errc::would_block);
  IPCX_ASSERT_OK(e->signal());
  IPCX_ASSERT_OK(e->signal(4));
  pollfd p{e->fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  auto v = e->drain();
  ASSERT_TRUE(v) << why(v);
  EXPECT_EQ(*v, 5u);
  IPCX_EXPECT_ERRC(e->drain(), Errc::would_block);
  EXPECT_EQ(::poll(&p, 1, 0), 0);
}

TEST(EventFd, InitialValueAndSemaphoreMode) {
  auto e = EventFd::create(3, true);
  ASSERT_TRUE(e) << why(e);
  for (int i = 0; i < 3; ++i) {
    auto v = e->drain();
    ASSERT_TRUE(v) << why(v);
    EXPECT_EQ(*v, 1u);
  }
  IPCX_EXPECT_ERRC(e->drain(), Errc::would_block);
}

TEST(EventFd, WakesAPollerInAnotherThread) {
  test::Watchdog wd(30s);
  auto e = EventFd::create();
  ASSERT_TRUE(e) << why(e);
  std::thread t([&] { (void)e->signal(7); });
  auto w = wait_fd(e->fd(), POLLIN, Deadline::after(20s));
  t.join();
  ASSERT_TRUE(w) << why(w);
  auto v = e->drain();
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 7u);
}

// ---- futex -------------------------------------------------------------------------------

TEST(Futex, ValueMismatchReturnsAtOnce) {
  std::atomic<std::uint32_t> word{1};
  IPCX_EXPECT_OK(futex_wait(word, 0, forever, false));  // *word != expected: no sleep
  IPCX_EXPECT_OK(futex_wait(word, 0, forever, true));
}

TEST(Futex, TimesOut) {
  std::atomic<std::uint32_t> word{0};
  IPCX_EXPECT_ERRC(futex_wait(word, 0, 10ms, false), Errc::timeout);
  IPCX_EXPECT_ERRC(futex_wait(word, 0, Timeout::zero(), true), Errc::timeout);
}

TEST(Futex, WakeWithoutWaitersWakesNobody) {
  std::atomic<std::uint32_t> word{0};
  auto n = futex_wake(word, 1, false);
  ASSERT_TRUE(n) << why(n);
  EXPECT_EQ(*n, 0);
}

TEST(Futex, WakesAWaiterInAnotherThread) {
  for (bool shared : {false, true}) {
    test::Watchdog wd(30s);
    std::atomic<std::uint32_t> word{0};
    std::atomic<bool> done{false};
    std::thread waiter([&] {
      while (word.load() == 0) (void)futex_wait(word, 0, forever, shared);
      done = true;
    });
    std::this_thread::sleep_for(5ms);  // usually lets the waiter sleep first; correct either way
    word.store(1);
    auto n = futex_wake(word, 1, shared);
    ASSERT_TRUE(n) << why(n);
    EXPECT_GE(*n, 0);
    EXPECT_LE(*n, 1);
    waiter.join();
    EXPECT_TRUE(done.load());
  }
}

TEST(Futex, WakeReportsASleepingWaiter) {
  test::Watchdog wd(30s);
  std::atomic<std::uint32_t> word{0};
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    (void)futex_wait(word, 0, 20s, false);  // the word never changes: only a wake ends this
    returned = true;
  });
  int woken = 0;
  while (woken == 0 && !returned.load()) {
    auto n = futex_wake(word, 1, false);
    ASSERT_TRUE(n) << why(n);
    woken = *n;
    if (woken == 0) std::this_thread::sleep_for(1ms);
  }
  waiter.join();
  EXPECT_EQ(woken, 1);
}

TEST(Futex, WakeAllWakesEveryWaiter) {
  test::Watchdog wd(30s);
  std::atomic<std::uint32_t> word{0};
  std::atomic<int> finished{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 4; ++i)
    waiters.emplace_back([&] {
      while (word.load() == 0) (void)futex_wait(word, 0, forever, true);
      ++finished;
    });
  word.store(1);
  IPCX_EXPECT_OK(futex_wake(word, INT32_MAX, true));
  for (auto& t : waiters) t.join();
  EXPECT_EQ(finished.load(), 4);
}

// ---- SharedMemory / Mapping -------------------------------------------------------------

// Removes a shm object at scope exit even when an assertion fails.
struct ShmCleanup {
  std::string name;
  ~ShmCleanup() { (void)SharedMemory::remove(name); }
};

unsigned shm_mode(const SharedMemory& s) {
  struct stat st {};
  if (::fstat(s.fd(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

TEST(SharedMemory, NamesAreNamespacedPerUser) {
  auto n = SharedMemory::system_name("robot/pose");
  EXPECT_EQ(n, "/ipcx-" + std::to_string(::geteuid()) + "-robot.pose");
}

TEST(SharedMemory, CreateIsExclusive) {
  ShmCleanup cleanup{test::unique_name("shm")};
  auto a = SharedMemory::create(cleanup.name, 4096);
  ASSERT_TRUE(a) << why(a);
  EXPECT_EQ(a->size(), 4096u);
  EXPECT_EQ(a->name(), SharedMemory::system_name(cleanup.name));
  EXPECT_TRUE(::fcntl(a->fd(), F_GETFD) & FD_CLOEXEC);
  auto b = SharedMemory::create(cleanup.name, 4096);
  ASSERT_FALSE(b) << "a second create of the same name succeeded";
  EXPECT_EQ(b.error().sys_errno, EEXIST) << b.error().message();
  EXPECT_EQ(b.error().code, Errc::already_exists);
  // The failed create did not remove or truncate the first one.
  auto opened = SharedMemory::open(cleanup.name, false);
  ASSERT_TRUE(opened) << why(opened);
  EXPECT_EQ(opened->size(), 4096u);
}

TEST(SharedMemory, ModeIsExactWhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{0077}, mode_t{0777}}) {
    mode_t old = ::umask(mask);
    ShmCleanup cleanup{test::unique_name("shm-mode")};
    auto s = SharedMemory::create(cleanup.name, 100);
    ::umask(old);
    ASSERT_TRUE(s) << why(s);
    EXPECT_EQ(shm_mode(*s), 0600u) << "umask " << std::oct << mask;
    ShmCleanup group{test::unique_name("shm-mode")};
    old = ::umask(mask);
    auto g = SharedMemory::create(group.name, 100, 0660);
    ::umask(old);
    ASSERT_TRUE(g) << why(g);
    EXPECT_EQ(shm_mode(*g), 0660u) << "umask " << std::oct << mask;
  }
}

TEST(SharedMemory, RemoveAndOpenErrors) {
  auto name = test::unique_name("shm-rm");
  {
    auto s = SharedMemory::create(name, 64);
    ASSERT_TRUE(s) << why(s);
  }
  IPCX_ASSERT_OK(SharedMemory::remove(name));
  IPCX_EXPECT_ERRC(SharedMemory::remove(name), Errc::not_found);
  IPCX_EXPECT_ERRC(SharedMemory::open(name, true), Errc::not_found);
  IPCX_EXPECT_ERRC(SharedMemory::create("", 64), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(SharedMemory::create(name, 0), Errc::invalid_argument);
}

TEST(SharedMemory, MappingsShareTheBytes) {
  ShmCleanup cleanup{test::unique_name("shm-map")};
  auto s = SharedMemory::create(cleanup.name, 8192);
  ASSERT_TRUE(s) << why(s);
  auto w = s->map(true);
  ASSERT_TRUE(w) << why(w);
  ASSERT_EQ(w->size(), 8192u);
  auto other = SharedMemory::open(cleanup.name, false);
  ASSERT_TRUE(other) << why(other);
  auto r = other->map(false);
  ASSERT_TRUE(r) << why(r);
  std::memcpy(w->data(), "hello", 5);
  w->bytes()[8191] = std::byte{0x5a};
  EXPECT_EQ(std::memcmp(r->data(), "hello", 5), 0);
  EXPECT_EQ(r->bytes()[8191], std::byte{0x5a});
  // A read-only open cannot be mapped writable.
  IPCX_EXPECT_ERRC(other->map(true), Errc::permission_denied);
}

TEST(SharedMemory, ReadOnlyMappingCannotBeWritten) {
  auto name = test::unique_name("shm-ro");
  auto s = SharedMemory::create(name, 4096);
  ASSERT_TRUE(s) << why(s);
  auto r = s->map(false);
  ASSERT_TRUE(r) << why(r);
  // Unlinked before the death test: whatever dies, nothing is left in /dev/shm.
  IPCX_ASSERT_OK(SharedMemory::remove(name));
  auto* p = static_cast<volatile char*>(r->data());
  EXPECT_DEATH(p[0] = 1, "");
}

TEST(Mapping, AnonymousAndMove) {
  auto m = Mapping::anonymous(1 << 20);
  ASSERT_TRUE(m) << why(m);
  ASSERT_NE(m->data(), nullptr);
  EXPECT_EQ(m->size(), 1u << 20);
  m->bytes()[12345] = std::byte{7};
  void* addr = m->data();
  Mapping moved(std::move(*m));
  EXPECT_EQ(m->data(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(m->size(), 0u);       // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(moved.data(), addr);
  EXPECT_EQ(moved.bytes()[12345], std::byte{7});
  auto other = Mapping::anonymous(4096);
  ASSERT_TRUE(other);
  moved = std::move(*other);  // unmaps the megabyte
  EXPECT_EQ(moved.size(), 4096u);
  // The old range is gone: msync on an unmapped range fails with ENOMEM.
  EXPECT_NE(::msync(addr, 4096, MS_ASYNC), 0);
  IPCX_EXPECT_ERRC(Mapping::anonymous(0), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(Mapping::map(-1, 0, false), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(Mapping::map(-1, 4096, false), Errc::invalid_argument);
}

}  // namespace
}  // namespace ipcx::os
