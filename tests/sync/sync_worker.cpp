// The other processes of the multi-process sync tests: `ipcx-sync-worker ROLE SHM [N]`.
// Each role opens the shared state by name (sync_shared.hpp) and plays one part; tests
// SIGKILL them at will. A worker dies with its parent (PR_SET_PDEATHSIG), so a test that
// aborts leaves no process behind.
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include <ipcx/sync.hpp>

#include "sync/shared_region.hpp"
#include "sync/sync_shared.hpp"

using namespace ipcx;
using namespace ipcx::test::sync;
using namespace std::chrono_literals;

namespace {

void busy_for(std::chrono::nanoseconds d) {
  auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

[[noreturn]] void park() {
  for (;;) ::pause();
}

template <class T>
test::SharedRegion<T> open_or_die(const char* name) {
  auto r = test::SharedRegion<T>::open(name);
  if (!r) {
    std::fprintf(stderr, "sync-worker: %s\n", r.error().message().c_str());
    std::exit(2);
  }
  return std::move(*r);
}

int torture(const char* name, std::uint64_t seed) {
  auto r = open_or_die<Torture>(name);
  Torture& t = *r;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> delay_us(20, 200);
  while (t.stop.load() == 0) {
    auto g = t.m.lock();
    if (!g) {
      (g.error().code == Errc::not_recoverable ? t.not_recoverable : t.other_errors).fetch_add(1);
      std::this_thread::sleep_for(1ms);
      continue;
    }
    if (g->owner_died()) {
      t.owner_died_seen.fetch_add(1);
      if (t.a != t.b) t.repairs.fetch_add(1);
      t.b = t.a;
      g->mark_consistent();
    } else if (t.a != t.b) {
      t.torn_unreported.fetch_add(1);
      t.b = t.a;
    }
    t.a = t.a + 1;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    busy_for(std::chrono::microseconds(delay_us(rng)));  // a kill lands here most of the time
    t.b = t.a;
    t.acquisitions.fetch_add(1);
    g->unlock();
  }
  return 0;
}

// Passes n items (1..n) through the one-slot buffer.
int cv_producer(const char* name, std::uint64_t n) {
  auto r = open_or_die<Handoff>(name);
  Handoff& h = *r;
  for (std::uint64_t i = 1; i <= n; ++i) {
    auto g = h.m.lock();
    if (!g) return h.errors.fetch_add(1), 3;
    auto w = h.not_full.wait(*g, [&] { return !h.full; });
    if (!w) return h.errors.fetch_add(1), 3;
    h.item = i;
    h.full = true;
    g->unlock();
    h.not_empty.notify_one();
  }
  return 0;
}

int cv_consumer(const char* name, std::uint64_t n) {
  auto r = open_or_die<Handoff>(name);
  Handoff& h = *r;
  for (std::uint64_t i = 0; i < n; ++i) {
    auto g = h.m.lock();
    if (!g) return h.errors.fetch_add(1), 3;
    auto w = h.not_empty.wait(*g, [&] { return h.full; });
    if (!w) return h.errors.fetch_add(1), 3;
    h.sum += h.item;
    ++h.taken;
    h.full = false;
    g->unlock();
    h.not_full.notify_one();
    h.progress.fetch_add(1);
  }
  return 0;
}

int mon_producer(const char* name, std::uint64_t n) {
  auto r = open_or_die<MonitorHandoff>(name);
  for (std::uint64_t i = 1; i <= n; ++i) {
    auto g = r->mon.wait_until([](const Slot& s) { return !s.full; });
    if (!g) return r->errors.fetch_add(1), 3;
    (*g)->item = i;
    (*g)->full = true;
  }
  return 0;
}

int mon_consumer(const char* name, std::uint64_t n) {
  auto r = open_or_die<MonitorHandoff>(name);
  for (std::uint64_t i = 0; i < n; ++i) {
    auto g = r->mon.wait_until([](const Slot& s) { return s.full; });
    if (!g) return r->errors.fetch_add(1), 3;
    (*g)->sum += (*g)->item;
    ++(*g)->taken;
    (*g)->full = false;
    g->unlock();
    r->progress.fetch_add(1);
  }
  return 0;
}

int sem_post(const char* name, std::uint64_t n) {
  auto r = open_or_die<Sem>(name);
  std::uint64_t left = n;
  std::uint32_t k = 1;
  while (left > 0) {
    std::uint32_t now = static_cast<std::uint32_t>(std::min<std::uint64_t>(k, left));
    if (!r->sem.post(now)) return r->errors.fetch_add(1), 3;
    r->posted.fetch_add(now);
    left -= now;
    k = k % 3 + 1;  // posts of 1, 2 and 3 units
  }
  return 0;
}

int sem_take(const char* name, std::uint64_t n) {
  auto r = open_or_die<Sem>(name);
  for (std::uint64_t i = 0; i < n; ++i) {
    if (!r->sem.wait(20s)) return r->errors.fetch_add(1), 3;
    r->taken.fetch_add(1);
  }
  return 0;
}

// Blocks in wait() until killed (or takes one unit, which the test would see).
int sem_block(const char* name) {
  auto r = open_or_die<Sem>(name);
  r->waiting.fetch_add(1);
  if (r->sem.wait()) r->taken.fetch_add(1);
  park();
}

// Reads until told to stop: every read sees x == y and no writer inside.
int rw_reader(const char* name, std::uint64_t hold_us) {
  auto r = open_or_die<Rw>(name);
  Rw& s = *r;
  while (s.stop.load() == 0) {
    auto g = s.rw.lock_shared(20s);
    if (!g) {
      s.errors.fetch_add(1);
      return 3;
    }
    int inside = s.readers_inside.fetch_add(1) + 1;
    int m = s.max_readers_inside.load();
    while (inside > m && !s.max_readers_inside.compare_exchange_weak(m, inside)) {
    }
    if (s.writer_inside.load() != 0) s.violations.fetch_add(1);
    std::uint64_t x = s.x;
    busy_for(std::chrono::microseconds(hold_us));
    if (s.y != x || s.x != x) s.violations.fetch_add(1);
    s.reads.fetch_add(1);
    s.readers_inside.fetch_sub(1);
    g->unlock();
  }
  return 0;
}

int rw_writer(const char* name, std::uint64_t n) {
  auto r = open_or_die<Rw>(name);
  Rw& s = *r;
  for (std::uint64_t i = 0; i < n; ++i) {
    auto g = s.rw.lock(30s);
    if (!g) {
      s.errors.fetch_add(1);
      return 3;
    }
    s.writer_inside.store(1);
    if (s.readers_inside.load() != 0) s.violations.fetch_add(1);
    s.x = s.x + 1;
    busy_for(20us);
    s.y = s.x;
    s.writes.fetch_add(1);
    s.writer_inside.store(0);
  }
  return 0;
}

int rw_hold_read(const char* name) {
  auto r = open_or_die<Rw>(name);
  auto g = r->rw.lock_shared(20s);
  if (!g) return 3;
  r->holding.store(1);
  park();
}

// Takes the write lock, half-writes (x changes, y not), and waits to be killed.
int rw_hold_write(const char* name) {
  auto r = open_or_die<Rw>(name);
  auto g = r->rw.lock(20s);
  if (!g) return 3;
  r->x = r->x + 1;
  r->holding.store(1);
  park();
}

// Joins, then arrives `phases` times once `go` is set (when n_first is 1, arrives once first
// and records whether that arrival saw peer_died).
int barrier_member(const char* name, std::uint64_t phases, bool first_arrival) {
  auto r = open_or_die<Bar>(name);
  Bar& s = *r;
  auto m = s.b.join();
  if (!m) return s.other_errors.fetch_add(1), 3;
  s.joined.fetch_add(1);
  if (first_arrival) {
    s.arriving.fetch_add(1);
    auto a = m->arrive_and_wait(20s);
    if (!a && a.error().code == Errc::peer_died) s.peer_died.fetch_add(1);
    else s.other_errors.fetch_add(1);
  }
  while (s.go.load() == 0) std::this_thread::sleep_for(1ms);
  for (std::uint64_t i = 0; i < phases; ++i) {
    auto a = m->arrive_and_wait(20s);
    if (!a) return s.other_errors.fetch_add(1), 3;
    if (*a) s.serial.fetch_add(1);
    s.phases_done.fetch_add(1);
  }
  s.finished.fetch_add(1);
  return 0;
}

int barrier_join_and_hang(const char* name) {
  auto r = open_or_die<Bar>(name);
  auto m = r->b.join();
  if (!m) return 3;
  r->joined.fetch_add(1);
  park();
}

// Dies inside with(): a changes, b not yet.
int monitor_die(const char* name) {
  auto r = open_or_die<Mon>(name);
  auto res = r->mon.with([&](MonState& s) {
    s.a = s.a + 1;
    r->inside.store(1);
    park();
  });
  (void)res;
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: ipcx-sync-worker ROLE SHM PARENT_PID [N]\n");
    return 2;
  }
  // Die with the test; a parent that is already gone means the test was aborted.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != static_cast<pid_t>(std::strtol(argv[3], nullptr, 10))) return 2;
  const std::string role = argv[1];
  const char* name = argv[2];
  const std::uint64_t n = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 0;
  if (role == "torture") return torture(name, n);
  if (role == "cv-producer") return cv_producer(name, n);
  if (role == "cv-consumer") return cv_consumer(name, n);
  if (role == "mon-producer") return mon_producer(name, n);
  if (role == "mon-consumer") return mon_consumer(name, n);
  if (role == "sem-post") return sem_post(name, n);
  if (role == "sem-take") return sem_take(name, n);
  if (role == "sem-block") return sem_block(name);
  if (role == "rw-reader") return rw_reader(name, n);
  if (role == "rw-writer") return rw_writer(name, n);
  if (role == "rw-hold-read") return rw_hold_read(name);
  if (role == "rw-hold-write") return rw_hold_write(name);
  if (role == "barrier-member") return barrier_member(name, n, false);
  if (role == "barrier-member-first") return barrier_member(name, n, true);
  if (role == "barrier-hang") return barrier_join_and_hang(name);
  if (role == "monitor-die") return monitor_die(name);
  std::fprintf(stderr, "sync-worker: unknown role %s\n", role.c_str());
  return 2;
}
