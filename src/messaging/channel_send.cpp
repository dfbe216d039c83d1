// Channel, sending side: credits, the held queue and its policy, waiting for acknowledgements,
// cancelling what timed out. docs/semantics.md, "The model".
#include <ipcx/channel.hpp>

#include <fmt/format.h>

#include "messaging/channel_impl.hpp"

namespace ipcx {

using channel_detail::kWriteSlice;
using channel_detail::left;

// ---- failure and settlement ----

void ChannelImpl::settle_peer_gone() {
  held_.drop_all(&DropCounts::peer_died);
  own_drops_.peer_died += in_flight();
  acked_ = next_seq_ - 1;
  cancelled_.clear();
  cancel_owed_.clear();
}

std::unexpected<Error> ChannelImpl::fatal(Error e, bool tell_peer) {
  if (tell_peer) {
    std::string m(1, char(Kind::error));
    m += e.detail;
    (void)conn_.try_send(as_bytes(m));
  }
  settle_peer_gone();
  conn_.close();
  failure_ = e;
  return std::unexpected(std::move(e));
}

Result<void> ChannelImpl::check_open(const char* op) {
  if (failure_) return std::unexpected(*failure_);
  if (!conn_.is_open()) return fail(Errc::closed, op, "channel closed");
  return {};
}

// ---- acknowledgements from the peer ----

Result<void> ChannelImpl::on_ack(const Message& m) {
  if (m.data.size() != wire::ack_size || m.data[1] != std::byte{0})
    return violation("channel recv", fmt::format("acknowledgement of {} bytes", m.data.size()));
  const auto r = wire::get_u64(m.data.data() + 2);
  const auto d = wire::get_u64(m.data.data() + 10);
  if (r < acked_) return violation("channel recv", fmt::format("acknowledgement went back from {} to {}", acked_, r));
  if (r > next_seq_ - 1) return violation("channel recv", fmt::format("acknowledgement of message {} never sent", r));
  std::uint64_t cancelled_here = 0;
  for (auto s : cancelled_) cancelled_here += (s <= r);
  if (d < peer_discarded_ || d - peer_discarded_ > cancelled_here)
    return violation("channel recv", fmt::format("discarded count {} after {} with {} cancelled", d, peer_discarded_, cancelled_here));
  const auto newly = r - acked_;
  const auto dropped = d - peer_discarded_;
  delivered_ += newly - dropped;
  own_drops_.expired += dropped;
  while (!cancelled_.empty() && cancelled_.front() <= r) cancelled_.pop_front();
  acked_ = r;
  peer_discarded_ = d;
  return {};
}

// ---- sending ----

Result<std::uint64_t> ChannelImpl::hand_over(std::span<const std::byte> payload, Timeout t) {
  wire::encode_data(out_, flags_, next_seq_, payload);
  auto r = conn_.send(out_, t);
  if (!r) {
    const Errc c = r.error().code;
    if (c == Errc::would_block || c == Errc::timeout || c == Errc::too_large || c == Errc::invalid_argument)
      return std::unexpected(r.error());
    if (c == Errc::closed) peer_closed_ = true;
    return fatal(r.error(), false);
  }
  return next_seq_++;
}

// Cancel notices first (they are tiny and someone gave up waiting), then held messages while
// the window is open and the transport takes them without waiting.
Result<void> ChannelImpl::pump() {
  // The rest of a frame the transport kept when an earlier non-blocking write was cut short
  // (Connection::send completes a started frame later): without this, a remainder would wait
  // for this end's next send, which may never come.
  if (auto r = conn_.flush(Timeout::zero()); !r) {
    const Errc c = r.error().code;
    if (c == Errc::closed) {
      peer_reads_ = false;  // what it sent before closing is still received
    } else if (c != Errc::would_block && c != Errc::timeout) {
      return fatal(r.error(), false);
    }
  }
  while (!cancel_owed_.empty()) {
    wire::encode_data(out_, wire::cancel, cancel_owed_.front(), {});
    auto r = conn_.try_send(out_);
    if (!r) return r.error().code == Errc::would_block ? Result<void>{} : fatal(r.error(), false);
    cancel_owed_.pop_front();
  }
  while (!held_.empty() && window_open()) {
    auto s = hand_over(held_.front(), Timeout::zero());
    if (!s) return s.error().code == Errc::would_block ? Result<void>{} : std::unexpected(s.error());
    if (confirm_pending_ && held_.size() == 1) confirm_seq_ = *s;
    held_.pop();
  }
  return {};
}

// Waits for something that may let a caller make progress: an acknowledgement, a message, or
// room in the transport for a held one. Errc::timeout once the deadline passed.
Result<void> ChannelImpl::wait_event(const Deadline& d) {
  if (auto r = pump(); !r) return r;
  if (ack_owed()) {
    auto r = send_ack(Timeout::zero());
    if (!r && r.error().code != Errc::would_block) return r;
  }
  if (d.expired()) return fail(d.immediate() ? Errc::would_block : Errc::timeout, "channel wait");
  {  // a frame's remainder still in the transport: write it in a slice, then read
    auto f = conn_.flush(std::min(left(d), kWriteSlice));
    if (!f) {
      const Errc c = f.error().code;
      if (c == Errc::closed) {
        peer_reads_ = false;
      } else if (c != Errc::timeout && c != Errc::would_block) {
        return fatal(f.error(), false);
      }
      return read_available();
    }
  }
  if (ack_owed()) {  // the transport is full: never block on it without reading (the peer may
                     // be blocked writing to this end just the same)
    auto r = send_ack(std::min(left(d), kWriteSlice));
    if (!r && r.error().code != Errc::timeout && r.error().code != Errc::would_block) return r;
    return read_available();
  }
  if (!held_.empty() && window_open()) {  // the transport is full: write in slices, read in between
    auto s = hand_over(held_.front(), std::min(left(d), kWriteSlice));
    if (s) {
      if (confirm_pending_ && held_.size() == 1) confirm_seq_ = *s;
      held_.pop();
    } else if (s.error().code != Errc::timeout && s.error().code != Errc::would_block) {
      return std::unexpected(s.error());
    }
    return read_available();
  }
  // Owed cancel notices are retried in slices too; otherwise wait for the peer.
  if (auto r = read_once(cancel_owed_.empty() ? left(d) : std::min(left(d), kWriteSlice)); !r) {
    if (r.error().code != Errc::timeout || d.expired()) return r;
    return {};
  }
  return read_available();
}

void ChannelImpl::cancel(std::uint64_t seq) {
  cancelled_.push_back(seq);
  cancel_owed_.push_back(seq);
  (void)pump();
}

// A confirmed send timed out while its message was still held: it is the newest held message
// (one thread at a time, nothing was offered after it). PolicyQueue removes only from the
// front, so the older ones are rotated behind it first; each fits again (one was just taken).
void ChannelImpl::remove_last_held() {
  for (std::size_t n = held_.size() - 1; n > 0; --n) {
    std::vector<std::byte> m = held_.front();
    held_.pop();
    (void)held_.offer(m);
  }
  held_.pop();
  ++own_drops_.expired;
}

Result<void> ChannelImpl::await_ack(std::uint64_t seq, const Deadline& d, bool held_last) {
  for (;;) {
    if (held_last && confirm_seq_ != 0) {
      seq = confirm_seq_;
      held_last = false;
    }
    if (!held_last && acked_ >= seq) {
      confirm_pending_ = false;
      return {};
    }
    if (auto r = wait_event(d); !r) {
      confirm_pending_ = false;
      if (held_last && confirm_seq_ != 0) {  // handed over during that last wait
        seq = confirm_seq_;
        held_last = false;
      }
      if (r.error().code != Errc::timeout && r.error().code != Errc::would_block) return r;
      if (failure_) return std::unexpected(*failure_);
      if (held_last) {
        remove_last_held();
      } else if (acked_ < seq) {
        cancel(seq);
      } else {
        return {};
      }
      return fail(Errc::timeout, "channel send", "not acknowledged by the deadline; cancelled");
    }
  }
}

Result<void> ChannelImpl::send(std::span<const std::byte> data, Timeout timeout) {
  if (auto r = check_open("channel send"); !r) return r;
  if (data.size() > opts_.memory_cap)
    return fail(Errc::too_large, "channel send", fmt::format("{} bytes > memory_cap {}", data.size(), opts_.memory_cap));
  if (data.size() > opts_.transport.max_message - std::min(opts_.transport.max_message, Channel::header_size))
    return fail(Errc::too_large, "channel send", fmt::format("{} bytes + header > max_message {}", data.size(), opts_.transport.max_message));
  const auto d = Deadline::after(timeout);
  if (!held_.empty() || !window_open()) {
    if (auto r = read_available(); !r) return r;
  }
  if (auto r = pump(); !r) return r;

  if (opts_.capacity == 0) {  // rendezvous: nothing is held; wait for the window, then the ack
    while (!window_open()) {
      if (opts_.overflow != Overflow::block) {
        const auto o = held_.offer(data);  // capacity 0: counts the drop or refusal
        ++sent_;
        if (o == PolicyQueue::Offer::refused) return fail(Errc::would_block, "channel send", "the receiver has not taken the previous message");
        return {};
      }
      if (auto r = wait_event(d); !r) return r;
    }
    auto s = hand_over(data, left(d));
    if (!s) return std::unexpected(s.error());
    ++sent_;
    return await_ack(*s, d, false);
  }

  if (held_.empty() && window_open()) {
    auto s = hand_over(data, Timeout::zero());
    if (s) {
      ++sent_;
      if (flags_ & wire::confirm) return await_ack(*s, d, false);
      return {};
    }
    if (s.error().code != Errc::would_block) return std::unexpected(s.error());
  }
  for (;;) {
    switch (held_.offer(data)) {
      case PolicyQueue::Offer::queued:
        ++sent_;
        if (flags_ & wire::confirm) {
          confirm_pending_ = true;
          confirm_seq_ = 0;
          if (auto r = pump(); !r) return r;
          return await_ack(0, d, true);
        }
        return pump();
      case PolicyQueue::Offer::full:
        if (auto r = wait_event(d); !r) return r;
        continue;
      case PolicyQueue::Offer::refused:
        ++sent_;
        return fail(Errc::would_block, "channel send", "queue full (overflow: fail)");
      case PolicyQueue::Offer::dropped:
        ++sent_;
        return {};
      case PolicyQueue::Offer::too_large:
        return fail(Errc::too_large, "channel send", "larger than memory_cap");
    }
  }
}
Result<void> ChannelImpl::flush(Timeout timeout) {
  if (auto r = check_open("channel flush"); !r) return r;
  const auto d = Deadline::after(timeout);
  // An acknowledgement the full transport refused earlier goes out too: a receiver that
  // flushes and then stops calling leaves nothing owed.
  while (!held_.empty() || !cancel_owed_.empty() || ack_owed()) {
    if (auto r = wait_event(d); !r) return r;
  }
  return conn_.flush(left(d));
}

Result<std::size_t> ChannelImpl::poll(Timeout timeout) {
  if (auto r = check_open("channel poll"); !r) return std::unexpected(r.error());
  const auto d = Deadline::after(timeout);
  if (auto r = read_available(); !r) return std::unexpected(r.error());
  if (auto r = pump(); !r) return std::unexpected(r.error());
  if (auto r = maybe_ack(); !r) return std::unexpected(r.error());
  if (inbox_.empty() && !d.immediate()) {
    auto r = wait_event(d);
    if (!r && r.error().code != Errc::timeout && r.error().code != Errc::would_block) return std::unexpected(r.error());
    if (auto p = pump(); !p) return std::unexpected(p.error());
  }
  return inbox_.size();
}

Counters ChannelImpl::stats() const noexcept {
  DropCounts dc = held_.dropped();
  dc.expired += own_drops_.expired;
  dc.peer_died += own_drops_.peer_died;
  return Counters{.sent = sent_, .delivered = delivered_, .received = received_, .dropped = dc,
                  .queued = held_.size() + in_flight(), .queued_bytes = held_.bytes()};
}

}  // namespace ipcx
