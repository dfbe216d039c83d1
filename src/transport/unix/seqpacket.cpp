#include "transport/unix/seqpacket.hpp"

#include "os/socket.hpp"
#include "transport/gather.hpp"

#include <array>
#include <cstring>

#include <poll.h>
#include <sys/socket.h>

#include <fmt/format.h>

namespace ipcx::transport {

SeqpacketConnection::SeqpacketConnection(Fd fd, PeerCred peer, Options options)
    : fd_(std::move(fd)), peer_(peer), options_(options), rbuf_(wire::kHeaderSize + kChunk + 1) {}

void SeqpacketConnection::close() noexcept {
  fd_.reset();
  unsent_.clear();
  partial_ = {};
  in_message_ = false;
}

Result<void> SeqpacketConnection::send_records(std::span<const std::byte> data,
                                               std::span<const int> fds, const os::Deadline& dl,
                                               bool resuming) {
  std::size_t off = 0;
  bool sent_any = resuming;
  // Not a do/while: its `continue` would test the condition, and an empty message whose only
  // record met EAGAIN was then dropped without being sent.
  for (;;) {
    std::size_t n = std::min(kChunk, data.size() - off);
    bool more = off + n < data.size();
    auto record_fds = off == 0 && !resuming ? fds : std::span<const int>{};  // fds ride the first record
    auto hdr = wire::encode_header({wire::FrameType::data, more ? std::uint16_t(wire::kFlagMore) : std::uint16_t(0),
                                    static_cast<std::uint16_t>(record_fds.size()), static_cast<std::uint32_t>(n)});
    Scratch scratch;
    std::array<iovec, 2> parts;
    auto iov = gather(hdr, data.subspan(off, n), scratch, parts);
    ssize_t r = os::send_with_fds(fd_.get(), iov.data(), static_cast<int>(iov.size()), record_fds, !dl.infinite());
    if (r >= 0) {
      off += n;
      sent_any = true;
      if (off >= data.size()) break;
      continue;
    }
    if (errno == EAGAIN) {
      auto w = dl.immediate() ? Result<short>(fail(Errc::would_block, "send"))
                              : os::wait_fd(fd_.get(), POLLOUT, dl);
      if (w) continue;
      if (!sent_any) return std::unexpected(w.error());
      if (resuming) {  // flush(): keep what is still unsent, report the deadline
        unsent_.erase(unsent_.begin(), unsent_.begin() + static_cast<std::ptrdiff_t>(off));
        return std::unexpected(w.error());
      }
      unsent_.assign(data.begin() + static_cast<std::ptrdiff_t>(off), data.end());
      return {};
    }
    return fail_errno(errno, "send");
  }
  if (resuming) unsent_.clear();
  return {};
}

Result<void> SeqpacketConnection::flush(const os::Deadline& dl) {
  if (!is_open()) return fail(Errc::closed, "flush", "connection closed");
  if (unsent_.empty()) return {};
  return send_records(unsent_, {}, dl, true);  // trims unsent_ itself if the deadline cuts it short
}

Result<void> SeqpacketConnection::send(std::span<const std::byte> data, std::span<const int> fds,
                                       const os::Deadline& dl) {
  if (!is_open()) return fail(Errc::closed, "send", "connection closed");
  if (data.size() > options_.max_message)
    return fail(Errc::too_large, "send", fmt::format("{} bytes > maximum {}", data.size(), options_.max_message));
  if (fds.size() > wire::kMaxFds)
    return fail(Errc::invalid_argument, "send", fmt::format("{} fds > {}", fds.size(), wire::kMaxFds));
  if (!unsent_.empty())
    if (auto r = flush(dl); !r) return r;
  return send_records(data, fds, dl, false);
}

Result<void> SeqpacketConnection::recv(Message& into, const os::Deadline& dl) {
  if (!is_open()) return fail(Errc::closed, "recv", "connection closed");
  for (;;) {
    std::vector<Fd> fds;
    int msg_flags = 0;
    ssize_t n = os::recv_with_fds(fd_.get(), rbuf_, &fds, !dl.infinite(), &msg_flags);
    if (n < 0) {
      if (errno == EAGAIN) {
        if (dl.immediate()) return fail(Errc::would_block, "recv");
        if (auto w = os::wait_fd(fd_.get(), POLLIN, dl); !w) return std::unexpected(w.error());
        continue;
      }
      if (errno == ECONNRESET) n = 0;
      else return fail_errno(errno, "recv");
    }
    if (n == 0) {
      bool mid = in_message_;
      close();
      if (mid) return fail(Errc::protocol, "recv", "peer closed mid-message (truncated)");
      return fail(Errc::closed, "recv", "peer closed the connection");
    }
    auto bad = [&](std::string why) {
      close();
      return fail(Errc::protocol, "recv", std::move(why));
    };
    if ((msg_flags & MSG_TRUNC) || static_cast<std::size_t>(n) > wire::kHeaderSize + kChunk)
      return bad(fmt::format("record larger than {} bytes", wire::kHeaderSize + kChunk));
    if (msg_flags & MSG_CTRUNC) return bad("file descriptors truncated");
    if (static_cast<std::size_t>(n) < wire::kHeaderSize)
      return bad(fmt::format("record of {} bytes is shorter than a frame header", n));
    auto h = wire::decode_header(std::span<const std::byte, wire::kHeaderSize>(rbuf_.data(), wire::kHeaderSize),
                                 options_.max_message);
    if (!h) {
      close();
      return std::unexpected(std::move(h.error()));
    }
    if (h->length != static_cast<std::size_t>(n) - wire::kHeaderSize)
      return bad(fmt::format("frame length {} but record carries {}", h->length, n - wire::kHeaderSize));
    if (h->fd_count != fds.size())
      return bad(fmt::format("frame announces {} fds but {} arrived", h->fd_count, fds.size()));
    // The sender flags MORE only on full records and sends descriptors with the first record
    // only. Anything else would let a peer stream empty fragments (or fragments carrying
    // descriptors) forever without the message ever reaching max_message.
    if ((h->flags & wire::kFlagMore) && h->length != kChunk)
      return bad(fmt::format("fragment of {} bytes (MORE is only set on {}-byte records)", h->length, kChunk));
    if (in_message_ && h->fd_count != 0)
      return bad(fmt::format("{} fds on a continuation record", h->fd_count));
    if (!in_message_ && !(h->flags & wire::kFlagMore)) {
      // A whole message in one record: copy straight into the caller's buffer, whose
      // capacity is kept (Message reuse must not allocate per message).
      into.data.assign(rbuf_.begin() + wire::kHeaderSize, rbuf_.begin() + n);
      into.fds = std::move(fds);
      return {};
    }
    if (!in_message_) {
      partial_.data.clear();
      partial_.fds.clear();
      in_message_ = true;
    }
    if (partial_.data.size() + h->length > options_.max_message)
      return bad(fmt::format("message exceeds maximum {}", options_.max_message));
    partial_.data.insert(partial_.data.end(), rbuf_.begin() + wire::kHeaderSize, rbuf_.begin() + n);
    for (auto& f : fds) partial_.fds.push_back(std::move(f));
    if (h->flags & wire::kFlagMore) continue;
    in_message_ = false;
    if (into.data.capacity() >= partial_.data.size()) into.data.assign(partial_.data.begin(), partial_.data.end());
    else std::swap(into.data, partial_.data);
    std::swap(into.fds, partial_.fds);
    return {};
  }
}

}  // namespace ipcx::transport
