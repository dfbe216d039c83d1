// Rows over process-shared synchronisation objects placed in one MAP_SHARED mapping (a memfd
// the echo child inherits): lock+unlock without contention, a mutex handed from one process to
// the other, and a ping-pong over two semaphores. raw is glibc (robust pshared pthread mutex,
// sem_t), ipcx is <ipcx/sync.hpp>, peer is Boost.Interprocess when the build found its headers.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <new>
#include <utility>

#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <unistd.h>

#if IPCX_BENCH_BOOST_INTERPROCESS
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/interprocess_semaphore.hpp>
#endif

#include "bench/mechanism.hpp"
#include "bench/session.hpp"

namespace ipcx::bench {
namespace {

using namespace std::chrono_literals;

// A lock or a semaphore has no peer to lose: the parent never blocks longer than this without
// checking that the echo child still lives. (The child dies with its parent: PDEATHSIG.)
constexpr auto kSlice = 100ms;
// mutex-uncontended: pairs per sample; a clock read per pair would cost about as much as the pair.
constexpr int kBatch = 64;
// mutex-handoff: how long the holder keeps the lock once the other process announced it is
// about to lock. Long enough for a waiter that sleeps at once (glibc) to be asleep in the
// kernel, shorter than ipcx's default spin (20 µs), so that the default ipcx waiter is spinning.
constexpr std::uint64_t kHoldNs = 10'000;

timespec monotonic_in(std::chrono::nanoseconds d) {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  auto ns = static_cast<long long>(ts.tv_nsec) + d.count();
  ts.tv_sec += static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return ts;
}

// One T in a MAP_SHARED mapping: constructed by the parent, which hands the memfd to the child;
// the child maps what the parent built.
template <class T>
class Shared {
 public:
  Shared() = default;
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  ~Shared() {
    if (!at_) return;
    if (built_) at_->~T();
    ::munmap(at_, sizeof(T));
  }

  Status create(ChildWiring& wiring) {
    Fd fd(::memfd_create("ipcx-bench-sync", MFD_CLOEXEC));
    if (!fd) return sys_error("memfd_create");
    if (::ftruncate(fd.get(), sizeof(T)) != 0) return sys_error("ftruncate");
    if (auto r = map(fd.get()); !r) return r;
    new (at_) T();
    built_ = true;
    wiring.give(std::move(fd));
    return at_->ready();
  }
  Status open(const RunCtx& ctx) {
    if (ctx.inherited.size() != 1) return fail(Errc::invalid_argument, "sync", "expected one inherited memfd");
    Fd fd(ctx.inherited[0]);  // the mapping outlives it
    return map(fd.get());
  }
  T& operator*() const noexcept { return *at_; }
  T* operator->() const noexcept { return at_; }

 private:
  Status map(int fd) {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return sys_error("mmap");
    at_ = static_cast<T*>(p);
    return {};
  }
  T* at_ = nullptr;
  bool built_ = false;  // by this process: only the parent destroys the objects
};

Status from_rc(int rc, const char* op) {
  if (rc == 0) return {};
  if (rc == EOWNERDEAD) return fail(Errc::owner_died, op, "the other process died holding it");
  return fail_errno(rc, op);
}

// --- mutexes: an Object (in shared memory) and a Locker (this process's hold on it) per impl.

struct GlibcMutex {
  struct Object {
    pthread_mutex_t m;
    int rc;
    Object() {
      pthread_mutexattr_t a;
      ::pthread_mutexattr_init(&a);
      ::pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
      ::pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
      rc = ::pthread_mutex_init(&m, &a);
      ::pthread_mutexattr_destroy(&a);
    }
    ~Object() {
      if (rc == 0) ::pthread_mutex_destroy(&m);
    }
    Status ready() const { return from_rc(rc, "pthread_mutex_init"); }
  };
  class Locker {
   public:
    explicit Locker(Object& o) : m_(&o.m) {}
    ~Locker() {
      if (held_) ::pthread_mutex_unlock(m_);
    }
    Status lock() { return took(::pthread_mutex_lock(m_)); }
    // One lock + unlock, as a user writes it (mutex-uncontended).
    Status pair() {
      if (int rc = ::pthread_mutex_lock(m_); rc != 0) return from_rc(rc, "pthread_mutex_lock");
      ::pthread_mutex_unlock(m_);
      return {};
    }
    // false: kSlice passed
    Result<bool> lock_for_slice() {
      auto until = monotonic_in(kSlice);
      int rc = ::pthread_mutex_clocklock(m_, CLOCK_MONOTONIC, &until);
      if (rc == ETIMEDOUT) return false;
      if (auto r = took(rc); !r) return std::unexpected(r.error());
      return true;
    }
    void unlock() {
      held_ = false;
      ::pthread_mutex_unlock(m_);
    }

