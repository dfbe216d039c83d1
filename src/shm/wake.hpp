// Wake-up datagrams for /dev/shm objects whose waiters poll a descriptor (events, the shared
// queue's reader): the waiter binds an abstract datagram socket named after its uid and a random
// token, writes both into the shared file, and polls the socket; a waker sends it one byte.
// Abstract names are not files: nothing is left behind when the waiter dies.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

namespace ipcx::shm::wake {

// Datagrams stay charged to the socket that sent them until the waiter reads them: a waker opens
// more sockets (up to this many) when one's buffer is full of unread wake-ups.
inline constexpr std::size_t kMaxSockets = 16;

// @ipcx-ev.<uid>.<token as 16 hex digits>
sockaddr_un address(std::uint32_t uid, std::uint64_t token, socklen_t* len) noexcept;
// A non-blocking datagram socket bound to a fresh address of this process's uid; *token names it.
Result<Fd> bind_new(std::uint64_t* token);
// One datagram to (uid, token) from one of `socks` (opened as needed). False only when every
// socket we may open has its buffer full (a refused or missing waiter counts as sent: nobody to wake).
bool send(std::vector<Fd>& socks, std::uint32_t uid, std::uint64_t token) noexcept;
// Reads the datagrams waiting on `fd` (at most 1024): not readable afterwards, until the next
// wake-up, unless someone floods it.
void drain(int fd) noexcept;

}  // namespace ipcx::shm::wake
