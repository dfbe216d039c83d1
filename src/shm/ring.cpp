#include "shm/ring.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include <fmt/format.h>

#include "os/futex.hpp"
#include "os/membarrier.hpp"

namespace ipcx::shm::ring {
namespace {

// A piece smaller than this is not written at the end of the data area when the whole piece
// would fit after a wrap (many tiny records cost more than a short wait).
constexpr std::size_t kMinPiece = 512;

std::unexpected<Error> corrupt(std::string detail) {
  return fail(Errc::protocol, "shm ring", std::move(detail));
}

// Sets the sleep bits, then returns the futex value to sleep on. The seq_cst read-modify-write
// orders the bits before the caller's next look at the ring (the waker publishes, then looks at
// the bits: one of the two sees the other).
std::uint32_t arm_word(std::atomic<std::uint32_t>& wait, std::atomic<std::uint32_t>& seq, std::uint32_t how) noexcept {
  const std::uint32_t s = seq.load(std::memory_order_acquire);
  wait.fetch_or(how, std::memory_order_seq_cst);
  // A side that said it sleeps this way (Control::*_heavy) must: the other side relies on it.
  if (os::asymmetric_barriers()) os::heavy_barrier();
  else std::atomic_thread_fence(std::memory_order_seq_cst);
  return s;
}

// Wakes a sleeper the way it asked: the futex bit by bumping its word, the pipe bit by
// `fd_wake` (the descriptor is looked up only then: it may have to be resolved).
template <class FdWake>
void wake_sleeper(std::atomic<std::uint32_t>& seq, std::uint32_t how, FdWake&& fd_wake) noexcept {
  if (how & kWakeFutex) {
    seq.fetch_add(1, std::memory_order_release);
    (void)os::futex_wake(seq, INT_MAX);
  }
  if (how & kWakeFd) fd_wake();
}

// Marks this side ended, then wakes the other side whatever it asked for: it may be between
// arming and sleeping (and sleeps in slices anyway).
template <class FdWake>
void end_side(std::atomic<std::uint32_t>& closed, std::atomic<std::uint32_t>& peer_wait,
              std::atomic<std::uint32_t>& peer_seq, FdWake&& fd_wake) noexcept {
  closed.store(1, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  peer_wait.store(0, std::memory_order_relaxed);
  wake_sleeper(peer_seq, kWakeFutex | kWakeFd, fd_wake);
}

// The hot side's half of the pair: a compiler barrier when the sleeper pays for both, else a
// full fence (store of the position, then the look at the sleep bits).
inline void store_load_barrier(bool light) noexcept {
  if (light) std::atomic_signal_fence(std::memory_order_seq_cst);
  else std::atomic_thread_fence(std::memory_order_seq_cst);
}

// Advertises that this side arms its sleeps with membarrier (see arm_word).
void advertise_heavy(std::atomic<std::uint32_t>& mine) noexcept {
  if (os::asymmetric_barriers()) mine.store(1, std::memory_order_release);
}

// The other side arms its sleeps with membarrier, and this process is registered so that the
// barrier reaches it: then a compiler barrier is enough here.
bool peer_sleeps_heavy(const std::atomic<std::uint32_t>& theirs) noexcept {
  return os::asymmetric_barriers() && theirs.load(std::memory_order_acquire) == 1;
}

}  // namespace

void poke_pipe(int fd) noexcept {
  if (fd < 0) return;
  const char one = 1;
  (void)!::write(fd, &one, 1);  // EAGAIN: full, readable anyway
}

void drain_pipe(int fd) noexcept {
  if (fd < 0) return;
  char buf[4096];
  while (::read(fd, buf, sizeof buf) == static_cast<ssize_t>(sizeof buf)) {
  }
}

void block_pipe(int fd) noexcept {
  if (fd < 0) return;
  if (::fcntl(fd, F_GETPIPE_SZ) > kWakePipeSize) {
    drain_pipe(fd);
    (void)::fcntl(fd, F_SETPIPE_SZ, kWakePipeSize);
  }
  poke_pipe(fd);
}

// ---- writer ------------------------------------------------------------------------------------

Writer::Writer(std::byte* base, std::size_t capacity, Wakers wakers) noexcept
    : c_(reinterpret_cast<Control*>(base)), data_(base + sizeof(Control)), cap_(capacity), wake_(wakers) {
  store_header(data_, 0, __ATOMIC_RELAXED);  // nothing is published at 0 whatever the memory said
  advertise_heavy(c_->writer_heavy);
}

// The reader's word is read until it says yes (it may attach after us), then kept.
bool Writer::light_slow() noexcept { return light_ = peer_sleeps_heavy(c_->reader_heavy); }

Result<std::size_t> Writer::free_space() noexcept {
  // The writer keeps a header's room free after its records (the zeroed one): an honest reader
  // is never more than capacity - kHeader behind.
  const std::uint64_t h = c_->head.load(std::memory_order_acquire);
  const std::uint64_t lowest = tail_ > cap_ - kHeader ? tail_ - (cap_ - kHeader) : 0;
  if (h > tail_ || h < lowest || h % kAlign != 0)
    return corrupt(fmt::format("the reader's position {} is outside [{}, {}]", h, lowest, tail_));
  head_cache_ = h;
  return room();
}

void Writer::wake_reader() noexcept {
  wake_sleeper(c_->data_seq, c_->reader_wait.exchange(0, std::memory_order_acq_rel), [&] { poke_pipe(wake_.data()); });
}

Result<bool> Writer::write(std::span<const std::byte> msg, std::size_t* done) noexcept {
  const std::uint64_t published = tail_;
  std::uint64_t first = 0;  // the first record's header word: stored last, it publishes them all
  auto put_header = [&](std::size_t pos, std::uint64_t w) {
    if (tail_ == published) first = w;
    else store_header(data_ + pos, w, __ATOMIC_RELAXED);
  };
  bool complete = false;
  bool refreshed = false;
  std::size_t free = room();
  auto refresh = [&]() -> Result<void> {
    auto f = free_space();
    if (!f) return std::unexpected(f.error());
    free = *f;
    refreshed = true;
    return {};
  };
  while (!complete) {
    const std::size_t remaining = msg.size() - *done;
    std::size_t piece = std::min(remaining, max_record(cap_));
    std::size_t need = record_size(piece);
    if (free < need && !refreshed) {  // the reader may have moved on since we last looked
      if (auto r = refresh(); !r) return std::unexpected(r.error());
    }
    const std::size_t pos = static_cast<std::size_t>(tail_ & (cap_ - 1));
    const std::size_t to_end = cap_ - pos;
    const std::size_t avail = std::min(free, to_end);
    if (need > avail) {
      if (to_end < need && free >= to_end + need) {
        // Fits after a wrap: fill to the end. to_end >= kHeader: positions stay 8-aligned.
        put_header(pos, header_word(to_end - kHeader, kPadding | kPublished));
        tail_ += to_end;
        free -= to_end;
        continue;
      }
      if (avail < kHeader + std::min(piece, kMinPiece)) {
        if (refreshed) break;  // wait for the reader
        if (auto r = refresh(); !r) return std::unexpected(r.error());
        continue;
      }
      piece = std::min(piece, avail - kHeader);
      need = record_size(piece);
    }
    complete = *done + piece == msg.size();
    if (piece != 0) std::memcpy(data_ + pos + kHeader, msg.data() + *done, piece);
    put_header(pos, header_word(piece, (complete ? 0u : kMore) | kPublished));
    tail_ += need;
    free -= need;
    *done += piece;
    refreshed = false;
  }
  if (tail_ != published) publish(static_cast<std::size_t>(published & (cap_ - 1)), first);
  return complete;
}

bool Writer::has_space() noexcept {
  return c_->head.load(std::memory_order_acquire) != head_cache_ || reader_closed();
}

void Writer::close() noexcept {
  end_side(c_->writer_closed, c_->reader_wait, c_->data_seq, [&] { poke_pipe(wake_.data()); });
}

std::uint32_t Writer::arm(std::uint32_t how) noexcept {
  // Polled for writability: the full pipe is not writable until the reader drains it.
  if (how & kWakeFd) block_pipe(wake_.space());
  return arm_word(c_->writer_wait, c_->space_seq, how);
}

// ---- reader ------------------------------------------------------------------------------------

Reader::Reader(std::byte* base, std::size_t capacity, Wakers wakers) noexcept
    : c_(reinterpret_cast<Control*>(base)), data_(base + sizeof(Control)), cap_(capacity), wake_(wakers) {
  advertise_heavy(c_->reader_heavy);
}

bool Reader::light_slow() noexcept { return light_ = peer_sleeps_heavy(c_->writer_heavy); }

// Space goes back to the writer in batches (an eighth of the ring), and whenever the reader has
// caught up: one store to the writer-watched line per batch rather than per message. A writer
// that waits for space is never stranded: the ring is full only while more than an eighth of it
// is left to read, and reading it crosses the threshold.
void Reader::release(std::uint64_t new_head) noexcept {
  released_ = new_head;
  c_->head.store(new_head, std::memory_order_release);
  store_load_barrier(light());
  if (c_->writer_wait.load(std::memory_order_relaxed) == 0) return;
  wake_sleeper(c_->space_seq, c_->writer_wait.exchange(0, std::memory_order_acq_rel), [&] { drain_pipe(wake_.space()); });
}

Result<Reader::Got> Reader::read(std::vector<std::byte>& out, std::size_t max_message) noexcept {
  for (;;) {
    const std::size_t pos = static_cast<std::size_t>(head_ & (cap_ - 1));
    const std::size_t to_end = cap_ - pos;
    std::uint64_t w = load_header(data_ + pos);  // once: the peer may change it under us
    if ((word_flags(w) & kPublished) == 0) {
      if (released_ != head_) release(head_);
      if (c_->writer_closed.load(std::memory_order_acquire) == 0) return Got::nothing;
      // Closed: one more look, the last records may have been published just before.
      if ((word_flags(load_header(data_ + pos)) & kPublished) != 0) continue;
      if (!out.empty()) return corrupt("the writer closed in the middle of a message");
      return Got::eof;
    }
    const struct {
      std::uint32_t length, flags;
    } h{word_length(w), word_flags(w) & ~kPublished};
    const std::uint64_t size = record_size(h.length);
    if (size > to_end)
      return corrupt(fmt::format("a record of {} bytes at offset {} overruns the end of the data area ({} bytes left)",
                                 h.length, pos, to_end));
    if ((h.flags & ~(kMore | kPadding)) != 0 || h.flags == (kMore | kPadding))
      return corrupt(fmt::format("record flags 0x{:x}", word_flags(w)));
    if (h.flags & kPadding) {
      if (size != to_end) return corrupt(fmt::format("padding of {} bytes does not reach the end ({} left)", size, to_end));
      // A record always fits at offset 0: padding there is no writer's, and could go round for ever.
      if (pos == 0) return corrupt("padding at the start of the data area");
      head_ += size;
      if (head_ - released_ >= cap_ / 8) release(head_);
      continue;
    }
    // Every record of a message but its last carries bytes: empty ones would go round for ever.
    if (h.length == 0 && (h.flags & kMore) != 0) return corrupt("an empty record in the middle of a message");
    if (h.length > max_record(cap_))
      return corrupt(fmt::format("a record of {} bytes (records carry at most {})", h.length, max_record(cap_)));
    if (out.size() + h.length > max_message)
      return fail(Errc::too_large, "recv",
                  fmt::format("message of more than {} bytes (the limit is {})", out.size() + h.length, max_message));
    const std::byte* src = data_ + pos + kHeader;
    out.insert(out.end(), src, src + h.length);  // no zero-filling first, unlike resize
    head_ += size;
    if (head_ - released_ >= cap_ / 8) release(head_);
    if ((h.flags & kMore) == 0) return Got::message;
  }
}

bool Reader::ready() noexcept { return pending() || writer_closed(); }

bool Reader::writer_closed() const noexcept { return c_->writer_closed.load(std::memory_order_acquire) != 0; }

void Reader::close() noexcept {
  end_side(c_->reader_closed, c_->writer_wait, c_->space_seq, [&] { drain_pipe(wake_.space()); });
}

std::uint32_t Reader::arm(std::uint32_t how) noexcept {
  if (how & kWakeFd) drain_pipe(wake_.data());  // consumed: readable again only after a new wake
  return arm_word(c_->reader_wait, c_->data_seq, how);
}

}  // namespace ipcx::shm::ring
