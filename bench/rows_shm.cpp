// Rows over shared memory. raw is a minimal single-producer single-consumer byte ring per
// direction in one MAP_SHARED mapping (a memfd the echo child inherits, mapped with MAP_POPULATE
// in both processes so that first-touch page faults are not measured): each message is a u32
// length and its payload, copied in and out (split at the end of the ring), streamed through in
// pieces of kPiece when it is larger (so any size fits through the ring). Each side keeps the other's position as last read and
// reads it again only when that is not enough (the usual SPSC cached index). ipcx is a
// Connection over shm:// in the same wait mode (its default ring: 256 KiB per direction).
//   shm:       both sides busy-poll (spin)
//   shm-block: a side with nothing to read (or no space to write) sleeps in futex(2) at once
//   shm-queue: ipcx is the multi-writer variant, a shared queue per direction (ipcx/shm_queue.hpp:
//              each side reads one and writes the other, spinning), against the same spin ring
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <filesystem>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <new>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench/mechanism.hpp"
#include "bench/rows_shm.hpp"
#include "bench/session.hpp"

namespace ipcx::bench {
namespace {

constexpr std::size_t kRingBytes = std::size_t{1} << 20;  // data bytes per direction
// The most either side copies before it publishes its position, and the space a writer waits
// for (or all it has left to write, if less): a message up to this size goes in with one
// publication; a larger one is streamed through in pieces of this size, which the reader takes
// out while the writer puts the next one in.
constexpr std::size_t kPiece = 128 * 1024;
constexpr std::size_t kHeader = sizeof(std::uint32_t);  // the length before each payload
// The parent never sleeps longer than this without checking that the echo child still lives
// (a futex has no peer to lose). The child dies with its parent (PDEATHSIG): it sleeps untimed.
constexpr long kSliceNs = 100'000'000;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free);

// One direction. Positions are byte counts that only grow; the index is position mod kRingBytes.
struct Ring {
  alignas(64) std::atomic<std::uint64_t> tail{0};          // published: written by the writer
  alignas(64) std::atomic<std::uint64_t> head{0};          // consumed: written by the reader
  alignas(64) std::atomic<std::uint32_t> reader_waits{0};  // shm-block: set by the reader, cleared by the writer
  alignas(64) std::atomic<std::uint32_t> writer_waits{0};  // shm-block: set by the writer, cleared by the reader
  alignas(64) std::byte data[kRingBytes];
};

struct Rings {
  Ring down;  // parent -> child
  Ring up;    // child -> parent
};

std::uint32_t* futex_word(std::atomic<std::uint32_t>& a) noexcept { return reinterpret_cast<std::uint32_t*>(&a); }

// Sleeps while `word` is `expected` (not a private futex: the word is in a mapping two
// processes share). A wake-up, a changed word, a signal or the end of the slice all return.
Status futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, bool sliced) {
  timespec slice{0, kSliceNs};
  if (::syscall(SYS_futex, futex_word(word), FUTEX_WAIT, expected, sliced ? &slice : nullptr, nullptr, 0) == 0)
    return {};
  if (errno == EAGAIN || errno == EINTR || errno == ETIMEDOUT) return {};
  return sys_error("futex");
}

