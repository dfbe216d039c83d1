// Zero-copy publish/subscribe: per-publisher chunk pools with per-chunk holder bitmaps (one bit
// per subscriber slot), a ring naming the chunk of each sequence number, slots claimed by file
// locks. docs/shm.md, "Zero-copy publish/subscribe".
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
#include "shm/zerocopy_layout.hpp"
#include "sync/spin.hpp"

namespace ipcx::shm {

namespace L = zc_layout;

namespace detail {

// The topic file, mapped read-write, and this process's description of it (whose file locks
// are its slot claims). Shared by a publisher or subscriber and every Sample it handed out.
struct ZcTopic {
  Fd fd;
  void* base = nullptr;
  std::size_t size = 0;
  std::uint32_t pubs = 0, subs = 0;
  std::uint64_t sub_slot_size = 0;
  std::string name, path;
  bool joined = false;  // false while opening: a refused file is closed, never removed
  ~ZcTopic() {
    if (base) ::munmap(base, size);
    if (fd && joined) (void)lifetime::leave(std::move(fd), path, &ZcTopic::remove_data_files, this);
  }
  // The topic's last user: publishers' data files nobody holds go with it (a closed publisher
  // leaves its file for subscribers that had not looked at it yet).
  static void remove_data_files(void* self) noexcept;
  L::TopicHeader& header() const noexcept { return *static_cast<L::TopicHeader*>(base); }
  L::PubSlot& pub(std::size_t i) const noexcept {
    return *reinterpret_cast<L::PubSlot*>(static_cast<std::byte*>(base) + sizeof(L::TopicHeader) + i * sizeof(L::PubSlot));
  }
  L::SubSlot& sub(std::size_t j) const noexcept {
    return *reinterpret_cast<L::SubSlot*>(static_cast<std::byte*>(base) + sizeof(L::TopicHeader) +
                                          pubs * sizeof(L::PubSlot) + j * sub_slot_size);
  }
  std::atomic<std::uint64_t>& cursor(std::size_t j, std::size_t i) const noexcept {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(reinterpret_cast<std::byte*>(&sub(j)) + sizeof(L::SubSlot))[i];
  }
  off_t pub_lock(std::size_t i) const noexcept { return static_cast<off_t>(1 + i); }
  off_t sub_lock(std::size_t j) const noexcept { return static_cast<off_t>(1 + pubs + j); }
  void wake() const noexcept {
    auto& h = header();
    h.wake.fetch_add(1, std::memory_order_seq_cst);
    if (h.sleepers.load(std::memory_order_seq_cst) != 0) (void)os::futex_wake(h.wake, INT_MAX);
  }
};

void ZcTopic::remove_data_files(void* self) noexcept {
  auto* t = static_cast<ZcTopic*>(self);
  // Files <topic>@... of this user that are publishers' data files and that nobody holds: a file
  // of another owner, a link or anything else planted under such a name is left alone.
  const std::string file = t->path.substr(t->path.rfind('/') + 1) + "@";
  DIR* dir = ::opendir("/dev/shm");
  if (!dir) return;
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
}

// A publisher's data file as one subscriber maps it.
struct ZcSource {
  std::shared_ptr<ZcTopic> topic;  // keeps this subscriber's slot claimed while a Sample lives
  std::shared_ptr<std::atomic<std::size_t>> held;
  Fd fd;
  std::string path;
  const std::byte* ro = nullptr;  // the whole file, read-only
  std::size_t size = 0;
  std::atomic<std::uint64_t>* holders = nullptr;  // the control region, read-write
  std::size_t control_size = 0;
  std::uint64_t chunks = 0, stride = 0, words = 0, max_payload = 0, history = 0, chunks_offset = 0;
  std::size_t slot = 0;            // the publisher's slot
  std::uint64_t generation = 0;
  std::uint64_t next = 1;          // the next sequence to take
  std::uint64_t seen_latest = 0;   // the publisher's `latest` when last read: it never goes back
  std::size_t word = 0;            // this subscriber's bit
  std::uint64_t mask = 0;
  bool broken = false;
  bool joined = false;  // false while mapping: a refused file is closed, never removed

