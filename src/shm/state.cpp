// Shared state: one writer, lock-free readers, four sequence-numbered slots in a /dev/shm file.
#include <ipcx/state.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "os/futex.hpp"
#include "os/shm.hpp"
#include "os/sys.hpp"
#include "shm/lifetime.hpp"
#include "shm/shared_file.hpp"
#include "shm/state_layout.hpp"

namespace ipcx::shm {
namespace {

namespace L = state_layout;
using L::Header;
using L::Slot;

constexpr std::size_t kMaxName = 200;
constexpr auto kWatchSlice = std::chrono::milliseconds(20);

Result<void> check_name(std::string_view name) { return shared_file::check_name(name, kMaxName, "state name"); }

std::size_t page_round(std::size_t n) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}

Slot& slot_at(void* base, std::uint64_t slot_size, std::uint64_t version) noexcept {
  return *reinterpret_cast<Slot*>(static_cast<std::byte*>(base) + sizeof(Header) + (version % L::kSlots) * slot_size);
}
const Slot& slot_at(const void* base, std::uint64_t slot_size, std::uint64_t version) noexcept {
  return slot_at(const_cast<void*>(base), slot_size, version);
}
std::byte* slot_data(Slot& s) noexcept { return reinterpret_cast<std::byte*>(&s) + L::kSlotHeader; }

// The value is copied a word at a time with relaxed atomic accesses: the writer may be
// rewriting the slot while a reader copies it (the reader then throws the copy away), and
// that must be a race on atomics, not undefined behaviour.
void copy_in(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, src + i, 8);
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(dst + i)).store(w, std::memory_order_relaxed);
  }
  for (; i < n; ++i)
    std::atomic_ref<unsigned char>(*reinterpret_cast<unsigned char*>(dst + i))
        .store(static_cast<unsigned char>(src[i]), std::memory_order_relaxed);
}
void copy_out(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  auto* s = const_cast<std::byte*>(src);  // atomic_ref needs a non-const object; only loads here
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t w =
        std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(s + i)).load(std::memory_order_relaxed);
    std::memcpy(dst + i, &w, 8);
  }
  for (; i < n; ++i)
    dst[i] = static_cast<std::byte>(
        std::atomic_ref<unsigned char>(*reinterpret_cast<unsigned char*>(s + i)).load(std::memory_order_relaxed));
}

// A private copy of a header's fields, read with pread (a file truncated meanwhile gives a
// short read, not SIGBUS): what another process wrote is checked on this copy, once.
struct Fields {
  std::uint64_t magic = 0, total_size = 0, type_hash = 0, capacity = 0, slot_size = 0;
  std::uint32_t version = 0, header_size = 0, slots = 0;
};
std::optional<Fields> read_header(int fd) {
  std::byte raw[sizeof(Header)];
  if (::pread(fd, raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) return std::nullopt;
  Fields f;
  auto get = [&](auto& field, std::size_t off) { std::memcpy(&field, raw + off, sizeof field); };
  get(f.magic, offsetof(Header, magic));
  get(f.version, offsetof(Header, version));
  get(f.header_size, offsetof(Header, header_size));
  get(f.total_size, offsetof(Header, total_size));
  get(f.type_hash, offsetof(Header, type_hash));
  get(f.capacity, offsetof(Header, capacity));
  get(f.slots, offsetof(Header, slots));
  get(f.slot_size, offsetof(Header, slot_size));
  return f;
}

// A file someone else made, checked against what this build writes.
Result<void> check_header(const Fields& h, std::uint64_t file_size, const std::string& path) {
  if (h.version != L::kVersion)
    return fail(Errc::type_mismatch, "state open", fmt::format("{}: layout version {}, this library reads {}", path, h.version, L::kVersion));
  if (h.header_size != sizeof(Header) || h.slots != L::kSlots || h.capacity == 0 || h.capacity > kMaxStateCapacity ||
      h.slot_size != L::slot_size(h.capacity) || h.total_size != file_size || L::file_bytes(h.capacity) > file_size)
    return fail(Errc::protocol, "state open",
                fmt::format("{}: a header that does not add up (capacity {}, {} slots of {} bytes, {} bytes in a file of {})",
                            path, h.capacity, h.slots, h.slot_size, h.total_size, file_size));
  return {};
}

}  // namespace

