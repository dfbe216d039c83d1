// The wake pipes and the epoll descriptor of one shm:// conversation. Every pipe is used through
// a description this process opened itself (O_RDWR | O_NONBLOCK, through /proc/self/fd), whose
// flags no peer can change (ring::poke_pipe).
#pragma once

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

namespace ipcx::transport::shm {

// A wake pipe of this side: `mine` is what we use, `theirs` the end the peer gets (and opens
// its own description of). Readable and writable by anyone who is given it (a pipe is made
// 0600 for its creator; a peer of another uid allowed by ?user= must open it too).
struct WakePipe {
  Fd mine, theirs;
};
// `space`: a pipe of one page, which one byte makes not writable (ring::block_pipe).
Result<WakePipe> make_wake_pipe(bool space);
// A descriptor from the peer, used as a wake-up only when it is a pipe, through a description
// of our own.
Result<Fd> own_peer_pipe(int fd);
// Polls `data_fd` (our data pipe) and, until the handshake is done, the socket.
Result<Fd> make_epoll(int data_fd, int sock);

}  // namespace ipcx::transport::shm
