// Socket helpers: addresses, connect with a deadline, peer credentials.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/uio.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <ipcx/error.hpp>
#include <ipcx/peer.hpp>
#include <ipcx/fd.hpp>

#include "os/sys.hpp"

namespace ipcx::os {

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;
  const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
};

// "/path" -> filesystem socket; "@name" -> abstract socket.
Result<SockAddr> unix_address(std::string_view where);
// Resolves host:port (IPv4 or IPv6, numeric or name); `passive` for binding.
Result<SockAddr> tcp_address(std::string_view host, std::string_view port, bool passive);
std::string tcp_address_string(const SockAddr& a);

Result<Fd> make_socket(int family, int type);
// Connects a socket made non-blocking, waiting until `deadline`; leaves it blocking on success.
Result<void> connect_socket(int fd, const SockAddr& addr, const Deadline& deadline);
// sendmsg(2) with MSG_NOSIGNAL, plus SCM_RIGHTS when `fds` is not empty (at most 253).
// Returns bytes sent or -1 with errno set; EINTR is retried.
ssize_t send_with_fds(int fd, const iovec* iov, int iovcnt, std::span<const int> fds, bool nonblock) noexcept;
// recvmsg(2) appending any SCM_RIGHTS descriptors to `fds` (close-on-exec); `msg_flags` gets
// MSG_TRUNC/MSG_CTRUNC. Pass fds == nullptr to ignore ancillary data. -1 with errno on error.
ssize_t recv_with_fds(int fd, std::span<std::byte> buf, std::vector<Fd>* fds, bool nonblock,
                      int* msg_flags) noexcept;
// Kernel-verified credentials of a connected Unix socket's peer (SO_PEERCRED).
PeerCred peer_credentials(int fd) noexcept;
// The peer's supplementary groups (SO_PEERGROUPS), empty when unavailable.
std::vector<gid_t> peer_groups(int fd);

}  // namespace ipcx::os
