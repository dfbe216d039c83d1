// Shared helpers for ipcx tests: unique scratch names, a watchdog.
#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <thread>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ipcx/fd.hpp>

#include <fmt/format.h>

namespace ipcx::test {

// A directory unique to this process and call, removed (with contents) on destruction.
// Names start with "ipcx-test" so the leftovers check can find strays.
class ScratchDir {
 public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    path_ = fmt::format("/tmp/ipcx-test-{}-{}", ::getpid(), counter++);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A raw Unix stream socket connected to `path` (to send bytes no ipcx client would), or an
// invalid Fd.
inline Fd raw_unix_client(const std::string& path) {
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Fd();
  return fd;
}

// A child forked (without exec) from a threaded process that then allocates or starts threads:
// glibc supports that, the sanitizers' runtimes do not reliably — ThreadSanitizer dies, and
// under AddressSanitizer a child has hung, now and then, on an allocator lock another thread
// of the parent held at the fork. Such tests run in the default build (`make test`); the paths
// they share run under both sanitizers in in-process tests and the conformance suite.
#ifdef IPCX_TEST_SANITIZED
#define IPCX_SKIP_FORK_UNDER_SANITIZERS() GTEST_SKIP() << "a forked child of a threaded process: not under a sanitizer"
#else
#define IPCX_SKIP_FORK_UNDER_SANITIZERS() (void)0
#endif

// A unique name for abstract sockets, shm objects and the like.
inline std::string unique_name(const std::string& what) {
  static std::atomic<int> counter{0};
  return fmt::format("ipcx-test-{}-{}-{}", what, ::getpid(), counter++);
}

// Bytes as the text they hold.
inline std::string text(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// The names in /dev/shm that contain `name` (tests run in parallel: compare only your own).
inline std::set<std::string> dev_shm(const std::string& name) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm"))
    if (e.path().filename().string().find(name) != std::string::npos) out.insert(e.path().filename().string());
  return out;
}

// A sysv:// URL with a fresh key in 0x7e500000..0x7e5fffff (tests/check-leftovers.sh looks
// there for queues a test left behind).
inline std::string sysv_test_url() {
  auto name = unique_name("sysv");
  std::uint32_t h = 2166136261u;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return fmt::format("sysv://0x{:08x}", 0x7e500000u | (h & 0xfffffu));
}

// An mq:// URL with a fresh name and small queues: every conversation charges
// 2 x capacity x msgsize to the user's RLIMIT_MSGQUEUE (819200 bytes by default), shared with
// the tests running beside it.
inline std::string mq_test_url(std::size_t msgsize = 2048, int capacity = 8) {
  return fmt::format("mq:///{}?msgsize={}&capacity={}", unique_name("mq"), msgsize, capacity);
}

// Kills the whole test process if it runs past `limit` (a deadlock must fail, not hang CI).
// The constructor returns once the thread runs, so a test that then fills its descriptor table
// does not race the thread's start (UBSan's check of its first virtual call opens a pipe).
class Watchdog {
 public:
  explicit Watchdog(std::chrono::seconds limit) : thread_([this, limit] {
    started_.store(true);
    auto until = std::chrono::steady_clock::now() + limit;
    while (!done_.load()) {
      if (std::chrono::steady_clock::now() > until) {
        std::fprintf(stderr, "watchdog: test exceeded %lds, aborting\n", static_cast<long>(limit.count()));
        std::abort();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }) {
    while (!started_.load()) std::this_thread::yield();
  }
  ~Watchdog() {
    done_.store(true);
    thread_.join();
  }

 private:
  std::atomic<bool> done_{false};
  std::atomic<bool> started_{false};
  std::thread thread_;
};

// Polls `done` every millisecond until it holds or `bound` passes. `bound` is a hang detector,
// generous on purpose: it never measures speed.
template <class Pred>
bool eventually(Pred done, std::chrono::milliseconds bound) {
  auto until = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace ipcx::test
