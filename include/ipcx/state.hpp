// Shared state: a named value that one process writes and any number of processes read,
// consistently, without locks, and without ever making the writer wait (docs/shm.md, "Shared
// state").
//
//   // the process that owns the value
//   auto w = ipcx::shm::TypedStateWriter<Pose>::create("robot/pose").value();
//   w.store(Pose{1.0, 2.0, 0.5});
//   // any number of others
//   auto r = ipcx::shm::TypedStateReader<Pose>::open("robot/pose").value();
//   Pose p = r.load().value();                 // the latest complete value, never a torn one
//   r.wait_change(r.version(), std::chrono::seconds(1));  // sleeps until the next store
//
// The value lives in /dev/shm/ipcx-<uid>-<name> (mode 0600, the namespace shm::Segment uses), in
// four slots that the writer fills in turn under a per-slot sequence number; a reader copies
// the latest slot and keeps the copy only if the slot's number did not move meanwhile. The
// writer is never told about readers and never waits for them. Readers map the file read-only.
//
// Lifetime: every process that has the state open holds it (a shared flock); the last one to
// close removes the name, and `ipcx shm gc` removes one nobody holds (everyone was killed).
// Writer liveness is the kernel's: the writer holds a lock on the file that readers test
// (writer_alive()), released the moment its process dies. A new writer takes over a dead
// writer's state in place: readers see its values without reopening.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::shm {

struct StateOptions {
  std::size_t capacity = 0;      // the largest value in bytes (1 .. kMaxStateCapacity)
  std::uint64_t type_hash = 0;   // 0: bytes; TypedState*: a hash of the type (checked on open)
  // When this call creates the state: empty, mode 0600 (this user only); a group name or gid,
  // mode 0640 and that group, whose members read it as "~OWNER/NAME" (and cannot write it).
  std::string group;
};
inline constexpr std::size_t kMaxStateCapacity = std::size_t{64} << 20;

// The writing side. One per name at a time; not thread-safe (one thread stores).
class StateWriter {
 public:
  StateWriter() noexcept = default;
  StateWriter(StateWriter&& o) noexcept;
  StateWriter& operator=(StateWriter&& o) noexcept;
  StateWriter(const StateWriter&) = delete;
  StateWriter& operator=(const StateWriter&) = delete;
  ~StateWriter();  // close()

  // Creates the state, or takes over one whose writer is dead (keeping its value, version and
  // readers) when its capacity and type match; a dead writer's state of another shape is
  // replaced (its readers keep the old one, writer gone). Errors: already_exists (a live writer
  // has it, or the name holds a segment or another kind of object), invalid_argument (name:
  // 1 to 200 bytes, no NUL; capacity), resource_exhausted (/dev/shm full), permission_denied.
  static Result<StateWriter> create(std::string_view name, StateOptions options);

  // Publishes a value of up to capacity() bytes. Never waits. Errors: too_large.
  Result<void> store(std::span<const std::byte> value);
  // Values stored so far (by every writer of this state): the version of the latest.
  std::uint64_t version() const noexcept { return version_; }
  std::size_t capacity() const noexcept { return capacity_; }
  const std::string& name() const noexcept { return name_; }
  const std::string& path() const noexcept { return path_; }
  // Releases the writer's lock (readers see writer_alive() false) and the hold; the last one
  // out removes the name.
  void close() noexcept;

 private:
  Fd fd_;
  void* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::uint64_t version_ = 0;
  std::string name_, path_;
};

// A reading side. A reader is used by one thread at a time; open one per thread.
class StateReader {
 public:
  StateReader() noexcept = default;
  StateReader(StateReader&& o) noexcept;
  StateReader& operator=(StateReader&& o) noexcept;
  StateReader(const StateReader&) = delete;
  StateReader& operator=(const StateReader&) = delete;
  ~StateReader();  // close()

