// One object of type T in a named shared-memory object, for the multi-process sync tests: the
// test creates it (constructing T once), worker processes open it by name and find the same T.
//
// This is the only file that knows how the tests share memory. It uses the private
// os::SharedMemory + placement new; switching to ipcx::shm::Segment (create/construct<T>,
// open/find<T>) changes only this file.
#pragma once

#include <sys/mman.h>

#include <new>
#include <string>
#include <utility>

#include <ipcx/error.hpp>

#include "os/shm.hpp"

namespace ipcx::test {

template <class T>
class SharedRegion {
 public:
  SharedRegion() = default;
  SharedRegion(SharedRegion&& o) noexcept
      : map_(std::move(o.map_)), name_(std::move(o.name_)), owner_(std::exchange(o.owner_, false)) {}
  SharedRegion& operator=(SharedRegion&&) = delete;
  // The creator destroys T and unlinks the name; an opener only unmaps.
  ~SharedRegion() {
    if (owner_) {
      if (map_.data()) get()->~T();
      (void)os::SharedMemory::remove(name_);
    }
  }

  // `name` must start with "ipcx-test" (the leftovers check looks for such names).
  template <class... A>
  static Result<SharedRegion> create(const std::string& name, A&&... args) {
    auto shm = os::SharedMemory::create(name, sizeof(T));
    if (!shm) return std::unexpected(std::move(shm.error()));
    SharedRegion r;
    r.name_ = name;
    r.owner_ = true;  // unlinks the name on every path from here on
    auto m = shm->map(true);
    if (!m) return std::unexpected(std::move(m.error()));
    r.map_ = std::move(*m);
    ::new (r.map_.data()) T(std::forward<A>(args)...);
    return r;
  }
  static Result<SharedRegion> open(const std::string& name) {
    auto shm = os::SharedMemory::open(name, true);
    if (!shm) return std::unexpected(std::move(shm.error()));
    if (shm->size() < sizeof(T)) return fail(Errc::type_mismatch, "shared region open", name);
    auto m = shm->map(true);
    if (!m) return std::unexpected(std::move(m.error()));
    SharedRegion r;
    r.name_ = name;
    r.map_ = std::move(*m);
    return r;
  }

  T* get() const noexcept { return static_cast<T*>(map_.data()); }
  T* operator->() const noexcept { return get(); }
  T& operator*() const noexcept { return *get(); }
  const std::string& name() const noexcept { return name_; }

 private:
  os::Mapping map_;
  std::string name_;
  bool owner_ = false;
};

}  // namespace ipcx::test
