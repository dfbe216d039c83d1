// One object of type T in a named shared-memory segment, for the multi-process sync tests: the
// test creates the segment (constructing T once), worker processes open it by name and find the
// same T. This is the only file that knows how the tests share memory.
#pragma once

#include <string>
#include <utility>

#include <ipcx/error.hpp>
#include <ipcx/segment.hpp>

namespace ipcx::test {

template <class T>
class SharedRegion {
 public:
  static constexpr const char* kObject = "state";

  SharedRegion() = default;
  SharedRegion(SharedRegion&& o) noexcept
      : seg_(std::move(o.seg_)), obj_(std::exchange(o.obj_, nullptr)), owner_(std::exchange(o.owner_, false)) {}
  SharedRegion& operator=(SharedRegion&&) = delete;
  // The creator destroys T and removes the segment's name; an opener only unmaps.
  ~SharedRegion() {
    if (owner_) {
      if (obj_) obj_->~T();
      (void)shm::Segment::remove(seg_.name());
    }
  }

  // `name` must start with "ipcx-test" (the leftovers check looks for such names).
  template <class... A>
  static Result<SharedRegion> create(const std::string& name, A&&... args) {
    auto seg = shm::Segment::create(name, {.size = sizeof(T) + (64 << 10)});
    if (!seg) return std::unexpected(std::move(seg.error()));
    SharedRegion r;
    r.seg_ = std::move(*seg);
    r.owner_ = true;  // removes the name on every path from here on
    auto obj = r.seg_.template construct<T>(kObject, std::forward<A>(args)...);
    if (!obj) return std::unexpected(std::move(obj.error()));
    r.obj_ = *obj;
    return r;
  }
  static Result<SharedRegion> open(const std::string& name) {
    auto seg = shm::Segment::open(name);
    if (!seg) return std::unexpected(std::move(seg.error()));
    SharedRegion r;
    r.seg_ = std::move(*seg);
    auto obj = r.seg_.template find<T>(kObject);
    if (!obj) return std::unexpected(std::move(obj.error()));
    r.obj_ = *obj;
    return r;
  }

  T* get() const noexcept { return obj_; }
  T* operator->() const noexcept { return get(); }
  T& operator*() const noexcept { return *get(); }
  const std::string& name() const noexcept { return seg_.name(); }

 private:
  shm::Segment seg_;
  T* obj_ = nullptr;
  bool owner_ = false;
};

}  // namespace ipcx::test