   private:
    Status took(int rc) {
      held_ = rc == 0;
      return from_rc(rc, "pthread_mutex_lock");
    }
    pthread_mutex_t* m_;
    bool held_ = false;
  };
};

template <bool kBlock>
struct IpcxMutex {
  struct Object {
    Mutex m{Mutex::Options{.spin = kBlock ? Spin::block() : Spin{}}};
    Status ready() const { return {}; }
  };
  class Locker {
   public:
    explicit Locker(Object& o) : m_(&o.m) {}
    Status lock() { return took(m_->lock()); }
    Status pair() {
      auto g = m_->lock();  // unlocked at the end of the scope
      if (!g) return std::unexpected(std::move(g.error()));
      return {};
    }
    Result<bool> lock_for_slice() {
      auto g = m_->lock(kSlice);
      if (!g && g.error().code == Errc::timeout) return false;
      if (auto r = took(std::move(g)); !r) return std::unexpected(r.error());
      return true;
    }
    void unlock() { g_.unlock(); }

   private:
    Status took(Result<Mutex::Guard> g) {
      if (!g) return std::unexpected(std::move(g.error()));
      if (g->owner_died()) return fail(Errc::owner_died, "Mutex::lock", "the other process died holding it");
      g_ = std::move(*g);
      return {};
    }
    Mutex* m_;
    Mutex::Guard g_;
  };
};

#if IPCX_BENCH_BOOST_INTERPROCESS
namespace bip = boost::interprocess;

// Boost reports failures by exception; the bench reports them as errors like the other impls.
template <class F>
Status boost_call(const char* op, F&& f) {
  try {
    f();
    return {};
  } catch (const bip::interprocess_exception& e) {
    return fail(Errc::system, op, e.what());
  }
}

boost::posix_time::ptime boost_deadline() {
  return boost::posix_time::microsec_clock::universal_time() +
         boost::posix_time::milliseconds(std::chrono::milliseconds(kSlice).count());
}

struct BoostMutex {
  struct Object {
    bip::interprocess_mutex m;
    Status ready() const { return {}; }
  };
  class Locker {
   public:
    explicit Locker(Object& o) : m_(&o.m) {}
    ~Locker() {
      if (held_) m_->unlock();
    }
    Status lock() {
      auto r = boost_call("interprocess_mutex::lock", [&] { m_->lock(); });
      held_ = r.has_value();
      return r;
    }
    Status pair() {
      return boost_call("interprocess_mutex::lock", [&] {
        m_->lock();
        m_->unlock();
      });
    }
    Result<bool> lock_for_slice() {
      bool got = false;
      if (auto r = boost_call("interprocess_mutex::timed_lock", [&] { got = m_->timed_lock(boost_deadline()); }); !r)
        return std::unexpected(r.error());
      held_ = got;
      return got;
    }
    void unlock() {
      held_ = false;
      m_->unlock();
    }

   private:
    bip::interprocess_mutex* m_;
    bool held_ = false;
  };
};
#endif

// --- mutex-uncontended: lock+unlock in the parent alone; the echo child has nothing to do.

template <class M>
class UncontendedChannel final : public SelfTimedChannel {
 public:
  explicit UncontendedChannel(typename M::Object* o) : o_(o) {}

