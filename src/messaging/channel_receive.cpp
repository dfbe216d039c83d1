// Channel, receiving side: reading, checking what the peer sends, handing messages out,
// acknowledging. docs/semantics.md, "Acknowledgements" and "Bad input".
#include <ipcx/channel.hpp>

#include <fmt/format.h>

#include "messaging/channel_impl.hpp"

namespace ipcx {

using channel_detail::kWriteSlice;
using channel_detail::left;

// ---- reading ----

Result<void> ChannelImpl::read_once(Timeout t) {
  auto r = conn_.recv(scratch_, t);
  if (!r) {
    const Errc c = r.error().code;
    if (c == Errc::timeout || c == Errc::would_block) return std::unexpected(r.error());
    if (c == Errc::closed) {
      peer_closed_ = true;
      settle_peer_gone();
      failure_ = r.error();
      return std::unexpected(r.error());
    }
    return fatal(r.error(), false);
  }
  return handle(scratch_);
}

Result<void> ChannelImpl::read_available() {
  for (;;) {
    auto r = read_once(Timeout::zero());
    if (!r) return r.error().code == Errc::would_block ? Result<void>{} : r;
  }
}

Result<void> ChannelImpl::handle(Message& m) {
  if (m.data.empty()) return violation("channel recv", "empty message");
  switch (Kind(m.data[0])) {
    case Kind::channel_data: return on_data(m);
    case Kind::channel_ack: return on_ack(m);
    case Kind::error: {
      std::string why(m.text().substr(1));
      peer_closed_ = true;
      return fatal(Error{.code = Errc::closed, .op = "channel recv", .detail = "peer closed: " + why}, false);
    }
    default:
      return violation("channel recv", fmt::format("unknown message kind {:#04x}", std::to_integer<int>(m.data[0])));
  }
}

Result<void> ChannelImpl::on_data(Message& m) {
  if (m.data.size() < wire::data_header) return violation("channel recv", fmt::format("data header of {} bytes", m.data.size()));
  const auto flags = std::to_integer<std::uint8_t>(m.data[1]);
  const auto seq = wire::get_u64(m.data.data() + 2);
  if (flags & ~wire::known_flags) return violation("channel recv", fmt::format("unknown flags {:#04x}", flags));
  if (flags & wire::cancel) {
    if (m.data.size() != wire::data_header || (flags & wire::confirm))
      return violation("channel recv", "malformed cancel");
    if (seq == 0 || seq > last_read_) return violation("channel recv", fmt::format("cancel of message {} never sent", seq));
    auto it = std::find_if(inbox_.begin(), inbox_.end(), [&](const Inbound& i) { return i.seq == seq; });
    if (it != inbox_.end()) {  // not taken yet: it never reaches the application
      inbox_.erase(it);
      discarded_pending_.push_back(seq);
      ack_urgent_ = true;
    }  // else already taken: the acknowledgement reports it as delivered
    return {};
  }
  if (seq != last_read_ + 1)
    return violation("channel recv", fmt::format("sequence {} after {}", seq, last_read_));
  if (seq > last_ack_ + opts_.window)
    return violation("channel recv", fmt::format("message {} is beyond the window ({} acknowledged, window {})",
                                                 seq, last_ack_, opts_.window));
  last_read_ = seq;
  inbox_.push_back(Inbound{.seq = seq, .flags = flags, .msg = std::move(m)});
  return {};
}


// ---- acknowledging ----

std::uint64_t ChannelImpl::discarded_through(std::uint64_t r) const noexcept {
  std::uint64_t n = discarded_;
  for (auto s : discarded_pending_) n += (s <= r);
  return n;
}

bool ChannelImpl::ack_owed() const noexcept {
  if (!peer_reads_) return false;
  const auto r = resolved();
  return r > last_ack_ || discarded_through(r) > last_ack_discarded_;
}

Result<void> ChannelImpl::send_ack(Timeout t) {
  const auto r = resolved();
  const auto d = discarded_through(r);
  std::byte buf[wire::ack_size];
  wire::encode_ack(buf, r, d);
  auto s = conn_.send(buf, t);
  if (!s) {
    if (s.error().code == Errc::would_block || s.error().code == Errc::timeout) return s;
    // The peer closed its reading end: nobody to acknowledge to, but what it sent before
    // closing is still to be received (EOF on the reading side ends the channel).
    if (s.error().code == Errc::closed) {
      peer_reads_ = false;
      return {};
    }
    return fatal(s.error(), false);
  }
  last_ack_ = r;
  last_ack_discarded_ = d;
  discarded_ = d;
  std::erase_if(discarded_pending_, [&](std::uint64_t x) { return x <= r; });
  ack_urgent_ = false;
  return {};
}

// After the application took a message (or one was discarded): acknowledge when the batch is
// full, when someone waits for it, or when everything that arrived has been taken (an
// application that stops receiving then leaves nothing it took unacknowledged, so a sender is
// never held up by messages already taken). A full transport keeps the acknowledgement owed;
// it is written before this end next blocks.
Result<void> ChannelImpl::maybe_ack() {
  if (!ack_owed()) return {};
  const bool caught_up = inbox_.empty() && !conn_.buffered();
  if (!ack_urgent_ && !caught_up && resolved() - last_ack_ < ack_threshold_) return {};
  auto r = send_ack(Timeout::zero());
  if (!r && r.error().code == Errc::would_block) return {};
  return r;
}
// ---- receiving ----

Result<void> ChannelImpl::recv(Message& into, Timeout timeout) {
  if (failure_ && !(peer_closed_ && !inbox_.empty())) return std::unexpected(*failure_);
  if (!failure_ && !conn_.is_open()) return fail(Errc::closed, "channel recv", "channel closed");
  const auto d = Deadline::after(timeout);
  if (!failure_ && !held_.empty()) {
    if (auto r = pump(); !r) return r;
  }
  for (;;) {
    if (!inbox_.empty()) {
      // A message its sender waits for may have been withdrawn right behind it: look at what
      // has arrived before handing it out, so a cancelled message never reaches the application.
      if ((inbox_.front().flags & wire::confirm) && !failure_) {
        if (auto r = read_available(); !r && !peer_closed_) return r;
        if (inbox_.empty()) continue;
      }
      Inbound& in = inbox_.front();
      into.data.assign(in.msg.data.begin() + wire::data_header, in.msg.data.end());
      into.fds = std::move(in.msg.fds);
      if (in.flags & wire::confirm) ack_urgent_ = true;
      inbox_.pop_front();
      ++received_;
      if (!failure_) {
        if (auto r = maybe_ack(); !r) return r;
      }
      return {};
    }
    if (failure_) return std::unexpected(*failure_);
    auto r = read_once(Timeout::zero());
    if (r) continue;
    if (r.error().code != Errc::would_block) return r;
    // Owed acknowledgements are written first (a sender may wait for one), in slices while
    // reading if the transport is full; then wait for the peer.
    if (auto w = wait_event(d); !w) return w;
  }
}

}  // namespace ipcx
