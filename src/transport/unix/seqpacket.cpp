#include "transport/unix/seqpacket.hpp"

#include "os/socket.hpp"
#include "transport/gather.hpp"
#include "transport/stream.hpp"

#include <array>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <fmt/format.h>

namespace ipcx::transport {

namespace {
// One record at a time is read here and copied into the message: a buffer per thread, not per
// connection (a server with thousands of idle connections holds none).
std::span<std::byte> record_buffer() {
  thread_local std::vector<std::byte> buf(wire::kHeaderSize + SeqpacketConnection::kChunk + 1);
  return buf;
}

wire::HeaderBytes record_header(std::size_t n, bool more, std::size_t fds) {
  return wire::encode_header({wire::FrameType::data, more ? std::uint16_t(wire::kFlagMore) : std::uint16_t(0),
                              static_cast<std::uint16_t>(fds), static_cast<std::uint32_t>(n)});
}
}  // namespace

SeqpacketConnection::SeqpacketConnection(Fd fd, PeerCred peer, Options options)
    : fd_(std::move(fd)), peer_(peer), options_(options), rx_max_(options.max_message) {}

void SeqpacketConnection::release() noexcept {
  fd_.reset();
  out_.clear();
  out_.trim();
  partial_ = {};
  partial_charge_.resize(0);
  in_message_ = false;
}

void SeqpacketConnection::shutdown() noexcept {
  if (fd_.valid()) ::shutdown(fd_.get(), SHUT_RDWR);
}

Handles SeqpacketConnection::handles() const noexcept {
  Handles h;
  if (fd_.valid()) h.read = h.write = fd_.get();
  return h;
}

Capabilities SeqpacketConnection::capabilities() const noexcept {
  return {.fd_passing = true, .records = true, .verified_peer = peer_.verified, .pollable = fd_.valid(), .goodbye = true};
}

void SeqpacketConnection::set_budget(std::shared_ptr<wire::MemoryBudget> budget) noexcept {
  partial_charge_.attach(budget);
  out_.set_budget(std::move(budget));
}

void SeqpacketConnection::trim() noexcept {
  if (!in_message_) {
    partial_ = {};
    partial_charge_.resize(0);
  }
  out_.trim();
}

Result<void> SeqpacketConnection::validate(std::span<const std::byte> data, std::span<const int> fds) const {
  if (data.size() > options_.max_message)
    return fail(Errc::too_large, "send", fmt::format("{} bytes > maximum {}", data.size(), options_.max_message));
  if (fds.size() > wire::kMaxFds)
    return fail(Errc::invalid_argument, "send", fmt::format("{} fds > {}", fds.size(), wire::kMaxFds));
  return {};
}

bool SeqpacketConnection::queue_records(std::span<const std::byte> data, std::size_t from, std::vector<Fd> fds) {
  // Not a do/while: an empty message is one (empty) record too.
  for (std::size_t off = from;;) {
    std::size_t n = std::min(kChunk, data.size() - off);
    bool more = off + n < data.size();
    auto hdr = record_header(n, more, off == from ? fds.size() : 0);
    if (!out_.push(hdr, data.subspan(off, n), off == from ? std::move(fds) : std::vector<Fd>{})) return false;
    off += n;
    if (!more) return true;
  }
}

Result<void> SeqpacketConnection::flush(const os::Deadline& dl) {
  while (!out_.empty()) {
    auto rec = out_.next();
    iovec v{const_cast<std::byte*>(rec.bytes.data()), rec.bytes.size()};
    ssize_t r = os::send_with_fds(fd_.get(), &v, 1, rec.fds, !dl.infinite());
    if (r >= 0) {
      out_.consume(static_cast<std::size_t>(r));
      continue;
    }
    if (errno != EAGAIN) return send_failure(fd_.get(), errno, "flush");
    if (auto w = os::await(fd_.get(), POLLOUT, dl, "flush"); !w) return w;
  }
  return {};
}

Result<void> SeqpacketConnection::send(std::span<const std::byte> data, std::span<const int> fds,
                                       const os::Deadline& dl) {
  if (auto v = validate(data, fds); !v) return v;
  if (!out_.empty())
    if (auto r = flush(dl); !r) return r;
  for (std::size_t off = 0;;) {
    std::size_t n = std::min(kChunk, data.size() - off);
    bool more = off + n < data.size();
    auto record_fds = off == 0 ? fds : std::span<const int>{};  // fds ride the first record
    auto hdr = record_header(n, more, record_fds.size());
    Scratch scratch;
    std::array<iovec, 2> parts;
    auto iov = gather(hdr, data.subspan(off, n), scratch, parts);
    ssize_t r = os::send_with_fds(fd_.get(), iov.data(), static_cast<int>(iov.size()), record_fds, !dl.infinite());
    if (r >= 0) {
      off += n;
      if (!more) return {};
      continue;
    }
    if (errno != EAGAIN) return send_failure(fd_.get(), errno, "send");
    auto w = os::await(fd_.get(), POLLOUT, dl, "send");
    if (w) continue;
    if (off == 0) return w;
    // The first records are out: queue the rest so the message arrives whole.
    queue_records(data, off, {});
    return {};
  }
}

void SeqpacketConnection::goodbye(wire::Goodbye code, std::string_view text) noexcept {
  if (!fd_.valid()) return;
  auto bye = wire::encode_goodbye(code, text);
  if (!out_.push(bye, {})) return;
  (void)flush(os::Deadline::now());
}

Result<void> SeqpacketConnection::enqueue(std::span<const std::byte> data, std::span<const int> fds) {
  if (auto v = validate(data, fds); !v) return v;
  auto dups = duplicate_for_queue(fds);
  if (!dups) return std::unexpected(dups.error());
  auto before = out_.size();
  if (!queue_records(data, 0, std::move(*dups))) {
    out_.rollback(before);  // all of the message or nothing
    return fail(Errc::resource_exhausted, "send", "memory limit reached (outgoing queue)");
  }
  return {};
}

std::unexpected<Error> SeqpacketConnection::rx_fail(Error e) {
  in_message_ = false;
  partial_ = {};
  partial_charge_.resize(0);
  if (!rx_after_)
    rx_after_ = Error{Errc::closed, 0, "recv",
                      e.code == Errc::closed ? e.detail : fmt::format("connection failed earlier: {}", e.message())};
  return std::unexpected(std::move(e));
}

Result<void> SeqpacketConnection::recv(Message& into, const os::Deadline& dl, ReadBudget* budget) {
  if (rx_after_) return std::unexpected(*rx_after_);
  auto rbuf = record_buffer();
  for (;;) {
    if (budget && budget->bytes == 0) return fail(Errc::would_block, "recv");
    // A record may add kChunk bytes to a message in progress (or start one): make sure the
    // budget has them before the record leaves the kernel, so a refusal loses nothing.
    const std::size_t need = partial_.data.size() + kChunk;
    if (partial_charge_.held() < need) {
      const std::size_t want = std::max(need, 2 * partial_.data.capacity());  // geometric, as a vector grows
      if (!partial_charge_.resize(want) && !partial_charge_.resize(need))
        return fail(Errc::resource_exhausted, "recv", "memory limit reached");
    }
    std::vector<Fd> fds;
    int msg_flags = 0;
    ssize_t n = os::recv_with_fds(fd_.get(), rbuf, &fds, !dl.infinite(), &msg_flags);
    if (n < 0) {
      if (errno == EAGAIN) {
        if (auto w = os::await(fd_.get(), POLLIN, dl, "recv"); !w) return w;
        continue;
      }
      if (errno == ECONNRESET) n = 0;
      else return rx_fail(fail_errno(errno, "recv").error());
    }
    if (budget) budget->bytes -= std::min(budget->bytes, static_cast<std::size_t>(n));
    if (n == 0) {
      if (in_message_) return rx_fail(Error{Errc::protocol, 0, "recv", "peer closed mid-message (truncated)"});
      return rx_fail(Error{Errc::closed, 0, "recv", "peer closed the connection"});
    }
    auto bad = [&](std::string why) { return rx_fail(Error{Errc::protocol, 0, "recv", std::move(why)}); };
    if ((msg_flags & MSG_TRUNC) || static_cast<std::size_t>(n) > wire::kHeaderSize + kChunk)
      return bad(fmt::format("record larger than {} bytes", wire::kHeaderSize + kChunk));
    if (msg_flags & MSG_CTRUNC)
      return bad("file descriptors truncated (more than 253 in one message, or this process is out of descriptors)");
    if (static_cast<std::size_t>(n) < wire::kHeaderSize)
      return bad(fmt::format("record of {} bytes is shorter than a frame header", n));
    auto h = wire::decode_header(std::span<const std::byte, wire::kHeaderSize>(rbuf.data(), wire::kHeaderSize),
                                 rx_max_);
    if (!h) return rx_fail(std::move(h.error()));
    if (h->length != static_cast<std::size_t>(n) - wire::kHeaderSize)
      return bad(fmt::format("frame length {} but record carries {}", h->length, n - wire::kHeaderSize));
    if (h->fd_count != fds.size())
      return bad(fmt::format("frame announces {} fds but {} arrived", h->fd_count, fds.size()));
    auto payload = rbuf.subspan(wire::kHeaderSize, h->length);
    if (h->type == wire::FrameType::goodbye) {
      if (in_message_ || (h->flags & wire::kFlagMore)) return bad("goodbye in the middle of a message");
      return rx_fail(wire::goodbye_error(payload));
    }
    // The sender flags MORE only on full records and sends descriptors with the first record
    // only. Anything else would let a peer stream empty fragments (or fragments carrying
    // descriptors) forever without the message ever reaching max_message.
    if ((h->flags & wire::kFlagMore) && h->length != kChunk)
      return bad(fmt::format("fragment of {} bytes (MORE is only set on {}-byte records)", h->length, kChunk));
    if (in_message_ && h->fd_count != 0) return bad(fmt::format("{} fds on a continuation record", h->fd_count));
    if (!in_message_ && !(h->flags & wire::kFlagMore)) {
      // A whole message in one record: copy straight into the caller's buffer, whose
      // capacity is kept (Message reuse must not allocate per message).
      into.data.assign(payload.begin(), payload.end());
      into.fds = std::move(fds);
      partial_charge_.resize(0);
      return {};
    }
    if (!in_message_) {
      partial_.data.clear();
      partial_.fds.clear();
      in_message_ = true;
    }
    if (partial_.data.size() + h->length > rx_max_)
      return bad(fmt::format("message exceeds maximum {}", rx_max_));
    if (partial_.data.capacity() < partial_.data.size() + h->length) partial_.data.reserve(partial_charge_.held());
    partial_.data.insert(partial_.data.end(), payload.begin(), payload.end());
    for (auto& f : fds) partial_.fds.push_back(std::move(f));
    if (h->flags & wire::kFlagMore) continue;
    in_message_ = false;
    if (into.data.capacity() >= partial_.data.size()) into.data.assign(partial_.data.begin(), partial_.data.end());
    else std::swap(into.data, partial_.data);
    std::swap(into.fds, partial_.fds);
    partial_ = {};
    partial_charge_.resize(0);
    return {};
  }
}

}  // namespace ipcx::transport