  Result<Timing> measure(int warmup, int rounds) override {
    typename M::Locker l(*o_);
    for (int i = 0; i < warmup; ++i)
      if (auto r = batch(l); !r) return std::unexpected(r.error());
    Timing t;
    t.samples_ns.reserve(static_cast<std::size_t>(rounds));
    std::uint64_t total = 0;
    for (int i = 0; i < rounds; ++i) {
      // Nothing here blocks on the child, whose death would end the run: look for SIGINT & co.
      if (interrupted()) return fail(Errc::closed, "mutex lock", "interrupted");
      auto t0 = now_ns();
      if (auto r = batch(l); !r) return std::unexpected(r.error());
      auto d = now_ns() - t0;
      total += d;
      t.samples_ns.push_back(d / kBatch);
    }
    t.per_s = static_cast<double>(rounds) * kBatch * 1e9 / static_cast<double>(std::max<std::uint64_t>(total, 1));
    return t;
  }
  Status answer(int, int) override { return {}; }

 private:
  static Status batch(typename M::Locker& l) {
    for (int k = 0; k < kBatch; ++k)
      if (auto r = l.pair(); !r) return r;
    return {};
  }
  typename M::Object* o_;
};

template <class M>
class UncontendedSetup final : public Setup {
 public:
  explicit UncontendedSetup(const RunCtx&) {}
  Status parent_prepare(ChildWiring& wiring) override { return shared_.create(wiring); }
  Made<Channel> child_channel() override { return std::make_unique<UncontendedChannel<M>>(nullptr); }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return std::make_unique<UncontendedChannel<M>>(&*shared_);
  }

 private:
  Shared<typename M::Object> shared_;
};

// --- mutex-handoff: the lock goes back and forth; each process, holding it, waits until the
// other announced it is about to lock, holds it kHoldNs longer, stamps the clock and unlocks.
// The child, blocked in an untimed lock(), reads the clock once it holds the lock: that
// difference is one sample ("A unlocks, B acquires"), which the parent reads at its next turn.
// After unlocking, a side waits until the other has the lock before it locks again: neither
// mutex is fair, and the one that just unlocked would often take it back first.

enum Side : std::uint32_t { nobody = 0, parent_side = 1, child_side = 2 };

template <class M>
struct HandoffState {
  typename M::Object lock;
  alignas(64) std::atomic<std::uint32_t> waiting{nobody};  // the side about to call lock()
  std::atomic<std::uint32_t> owner{parent_side};           // the side that last acquired it
  alignas(64) std::atomic<std::uint64_t> released_ns{0};   // holder's clock just before unlock()
  std::atomic<std::uint64_t> sample_ns{0};                 // the child's latest hand-off
  Status ready() const { return lock.ready(); }
};

// Waits (spinning: the other side is microseconds away) until `word` says `who`.
Status await(std::atomic<std::uint32_t>& word, Side who, bool parent) {
  while (word.load(std::memory_order_acquire) != who) {
    if (parent && child_exited()) return child_gone("mutex hand-off");
    cpu_relax();
  }
  return {};
}

void hold_then_stamp(std::atomic<std::uint64_t>& released) {
  for (auto until = now_ns() + kHoldNs; now_ns() < until;) cpu_relax();
  released.store(now_ns(), std::memory_order_relaxed);
}

template <class M>
class HandoffChannel final : public SelfTimedChannel {
 public:
  // The parent's `locker` already holds the lock (taken before the child started).
  HandoffChannel(HandoffState<M>& s, typename M::Locker& locker) : s_(&s), l_(&locker) {}

  Result<Timing> measure(int warmup, int rounds) override {
    Timing t;
    t.samples_ns.reserve(static_cast<std::size_t>(rounds));
    for (int i = 0; i < warmup + rounds; ++i) {
      if (auto r = await(s_->waiting, child_side, true); !r) return std::unexpected(r.error());
      hold_then_stamp(s_->released_ns);
      l_->unlock();
      if (auto r = await(s_->owner, child_side, true); !r) return std::unexpected(r.error());
      s_->waiting.store(parent_side, std::memory_order_release);
      for (;;) {
        auto got = l_->lock_for_slice();
        if (!got) return std::unexpected(got.error());
        if (*got) break;
        if (child_exited()) return child_gone("mutex hand-off");
      }
      s_->owner.store(parent_side, std::memory_order_release);
      if (i >= warmup) t.samples_ns.push_back(s_->sample_ns.load(std::memory_order_relaxed));
    }
    std::uint64_t total = 0;
    for (auto v : t.samples_ns) total += v;
    t.per_s = static_cast<double>(t.samples_ns.size()) * 1e9 / static_cast<double>(std::max<std::uint64_t>(total, 1));
    return t;
  }