  ~ZcSource() {
    if (holders) ::munmap(holders, control_size);
    if (ro) ::munmap(const_cast<std::byte*>(ro), size);
    if (fd && joined) (void)lifetime::leave(std::move(fd), path);
  }
  const L::DataHeader& header() const noexcept { return *reinterpret_cast<const L::DataHeader*>(ro); }
  const L::RingEntry& ring(std::uint64_t seq) const noexcept {
    return reinterpret_cast<const L::RingEntry*>(ro + sizeof(L::DataHeader))[seq % chunks];
  }
  const L::ChunkHeader& chunk(std::uint64_t c) const noexcept {
    return *reinterpret_cast<const L::ChunkHeader*>(ro + chunks_offset + c * stride);
  }
  std::atomic<std::uint64_t>& bits(std::uint64_t c) const noexcept { return holders[c * words + word]; }
  void release(std::uint64_t c) const noexcept {
    bits(c).fetch_and(~mask, std::memory_order_release);
    held->fetch_sub(1, std::memory_order_relaxed);
  }
};

struct ZcPublisherState {
  std::shared_ptr<ZcTopic> topic;
  Fd fd;
  std::string path;
  std::byte* base = nullptr;
  std::size_t size = 0;
  std::size_t slot = 0;
  std::uint64_t chunks = 0, stride = 0, words = 0, max_payload = 0, history = 0;
  L::DataGeometry geo{};
  std::uint64_t latest = 0;
  std::uint64_t rr = 0;  // where the next loan starts looking
  std::vector<bool> loaned;
  Timeout block_timeout{};

  // The blocking subscribers' least cursor: samples from it on are still queued for one of
  // them. 0 when there is none. `check_alive`: leave out subscribers whose process died (a
  // system call each: only when the pool ran dry).
  mutable std::uint64_t floor_cache = 0;  // the last one computed (it only grows, so a stale one keeps more)
  std::uint64_t blocking_floor(bool check_alive) const noexcept {
    if (topic->header().blocking.load(std::memory_order_acquire) == 0) return floor_cache = 0;
    std::uint64_t floor = 0;
    for (std::size_t j = 0; j < topic->subs; ++j) {
      auto& sl = topic->sub(j);
      if (sl.state.load(std::memory_order_acquire) != L::kActive || !(sl.flags.load(std::memory_order_acquire) & L::kBlock))
        continue;
      std::uint64_t c = topic->cursor(j, slot).load(std::memory_order_acquire);
      if (c == 0) c = 1;  // it has not looked at us yet: everything we published is for it
      if (floor != 0 && c >= floor) continue;
      if (check_alive && !lifetime::writer_alive(topic->fd.get(), topic->sub_lock(j))) continue;
      floor = c;
    }
    return floor_cache = floor;
  }
  // The room a blocking subscriber has before seq: false when one is full. Cursors only grow
  // and a subscriber that comes later starts above the latest sample, so the least bound seen
  // stays a safe one until it is reached: the slots are looked at again only then.
  mutable std::uint64_t room_until = 0;  // every blocking subscriber has room below it
  bool blocking_room(std::uint64_t seq) const noexcept {
    if (seq < room_until) return true;
    std::uint64_t until = ~std::uint64_t{0};
    for (std::size_t j = 0; j < topic->subs; ++j) {
      auto& sl = topic->sub(j);
      if (sl.state.load(std::memory_order_acquire) != L::kActive || !(sl.flags.load(std::memory_order_acquire) & L::kBlock))
        continue;
      std::uint64_t c = topic->cursor(j, slot).load(std::memory_order_acquire);
      if (c == 0) c = 1;
      const std::uint64_t q = std::max<std::uint64_t>(1, std::min<std::uint64_t>(sl.queue.load(std::memory_order_relaxed), chunks - history - 1));
      if (seq >= c + q) {
        if (lifetime::writer_alive(topic->fd.get(), topic->sub_lock(j))) {
          room_until = 0;
          return false;
        }
        continue;  // died full: it blocks no one
      }
      until = std::min(until, c + q);
    }
    room_until = until;
    return true;
  }

