// Shared queue: fixed-size slots in a /dev/shm file; writers claim positions with a
// compare-and-swap on the tail, the one reader takes them in order (docs/shm.md, "Shared queue").
#include <ipcx/shm_queue.hpp>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <climits>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "os/futex.hpp"
#include "os/membarrier.hpp"
#include "os/shm.hpp"
#include "os/sys.hpp"
#include "shm/lifetime.hpp"
#include "shm/queue_layout.hpp"
#include "shm/shared_file.hpp"
#include "shm/wake.hpp"
#include "shm/wait.hpp"

namespace ipcx::shm {
namespace {

namespace L = queue_layout;

constexpr std::size_t kMaxName = 200;
const std::atomic<bool> kNeverStopping{false};

using detail::QueueFile;

Result<void> check_options(const QueueOptions& o, const char* op) {
  if (o.slots < 2 || o.slots > kMaxQueueSlots || !std::has_single_bit(o.slots))
    return fail(Errc::invalid_argument, op, fmt::format("slots {} (a power of two, 2 to {})", o.slots, kMaxQueueSlots));
  if (o.max_message < 1 || o.max_message > kMaxQueueMessage)
    return fail(Errc::invalid_argument, op, fmt::format("max_message {} (1 to {})", o.max_message, kMaxQueueMessage));
  if (o.max_writers < 1 || o.max_writers > kMaxQueueWriters)
    return fail(Errc::invalid_argument, op, fmt::format("max_writers {} (1 to {})", o.max_writers, kMaxQueueWriters));
  if (const auto bytes = L::file_bytes(o.slots, o.max_message, o.max_writers); bytes > kMaxQueueBytes)
    return fail(Errc::invalid_argument, op,
                fmt::format("{} slots of {} bytes make a file of {} bytes (at most {})", o.slots, o.max_message, bytes,
                            kMaxQueueBytes));
  return {};
}

// An existing queue's header, read into a private copy with pread: its magic (0: not yet
// written), and for a queue, its shape once checked against the file.
// `out` gets the shape.
Result<std::uint64_t> check_header(int fd, std::uint64_t file_size, const std::string& path, QueueFile* out) {
  std::byte raw[sizeof(L::Header)];
  if (::pread(fd, raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) return std::uint64_t{0};
  std::uint64_t magic, total, slots_offset;
  std::uint32_t version, header_size, slots, max_message, writers, stride;
  std::memcpy(&magic, raw + offsetof(L::Header, magic), 8);
  std::memcpy(&version, raw + offsetof(L::Header, version), 4);
  std::memcpy(&header_size, raw + offsetof(L::Header, header_size), 4);
  std::memcpy(&total, raw + offsetof(L::Header, total_size), 8);
  std::memcpy(&slots, raw + offsetof(L::Header, slots), 4);
  std::memcpy(&max_message, raw + offsetof(L::Header, max_message), 4);
  std::memcpy(&writers, raw + offsetof(L::Header, max_writers), 4);
  std::memcpy(&stride, raw + offsetof(L::Header, stride), 4);
  std::memcpy(&slots_offset, raw + offsetof(L::Header, slots_offset), 8);
  if (magic != L::kMagic) return magic;
  if (version != L::kVersion)
    return fail(Errc::type_mismatch, "queue open",
                fmt::format("{}: layout version {}, this library reads {}", path, version, L::kVersion));
  const bool sane = header_size == sizeof(L::Header) && slots >= 2 && slots <= kMaxQueueSlots && std::has_single_bit(slots) &&
                    max_message >= 1 && max_message <= kMaxQueueMessage && writers >= 1 && writers <= kMaxQueueWriters &&
                    stride == L::stride_for(max_message) && slots_offset == L::slots_offset_for(writers) &&
                    total == file_size && L::file_bytes(slots, max_message, writers) <= file_size &&
                    file_size <= kMaxQueueBytes + 65536;
  if (!sane)
    return fail(Errc::protocol, "queue open",
                fmt::format("{}: a header that does not add up ({} slots of {} bytes, {} writers, {} bytes in a file of {})",
                            path, slots, max_message, writers, total, file_size));
  out->slots = slots;
  out->max_message = max_message;
  out->max_writers = writers;
  out->stride = stride;
  out->slots_offset = static_cast<std::size_t>(slots_offset);
  return magic;
}

Result<QueueFile> open_queue(std::string_view name, const QueueOptions& options, const char* op) {
  if (auto ok = shared_file::check_name(name, kMaxName, "queue name"); !ok) return std::unexpected(ok.error());
  if (auto ok = check_options(options, op); !ok) return std::unexpected(ok.error());
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t size =
      (L::file_bytes(options.slots, options.max_message, options.max_writers) + page - 1) / page * page;
  QueueFile shape;  // what this call would create; an existing queue's, once checked
  shape.slots = options.slots;
  shape.max_message = options.max_message;
  shape.max_writers = options.max_writers;
  shape.stride = static_cast<std::size_t>(L::stride_for(options.max_message));
  shape.slots_offset = static_cast<std::size_t>(L::slots_offset_for(options.max_writers));
  const std::string path = "/dev/shm" + os::SharedMemory::system_name(name);
  auto gid = shared_file::group_id(options.group);
  if (!gid) return std::unexpected(gid.error());
  auto f = shared_file::open_or_create(
      name, size, L::kMagic, "queue", op,
      [&](void* base) {
        auto& h = *static_cast<L::Header*>(base);
        h.version = L::kVersion;
        h.header_size = sizeof(L::Header);
        h.total_size = size;
        h.slots = static_cast<std::uint32_t>(shape.slots);
        h.max_message = static_cast<std::uint32_t>(shape.max_message);
        h.max_writers = static_cast<std::uint32_t>(shape.max_writers);
        h.stride = static_cast<std::uint32_t>(shape.stride);
        h.slots_offset = shape.slots_offset;
        auto* b = static_cast<std::byte*>(base);
        for (std::size_t i = 0; i < shape.slots; ++i)
          reinterpret_cast<L::SlotHead*>(b + shape.slots_offset + i * shape.stride)
              ->state.store(L::make_state(i, L::kEmpty), std::memory_order_relaxed);
      },
      [&](int fd, std::uint64_t file_size) { return check_header(fd, file_size, path, &shape); }, *gid);
  if (!f) return std::unexpected(f.error());
  shape.fd = std::move(f->fd);
  shape.base = f->base;
  shape.size = f->size;
  shape.path = std::move(f->path);
  return shape;
}

L::Header& header(void* base) noexcept { return *static_cast<L::Header*>(base); }
L::WriterEntry& entry(void* base, std::size_t i) noexcept {
  return reinterpret_cast<L::WriterEntry*>(static_cast<std::byte*>(base) + sizeof(L::Header))[i];
}
// Position `pos`'s slot.
L::SlotHead& slot(const QueueFile& q, std::uint64_t pos) noexcept {
  return *reinterpret_cast<L::SlotHead*>(static_cast<std::byte*>(q.base) + q.slots_offset + (pos & (q.slots - 1)) * q.stride);
}

WaitPolicy policy(std::chrono::microseconds spin) noexcept {
  return spin <= std::chrono::microseconds::zero() ? WaitPolicy{.mode = WaitMode::block, .spin = spin}
                                                   : WaitPolicy{.mode = WaitMode::hybrid, .spin = spin};
}

// Sets a shared "someone may sleep" flag and returns the futex value to sleep on (see
// ring::arm_word: the read-modify-write and the fence order the flag before the next look).
// `heavy`: the fence is a barrier on every CPU, so that the waker needs none (wake_flag).
std::uint32_t arm_flag(std::atomic<std::uint32_t>& flag, std::atomic<std::uint32_t>& seq, bool heavy = false,
                       std::uint32_t how = L::kWakeFutex) noexcept {
  const std::uint32_t s = seq.load(std::memory_order_acquire);
  flag.fetch_or(how, std::memory_order_seq_cst);
  if (heavy) os::heavy_barrier();
  else std::atomic_thread_fence(std::memory_order_seq_cst);
  return s;
}

// After publishing: wakes everyone sleeping on `seq` if the flag says someone may; returns the
// flag's bits (0: nobody to wake). `light`: the sleeper arms with a heavy barrier and this process
// is registered for them.
std::uint32_t wake_flag(std::atomic<std::uint32_t>& flag, std::atomic<std::uint32_t>& seq, bool light = false) noexcept {
  if (light) std::atomic_signal_fence(std::memory_order_seq_cst);
  else std::atomic_thread_fence(std::memory_order_seq_cst);
  if (flag.load(std::memory_order_relaxed) == 0) return 0;
  const std::uint32_t how = flag.exchange(0, std::memory_order_acq_rel);
  if (how & L::kWakeFutex) {
    seq.fetch_add(1, std::memory_order_release);
    (void)os::futex_wake(seq, INT_MAX);
  }
  return how;
}

// The last one out removes the queue only when no message is left in it: one that holds
// messages stays for its next reader (`ipcx shm rm` or `gc` discard it).
bool empty_queue(void* base) noexcept {
  auto& h = *static_cast<L::Header*>(base);
  return h.tail.load(std::memory_order_acquire) == h.head.load(std::memory_order_acquire);
}

}  // namespace

namespace detail {

QueueFile& QueueFile::operator=(QueueFile&& o) noexcept {
  if (this != &o) {
    close();
    fd = std::move(o.fd);
    base = std::exchange(o.base, nullptr);
    size = o.size;
    slots = o.slots;
    max_message = o.max_message;
    max_writers = o.max_writers;
    stride = o.stride;
    slots_offset = o.slots_offset;
    path = std::move(o.path);
  }
  return *this;
}

void QueueFile::close() noexcept {
  if (fd && base) (void)lifetime::leave(std::move(fd), path, &empty_queue, base);
  if (base) ::munmap(base, size);
  base = nullptr;
  fd.reset();
}

}  // namespace detail

// ---- reader ------------------------------------------------------------------------------------

QueueReader::QueueReader(QueueReader&& o) noexcept { *this = std::move(o); }
QueueReader& QueueReader::operator=(QueueReader&& o) noexcept {
  if (this != &o) {
    close();
    q_ = std::move(o.q_);
    head_ = o.head_;
    published_ = o.published_;
    batch_ = o.batch_;
    heavy_ = o.heavy_;
    received_ = o.received_;
    abandoned_ = o.abandoned_;
    spin_ = o.spin_;
    broken_ = o.broken_;
    wake_ = std::move(o.wake_);
    polled_ = o.polled_;
  }
  return *this;
}
QueueReader::~QueueReader() { close(); }

// The head, for writers: stored every eighth of the queue and whenever the reader would wait,
// so that the line writers read is written once per batch rather than per message. A reader
// that dies leaves it behind its real position: the next one passes the slots already freed.
void QueueReader::publish_head() noexcept {
  auto& h = header(q_.base);
  published_ = head_;
  h.head.store(head_, std::memory_order_release);
  wake_flag(h.space_wait, h.space_seq);
}

void QueueReader::close() noexcept {
  if (q_.base && published_ != head_) publish_head();
  if (q_.fd) lifetime::release_writer(q_.fd.get(), 0);
  q_.close();
  wake_.reset();
}

Result<QueueReader> QueueReader::create(std::string_view name, QueueOptions options) {
  if (auto owned = os::owner_of(name); owned && owned->foreign)
    return fail(Errc::permission_denied, "queue create", "a queue is read by a process of its owner");
  auto o = open_queue(name, options, "queue create");
  if (!o) return std::unexpected(o.error());
  QueueReader r;
  r.q_ = std::move(*o);
  r.spin_ = options.spin;
  auto mine = lifetime::take_writer(r.q_.fd.get(), 0);
  if (!mine) return std::unexpected(mine.error());
  if (!*mine) {
    r.close();
    return fail(Errc::already_exists, "queue create", fmt::format("{}: a live process reads it", r.q_.path));
  }
  // Taking over: the previous reader's position, if it adds up.
  auto& h = header(r.q_.base);
  const std::uint64_t head = h.head.load(std::memory_order_acquire);
  const std::uint64_t tail = h.tail.load(std::memory_order_acquire);
  if (head > tail || tail - head > r.q_.slots) {
    r.close();
    return fail(Errc::protocol, "queue create",
                fmt::format("{}: positions that do not add up (head {}, tail {}, {} slots)", r.q_.path, head, tail, r.q_.slots));
  }
  // Says how this reader arms its sleeps (a previous reader's word is not ours); a dead polling
  // reader's request for datagrams is not ours either (native_handle binds our socket).
  r.heavy_ = os::asymmetric_barriers();
  h.reader_heavy.store(r.heavy_ ? 1 : 0, std::memory_order_release);
  h.reader_wait.fetch_and(~L::kWakeFd, std::memory_order_seq_cst);
  r.head_ = r.published_ = head;
  r.batch_ = std::max<std::size_t>(1, r.q_.slots / 8);
  return r;
}

int QueueReader::native_handle() const noexcept {
  if (!q_.base) return -1;
  if (!wake_) {
    // Bound on first use: a reader that never polls needs no socket. Its name goes into the
    // header before the reader ever asks for a datagram (kWakeFd).
    std::uint64_t token = 0;
    auto sock = wake::bind_new(&token);
    if (!sock) return -1;
    wake_ = std::move(*sock);
    auto& h = header(q_.base);
    h.reader_uid.store(::geteuid(), std::memory_order_relaxed);
    h.reader_token.store(token, std::memory_order_release);
  }
  polled_ = true;
  return wake_.get();
}

void QueueReader::poke_self() const noexcept {
  sockaddr_un self{};
  socklen_t len = sizeof self;
  if (!wake_ || ::getsockname(wake_.get(), reinterpret_cast<sockaddr*>(&self), &len) != 0) return;
  const char one = 1;
  (void)::sendto(wake_.get(), &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&self), len);
}

std::size_t QueueReader::depth() const noexcept {
  if (!q_.base) return 0;
  const std::uint64_t t = header(q_.base).tail.load(std::memory_order_acquire);
  return t > head_ ? static_cast<std::size_t>(std::min<std::uint64_t>(t - head_, q_.slots)) : 0;
}

std::size_t QueueReader::writers() const noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; q_.fd && i < q_.max_writers; ++i) n += lifetime::writer_alive(q_.fd.get(), static_cast<off_t>(1 + i));
  return n;
}