  Status answer(int warmup, int rounds) override {
    for (int i = 0; i < warmup + rounds; ++i) {
      s_->waiting.store(child_side, std::memory_order_release);
      if (auto r = l_->lock(); !r) return r;
      auto t1 = now_ns();
      auto t0 = s_->released_ns.load(std::memory_order_relaxed);
      s_->sample_ns.store(t1 > t0 ? t1 - t0 : 0, std::memory_order_relaxed);
      s_->owner.store(child_side, std::memory_order_release);
      if (auto r = await(s_->waiting, parent_side, false); !r) return r;
      hold_then_stamp(s_->released_ns);
      l_->unlock();
      if (auto r = await(s_->owner, parent_side, false); !r) return r;
    }
    return {};
  }

 private:
  HandoffState<M>* s_;
  typename M::Locker* l_;
};

template <class M>
class HandoffSetup final : public Setup {
 public:
  explicit HandoffSetup(const RunCtx& c) : ctx_(c) {}

  Status parent_prepare(ChildWiring& wiring) override {
    if (auto r = shared_.create(wiring); !r) return r;
    locker_.emplace(shared_->lock);
    return locker_->lock();  // the child's first lock() must find it held
  }
  Made<Channel> child_channel() override {
    if (auto r = shared_.open(ctx_); !r) return std::unexpected(r.error());
    locker_.emplace(shared_->lock);
    return std::make_unique<HandoffChannel<M>>(*shared_, *locker_);
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return std::make_unique<HandoffChannel<M>>(*shared_, *locker_);
  }

 private:
  RunCtx ctx_;
  Shared<HandoffState<M>> shared_;   // destroyed after the locker (declared first)
  std::optional<typename M::Locker> locker_;
};

// --- semaphore: the message model: send posts the semaphore the other process waits on.

struct GlibcSemaphore {
  struct Object {
    sem_t s;
    int rc;
    Object() : rc(::sem_init(&s, 1, 0) == 0 ? 0 : errno) {}
    ~Object() {
      if (rc == 0) ::sem_destroy(&s);
    }
    Status ready() const { return from_rc(rc, "sem_init"); }
  };
  static Status post(Object& o) { return ::sem_post(&o.s) == 0 ? Status{} : sys_error("sem_post"); }
  static Status wait(Object& o) {
    return retry([&] { return ::sem_wait(&o.s); }) == 0 ? Status{} : sys_error("sem_wait");
  }
  static Result<bool> wait_slice(Object& o) {
    auto until = monotonic_in(kSlice);
    if (retry([&] { return ::sem_clockwait(&o.s, CLOCK_MONOTONIC, &until); }) == 0) return true;
    if (errno == ETIMEDOUT) return false;
    return sys_error("sem_clockwait");
  }
};

template <bool kBlock>
struct IpcxSemaphore {
  struct Object {
    Semaphore s{Semaphore::Options{.initial = 0, .spin = kBlock ? Spin::block() : Spin{}}};
    Status ready() const { return {}; }
  };
  static Status post(Object& o) { return o.s.post(); }
  static Status wait(Object& o) { return o.s.wait(); }
  static Result<bool> wait_slice(Object& o) {
    auto r = o.s.wait(kSlice);
    if (r) return true;
    if (r.error().code == Errc::timeout) return false;
    return std::unexpected(std::move(r.error()));
  }
};

#if IPCX_BENCH_BOOST_INTERPROCESS
struct BoostSemaphore {
  struct Object {
    bip::interprocess_semaphore s{0};
    Status ready() const { return {}; }
  };
  static Status post(Object& o) { return boost_call("interprocess_semaphore::post", [&] { o.s.post(); }); }
  static Status wait(Object& o) { return boost_call("interprocess_semaphore::wait", [&] { o.s.wait(); }); }
  static Result<bool> wait_slice(Object& o) {
    bool got = false;
    if (auto r = boost_call("interprocess_semaphore::timed_wait", [&] { got = o.s.timed_wait(boost_deadline()); }); !r)
      return std::unexpected(r.error());
    return got;
  }
};
#endif

template <class S>
struct SemaphorePair {
  alignas(64) typename S::Object down;  // the parent posts, the child waits
  alignas(64) typename S::Object up;    // the child posts, the parent waits
  Status ready() const {
    if (auto r = down.ready(); !r) return r;
    return up.ready();
  }
};

template <class S>
class SemaphoreChannel final : public Channel {
 public:
  SemaphoreChannel(typename S::Object& out, typename S::Object& in, bool parent) : out_(&out), in_(&in), parent_(parent) {}
  Status send(std::span<const std::byte>) override { return S::post(*out_); }
  Status recv(std::size_t) override {
    if (!parent_) return S::wait(*in_);
    for (;;) {
      auto got = S::wait_slice(*in_);
      if (!got) return std::unexpected(got.error());
      if (*got) return {};
      if (child_exited()) return child_gone("semaphore wait");
    }
  }