namespace detail {
std::uint64_t state_type_hash(const char* type_name, std::size_t size) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (const char* p = type_name; *p; ++p) h = (h ^ static_cast<unsigned char>(*p)) * 0x100000001b3ull;
  h = (h ^ size) * 0x100000001b3ull;
  return h == 0 ? 1 : h;  // 0 means bytes
}
}  // namespace detail

// ---- writer ----------------------------------------------------------------------------------

StateWriter::StateWriter(StateWriter&& o) noexcept { *this = std::move(o); }
StateWriter& StateWriter::operator=(StateWriter&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    version_ = std::exchange(o.version_, 0);
    name_ = std::move(o.name_);
    path_ = std::move(o.path_);
  }
  return *this;
}
StateWriter::~StateWriter() { close(); }

void StateWriter::close() noexcept {
  if (base_) ::munmap(base_, size_);
  base_ = nullptr;
  if (fd_) (void)lifetime::leave(std::move(fd_), path_);
}

Result<StateWriter> StateWriter::create(std::string_view name, StateOptions options) {
  if (auto ok = check_name(name); !ok) return std::unexpected(ok.error());
  if (options.capacity == 0 || options.capacity > kMaxStateCapacity)
    return fail(Errc::invalid_argument, "state create",
                fmt::format("capacity {} (1 to {} bytes)", options.capacity, kMaxStateCapacity));
  const std::size_t size = page_round(L::file_bytes(options.capacity));
  const std::string path = "/dev/shm" + os::SharedMemory::system_name(name);
  auto gid = shared_file::group_id(options.group);
  if (!gid) return std::unexpected(gid.error());

  StateWriter w;
  w.name_ = std::string(name);
  w.path_ = path;
  w.capacity_ = options.capacity;
  w.size_ = size;
  // Bounded: each round loses only to a process that created or removed the name meanwhile.
  for (int attempt = 0; attempt < 100; ++attempt) {
    bool fresh = true;
    Fd fd;
    if (auto c = os::SharedMemory::create(name, size, *gid >= 0 ? 0640 : 0600, *gid)) {
      fd = c->take_fd();
      // Claimed at once: another writer finds it taken, a reader waits for the magic.
      (void)lifetime::take_writer(fd.get());
    } else if (c.error().code != Errc::already_exists) {
      return std::unexpected(c.error());
    } else {
      auto o = os::SharedMemory::open(name, /*writable=*/true);
      if (!o) {
        if (o.error().code == Errc::not_found) continue;
        return std::unexpected(o.error());
      }
      fd = o->take_fd();
      fresh = false;
    }
    auto held = lifetime::hold(fd.get(), path);
    if (!held) return std::unexpected(held.error());
    if (!*held) continue;  // removed by its last user meanwhile
    auto mine = lifetime::take_writer(fd.get());
    if (!mine) return std::unexpected(mine.error());
    if (!*mine) {
      fd.reset();  // refused: closing drops our hold, never the name
      return fail(Errc::already_exists, "state create", fmt::format("{}: another process writes this state", path));
    }
    if (!fresh) {
      // Its writer is dead (or died creating it). Take it over when it is a state of this shape.
      auto h = read_header(fd.get());
      struct stat st {};
      if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, "fstat", path);
      const auto file_size = static_cast<std::uint64_t>(st.st_size);
      const std::uint64_t magic = h ? h->magic : 0;
      if (magic != L::kMagic && magic != 0) {
        fd.reset();
        return fail(Errc::already_exists, "state create", fmt::format("{}: the name holds another kind of object", path));
      }
      if (magic == 0) {
        // Never finished (its creator died: we hold the writer's claim now). Replaced only when
        // no other process holds it: else it is not ours to judge.
        const bool removed = lifetime::remove_if_unused(fd.get(), path);
        fd.reset();
        if (removed) continue;
        return fail(Errc::already_exists, "state create",
                    fmt::format("{}: a file that is not an initialised state, held by another process", path));
      }
      const bool same = magic == L::kMagic && check_header(*h, file_size, path).has_value() && h->capacity == options.capacity &&
                        h->type_hash == options.type_hash && file_size == size;
      if (!same) {
        // A dead writer's state of another shape: a new file (readers of the old one keep it).
        ::unlink(path.c_str());
        fd.reset();
        continue;
      }
      void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
      if (base == MAP_FAILED) return fail_errno(errno, "mmap", path);
      w.base_ = base;
      w.fd_ = std::move(fd);
      auto& hdr = *static_cast<Header*>(base);
      w.version_ = hdr.latest.load(std::memory_order_acquire);
      hdr.writer_pid = ::getpid();
      return w;
    }
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED) {
      const int e = errno;
      ::unlink(path.c_str());
      return fail_errno(e, "mmap", path);
    }
    w.base_ = base;
    w.fd_ = std::move(fd);
    // The file is zero-filled: only non-zero fields are written, the magic last.
    auto& hdr = *static_cast<Header*>(base);
    hdr.version = L::kVersion;
    hdr.header_size = sizeof(Header);
    hdr.total_size = size;
    hdr.type_hash = options.type_hash;
    hdr.capacity = options.capacity;
    hdr.slots = L::kSlots;
    hdr.writer_pid = ::getpid();
    hdr.slot_size = L::slot_size(options.capacity);
    hdr.magic.store(L::kMagic, std::memory_order_release);
    return w;
  }
  return fail(Errc::resource_exhausted, "state create", fmt::format("{}: created and removed by others 100 times in a row", path));
}

