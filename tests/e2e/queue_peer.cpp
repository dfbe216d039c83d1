// ipcx-queue-peer: the other processes of the shared-queue tests.
//
//   ipcx-queue-peer write NAME ID COUNT [SLOTS]  sends COUNT checked messages (0: until killed);
//                                                prints "ready" once open, "done N" at the end
//   ipcx-queue-peer claim NAME empty|writing     claims the next position by hand, following
//                                                docs/shm.md, and stops before completing it
//                                                (empty: before marking the slot; writing: half-way
//                                                through the copy); prints "claimed POS", waits
//   ipcx-queue-peer hostile NAME MILLIS SEED     writes random values all over the file
//
// A checked message: u32 writer id, u32 length of the filler, u64 sequence number (1, 2, ...
// per writer), filler bytes derived from both, u64 FNV-1a of everything before it.
// The hand-made claim and the hostile writer work from the documented layout only.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <ipcx/shm_queue.hpp>

namespace {

int usage() {
  std::fprintf(stderr, "usage: ipcx-queue-peer write NAME ID COUNT [SLOTS] | claim NAME empty|writing | hostile NAME MILLIS SEED\n");
  return 2;
}

std::uint64_t fnv(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 14695981039346656037ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::vector<unsigned char> checked(std::uint32_t id, std::uint64_t seq) {
  const std::uint32_t fill = static_cast<std::uint32_t>((seq * 37 + id) % 200);
  std::vector<unsigned char> m(16 + fill + 8);
  std::memcpy(m.data(), &id, 4);
  std::memcpy(m.data() + 4, &fill, 4);
  std::memcpy(m.data() + 8, &seq, 8);
  for (std::uint32_t i = 0; i < fill; ++i) m[16 + i] = static_cast<unsigned char>(seq * 7 + id + i);
  const std::uint64_t h = fnv(m.data(), 16 + fill);
  std::memcpy(m.data() + 16 + fill, &h, 8);
  return m;
}

struct Mapped {
  unsigned char* p = nullptr;
  std::size_t size = 0;
  int fd = -1;
};

Mapped map_queue(const std::string& name) {
  const std::string path = "/dev/shm/ipcx-" + std::to_string(::geteuid()) + "-" + name;
  Mapped m;
  m.fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  struct stat st {};
  if (m.fd < 0 || ::fstat(m.fd, &st) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  m.size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
  if (p == MAP_FAILED) std::exit(1);
  m.p = static_cast<unsigned char*>(p);
  return m;
}

template <class T>
std::atomic_ref<T> at(unsigned char* p, std::size_t off) {
  return std::atomic_ref<T>(*reinterpret_cast<T*>(p + off));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string mode = argv[1], name = argv[2];
  if (mode == "write" && argc >= 5) {
    const auto id = static_cast<std::uint32_t>(std::strtoul(argv[3], nullptr, 10));
    const auto count = std::strtoull(argv[4], nullptr, 10);
    ipcx::shm::QueueOptions o;
    if (argc >= 6) o.slots = std::strtoull(argv[5], nullptr, 10);
    auto w = ipcx::shm::QueueWriter::open(name, o);
    if (!w) {
      std::printf("%s\n", w.error().message().c_str());
      return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    std::uint64_t seq = 1;
    for (; count == 0 || seq <= count; ++seq) {
      const auto m = checked(id, seq);
      if (auto r = w->send(std::as_bytes(std::span(m.data(), m.size())), std::chrono::seconds(30)); !r) {
        std::printf("error %s\n", r.error().message().c_str());
        return 1;
      }
    }
    std::printf("done %llu\n", static_cast<unsigned long long>(seq - 1));
    return 0;
  }
  if (mode == "claim" && argc >= 4) {
    const std::string how = argv[3];
    auto m = map_queue(name);
    std::uint32_t slots, max_writers, stride;
    std::uint64_t slots_offset;
    std::memcpy(&slots, m.p + 24, 4);
    std::memcpy(&max_writers, m.p + 32, 4);
    std::memcpy(&stride, m.p + 36, 4);
    std::memcpy(&slots_offset, m.p + 40, 8);
    // A writer index: an OFD write lock on byte 1 + i.
    std::uint32_t index = 0;
    for (;; ++index) {
      if (index == max_writers) return 1;
      struct flock l {};
      l.l_type = F_WRLCK;
      l.l_whence = SEEK_SET;
      l.l_start = 1 + index;
      l.l_len = 1;
      if (::fcntl(m.fd, F_OFD_SETLK, &l) == 0) break;
    }
    at<std::uint32_t>(m.p, 320 + 64 * index).store(1);  // claiming
    std::uint64_t pos = 0;
    for (;;) {
      std::uint64_t t = at<std::uint64_t>(m.p, 64).load();
      const std::uint64_t h = at<std::uint64_t>(m.p, 128).load();
      if (t - h >= slots) return 1;  // full: not for this test
      if (at<std::uint64_t>(m.p, 64).compare_exchange_strong(t, t + 1)) {
        pos = t;
        break;
      }
    }
    if (how == "writing") {
      auto state = at<std::uint64_t>(m.p, slots_offset + (pos & (slots - 1)) * stride);
      std::uint64_t expected = (pos & ((std::uint64_t{1} << 48) - 1)) << 16;  // empty, for pos
      if (!state.compare_exchange_strong(expected, expected | (std::uint64_t{1} << 12) | index)) return 1;
      at<std::uint32_t>(m.p, 320 + 64 * index).store(0);
      std::memset(m.p + slots_offset + (pos & (slots - 1)) * stride + 16, 'x', 8);  // half-way
    }
    std::printf("claimed %llu\n", static_cast<unsigned long long>(pos));
    std::fflush(stdout);
    for (;;) ::pause();
  }
  if (mode == "hostile" && argc >= 5) {
    const auto ms = std::chrono::milliseconds(std::strtoll(argv[3], nullptr, 10));
    std::mt19937_64 rng(std::strtoull(argv[4], nullptr, 10));
    auto m = map_queue(name);
    std::uint32_t slots, stride;
    std::uint64_t slots_offset;
    std::memcpy(&slots, m.p + 24, 4);
    std::memcpy(&stride, m.p + 36, 4);
    std::memcpy(&slots_offset, m.p + 40, 8);
    std::printf("ready\n");
    std::fflush(stdout);
    const auto until = std::chrono::steady_clock::now() + ms;
    std::uint64_t n = 0;
    while (std::chrono::steady_clock::now() < until) {
      for (int i = 0; i < 64; ++i, ++n) {
        // Mostly the positions, the writer entries and the slots' states and lengths.
        std::size_t off;
        switch (n % 5) {
          case 0: off = rng() % m.size; break;
          case 1: off = 64 + (rng() % 2) * 64; break;  // tail, head
          case 2: off = 320 + (rng() % 8) * 64; break;  // writer entries' claiming
          default: off = slots_offset + (rng() % slots) * stride + (rng() % 2) * 8; break;  // state, length
        }
        off &= ~std::size_t{7};
        if (off + 8 > m.size) continue;
        std::uint64_t v = rng();
        if (n % 3 == 0) v &= 0xffff;  // small values look plausible
        if (n % 7 == 0) {             // and so do a slot state's position and kind
          const std::uint64_t t = at<std::uint64_t>(m.p, 64).load();
          v = ((t + rng() % 4) & ((std::uint64_t{1} << 48) - 1)) << 16 | (rng() % 5) << 12 | (rng() % 8);
        }
        at<std::uint64_t>(m.p, off).store(v, std::memory_order_relaxed);
      }
    }
    std::printf("done %llu\n", static_cast<unsigned long long>(n));
    return 0;
  }
  return usage();
}