Result<void> QueueReader::recv(std::vector<std::byte>& out, Timeout timeout) {
  if (!q_.base) return fail(Errc::closed, "queue recv", "not open");
  if (broken_) return fail(Errc::protocol, "queue recv", "the queue was found corrupt earlier");
  auto& h = header(q_.base);
  auto corrupt = [&](std::string detail) -> Result<void> {
    broken_ = true;
    return fail(Errc::protocol, "queue recv", fmt::format("{}: {}", q_.path, detail));
  };
  // The clock is read only once there is something to wait for, or after many turns of the loop
  // without a message (slots given up, or a hostile process rewriting states: bounded anyway).
  std::optional<os::Deadline> deadline;
  for (unsigned turn = 1;; ++turn) {
    if (turn % 256 == 0) {
      if (!deadline) deadline.emplace(os::Deadline::after(timeout));
      if (deadline->expired()) {
        // A polling caller must come back for what is left: its socket is made readable.
        if (deadline->immediate() && polled_) poke_self();
        return fail(deadline->immediate() ? Errc::would_block : Errc::timeout, "queue recv");
      }
    }
    auto& s = slot(q_, head_);
    const std::uint64_t st = s.state.load(std::memory_order_acquire);
    const std::uint64_t kind = L::state_kind(st);
    const std::uint64_t pos = L::state_pos(st);
    const bool here = pos == (head_ & L::kPosMask);
    if (st == L::make_state(head_ + q_.slots, L::kEmpty)) {
      // Freed already: a reader died after freeing it, before publishing the head past it. Only
      // a claimed position can have been freed.
      const std::uint64_t tail = h.tail.load(std::memory_order_acquire);
      if (tail <= head_ || tail - head_ > q_.slots)
        return corrupt(fmt::format("position {} freed, the tail at {}", head_, tail));
      ++head_;
      continue;
    }
    if (!here || kind > L::kAbandoned || L::state_writer(st) >= q_.max_writers)
      return corrupt(fmt::format("slot state {:#x} at position {}", st, head_));
    if (kind == L::kReady || kind == L::kAbandoned) {
      if (kind == L::kReady) {
        const std::uint32_t len = s.length;  // once: the writer side may change it under us
        if (len > q_.max_message) return corrupt(fmt::format("a message of {} bytes (at most {})", len, q_.max_message));
        out.resize(len);
        if (len != 0) std::memcpy(out.data(), reinterpret_cast<const std::byte*>(&s) + sizeof(L::SlotHead), len);
      }
      // The slot goes back to the writers (for the position a lap on); the head moves for them
      // in batches (see publish_head).
      s.state.store(L::make_state(head_ + q_.slots, L::kEmpty), std::memory_order_release);
      ++head_;
      // A writer that sleeps for room (rare) gets it now rather than at the end of the batch.
      if (head_ - published_ >= batch_ || h.space_wait.load(std::memory_order_relaxed) != 0) publish_head();
      if (kind == L::kReady) {
        ++received_;
        return {};
      }
      ++abandoned_;
      continue;
    }
    // Not complete yet: the writers get the room we made, then we wait for it to change.
    if (published_ != head_) publish_head();
    // While waiting, a position whose writer died is
    // given up: give_up_if_dead runs every millisecond of spinning and after every sleep slice
    // (the tail, a line the writers own, is read only there).
    std::optional<std::uint64_t> bad_tail;
    auto give_up_if_dead = [&]() noexcept {
      const std::uint64_t now = s.state.load(std::memory_order_acquire);
      if (now != st) return true;
      const std::uint64_t tail = h.tail.load(std::memory_order_seq_cst);
      if (tail < head_ || tail - head_ > q_.slots) {
        bad_tail = tail;
        return true;
      }
      if (kind == L::kWriting) {
        if (lifetime::writer_alive(q_.fd.get(), static_cast<off_t>(1 + L::state_writer(st)))) return true;
      } else {
        // Empty: was the position claimed at all? Its claimer keeps `claiming` set from before
        // its claim until its slot says writing; a live one with it set may be that claimer.
        if (tail == head_) return true;
        for (std::size_t i = 0; i < q_.max_writers; ++i)
          if (entry(q_.base, i).claiming.load(std::memory_order_acquire) != 0 &&
              lifetime::writer_alive(q_.fd.get(), static_cast<off_t>(1 + i)))
            return true;
      }
      std::uint64_t expected = st;
      (void)s.state.compare_exchange_strong(expected, L::make_state(head_, L::kAbandoned), std::memory_order_seq_cst);
      return true;
    };
    if (!deadline) deadline.emplace(os::Deadline::after(timeout));
    if (deadline->immediate()) {
      if (s.state.load(std::memory_order_acquire) != st) continue;
      if (!polled_) return fail(Errc::would_block, "queue recv");
      // A polling reader (native_handle): a call that never waits still gives a dead writer's
      // position up (no datagram comes for a death; the messages after it wake the reader),
      // and before saying there is nothing it empties its socket and asks the writers for a
      // datagram with the next message, then looks once more.
      (void)give_up_if_dead();
      if (bad_tail) return corrupt(fmt::format("the tail {} is outside [{}, {}]", *bad_tail, head_, head_ + q_.slots));
      if (s.state.load(std::memory_order_acquire) != st) continue;
      wake::drain(wake_.get());  // readable again only after a new datagram
      (void)arm_flag(h.reader_wait, h.data_seq, heavy_, L::kWakeFd);
      if (s.state.load(std::memory_order_acquire) != st) continue;
      return fail(Errc::would_block, "queue recv");
    }
    auto w = wait_until(
        policy(spin_), *deadline,
        [&] { return bad_tail || s.state.load(std::memory_order_acquire) != st; },
        [&](std::uint32_t) { return arm_flag(h.reader_wait, h.data_seq, heavy_); }, [] {}, h.data_seq, give_up_if_dead,
        kNeverStopping, "queue recv");
    if (bad_tail) return corrupt(fmt::format("the tail {} is outside [{}, {}]", *bad_tail, head_, head_ + q_.slots));
    if (!w) return w;
  }
}

