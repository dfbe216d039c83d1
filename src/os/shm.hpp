// Memory mappings and POSIX shared-memory objects with safe creation.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include <sys/types.h>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

namespace ipcx::os {

// An mmap'd region; unmapped on destruction.
class Mapping {
 public:
  Mapping() noexcept = default;
  Mapping(Mapping&& o) noexcept;
  Mapping& operator=(Mapping&& o) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  // Maps `length` bytes of `fd` shared; read-only unless `writable`.
  static Result<Mapping> map(int fd, std::size_t length, bool writable, off_t offset = 0);
  // Private anonymous memory (for tests and scratch buffers).
  static Result<Mapping> anonymous(std::size_t length);

  void* data() const noexcept { return addr_; }
  std::size_t size() const noexcept { return len_; }
  std::span<std::byte> bytes() const noexcept { return {static_cast<std::byte*>(addr_), len_}; }

 private:
  void* addr_ = nullptr;
  std::size_t len_ = 0;
};

// Whose namespace a name is in: "~OWNER/REST" is OWNER's (a user name or a decimal uid), any
// other name the caller's (effective uid). Errors: invalid_argument (no REST, or a '~' name
// without '/'), not_found (no such user).
struct Owned {
  uid_t uid;
  std::string rest;
  bool foreign;  // another user's namespace
};
Result<Owned> owner_of(std::string_view name);
// A group name or a decimal gid. Errors: not_found.
Result<long> resolve_group(std::string_view group);

// A POSIX shared-memory object. Names are namespaced per user: "pose" becomes
// /dev/shm/ipcx-<uid>-pose, and "~alice/pose" alice's. Created with O_CREAT|O_EXCL|O_NOFOLLOW
// and an explicit mode, only in the caller's own namespace.
class SharedMemory {
 public:
  static std::string system_name(std::string_view name);
  // `gid` >= 0: the object's group becomes gid (set before it gets its size).
  static Result<SharedMemory> create(std::string_view name, std::size_t size, unsigned mode = 0600, long gid = -1);
  // Opens an existing object; refuses one owned by anyone but the namespace's user, a symbolic
  // link (permission_denied) and anything but a regular file. size() is the size when opened.
  static Result<SharedMemory> open(std::string_view name, bool writable);
  static Result<void> remove(std::string_view name);

  Result<Mapping> map(bool writable) const;
  int fd() const noexcept { return fd_.get(); }
  // Hands the descriptor over (this object is then closed).
  Fd take_fd() noexcept { return std::move(fd_); }
  std::size_t size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }

 private:
  Fd fd_;
  std::size_t size_ = 0;
  std::string name_;
};

}  // namespace ipcx::os
