#include "os/shm.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <utility>
#include <vector>

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

Result<Owned> owner_of(std::string_view name) {
  if (!name.starts_with('~')) return Owned{.uid = ::geteuid(), .rest = std::string(name), .foreign = false};
  const auto slash = name.find('/');
  if (slash == std::string_view::npos || slash == 1 || slash + 1 == name.size())
    return fail(Errc::invalid_argument, "shm name", fmt::format("'{}': ~OWNER/NAME names another user's object", name.substr(0, 64)));
  const std::string owner(name.substr(1, slash - 1));
  uid_t uid = 0;
  auto [end, ec] = std::from_chars(owner.data(), owner.data() + owner.size(), uid);
  if (ec != std::errc() || end != owner.data() + owner.size()) {
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    const int rc = ::getpwnam_r(owner.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0) return fail_errno(rc, "getpwnam_r", owner);
    if (!found) return fail(Errc::not_found, "shm name", fmt::format("no user named '{}'", owner.substr(0, 64)));
    uid = found->pw_uid;
  }
  return Owned{.uid = uid, .rest = std::string(name.substr(slash + 1)), .foreign = uid != ::geteuid()};
}

Result<long> resolve_group(std::string_view group) {
  long gid = 0;
  auto [end, ec] = std::from_chars(group.data(), group.data() + group.size(), gid);
  if (ec == std::errc() && end == group.data() + group.size() && gid >= 0) return gid;
  const std::string name(group);
  std::vector<char> buf(16384);
  struct group g {};
  struct group* found = nullptr;
  int rc = ::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found);
  if (rc != 0) return fail_errno(rc, "getgrnam_r", name);
  if (!found) return fail(Errc::not_found, "group", fmt::format("no group named '{}'", name.substr(0, 64)));
  return static_cast<long>(found->gr_gid);
}

std::string SharedMemory::system_name(std::string_view name) {
  // A '~' name that does not resolve stays in the caller's namespace, literally: create() and
  // open() have refused it before anything uses this.
  auto o = owner_of(name);
  std::string out = fmt::format("/ipcx-{}-", o ? o->uid : ::geteuid());
  for (char c : o ? std::string_view(o->rest) : name) out += (c == '/' ? '.' : c);
  return out;
}

Result<SharedMemory> SharedMemory::create(std::string_view name, std::size_t size, unsigned mode, long gid) {
  if (name.empty() || size == 0) return fail(Errc::invalid_argument, "shm create", "empty name or zero size");
  auto owned = owner_of(name);
  if (!owned) return std::unexpected(owned.error());
  if (owned->foreign)
    return fail(Errc::permission_denied, "shm create",
                fmt::format("'{}': objects are created in the caller's own namespace (a ~OWNER/ name opens one)",
                            name.substr(0, 64)));
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
  auto owned = owner_of(name);
  if (!owned) return std::unexpected(owned.error());
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
  if (st.st_uid != owned->uid)
    return fail(Errc::permission_denied, "shm open", fmt::format("{} is owned by uid {}", sys, st.st_uid));
  if (!S_ISREG(st.st_mode)) return fail(Errc::permission_denied, "shm open", fmt::format("{} is not a regular file", sys));
  s.size_ = static_cast<std::size_t>(st.st_size);
  return s;
}

Result<void> SharedMemory::remove(std::string_view name) {
  if (auto owned = owner_of(name); !owned) return std::unexpected(owned.error());
  auto sys = system_name(name);
  if (::shm_unlink(sys.c_str()) != 0) return fail_errno(errno, "shm_unlink", sys);
  return {};
}

Result<Mapping> SharedMemory::map(bool writable) const { return Mapping::map(fd_.get(), size_, writable); }

}  // namespace ipcx::os
