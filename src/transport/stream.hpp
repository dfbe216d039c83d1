// A framed connection over byte-stream descriptors: pipes, FIFOs, stream sockets.
#pragma once

#include <deque>
#include <optional>
#include <vector>

#include <sys/uio.h>

#include "transport/out_queue.hpp"
#include "transport/transport.hpp"
#include "wire/frame.hpp"

namespace ipcx::transport {

class StreamConnection final : public ConnectionImpl {
 public:
  enum class Kind {
    pipe,    // read(2)/write(2); one or two descriptors (a pipe end may be missing)
    socket,  // recvmsg/sendmsg with MSG_DONTWAIT and MSG_NOSIGNAL on one descriptor
  };
  struct Params {
    Fd read_fd;
    Fd write_fd;  // sockets: leave empty (writes go to read_fd); pipes: empty = read-only
    Kind kind = Kind::pipe;
    bool fd_passing = false;  // SCM_RIGHTS (Unix stream sockets, frames only)
    PeerCred peer{};
    Options options{};
  };
  explicit StreamConnection(Params p);
  ~StreamConnection() override { release(); }

  Result<void> send(std::span<const std::byte> data, std::span<const int> fds,
                    const os::Deadline& deadline) override;
  Result<void> enqueue(std::span<const std::byte> data, std::span<const int> fds) override;
  Result<void> flush(const os::Deadline& deadline) override;
  std::size_t queued() const noexcept override { return out_.size(); }
  Result<void> close_send(const os::Deadline& deadline) override;
  void goodbye(wire::Goodbye code, std::string_view text) noexcept override;

  Result<void> recv(Message& into, const os::Deadline& deadline, ReadBudget* budget) override;
  bool buffered() const noexcept override { return decoder_.has_frame(); }
  bool mid_message() const noexcept override { return decoder_.pending() > 0 && !rx_after_; }
  void trim() noexcept override;
  void set_budget(std::shared_ptr<wire::MemoryBudget> budget) noexcept override;
  void limit_message(std::size_t max) noexcept override { decoder_.limit_payload(max); }

  Handles handles() const noexcept override;
  PeerCred peer() const noexcept override { return peer_; }
  Capabilities capabilities() const noexcept override;
  void shutdown() noexcept override;
  void release() noexcept override;

 private:
  int wfd() const noexcept { return wfd_.valid() ? wfd_.get() : rfd_.get(); }
  bool can_write() const noexcept { return socket_ ? rfd_.valid() : wfd_.valid(); }
  // One attempt of each; would_block when the kernel has no room / no bytes.
  Result<std::size_t> write_some(const iovec* iov, int iovcnt, std::span<const int> fds, bool nonblock);
  Result<std::size_t> read_some(std::span<std::byte> into, bool nonblock);
  Result<void> validate(std::span<const std::byte> data, std::span<const int> fds) const;
  // Writes a then b as one message (coalesced into one buffer when small).
  Result<void> write_joined(std::span<const std::byte> a, std::span<const std::byte> b,
                            std::span<const int> fds, const os::Deadline& dl);
  Result<void> write_frame(std::span<iovec> iov, std::span<const int> fds, const os::Deadline& dl);
  Result<void> ensure_mode(int fd, bool nonblock, bool& cached);
  // Gives `fd` back its blocking mode as found (pipes), then closes it.
  void restore_mode(Fd& fd, bool current, bool initial) noexcept;
  Result<void> take_frame(const wire::StreamDecoder::Frame& f, Message& into);
  // Records a fatal receive error: returned once, then Errc::closed for every later recv.
  std::unexpected<Error> rx_fail(Error e);

  Fd rfd_, wfd_;
  const bool socket_, fd_passing_;
  const bool lines_;
  bool shared_description_ = false;  // pipes: rfd and wfd may be one open file (a tty, a socket)
  bool rfd_nonblock_initial_ = false, wfd_nonblock_initial_ = false;  // restored on release
  PeerCred peer_;
  Options options_;
  const std::size_t fd_budget_;  // descriptors that may wait without a frame announcing them

  // Send side.
  bool wfd_nonblock_ = false;
  OutQueue out_{OutQueue::Mode::stream};

  // Receive side.
  bool rfd_nonblock_ = false;
  wire::StreamDecoder decoder_;
  std::deque<Fd> received_fds_;  // fds that arrived ahead of the frame that announces them
  bool eof_ = false;
  bool drained_ = false;  // the last read was short: the kernel had nothing more at that moment
  // Sockets: the SO_RCVTIMEO a blocking read with a deadline wakes up at, at the latest (zero:
  // none set). Kept while it is no longer than what is left of a deadline, so a caller that waits
  // with the same deadline again and again sets it once.
  std::chrono::milliseconds rcvtimeo_{0};
  int socket_blocks_ = -1;  // the socket's description is blocking (1) or O_NONBLOCK (0); -1: not looked yet
  bool timed_read(const os::Deadline& dl);
  std::optional<Error> rx_after_;  // what every recv returns once the receive side is over
};

// Enlarges a pipe/FIFO buffer (best effort) so that a 64 KiB message and its header fit in
// one write: with the default 64 KiB, such a message needs two wake-ups of the reader.
void grow_pipe(int fd) noexcept;

// SIGPIPE must not kill a process because its peer went away: writes to a closed pipe
// become Errc::closed. Sets SIGPIPE to ignored if (and only if) it is at its default.
void ignore_sigpipe_if_default() noexcept;

// A socket send that failed with `err`. When the peer closed (EPIPE, ECONNRESET) after leaving
// a goodbye frame unread at the front of the socket (a listener refusing us before our first
// message was even read), the reason it gives; else the system error. Peeks; consumes nothing.
std::unexpected<Error> send_failure(int fd, int err, const char* op);

// How many received descriptors a connection keeps while no frame claims them: an eighth of
// RLIMIT_NOFILE's soft limit, between 8 and 4 x 253. More is a protocol error: a peer cannot
// fill the process's descriptor table through one connection.
std::size_t unannounced_fd_limit() noexcept;

}  // namespace ipcx::transport
