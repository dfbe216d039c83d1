// Named shared-memory segments, the objects placed in them, and named semaphores.
//
//   auto seg = ipcx::shm::Segment::create("app", {.size = 1 << 20}).value();
//   auto* m = seg.construct<ipcx::Mutex>("lock").value();           // placed once, by name
//   auto* n = seg.construct<std::atomic<std::uint64_t>>("count", 0u).value();
//   // another process:
//   auto seg2 = ipcx::shm::Segment::open("app").value();
//   auto* m2 = seg2.find<ipcx::Mutex>("lock").value();               // the same mutex
//
// A segment is a POSIX shared-memory object /dev/shm/ipcx-<uid>-<name> ('/' in a name becomes
// '.'), created with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 (0660 and the named group with
// SegmentOptions::group) whatever the umask; a segment owned by another user is refused. It
// starts with a versioned header (magic, layout version, size, creator pid) checked on open,
// then a directory of named objects and an allocator that hands out offsets, never pointers,
// so each process may map the segment at any address. Layout: docs/segment.md.
//
// Objects placed here must not hold pointers (they would be wrong in every other process) and,
// for atomics, must be lock-free: a std::atomic<T> that is not always lock-free (or an array of
// them) is refused at compile time (its lock would be private to one process). A struct that
// holds one, or a std::string, is not detected: that rule is the caller's.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <tuple>
#include <typeinfo>
#include <utility>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/sync.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::shm {

namespace detail {
template <class T>
struct is_std_atomic : std::false_type {};
template <class T>
struct is_std_atomic<std::atomic<T>> : std::true_type {};

template <class T>
consteval bool lock_free_if_atomic() {
  using U = std::remove_all_extents_t<T>;
  if constexpr (is_std_atomic<U>::value) return U::is_always_lock_free;
  else return true;
}
}  // namespace detail

// What may live in shared memory: objects, not pointers or references, and atomics only when
// the hardware makes them lock-free.
template <class T>
concept Placeable = std::is_object_v<T> && !std::is_pointer_v<std::remove_all_extents_t<T>> &&
                    !std::is_member_pointer_v<T> && detail::lock_free_if_atomic<T>();

struct SegmentOptions {
  std::size_t size = 1 << 20;  // total bytes, header included; rounded up to whole pages
  std::string group;           // non-empty: mode 0660, owned by this group (name or number)
};

// One named object found in a segment's directory.
struct ObjectInfo {
  std::string name;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

class Segment {
 public:
  static constexpr std::size_t kMaxName = 200;        // bytes of a segment name
  static constexpr std::size_t kMaxObjectName = 63;   // bytes of an object name
  static constexpr std::size_t kMaxObjects = 64;      // named objects per segment

  Segment() noexcept = default;
  Segment(Segment&& o) noexcept;
  Segment& operator=(Segment&& o) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();  // unmaps; the segment stays until remove()

  // Errors: already_exists (the name is taken, by a segment, a file or a symlink),
  // invalid_argument (empty or too long name, size too small for the header), not_found (no
  // such group), permission_denied, resource_exhausted.
  static Result<Segment> create(std::string_view name, SegmentOptions options = {});
  // Errors: not_found, permission_denied (another user's, or a symlink), protocol (not an ipcx
  // segment: bad magic, size disagreeing with the header), type_mismatch (another layout
  // version), timeout (its creator has not finished initialising it within `ready`).
  static Result<Segment> open(std::string_view name, Timeout ready = std::chrono::seconds(1));
  // Opens the segment, or creates it when there is none (safe when several processes race).
  static Result<Segment> open_or_create(std::string_view name, SegmentOptions options = {});
  // Unlinks the name; processes that have it mapped keep using it. Errors: not_found,
  // permission_denied.
  static Result<void> remove(std::string_view name);

  // Places a T named `name`, built from args. Errors: already_exists, resource_exhausted (no
  // room, or kMaxObjects reached), invalid_argument (name empty or longer than kMaxObjectName).
  template <Placeable T, class... A>
  Result<T*> construct(std::string_view name, A&&... args) {
    return place<T>(name, /*open_existing=*/false, std::forward<A>(args)...);
  }
  // The T placed under `name`. Errors: not_found, type_mismatch (another type or size).
  template <Placeable T>
  Result<T*> find(std::string_view name) {
    auto p = find_raw(name, tag<T>());
    if (!p) return std::unexpected(std::move(p.error()));
    return static_cast<T*>(*p);
  }
  // find(), or construct() when absent; atomic with respect to other processes.
  template <Placeable T, class... A>
  Result<T*> find_or_construct(std::string_view name, A&&... args) {
    return place<T>(name, /*open_existing=*/true, std::forward<A>(args)...);
  }
  // Runs ~T and frees the memory. Only when no process uses the object any more.
  template <Placeable T>
  Result<void> destroy(std::string_view name) {
    return destroy_raw(name, tag<T>(), [](void* p) { static_cast<T*>(p)->~T(); });
  }
  Result<std::vector<ObjectInfo>> objects() const;

