#include "transport/stream.hpp"

#include "os/socket.hpp"
#include "transport/gather.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

std::unexpected<Error> send_failure(int fd, int err, const char* op) {
  if (err != EPIPE && err != ECONNRESET) return fail_errno(err, op);
  std::array<std::byte, wire::kHeaderSize + 2 + wire::kMaxGoodbyeText> buf;
  ssize_t n = os::retry([&] { return ::recv(fd, buf.data(), buf.size(), MSG_PEEK | MSG_DONTWAIT); });
  if (n < static_cast<ssize_t>(wire::kHeaderSize)) return fail_errno(err, op);
  auto h = wire::decode_header(std::span<const std::byte, wire::kHeaderSize>(buf.data(), wire::kHeaderSize),
                               buf.size() - wire::kHeaderSize);
  if (!h || h->type != wire::FrameType::goodbye || static_cast<std::size_t>(n) < wire::kHeaderSize + h->length)
    return fail_errno(err, op);
  auto e = wire::goodbye_error(std::span<const std::byte>(buf).subspan(wire::kHeaderSize, h->length));
  e.op = op;
  return std::unexpected(std::move(e));
}

std::size_t unannounced_fd_limit() noexcept {
  static const std::size_t limit = [] {
    rlimit rl{};
    std::size_t soft = 1024;
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) soft = static_cast<std::size_t>(rl.rlim_cur);
    return std::clamp<std::size_t>(soft / 8, 8, 4 * wire::kMaxFds);
  }();
  return limit;
}

namespace {
bool is_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  return fl != -1 && (fl & O_NONBLOCK);
}
// Two descriptors on one inode may share one open file description (a terminal or a socket
// given as both stdin and stdout), and O_NONBLOCK belongs to the description: toggling it
// for a read would change a concurrent write's mode.
bool same_file(int a, int b) {
  struct stat sa {}, sb {};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}
constexpr char kNewline = '\n';
constexpr std::byte kNewlineByte[1] = {std::byte{kNewline}};
}  // namespace

StreamConnection::StreamConnection(Params p)
    : rfd_(std::move(p.read_fd)),
      wfd_(std::move(p.write_fd)),
      socket_(p.kind == Kind::socket),
      fd_passing_(p.fd_passing && p.options.framing == Framing::frames),
      lines_(p.options.framing == Framing::lines),
      peer_(p.peer),
      options_(p.options),
      fd_budget_(unannounced_fd_limit()),
      decoder_(p.options.max_message, lines_ ? wire::StreamDecoder::Mode::lines : wire::StreamDecoder::Mode::frames) {
  if (!socket_) {
    if (rfd_.valid()) rfd_nonblock_initial_ = rfd_nonblock_ = is_nonblocking(rfd_.get());
    if (wfd_.valid()) wfd_nonblock_initial_ = wfd_nonblock_ = is_nonblocking(wfd_.get());
    if (rfd_.valid() && wfd_.valid() && same_file(rfd_.get(), wfd_.get())) {
      shared_description_ = true;
      (void)os::set_nonblocking(rfd_.get(), true);  // stays so: waits go through poll
      (void)os::set_nonblocking(wfd_.get(), true);
      rfd_nonblock_ = wfd_nonblock_ = true;
    }
    ignore_sigpipe_if_default();
  }
}

void StreamConnection::restore_mode(Fd& fd, bool current, bool initial) noexcept {
  // The file description may be shared (a shell's stdin/stdout): leave its mode as found.
  if (!socket_ && fd.valid() && current != initial) (void)os::set_nonblocking(fd.get(), initial);
  fd.reset();
}

void StreamConnection::release() noexcept {
  restore_mode(rfd_, rfd_nonblock_, rfd_nonblock_initial_);
  restore_mode(wfd_, wfd_nonblock_, wfd_nonblock_initial_);
  received_fds_.clear();
  out_.clear();
  out_.trim();
  decoder_.discard();  // its memory counts against a server's limit until freed
}

void StreamConnection::shutdown() noexcept {
  if (socket_ && rfd_.valid()) ::shutdown(rfd_.get(), SHUT_RDWR);
}

Handles StreamConnection::handles() const noexcept {
  Handles h;
  if (rfd_.valid()) h.read = rfd_.get();
  if (can_write()) h.write = wfd();
  return h;
}

Capabilities StreamConnection::capabilities() const noexcept {
  return {.fd_passing = fd_passing_,
          .records = false,
          .verified_peer = peer_.verified,
          .pollable = rfd_.valid(),
          .goodbye = socket_ && !lines_};
}

