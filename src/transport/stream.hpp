// A framed connection over byte-stream descriptors: pipes, FIFOs, stream sockets.
#pragma once

#include <deque>
#include <vector>

#include <sys/uio.h>

#include "transport/transport.hpp"
#include "wire/frame.hpp"

namespace ipcx::transport {

class StreamConnection final : public ConnectionImpl {
 public:
  struct Params {
    Fd read_fd;
    Fd write_fd;          // sockets: invalid (write to read_fd); pipes: invalid = read-only
    bool socket = false;  // use sendmsg/recvmsg (MSG_DONTWAIT, MSG_NOSIGNAL, SCM_RIGHTS)
    bool fd_passing = false;
    PeerCred peer{};
    Options options{};
  };
  explicit StreamConnection(Params p);
  // Closing restores the descriptors' blocking mode, which may be shared (stdin/stdout).
  ~StreamConnection() override { close(); }

  Result<void> send(std::span<const std::byte> data, std::span<const int> fds,
                    const os::Deadline& deadline) override;
  Result<void> recv(Message& into, const os::Deadline& deadline) override;
  Result<void> flush(const os::Deadline& deadline) override;
  int native_handle() const noexcept override { return rfd_.get(); }
  bool buffered() const noexcept override { return decoder_.has_frame(); }
  PeerCred peer() const noexcept override { return peer_; }
  void close() noexcept override;
  bool is_open() const noexcept override { return rfd_.valid() || wfd_.valid(); }

 private:
  int wfd() const noexcept { return wfd_.valid() ? wfd_.get() : rfd_.get(); }
  // One write attempt; -1/errno like writev. fds go only with the first byte of a frame.
  ssize_t write_some(const iovec* iov, int iovcnt, std::span<const int> fds, bool nonblock);
  ssize_t read_some(std::span<std::byte> into, bool nonblock);
  // Sends a then b as one frame (coalesced into one buffer when small).
  Result<void> write_joined(std::span<const std::byte> a, std::span<const std::byte> b,
                            std::span<const int> fds, const os::Deadline& dl);
  Result<void> write_frame(std::span<iovec> iov, std::span<const int> fds, const os::Deadline& dl);
  Result<void> ensure_mode(int fd, bool nonblock, bool& cached);
  Result<void> take_frame(const wire::StreamDecoder::Frame& f, Message& into);

  Fd rfd_, wfd_;
  bool socket_, fd_passing_;
  bool rfd_nonblock_ = false, wfd_nonblock_ = false;
  bool rfd_nonblock_initial_ = false, wfd_nonblock_initial_ = false;  // restored on close
  PeerCred peer_;
  Options options_;
  wire::StreamDecoder decoder_;
  std::deque<Fd> received_fds_;     // fds that arrived ahead of the frame that announces them
  std::vector<std::byte> unsent_;   // rest of a frame whose start is already written
  std::size_t unsent_off_ = 0;
  bool eof_ = false;
};

// Enlarges a pipe/FIFO buffer (best effort) so that a 64 KiB message and its header fit in
// one write: with the default 64 KiB, such a message needs two wake-ups of the reader.
void grow_pipe(int fd) noexcept;

// SIGPIPE must not kill a process because its peer went away: writes to a closed pipe
// become Errc::closed. Sets SIGPIPE to ignored if (and only if) it is at its default.
void ignore_sigpipe_if_default() noexcept;

}  // namespace ipcx::transport
