// Events: per-listener bitmaps of pending ids in a /dev/shm file, and a datagram to wake a
// listener whose bitmap went from empty to not empty.
#include <ipcx/event.hpp>

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "os/shm.hpp"
#include "os/sys.hpp"
#include "shm/event_layout.hpp"
#include "shm/lifetime.hpp"
#include "shm/shared_file.hpp"
#include "shm/wake.hpp"

namespace ipcx::shm {
namespace {

namespace L = event_layout;

constexpr std::size_t kMaxName = 200;


L::Slot& slot_at(void* base, std::size_t i) noexcept {
  return *reinterpret_cast<L::Slot*>(static_cast<std::byte*>(base) + sizeof(L::Header) + i * sizeof(L::Slot));
}

struct Opened {
  Fd fd;
  void* base = nullptr;
  std::size_t size = 0;
  std::size_t slots = 0;
  std::string path;
};

// An existing event's header, read into a private copy with pread: its magic (0: not yet
// written), and for an event, the number of slots once checked against the file.
Result<std::uint64_t> check_header(int fd, std::uint64_t file_size, const std::string& path, std::size_t* slots_out) {
  std::byte raw[sizeof(L::Header)];
  if (::pread(fd, raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) return std::uint64_t{0};
  std::uint64_t magic, total, slot_size;
  std::uint32_t version, header_size, slots, max_id;
  std::memcpy(&magic, raw + offsetof(L::Header, magic), 8);
  std::memcpy(&version, raw + offsetof(L::Header, version), 4);
  std::memcpy(&header_size, raw + offsetof(L::Header, header_size), 4);
  std::memcpy(&total, raw + offsetof(L::Header, total_size), 8);
  std::memcpy(&slots, raw + offsetof(L::Header, max_listeners), 4);
  std::memcpy(&max_id, raw + offsetof(L::Header, max_id), 4);
  std::memcpy(&slot_size, raw + offsetof(L::Header, slot_size), 8);
  if (magic != L::kMagic) return magic;
  if (version != L::kVersion)
    return fail(Errc::type_mismatch, "event open", fmt::format("{}: layout version {}, this library reads {}", path, version, L::kVersion));
  if (header_size != sizeof(L::Header) || slot_size != sizeof(L::Slot) || max_id != kMaxEventId || slots == 0 ||
      slots > kMaxEventListeners || total != file_size || L::file_bytes(slots) > file_size)
    return fail(Errc::protocol, "event open",
                fmt::format("{}: a header that does not add up ({} slots of {} bytes, ids up to {}, {} bytes in a file of {})",
                            path, slots, slot_size, max_id, total, file_size));
  *slots_out = slots;
  return magic;
}

Result<Opened> open_event(std::string_view name, const EventOptions& options) {
  if (auto ok = shared_file::check_name(name, kMaxName, "event name"); !ok) return std::unexpected(ok.error());
  if (options.max_listeners == 0 || options.max_listeners > kMaxEventListeners)
    return fail(Errc::invalid_argument, "event open",
                fmt::format("max_listeners {} (1 to {})", options.max_listeners, kMaxEventListeners));
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t size = (L::file_bytes(options.max_listeners) + page - 1) / page * page;
  std::size_t slots = options.max_listeners;
  auto gid = shared_file::group_id(options.group);
  if (!gid) return std::unexpected(gid.error());
  auto f = shared_file::open_or_create(
      name, size, L::kMagic, "event", "event open",
      [&](void* base) {
        auto& h = *static_cast<L::Header*>(base);
        h.version = L::kVersion;
        h.header_size = sizeof(L::Header);
        h.total_size = size;
        h.max_listeners = static_cast<std::uint32_t>(slots);
        h.max_id = kMaxEventId;
        h.slot_size = sizeof(L::Slot);
      },
      [&](int fd, std::uint64_t file_size) {
        return check_header(fd, file_size, "/dev/shm" + os::SharedMemory::system_name(name), &slots);
      },
      *gid);
  if (!f) return std::unexpected(f.error());
  Opened o;
  o.fd = std::move(f->fd);
  o.base = f->base;
  o.size = f->size;
  o.slots = slots;
  o.path = std::move(f->path);
  return o;
}

void unmap_and_leave(void*& base, std::size_t size, Fd& fd, const std::string& path) noexcept {
  if (base) ::munmap(base, size);
  base = nullptr;
  if (fd) (void)lifetime::leave(std::move(fd), path);
}

}  // namespace

// ---- notifier --------------------------------------------------------------------------------

EventNotifier::EventNotifier(EventNotifier&& o) noexcept { *this = std::move(o); }
EventNotifier& EventNotifier::operator=(EventNotifier&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    socks_ = std::move(o.socks_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    slots_ = std::exchange(o.slots_, 0);
    path_ = std::move(o.path_);
  }
  return *this;
}
EventNotifier::~EventNotifier() { close(); }
void EventNotifier::close() noexcept {
  socks_.clear();
  unmap_and_leave(base_, size_, fd_, path_);
}

Result<EventNotifier> EventNotifier::open(std::string_view name, EventOptions options) {
  auto o = open_event(name, options);
  if (!o) return std::unexpected(o.error());
  EventNotifier n;
  n.fd_ = std::move(o->fd);
  n.base_ = o->base;
  n.size_ = o->size;
  n.slots_ = o->slots;
  n.path_ = std::move(o->path);
  return n;
}

// One datagram to the listener's socket (shm/wake.hpp). false when every socket we may open has
// its buffer full of wake-ups nobody has read yet.
bool EventNotifier::wake(std::uint32_t uid, std::uint64_t token) noexcept { return wake::send(socks_, uid, token); }

Result<void> EventNotifier::notify(std::uint32_t id) {
  if (!base_) return fail(Errc::closed, "event notify", "the notifier is closed");
  if (id > kMaxEventId) return fail(Errc::invalid_argument, "event notify", fmt::format("id {} (0 to {})", id, kMaxEventId));
  const std::uint64_t bit = std::uint64_t{1} << (id % 64);
  for (std::size_t i = 0; i < slots_; ++i) {
    L::Slot& s = slot_at(base_, i);
    if (s.state.load(std::memory_order_acquire) != L::kActive) continue;
    s.pending[id / 64].fetch_or(bit, std::memory_order_seq_cst);
    // Only the notification that finds the listener unsignalled sends a datagram; the listener
    // clears the flag before it takes the bitmap, so a bit set after its take is never silent.
    if (s.signalled.exchange(1, std::memory_order_seq_cst) != 0) continue;
    // No room to send: the next notification tries again.
    if (!wake(s.uid, s.token.load(std::memory_order_relaxed))) s.signalled.store(0, std::memory_order_seq_cst);
  }
  return {};
}

std::size_t EventNotifier::listeners() const noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < slots_; ++i) n += slot_at(base_, i).state.load(std::memory_order_relaxed) == L::kActive;
  return n;
}