Result<void> StreamConnection::close_send(const os::Deadline& dl) {
  if (auto r = flush(dl); !r) return r;
  if (socket_) {
    if (::shutdown(rfd_.get(), SHUT_WR) != 0) return fail_errno(errno, "close_send");
    return {};
  }
  restore_mode(wfd_, wfd_nonblock_, wfd_nonblock_initial_);
  return {};
}

void StreamConnection::set_budget(std::shared_ptr<wire::MemoryBudget> budget) noexcept {
  decoder_.set_budget(budget);
  out_.set_budget(std::move(budget));
}

void StreamConnection::trim() noexcept {
  decoder_.trim();
  out_.trim();
}

Result<void> StreamConnection::ensure_mode(int fd, bool nonblock, bool& cached) {
  if (shared_description_ || cached == nonblock) return {};
  if (auto r = os::set_nonblocking(fd, nonblock); !r) return r;
  cached = nonblock;
  return {};
}

Result<std::size_t> StreamConnection::write_some(const iovec* iov, int iovcnt, std::span<const int> fds,
                                                 bool nonblock) {
  ssize_t n;
  if (socket_) {
    n = os::send_with_fds(wfd(), iov, iovcnt, fds, nonblock);
  } else {
    if (auto r = ensure_mode(wfd(), nonblock, wfd_nonblock_); !r) return std::unexpected(r.error());
    // One contiguous buffer takes write(), measurably cheaper than writev().
    n = iovcnt == 1 ? os::retry([&] { return ::write(wfd(), iov[0].iov_base, iov[0].iov_len); })
                    : os::retry([&] { return ::writev(wfd(), iov, iovcnt); });
  }
  if (n >= 0) return static_cast<std::size_t>(n);
  if (errno == EAGAIN) return fail(Errc::would_block, "send");
  if (socket_) return send_failure(wfd(), errno, "send");
  return fail_errno(errno, "send");
}

Result<void> StreamConnection::write_frame(std::span<iovec> iov, std::span<const int> fds, const os::Deadline& dl) {
  std::size_t total = 0;
  for (auto& v : iov) total += v.iov_len;
  std::size_t written = 0;
  std::size_t first = 0;  // first iovec not fully written
  const bool nonblock = !dl.infinite() || shared_description_;
  for (;;) {
    auto n = write_some(iov.data() + first, static_cast<int>(iov.size() - first),
                        written == 0 ? fds : std::span<const int>{}, nonblock);
    if (n && *n > 0) {
      written += *n;
      if (written == total) return {};
      auto left = *n;
      while (left >= iov[first].iov_len) left -= iov[first++].iov_len;
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
      continue;
    }
    if (n && *n == 0) return fail_errno(EIO, "send");
    if (n.error().code != Errc::would_block) return std::unexpected(std::move(n.error()));
    auto w = os::await(wfd(), POLLOUT, dl, "send");
    if (w) continue;
    if (written == 0) return w;
    // Part of the frame is out: keep the rest so the stream stays well-formed.
    for (std::size_t i = first; i < iov.size(); ++i)
      out_.push({static_cast<const std::byte*>(iov[i].iov_base), iov[i].iov_len}, {});
    return {};
  }
}

Result<void> StreamConnection::flush(const os::Deadline& dl) {
  const bool nonblock = !dl.infinite() || shared_description_;
  while (!out_.empty()) {
    auto chunk = out_.next();
    iovec v{const_cast<std::byte*>(chunk.bytes.data()), chunk.bytes.size()};
    auto n = write_some(&v, 1, chunk.fds, nonblock);
    if (n && *n > 0) {
      out_.consume(*n);
      continue;
    }
    if (n && *n == 0) return fail_errno(EIO, "flush");
    if (n.error().code != Errc::would_block) {
      n.error().op = "flush";
      return std::unexpected(std::move(n.error()));
    }
    if (auto w = os::await(wfd(), POLLOUT, dl, "flush"); !w) return w;
  }
  return {};
}

Result<void> StreamConnection::validate(std::span<const std::byte> data, std::span<const int> fds) const {
  if (data.size() > options_.max_message)
    return fail(Errc::too_large, "send", fmt::format("{} bytes > maximum {}", data.size(), options_.max_message));
  if (!fds.empty() && !fd_passing_)
    return fail(Errc::not_supported, "send", "this transport cannot pass file descriptors");
  if (fds.size() > wire::kMaxFds)
    return fail(Errc::invalid_argument, "send", fmt::format("{} fds > {}", fds.size(), wire::kMaxFds));
  if (!can_write()) return fail(Errc::not_supported, "send", "this end of the pipe/FIFO is read-only");
  if (lines_ && std::find(data.begin(), data.end(), std::byte{kNewline}) != data.end())
    return fail(Errc::invalid_argument, "send", "a message in line framing cannot contain a newline");
  return {};
}