// ---- writer ------------------------------------------------------------------------------------

QueueWriter::QueueWriter(QueueWriter&& o) noexcept { *this = std::move(o); }
QueueWriter& QueueWriter::operator=(QueueWriter&& o) noexcept {
  if (this != &o) {
    close();
    q_ = std::move(o.q_);
    index_ = o.index_;
    head_seen_ = o.head_seen_;
    registered_ = o.registered_;
    sent_ = o.sent_;
    spin_ = o.spin_;
    wake_socks_ = std::move(o.wake_socks_);
  }
  return *this;
}
QueueWriter::~QueueWriter() { close(); }

void QueueWriter::close() noexcept {
  if (q_.fd) lifetime::release_writer(q_.fd.get(), static_cast<off_t>(1 + index_));
  q_.close();
  wake_socks_.clear();
}

Result<QueueWriter> QueueWriter::open(std::string_view name, QueueOptions options) {
  auto o = open_queue(name, options, "queue open");
  if (!o) return std::unexpected(o.error());
  QueueWriter w;
  w.q_ = std::move(*o);
  w.spin_ = options.spin;
  bool found = false;
  for (std::size_t i = 0; i < w.q_.max_writers && !found; ++i) {
    auto mine = lifetime::take_writer(w.q_.fd.get(), static_cast<off_t>(1 + i));
    if (!mine) return std::unexpected(mine.error());
    if (*mine) {
      w.index_ = static_cast<std::uint32_t>(i);
      found = true;
    }
  }
  if (!found) {
    w.close();
    return fail(Errc::resource_exhausted, "queue open",
                fmt::format("{}: all {} writer places are taken (QueueOptions::max_writers when it is created)", w.q_.path,
                            w.q_.max_writers));
  }
  // A previous holder of this index is dead: what it left half-written is given up now (the
  // reader would otherwise take it for ours, alive, and wait for it).
  w.registered_ = os::asymmetric_barriers();
  auto& e = entry(w.q_.base, w.index_);
  e.pid = ::getpid();
  e.claiming.store(0, std::memory_order_seq_cst);
  // Only claimed positions can be marked writing: those from the head to the tail.
  auto& h = header(w.q_.base);
  const std::uint64_t head = h.head.load(std::memory_order_acquire);
  const std::uint64_t tail = h.tail.load(std::memory_order_acquire);
  const std::uint64_t span = tail >= head ? std::min<std::uint64_t>(tail - head, w.q_.slots) : w.q_.slots;
  for (std::uint64_t p = tail - span; p != tail; ++p) {
    auto& s = slot(w.q_, p);
    std::uint64_t st = s.state.load(std::memory_order_acquire);
    if (L::state_kind(st) == L::kWriting && L::state_writer(st) == w.index_ &&
        s.state.compare_exchange_strong(st, L::make_state(L::state_pos(st), L::kAbandoned), std::memory_order_seq_cst))
      w.wake_reader(wake_flag(h.reader_wait, h.data_seq));  // the reader may be waiting for that very slot
  }
  return w;
}

