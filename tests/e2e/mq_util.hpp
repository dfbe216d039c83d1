// Helpers shared by the POSIX message queue tests: a forked child running as uid 65534, the
// /dev/mqueue mount, and listing what is in it.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <ipcx/ipcx.hpp>

namespace ipcx::mqtest {

// Removes the caller's queue `name` at scope exit.
struct Cleanup {
  std::string name;
  ~Cleanup() { (void)mq::Queue::remove(name); }
};

inline std::string text_of(const Message& m) { return std::string(m.text()); }

// Runs `body` in a forked child that has become uid/gid 65534 (root's capabilities gone with
// the uid change, as setpriv --reuid does); returns the child's exit status and what it wrote.
struct ChildResult {
  int status = -1;
  std::string out;
};
template <class F>
ChildResult as_nobody(F body) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
      ::_exit(90);
    std::string out = body();
    (void)!::write(p[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(p[1]);
  ChildResult r;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    r.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(p[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = st;
  return r;
}

inline std::string describe(const Error& e) { return fmt::format("{}|{}", to_string(e.code), e.message()); }

// /dev/mqueue lists every queue; mount it when the machine has not (tests run as root).
inline bool mqueue_mounted() {
  if (std::filesystem::exists("/dev/mqueue/.")) {
    struct stat a{}, b{};
    if (::stat("/dev/mqueue", &a) == 0 && ::stat("/dev", &b) == 0 && a.st_dev != b.st_dev) return true;
  }
  std::filesystem::create_directories("/dev/mqueue");
  return ::mount("none", "/dev/mqueue", "mqueue", 0, nullptr) == 0;
}

inline std::vector<std::string> queues_starting(const std::string& prefix) {
  std::vector<std::string> out;
  for (auto& e : std::filesystem::directory_iterator("/dev/mqueue"))
    if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path().filename().string());
  return out;
}


}  // namespace ipcx::mqtest
