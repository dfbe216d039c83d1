// ipcx-state-peer: the other processes of the shared-state tests.
//
//   ipcx-state-peer write NAME CAPACITY [COUNT]   stores checked values (COUNT, or until killed);
//                                                 prints "ready" once the state exists, "done"
//   ipcx-state-peer read NAME MILLIS              loads for MILLIS ms, checking every value;
//                                                 prints "ok LOADS VERSIONS" or "bad ..." (exit 1)
//   ipcx-state-peer hold NAME                     opens the state, prints "ready", waits to be killed
//   ipcx-state-peer hostile NAME MILLIS SEED      writes random bytes all over the file
//   ipcx-state-peer open NAME                     opens it once: prints "opened" or the error (exit 1)
//
// A checked value: u64 sequence number, filler bytes derived from it, u64 FNV-1a of the rest.
// Its length varies with the sequence number (16 bytes up to the capacity).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <ipcx/state.hpp>

namespace {

std::uint64_t fnv(const std::byte* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ull;
  return h;
}

std::size_t length_for(std::uint64_t seq, std::size_t capacity) { return 16 + (seq * 7919) % (capacity - 15); }

void make_value(std::uint64_t seq, std::size_t capacity, std::vector<std::byte>& out) {
  const std::size_t n = length_for(seq, capacity);
  out.resize(n);
  std::memcpy(out.data(), &seq, 8);
  for (std::size_t i = 8; i < n - 8; ++i) out[i] = static_cast<std::byte>((seq + i) * 31);
  const std::uint64_t sum = fnv(out.data(), n - 8);
  std::memcpy(out.data() + n - 8, &sum, 8);
}

// "" when intact, else what is wrong.
std::string check_value(const std::vector<std::byte>& v) {
  if (v.size() < 16) return "a value of " + std::to_string(v.size()) + " bytes";
  std::uint64_t sum;
  std::memcpy(&sum, v.data() + v.size() - 8, 8);
  if (sum != fnv(v.data(), v.size() - 8)) return "a checksum that does not match (torn value)";
  return "";
}

int usage() {
  std::fprintf(stderr, "usage: ipcx-state-peer write|read|hold|hostile|open NAME ...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string mode = argv[1], name = argv[2];
  if (mode == "write" && argc >= 4) {
    const std::size_t cap = std::strtoull(argv[3], nullptr, 10);
    const std::uint64_t count = argc >= 5 ? std::strtoull(argv[4], nullptr, 10) : 0;
    auto w = ipcx::shm::StateWriter::create(name, {.capacity = cap});
    if (!w) {
      std::fprintf(stderr, "create: %s\n", w.error().message().c_str());
      return 1;
    }
    std::printf("ready %llu\n", static_cast<unsigned long long>(w->version()));
    std::fflush(stdout);
    std::vector<std::byte> v;
    for (std::uint64_t i = 0; count == 0 || i < count; ++i) {
      make_value(w->version() + 1, cap, v);
      if (auto r = w->store(v); !r) {
        std::fprintf(stderr, "store: %s\n", r.error().message().c_str());
        return 1;
      }
    }
    std::printf("done %llu\n", static_cast<unsigned long long>(w->version()));
    std::fflush(stdout);
    return 0;
  }
  if (mode == "read" && argc >= 4) {
    const auto ms = std::chrono::milliseconds(std::strtoll(argv[3], nullptr, 10));
    auto r = ipcx::shm::StateReader::open(name, std::chrono::seconds(5));
    if (!r) {
      std::fprintf(stderr, "open: %s\n", r.error().message().c_str());
      return 1;
    }
    std::vector<std::byte> v;
    std::uint64_t loads = 0, versions = 0, last = 0;
    const auto until = std::chrono::steady_clock::now() + ms;
    while (std::chrono::steady_clock::now() < until) {
      auto got = r->load(v);
      if (!got) {
        if (got.error().code == ipcx::Errc::not_found) continue;
        std::printf("bad load: %s\n", got.error().message().c_str());
        return 1;
      }
      if (auto why = check_value(v); !why.empty()) {
        std::printf("bad version %llu: %s\n", static_cast<unsigned long long>(*got), why.c_str());
        return 1;
      }
      std::uint64_t seq;
      std::memcpy(&seq, v.data(), 8);
      if (seq != *got) {
        std::printf("bad: version %llu holds the value of %llu\n", static_cast<unsigned long long>(*got),
                    static_cast<unsigned long long>(seq));
        return 1;
      }
      if (*got < last) {
        std::printf("bad: version went back from %llu to %llu\n", static_cast<unsigned long long>(last),
                    static_cast<unsigned long long>(*got));
        return 1;
      }
      versions += *got != last;
      last = *got;
      ++loads;
    }
    std::printf("ok %llu %llu\n", static_cast<unsigned long long>(loads), static_cast<unsigned long long>(versions));
    return 0;
  }
  if (mode == "hold") {
    auto r = ipcx::shm::StateReader::open(name, std::chrono::seconds(5));
    if (!r) {
      std::fprintf(stderr, "open: %s\n", r.error().message().c_str());
      return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) ::pause();
  }
  if (mode == "open") {
    auto r = ipcx::shm::StateReader::open(name, std::chrono::seconds(1));
    if (!r) {
      std::printf("%s\n", r.error().message().c_str());
      return 1;
    }
    std::printf("opened\n");
    return 0;
  }
  if (mode == "hostile" && argc >= 5) {
    const auto ms = std::chrono::milliseconds(std::strtoll(argv[3], nullptr, 10));
    std::mt19937_64 rng(std::strtoull(argv[4], nullptr, 10));
    const std::string path = "/dev/shm/ipcx-" + std::to_string(::geteuid()) + "-" + name;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      std::perror(path.c_str());
      return 1;
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    auto* p = static_cast<unsigned char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) return 1;
    std::uint64_t cap;
    std::memcpy(&cap, p + 32, 8);  // the honest capacity, before anything is overwritten
    const std::size_t slot = 64 + (cap + 63) / 64 * 64;
    std::printf("ready\n");
    std::fflush(stdout);
    const auto until = std::chrono::steady_clock::now() + ms;
    std::uint64_t n = 0;
    while (std::chrono::steady_clock::now() < until) {
      for (int i = 0; i < 64; ++i, ++n) {
        // Mostly the header and the slots' sequence numbers and lengths, sometimes anywhere.
        std::size_t off = (n % 4 == 0) ? rng() % size : (n % 4 == 1 ? rng() % 128 : 128 + (rng() % 4) * slot + (rng() % 16));
        off &= ~std::size_t{7};
        if (off + 8 > size) continue;
        std::uint64_t v = rng();
        if (n % 3 == 0) v &= 0xffff;  // small values look plausible
        std::memcpy(p + off, &v, 8);
      }
    }
    std::printf("done %llu\n", static_cast<unsigned long long>(n));
    return 0;
  }
  return usage();
}
