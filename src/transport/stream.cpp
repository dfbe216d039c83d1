#include "transport/stream.hpp"

#include "os/socket.hpp"
#include "transport/gather.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/format.h>

namespace ipcx::transport {

void ignore_sigpipe_if_default() noexcept {
  struct sigaction old {};
  if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
    struct sigaction sa {};
    sa.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &sa, nullptr);
  }
}

void grow_pipe(int fd) noexcept {
  constexpr int kPipeBytes = 256 * 1024;  // within the default pipe-max-size (1 MiB)
  (void)::fcntl(fd, F_SETPIPE_SZ, kPipeBytes);
}

namespace {
bool is_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  return fl != -1 && (fl & O_NONBLOCK);
}
constexpr char kNewline = '\n';
}  // namespace

StreamConnection::StreamConnection(Params p)
    : rfd_(std::move(p.read_fd)),
      wfd_(std::move(p.write_fd)),
      socket_(p.socket),
      fd_passing_(p.fd_passing && p.options.framing == Framing::frames),
      peer_(p.peer),
      options_(p.options),
      decoder_(p.options.max_message, p.options.framing == Framing::lines
                                          ? wire::StreamDecoder::Mode::lines
                                          : wire::StreamDecoder::Mode::frames) {
  if (!socket_) {
    if (rfd_.valid()) rfd_nonblock_initial_ = rfd_nonblock_ = is_nonblocking(rfd_.get());
    if (wfd_.valid()) wfd_nonblock_initial_ = wfd_nonblock_ = is_nonblocking(wfd_.get());
    ignore_sigpipe_if_default();
  }
}

void StreamConnection::close() noexcept {
  // The file description may be shared (a shell's stdin/stdout): leave its mode as found.
  if (!socket_ && rfd_.valid() && rfd_nonblock_ != rfd_nonblock_initial_)
    (void)os::set_nonblocking(rfd_.get(), rfd_nonblock_initial_);
  if (!socket_ && wfd_.valid() && wfd_nonblock_ != wfd_nonblock_initial_)
    (void)os::set_nonblocking(wfd_.get(), wfd_nonblock_initial_);
  rfd_.reset();
  wfd_.reset();
  received_fds_.clear();
  unsent_.clear();
}

Result<void> StreamConnection::ensure_mode(int fd, bool nonblock, bool& cached) {
  if (cached == nonblock) return {};
  if (auto r = os::set_nonblocking(fd, nonblock); !r) return r;
  cached = nonblock;
  return {};
}

ssize_t StreamConnection::write_some(const iovec* iov, int iovcnt, std::span<const int> fds,
                                     bool nonblock) {
  if (socket_) return os::send_with_fds(wfd(), iov, iovcnt, fds, nonblock);
  bool& cached = wfd_.valid() ? wfd_nonblock_ : rfd_nonblock_;
  if (auto r = ensure_mode(wfd(), nonblock, cached); !r) {
    errno = r.error().sys_errno;
    return -1;
  }
  // One contiguous buffer takes write(), measurably cheaper than writev().
  if (iovcnt == 1) return os::retry([&] { return ::write(wfd(), iov[0].iov_base, iov[0].iov_len); });
  return os::retry([&] { return ::writev(wfd(), iov, iovcnt); });
}

Result<void> StreamConnection::write_frame(std::span<iovec> iov, std::span<const int> fds,
                                           const os::Deadline& dl) {
  std::size_t total = 0;
  for (auto& v : iov) total += v.iov_len;
  std::size_t written = 0;
  std::size_t first = 0;  // first iovec not fully written
  const bool nonblock = !dl.infinite();
  for (;;) {
    ssize_t n = write_some(iov.data() + first, static_cast<int>(iov.size() - first),
                           written == 0 ? fds : std::span<const int>{}, nonblock);
    if (n > 0) {
      written += static_cast<std::size_t>(n);
      if (written == total) return {};
      auto left = static_cast<std::size_t>(n);
      while (left >= iov[first].iov_len) left -= iov[first++].iov_len;
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
      continue;
    }
    if (n == -1 && errno == EAGAIN) {
      auto w = dl.immediate() ? Result<short>(fail(Errc::would_block, "send"))
                              : os::wait_fd(wfd(), POLLOUT, dl);
      if (w) continue;
      if (written == 0) return std::unexpected(w.error());
      // Part of the frame is out: keep the rest so the stream stays well-formed.
      unsent_.clear();
      unsent_off_ = 0;
      for (std::size_t i = first; i < iov.size(); ++i) {
        auto* b = static_cast<const std::byte*>(iov[i].iov_base);
        unsent_.insert(unsent_.end(), b, b + iov[i].iov_len);
      }
      return {};
    }
    int err = n == -1 ? errno : EIO;
    return fail_errno(err, "send");
  }
}

Result<void> StreamConnection::flush(const os::Deadline& dl) {
  if (!is_open()) return fail(Errc::closed, "flush", "connection closed");
  while (unsent_off_ < unsent_.size()) {
    iovec v{unsent_.data() + unsent_off_, unsent_.size() - unsent_off_};
    ssize_t n = write_some(&v, 1, {}, !dl.infinite());
    if (n > 0) {
      unsent_off_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n == -1 && errno == EAGAIN) {
      if (dl.immediate()) return fail(Errc::would_block, "flush");
      if (auto w = os::wait_fd(wfd(), POLLOUT, dl); !w) return std::unexpected(w.error());
      continue;
    }
    return fail_errno(n == -1 ? errno : EIO, "flush");
  }
  unsent_.clear();
  unsent_off_ = 0;
  return {};
}