Result<void> StreamConnection::send(std::span<const std::byte> data, std::span<const int> fds, const os::Deadline& dl) {
  if (auto v = validate(data, fds); !v) return v;
  if (!out_.empty())
    if (auto r = flush(dl); !r) return r;
  if (lines_) return write_joined(data, kNewlineByte, {}, dl);
  auto hdr = wire::encode_header({wire::FrameType::data, 0, static_cast<std::uint16_t>(fds.size()),
                                  static_cast<std::uint32_t>(data.size())});
  return write_joined(hdr, data, fds, dl);
}

Result<void> StreamConnection::enqueue(std::span<const std::byte> data, std::span<const int> fds) {
  if (auto v = validate(data, fds); !v) return v;
  auto dups = duplicate_for_queue(fds);
  if (!dups) return std::unexpected(dups.error());
  bool ok;
  if (lines_) {
    ok = out_.push(data, kNewlineByte);
  } else {
    auto hdr = wire::encode_header({wire::FrameType::data, 0, static_cast<std::uint16_t>(fds.size()),
                                    static_cast<std::uint32_t>(data.size())});
    ok = out_.push(hdr, data, std::move(*dups));
  }
  if (!ok) return fail(Errc::resource_exhausted, "send", "memory limit reached (outgoing queue)");
  return {};
}

void StreamConnection::goodbye(wire::Goodbye code, std::string_view text) noexcept {
  // Sockets only: a pipe's write end may be a terminal or a file (`ipcx recv pipe:` prints to
  // the very stdout it could write to), where a binary frame is noise.
  if (lines_ || !socket_ || !can_write()) return;
  auto bye = wire::encode_goodbye(code, text);
  if (!out_.push(bye, {})) return;
  (void)flush(os::Deadline::now());
}

Result<void> StreamConnection::write_joined(std::span<const std::byte> a, std::span<const std::byte> b,
                                            std::span<const int> fds, const os::Deadline& dl) {
  Scratch scratch;
  std::array<iovec, 2> iov;
  return write_frame(gather(a, b, scratch, iov), fds, dl);
}

