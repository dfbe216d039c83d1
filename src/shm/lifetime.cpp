#include "shm/lifetime.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include <fmt/format.h>

namespace ipcx::shm::lifetime {
namespace {

constexpr std::chrono::milliseconds kHoldWait{1000};

bool same_file(int fd, const std::string& path) noexcept {
  struct stat a {}, b {};
  if (::fstat(fd, &a) != 0 || ::lstat(path.c_str(), &b) != 0) return false;
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

struct flock writer_range(short type, off_t byte) noexcept {
  struct flock l {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = byte;
  l.l_len = 1;
  return l;
}

}  // namespace

Result<bool> hold(int fd, const std::string& path) {
  // A leaver holds it exclusively only between its test and its unlink: a moment. Anyone who
  // may open the file can hold it exclusively for ever, though: we wait a bounded time.
  const auto until = std::chrono::steady_clock::now() + kHoldWait;
  for (;;) {
    if (::flock(fd, LOCK_SH | LOCK_NB) == 0) return same_file(fd, path);
    if (errno != EWOULDBLOCK && errno != EINTR) return fail_errno(errno, "flock", path);
    if (std::chrono::steady_clock::now() >= until)
      return fail(Errc::timeout, "flock",
                  fmt::format("{}: another process has held it exclusively for {} ms", path, kHoldWait.count()));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

bool leave(Fd fd, const std::string& path, bool (*last)(void*) noexcept, void* ctx) noexcept {
  if (!fd) return false;
  bool removed = false;
  // Converting to exclusive drops our shared hold first: the test says whether anyone else holds.
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0 && same_file(fd.get(), path)) {
    if (!last || last(ctx)) removed = ::unlink(path.c_str()) == 0;
  }
  fd.reset();
  return removed;
}

bool remove_if_unused(int fd, const std::string& path) noexcept {
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) return false;
  bool removed = same_file(fd, path) && ::unlink(path.c_str()) == 0;
  (void)::flock(fd, LOCK_UN);
  return removed;
}

Result<bool> take_writer(int fd, off_t byte) {
  auto l = writer_range(F_WRLCK, byte);
  if (::fcntl(fd, F_OFD_SETLK, &l) == 0) return true;
  if (errno == EAGAIN || errno == EACCES) return false;
  return fail_errno(errno, "fcntl(F_OFD_SETLK)");
}

void release_writer(int fd, off_t byte) noexcept {
  auto l = writer_range(F_UNLCK, byte);
  (void)::fcntl(fd, F_OFD_SETLK, &l);
}

bool writer_alive(int fd, off_t byte) noexcept {
  auto l = writer_range(F_WRLCK, byte);
  if (::fcntl(fd, F_OFD_GETLK, &l) != 0) return false;
  return l.l_type != F_UNLCK;
}

}  // namespace ipcx::shm::lifetime
