// ipcx-zc-peer: the other processes of the zero-copy pub/sub tests.
//
//   ipcx-zc-peer pub TOPIC MAXSIZE COUNT [HISTORY [CHUNKS]]
//        publishes COUNT checked samples (0: until killed), sizes 16 .. MAXSIZE; "ready", "done N"
//   ipcx-zc-peer sub TOPIC MILLIS [HOLD]
//        takes samples for MILLIS ms, holding up to HOLD at a time, checking each;
//        prints "ok TAKEN DROPPED" or "bad ..." (exit 1)
//   ipcx-zc-peer hold TOPIC N        takes N samples, keeps them, prints "held", waits to be killed
//
// A checked sample: u64 sequence, u64 length, filler derived from both, u64 FNV-1a of the rest.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include <ipcx/zerocopy.hpp>

namespace {

std::uint64_t fnv(const std::byte* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ull;
  return h;
}

void fill(std::span<std::byte> out, std::uint64_t seq) {
  const std::uint64_t n = out.size();
  std::memcpy(out.data(), &seq, 8);
  std::memcpy(out.data() + 8, &n, 8);
  for (std::size_t i = 16; i + 8 < n; ++i) out[i] = static_cast<std::byte>((seq * 131 + i) & 0xff);
  const std::uint64_t sum = fnv(out.data(), n - 8);
  std::memcpy(out.data() + n - 8, &sum, 8);
}

std::string check(std::span<const std::byte> s) {
  if (s.size() < 24) return "a sample of " + std::to_string(s.size()) + " bytes";
  std::uint64_t n, sum;
  std::memcpy(&n, s.data() + 8, 8);
  if (n != s.size()) return "a length field that does not match";
  std::memcpy(&sum, s.data() + s.size() - 8, 8);
  if (sum != fnv(s.data(), s.size() - 8)) return "a checksum that does not match";
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  const std::string mode = argv[1], topic = argv[2];
  if (mode == "pub" && argc >= 5) {
    const std::size_t max = std::strtoull(argv[3], nullptr, 10);
    const std::uint64_t count = std::strtoull(argv[4], nullptr, 10);
    ipcx::shm::ZeroCopyPublisherOptions o{.max_payload = max};
    if (argc >= 6) o.history = std::strtoull(argv[5], nullptr, 10);
    if (argc >= 7) o.chunks = std::strtoull(argv[6], nullptr, 10);
    auto p = ipcx::shm::ZeroCopyPublisher::create(topic, o);
    if (!p) {
      std::fprintf(stderr, "create: %s\n", p.error().message().c_str());
      return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    for (std::uint64_t i = 0; count == 0 || i < count;) {
      const std::size_t size = 24 + (i * 7919) % (max - 23);
      auto l = p->loan(size);
      if (!l) {
        if (l.error().code != ipcx::Errc::resource_exhausted) {
          std::fprintf(stderr, "loan: %s\n", l.error().message().c_str());
          return 1;
        }
        std::this_thread::yield();
        continue;
      }
      fill(l->data(), p->published() + 1);
      if (auto r = p->publish(std::move(*l)); !r) {
        std::fprintf(stderr, "publish: %s\n", r.error().message().c_str());
        return 1;
      }
      ++i;
      if (count == 0 && (i & 1023) == 0) std::this_thread::yield();
    }
    std::printf("done %llu\n", static_cast<unsigned long long>(p->published()));
    std::fflush(stdout);
    return 0;
  }
  if (mode == "sub") {
    const auto ms = std::chrono::milliseconds(std::strtoll(argv[3], nullptr, 10));
    const std::size_t hold = argc >= 5 ? std::strtoull(argv[4], nullptr, 10) : 0;
    auto s = ipcx::shm::ZeroCopySubscriber::open(topic, {.queue = 64, .max_held = hold + 1});
    if (!s) {
      std::fprintf(stderr, "open: %s\n", s.error().message().c_str());
      return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    std::deque<ipcx::shm::Sample> kept;
    std::uint64_t taken = 0;
    const auto until = std::chrono::steady_clock::now() + ms;
    while (std::chrono::steady_clock::now() < until) {
      auto got = s->take(std::chrono::milliseconds(10));
      if (!got) {
        if (got.error().code == ipcx::Errc::timeout) continue;
        std::printf("bad take: %s\n", got.error().message().c_str());
        return 1;
      }
      if (auto why = check(got->data()); !why.empty()) {
        std::printf("bad sample %llu: %s\n", static_cast<unsigned long long>(got->sequence()), why.c_str());
        return 1;
      }
      std::uint64_t seq;
      std::memcpy(&seq, got->data().data(), 8);
      if (seq != got->sequence()) {
        std::printf("bad: sample %llu holds %llu\n", static_cast<unsigned long long>(got->sequence()),
                    static_cast<unsigned long long>(seq));
        return 1;
      }
      ++taken;
      if ((taken & 255) == 0) {
        std::printf("progress %llu\n", static_cast<unsigned long long>(taken));
        std::fflush(stdout);
      }
      if (hold > 0) {
        kept.push_back(std::move(*got));
        if (kept.size() > hold) {
          // A held sample must still be intact when it is let go.
          if (auto why = check(kept.front().data()); !why.empty()) {
            std::printf("bad held sample: %s\n", why.c_str());
            return 1;
          }
          kept.pop_front();
        }
      }
    }
    for (auto& k : kept)
      if (auto why = check(k.data()); !why.empty()) {
        std::printf("bad held sample: %s\n", why.c_str());
        return 1;
      }
    std::printf("ok %llu %llu\n", static_cast<unsigned long long>(taken), static_cast<unsigned long long>(s->dropped()));
    return 0;
  }
  if (mode == "hold") {
    const std::size_t n = std::strtoull(argv[3], nullptr, 10);
    // Overflow::block: a publisher must wait for us while we live (and not once we are killed).
    auto s = ipcx::shm::ZeroCopySubscriber::open(topic, {.queue = 8, .overflow = ipcx::Overflow::block, .max_held = n});
    if (!s) return 1;
    std::vector<ipcx::shm::Sample> kept;
    while (kept.size() < n) {
      auto got = s->take(std::chrono::seconds(10));
      if (!got) {
        std::fprintf(stderr, "take: %s\n", got.error().message().c_str());
        return 1;
      }
      kept.push_back(std::move(*got));
    }
    std::printf("held\n");
    std::fflush(stdout);
    for (;;) ::pause();
  }
  return 2;
}
