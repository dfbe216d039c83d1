// shm::Segment: naming, permissions, the header checks, the directory, the heap, crash repair,
// NamedSemaphore and shm::list(). Multi-process cases fork; the other-user cases run a real
// process as nobody.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <ipcx/segment.hpp>

#include "e2e/cli_harness.hpp"
#include "shm/layout.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using ipcx::Errc;
using ipcx::shm::Segment;
namespace layout = ipcx::shm::layout;

namespace {

// A unique segment name, removed (if still there) at scope exit.
struct Name {
  std::string name = ipcx::test::unique_name("seg");
  ~Name() { (void)Segment::remove(name); }
  std::string path() const { return fmt::format("/dev/shm/ipcx-{}-{}", ::geteuid(), name); }
  operator std::string_view() const { return name; }
};

layout::Header& hdr(const Segment& s) { return *static_cast<layout::Header*>(s.base()); }

// Runs fn in a forked child; returns its exit code (128 + signal when killed).
template <class F>
int in_child(F fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = 99;
    try {
      code = fn();
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

#define EXPECT_ERRC(expr, want)                                                          \
  do {                                                                                   \
    auto r_ = (expr);                                                                    \
    ASSERT_FALSE(r_.has_value()) << #expr " succeeded";                                 \
    EXPECT_EQ(r_.error().code, want) << r_.error().message();                            \
  } while (0)

}  // namespace

TEST(Segment, CreateOpenAndExclusive) {
  Name n;
  auto a = Segment::create(n, {.size = 64 << 10});
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->size(), 64u << 10);
  EXPECT_EQ(a->path(), n.path());
  EXPECT_ERRC(Segment::create(n), Errc::already_exists);
  auto* x = a->construct<int>("x", 42).value();
  auto b = Segment::open(n);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(b->size(), a->size());
  EXPECT_NE(b->base(), a->base());
  auto* y = b->find<int>("x").value();
  EXPECT_EQ(*y, 42);
  *x = 7;
  EXPECT_EQ(*y, 7);
  ASSERT_TRUE(Segment::remove(n));
  EXPECT_ERRC(Segment::open(n), Errc::not_found);
  EXPECT_ERRC(Segment::remove(n), Errc::not_found);
  EXPECT_EQ(*y, 7);  // still mapped after remove
}

TEST(Segment, BadNamesAndSizes) {
  EXPECT_ERRC(Segment::create(""), Errc::invalid_argument);
  EXPECT_ERRC(Segment::create(std::string(Segment::kMaxName + 1, 'a')), Errc::invalid_argument);
  Name n;
  EXPECT_ERRC(Segment::create(n, {.size = 100}), Errc::invalid_argument);
  EXPECT_ERRC(Segment::open(""), Errc::invalid_argument);
}

TEST(Segment, PlantedFileIsNeitherReplacedNorTrusted) {
  Name n;
  {
    ipcx::Fd fd(::open(n.path().c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600));
    ASSERT_TRUE(fd);
    std::string junk(8192, 'J');
    ASSERT_EQ(::write(fd.get(), junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  }
  EXPECT_ERRC(Segment::create(n), Errc::already_exists);
  EXPECT_ERRC(Segment::open(n), Errc::protocol);
  // An empty one (as a creator that died before sizing it leaves): open gives up at `ready`.
  ASSERT_EQ(::truncate(n.path().c_str(), 0), 0);
  auto r = Segment::open(n, 50ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::timeout);
  EXPECT_NE(r.error().message().find("ipcx shm rm"), std::string::npos) << r.error().message();
}

TEST(Segment, PlantedSymlinkIsNotFollowed) {
  Name n, target;
  {
    ipcx::Fd fd(::open(target.path().c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600));
    ASSERT_TRUE(fd);
  }
  ASSERT_EQ(::symlink(target.path().c_str(), n.path().c_str()), 0);
  EXPECT_ERRC(Segment::create(n), Errc::already_exists);
  EXPECT_ERRC(Segment::open(n), Errc::permission_denied);
  struct stat st {};
  ASSERT_EQ(::stat(target.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);  // the target was never sized or written
  ::unlink(n.path().c_str());
}

TEST(Segment, ModeIs0600WhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{077}, mode_t{022}}) {
    Name n;
    mode_t old = ::umask(mask);
    auto s = Segment::create(n);
    ::umask(old);
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(mode_of(n.path()), 0600u) << "umask " << mask;
  }
}

TEST(Segment, GroupOptionGives0660AndThatGroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another group needs root (or membership)";
  for (std::string group : {"nogroup", "65534"}) {
    Name n;
    mode_t old = ::umask(077);
    auto s = Segment::create(n, {.group = group});
    ::umask(old);
    ASSERT_TRUE(s) << s.error().message();
    struct stat st {};
    ASSERT_EQ(::stat(n.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, 65534u);
  }
  Name n;
  EXPECT_ERRC(Segment::create(n, {.group = "ipcx-no-such-group"}), Errc::not_found);
  EXPECT_EQ(::access(n.path().c_str(), F_OK), -1);
}

TEST(Segment, HeaderIsCheckedOnOpen) {
  Name n;
  auto s = Segment::create(n).value();
  auto& h = hdr(s);
  EXPECT_EQ(h.magic.load(), layout::kMagic);
  EXPECT_EQ(h.creator_pid, ::getpid());
  EXPECT_STREQ(h.name, n.name.c_str());

  h.version = layout::kVersion + 1;
  EXPECT_ERRC(Segment::open(n), Errc::type_mismatch);
  h.version = layout::kVersion;
  h.total_size += 4096;
  EXPECT_ERRC(Segment::open(n), Errc::protocol);
  h.total_size -= 4096;
  h.header_size = 12;
  EXPECT_ERRC(Segment::open(n), Errc::protocol);
  h.header_size = sizeof(layout::Header);
  ASSERT_TRUE(Segment::open(n));
  h.magic.store(0x6b6e756a6b6e756aull);
  EXPECT_ERRC(Segment::open(n), Errc::protocol);
  h.magic.store(0);
  EXPECT_ERRC(Segment::open(n, 20ms), Errc::timeout);
}

TEST(Segment, OpenWaitsForTheCreatorToFinish) {
  Name n;
  auto s = Segment::create(n).value();
  auto& h = hdr(s);
  h.magic.store(0);
  std::thread later([&] {
    std::this_thread::sleep_for(50ms);
    h.magic.store(layout::kMagic, std::memory_order_release);
  });
  auto o = Segment::open(n, 5s);
  later.join();
  EXPECT_TRUE(o) << o.error().message();
}

TEST(Segment, ConstructFindDestroy) {
  Name n;
  auto s = Segment::create(n).value();
  auto* a = s.construct<int>("a", 42).value();
  EXPECT_EQ(*a, 42);
  EXPECT_ERRC(s.construct<int>("a", 1), Errc::already_exists);
  EXPECT_EQ(s.find<int>("a").value(), a);
  EXPECT_ERRC(s.find<double>("a"), Errc::type_mismatch);
  EXPECT_ERRC(s.find<unsigned>("a"), Errc::type_mismatch);  // same size and alignment, other type
  EXPECT_ERRC(s.find<int>("b"), Errc::not_found);
  EXPECT_EQ(s.find_or_construct<int>("a", 5).value(), a);
  EXPECT_EQ(*a, 42);
  EXPECT_ERRC(s.find_or_construct<long>("a", 5), Errc::type_mismatch);
  auto* b = s.find_or_construct<std::array<double, 3>>("b", std::array<double, 3>{1, 2, 3}).value();
  EXPECT_EQ((*b)[2], 3);
  EXPECT_EQ(s.offset_of(b).value() % alignof(double), 0u);

  auto objs = s.objects().value();
  ASSERT_EQ(objs.size(), 2u);
  EXPECT_EQ(objs[0].name, "a");
  EXPECT_EQ(objs[0].size, sizeof(int));
  EXPECT_EQ(objs[0].offset, s.offset_of(a).value());

  EXPECT_ERRC(s.destroy<double>("a"), Errc::type_mismatch);
  std::size_t before = s.free_bytes();
  ASSERT_TRUE(s.destroy<int>("a"));
  EXPECT_GT(s.free_bytes(), before);
  EXPECT_ERRC(s.find<int>("a"), Errc::not_found);
  EXPECT_ERRC(s.destroy<int>("a"), Errc::not_found);
  EXPECT_TRUE(s.construct<int>("a", 1));  // the name is free again
}

TEST(Segment, ObjectNames) {
  Name n;
  auto s = Segment::create(n).value();
  EXPECT_ERRC(s.construct<int>(""), Errc::invalid_argument);
  EXPECT_ERRC(s.construct<int>(std::string(Segment::kMaxObjectName + 1, 'n')), Errc::invalid_argument);
  EXPECT_ERRC(s.find<int>(std::string(Segment::kMaxObjectName + 1, 'n')), Errc::invalid_argument);
  EXPECT_TRUE(s.construct<int>(std::string(Segment::kMaxObjectName, 'n')));
  EXPECT_TRUE(s.find<int>(std::string(Segment::kMaxObjectName, 'n')));
}

TEST(Segment, DirectoryFull) {
  Name n;
  auto s = Segment::create(n).value();
  for (std::size_t i = 0; i < Segment::kMaxObjects; ++i)
    ASSERT_TRUE(s.construct<std::uint64_t>(fmt::format("o{}", i), i)) << i;
  EXPECT_ERRC(s.construct<std::uint64_t>("one-more", 0u), Errc::resource_exhausted);
  EXPECT_EQ(s.objects().value().size(), Segment::kMaxObjects);
  ASSERT_TRUE(s.destroy<std::uint64_t>("o3"));
  EXPECT_TRUE(s.construct<std::uint64_t>("one-more", 0u));
}

TEST(Segment, OutOfSpaceAndCoalescing) {
  Name n;
  auto s = Segment::create(n, {.size = 64 << 10}).value();
  std::size_t empty = s.free_bytes();
  EXPECT_GT(empty, 40u << 10);
  EXPECT_ERRC((s.construct<std::array<char, 128 << 10>>("big")), Errc::resource_exhausted);
  EXPECT_ERRC(s.allocate(1 << 20), Errc::resource_exhausted);
  EXPECT_ERRC(s.allocate(0), Errc::invalid_argument);
  EXPECT_ERRC(s.allocate(8, 3), Errc::invalid_argument);
  // Fill with 1 KiB blocks, free every other one, then all: the heap must coalesce back.
  std::vector<std::uint64_t> offs;
  while (auto o = s.allocate(1000)) offs.push_back(*o);
  ASSERT_GT(offs.size(), 30u);
  EXPECT_ERRC(s.allocate(2000), Errc::resource_exhausted);
  for (std::size_t i = 0; i < offs.size(); i += 2) ASSERT_TRUE(s.deallocate(offs[i]));
  EXPECT_ERRC(s.allocate(2000), Errc::resource_exhausted);  // holes of ~1 KiB only
  for (std::size_t i = 1; i < offs.size(); i += 2) ASSERT_TRUE(s.deallocate(offs[i]));
  EXPECT_EQ(s.free_bytes(), empty);
  EXPECT_TRUE(s.allocate(empty - 64));
}

TEST(Segment, AllocateDeallocateAt) {
  Name n;
  auto s = Segment::create(n).value();
  auto off = s.allocate(100, 256).value();
  EXPECT_EQ(off % 256, 0u);
  auto* p = s.at<std::uint64_t>(off).value();
  *p = 5;
  EXPECT_EQ(s.offset_of(p).value(), off);
  EXPECT_ERRC(s.at<std::uint64_t>(0), Errc::invalid_argument);          // the header
  EXPECT_ERRC(s.at<std::uint64_t>(s.size() - 4), Errc::invalid_argument);  // runs past the end
  EXPECT_ERRC(s.at<std::uint64_t>(s.size() + 64), Errc::invalid_argument);
  EXPECT_ERRC(s.at<std::uint64_t>(off + 1), Errc::invalid_argument);    // misaligned
  EXPECT_ERRC(s.at<std::uint64_t>(UINT64_MAX - 3), Errc::invalid_argument);
  int local = 0;
  EXPECT_ERRC(s.offset_of(&local), Errc::invalid_argument);

  auto* named = s.construct<int>("named", 1).value();
  EXPECT_ERRC(s.deallocate(s.offset_of(named).value()), Errc::invalid_argument);
  EXPECT_ERRC(s.deallocate(off + 16), Errc::invalid_argument);
  EXPECT_ERRC(s.deallocate(3), Errc::invalid_argument);
  EXPECT_ERRC(s.deallocate(UINT64_MAX - 15), Errc::invalid_argument);
  ASSERT_TRUE(s.deallocate(off));
  EXPECT_ERRC(s.deallocate(off), Errc::invalid_argument);  // twice
}

TEST(Segment, GarbageInTheDirectoryIsAnErrorNotACrash) {
  Name n;
  auto s = Segment::create(n).value();
  ASSERT_TRUE(s.construct<std::uint64_t>("v", 1u));
  auto& e = hdr(s).directory[0];
  ASSERT_STREQ(e.name, "v");
  auto saved = e;
  for (std::uint64_t bad : {std::uint64_t{0}, std::uint64_t{8}, s.size(), s.size() - 4, UINT64_MAX - 7}) {
    e.offset = bad;
    EXPECT_ERRC(s.find<std::uint64_t>("v"), Errc::protocol);
    EXPECT_ERRC(s.find_or_construct<std::uint64_t>("v", 0u), Errc::protocol);
    EXPECT_ERRC(s.destroy<std::uint64_t>("v"), Errc::protocol);
    EXPECT_TRUE(s.objects());
  }
  e = saved;
  e.size = UINT64_MAX;
  EXPECT_ERRC(s.find<std::uint64_t>("v"), Errc::protocol);
  e = saved;
  std::memset(e.name, 'x', sizeof e.name);  // no NUL: matches nothing
  EXPECT_ERRC(s.find<std::uint64_t>("v"), Errc::not_found);
  EXPECT_TRUE(s.objects());
  e = saved;
  e.state = 77;
  EXPECT_ERRC(s.find<std::uint64_t>("v"), Errc::not_found);
  EXPECT_ERRC(s.construct<std::uint64_t>("v", 0u), Errc::protocol);
  e.state = layout::entry_constructing;  // find never hands out a half-built object
  EXPECT_ERRC(s.find<std::uint64_t>("v"), Errc::not_found);
  e = saved;
  EXPECT_EQ(*s.find<std::uint64_t>("v").value(), 1u);
}

TEST(Segment, GarbageInTheHeapIsAnErrorNotACrash) {
  Name n;
  auto s = Segment::create(n, {.size = 64 << 10}).value();
  auto a = s.allocate(64).value();
  auto& heap = hdr(s).heap;
  auto saved = heap;
  auto check_all_fail = [&] {
    auto r = s.allocate(64);
    if (r) {  // a garbage list may still lead somewhere in bounds; it must stay in bounds
      EXPECT_LT(*r, s.size());
    } else {
      EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
    }
    auto d = s.deallocate(a);
    if (!d) EXPECT_TRUE(d.error().code == Errc::protocol || d.error().code == Errc::invalid_argument);
    else ASSERT_TRUE(s.allocate(64)) ;
  };
  for (std::uint64_t bad : {std::uint64_t{1}, std::uint64_t{8}, std::uint64_t{24}, s.size(), s.size() - 8,
                            UINT64_MAX - 15, std::uint64_t{layout::kHeapBegin} + 32}) {
    heap.free_head = bad;
    check_all_fail();
    heap = saved;
  }
  heap = saved;
  heap.end = UINT64_MAX;
  EXPECT_ERRC(s.allocate(64), Errc::protocol);
  heap = saved;
  heap.begin = 16;
  EXPECT_ERRC(s.allocate(64), Errc::protocol);
  heap = saved;
  // A free block whose size runs past the end, or a free list that loops.
  auto* free_block = reinterpret_cast<layout::Block*>(static_cast<std::byte*>(s.base()) + heap.free_head);
  auto saved_block = *free_block;
  std::size_t too_big = s.free_bytes();  // never fits: the walk reads every free block
  free_block->size = s.size();
  EXPECT_ERRC(s.allocate(too_big), Errc::protocol);
  free_block->size = 0;
  EXPECT_ERRC(s.allocate(too_big), Errc::protocol);
  *free_block = saved_block;
  free_block->link = heap.free_head;
  EXPECT_ERRC(s.allocate(too_big), Errc::protocol);
  *free_block = saved_block;
  ASSERT_TRUE(s.deallocate(a));
}

// A type whose constructor kills its process: the directory lock is held, the entry says
// "constructing", the memory is allocated.
struct DiesInConstructor {
  DiesInConstructor() { ::raise(SIGKILL); }
  std::uint64_t v[4];
};

// A type whose destructor kills its process: destroy() is cut short with the lock held.
struct DiesInDestructor {
  std::uint64_t v[4]{};
  ~DiesInDestructor() { ::raise(SIGKILL); }
};

TEST(Segment, KilledInsideDestroyLeavesNoNameOnFreedMemory) {
  ipcx::test::Watchdog wd(60s);
  Name n;
  auto s = Segment::create(n).value();
  std::size_t free_before = s.free_bytes();
  ASSERT_TRUE(s.construct<DiesInDestructor>("doomed"));
  int code = in_child([&] {
    auto c = Segment::open(n).value();
    (void)c.destroy<DiesInDestructor>("doomed");
    return 0;
  });
  ASSERT_EQ(code, 128 + SIGKILL);
  // The name is gone (the repair freed it), and its memory is free exactly once.
  EXPECT_ERRC(s.find<DiesInDestructor>("doomed"), Errc::not_found);
  EXPECT_EQ(s.free_bytes(), free_before);
  auto a = s.construct<std::array<std::uint64_t, 4>>("next");
  ASSERT_TRUE(a);
  EXPECT_TRUE(s.objects().value().size() == 1u);
}

TEST(Segment, CreatorKilledInsideAConstructorIsRepaired) {
  ipcx::test::Watchdog wd(60s);
  Name n;
  auto s = Segment::create(n).value();
  ASSERT_TRUE(s.construct<int>("before", 1));
  std::size_t free_before = s.free_bytes();
  int code = in_child([&] {
    auto c = Segment::open(n).value();
    (void)c.construct<DiesInConstructor>("boom");
    return 0;
  });
  ASSERT_EQ(code, 128 + SIGKILL);
  EXPECT_EQ(hdr(s).directory[1].state, layout::entry_constructing);  // as the child left it
  EXPECT_ERRC(s.find<DiesInConstructor>("boom"), Errc::not_found);  // the repair ran here
  EXPECT_EQ(hdr(s).directory[1].state, layout::entry_free);
  EXPECT_EQ(s.free_bytes(), free_before);  // its memory came back
  EXPECT_TRUE(s.construct<int>("after", 2));
  EXPECT_EQ(*s.find<int>("before").value(), 1);
  EXPECT_TRUE((s.construct<std::array<std::uint64_t, 4>>("boom")));
  auto names = s.objects().value();
  EXPECT_EQ(names.size(), 3u);
}

TEST(Segment, KilledHolderWithADamagedHeapLeaksButStaysUsable) {
  ipcx::test::Watchdog wd(60s);
  Name n;
  auto s = Segment::create(n).value();
  ASSERT_TRUE(s.construct<int>("keep", 1));
  int code = in_child([&] {
    auto c = Segment::open(n).value();
    auto& h = *static_cast<layout::Header*>(c.base());
    auto g = h.lock.lock().value();  // held until death
    h.heap.free_bytes += 12345;  // as a process dying mid-update would leave it
    ::raise(SIGKILL);
    return 0;
  });
  ASSERT_EQ(code, 128 + SIGKILL);
  EXPECT_EQ(*s.find<int>("keep").value(), 1);  // repaired: named objects still reachable
  EXPECT_EQ(hdr(s).heap.broken, 1u);
  EXPECT_ERRC(s.construct<int>("new", 1), Errc::protocol);
  EXPECT_ERRC(s.allocate(8), Errc::protocol);
}

TEST(Segment, OpenOrCreateRaceHasOneCreator) {
  ipcx::test::Watchdog wd(60s);
  Name n;
  constexpr int kProcs = 6;
  auto* go = static_cast<std::atomic<int>*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(go, MAP_FAILED);
  new (go) std::atomic<int>(0);
  std::vector<pid_t> kids;
  for (int i = 0; i < kProcs; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      while (go->load() == 0) {
      }
      auto s = Segment::open_or_create(n, {.size = 64 << 10});
      if (!s) ::_exit(2);
      auto c = s->find_or_construct<std::atomic<std::uint64_t>>("count", 0u);
      if (!c) ::_exit(3);
      (*c)->fetch_add(1);
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  go->store(1);
  for (pid_t pid : kids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  ::munmap(go, 4096);
  auto s = Segment::open(n).value();
  EXPECT_EQ(s.find<std::atomic<std::uint64_t>>("count").value()->load(), std::uint64_t{kProcs});
  EXPECT_NE(std::find(kids.begin(), kids.end(), hdr(s).creator_pid), kids.end());
  EXPECT_EQ(s.objects().value().size(), 1u);
}

TEST(NamedSemaphore, AcrossTwoProcesses) {
  ipcx::test::Watchdog wd(60s);
  Name n;
  auto sem = ipcx::shm::NamedSemaphore::create(n, {.initial = 0}).value();
  EXPECT_EQ(mode_of(n.path()), 0600u);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto s = ipcx::shm::NamedSemaphore::open(n);
    if (!s) ::_exit(2);
    if (!s->wait(20s)) ::_exit(3);
    ::_exit(s->post(2) ? 0 : 4);
  }
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(sem.post());
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(sem.value(), 2u);
  EXPECT_TRUE(sem.try_wait());

  Name plain;
  auto seg = Segment::create(plain).value();
  EXPECT_ERRC(ipcx::shm::NamedSemaphore::open(plain), Errc::type_mismatch);
  EXPECT_ERRC(ipcx::shm::NamedSemaphore::create(n), Errc::already_exists);
  EXPECT_TRUE(ipcx::shm::NamedSemaphore::remove(n));
}

TEST(SegmentList, ShowsCreatorAndWhetherItLives) {
  ipcx::test::Watchdog wd(60s);
  Name mine, orphan;
  auto s = Segment::create(mine, {.size = 64 << 10}).value();
  ASSERT_TRUE(s.construct<int>("counter", 0));
  int code = in_child([&] {
    (void)Segment::create(orphan).value().construct<int>("left", 1);
    ::raise(SIGKILL);
    return 0;
  });
  ASSERT_EQ(code, 128 + SIGKILL);
  std::vector<ipcx::shm::SegmentInfo> all;
  auto find = [&](const std::string& name) {
    all = ipcx::shm::list().value();
    auto it = std::find_if(all.begin(), all.end(), [&](auto& i) { return i.name == name; });
    EXPECT_NE(it, all.end()) << name;
    return it == all.end() ? ipcx::shm::SegmentInfo{} : *it;
  };
  auto a = find(mine.name);
  EXPECT_TRUE(a.valid);
  EXPECT_EQ(a.path, mine.path());
  EXPECT_EQ(a.size, 64u << 10);
  EXPECT_EQ(a.mode, 0600u);
  EXPECT_EQ(a.creator, ::getpid());
  EXPECT_TRUE(a.creator_alive);
  ASSERT_EQ(a.objects.size(), 1u);
  EXPECT_EQ(a.objects[0].name, "counter");
  auto b = find(orphan.name);
  EXPECT_TRUE(b.valid);
  EXPECT_NE(b.creator, ::getpid());
  EXPECT_NE(b.creator, 0);
  EXPECT_FALSE(b.creator_alive);
  ASSERT_EQ(b.objects.size(), 1u);

  // A pid reused by another process does not count as the creator.
  hdr(s).creator_start += 1;
  EXPECT_FALSE(find(mine.name).creator_alive);
  hdr(s).creator_start -= 1;
  // Garbage is listed as not valid, never trusted.
  hdr(s).magic.store(42);
  auto g = find(mine.name);
  EXPECT_FALSE(g.valid);
  EXPECT_TRUE(g.objects.empty());
  hdr(s).magic.store(layout::kMagic);
}

// ---- another user ---------------------------------------------------------------------

namespace {
constexpr uid_t kNobody = 65534;
#define IPCX_NEEDS_ROOT()                                                               \
  do {                                                                                  \
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a process as another user"; \
  } while (0)
}  // namespace

TEST(SegmentAccess, AnotherUserCannotOpenMapOrRemove) {
  IPCX_NEEDS_ROOT();
  ipcx::test::Watchdog wd(60s);
  Name n;
  auto s = Segment::create(n).value();
  ASSERT_TRUE(s.construct<int>("secret", 7));
  std::string sys = fmt::format("/ipcx-{}-{}", ::geteuid(), n.name);
  auto r = ipcx::test::run_shell(
      fmt::format("exec setpriv --reuid={0} --regid={0} --clear-groups {1} {2} {3}", kNobody, IPCX_SHM_ATTACKER, sys, n.name));
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("shm_open O_RDWR: refused (Permission denied)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("shm_open O_RDONLY: refused (Permission denied)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("shm_unlink: refused"), std::string::npos) << r.out;
  // The CLI as nobody: its own namespace has no such segment, and it must say so.
  auto rm = ipcx::test::run_shell(
      fmt::format("exec setpriv --reuid={0} --regid={0} --clear-groups {1} shm rm {2}", kNobody, IPCX_CLI, n.name));
  EXPECT_EQ(rm.code, 1) << rm.err;
  EXPECT_EQ(*Segment::open(n).value().find<int>("secret").value(), 7);
}

TEST(SegmentAccess, ASegmentOwnedByAnotherUserIsRefused) {
  IPCX_NEEDS_ROOT();
  Name n;
  {
    auto s = Segment::create(n).value();
    ASSERT_EQ(::chown(n.path().c_str(), kNobody, kNobody), 0);
  }
  auto o = Segment::open(n);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, Errc::permission_denied);
  EXPECT_NE(o.error().message().find("uid 65534"), std::string::npos) << o.error().message();
  auto all = ipcx::shm::list().value();
  auto it = std::find_if(all.begin(), all.end(), [&](auto& i) { return i.path == n.path(); });
  ASSERT_NE(it, all.end());
  EXPECT_FALSE(it->valid);  // listed, never mapped
  EXPECT_EQ(it->creator, 0);
}

TEST(Segment, LargerThanDevShmIsAnErrorNotALaterSigbus) {
  // The pages are reserved at creation: a segment /dev/shm cannot hold fails there, instead of
  // killing whoever first touches a page that has no room (SIGBUS).
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs("/dev/shm", &vfs), 0);
  const std::uint64_t total = static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  Name n;
  auto s = Segment::create(n, {.size = static_cast<std::size_t>(total + (1ull << 30))});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ipcx::Errc::resource_exhausted) << s.error().message();
  EXPECT_FALSE(std::filesystem::exists(n.path()));
}

TEST(Segment, ListingSurvivesASegmentTruncatedUnderIt) {
  // Another process of this user shrinks and regrows a segment while list() reads it: list()
  // reads headers with pread, so it sees a short file, never a SIGBUS.
  Name n;
  ASSERT_TRUE(Segment::create(n, {.size = 64 << 10}));
  int fd = ::open(n.path().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::atomic<bool> stop = false;
  std::thread flip([&] {
    while (!stop.load()) {
      (void)::ftruncate(fd, 0);
      (void)::ftruncate(fd, 64 << 10);
    }
  });
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(ipcx::shm::list());
  stop = true;
  flip.join();
  ::close(fd);
}