  ~ZcPublisherState() {
    if (base) ::munmap(base, size);
    // Subscribers that have not mapped our file yet still have our samples to read: the file
    // stays for them (the last to read it, or the topic's last user, removes it).
    bool leave_for_them = false;
    if (topic)
      for (std::size_t j = 0; j < topic->subs && !leave_for_them; ++j)
        leave_for_them = lifetime::writer_alive(topic->fd.get(), topic->sub_lock(j));
    if (fd) {
      if (leave_for_them) fd.reset();
      else (void)lifetime::leave(std::move(fd), path);
    }
    if (topic) {
      topic->pub(slot).state.store(leave_for_them ? L::kClosed : L::kFree, std::memory_order_release);
      topic->header().pub_change.fetch_add(1, std::memory_order_release);
      topic->wake();
      lifetime::release_writer(topic->fd.get(), topic->pub_lock(slot));
    }
  }
  L::DataHeader& header() const noexcept { return *reinterpret_cast<L::DataHeader*>(base); }
  L::RingEntry& ring(std::uint64_t seq) const noexcept {
    return reinterpret_cast<L::RingEntry*>(base + geo.ring_offset)[seq % chunks];
  }
  L::ChunkHeader& chunk(std::uint64_t c) const noexcept {
    return *reinterpret_cast<L::ChunkHeader*>(base + geo.chunks_offset + c * stride);
  }
  std::atomic<std::uint64_t>* bits(std::uint64_t c) const noexcept {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(base + geo.control_offset) + c * words;
  }
  bool any_holder(std::uint64_t c) const noexcept {
    auto* b = bits(c);
    for (std::uint64_t w = 0; w < words; ++w)
      if (b[w].load(std::memory_order_seq_cst) != 0) return true;
    return false;
  }
};

struct ZcSubscriberState {
  std::shared_ptr<ZcTopic> topic;
  std::shared_ptr<std::atomic<std::size_t>> held = std::make_shared<std::atomic<std::size_t>>(0);
  std::size_t slot = 0;
  ZeroCopySubscriberOptions options;
  std::vector<std::shared_ptr<ZcSource>> sources;  // by publisher slot (null: none mapped)
  std::vector<std::uint64_t> finished;             // by slot: the generation read to its end
  std::uint32_t seen_change = ~0u;
  std::size_t rr = 0;
  std::uint64_t dropped = 0;
};

}  // namespace detail

namespace {

using detail::ZcSource;
using detail::ZcTopic;

constexpr std::size_t kMaxName = 190;
constexpr auto kSlice = std::chrono::milliseconds(20);
constexpr std::uint64_t kMaxPayload = std::uint64_t{1} << 30;
constexpr std::uint64_t kMaxChunks = std::uint64_t{1} << 20;
// The most a publisher's `latest` may move between two looks of a subscriber: 2^40 publications
// (a year at 30 million a second).
constexpr std::uint64_t kMaxLeap = std::uint64_t{1} << 40;

Result<void> check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxName || name.find('\0') != std::string_view::npos ||
      name.find('@') != std::string_view::npos)
    return fail(Errc::invalid_argument, "topic name",
                fmt::format("'{}': 1 to {} bytes, no NUL, no '@'", name.substr(0, 64), kMaxName));
  return {};
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

// Opens the topic file, creating it when absent (its creator claims byte 0 while it writes the
// header, as events do).
Result<std::shared_ptr<ZcTopic>> open_topic(std::string_view name, const TopicLimits& limits) {
  if (auto ok = check_name(name); !ok) return std::unexpected(ok.error());
  if (auto ok = check_limits(limits); !ok) return std::unexpected(ok.error());
  const std::string path = "/dev/shm" + os::SharedMemory::system_name(name);
  const std::uint64_t want = L::round_page(L::topic_bytes(limits.max_publishers, limits.max_subscribers));
  const auto start = std::chrono::steady_clock::now();
  for (int attempt = 0; attempt < 1000; ++attempt) {
    auto t = std::make_shared<ZcTopic>();
    t->name = std::string(name);
    t->path = path;
    bool fresh = false;
    if (auto c = os::SharedMemory::create(name, want, 0600, -1)) {
      t->fd = c->take_fd();
      fresh = true;
      (void)lifetime::take_writer(t->fd.get());
    } else if (c.error().code != Errc::already_exists) {
      return std::unexpected(c.error());
    } else {
      auto o = os::SharedMemory::open(name, true);
      if (!o) {
        if (o.error().code == Errc::not_found) continue;
        return std::unexpected(o.error());
      }
      t->fd = o->take_fd();
    }
    auto held = lifetime::hold(t->fd.get(), path);
    if (!held) return std::unexpected(held.error());
    if (!*held) continue;
    if (fresh) {
      void* base = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd.get(), 0);
      if (base == MAP_FAILED) {
        const int e = errno;
        ::unlink(path.c_str());
        return fail_errno(e, "mmap", path);
      }
      t->base = base;
      t->size = want;
      t->pubs = static_cast<std::uint32_t>(limits.max_publishers);
      t->subs = static_cast<std::uint32_t>(limits.max_subscribers);
      t->sub_slot_size = sizeof(L::SubSlot) + 8 * t->pubs;
      auto& h = t->header();
      h.version = L::kVersion;
      h.header_size = sizeof(L::TopicHeader);
      h.total_size = want;
      h.max_publishers = t->pubs;
      h.max_subscribers = t->subs;
      h.sub_slot_size = t->sub_slot_size;
      h.magic.store(L::kTopicMagic, std::memory_order_release);
      lifetime::release_writer(t->fd.get());
      t->joined = true;
      return t;
    }
    struct stat st {};
    if (::fstat(t->fd.get(), &st) != 0) return fail_errno(errno, "fstat", path);
    std::byte raw[sizeof(L::TopicHeader)]{};
    const bool whole = ::pread(t->fd.get(), raw, sizeof raw, 0) == static_cast<ssize_t>(sizeof raw);
    std::uint64_t magic = 0, total = 0, slot_size = 0;
    std::uint32_t version = 0, header_size = 0, pubs = 0, subs = 0;
    std::memcpy(&magic, raw + offsetof(L::TopicHeader, magic), 8);
    std::memcpy(&version, raw + offsetof(L::TopicHeader, version), 4);
    std::memcpy(&header_size, raw + offsetof(L::TopicHeader, header_size), 4);
    std::memcpy(&total, raw + offsetof(L::TopicHeader, total_size), 8);
    std::memcpy(&pubs, raw + offsetof(L::TopicHeader, max_publishers), 4);
    std::memcpy(&subs, raw + offsetof(L::TopicHeader, max_subscribers), 4);
    std::memcpy(&slot_size, raw + offsetof(L::TopicHeader, sub_slot_size), 8);
    if (!whole || magic == 0) {
      // Being created (its creator holds byte 0), or its creator died: then replaced, but only
      // when no other process holds the file.
      const bool replaced = !lifetime::writer_alive(t->fd.get()) && lifetime::remove_if_unused(t->fd.get(), path);
      t.reset();
      if (replaced) continue;
      if (std::chrono::steady_clock::now() - start > std::chrono::seconds(1))
        return fail(Errc::timeout, "topic open",
                    fmt::format("{}: not an initialised topic after 1 s (its creator is stuck, or it is not a topic)", path));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (magic != L::kTopicMagic)
      return fail(Errc::protocol, "topic open", fmt::format("{}: not a zero-copy topic (magic {:#018x})", path, magic));
    if (version != L::kVersion)
      return fail(Errc::type_mismatch, "topic open", fmt::format("{}: layout version {}, this library reads {}", path, version, L::kVersion));
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    if (header_size != sizeof(L::TopicHeader) || pubs == 0 || pubs > 64 || subs == 0 || subs > 4096 ||
        slot_size != sizeof(L::SubSlot) + 8ull * pubs || total != file_size || L::topic_bytes(pubs, subs) > file_size)
      return fail(Errc::protocol, "topic open",
                  fmt::format("{}: a header that does not add up ({} publishers, {} subscribers, {} bytes)", path, pubs,
                              subs, file_size));
    void* base = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd.get(), 0);
    if (base == MAP_FAILED) return fail_errno(errno, "mmap", path);
    t->base = base;
    t->size = file_size;
    t->pubs = pubs;
    t->subs = subs;
    t->sub_slot_size = slot_size;
    t->joined = true;
    return t;
  }
  return fail(Errc::resource_exhausted, "topic open", fmt::format("{}: created and removed by others 1000 times", path));
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

}  // namespace

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
