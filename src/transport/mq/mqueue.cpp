#include "transport/mq/mqueue.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace ipcx::transport::mqueue {

long proc_limit(const char* file) noexcept {
  std::FILE* f = std::fopen(fmt::format("/proc/sys/fs/mqueue/{}", file).c_str(), "re");
  if (!f) return -1;
  long v = -1;
  if (std::fscanf(f, "%ld", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

namespace {

bool has_sys_resource() noexcept {
  // CAP_SYS_RESOURCE lifts msg_max/msgsize_max (up to the hard ceilings). Read it from
  // /proc/self/status rather than linking libcap: bit 24 of CapEff.
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (!f) return false;
  char line[256];
  bool yes = false;
  while (std::fgets(line, sizeof line, f)) {
    unsigned long long eff = 0;
    if (std::sscanf(line, "CapEff: %llx", &eff) == 1) yes = (eff >> 24) & 1;
  }
  std::fclose(f);
  return yes;
}

// What the kernel charges to RLIMIT_MSGQUEUE for a queue (ipc/mqueue.c: the messages plus the
// bookkeeping per message and per priority level; the sizes are those of x86-64).
unsigned long long charged_bytes(const Create& c) noexcept {
  auto n = static_cast<unsigned long long>(c.capacity);
  return n * static_cast<unsigned long long>(c.message_size) + n * 48 + std::min<unsigned long long>(n, kPrioMax) * 40;
}

}  // namespace

std::unexpected<Error> open_error(int err, const std::string& kernel, const Create* c, const char* op) {
  switch (err) {
    case EINVAL:
      if (c) {
        const bool privileged = has_sys_resource();
        const long msg_max = proc_limit("msg_max"), msgsize_max = proc_limit("msgsize_max");
        if (c->capacity > kHardMsgMax)
          return fail(Errc::resource_exhausted, op,
                      fmt::format("{}: capacity {} exceeds the kernel's hard maximum {} (no setting raises it)",
                                  kernel, c->capacity, kHardMsgMax));
        if (c->message_size > kHardMsgSizeMax)
          return fail(Errc::resource_exhausted, op,
                      fmt::format("{}: message size {} exceeds the kernel's hard maximum {} (no setting raises it)",
                                  kernel, c->message_size, kHardMsgSizeMax));
        if (!privileged && msg_max >= 0 && c->capacity > msg_max)
          return fail(Errc::resource_exhausted, op,
                      fmt::format("{}: capacity {} exceeds /proc/sys/fs/mqueue/msg_max = {} (raise: sysctl "
                                  "fs.mqueue.msg_max={})",
                                  kernel, c->capacity, msg_max, c->capacity));
        if (!privileged && msgsize_max >= 0 && c->message_size > msgsize_max)
          return fail(Errc::resource_exhausted, op,
                      fmt::format("{}: message size {} exceeds /proc/sys/fs/mqueue/msgsize_max = {} (raise: sysctl "
                                  "fs.mqueue.msgsize_max={})",
                                  kernel, c->message_size, msgsize_max, c->message_size));
      }
      return fail_errno(err, op, fmt::format("{}: the kernel refused the name or the attributes", kernel));
    case ENOSPC:
      return fail(Errc::resource_exhausted, op,
                  fmt::format("{}: the system already has /proc/sys/fs/mqueue/queues_max = {} queues (raise: sysctl "
                              "fs.mqueue.queues_max=N)",
                              kernel, proc_limit("queues_max")));
    case EMFILE: {
      // Either out of descriptors, or RLIMIT_MSGQUEUE (bytes of queues per user) would be
      // exceeded: the kernel says EMFILE for both. A spare descriptor tells them apart.
      int probe = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
      if (probe < 0 && errno == EMFILE) {
        rlimit nofile{};
        ::getrlimit(RLIMIT_NOFILE, &nofile);
        return fail(Errc::resource_exhausted, op,
                    fmt::format("{}: this process has RLIMIT_NOFILE = {} descriptors open (raise: ulimit -n)",
                                kernel, nofile.rlim_cur));
      }
      if (probe >= 0) ::close(probe);
      rlimit q{};
      ::getrlimit(RLIMIT_MSGQUEUE, &q);
      std::string need = c ? fmt::format(" this queue needs about {} bytes;", charged_bytes(*c)) : std::string();
      std::string limit = q.rlim_cur == RLIM_INFINITY ? "unlimited" : fmt::format("{}", q.rlim_cur);
      return fail(Errc::resource_exhausted, op,
                  fmt::format("{}:{} the user's queues would exceed RLIMIT_MSGQUEUE = {} bytes (raise: ulimit -q, "
                              "or remove unused queues)",
                              kernel, need, limit));
    }
    case ENFILE:
      return fail(Errc::resource_exhausted, op, fmt::format("{}: the system is out of open files (fs.file-max)", kernel));
    case ENAMETOOLONG:
      return fail(Errc::invalid_argument, op, fmt::format("{}: longer than NAME_MAX (255 bytes)", kernel));
    case EACCES:
    case EPERM:
      return fail(Errc::permission_denied, op, fmt::format("{}: its mode does not let this user open it", kernel));
    case ENOENT:
      return fail(Errc::not_found, op, fmt::format("{}: no such queue", kernel));
    case EEXIST:
      return fail(Errc::already_exists, op, fmt::format("{} exists", kernel));
    case ENOSYS:
      return fail(Errc::not_supported, op, "POSIX message queues are not available in this kernel (CONFIG_POSIX_MQUEUE)");
    default:
      return fail_errno(err, op, kernel);
  }
}

Result<Opened> create(const std::string& kernel, const Create& c, const char* op) {
  if (c.capacity <= 0 || c.message_size <= 0)
    return fail(Errc::invalid_argument, op,
                fmt::format("{}: capacity {} and message size {} must both be at least 1", kernel, c.capacity,
                            c.message_size));
  if (c.mode > 0777)
    return fail(Errc::invalid_argument, op, fmt::format("{}: mode {:o} has bits beyond 0777", kernel, c.mode));
  mq_attr attr{};
  attr.mq_maxmsg = c.capacity;
  attr.mq_msgsize = c.message_size;
  // Bounded: each round loses only to another process creating or removing the name meanwhile.
  for (int round = 0; round < 100; ++round) {
    mqd_t q = os::retry([&] { return ::mq_open(kernel.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK | O_CLOEXEC,
                                               0600, &attr); });
    if (q != static_cast<mqd_t>(-1)) {
      Fd fd(q);
      // mq_open applied the umask (and 0600 above keeps others out until now): set the mode asked.
      if (::fchmod(fd.get(), c.mode) != 0) {
        int e = errno;
        ::mq_unlink(kernel.c_str());
        return fail_errno(e, op, fmt::format("fchmod {}", kernel));
      }
      return Opened{.fd = std::move(fd), .created = true};
    }
    if (errno != EEXIST) return open_error(errno, kernel, &c, op);
    if (c.exclusive) return open_error(EEXIST, kernel, &c, op);
    q = os::retry([&] { return ::mq_open(kernel.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC); });
    if (q != static_cast<mqd_t>(-1)) return Opened{.fd = Fd(q), .created = false};
    if (errno != ENOENT) return open_error(errno, kernel, nullptr, op);
  }
  return fail(Errc::system, op, fmt::format("{} keeps being created and removed by someone else", kernel));
}

Result<Fd> open(const std::string& kernel, int flags, const char* op) {
  mqd_t q = os::retry([&] { return ::mq_open(kernel.c_str(), flags | O_NONBLOCK | O_CLOEXEC); });
  if (q == static_cast<mqd_t>(-1)) return open_error(errno, kernel, nullptr, op);
  return Fd(q);
}

Result<void> send(int fd, std::span<const std::byte> data, unsigned priority, long msgsize, const os::Deadline& dl,
                  const char* op) {
  if (data.size() > static_cast<std::size_t>(msgsize))
    return fail(Errc::too_large, op,
                fmt::format("{} bytes > the queue's message size {} (nothing was sent)", data.size(), msgsize));
  if (priority >= kPrioMax)
    return fail(Errc::invalid_argument, op, fmt::format("priority {} above the maximum {}", priority, kPrioMax - 1));
  for (;;) {
    int r = ::mq_send(fd, bytes_of(data), data.size(), priority);
    if (r == 0) return {};
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (auto w = os::await(fd, POLLOUT, dl, op); !w) return w;
      continue;
    }
    if (errno == EBADF) return fail(Errc::not_supported, op, "the queue is not open for writing");
    if (errno == EMSGSIZE)  // another process's queue of the same name with a smaller size
      return fail(Errc::too_large, op, fmt::format("{} bytes > the queue's message size", data.size()));
    return fail_errno(errno, op);
  }
}

Result<std::size_t> receive(int fd, std::span<std::byte> scratch, unsigned* priority, const os::Deadline& dl,
                            const char* op) {
  for (;;) {
    ssize_t n = ::mq_receive(fd, reinterpret_cast<char*>(scratch.data()), scratch.size(), priority);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (auto w = os::await(fd, POLLIN, dl, op); !w) return std::unexpected(w.error());
      continue;
    }
    if (errno == EBADF) return fail(Errc::not_supported, op, "the queue is not open for reading");
    return fail_errno(errno, op);
  }
}

Result<mq_attr> attributes(int fd) {
  mq_attr a{};
  if (::mq_getattr(fd, &a) != 0) return fail_errno(errno, "mq_getattr");
  return a;
}

}  // namespace ipcx::transport::mqueue