Result<void> StreamConnection::send(std::span<const std::byte> data, std::span<const int> fds,
                                    const os::Deadline& dl) {
  if (!is_open()) return fail(Errc::closed, "send", "connection closed");
  if (data.size() > options_.max_message)
    return fail(Errc::too_large, "send",
                fmt::format("{} bytes > maximum {}", data.size(), options_.max_message));
  if (!fds.empty() && !fd_passing_)
    return fail(Errc::not_supported, "send", "this transport cannot pass file descriptors");
  if (fds.size() > wire::kMaxFds)
    return fail(Errc::invalid_argument, "send", fmt::format("{} fds > {}", fds.size(), wire::kMaxFds));
  if (!socket_ && !wfd_.valid())
    return fail(Errc::not_supported, "send", "this end of the pipe/FIFO is read-only");
  if (!unsent_.empty())
    if (auto r = flush(dl); !r) return r;

  if (options_.framing == Framing::lines) {
    if (std::find(data.begin(), data.end(), std::byte{kNewline}) != data.end())
      return fail(Errc::invalid_argument, "send", "a message in line framing cannot contain a newline");
    static constexpr std::byte nl[1] = {std::byte{kNewline}};
    return write_joined(data, nl, {}, dl);
  }
  auto hdr = wire::encode_header({wire::FrameType::data, 0, static_cast<std::uint16_t>(fds.size()),
                                  static_cast<std::uint32_t>(data.size())});
  return write_joined(hdr, data, fds, dl);
}

Result<void> StreamConnection::write_joined(std::span<const std::byte> a, std::span<const std::byte> b,
                                            std::span<const int> fds, const os::Deadline& dl) {
  Scratch scratch;
  std::array<iovec, 2> iov;
  return write_frame(gather(a, b, scratch, iov), fds, dl);
}

ssize_t StreamConnection::read_some(std::span<std::byte> into, bool nonblock) {
  if (socket_) {
    int flags = 0;
    std::vector<Fd> fds;
    ssize_t n = os::recv_with_fds(rfd_.get(), into, fd_passing_ ? &fds : nullptr, nonblock, &flags);
    for (auto& f : fds) received_fds_.push_back(std::move(f));
    if (n >= 0 && (flags & MSG_CTRUNC)) {
      errno = EPROTO;
      return -2;
    }
    return n;
  }
  if (auto r = ensure_mode(rfd_.get(), nonblock, rfd_nonblock_); !r) {
    errno = r.error().sys_errno;
    return -1;
  }
  return os::retry([&] { return ::read(rfd_.get(), into.data(), into.size()); });
}

Result<void> StreamConnection::take_frame(const wire::StreamDecoder::Frame& f, Message& into) {
  into.data.assign(f.payload.begin(), f.payload.end());
  into.fds.clear();
  if (f.header.fd_count > received_fds_.size()) {
    close();
    return fail(Errc::protocol, "recv",
                fmt::format("frame announces {} fds but {} arrived", f.header.fd_count, received_fds_.size()));
  }
  for (unsigned i = 0; i < f.header.fd_count; ++i) {
    into.fds.push_back(std::move(received_fds_.front()));
    received_fds_.pop_front();
  }
  return {};
}

Result<void> StreamConnection::recv(Message& into, const os::Deadline& dl) {
  if (!is_open()) return fail(Errc::closed, "recv", "connection closed");
  if (!rfd_.valid()) return fail(Errc::not_supported, "recv", "this end of the pipe/FIFO is write-only");
  for (;;) {
    auto f = decoder_.next();
    if (!f) {
      close();  // a stream cannot resynchronise after a bad frame
      return std::unexpected(std::move(f.error()));
    }
    if (*f) return take_frame(**f, into);
    if (eof_) {
      if (decoder_.pending() == 0) return fail(Errc::closed, "recv", "peer closed the connection");
      if (options_.framing == Framing::lines) {  // a last line without '\n' is still a message
        auto rest = decoder_.prepare(1);
        rest[0] = std::byte{kNewline};
        decoder_.commit(1);
        continue;
      }
      auto pending = decoder_.pending();
      close();
      return fail(Errc::protocol, "recv",
                  fmt::format("peer closed mid-frame ({} bytes of a truncated frame)", pending));
    }
    if (received_fds_.size() > 4 * wire::kMaxFds) {
      close();
      return fail(Errc::protocol, "recv", "too many file descriptors without frames");
    }
    auto buf = decoder_.prepare();
    ssize_t n = read_some(buf, !dl.infinite());
    if (n > 0) {
      decoder_.commit(static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) {
      eof_ = true;
      continue;
    }
    if (n == -2) {
      close();
      return fail(Errc::protocol, "recv", "file descriptors truncated (more than 253 in one message)");
    }
    if (errno == EAGAIN) {
      if (dl.immediate()) return fail(Errc::would_block, "recv");
      if (auto w = os::wait_fd(rfd_.get(), POLLIN, dl); !w) return std::unexpected(w.error());
      continue;
    }
    if (errno == ECONNRESET) {
      eof_ = true;
      continue;
    }
    return fail_errno(errno, "recv");
  }
}

}  // namespace ipcx::transport