  // Unnamed memory: an offset from the segment's start, valid in every process.
  Result<std::uint64_t> allocate(std::size_t size, std::size_t align = alignof(std::max_align_t));
  // Errors: invalid_argument (not an offset allocate() returned, or already freed).
  Result<void> deallocate(std::uint64_t offset);
  // The object at `offset`, checked to lie inside the segment. Errors: invalid_argument.
  template <Placeable T>
  Result<T*> at(std::uint64_t offset) const {
    auto p = at_raw(offset, sizeof(T), alignof(T));
    if (!p) return std::unexpected(std::move(p.error()));
    return static_cast<T*>(*p);
  }
  // The offset of a pointer into this process's mapping. Errors: invalid_argument (outside).
  Result<std::uint64_t> offset_of(const void* p) const;

  const std::string& name() const noexcept { return name_; }
  const std::string& path() const noexcept { return path_; }  // /dev/shm/...
  std::size_t size() const noexcept { return size_; }
  std::size_t free_bytes() const noexcept;
  void* base() const noexcept { return base_; }
  int native_handle() const noexcept { return fd_.get(); }

 private:
  struct TypeTag {
    std::uint64_t hash;
    std::uint32_t size;
    std::uint32_t align;
  };
  template <class T>
  static TypeTag tag() noexcept {
    static_assert(sizeof(T) <= UINT32_MAX, "objects in a segment are at most 4 GiB; allocate() larger areas");
    return {hash_type_name(typeid(T).name()), static_cast<std::uint32_t>(sizeof(T)),
            static_cast<std::uint32_t>(alignof(T))};
  }
  static std::uint64_t hash_type_name(const char* name) noexcept;

  // Runs init(where, ctx) under the directory lock when the object is new.
  using Init = void (*)(void* where, void* ctx);
  struct Placed {
    void* where;
    bool created;
  };
  Result<Placed> place_raw(std::string_view name, TypeTag tag, bool open_existing, Init init, void* ctx);
  Result<void*> find_raw(std::string_view name, TypeTag tag) const;
  Result<void> destroy_raw(std::string_view name, TypeTag tag, void (*destruct)(void*));
  Result<void*> at_raw(std::uint64_t offset, std::size_t size, std::size_t align) const;

  template <class T, class... A>
  Result<T*> place(std::string_view name, bool open_existing, A&&... args) {
    auto ctx = std::forward_as_tuple(std::forward<A>(args)...);
    using Ctx = decltype(ctx);
    Init init = [](void* where, void* c) {
      std::apply([where](auto&&... a) { ::new (where) T(std::forward<decltype(a)>(a)...); },
                 std::move(*static_cast<Ctx*>(c)));
    };
    auto p = place_raw(name, tag<T>(), open_existing, init, &ctx);
    if (!p) return std::unexpected(std::move(p.error()));
    return static_cast<T*>(p->where);
  }

  Fd fd_;
  void* base_ = nullptr;
  std::size_t size_ = 0;
  std::string name_;
  std::string path_;
};

// A named shared-memory object (a segment, a shared state: ipcx/state.hpp, an event:
// ipcx/event.hpp) as `ipcx shm ls`
// shows it.
struct SegmentInfo {
  std::string name;       // the name given to create() (from the header; else from the path)
  std::string path;       // /dev/shm/ipcx-<uid>-...
  // "segment", "state", "event", "topic" (zero-copy pub/sub), "topic-data" (a publisher's
  // chunks), or "" (not an ipcx object this version knows)
  std::string kind;
  std::size_t size = 0;   // bytes
  unsigned mode = 0;      // permission bits
  bool valid = false;     // an ipcx object with a header this version understands
  pid_t creator = 0;      // segment: the process that created it (0 when unknown)
  bool creator_alive = false;  // that process still runs (pid and start time both match)
  std::vector<pid_t> holders;  // processes that have it open now (their flock; /proc/locks)
  bool writer_alive = false;   // state: a process holds the writer's lock
  std::size_t listeners = 0;   // event: live listeners; topic: live publishers (slot claims held)
  std::vector<ObjectInfo> objects;
};
// The calling user's named objects, by path. Never maps another user's objects.
Result<std::vector<SegmentInfo>> list();

// What dead processes left: removes each of the calling user's objects that no process holds
// (a segment also needs its creator to be dead: a live creator may reopen it; a publisher's
// data file, its topic to be unused: subscribers may not have read it yet). Returns the
// paths removed. An object being opened at that moment is not lost: its opener sees the name
// gone and creates or reports it anew.
Result<std::vector<std::string>> collect_garbage();

// A Semaphore alone in a segment of its own, opened by name (as sem_open, with ipcx's naming,
// permissions and crash behaviour).
class NamedSemaphore {
 public:
  // Errors: as Segment::create.
  static Result<NamedSemaphore> create(std::string_view name, Semaphore::Options options = {},
                                       std::string group = {});
  // Errors: as Segment::open; type_mismatch when the segment holds no semaphore.
  static Result<NamedSemaphore> open(std::string_view name);
  static Result<void> remove(std::string_view name) { return Segment::remove(name); }

  Result<void> post(std::uint32_t n = 1) noexcept { return sem_->post(n); }
  Result<void> wait(Timeout timeout = forever) noexcept { return sem_->wait(timeout); }
  Result<void> try_wait() noexcept { return sem_->try_wait(); }
  std::uint32_t value() const noexcept { return sem_->value(); }
  Semaphore& semaphore() const noexcept { return *sem_; }
  const Segment& segment() const noexcept { return seg_; }

 private:
  NamedSemaphore(Segment seg, Semaphore* sem) noexcept : seg_(std::move(seg)), sem_(sem) {}
  Segment seg_;
  Semaphore* sem_ = nullptr;
};

}  // namespace ipcx::shm
