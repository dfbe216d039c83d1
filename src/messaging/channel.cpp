// Channel: credits (window), a held queue with an overflow policy, cumulative acknowledgements
// and cancellation, all driven from the caller's own calls (no thread). docs/semantics.md.
#include <ipcx/channel.hpp>

#include <algorithm>
#include <deque>
#include <string>

#include <fmt/format.h>

#include "messaging/channel_wire.hpp"
#include "messaging/policy_queue.hpp"
#include "os/sys.hpp"

namespace ipcx {

namespace wire = messaging::channel_wire;
static_assert(Channel::header_size == wire::data_header);
using messaging::Kind;
using messaging::PolicyQueue;
using os::Deadline;

namespace {
// While held messages wait for room in the transport, the wait for writability is cut into
// slices of this length so acknowledgements keep being read in between (the peer may itself
// be blocked writing acknowledgements to this end).
constexpr Timeout kWriteSlice = std::chrono::milliseconds(2);

Timeout left(const Deadline& d) noexcept { return d.infinite() ? forever : d.remaining(); }
}  // namespace

class ChannelImpl {
 public:
  ChannelImpl(Connection c, const ChannelOptions& o)
      : conn_(std::move(c)), opts_(o), held_(o.queue()),
        window_(o.capacity == 0 ? 1 : o.window),
        ack_threshold_(std::max<std::uint64_t>(1, o.window / 4)),
        flags_(o.capacity == 0 || o.delivery == Delivery::confirmed ? wire::confirm : 0) {}

  Result<void> send(std::span<const std::byte> data, Timeout timeout);
  Result<void> recv(Message& into, Timeout timeout);
  Result<void> flush(Timeout timeout);
  Result<std::size_t> poll(Timeout timeout);
  Counters stats() const noexcept;
  void close() noexcept { conn_.close(); }
  bool is_open() const noexcept { return !failure_ && conn_.is_open(); }

  Connection conn_;
  ChannelOptions opts_;

 private:
  struct Inbound {
    std::uint64_t seq;
    std::uint8_t flags;
    Message msg;
  };

  std::uint64_t in_flight() const noexcept { return (next_seq_ - 1) - acked_; }
  bool window_open() const noexcept { return in_flight() < window_; }
  std::uint64_t resolved() const noexcept { return inbox_.empty() ? last_read_ : inbox_.front().seq - 1; }
  std::uint64_t discarded_through(std::uint64_t r) const noexcept;
  bool ack_owed() const noexcept;

  Result<void> check_open(const char* op);
  Result<std::uint64_t> hand_over(std::span<const std::byte> payload, Timeout t);
  Result<void> pump();
  Result<void> wait_event(const Deadline& d);
  Result<void> read_once(Timeout t);
  Result<void> read_available();
  Result<void> handle(Message& m);
  Result<void> on_data(Message& m);
  Result<void> on_ack(const Message& m);
  Result<void> send_ack(Timeout t);
  Result<void> maybe_ack();
  Result<void> await_ack(std::uint64_t seq, const Deadline& d, bool held_last);
  void cancel(std::uint64_t seq);
  void remove_last_held();
  std::unexpected<Error> fatal(Error e, bool tell_peer);
  std::unexpected<Error> violation(const char* op, std::string detail) {
    return fatal(Error{.code = Errc::protocol, .op = op, .detail = std::move(detail)}, true);
  }
  void settle_peer_gone();

  PolicyQueue held_;
  const std::uint64_t window_;
  const std::uint64_t ack_threshold_;
  const std::uint8_t flags_;
  std::vector<std::byte> out_;
  Message scratch_;
  std::optional<Error> failure_;  // set once the channel is unusable
  bool peer_closed_ = false;

  // Sending side.
  std::uint64_t next_seq_ = 1;           // sequence number of the next message handed over
  std::uint64_t acked_ = 0;              // the peer resolved every message up to this one
  std::uint64_t peer_discarded_ = 0;     // the peer's cumulative count of cancelled messages it dropped
  std::deque<std::uint64_t> cancelled_;  // withdrawn, not yet resolved by the peer (ascending)
  std::deque<std::uint64_t> cancel_owed_;  // cancel notices the transport has not taken yet
  bool confirm_pending_ = false;         // a confirmed send waits for the last held message
  std::uint64_t confirm_seq_ = 0;        // ... which was handed over as this sequence number
  std::uint64_t sent_ = 0, delivered_ = 0;
  DropCounts own_drops_;                 // expired, peer_died (the queue counts the others)

  // Receiving side.
  std::deque<Inbound> inbox_;            // read, not yet taken by the application
  std::uint64_t last_read_ = 0;          // highest data sequence number read
  std::uint64_t last_ack_ = 0;           // `resolved` of the last acknowledgement written
  std::uint64_t last_ack_discarded_ = 0;
  std::deque<std::uint64_t> discarded_pending_;  // cancelled messages dropped from the inbox
  std::uint64_t discarded_ = 0;          // of those, the ones at or below resolved()
  bool ack_urgent_ = false;              // a confirmed message was taken, or one was discarded
  std::uint64_t received_ = 0;
};

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

// ---- acknowledging ----

std::uint64_t ChannelImpl::discarded_through(std::uint64_t r) const noexcept {
  std::uint64_t n = discarded_;
  for (auto s : discarded_pending_) n += (s <= r);
  return n;
}

bool ChannelImpl::ack_owed() const noexcept {
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
    if (auto r = send_ack(left(d)); !r) return r;
  }
  if (d.expired()) return fail(d.immediate() ? Errc::would_block : Errc::timeout, "channel wait");
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
    if (ack_owed()) {  // never block while the sender may wait for this acknowledgement
      if (auto a = send_ack(left(d)); !a) return a;
    }
    if (auto w = read_once(left(d)); !w) return w;
  }
}

