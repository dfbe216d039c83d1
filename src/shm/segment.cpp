// Segment: creating, opening and removing named segments, and the directory of named objects.
// The layout is docs/segment.md; the heap is allocator.cpp.
#include <ipcx/segment.hpp>

#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "os/pidfd.hpp"
#include "os/shm.hpp"
#include "shm/allocator.hpp"
#include "shm/internal.hpp"
#include "shm/lifetime.hpp"
#include "shm/layout.hpp"

namespace ipcx::shm {
namespace {

using layout::Entry;
using layout::Header;

// A directory lock held longer than this is taken to be stuck (a hostile process can hold it
// forever; a constructor should not take seconds).
constexpr Timeout kLockTimeout = std::chrono::seconds(10);

Header& header(void* base) noexcept { return *static_cast<Header*>(base); }
std::byte* bytes(void* base) noexcept { return static_cast<std::byte*>(base); }

Result<void> check_name(std::string_view name) {
  if (name.empty() || name.size() > Segment::kMaxName || name.find('\0') != std::string_view::npos)
    return fail(Errc::invalid_argument, "segment name",
                fmt::format("'{}': 1 to {} bytes, no NUL", name.substr(0, 64), Segment::kMaxName));
  return {};
}

Result<void> check_object_name(std::string_view name) {
  if (name.empty() || name.size() > Segment::kMaxObjectName || name.find('\0') != std::string_view::npos)
    return fail(Errc::invalid_argument, "segment object name",
                fmt::format("'{}': 1 to {} bytes, no NUL", name.substr(0, 80), Segment::kMaxObjectName));
  return {};
}

std::uint64_t load_state(const Entry& e) noexcept {
  return std::atomic_ref(const_cast<std::uint32_t&>(e.state)).load(std::memory_order_acquire);
}
void store_state(Entry& e, layout::EntryState s) noexcept {
  std::atomic_ref(e.state).store(s, std::memory_order_release);
}

void clear_entry(Entry& e) noexcept {
  store_state(e, layout::entry_free);
  std::memset(e.name, 0, sizeof e.name);
  e.offset = e.size = e.type_hash = 0;
  e.type_size = e.type_align = 0;
}

// The entry named `name` that is not free, or nullptr.
Entry* lookup(Header& h, std::string_view name) noexcept {
  for (auto& e : h.directory) {
    if (load_state(e) == layout::entry_free) continue;
    // One read of the shared bytes: a name changing under us cannot be scanned past its end.
    char copy[sizeof e.name];
    std::memcpy(copy, e.name, sizeof copy);
    const void* nul = std::memchr(copy, '\0', sizeof copy);
    if (nul == nullptr) continue;  // garbage: never matches
    if (name == std::string_view(copy, static_cast<const char*>(nul) - copy)) return &e;
  }
  return nullptr;
}

void recount(Header& h) noexcept {
  std::uint32_t n = 0;
  for (auto& e : h.directory) n += load_state(e) != layout::entry_free;
  h.object_count = n;
}

// After a holder of the directory lock died: it may have been inside a constructor (its entry
// says "constructing") or inside the allocator. Constructing entries are dropped; their memory
// goes back only when the heap checks out, else it is leaked. A heap that does not check out
// afterwards is marked broken: named objects stay reachable, allocation is refused.
void repair(Header& h, std::byte* base, std::uint64_t total) noexcept {
  bool sane = heap::check(base, h.heap, total).has_value();
  for (auto& e : h.directory) {
    auto s = load_state(e);
    if (s == layout::entry_free || s == layout::entry_ready) continue;
    if (s == layout::entry_constructing && sane) sane = heap::deallocate(base, h.heap, total, e.offset).has_value();
    clear_entry(e);
  }
  recount(h);
  if (!heap::check(base, h.heap, total)) h.heap.broken = 1;
}

}  // namespace

Segment::Segment(Segment&& o) noexcept
    : fd_(std::move(o.fd_)), base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)),
      name_(std::move(o.name_)), path_(std::move(o.path_)) {}