// ---- listener --------------------------------------------------------------------------------

EventListener::EventListener(EventListener&& o) noexcept { *this = std::move(o); }
EventListener& EventListener::operator=(EventListener&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    sock_ = std::move(o.sock_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    slot_ = std::exchange(o.slot_, 0);
    path_ = std::move(o.path_);
  }
  return *this;
}
EventListener::~EventListener() { close(); }

void EventListener::close() noexcept {
  if (base_) {
    L::Slot& s = slot_at(base_, slot_);
    s.state.store(L::kFree, std::memory_order_release);
    lifetime::release_writer(fd_.get(), static_cast<off_t>(1 + slot_));
  }
  sock_.reset();
  unmap_and_leave(base_, size_, fd_, path_);
}

Result<EventListener> EventListener::open(std::string_view name, EventOptions options) {
  auto o = open_event(name, options);
  if (!o) return std::unexpected(o.error());
  EventListener l;
  l.fd_ = std::move(o->fd);
  l.base_ = o->base;
  l.size_ = o->size;
  l.path_ = std::move(o->path);
  // A slot is ours when we hold its lock: free, or its listener died (the kernel let go).
  std::optional<std::size_t> mine;
  for (std::size_t i = 0; i < o->slots && !mine; ++i) {
    auto t = lifetime::take_writer(l.fd_.get(), static_cast<off_t>(1 + i));
    if (!t) return std::unexpected(t.error());
    if (*t) mine = i;
  }
  if (!mine) {
    auto n = o->slots;
    l.sock_.reset();
    unmap_and_leave(l.base_, l.size_, l.fd_, l.path_);  // no slot of ours to free
    return fail(Errc::resource_exhausted, "event listen",
                fmt::format("{}: all {} listener slots are held by live listeners", l.path_, n));
  }
  l.slot_ = *mine;  // from here, close() frees the slot (its state, our claim)
  std::uint64_t token = 0;
  auto sock = wake::bind_new(&token);
  if (!sock) return std::unexpected(sock.error());
  l.sock_ = std::move(*sock);
  L::Slot& slot = slot_at(l.base_, l.slot_);
  // Whatever a dead listener left pending is not ours.
  for (auto& w : slot.pending) w.store(0, std::memory_order_relaxed);
  slot.pid = ::getpid();
  slot.uid = ::geteuid();
  slot.token.store(token, std::memory_order_relaxed);
  slot.signalled.store(0, std::memory_order_relaxed);
  slot.state.store(L::kActive, std::memory_order_seq_cst);
  return l;
}

std::vector<std::uint32_t> EventListener::take() {
  std::vector<std::uint32_t> ids;
  if (!base_) return ids;
  wake::drain(sock_.get());
  L::Slot& s = slot_at(base_, slot_);
  s.signalled.store(0, std::memory_order_seq_cst);
  for (std::uint32_t w = 0; w < L::kWords; ++w) {
    if (s.pending[w].load(std::memory_order_relaxed) == 0) continue;
    std::uint64_t bits = s.pending[w].exchange(0, std::memory_order_seq_cst);
    while (bits) {
      const int b = std::countr_zero(bits);
      ids.push_back(w * 64 + static_cast<std::uint32_t>(b));
      bits &= bits - 1;
    }
  }
  return ids;
}

Result<std::vector<std::uint32_t>> EventListener::wait(Timeout timeout) {
  if (!base_) return fail(Errc::closed, "event wait", "the listener is closed");
  const os::Deadline deadline = os::Deadline::after(timeout);
  for (;;) {
    auto ids = take();
    if (!ids.empty()) return ids;
    if (auto w = os::await(sock_.get(), POLLIN, deadline, "event wait"); !w) return std::unexpected(w.error());
  }
}

}  // namespace ipcx::shm