bool StreamConnection::timed_read(const os::Deadline& dl) {
  using std::chrono::milliseconds;
  if (!socket_ || shared_description_) return false;
  // (On an O_NONBLOCK description a read never waits: the readiness poll is the way.)
  if (socket_blocks_ < 0) socket_blocks_ = is_nonblocking(rfd_.get()) ? 0 : 1;
  if (socket_blocks_ == 0) return false;
  const auto left = std::chrono::duration_cast<milliseconds>(dl.remaining());
  if (left < milliseconds(2)) return false;  // (a short wait: poll's millisecond rounding will do)
  if (rcvtimeo_.count() > 0 && rcvtimeo_ <= left) return true;
  // Half of what is left: later waits with about the same deadline keep it; a read that times
  // out early only goes round again.
  const auto want = left / 2;
  const timeval tv{.tv_sec = static_cast<time_t>(want.count() / 1000), .tv_usec = static_cast<suseconds_t>(want.count() % 1000 * 1000)};
  if (::setsockopt(rfd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
  rcvtimeo_ = want;
  return true;
}

Result<std::size_t> StreamConnection::read_some(std::span<std::byte> into, bool nonblock) {
  if (socket_) {
    int flags = 0;
    std::vector<Fd> fds;
    ssize_t n = os::recv_with_fds(rfd_.get(), into, fd_passing_ ? &fds : nullptr, nonblock, &flags);
    for (auto& f : fds) received_fds_.push_back(std::move(f));
    if (n < 0) {
      if (errno == EAGAIN) return fail(Errc::would_block, "recv");
      return fail_errno(errno, "recv");
    }
    if (flags & MSG_CTRUNC)
      return fail(Errc::protocol, "recv",
                  "file descriptors truncated (more than 253 in one message, or this process is out of descriptors)");
    return static_cast<std::size_t>(n);
  }
  if (auto r = ensure_mode(rfd_.get(), nonblock, rfd_nonblock_); !r) return std::unexpected(r.error());
  ssize_t n = os::retry([&] { return ::read(rfd_.get(), into.data(), into.size()); });
  if (n >= 0) return static_cast<std::size_t>(n);
  if (errno == EAGAIN) return fail(Errc::would_block, "recv");
  return fail_errno(errno, "recv");
}

std::unexpected<Error> StreamConnection::rx_fail(Error e) {
  received_fds_.clear();
  if (!rx_after_)
    rx_after_ = Error{Errc::closed, 0, "recv",
                      e.code == Errc::closed ? e.detail : fmt::format("connection failed earlier: {}", e.message())};
  return std::unexpected(std::move(e));
}

Result<void> StreamConnection::take_frame(const wire::StreamDecoder::Frame& f, Message& into) {
  if (f.header.fd_count > received_fds_.size()) {
    auto arrived = received_fds_.size();
    return rx_fail(Error{Errc::protocol, 0, "recv",
                         fmt::format("frame announces {} fds but {} arrived", f.header.fd_count, arrived)});
  }
  into.data.assign(f.payload.begin(), f.payload.end());
  into.fds.clear();
  for (unsigned i = 0; i < f.header.fd_count; ++i) {
    into.fds.push_back(std::move(received_fds_.front()));
    received_fds_.pop_front();
  }
  return {};
}

Result<void> StreamConnection::recv(Message& into, const os::Deadline& dl, ReadBudget* budget) {
  if (rx_after_) return std::unexpected(*rx_after_);
  if (!rfd_.valid()) return fail(Errc::not_supported, "recv", "this end of the pipe/FIFO is write-only");
  const bool nonblock = !dl.infinite() || shared_description_;
  for (;;) {
    auto f = decoder_.next();
    if (!f) return rx_fail(std::move(f.error()));
    if (*f) {
      if ((*f)->header.type == wire::FrameType::goodbye) return rx_fail(wire::goodbye_error((*f)->payload));
      return take_frame(**f, into);
    }
    if (eof_) {
      if (decoder_.pending() == 0) return rx_fail(Error{Errc::closed, 0, "recv", "peer closed the connection"});
      if (lines_) {  // a last line without '\n' is still a message
        auto rest = decoder_.prepare(1);
        if (rest.empty()) return fail(Errc::resource_exhausted, "recv", "memory limit reached");
        rest[0] = std::byte{kNewline};
        decoder_.commit(1);
        continue;
      }
      return rx_fail(Error{Errc::protocol, 0, "recv",
                           fmt::format("peer closed mid-frame ({} bytes of a truncated frame)", decoder_.pending())});
    }
    if (received_fds_.size() > decoder_.pending_fd_count() + fd_budget_)
      return rx_fail(Error{Errc::protocol, 0, "recv",
                           fmt::format("{} file descriptors received without a frame announcing them (limit {}, from "
                                       "RLIMIT_NOFILE)",
                                       received_fds_.size() - decoder_.pending_fd_count(), fd_budget_)});
    if (budget && budget->bytes == 0) return fail(Errc::would_block, "recv");
    // The last read took less than it asked for: the kernel had no more then. A caller that
    // must not wait learns so without a read that would only say EAGAIN (a readiness poll
    // reports anything that arrived since).
    if (drained_ && dl.immediate()) {
      drained_ = false;
      return fail(Errc::would_block, "recv");
    }
    // A caller that waits with a deadline: on a socket, a blocking read that SO_RCVTIMEO wakes
    // by the deadline (one system call, as for a caller without one); elsewhere, when the kernel
    // had nothing more at the last read, wait for readiness first instead of a read that would
    // only say EAGAIN (a reply to a request just sent is never there yet).
    const bool timed = nonblock && !dl.immediate() && !dl.infinite() && timed_read(dl);
    if (!timed && drained_ && nonblock && !dl.immediate()) {
      drained_ = false;
      if (auto w = os::await(rfd_.get(), POLLIN, dl, "recv"); !w) return w;
    }
    auto buf = decoder_.prepare();
    if (buf.empty()) return fail(Errc::resource_exhausted, "recv", "memory limit reached");
    if (budget) buf = buf.first(std::min(buf.size(), budget->bytes));
    auto n = read_some(buf, nonblock && !timed);
    if (n) {
      if (*n == 0) {
        eof_ = true;
        continue;
      }
      decoder_.commit(*n);
      if (budget) budget->bytes -= *n;
      drained_ = *n < buf.size();
      continue;
    }
    if (n.error().code == Errc::would_block) {
      if (timed) {  // SO_RCVTIMEO passed: the deadline, or a wake-up on the way to it
        if (dl.expired()) return fail(Errc::timeout, "recv");
        continue;
      }
      if (auto w = os::await(rfd_.get(), POLLIN, dl, "recv"); !w) return w;
      continue;
    }
    if (n.error().sys_errno == ECONNRESET) {
      eof_ = true;
      continue;
    }
    return rx_fail(std::move(n.error()));
  }
}

}  // namespace ipcx::transport