Segment& Segment::operator=(Segment&& o) noexcept {
  if (this != &o) {
    if (base_) ::munmap(base_, size_);
    fd_ = std::move(o.fd_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    name_ = std::move(o.name_);
    path_ = std::move(o.path_);
  }
  return *this;
}

Segment::~Segment() {
  if (base_) ::munmap(base_, size_);
}

std::uint64_t Segment::hash_type_name(const char* name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (; *name; ++name) {
    h ^= static_cast<unsigned char>(*name);
    h *= 0x100000001b3ull;
  }
  return h;
}

Result<Segment> Segment::create(std::string_view name, SegmentOptions options) {
  if (auto ok = check_name(name); !ok) return std::unexpected(ok.error());
  auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  constexpr std::size_t kMin = layout::kHeapBegin + 64;
  if (options.size < kMin)
    return fail(Errc::invalid_argument, "segment create",
                fmt::format("size {} is below the minimum {} (header {} bytes)", options.size, kMin, sizeof(Header)));
  if (options.size > (std::size_t{1} << 46))
    return fail(Errc::invalid_argument, "segment create", fmt::format("size {} is too large", options.size));
  std::size_t size = (options.size + page - 1) / page * page;
  long gid = -1;
  if (!options.group.empty()) {
    auto g = os::resolve_group(options.group);
    if (!g) return std::unexpected(g.error());
    gid = *g;
  }
  auto shm = os::SharedMemory::create(name, size, gid >= 0 ? 0660 : 0600, gid);
  if (!shm) return std::unexpected(shm.error());
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, shm->fd(), 0);
  if (base == MAP_FAILED) {
    int e = errno;
    (void)os::SharedMemory::remove(name);
    return fail_errno(e, "mmap", shm->name());
  }

  Segment s;
  s.path_ = "/dev/shm" + shm->name();
  s.fd_ = shm->take_fd();
  // Held while this object lives: `ipcx shm gc` leaves a segment someone holds.
  (void)lifetime::hold(s.fd_.get(), s.path_);
  s.base_ = base;
  s.size_ = size;
  s.name_ = std::string(name);

  // The file is zero-filled: only non-zero fields are written.
  Header& h = header(base);
  h.version = layout::kVersion;
  h.header_size = sizeof(Header);
  h.total_size = size;
  h.creator_pid = ::getpid();
  h.creator_start = os::process_start_time(::getpid()).value_or(0);
  std::memcpy(h.name, name.data(), name.size());
  ::new (&h.lock) Mutex(Mutex::Options{.spin = Spin::for_(std::chrono::microseconds(20))});
  heap::init(bytes(base), h.heap, layout::kHeapBegin, size);
  // Last: open() waits for this, so it never sees a half-written header.
  h.magic.store(layout::kMagic, std::memory_order_release);
  return s;
}

