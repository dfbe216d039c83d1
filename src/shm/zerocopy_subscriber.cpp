// Zero-copy publish/subscribe, the subscribing side: samples, publishers' data files mapped
// read-only, and take(). docs/shm.md, "Zero-copy publish/subscribe".
#include <ipcx/zerocopy.hpp>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <fmt/format.h>

#include "os/futex.hpp"
#include "os/shm.hpp"
#include "os/sys.hpp"
#include "shm/lifetime.hpp"
#include "shm/zerocopy_internal.hpp"
#include "sync/spin.hpp"

namespace ipcx::shm {

using namespace detail;

Sample::Sample(Sample&& o) noexcept { *this = std::move(o); }
Sample& Sample::operator=(Sample&& o) noexcept {
  if (this != &o) {
    release();
    src_ = std::move(o.src_);
    chunk_ = o.chunk_;
    seq_ = o.seq_;
    slot_ = o.slot_;
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}
Sample::~Sample() { release(); }
void Sample::release() noexcept {
  if (src_ && data_) src_->release(chunk_);
  data_ = nullptr;
  size_ = 0;
  src_.reset();
}
// ---- subscriber ------------------------------------------------------------------------------

ZeroCopySubscriber::ZeroCopySubscriber() noexcept = default;
ZeroCopySubscriber::ZeroCopySubscriber(ZeroCopySubscriber&&) noexcept = default;
ZeroCopySubscriber& ZeroCopySubscriber::operator=(ZeroCopySubscriber&&) noexcept = default;
ZeroCopySubscriber::~ZeroCopySubscriber() { close(); }

void ZeroCopySubscriber::close() noexcept {
  if (!s_) return;
  // The slot stays claimed (the topic description stays open) until the last Sample goes.
  auto& sl = s_->topic->sub(s_->slot);
  sl.state.store(L::kFree, std::memory_order_release);
  if (sl.flags.exchange(0) & L::kBlock) s_->topic->header().blocking.fetch_sub(1, std::memory_order_acq_rel);
  s_.reset();
}

namespace {

// Maps publisher slot i's data file, checking its header against the topic and its size.
// `joined_before`: the publisher came after this subscriber, so everything it published is
// for us (from sequence 1, within the queue); else we start after its latest sample (minus the
// history asked for).
Result<std::shared_ptr<ZcSource>> map_source(detail::ZcSubscriberState& s, std::size_t i, std::uint64_t generation,
                                            std::uint64_t token, bool joined_before) {
  const auto& t = *s.topic;
  auto src = std::make_shared<ZcSource>();
  src->topic = s.topic;
  src->held = s.held;
  src->slot = i;
  src->generation = generation;
  const auto dname = data_name(t.name, token);
  auto o = os::SharedMemory::open(dname, true);
  if (!o) return std::unexpected(o.error());
  src->path = "/dev/shm" + os::SharedMemory::system_name(dname);
  src->fd = o->take_fd();
  auto held = lifetime::hold(src->fd.get(), src->path);
  if (!held) return std::unexpected(held.error());
  if (!*held) return fail(Errc::not_found, "subscriber", "the publisher's file went away");
  struct stat st {};
  if (::fstat(src->fd.get(), &st) != 0) return fail_errno(errno, "fstat", src->path);
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  std::byte raw[sizeof(L::DataHeader)]{};
  if (::pread(src->fd.get(), raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw))
    return fail(Errc::protocol, "subscriber", fmt::format("{}: shorter than a header", src->path));
  auto get = [&](auto& v, std::size_t off) { std::memcpy(&v, raw + off, sizeof v); };
  std::uint64_t magic, total, chunks, stride, max_payload, history, words, ring_off, ctl_off, chunks_off, gen;
  std::uint32_t version, header_size;
  get(magic, offsetof(L::DataHeader, magic));
  get(version, offsetof(L::DataHeader, version));
  get(header_size, offsetof(L::DataHeader, header_size));
  get(total, offsetof(L::DataHeader, total_size));
  get(chunks, offsetof(L::DataHeader, chunks));
  get(stride, offsetof(L::DataHeader, stride));
  get(max_payload, offsetof(L::DataHeader, max_payload));
  get(history, offsetof(L::DataHeader, history));
  get(words, offsetof(L::DataHeader, words));
  get(ring_off, offsetof(L::DataHeader, ring_offset));
  get(ctl_off, offsetof(L::DataHeader, control_offset));
  get(chunks_off, offsetof(L::DataHeader, chunks_offset));
  get(gen, offsetof(L::DataHeader, reserved));
  if (magic != L::kDataMagic || gen != generation)
    return fail(Errc::not_found, "subscriber", fmt::format("{}: not (yet) the publisher's file", src->path));
  const bool sane = version == L::kVersion && header_size == sizeof(L::DataHeader) && chunks >= 2 &&
                    chunks <= kMaxChunks && max_payload >= 1 && max_payload <= kMaxPayload &&
                    stride == L::stride_for(max_payload) && history < chunks && words == (t.subs + 63) / 64 &&
                    total == file_size;
  if (!sane) return fail(Errc::protocol, "subscriber", fmt::format("{}: a header that does not add up", src->path));
  const auto g = L::data_geometry(chunks, stride, words);
  if (g.total != total || g.ring_offset != ring_off || g.control_offset != ctl_off || g.chunks_offset != chunks_off)
    return fail(Errc::protocol, "subscriber", fmt::format("{}: offsets that do not add up", src->path));
  void* ro = ::mmap(nullptr, total, PROT_READ, MAP_SHARED, src->fd.get(), 0);
  if (ro == MAP_FAILED) return fail_errno(errno, "mmap", src->path);
  src->ro = static_cast<const std::byte*>(ro);
  src->size = total;
  src->control_size = g.chunks_offset - g.control_offset;
  void* ctl = ::mmap(nullptr, src->control_size, PROT_READ | PROT_WRITE, MAP_SHARED, src->fd.get(),
                     static_cast<off_t>(g.control_offset));
  if (ctl == MAP_FAILED) return fail_errno(errno, "mmap", src->path);
  src->holders = static_cast<std::atomic<std::uint64_t>*>(ctl);
  src->chunks = chunks;
  src->stride = stride;
  src->words = words;
  src->max_payload = max_payload;
  src->history = history;
  src->chunks_offset = chunks_off;
  src->word = s.slot / 64;
  src->mask = std::uint64_t{1} << (s.slot % 64);
  // Bits a dead subscriber of this slot left: not ours, and we hold nothing here yet.
  for (std::uint64_t c = 0; c < chunks; ++c)
    if (src->bits(c).load(std::memory_order_relaxed) & src->mask) src->bits(c).fetch_and(~src->mask);
  const std::uint64_t latest = src->header().latest.load(std::memory_order_acquire);
  const std::uint64_t back = std::min<std::uint64_t>(s.options.history, history);
  src->next = joined_before ? 1 : (latest + 1 > back ? latest + 1 - back : 1);
  src->seen_latest = latest;
  s.topic->cursor(s.slot, i).store(src->next, std::memory_order_release);
  src->joined = true;
  return src;
}

// Looks for publishers that came (and notices ones that went) since the last look.
void refresh(detail::ZcSubscriberState& s, bool check_liveness, bool at_open = false) {
  auto& t = *s.topic;
  const std::uint32_t change = t.header().pub_change.load(std::memory_order_acquire);
  if (change == s.seen_change && !check_liveness) return;
  s.seen_change = change;
  for (std::size_t i = 0; i < t.pubs; ++i) {
    const bool alive = lifetime::writer_alive(t.fd.get(), t.pub_lock(i));
    auto& cur = s.sources[i];
    const std::uint64_t gen = t.pub(i).generation.load(std::memory_order_acquire);
    const std::uint64_t token = t.pub(i).token.load(std::memory_order_relaxed);
    const std::uint32_t state = t.pub(i).state.load(std::memory_order_acquire);
    if (cur && (cur->generation != gen || !alive)) {
      // Gone or replaced: keep reading what it published, then let it go.
      if (cur->broken || cur->next > cur->header().latest.load(std::memory_order_acquire)) {
        s.finished[i] = cur->generation;
        cur.reset();
      }
    }
    // A live publisher, or one that closed or died after publishing: its samples are ours.
    if (!cur && gen != 0 && gen != s.finished[i] && (state == L::kActive || state == L::kClosed)) {
      if (at_open && !alive) {
        s.finished[i] = gen;  // what a gone publisher left before we came is not ours
        continue;
      }
      auto m = map_source(s, i, gen, token, !at_open);
      if (m) cur = std::move(*m);
    }
  }
}

}  // namespace

Result<ZeroCopySubscriber> ZeroCopySubscriber::open(std::string_view name, ZeroCopySubscriberOptions o) {
  if (o.queue == 0 || o.max_held == 0)
    return fail(Errc::invalid_argument, "subscriber", fmt::format("queue {}, max_held {} (at least 1)", o.queue, o.max_held));
  if (o.overflow != Overflow::drop_oldest && o.overflow != Overflow::block)
    return fail(Errc::invalid_argument, "subscriber", "overflow: drop_oldest or block");
  auto t = open_topic(name, o.topic);
  if (!t) return std::unexpected(t.error());
  auto slot = claim(**t, (*t)->subs, &ZcTopic::sub_lock);
  if (!slot) return std::unexpected(slot.error());
  if (!*slot)
    return fail(Errc::resource_exhausted, "subscriber",
                fmt::format("{}: all {} subscriber slots are held by live subscribers", (*t)->path, (*t)->subs));
  auto s = std::make_unique<detail::ZcSubscriberState>();
  s->topic = std::move(*t);
  s->slot = **slot;
  s->options = o;
  s->sources.resize(s->topic->pubs);
  s->finished.assign(s->topic->pubs, 0);
  auto& sl = s->topic->sub(s->slot);
  sl.pid = ::getpid();
  const bool block = o.overflow == Overflow::block;
  sl.queue.store(static_cast<std::uint32_t>(std::min<std::size_t>(o.queue, UINT32_MAX)), std::memory_order_relaxed);
  sl.flags.store(block ? L::kBlock : 0, std::memory_order_relaxed);
  for (std::size_t i = 0; i < s->topic->pubs; ++i) s->topic->cursor(s->slot, i).store(0, std::memory_order_relaxed);
  refresh(*s, true, /*at_open=*/true);  // the publishers there now: their next samples are ours
  // Counted by publishers (subscribers()) from here: what they publish now reaches us.
  sl.state.store(L::kActive, std::memory_order_release);
  if (block) s->topic->header().blocking.fetch_add(1, std::memory_order_acq_rel);
  ZeroCopySubscriber sub;
  sub.s_ = std::move(s);
  return sub;
}

Result<Sample> ZeroCopySubscriber::take(Timeout timeout) {
  auto& s = *s_;
  if (s.held->load(std::memory_order_relaxed) >= s.options.max_held)
    return fail(Errc::resource_exhausted, "take",
                fmt::format("this subscriber holds {} samples (max_held): release one first", s.options.max_held));
  const os::Deadline deadline = os::Deadline::after(timeout);
  refresh(s, false);
  auto try_once = [&]() -> Result<std::optional<Sample>> {
    const std::size_t n = s.sources.size();
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = (s.rr + k) % n;
      auto& src = s.sources[i];
      if (!src || src->broken) continue;
      for (;;) {
        const std::uint64_t latest = src->header().latest.load(std::memory_order_acquire);
        // A publisher's `latest` only grows, by one per publication: going back, or leaping
        // further than any publisher could, is a corrupt or hostile file.
        if (latest < src->seen_latest || latest - src->seen_latest > kMaxLeap) {
          src->broken = true;
          return fail(Errc::protocol, "take",
                      fmt::format("{}: the latest sequence went from {} to {}", src->path, src->seen_latest, latest));
        }
        src->seen_latest = latest;
        if (src->next > latest) break;
        // Never more to look at than the ring holds (so a take's work is bounded), nor, with
        // drop_oldest, than the queue.
        const std::uint64_t window =
            s.options.overflow == Overflow::block ? src->chunks : std::min<std::uint64_t>(s.options.queue, src->chunks);
        if (latest - src->next >= window) {
          const std::uint64_t first = latest - window + 1;
          s.dropped += first - src->next;
          src->next = first;
        }
        const std::uint64_t seq = src->next;
        const auto& e = src->ring(seq);
        const std::uint64_t c = e.chunk.load(std::memory_order_acquire);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (e.seq.load(std::memory_order_acquire) != seq) {  // overwritten (or being written)
          ++s.dropped;
          ++src->next;
          continue;
        }
        if (c >= src->chunks) {
          src->broken = true;
          return fail(Errc::protocol, "take", fmt::format("{}: chunk {} of {}", src->path, c, src->chunks));
        }
        src->bits(c).fetch_or(src->mask, std::memory_order_seq_cst);
        std::uint64_t cs = src->chunk(c).seq.load(std::memory_order_seq_cst);
        for (int spin = 0; cs == L::kReusing && spin < 256; ++spin) {
          sync::cpu_relax();  // the publisher is deciding whether it may reuse it
          cs = src->chunk(c).seq.load(std::memory_order_seq_cst);
        }
        if (cs != seq) {
          src->bits(c).fetch_and(~src->mask, std::memory_order_release);
          ++s.dropped;
          ++src->next;
          continue;
        }
        const std::uint64_t len = src->chunk(c).len.load(std::memory_order_relaxed);
        if (len > src->max_payload) {
          src->bits(c).fetch_and(~src->mask, std::memory_order_release);
          src->broken = true;
          return fail(Errc::protocol, "take", fmt::format("{}: a sample of {} bytes (max {})", src->path, len, src->max_payload));
        }
        ++src->next;
        s.topic->cursor(s.slot, i).store(src->next, std::memory_order_release);
        s.held->fetch_add(1, std::memory_order_relaxed);
        s.rr = i + 1;
        Sample out;
        out.src_ = src;
        out.chunk_ = c;
        out.seq_ = seq;
        out.slot_ = i;
        out.data_ = src->ro + src->chunks_offset + c * src->stride + sizeof(L::ChunkHeader);
        out.size_ = len;
        return std::optional<Sample>(std::move(out));
      }
    }
    return std::optional<Sample>();
  };
  auto& h = s.topic->header();
  std::chrono::steady_clock::time_point spin_until{};  // read only once there is a wait
  for (unsigned round = 0;; ++round) {
    auto got = try_once();
    if (!got) return std::unexpected(got.error());
    if (*got) return std::move(**got);
    if (deadline.expired())
      return fail(deadline.immediate() ? Errc::would_block : Errc::timeout, "take");
    if (round == 0) spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    if (std::chrono::steady_clock::now() < spin_until) {
      sync::cpu_relax();
      if ((round & 63) == 63) refresh(s, false);
      continue;
    }
    // Sleep until a publication (or a publisher coming or going), in slices: a killed
    // publisher says nothing, its slot lock does.
    const std::uint32_t w = h.wake.load(std::memory_order_seq_cst);
    h.sleepers.fetch_add(1, std::memory_order_seq_cst);
    auto again = try_once();
    if (!again || *again) {
      h.sleepers.fetch_sub(1, std::memory_order_relaxed);
      if (!again) return std::unexpected(again.error());
      return std::move(**again);
    }
    const Timeout slice = deadline.infinite() ? Timeout(kSlice) : std::min<Timeout>(kSlice, deadline.remaining());
    (void)os::futex_wait(h.wake, w, slice);
    h.sleepers.fetch_sub(1, std::memory_order_relaxed);
    refresh(s, true);
  }
}

std::uint64_t ZeroCopySubscriber::dropped() const noexcept { return s_ ? s_->dropped : 0; }
std::size_t ZeroCopySubscriber::held() const noexcept { return s_ ? s_->held->load(std::memory_order_relaxed) : 0; }
std::size_t ZeroCopySubscriber::publishers() const noexcept {
  if (!s_) return 0;
  std::size_t n = 0;
  for (std::size_t i = 0; i < s_->topic->pubs; ++i) n += lifetime::writer_alive(s_->topic->fd.get(), s_->topic->pub_lock(i));
  return n;
}

}  // namespace ipcx::shm
