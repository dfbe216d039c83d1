// The POSIX message queue calls every mq user goes through (Queue, Mailbox, the mq:// transport):
// opening with the limits explained, and sends/receives that wait with os::await on the mqd_t.
//
// Every queue descriptor here is O_NONBLOCK: waiting is poll(2) on the descriptor up to a
// monotonic deadline (mq_timedsend/mq_timedreceive take a CLOCK_REALTIME instant, which a
// clock change would move).
#pragma once

#include <mqueue.h>
#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

#include "os/sys.hpp"

namespace ipcx::transport::mqueue {

// The kernel's ceilings even for a process with CAP_SYS_RESOURCE (ipc/mqueue.c).
inline constexpr long kHardMsgMax = 65536;
inline constexpr long kHardMsgSizeMax = 16L << 20;
inline constexpr unsigned kPrioMax = 32768;  // MQ_PRIO_MAX on Linux

struct Create {
  long capacity;
  long message_size;
  unsigned mode;
  bool exclusive;
};

struct Opened {
  Fd fd;
  bool created = false;
};

// `kernel` is "/name". Creates with O_EXCL first so a queue we made gets `mode` by fchmod
// (mq_open applies the umask); an existing one is opened as it is (unless exclusive).
// Errors name the limit that refused the request (resource_exhausted / invalid_argument).
Result<Opened> create(const std::string& kernel, const Create& c, const char* op);
// Opens an existing queue. flags: O_RDONLY, O_WRONLY or O_RDWR.
Result<Fd> open(const std::string& kernel, int flags, const char* op);

// One message, waiting up to the deadline for room. too_large when over `msgsize`.
Result<void> send(int fd, std::span<const std::byte> data, unsigned priority, long msgsize,
                  const os::Deadline& dl, const char* op);
// One message into `scratch` (at least the queue's message size, or the kernel says EMSGSIZE);
// returns its length, its priority in *priority.
Result<std::size_t> receive(int fd, std::span<std::byte> scratch, unsigned* priority, const os::Deadline& dl,
                            const char* op);

Result<mq_attr> attributes(int fd);

// mq_send's buffer: never null (glibc declares it nonnull), even for an empty message.
inline const char* bytes_of(std::span<const std::byte> data) noexcept {
  return data.empty() ? "" : reinterpret_cast<const char*>(data.data());
}

// Reads a /proc/sys/fs/mqueue value (or -1).
long proc_limit(const char* file) noexcept;

// The error for an mq_open failure, naming the limit involved when one is.
std::unexpected<Error> open_error(int err, const std::string& kernel, const Create* c, const char* op);

}  // namespace ipcx::transport::mqueue