Result<Segment> Segment::open(std::string_view name, Timeout ready) {
  if (auto ok = check_name(name); !ok) return std::unexpected(ok.error());
  auto shm = os::SharedMemory::open(name, /*writable=*/true);
  if (!shm) return std::unexpected(shm.error());
  std::string path = "/dev/shm" + shm->name();
  // Held while the Segment lives (see create()); false: gc removed it as we opened it.
  auto held = lifetime::hold(shm->fd(), path);
  if (!held) return std::unexpected(held.error());
  if (!*held) return fail(Errc::not_found, "segment open", fmt::format("{} was removed while being opened", path));
  auto start = std::chrono::steady_clock::now();
  auto waited_enough = [&] { return ready != forever && std::chrono::steady_clock::now() - start >= ready; };

  // The creator sizes the file, then writes the header, then the magic: wait for all three.
  std::uint64_t file_size = 0;
  void* base = nullptr;
  for (;;) {
    struct stat st {};
    if (::fstat(shm->fd(), &st) != 0) return fail_errno(errno, "fstat", path);
    file_size = static_cast<std::uint64_t>(st.st_size);
    if (file_size != 0 && file_size < sizeof(Header))
      return fail(Errc::protocol, "segment open",
                  fmt::format("{}: {} bytes, smaller than a segment header: not an ipcx segment", path, file_size));
    if (file_size != 0) {
      base = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, shm->fd(), 0);
      if (base == MAP_FAILED) return fail_errno(errno, "mmap", path);
      auto magic = header(base).magic.load(std::memory_order_acquire);
      if (magic == layout::kMagic) break;
      ::munmap(base, file_size);
      base = nullptr;
      if (magic != 0)
        return fail(Errc::protocol, "segment open", fmt::format("{}: bad magic {:#018x}: not an ipcx segment", path, magic));
    }
    if (waited_enough())
      return fail(Errc::timeout, "segment open",
                  fmt::format("{} is not initialised after {} ms: its creator is still starting or died while "
                              "creating it (remove it with `ipcx shm rm {}`)",
                              path, std::chrono::duration_cast<std::chrono::milliseconds>(ready).count(), name));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  Segment s;
  s.base_ = base;
  s.size_ = file_size;
  s.name_ = std::string(name);
  s.path_ = path;
  s.fd_ = shm->take_fd();
  const Header& h = header(base);
  if (h.version != layout::kVersion)
    return fail(Errc::type_mismatch, "segment open",
                fmt::format("{}: layout version {}, this library reads version {}", path, h.version, layout::kVersion));
  if (h.header_size != sizeof(Header))
    return fail(Errc::protocol, "segment open",
                fmt::format("{}: header size {}, expected {}", path, h.header_size, sizeof(Header)));
  if (h.total_size != file_size)
    return fail(Errc::protocol, "segment open",
                fmt::format("{}: header says {} bytes, the file has {}", path, h.total_size, file_size));
  return s;
}

Result<Segment> Segment::open_or_create(std::string_view name, SegmentOptions options) {
  // Bounded: each round loses only to a process that created or removed the name meanwhile.
  for (int attempt = 0;; ++attempt) {
    auto c = create(name, options);
    if (c || c.error().code != Errc::already_exists) return c;
    auto o = open(name);
    if (o || o.error().code != Errc::not_found || attempt == 100) return o;
  }
}

Result<void> Segment::remove(std::string_view name) {
  if (auto ok = check_name(name); !ok) return std::unexpected(ok.error());
  return os::SharedMemory::remove(name);
}