Result<void> ChannelImpl::flush(Timeout timeout) {
  if (auto r = check_open("channel flush"); !r) return r;
  const auto d = Deadline::after(timeout);
  while (!held_.empty() || !cancel_owed_.empty()) {
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

// ---- Channel ----

namespace {
Result<void> validate(const ChannelOptions& o) {
  if (o.window == 0 || o.window > ChannelOptions::max_window)
    return fail(Errc::invalid_argument, "channel", fmt::format("window {} outside 1..{}", o.window, ChannelOptions::max_window));
  if (o.memory_cap == 0) return fail(Errc::invalid_argument, "channel", "memory_cap 0: nothing could ever be sent");
  if (o.transport.max_message <= Channel::header_size)
    return fail(Errc::invalid_argument, "channel", fmt::format("transport.max_message {} leaves no room for the {}-byte header",
                                                               o.transport.max_message, Channel::header_size));
  if (o.overflow > Overflow::drop_newest) return fail(Errc::invalid_argument, "channel", "overflow: unknown value");
  if (o.delivery > Delivery::confirmed) return fail(Errc::invalid_argument, "channel", "delivery: unknown value");
  if (o.transport.framing != Framing::frames)
    return fail(Errc::not_supported, "channel", "line framing cannot carry binary channel headers");
  return {};
}
}  // namespace

Channel::Channel() noexcept = default;
Channel::Channel(std::unique_ptr<ChannelImpl> impl) noexcept : impl_(std::move(impl)) {}
Channel::Channel(Channel&&) noexcept = default;
Channel& Channel::operator=(Channel&&) noexcept = default;
Channel::~Channel() = default;

Result<Channel> Channel::wrap(Connection connection, const ChannelOptions& options) {
  if (auto v = validate(options); !v) {
    connection.close();
    return std::unexpected(v.error());
  }
  if (!connection.is_open()) return fail(Errc::closed, "channel", "connection not open");
  if (connection.capabilities().fixed_size != 0) {
    connection.close();
    return fail(Errc::not_supported, "channel", "the transport carries fixed-size messages only");
  }
  return Channel(std::make_unique<ChannelImpl>(std::move(connection), options));
}

Result<Channel> Channel::connect(std::string_view url, const ChannelOptions& options, Timeout timeout) {
  if (auto v = validate(options); !v) return std::unexpected(v.error());
  auto c = ipcx::connect(url, options.transport, timeout);
  if (!c) return std::unexpected(c.error());
  return wrap(std::move(*c), options);
}

Result<Channel> Channel::accept(Listener& listener, const ChannelOptions& options, Timeout timeout) {
  if (auto v = validate(options); !v) return std::unexpected(v.error());
  if (listener.capabilities().fixed_size != 0)
    return fail(Errc::not_supported, "channel", "the transport carries fixed-size messages only");
  auto c = listener.accept(timeout);
  if (!c) return std::unexpected(c.error());
  return wrap(std::move(*c), options);
}

namespace {
std::unexpected<Error> not_open(const char* op) { return fail(Errc::closed, op, "channel not open"); }
}  // namespace

Result<void> Channel::send(std::span<const std::byte> data, Timeout timeout) {
  return impl_ ? impl_->send(data, timeout) : not_open("channel send");
}
Result<Message> Channel::recv(Timeout timeout) {
  Message m;
  if (auto r = recv(m, timeout); !r) return std::unexpected(r.error());
  return m;
}
Result<void> Channel::recv(Message& into, Timeout timeout) {
  return impl_ ? impl_->recv(into, timeout) : not_open("channel recv");
}
Result<void> Channel::flush(Timeout timeout) { return impl_ ? impl_->flush(timeout) : not_open("channel flush"); }
Result<std::size_t> Channel::poll(Timeout timeout) { return impl_ ? impl_->poll(timeout) : not_open("channel poll"); }
std::optional<int> Channel::native_handle() const noexcept { return impl_ ? impl_->conn_.native_handle() : std::nullopt; }
Counters Channel::stats() const noexcept { return impl_ ? impl_->stats() : Counters{}; }
const ChannelOptions& Channel::options() const noexcept {
  static const ChannelOptions none{};
  return impl_ ? impl_->opts_ : none;
}
Connection& Channel::connection() noexcept {
  static thread_local Connection none;
  return impl_ ? impl_->conn_ : none;
}
void Channel::close() noexcept {
  if (impl_) impl_->close();
}
bool Channel::is_open() const noexcept { return impl_ && impl_->is_open(); }

}  // namespace ipcx
