// The System V message calls behind both the Queue API and the sysv:// transport: key parsing,
// the kernel's limits, msgsnd/msgrcv with a deadline, and errno turned into what it means for
// a queue (a removed queue is closed, a full one would_block).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/sysv.hpp>

#include "os/sys.hpp"

namespace ipcx::sysv::detail {

// One of /proc/sys/kernel/{msgmax,msgmnb,msgmni}.
Result<std::size_t> read_limit(const char* name);
// msgmax (8192 when it cannot be read: the kernel's default), as last read; `fresh` reads it now.
std::size_t max_message(bool fresh = false) noexcept;

// How a deadline becomes msgsnd/msgrcv calls: forever blocks in the kernel; now is one
// IPC_NOWAIT call; anything else is IPC_NOWAIT calls with growing sleeps between them (the
// kernel has no timed msgsnd/msgrcv), at most kMaxStep apart.
inline constexpr Timeout kFirstStep = std::chrono::microseconds(20);
inline constexpr Timeout kMaxStep = std::chrono::milliseconds(1);

// Sends `head` then `data` as one message of `type`. too_large when larger than msgmax.
// Errors as Queue::send; `what` names the queue in errors.
Result<void> send(int qid, long type, std::span<const std::byte> head, std::span<const std::byte> data,
                  const os::Deadline& deadline, const char* op, std::string_view what);
// Receives one message selected by `type` (msgrcv's rule) into `text`; returns its type.
Result<long> recv(int qid, long type, std::vector<std::byte>& text, const os::Deadline& deadline, const char* op,
                  std::string_view what);
// The message at position `index` (0: the oldest) without removing it (MSG_COPY).
Result<long> peek(int qid, long index, std::vector<std::byte>& text);

// msgget errors explained: which key, which limit, how to raise it.
std::unexpected<Error> get_error(int err, const char* op, const Key& key);
// A queue operation's errno: EIDRM/EINVAL on an id are "removed" (closed).
std::unexpected<Error> queue_error(int err, const char* op, std::string_view what);

}  // namespace ipcx::sysv::detail