// Every directory and heap access goes through here, so a dead holder is repaired by whoever
// comes next, whatever they came for.
namespace {
Result<Mutex::Guard> lock_directory(void* base, std::uint64_t total) {
  if (!base) return fail(Errc::invalid_argument, "segment", "not open");
  Header& h = header(base);
  auto g = h.lock.lock(kLockTimeout);
  if (!g) {
    if (g.error().code == Errc::timeout)
      g.error().detail = fmt::format("directory lock held for over {} s", kLockTimeout.count() / 1'000'000'000);
    return g;
  }
  if (g->owner_died()) {
    repair(h, bytes(base), total);
    g->mark_consistent();
  }
  return g;
}

Result<void*> checked_object(void* base, std::uint64_t total, const Entry& shared, std::uint64_t hash,
                             std::uint32_t size, std::uint32_t align, std::string_view name) {
  Entry e;  // checked and used from one copy: the shared entry may change between two reads
  std::memcpy(static_cast<void*>(&e), &shared, sizeof e);
  if (!internal::entry_in_bounds(e, total))
    return fail(Errc::protocol, "segment directory",
                fmt::format("object '{}': offset {} size {} outside the segment", name, e.offset, e.size));
  if (e.type_hash != hash || e.type_size != size || e.type_align != align)
    return fail(Errc::type_mismatch, "segment find",
                fmt::format("object '{}' has another type ({} bytes, align {}; asked for {} bytes, align {})", name,
                            e.type_size, e.type_align, size, align));
  return static_cast<void*>(bytes(base) + e.offset);
}
}  // namespace

Result<Segment::Placed> Segment::place_raw(std::string_view name, TypeTag tag, bool open_existing, Init init,
                                           void* ctx) {
  if (auto ok = check_object_name(name); !ok) return std::unexpected(ok.error());
  auto g = lock_directory(base_, size_);
  if (!g) return std::unexpected(g.error());
  Header& h = header(base_);
  if (Entry* e = lookup(h, name)) {
    if (load_state(*e) != layout::entry_ready)
      return fail(Errc::protocol, "segment directory", fmt::format("object '{}' is in state {}", name, e->state));
    if (!open_existing) return fail(Errc::already_exists, "segment construct", std::string(name));
    auto p = checked_object(base_, size_, *e, tag.hash, tag.size, tag.align, name);
    if (!p) return std::unexpected(p.error());
    return Placed{*p, false};
  }
  auto slot = std::find_if(std::begin(h.directory), std::end(h.directory),
                           [](const Entry& e) { return load_state(e) == layout::entry_free; });
  if (slot == std::end(h.directory))
    return fail(Errc::resource_exhausted, "segment construct",
                fmt::format("the directory is full ({} objects)", kMaxObjects));
  if (h.heap.broken)
    return fail(Errc::protocol, "segment construct", "the heap was damaged by a process that died; re-create the segment");
  auto off = heap::allocate(bytes(base_), h.heap, size_, tag.size, tag.align);
  if (!off) return std::unexpected(off.error());

  Entry& e = *slot;
  std::memset(e.name, 0, sizeof e.name);
  std::memcpy(e.name, name.data(), name.size());
  e.offset = *off;
  e.size = tag.size;
  e.type_hash = tag.hash;
  e.type_size = tag.size;
  e.type_align = tag.align;
  store_state(e, layout::entry_constructing);
  ++h.object_count;
  void* where = bytes(base_) + *off;
  try {
    init(where, ctx);
  } catch (...) {
    (void)heap::deallocate(bytes(base_), h.heap, size_, *off);
    clear_entry(e);
    recount(h);
    throw;
  }
  store_state(e, layout::entry_ready);
  return Placed{where, true};
}

Result<void*> Segment::find_raw(std::string_view name, TypeTag tag) const {
  if (auto ok = check_object_name(name); !ok) return std::unexpected(ok.error());
  auto g = lock_directory(base_, size_);
  if (!g) return std::unexpected(g.error());
  Header& h = header(base_);
  Entry* e = lookup(h, name);
  if (!e || load_state(*e) != layout::entry_ready) return fail(Errc::not_found, "segment find", std::string(name));
  return checked_object(base_, size_, *e, tag.hash, tag.size, tag.align, name);
}

Result<void> Segment::destroy_raw(std::string_view name, TypeTag tag, void (*destruct)(void*)) {
  if (auto ok = check_object_name(name); !ok) return std::unexpected(ok.error());
  auto g = lock_directory(base_, size_);
  if (!g) return std::unexpected(g.error());
  Header& h = header(base_);
  Entry* e = lookup(h, name);
  if (!e || load_state(*e) != layout::entry_ready) return fail(Errc::not_found, "segment destroy", std::string(name));
  auto p = checked_object(base_, size_, *e, tag.hash, tag.size, tag.align, name);
  if (!p) return std::unexpected(p.error());
  const std::uint64_t offset = static_cast<std::uint64_t>(static_cast<std::byte*>(*p) - bytes(base_));
  // Killed from here on, the entry is no longer "ready": the next locker's repair frees it
  // (never a name left pointing at memory handed out again).
  store_state(*e, layout::entry_constructing);
  destruct(*p);
  auto freed = heap::deallocate(bytes(base_), h.heap, size_, offset);
  clear_entry(*e);
  recount(h);
  return freed;
}

Result<std::vector<ObjectInfo>> Segment::objects() const {
  auto g = lock_directory(base_, size_);
  if (!g) return std::unexpected(g.error());
  std::vector<ObjectInfo> out;
  for (const auto& e : header(base_).directory) {
    if (load_state(e) != layout::entry_ready || !internal::entry_in_bounds(e, size_)) continue;
    auto n = internal::field_string(e.name, sizeof e.name);
    if (n) out.push_back({.name = *n, .offset = e.offset, .size = e.size});
  }
  return out;
}

Result<std::uint64_t> Segment::allocate(std::size_t size, std::size_t align) {
  auto g = lock_directory(base_, size_);
  if (!g) return std::unexpected(g.error());
  Header& h = header(base_);
  if (h.heap.broken)
    return fail(Errc::protocol, "segment allocate", "the heap was damaged by a process that died; re-create the segment");
  return heap::allocate(bytes(base_), h.heap, size_, size, align);
}

Result<void> Segment::deallocate(std::uint64_t offset) {
  auto g = lock_directory(base_, size_);
  if (!g) return std::unexpected(g.error());
  Header& h = header(base_);
  for (const auto& e : h.directory)
    if (load_state(e) != layout::entry_free && e.offset == offset)
      return fail(Errc::invalid_argument, "segment deallocate",
                  fmt::format("offset {} holds a named object: destroy() it", offset));
  return heap::deallocate(bytes(base_), h.heap, size_, offset);
}

Result<void*> Segment::at_raw(std::uint64_t offset, std::size_t size, std::size_t align) const {
  if (!base_) return fail(Errc::invalid_argument, "segment at", "not open");
  if (offset < layout::kHeapBegin || offset >= size_ || size > size_ - offset || offset % align != 0)
    return fail(Errc::invalid_argument, "segment at",
                fmt::format("{} bytes at offset {} (align {}) are not inside the heap of a {}-byte segment", size,
                            offset, align, size_));
  return static_cast<void*>(bytes(base_) + offset);
}

Result<std::uint64_t> Segment::offset_of(const void* p) const {
  auto* b = static_cast<const std::byte*>(p);
  if (!base_ || b < bytes(base_) || b >= bytes(base_) + size_)
    return fail(Errc::invalid_argument, "segment offset_of", "pointer outside the segment");
  return static_cast<std::uint64_t>(b - bytes(base_));
}

std::size_t Segment::free_bytes() const noexcept {
  if (!base_) return 0;
  auto n = std::atomic_ref(header(base_).heap.free_bytes).load(std::memory_order_relaxed);
  return static_cast<std::size_t>(std::min<std::uint64_t>(n, size_));
}

// ---- NamedSemaphore ----------------------------------------------------------------------

namespace {
constexpr std::string_view kSemaphoreObject = "semaphore";
}

Result<NamedSemaphore> NamedSemaphore::create(std::string_view name, Semaphore::Options options, std::string group) {
  auto seg = Segment::create(name, {.size = layout::kHeapBegin + 256, .group = std::move(group)});
  if (!seg) return std::unexpected(seg.error());
  auto sem = seg->construct<Semaphore>(kSemaphoreObject, options);
  if (!sem) {
    (void)Segment::remove(name);
    return std::unexpected(sem.error());
  }
  return NamedSemaphore(std::move(*seg), *sem);
}

Result<NamedSemaphore> NamedSemaphore::open(std::string_view name) {
  auto seg = Segment::open(name);
  if (!seg) return std::unexpected(seg.error());
  auto sem = seg->find<Semaphore>(kSemaphoreObject);
  if (!sem) {
    if (sem.error().code == Errc::not_found)
      return fail(Errc::type_mismatch, "named semaphore open", fmt::format("segment '{}' holds no semaphore", name));
    return std::unexpected(sem.error());
  }
  return NamedSemaphore(std::move(*seg), *sem);
}

}  // namespace ipcx::shm
