// Compiled (never run) by two ctest cases: with IPCX_PLACE_BIG_ATOMIC it must NOT compile
// (a std::atomic that is not lock-free would keep its lock private to one process); without,
// the same code with a lock-free atomic must compile, so the first cannot pass vacuously.
#include <atomic>
#include <cstdint>

#include <ipcx/segment.hpp>

struct Big {
  std::uint64_t v[8];  // 64 bytes: no lock-free atomic of this size
};

void place(ipcx::shm::Segment& seg) {
#ifdef IPCX_PLACE_BIG_ATOMIC
  static_assert(!std::atomic<Big>::is_always_lock_free);
  (void)seg.construct<std::atomic<Big>>("big");
#else
  (void)seg.construct<std::atomic<std::uint64_t>>("count", 0u);
#endif
}