// After publishing: wakes the other side if it said it sleeps. The full fence pairs with the
// one in wait(): either the sleeper sees the new position, or this sees its flag.
void notify(std::atomic<std::uint32_t>& flag) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (flag.load(std::memory_order_relaxed) != 0 && flag.exchange(0, std::memory_order_relaxed) != 0)
    ::syscall(SYS_futex, futex_word(flag), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

template <bool kBlock>
class ShmChannel final : public Channel {
 public:
  ShmChannel(Ring& out, Ring& in, std::size_t size, bool parent)
      : out_(&out), in_(&in), buf_(std::max<std::size_t>(size, 1)), parent_(parent) {}

  Status send(std::span<const std::byte> msg) override {
    const auto len = static_cast<std::uint32_t>(msg.size());  // at most kMaxSize (64 MiB)
    const std::size_t total = kHeader + msg.size();
    std::uint64_t tail = out_->tail.load(std::memory_order_relaxed);  // only this side writes it
    for (std::size_t done = 0; done < total;) {
      const std::size_t want = std::min(total - done, kPiece);  // >= kHeader: the length goes in whole
      auto room = [&] {  // the reader's position is read only when the last one read is not enough
        if (kRingBytes - (tail - head_seen_) >= want) return true;
        head_seen_ = out_->head.load(std::memory_order_acquire);
        return kRingBytes - (tail - head_seen_) >= want;
      };
      if (auto r = wait(out_->writer_waits, room, "send"); !r) return r;
      const std::size_t n = std::min<std::size_t>(want, kRingBytes - (tail - head_seen_));
      std::size_t k = 0;
      if (done == 0) {
        put(tail, &len, kHeader);
        k = kHeader;
      }
      put(tail + k, msg.data() + (done + k - kHeader), n - k);
      tail += n;
      done += n;
      out_->tail.store(tail, std::memory_order_release);
      if constexpr (kBlock) notify(out_->reader_waits);
    }
    return {};
  }

  Status recv(std::size_t size) override {
    std::uint64_t head = in_->head.load(std::memory_order_relaxed);  // only this side writes it
    auto available = [&](std::uint64_t at_least) {  // the writer's position: read as for send()
      return [&, at_least] {
        if (tail_seen_ - head >= at_least) return true;
        tail_seen_ = in_->tail.load(std::memory_order_acquire);
        return tail_seen_ - head >= at_least;
      };
    };
    if (auto r = wait(in_->reader_waits, available(kHeader), "recv"); !r) return r;
    std::uint32_t len;
    get(head, &len, kHeader);
    if (len != size) return fail(Errc::protocol, "recv", fmt::format("message of {} bytes, expected {}", len, size));
    head += kHeader;
    for (std::size_t got = 0;;) {
      const std::size_t n = std::min<std::uint64_t>({len - got, tail_seen_ - head, kPiece});
      get(head, buf_.data() + got, n);
      head += n;
      got += n;
      in_->head.store(head, std::memory_order_release);
      if constexpr (kBlock) notify(in_->writer_waits);
      if (got == len) {
        last_ = len;
        return {};
      }
      if (auto r = wait(in_->reader_waits, available(1), "recv"); !r) return r;
    }
  }

 private:
  // Until ready(). spin: polls. block: says it sleeps (flag), fences, looks once more, then
  // sleeps on the flag, which the other side clears before FUTEX_WAKE.
  template <class Ready>
  Status wait(std::atomic<std::uint32_t>& flag, Ready ready, const char* op) {
    bool armed = false;
    for (;;) {
      if (ready()) break;
      if (parent_ && child_exited()) return child_gone(op);
      if constexpr (!kBlock) {
        cpu_relax();
      } else {
        flag.store(1, std::memory_order_relaxed);
        armed = true;
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (ready()) break;
        if (auto r = futex_wait(flag, 1, parent_); !r) return r;
      }
    }
    if (armed) flag.store(0, std::memory_order_relaxed);  // no wake-up wanted any more
    return {};
  }

  void put(std::uint64_t pos, const void* src, std::size_t n) noexcept {
    const std::size_t at = pos % kRingBytes, first = std::min(n, kRingBytes - at);
    std::memcpy(out_->data + at, src, first);
    std::memcpy(out_->data, static_cast<const std::byte*>(src) + first, n - first);
  }
  void get(std::uint64_t pos, void* dst, std::size_t n) noexcept {
    const std::size_t at = pos % kRingBytes, first = std::min(n, kRingBytes - at);
    std::memcpy(dst, in_->data + at, first);
    std::memcpy(static_cast<std::byte*>(dst) + first, in_->data, n - first);
  }

  Ring *out_, *in_;
  // The other side's position when last read: positions only grow, so what it said was
  // published (or consumed) still is. Both start at 0 with the rings.
  std::uint64_t head_seen_ = 0, tail_seen_ = 0;
  std::vector<std::byte> buf_;
  std::size_t last_ = 0;
  bool parent_;

 public:
  std::span<const std::byte> received() const override { return {buf_.data(), last_}; }
};

// raw: the parent makes the memfd, sizes it, maps it and builds the rings, and hands it to the
// child, which maps it too. Nothing has a name: nothing is left behind.
template <bool kBlock>
class RawShmSetup final : public Setup {
 public:
  explicit RawShmSetup(const RunCtx& c) : ctx_(c) {}
  ~RawShmSetup() override {
    if (rings_) ::munmap(rings_, sizeof(Rings));
  }

  Status parent_prepare(ChildWiring& wiring) override {
    Fd fd(::memfd_create("ipcx-bench-shm", MFD_CLOEXEC));
    if (!fd) return sys_error("memfd_create");
    if (::ftruncate(fd.get(), sizeof(Rings)) != 0) return sys_error("ftruncate");
    if (auto r = map(fd.get()); !r) return r;
    rings_ = new (rings_) Rings;
    wiring.give(std::move(fd));
    return {};
  }
  Made<Channel> child_channel() override {
    if (ctx_.inherited.size() != 1) return fail(Errc::invalid_argument, "shm", "expected one inherited memfd");
    Fd fd(ctx_.inherited[0]);  // the mapping outlives it
    if (auto r = map(fd.get()); !r) return std::unexpected(r.error());
    return std::make_unique<ShmChannel<kBlock>>(rings_->up, rings_->down, ctx_.size, false);
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return std::make_unique<ShmChannel<kBlock>>(rings_->down, rings_->up, ctx_.size, true);
  }

 private:
  Status map(int fd) {
    void* p = ::mmap(nullptr, sizeof(Rings), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) return sys_error("mmap");
    rings_ = static_cast<Rings*>(p);
    return {};
  }

  RunCtx ctx_;
  Rings* rings_ = nullptr;
};


// ipcx shm-queue: the parent reads "ipcx-bench-q-<hash>.up" and writes "...down", the child the
// reverse.
// Slots of the message's size, about as many bytes per direction as the raw ring has.
constexpr std::size_t kQueueMax = std::size_t{1} << 20;  // shm::kMaxQueueMessage
shm::QueueOptions queue_options(std::size_t size) {
  const std::size_t max = std::max<std::size_t>(size, 8);
  const std::size_t slots = std::bit_floor(std::clamp<std::size_t>(kRingBytes / (max + 64), 8, 4096));
  return {.slots = slots, .max_message = max, .max_writers = 4, .spin = std::chrono::seconds(3600)};
}

class QueueChannel final : public Channel {
 public:
  QueueChannel(shm::QueueReader in, shm::QueueWriter out, bool parent)
      : in_(std::move(in)), out_(std::move(out)), parent_(parent) {}
  ~QueueChannel() override {
    // Whatever is left in the queues (a child killed mid-run) goes with the measurement.
    const auto in = in_.path(), out = out_.path();
    in_.close();
    out_.close();
    if (parent_) {
      std::error_code ec;
      std::filesystem::remove(in, ec);
      std::filesystem::remove(out, ec);
    }
  }
  Status send(std::span<const std::byte> msg) override {
    for (;;) {
      auto r = out_.send(msg, std::chrono::milliseconds(100));
      if (r || r.error().code != Errc::timeout) return r;
      if (parent_ && child_exited()) return child_gone("send");
    }
  }
  Status recv(std::size_t size) override {
    for (;;) {
      auto r = in_.recv(buf_, std::chrono::milliseconds(100));
      if (r) {
        if (buf_.size() == size) return {};
        return fail(Errc::protocol, "recv", fmt::format("message of {} bytes, expected {}", buf_.size(), size));
      }
      if (r.error().code != Errc::timeout) return r;
      if (parent_ && child_exited()) return child_gone("recv");
    }
  }

 private:
  shm::QueueReader in_;
  shm::QueueWriter out_;
  std::vector<std::byte> buf_;
  bool parent_;

 public:
  std::span<const std::byte> received() const override { return buf_; }
};

class QueueSetup final : public Setup {
 public:
  explicit QueueSetup(const RunCtx& c) : ctx_(c), name_("ipcx-bench-q-" + shm_name(c).substr(11)) {}
  Made<Channel> child_channel() override { return open(name_ + ".down", name_ + ".up", false); }
  Made<Channel> parent_channel(const std::string&, pid_t) override { return open(name_ + ".up", name_ + ".down", true); }

 private:
  Made<Channel> open(const std::string& in, const std::string& out, bool parent) {
    const auto o = queue_options(ctx_.size);
    auto r = shm::QueueReader::create(in, o);
    if (!r) return std::unexpected(r.error());
    auto w = shm::QueueWriter::open(out, o);
    if (!w) return std::unexpected(w.error());
    return std::make_unique<QueueChannel>(std::move(*r), std::move(*w), parent);
  }
  RunCtx ctx_;
  std::string name_;
};

template <bool kBlock>
std::unique_ptr<Setup> make_raw(const RunCtx& c) {
  return std::make_unique<RawShmSetup<kBlock>>(c);
}

// The listener's URL keeps its query: the parent connects in the same wait mode.
const Mechanism kRows[] = {
    {.name = "shm",
     .group = Group::shared_memory,
     .purpose = "copying ring in shared memory, busy-polling: lowest latency, a core spent waiting",
     .raw = make_raw<false>,
     .ipcx = [](const RunCtx& c) { return ipcx_listen(fmt::format("shm://{}?wait=spin", shm_name(c))); }},
    {.name = "shm-block",
     .group = Group::shared_memory,
     .purpose = "the same ring sleeping in futex(2): no CPU while idle, a wake-up per message",
     .raw = make_raw<true>,
     .ipcx = [](const RunCtx& c) { return ipcx_listen(fmt::format("shm://{}?wait=block", shm_name(c))); }},
    // The default wait mode against the spin ring: at light load (a ping-pong) a reply comes
    // within the spin budget, so it should cost about what spinning costs.
    {.name = "shm-hybrid",
     .group = Group::shared_memory,
     .purpose = "the same ring, spinning then sleeping (the default)",
     .raw = make_raw<false>,
     .ipcx = [](const RunCtx& c) { return ipcx_listen(fmt::format("shm://{}?wait=hybrid", shm_name(c))); }},
    // The multi-writer variant (one writer per direction here), spinning, against the spin ring.
    {.name = "shm-queue",
     .group = Group::shared_memory,
     .purpose = "shared queue: many writer processes, one reader, no connection each",
     .raw = make_raw<false>,
     .ipcx = [](const RunCtx& c) -> std::unique_ptr<Setup> { return std::make_unique<QueueSetup>(c); },
     .max_size = [] { return kQueueMax; }},
};

}  // namespace

std::string shm_name(const RunCtx& c) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a
  for (char ch : c.path) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return fmt::format("ipcx-bench-{:016x}", h);
}

std::unique_ptr<Setup> raw_spin_ring(const RunCtx& c) { return make_raw<false>(c); }

std::span<const Mechanism> shm_rows() { return kRows; }

}  // namespace ipcx::bench