 private:
  typename S::Object *out_, *in_;
  bool parent_;
};

template <class S>
class SemaphoreSetup final : public Setup {
 public:
  explicit SemaphoreSetup(const RunCtx& c) : ctx_(c) {}
  Status parent_prepare(ChildWiring& wiring) override { return shared_.create(wiring); }
  Made<Channel> child_channel() override {
    if (auto r = shared_.open(ctx_); !r) return std::unexpected(r.error());
    return std::make_unique<SemaphoreChannel<S>>(shared_->up, shared_->down, false);
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return std::make_unique<SemaphoreChannel<S>>(shared_->down, shared_->up, true);
  }

 private:
  RunCtx ctx_;
  Shared<SemaphorePair<S>> shared_;
};

template <class S>
std::unique_ptr<Setup> make(const RunCtx& c) {
  return std::make_unique<S>(c);
}

#if IPCX_BENCH_BOOST_INTERPROCESS
constexpr std::string_view kPeerSkipped{};
#define IPCX_BENCH_PEER(setup) make<setup>
#else
constexpr std::string_view kPeerSkipped = "Boost.Interprocess headers not found when ipcx was built";
#define IPCX_BENCH_PEER(setup) nullptr
#endif

const Mechanism kRows[] = {
    {.name = "mutex-uncontended",
     .group = Group::synchronisation,
     .purpose = "robust process-shared mutex: lock + unlock with nobody waiting",
     .raw = make<UncontendedSetup<GlibcMutex>>,
     .ipcx = make<UncontendedSetup<IpcxMutex<false>>>,
     .peer = IPCX_BENCH_PEER(UncontendedSetup<BoostMutex>),
     .fixed_size = 0,
     .peer_skipped = kPeerSkipped},
    {.name = "mutex-handoff",
     .group = Group::synchronisation,
     .purpose = "the mutex handed to another process spinning for it",
     .raw = make<HandoffSetup<GlibcMutex>>,
     .ipcx = make<HandoffSetup<IpcxMutex<false>>>,
     .peer = IPCX_BENCH_PEER(HandoffSetup<BoostMutex>),
     .fixed_size = 0,
     .peer_skipped = kPeerSkipped},
    // ipcx without its spin (Spin::block()), against the same glibc baseline: the spin's share.
    {.name = "mutex-handoff-block",
     .group = Group::synchronisation,
     .purpose = "the mutex handed to another process asleep in lock()",
     .raw = make<HandoffSetup<GlibcMutex>>,
     .ipcx = make<HandoffSetup<IpcxMutex<true>>>,
     .fixed_size = 0},
    {.name = "semaphore",
     .group = Group::synchronisation,
     .purpose = "process-shared counting semaphore: post/wait ping-pong, spinning",
     .raw = make<SemaphoreSetup<GlibcSemaphore>>,
     .ipcx = make<SemaphoreSetup<IpcxSemaphore<false>>>,
     .peer = IPCX_BENCH_PEER(SemaphoreSetup<BoostSemaphore>),
     .fixed_size = 0,
     .peer_skipped = kPeerSkipped},
    {.name = "semaphore-block",
     .group = Group::synchronisation,
     .purpose = "the same with the waiter asleep in the kernel",
     .raw = make<SemaphoreSetup<GlibcSemaphore>>,
     .ipcx = make<SemaphoreSetup<IpcxSemaphore<true>>>,
     .fixed_size = 0},
};

#undef IPCX_BENCH_PEER

}  // namespace

std::span<const Mechanism> sync_rows() { return kRows; }

}  // namespace ipcx::bench