  // Opens an existing state, waiting up to `ready` for a writer that is creating it. Errors:
  // not_found, type_mismatch (expected_type given and different: another type or size),
  // protocol (not a state: a segment, or a header that does not add up), timeout,
  // permission_denied (another user's, a symlink).
  static Result<StateReader> open(std::string_view name, Timeout ready = std::chrono::seconds(1),
                                  std::uint64_t expected_type = 0, std::size_t expected_capacity = 0);

  // Copies the latest complete value into `out` (resized to its length) and returns its
  // version. Retries while the writer overwrites the slot being copied, up to `timeout`.
  // Errors: not_found (nothing stored yet), timeout (the writer rewrote every slot during each
  // try: only with values stored back to back faster than one is copied), protocol (a length
  // beyond the capacity: a corrupt or hostile writer; the reader stays usable).
  Result<std::uint64_t> load(std::vector<std::byte>& out, Timeout timeout = std::chrono::seconds(1)) const;
  // The latest version (0: nothing stored yet). One load from shared memory.
  std::uint64_t version() const noexcept;
  // Sleeps until the version differs from `seen`; returns the new version. Errors: timeout;
  // closed (the writer is gone, noticed within 20 ms of its death, and `seen` is the latest).
  Result<std::uint64_t> wait_change(std::uint64_t seen, Timeout timeout = forever) const;
  // A process holds the writer's lock now (it is released by the kernel when that process dies;
  // a stopped writer is alive).
  bool writer_alive() const noexcept;
  std::size_t capacity() const noexcept { return capacity_; }
  const std::string& name() const noexcept { return name_; }
  const std::string& path() const noexcept { return path_; }
  void close() noexcept;

 private:
  Fd fd_;
  const void* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::size_t slot_size_ = 0;
  std::string name_, path_;
};

namespace detail {
std::uint64_t state_type_hash(const char* type_name, std::size_t size) noexcept;
}

// What a typed state may hold: bytes that mean the same in every process.
template <class T>
concept StateValue = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && sizeof(T) <= kMaxStateCapacity;

template <StateValue T>
class TypedStateWriter {
 public:
  static Result<TypedStateWriter> create(std::string_view name) {
    auto w = StateWriter::create(name, {.capacity = sizeof(T), .type_hash = type_hash()});
    if (!w) return std::unexpected(std::move(w.error()));
    return TypedStateWriter(std::move(*w));
  }
  Result<void> store(const T& value) { return w_.store(std::as_bytes(std::span(&value, 1))); }
  std::uint64_t version() const noexcept { return w_.version(); }
  StateWriter& untyped() noexcept { return w_; }
  static std::uint64_t type_hash() noexcept { return detail::state_type_hash(typeid(T).name(), sizeof(T)); }

 private:
  explicit TypedStateWriter(StateWriter w) : w_(std::move(w)) {}
  StateWriter w_;
};

template <StateValue T>
class TypedStateReader {
 public:
  static Result<TypedStateReader> open(std::string_view name, Timeout ready = std::chrono::seconds(1)) {
    auto r = StateReader::open(name, ready, TypedStateWriter<T>::type_hash(), sizeof(T));
    if (!r) return std::unexpected(std::move(r.error()));
    return TypedStateReader(std::move(*r));
  }
  // The latest value (errors as StateReader::load).
  Result<T> load(Timeout timeout = std::chrono::seconds(1)) const {
    auto v = r_.load(buf_, timeout);
    if (!v) return std::unexpected(std::move(v.error()));
    if (buf_.size() != sizeof(T))
      return fail(Errc::protocol, "state load", "a value of another size than the type's");
    T out;
    std::memcpy(&out, buf_.data(), sizeof(T));
    return out;
  }
  std::uint64_t version() const noexcept { return r_.version(); }
  Result<std::uint64_t> wait_change(std::uint64_t seen, Timeout timeout = forever) const {
    return r_.wait_change(seen, timeout);
  }
  bool writer_alive() const noexcept { return r_.writer_alive(); }
  StateReader& untyped() noexcept { return r_; }

 private:
  explicit TypedStateReader(StateReader r) : r_(std::move(r)) {}
  StateReader r_;
  mutable std::vector<std::byte> buf_;
};

}  // namespace ipcx::shm