bool QueueWriter::reader_alive() const noexcept { return q_.fd && lifetime::writer_alive(q_.fd.get(), 0); }

Result<void> QueueWriter::send(std::span<const std::byte> msg, Timeout timeout) {
  if (!q_.base) return fail(Errc::closed, "queue send", "not open");
  if (msg.size() > q_.max_message)
    return fail(Errc::too_large, "queue send", fmt::format("a message of {} bytes (the queue takes at most {})", msg.size(), q_.max_message));
  auto& h = header(q_.base);
  auto& me = entry(q_.base, index_);
  std::optional<os::Deadline> deadline;  // read the clock only to wait
  // Set before the claim and kept until the slot names us: a reader that finds a claimed
  // position empty and nobody alive with this set knows the claimer died.
  // Relaxed is enough: the claim below is a release, so a reader that sees the tail it left sees
  // this too.
  me.claiming.store(1, std::memory_order_relaxed);
  std::uint64_t pos = 0;
  // Position t is free when the reader's published head says so, or when its slot does (the
  // reader frees each slot at once and publishes the head only in batches).
  auto slot_free = [&](std::uint64_t t) {
    return slot(q_, t).state.load(std::memory_order_acquire) ==
           L::make_state(t, L::kEmpty);
  };
  for (unsigned turn = 1;; ++turn) {
    if (turn % 256 == 0) {  // lost claims over and over: a crowd of writers, or a hostile one
      if (!deadline) deadline.emplace(os::Deadline::after(timeout));
      if (deadline->expired()) {
        me.claiming.store(0, std::memory_order_release);
        return fail(deadline->immediate() ? Errc::would_block : Errc::timeout, "queue send");
      }
    }
    std::uint64_t t = h.tail.load(std::memory_order_seq_cst);
    // The reader's head as last read, while it shows room (it only grows). Read before the tail
    // it is compared with: the tail is never behind it then.
    if (t < head_seen_ || t - head_seen_ >= q_.slots) {
      head_seen_ = h.head.load(std::memory_order_acquire);
      t = h.tail.load(std::memory_order_seq_cst);
    }
    const std::uint64_t hd = head_seen_;
    if (hd > t) {
      me.claiming.store(0, std::memory_order_release);
      return fail(Errc::protocol, "queue send", fmt::format("{}: the head {} is past the tail {}", q_.path, hd, t));
    }
    if (t - hd < q_.slots || slot_free(t)) {
      if (h.tail.compare_exchange_weak(t, t + 1, std::memory_order_seq_cst)) {
        pos = t;
        break;
      }
      continue;
    }
    // Full: wait for the reader without holding the claim flag (the reader must not wait for us).
    me.claiming.store(0, std::memory_order_release);
    auto w = wait_until(
        policy(spin_), deadline ? *deadline : deadline.emplace(os::Deadline::after(timeout)),
        [&] { return h.head.load(std::memory_order_acquire) != hd || slot_free(t); },
        [&](std::uint32_t) { return arm_flag(h.space_wait, h.space_seq); }, [] {}, h.space_seq,
        [&] { return reader_alive(); }, kNeverStopping, "queue send");
    if (!w) {
      if (w.error().code == Errc::closed)
        return fail(Errc::closed, "queue send", fmt::format("{}: full, and no reader is alive to make room", q_.path));
      return w;
    }
    me.claiming.store(1, std::memory_order_relaxed);
  }
  // The claim makes the slot ours: nobody else writes it while our `claiming` is set (the reader
  // gives a position up only when no live writer has it set), so a plain store marks it.
  auto& s = slot(q_, pos);
  const std::uint64_t found = s.state.load(std::memory_order_acquire);
  if (found != L::make_state(pos, L::kEmpty)) {
    me.claiming.store(0, std::memory_order_release);
    return fail(Errc::protocol, "queue send",
                fmt::format("{}: the slot of position {} is not free (state {:#x})", q_.path, pos, found));
  }
  s.state.store(L::make_state(pos, L::kWriting, index_), std::memory_order_relaxed);
  me.claiming.store(0, std::memory_order_release);  // after the mark: a reader that sees 0 sees it
  auto* payload = reinterpret_cast<std::byte*>(&s) + sizeof(L::SlotHead);
  if (!msg.empty()) std::memcpy(payload, msg.data(), msg.size());
  s.length = static_cast<std::uint32_t>(msg.size());
  s.state.store(L::make_state(pos, L::kReady, index_), std::memory_order_release);
  const bool light = registered_ && h.reader_heavy.load(std::memory_order_relaxed) == 1;
  wake_reader(wake_flag(h.reader_wait, h.data_seq, light));
  ++sent_;
  return {};
}

// The datagram a reader that polls its descriptor asked for (kWakeFd among the bits taken).
void QueueWriter::wake_reader(std::uint32_t how) noexcept {
  if ((how & L::kWakeFd) == 0) return;
  auto& h = header(q_.base);
  const std::uint64_t token = h.reader_token.load(std::memory_order_acquire);
  (void)wake::send(wake_socks_, h.reader_uid.load(std::memory_order_relaxed), token);
}

}  // namespace ipcx::shm