Result<void> StateWriter::store(std::span<const std::byte> value) {
  if (!base_) return fail(Errc::closed, "state store", "the writer is closed");
  if (value.size() > capacity_)
    return fail(Errc::too_large, "state store", fmt::format("{} bytes (the capacity is {})", value.size(), capacity_));
  auto& h = *static_cast<Header*>(base_);
  const std::uint64_t v = version_ + 1;
  Slot& s = slot_at(base_, L::slot_size(capacity_), v);
  s.seq.store(2 * v + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  s.length.store(value.size(), std::memory_order_relaxed);
  copy_in(slot_data(s), value.data(), value.size());
  s.seq.store(2 * v + 2, std::memory_order_release);
  h.latest.store(v, std::memory_order_release);
  h.change.fetch_add(1, std::memory_order_release);
  (void)os::futex_wake(h.change, INT_MAX);
  version_ = v;
  return {};
}

// ---- reader ----------------------------------------------------------------------------------

StateReader::StateReader(StateReader&& o) noexcept { *this = std::move(o); }
StateReader& StateReader::operator=(StateReader&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    slot_size_ = std::exchange(o.slot_size_, 0);
    name_ = std::move(o.name_);
    path_ = std::move(o.path_);
  }
  return *this;
}
StateReader::~StateReader() { close(); }

void StateReader::close() noexcept {
  if (base_) ::munmap(const_cast<void*>(base_), size_);
  base_ = nullptr;
  if (fd_) (void)lifetime::leave(std::move(fd_), path_);
}

