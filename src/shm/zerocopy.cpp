// Zero-copy publish/subscribe, the topic and the publishing side: per-publisher chunk pools with
// per-chunk holder bitmaps (one bit per subscriber slot), a ring naming the chunk of each
// sequence number, slots claimed by file locks (the subscribing side: zerocopy_subscriber.cpp).
// docs/shm.md, "Zero-copy publish/subscribe".
#include <ipcx/zerocopy.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "os/futex.hpp"
#include "os/shm.hpp"
#include "os/sys.hpp"
#include "shm/lifetime.hpp"
#include "shm/shared_file.hpp"
#include "shm/zerocopy_internal.hpp"
#include "sync/spin.hpp"

namespace ipcx::shm {
namespace detail {

bool ZcTopic::remove_data_files(void* self) noexcept {
  auto* t = static_cast<ZcTopic*>(self);
  // Files <topic>@... of this user that are publishers' data files and that nobody holds: a file
  // of another owner, a link or anything else planted under such a name is left alone.
  const std::string file = t->path.substr(t->path.rfind('/') + 1) + "@";
  DIR* dir = ::opendir("/dev/shm");
  if (!dir) return true;
  while (dirent* d = ::readdir(dir)) {
    if (std::string_view(d->d_name).rfind(file, 0) != 0) continue;
    const std::string p = "/dev/shm/" + std::string(d->d_name);
    const int fd = ::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st {};
    std::uint64_t magic = 0;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() &&
        ::pread(fd, &magic, sizeof magic, 0) == static_cast<ssize_t>(sizeof magic) && magic == L::kDataMagic)
      (void)lifetime::remove_if_unused(fd, p);
    ::close(fd);
  }
  ::closedir(dir);
  return true;
}

Result<void> check_topic_name(std::string_view name) {
  // A topic's publishers, subscribers and data files are all of its owner's uid.
  if (name.starts_with('~'))
    return fail(Errc::invalid_argument, "topic name",
                fmt::format("'{}': zero-copy topics are shared by the processes of one user (no ~OWNER/ names)",
                            name.substr(0, 64)));
  return shared_file::check_name(name, kMaxName, "topic name", "@");
}

Result<void> check_limits(const TopicLimits& t) {
  if (t.max_publishers == 0 || t.max_publishers > 64 || t.max_subscribers == 0 || t.max_subscribers > 4096)
    return fail(Errc::invalid_argument, "topic",
                fmt::format("{} publishers, {} subscribers (1 to 64, 1 to 4096)", t.max_publishers, t.max_subscribers));
  return {};
}

// A random token per publisher: a name of the user's namespace that another user could create
// first (/dev/shm is writable by all) is never one a publisher needs.
std::string data_name(std::string_view topic, std::uint64_t token) { return fmt::format("{}@{:016x}", topic, token); }

// Opens the topic file, creating it when absent (shared_file: as events do).
Result<std::shared_ptr<ZcTopic>> open_topic(std::string_view name, const TopicLimits& limits) {
  if (auto ok = check_topic_name(name); !ok) return std::unexpected(ok.error());
  if (auto ok = check_limits(limits); !ok) return std::unexpected(ok.error());
  auto t = std::make_shared<ZcTopic>();
  t->pubs = static_cast<std::uint32_t>(limits.max_publishers);
  t->subs = static_cast<std::uint32_t>(limits.max_subscribers);
  t->sub_slot_size = sizeof(L::SubSlot) + 8 * t->pubs;
  const std::uint64_t want = L::round_page(L::topic_bytes(t->pubs, t->subs));
  auto f = shared_file::open_or_create(
      name, want, L::kTopicMagic, "zero-copy topic", "topic open",
      [&](void* base) {
        auto& h = *static_cast<L::TopicHeader*>(base);
        h.version = L::kVersion;
        h.header_size = sizeof(L::TopicHeader);
        h.total_size = want;
        h.max_publishers = t->pubs;
        h.max_subscribers = t->subs;
        h.sub_slot_size = t->sub_slot_size;
      },
      [&](int fd, std::uint64_t file_size) -> Result<std::uint64_t> {
        std::byte raw[sizeof(L::TopicHeader)]{};
        if (::pread(fd, raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) return std::uint64_t{0};
        std::uint64_t magic = 0, total = 0, slot_size = 0;
        std::uint32_t version = 0, header_size = 0, pubs = 0, subs = 0;
        std::memcpy(&magic, raw + offsetof(L::TopicHeader, magic), 8);
        std::memcpy(&version, raw + offsetof(L::TopicHeader, version), 4);
        std::memcpy(&header_size, raw + offsetof(L::TopicHeader, header_size), 4);
        std::memcpy(&total, raw + offsetof(L::TopicHeader, total_size), 8);
        std::memcpy(&pubs, raw + offsetof(L::TopicHeader, max_publishers), 4);
        std::memcpy(&subs, raw + offsetof(L::TopicHeader, max_subscribers), 4);
        std::memcpy(&slot_size, raw + offsetof(L::TopicHeader, sub_slot_size), 8);
        if (magic != L::kTopicMagic) return magic;
        const std::string path = "/dev/shm" + os::SharedMemory::system_name(name);
        if (version != L::kVersion)
          return fail(Errc::type_mismatch, "topic open",
                      fmt::format("{}: layout version {}, this library reads {}", path, version, L::kVersion));
        if (header_size != sizeof(L::TopicHeader) || pubs == 0 || pubs > 64 || subs == 0 || subs > 4096 ||
            slot_size != sizeof(L::SubSlot) + 8ull * pubs || total != file_size || L::topic_bytes(pubs, subs) > file_size)
          return fail(Errc::protocol, "topic open",
                      fmt::format("{}: a header that does not add up ({} publishers, {} subscribers, {} bytes)", path,
                                  pubs, subs, file_size));
        // The topic's own limits, whatever this opener asked for.
        t->pubs = pubs;
        t->subs = subs;
        t->sub_slot_size = slot_size;
        return magic;
      });
  if (!f) return std::unexpected(f.error());
  t->name = std::string(name);
  t->path = std::move(f->path);
  t->fd = std::move(f->fd);
  t->base = f->base;
  t->size = f->size;
  return t;
}

// Claims the first slot whose lock nobody holds (free, or its holder died). nullopt: all held.
Result<std::optional<std::size_t>> claim(const ZcTopic& t, std::size_t n, off_t (ZcTopic::*lock)(std::size_t) const noexcept) {
  for (std::size_t i = 0; i < n; ++i) {
    auto got = lifetime::take_writer(t.fd.get(), (t.*lock)(i));
    if (!got) return std::unexpected(got.error());
    if (*got) return std::optional<std::size_t>(i);
  }
  return std::optional<std::size_t>();
}

}  // namespace detail

using namespace detail;

// ---- Loan / Sample ---------------------------------------------------------------------------

Loan::Loan(Loan&& o) noexcept { *this = std::move(o); }
Loan& Loan::operator=(Loan&& o) noexcept {
  if (this != &o) {
    this->~Loan();
    pub_ = std::exchange(o.pub_, nullptr);
    chunk_ = o.chunk_;
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}
Loan::~Loan() {
  if (pub_ && data_) {
    // Back to the pool: it never held a sample subscribers could still want.
    pub_->chunk(chunk_).seq.store(0, std::memory_order_release);
    pub_->loaned[chunk_] = false;
  }
  pub_ = nullptr;
  data_ = nullptr;
}

// ---- publisher -------------------------------------------------------------------------------

ZeroCopyPublisher::ZeroCopyPublisher() noexcept = default;
ZeroCopyPublisher::ZeroCopyPublisher(ZeroCopyPublisher&&) noexcept = default;
ZeroCopyPublisher& ZeroCopyPublisher::operator=(ZeroCopyPublisher&&) noexcept = default;
ZeroCopyPublisher::~ZeroCopyPublisher() = default;
void ZeroCopyPublisher::close() noexcept { s_.reset(); }

Result<ZeroCopyPublisher> ZeroCopyPublisher::create(std::string_view name, ZeroCopyPublisherOptions o) {
  if (o.max_payload == 0 || o.max_payload > kMaxPayload)
    return fail(Errc::invalid_argument, "publisher", fmt::format("max_payload {} (1 B to 1 GiB)", o.max_payload));
  if (o.chunks < 2 || o.chunks > kMaxChunks || o.history >= o.chunks)
    return fail(Errc::invalid_argument, "publisher",
                fmt::format("{} chunks with history {} (2 to {} chunks, history below chunks)", o.chunks, o.history, kMaxChunks));
  auto t = open_topic(name, o.topic);
  if (!t) return std::unexpected(t.error());
  auto topic = std::move(*t);
  auto slot = claim(*topic, topic->pubs, &ZcTopic::pub_lock);
  if (!slot) return std::unexpected(slot.error());
  if (!*slot)
    return fail(Errc::resource_exhausted, "publisher",
                fmt::format("{}: all {} publisher slots are held by live publishers", topic->path, topic->pubs));
  auto s = std::make_unique<detail::ZcPublisherState>();
  s->slot = **slot;
  s->chunks = o.chunks;
  s->stride = L::stride_for(o.max_payload);
  s->words = (topic->subs + 63) / 64;
  s->max_payload = o.max_payload;
  s->history = o.history;
  s->geo = L::data_geometry(s->chunks, s->stride, s->words);
  s->loaned.assign(s->chunks, false);
  s->block_timeout = o.block_timeout;
  // A new file of our own (a dead publisher's, on this slot, stays for subscribers that read it;
  // its last reader or the topic's last user removes it).
  std::uint64_t token = 0;
  Result<os::SharedMemory> c = fail(Errc::already_exists, "publisher");
  for (int tries = 0; tries < 8 && !c && c.error().code == Errc::already_exists; ++tries) {
    if (::getrandom(&token, sizeof token, 0) != static_cast<ssize_t>(sizeof token)) {
      lifetime::release_writer(topic->fd.get(), topic->pub_lock(s->slot));
      return fail_errno(errno, "getrandom");
    }
    c = os::SharedMemory::create(data_name(name, token), s->geo.total, 0600, -1);
  }
  if (!c) {
    lifetime::release_writer(topic->fd.get(), topic->pub_lock(s->slot));
    return std::unexpected(c.error());
  }
  s->path = "/dev/shm" + os::SharedMemory::system_name(data_name(name, token));
  s->fd = c->take_fd();
  (void)lifetime::hold(s->fd.get(), s->path);
  void* base = ::mmap(nullptr, s->geo.total, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd.get(), 0);
  if (base == MAP_FAILED) {
    const int e = errno;
    ::unlink(s->path.c_str());
    lifetime::release_writer(topic->fd.get(), topic->pub_lock(s->slot));
    return fail_errno(e, "mmap", s->path);
  }
  s->base = static_cast<std::byte*>(base);
  s->size = s->geo.total;
  auto& pslot = topic->pub(s->slot);
  const std::uint64_t gen = pslot.generation.load(std::memory_order_relaxed) + 1;
  auto& h = s->header();
  h.version = L::kVersion;
  h.header_size = sizeof(L::DataHeader);
  h.total_size = s->geo.total;
  h.chunks = s->chunks;
  h.stride = s->stride;
  h.max_payload = s->max_payload;
  h.history = s->history;
  h.words = s->words;
  h.ring_offset = s->geo.ring_offset;
  h.control_offset = s->geo.control_offset;
  h.chunks_offset = s->geo.chunks_offset;
  std::memcpy(h.reserved, &gen, sizeof gen);  // the generation this file belongs to
  h.magic.store(L::kDataMagic, std::memory_order_release);
  // Subscribers' cursors for this slot were a previous publisher's: 0 is "not looked at us yet".
  for (std::size_t j = 0; j < topic->subs; ++j) topic->cursor(j, s->slot).store(0, std::memory_order_relaxed);
  pslot.pid = ::getpid();
  pslot.token.store(token, std::memory_order_relaxed);
  pslot.generation.store(gen, std::memory_order_release);
  pslot.state.store(L::kActive, std::memory_order_release);
  s->topic = std::move(topic);
  s->topic->header().pub_change.fetch_add(1, std::memory_order_release);
  s->topic->wake();
  ZeroCopyPublisher p;
  p.s_ = std::move(s);
  return p;
}

Result<Loan> ZeroCopyPublisher::loan(std::size_t size) {
  auto& s = *s_;
  if (size > s.max_payload)
    return fail(Errc::too_large, "loan", fmt::format("{} bytes (this publisher's max_payload is {})", size, s.max_payload));
  // Blocking subscribers' least cursor: the last one computed, read again (once) when it would
  // keep a chunk, as it may have moved on since.
  std::uint64_t floor = 0;
  bool floor_fresh = false;
  if (s.topic->header().blocking.load(std::memory_order_acquire) != 0) {
    floor = s.floor_cache;
    if (floor == 0) {
      floor = s.blocking_floor(false);
      floor_fresh = true;
    }
  }
  for (int round = 0; round < 2; ++round) {
    for (std::uint64_t n = 0; n < s.chunks; ++n) {
      const std::uint64_t c = s.rr;
      s.rr = s.rr + 1 == s.chunks ? 0 : s.rr + 1;
      if (s.loaned[c]) continue;
      auto& ch = s.chunk(c);
      const std::uint64_t old = ch.seq.load(std::memory_order_relaxed);
      if (old != 0 && s.history != 0 && old + s.history > s.latest) continue;  // kept for late joiners
      if (old != 0 && floor != 0 && old >= floor && old <= s.latest) {  // queued for a blocking subscriber
        if (floor_fresh) continue;
        floor = s.blocking_floor(false);
        floor_fresh = true;
        if (floor != 0 && old >= floor) continue;
      }
      // Marked first, holders looked at second; a subscriber sets its bit first and looks at the
      // mark second: one of the two sees the other.
      ch.seq.store(L::kReusing, std::memory_order_seq_cst);
      if (s.any_holder(c)) {
        ch.seq.store(old, std::memory_order_seq_cst);
        continue;
      }
      s.loaned[c] = true;
      Loan l;
      l.pub_ = &s;
      l.chunk_ = c;
      l.data_ = s.base + s.geo.chunks_offset + c * s.stride + sizeof(L::ChunkHeader);
      l.size_ = size;
      return l;
    }
    if (round == 0) {
      // Nothing free: leave out blocking subscribers that died, and clear the bits of
      // subscribers that died holding chunks. A slot's lock taken here is free: no subscriber
      // can claim it while we clear.
      floor = s.blocking_floor(true);
      for (std::size_t j = 0; j < s.topic->subs; ++j) {
        auto mine = lifetime::take_writer(s.topic->fd.get(), s.topic->sub_lock(j));
        if (!mine || !*mine) continue;
        const std::uint64_t mask = std::uint64_t{1} << (j % 64);
        for (std::uint64_t c = 0; c < s.chunks; ++c) {
          auto& w = s.bits(c)[j / 64];
          if (w.load(std::memory_order_relaxed) & mask) w.fetch_and(~mask, std::memory_order_seq_cst);
        }
        lifetime::release_writer(s.topic->fd.get(), s.topic->sub_lock(j));
      }
    }
  }
  return fail(Errc::resource_exhausted, "loan",
              fmt::format("all {} chunks are loaned, kept as history or held by subscribers", s.chunks));
}

Result<std::uint64_t> ZeroCopyPublisher::publish(Loan&& loan) { return publish(std::move(loan), loan.size()); }

Result<std::uint64_t> ZeroCopyPublisher::publish(Loan&& loan, std::size_t size) {
  auto& s = *s_;
  if (loan.pub_ != &s || !loan.data_) return fail(Errc::invalid_argument, "publish", "not a loan of this publisher");
  const std::uint64_t c = loan.chunk_;
  const std::uint64_t seq = s.latest + 1;
  if (s.topic->header().blocking.load(std::memory_order_acquire) != 0 && !s.blocking_room(seq)) {
    const os::Deadline deadline = os::Deadline::after(s.block_timeout);
    for (unsigned spins = 0; !s.blocking_room(seq); ++spins) {
      if (deadline.expired())
        return fail(Errc::timeout, "publish", "a subscriber opened with Overflow::block stayed full (the loan is still yours)");
      if (spins < 64) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  auto& ch = s.chunk(c);
  ch.len.store(std::min(size, loan.size_), std::memory_order_relaxed);
  ch.seq.store(seq, std::memory_order_release);
  auto& e = s.ring(seq);
  e.seq.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  e.chunk.store(c, std::memory_order_relaxed);
  e.seq.store(seq, std::memory_order_release);
  s.header().latest.store(seq, std::memory_order_release);
  s.latest = seq;
  s.loaned[c] = false;
  loan.pub_ = nullptr;
  loan.data_ = nullptr;
  s.topic->wake();
  return seq;
}

Result<std::uint64_t> ZeroCopyPublisher::publish_copy(std::span<const std::byte> bytes) {
  auto l = loan(bytes.size());
  if (!l) return std::unexpected(l.error());
  if (!bytes.empty()) std::memcpy(l->data().data(), bytes.data(), bytes.size());
  return publish(std::move(*l));
}

std::uint64_t ZeroCopyPublisher::published() const noexcept { return s_ ? s_->latest : 0; }
std::size_t ZeroCopyPublisher::slot() const noexcept { return s_ ? s_->slot : 0; }
std::size_t ZeroCopyPublisher::max_payload() const noexcept { return s_ ? s_->max_payload : 0; }
std::size_t ZeroCopyPublisher::subscribers() const noexcept {
  if (!s_) return 0;
  std::size_t n = 0;
  for (std::size_t j = 0; j < s_->topic->subs; ++j)
    n += s_->topic->sub(j).state.load(std::memory_order_acquire) == L::kActive &&
         lifetime::writer_alive(s_->topic->fd.get(), s_->topic->sub_lock(j));
  return n;
}

}  // namespace ipcx::shm
