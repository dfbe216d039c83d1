// Four processes add to a counter kept in two fields that must stay equal; one of them is
// SIGKILLed now and then, often in the middle of an update. The survivors are told (owner
// died), repair the half-made update, and carry on: no hang, no lost consistency.
//
//   robust_counter [KILLS]        (run by `make demo`)
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <ipcx/ipcx.hpp>

using namespace std::chrono_literals;

struct Counter {
  long a = 0, b = 0;  // a == b whenever nobody is half-way through an update
  long repairs = 0;
};
struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<long> updates{0};
};

static int worker(const std::string& name) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the demo's parent gone (Ctrl-C): go too
  if (::getppid() == 1) return 1;
  auto seg = ipcx::shm::Segment::open(name);
  auto mon = seg ? seg->find<ipcx::Monitor<Counter>>("counter") : std::unexpected(seg.error());
  auto shared = seg ? seg->find<Shared>("shared") : std::unexpected(seg.error());
  if (!mon || !shared) {
    std::fprintf(stderr, "worker: %s\n", (mon ? shared.error() : mon.error()).message().c_str());
    return 1;
  }
  while (!(*shared)->stop.load()) {
    auto r = (*mon)->with(
        [&](Counter& c) {
          c.a += 1;
          auto until = std::chrono::steady_clock::now() + 50us;  // the window a kill can land in
          while (std::chrono::steady_clock::now() < until) {}
          c.b = c.a;
          (*shared)->updates.fetch_add(1, std::memory_order_relaxed);
        },
        [](Counter& c) {  // the last holder died: finish its update
          if (c.a != c.b) ++c.repairs;
          c.b = c.a;
          return true;
        });
    if (!r) {
      std::fprintf(stderr, "worker: %s\n", r.error().message().c_str());
      return 1;
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "worker") return worker(argv[2]);
  const int kills = argc > 1 ? std::atoi(argv[1]) : 20;
  const std::string name = "robust-counter-" + std::to_string(::getpid());
  auto seg = ipcx::shm::Segment::create(name, {.size = 64 << 10});
  if (!seg) {
    std::fprintf(stderr, "%s\n", seg.error().message().c_str());
    return 1;
  }
  auto* mon = seg->construct<ipcx::Monitor<Counter>>("counter").value();
  auto* shared = seg->construct<Shared>("shared").value();
  auto spawn = [&] { return ipcx::Process::spawn({"/proc/self/exe", "worker", name}).value(); };
  // /proc/self/exe is resolved by the child after fork, so it names this program.
  std::vector<ipcx::Process> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(spawn());

  std::mt19937 rng(std::random_device{}());
  for (int k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    auto& victim = workers[rng() % workers.size()];
    (void)victim.kill(SIGKILL);
    (void)victim.wait();
    victim = spawn();
  }
  shared->stop.store(true);
  int failed = 0;
  for (auto& w : workers) failed += w.wait(5s).value_or(1) != 0;
  auto c = mon->with([](Counter& x) { return x; });
  (void)ipcx::shm::Segment::remove(name);
  if (!c) {
    std::fprintf(stderr, "%s\n", c.error().message().c_str());
    return 1;
  }
  std::printf("%d SIGKILLs, %ld updates, %ld half-made updates repaired by the next holder, a == b: %s\n", kills,
              shared->updates.load(), c->repairs, c->a == c->b ? "yes" : "NO");
  return failed == 0 && c->a == c->b ? 0 : 1;
}
