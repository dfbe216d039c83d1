#include "os/shm.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include <fmt/format.h>

#include "os/sys.hpp"

namespace ipcx::os {

Mapping::Mapping(Mapping&& o) noexcept : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (addr_) ::munmap(addr_, len_);
    addr_ = std::exchange(o.addr_, nullptr);
    len_ = std::exchange(o.len_, 0);
  }
  return *this;
}
Mapping::~Mapping() {
  if (addr_) ::munmap(addr_, len_);
}

Result<Mapping> Mapping::map(int fd, std::size_t length, bool writable, off_t offset) {
  if (length == 0) return fail(Errc::invalid_argument, "mmap", "zero length");
  void* p = ::mmap(nullptr, length, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, offset);
  if (p == MAP_FAILED) return fail_errno(errno, "mmap");
  Mapping m;
  m.addr_ = p;
  m.len_ = length;
  return m;
}

Result<Mapping> Mapping::anonymous(std::size_t length) {
  if (length == 0) return fail(Errc::invalid_argument, "mmap", "zero length");
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return fail_errno(errno, "mmap");
  Mapping m;
  m.addr_ = p;
  m.len_ = length;
  return m;
}

std::string SharedMemory::system_name(std::string_view name) {
  std::string out = fmt::format("/ipcx-{}-", ::geteuid());
  for (char c : name) out += (c == '/' ? '.' : c);
  return out;
}

Result<SharedMemory> SharedMemory::create(std::string_view name, std::size_t size, unsigned mode, long gid) {
  if (name.empty() || size == 0) return fail(Errc::invalid_argument, "shm create", "empty name or zero size");
  auto sys = system_name(name);
  int fd = retry([&] { return ::shm_open(sys.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600); });
  if (fd < 0) return fail_errno(errno, "shm_open", sys);
  SharedMemory s;
  s.fd_ = Fd(fd);
  s.name_ = sys;
  // fchmod: the mode is exactly what was asked, whatever the umask.
  if ((gid >= 0 && ::fchown(fd, static_cast<uid_t>(-1), static_cast<gid_t>(gid)) != 0) || ::fchmod(fd, mode & 0777) != 0) {
    int e = errno;
    ::shm_unlink(sys.c_str());
    return fail_errno(e, "shm create", sys);
  }
  // Reserve every page now: a sparse file (ftruncate) that outgrows a full /dev/shm later kills
  // whoever touches the missing page with SIGBUS; here it is an error at creation.
  if (int e = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); e != 0) {
    ::shm_unlink(sys.c_str());
    if (e == ENOSPC || e == EFBIG || e == ENOMEM)
      return fail(Errc::resource_exhausted, "shm create",
                  fmt::format("{}: no room for {} bytes in /dev/shm (df /dev/shm)", sys, size));
    return fail_errno(e, "shm create", sys);
  }
  s.size_ = size;
  return s;
}

Result<SharedMemory> SharedMemory::open(std::string_view name, bool writable) {
  auto sys = system_name(name);
  // O_NONBLOCK: a FIFO planted at the name must not block the open (it is refused below).
  int fd = retry([&] {
    return ::shm_open(sys.c_str(), (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
  });
  if (fd < 0) {
    // glibc's shm_open always adds O_NOFOLLOW: a symlink planted at the name fails with ELOOP.
    if (errno == ELOOP) return fail(Errc::permission_denied, "shm_open", fmt::format("{} is a symbolic link", sys));
    if (errno == EISDIR) return fail(Errc::permission_denied, "shm_open", fmt::format("{} is not a regular file", sys));
    return fail_errno(errno, "shm_open", sys);
  }
  SharedMemory s;
  s.fd_ = Fd(fd);
  s.name_ = sys;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno(errno, "fstat", sys);
  if (st.st_uid != ::geteuid())
    return fail(Errc::permission_denied, "shm open", fmt::format("{} is owned by uid {}", sys, st.st_uid));
  if (!S_ISREG(st.st_mode)) return fail(Errc::permission_denied, "shm open", fmt::format("{} is not a regular file", sys));
  s.size_ = static_cast<std::size_t>(st.st_size);
  return s;
}

Result<void> SharedMemory::remove(std::string_view name) {
  auto sys = system_name(name);
  if (::shm_unlink(sys.c_str()) != 0) return fail_errno(errno, "shm_unlink", sys);
  return {};
}

Result<Mapping> SharedMemory::map(bool writable) const { return Mapping::map(fd_.get(), size_, writable); }

}  // namespace ipcx::os