Result<StateReader> StateReader::open(std::string_view name, Timeout ready, std::uint64_t expected_type,
                                      std::size_t expected_capacity) {
  if (auto ok = check_name(name); !ok) return std::unexpected(ok.error());
  const std::string path = "/dev/shm" + os::SharedMemory::system_name(name);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    auto o = os::SharedMemory::open(name, /*writable=*/false);
    if (!o) return std::unexpected(o.error());
    Fd fd = o->take_fd();
    auto held = lifetime::hold(fd.get(), path);
    if (!held) return std::unexpected(held.error());
    if (!*held) continue;  // removed by its last user meanwhile: look again
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, "fstat", path);
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    auto h = read_header(fd.get());
    const std::uint64_t magic = h ? h->magic : 0;
    if (magic == 0) {
      // Being created: its creator holds the writer's lock until it has written the magic.
      // Being created (its writer claims byte 0 just after creating the file: a look may come
      // in between), or never finished: waited for up to `ready`, then refused.
      const bool creating = lifetime::writer_alive(fd.get());
      fd.reset();  // refused: never the name
      if (ready != forever && std::chrono::steady_clock::now() - start >= ready) {
        if (!creating)
          return fail(Errc::protocol, "state open",
                      fmt::format("{}: not an initialised state and nobody is creating it ({} bytes)", path, file_size));
        return fail(Errc::timeout, "state open", fmt::format("{}: not initialised in time", path));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (magic != L::kMagic) {
      fd.reset();  // refused: never the name
      return fail(Errc::protocol, "state open", fmt::format("{}: not a shared state (magic {:#018x})", path, magic));
    }
    if (auto ok = check_header(*h, file_size, path); !ok) {
      fd.reset();  // refused: never the name
      return std::unexpected(ok.error());
    }
    if (expected_type != 0 && (h->type_hash != expected_type || h->capacity != expected_capacity)) {
      fd.reset();  // refused: never the name
      return fail(Errc::type_mismatch, "state open",
                  fmt::format("{}: a state of another type (capacity {}, this type is {} bytes)", path, h->capacity,
                              expected_capacity));
    }
    // Read-only: a reader cannot change what others read, even by mistake.
    void* base = ::mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED) {
      const int e = errno;
      fd.reset();  // refused: never the name
      return fail_errno(e, "mmap", path);
    }
    StateReader r;
    r.fd_ = std::move(fd);
    r.base_ = base;
    r.size_ = file_size;
    r.capacity_ = h->capacity;
    r.slot_size_ = h->slot_size;
    r.name_ = std::string(name);
    r.path_ = path;
    return r;
  }
}

std::uint64_t StateReader::version() const noexcept {
  if (!base_) return 0;
  return static_cast<const Header*>(base_)->latest.load(std::memory_order_acquire);
}

bool StateReader::writer_alive() const noexcept { return fd_ && lifetime::writer_alive(fd_.get()); }

Result<std::uint64_t> StateReader::load(std::vector<std::byte>& out, Timeout timeout) const {
  if (!base_) return fail(Errc::closed, "state load", "the reader is closed");
  const auto& h = *static_cast<const Header*>(base_);
  const os::Deadline deadline = os::Deadline::after(timeout);
  for (unsigned tries = 0;; ++tries) {
    const std::uint64_t v = h.latest.load(std::memory_order_acquire);
    if (v == 0) return fail(Errc::not_found, "state load", fmt::format("{}: nothing stored yet", path_));
    const Slot& s = slot_at(base_, slot_size_, v);
    const std::uint64_t s1 = s.seq.load(std::memory_order_acquire);
    if (s1 == 2 * v + 2) {
      const std::uint64_t len = s.length.load(std::memory_order_relaxed);
      if (len <= capacity_) {
        out.resize(len);
        copy_out(out.data(), slot_data(const_cast<Slot&>(s)), len);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (s.seq.load(std::memory_order_relaxed) == s1) {
        if (len > capacity_)
          return fail(Errc::protocol, "state load",
                      fmt::format("{}: a value of {} bytes in a state of capacity {}", path_, len, capacity_));
        return v;
      }
    }
    if ((tries & 255) == 255) {
      if (deadline.expired())
        return fail(Errc::timeout, "state load", fmt::format("{}: the writer rewrote the value during every copy", path_));
      std::this_thread::yield();
    }
  }
}

Result<std::uint64_t> StateReader::wait_change(std::uint64_t seen, Timeout timeout) const {
  if (!base_) return fail(Errc::closed, "state wait", "the reader is closed");
  auto& h = *const_cast<Header*>(static_cast<const Header*>(base_));
  const os::Deadline deadline = os::Deadline::after(timeout);
  for (;;) {
    const std::uint32_t c = h.change.load(std::memory_order_acquire);
    const std::uint64_t v = h.latest.load(std::memory_order_acquire);
    if (v != seen) return v;
    if (!writer_alive()) return fail(Errc::closed, "state wait", fmt::format("{}: the writer is gone", path_));
    if (deadline.expired()) return fail(Errc::timeout, "state wait");
    const Timeout slice = deadline.infinite() ? Timeout(kWatchSlice) : std::min<Timeout>(kWatchSlice, deadline.remaining());
    (void)os::futex_wait(h.change, c, slice);
  }
}

}  // namespace ipcx::shm
