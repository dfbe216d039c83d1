// Publisher and Subscriber: fan-out by topic prefix, one queue per subscriber.
#include <ipcx/pubsub.hpp>

#include <algorithm>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "messaging/pubsub_bound.hpp"
#include "messaging/pubsub_client.hpp"
#include "messaging/pubsub_wire.hpp"

namespace ipcx {

using messaging::Kind;
using messaging::Link;
using transport::PolicyQueue;

struct Publisher::Impl final : messaging::Bound {
  PublisherOptions opts;
  std::size_t held = 0;              // bytes in every subscriber's queue
  Counters unrouted;                 // publications no subscriber matched
  std::vector<std::byte> frame;      // the publication being sent (reused)
  std::vector<Link*> matched;        // its subscribers (reused)
  unsigned since_poll = 0;

  ~Impl() override { shutdown(); }

  static bool matches(const Link& l, std::string_view topic) {
    return std::any_of(l.prefixes.begin(), l.prefixes.end(),
                       [&](const std::string& p) { return topic.starts_with(p); });
  }

  void on_open(Link& l) override { l.queue.emplace(opts.queue); }

  Result<void> on_pattern(Link& l, Kind kind, std::span<const std::byte> body) override {
    const auto prefix = messaging::text_of(body);
    if (kind == Kind::subscribe) {
      if (prefix.size() > max_topic)
        return fail(Errc::protocol, "publisher", fmt::format("protocol: prefix of {} bytes (at most {})", prefix.size(), max_topic));
      if (std::find(l.prefixes.begin(), l.prefixes.end(), prefix) != l.prefixes.end()) return {};
      if (l.prefixes.size() >= opts.max_subscriptions)
        return fail(Errc::protocol, "publisher", fmt::format("protocol: more than {} subscriptions", opts.max_subscriptions));
      l.prefixes.emplace_back(prefix);
      return {};
    }
    if (kind == Kind::unsubscribe) {
      std::erase(l.prefixes, prefix);
      return {};
    }
    return fail(Errc::protocol, "publisher",
                fmt::format("protocol: unknown message kind 0x{:02x} for a publisher", static_cast<int>(kind)));
  }

  // Moves queued copies into the window the subscriber granted.
  void on_credit(Link& l) override {
    auto& q = *l.queue;
    while (!q.empty() && l.has_credit()) {
      const auto n = q.front().size();
      if (!write(l, q.front())) break;
      held -= n;
      q.pop();
    }
  }

  void on_gone(Link& l) override {
    held -= l.queue->bytes();
    l.queue->drop_all(&DropCounts::peer_died);
  }

  Counters extra() const override { return unrouted; }
  std::size_t queue_bytes() const noexcept override { return held; }

  // Room for one more copy of `n` bytes for `l` without any drop.
  bool room(const Link& l, std::size_t n) const {
    if (l.queue->empty() && l.has_credit()) return true;
    return l.queue->has_room(n) && held + n <= opts.memory_cap;
  }

  // One copy for `l`: straight into its window when nothing waits before it, else its queue
  // under the overflow policy. Returns false when it was refused (Overflow::fail).
  bool offer(Link& l, std::span<std::byte> f) {
    messaging::put_u64(f.data() + 1, ++l.sent);
    auto& q = *l.queue;
    if (q.empty() && l.has_credit() && write(l, f)) return true;
    if (held + f.size() > opts.memory_cap) {
      // Over the publisher's total: as if this subscriber's queue were full.
      switch (q.options().overflow) {
        case Overflow::block:  // publish() waited for room; the total may still be short
        case Overflow::fail: ++q.dropped().refused; return false;
        case Overflow::drop_newest: ++q.dropped().newest; return true;
        case Overflow::drop_oldest:
          while (!q.empty() && held + f.size() > opts.memory_cap) {
            held -= q.front().size();
            q.pop();
            ++q.dropped().oldest;
          }
          if (held + f.size() > opts.memory_cap) {
            ++q.dropped().newest;  // it holds nothing older to give up
            return true;
          }
          break;
      }
    }
    const auto before = q.bytes();
    const auto r = q.offer(f);
    held = held - before + q.bytes();
    return r != PolicyQueue::Offer::refused && r != PolicyQueue::Offer::full;
  }
};

Publisher::Publisher(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Publisher::Publisher(Publisher&&) noexcept = default;
Publisher& Publisher::operator=(Publisher&&) noexcept = default;
Publisher::~Publisher() = default;

Result<Publisher> Publisher::bind(std::string_view url, PublisherOptions options) {
  if (options.window == 0 || options.window > messaging::kMaxWindow)
    return fail(Errc::invalid_argument, "Publisher::bind", fmt::format("window {} out of 1..{}", options.window, messaging::kMaxWindow));
  if (options.queue.memory_cap > options.memory_cap)
    return fail(Errc::invalid_argument, "Publisher::bind", "queue.memory_cap exceeds memory_cap");
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  impl->window_cap_ = options.window;
  if (auto r = impl->start(url, options.transport, options.server, messaging::kRoleSub); !r)
    return std::unexpected(r.error());
  return Publisher(std::move(impl));
}

Result<void> Publisher::publish(std::string_view topic, std::span<const std::byte> data, Timeout timeout) {
  std::lock_guard lk(impl_->mu);
  auto& m = *impl_;
  if (topic.size() > max_topic)
    return fail(Errc::invalid_argument, "publish", fmt::format("topic of {} bytes (at most {})", topic.size(), max_topic));
  const auto size = messaging::kPublicationHeader + topic.size() + data.size();
  if (size > m.opts.queue.memory_cap || size > m.opts.transport.max_message)
    return fail(Errc::too_large, "publish", fmt::format("{} bytes with its header", size));
  auto& f = m.frame;
  f.resize(size);
  f[0] = std::byte(Kind::publication);
  f[9] = std::byte(topic.size());
  if (!topic.empty()) std::memcpy(f.data() + messaging::kPublicationHeader, topic.data(), topic.size());
  if (!data.empty()) std::memcpy(f.data() + messaging::kPublicationHeader + topic.size(), data.data(), data.size());

  // Acknowledgements and new subscribers are read every few publications, and at once when a
  // subscriber's window is full.
  if (++m.since_poll >= 16) {
    m.since_poll = 0;
    if (auto r = m.poll(Timeout::zero()); !r) return r;
  }
  auto collect = [&] {
    m.matched.clear();
    for (auto id : m.order_)
      if (auto it = m.links_.find(id); it != m.links_.end() && it->second.session && it->second.ready &&
                                       Impl::matches(it->second, topic))
        m.matched.push_back(&it->second);
  };
  collect();
  if (m.opts.queue.overflow == Overflow::block) {
    auto all_room = [&] {
      return std::all_of(m.matched.begin(), m.matched.end(), [&](Link* l) { return l->session == nullptr || m.room(*l, size); });
    };
    if (!all_room()) {
      if (auto r = m.serve_until([&] { collect(); return all_room(); }, timeout, "publish",
                                 "a subscriber's queue stayed full (overflow: block)");
          !r)
        return r;
    }
  }
  if (m.matched.empty()) {
    ++m.unrouted.sent;
    ++m.unrouted.dropped.no_route;
    return {};
  }
  bool refused = false;
  for (auto* l : m.matched)
    if (!m.offer(*l, f)) refused = true;
  m.after_call();
  if (refused) return fail(Errc::would_block, "publish", "a subscriber's queue is full (overflow: fail)");
  return {};
}

Result<void> Publisher::poll(Timeout timeout) {
  std::lock_guard lk(impl_->mu);
  return impl_->poll(timeout);
}

Result<void> Publisher::flush(Timeout timeout) {
  std::lock_guard lk(impl_->mu);
  auto& m = *impl_;
  return m.serve_until(
      [&] {
        return std::all_of(m.links_.begin(), m.links_.end(), [](const auto& kv) {
          return !kv.second.session || (kv.second.queue->empty() && kv.second.in_flight() == 0);
        });
      },
      timeout, "Publisher::flush", "subscribers have not taken every publication");
}

Result<void> Publisher::wait_subscribers(std::size_t n, Timeout timeout) {
  std::lock_guard lk(impl_->mu);
  auto& m = *impl_;
  return m.serve_until([&] { return m.ready_links() >= n; }, timeout, "Publisher::wait_subscribers",
                       fmt::format("fewer than {} subscribers", n).c_str());
}

std::size_t Publisher::subscribers() const noexcept {
  std::lock_guard lk(impl_->mu);
  return impl_->ready_links();
}
EndpointStats Publisher::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->stats();
}
std::string Publisher::url() const { return impl_->url(); }

// ---- Subscriber -------------------------------------------------------------------------------

struct Subscriber::Impl {
  messaging::Receiver rx;
  SubscriberStats stats;
  std::uint64_t last_seq = 0;
  Message msg;
};

Subscriber::Subscriber(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Subscriber::Subscriber(Subscriber&&) noexcept = default;
Subscriber& Subscriber::operator=(Subscriber&&) noexcept = default;
Subscriber::~Subscriber() = default;

namespace {
Result<void> check_prefix(std::string_view p, const char* op) {
  if (p.size() > max_topic)
    return fail(Errc::invalid_argument, op, fmt::format("prefix of {} bytes (at most {})", p.size(), max_topic));
  return {};
}
}  // namespace

Result<Subscriber> Subscriber::connect(std::string_view url, std::vector<std::string> prefixes,
                                       SubscriberOptions options, Timeout timeout) {
  for (const auto& p : prefixes)
    if (auto r = check_prefix(p, "Subscriber::connect"); !r) return std::unexpected(r.error());
  auto impl = std::make_unique<Impl>();
  if (auto r = impl->rx.open(url, options.transport, timeout, messaging::kRoleSub, options.window, "Subscriber::connect"); !r)
    return std::unexpected(r.error());
  for (const auto& p : prefixes)
    if (auto r = impl->rx.send(messaging::tagged(Kind::subscribe, p), timeout); !r) return std::unexpected(r.error());
  if (auto r = impl->rx.grant(timeout); !r) return std::unexpected(r.error());
  return Subscriber(std::move(impl));
}

Result<void> Subscriber::subscribe(std::string_view prefix, Timeout timeout) {
  if (auto r = check_prefix(prefix, "subscribe"); !r) return r;
  return impl_->rx.send(messaging::tagged(Kind::subscribe, prefix), timeout);
}

Result<void> Subscriber::unsubscribe(std::string_view prefix, Timeout timeout) {
  if (auto r = check_prefix(prefix, "unsubscribe"); !r) return r;
  return impl_->rx.send(messaging::tagged(Kind::unsubscribe, prefix), timeout);
}

Result<Publication> Subscriber::recv(Timeout timeout) {
  Publication p;
  if (auto r = recv(p, timeout); !r) return std::unexpected(r.error());
  return p;
}

Result<void> Subscriber::recv(Publication& p, Timeout timeout) {
  auto& m = *impl_;
  if (auto r = m.rx.next(m.msg, Kind::publication, timeout, "Subscriber::recv"); !r) return std::unexpected(r.error());
  const auto b = m.msg.bytes();
  if (b.size() < messaging::kPublicationHeader ||
      b.size() < messaging::kPublicationHeader + std::to_integer<std::size_t>(b[9]))
    return fail(Errc::protocol, "Subscriber::recv", fmt::format("publication of {} bytes is truncated", b.size()));
  const auto seq = messaging::get_u64(b.data() + 1);
  if (seq <= m.last_seq)
    return fail(Errc::protocol, "Subscriber::recv", fmt::format("sequence {} after {}", seq, m.last_seq));
  const auto tlen = std::to_integer<std::size_t>(b[9]);
  p.topic.assign(reinterpret_cast<const char*>(b.data()) + messaging::kPublicationHeader, tlen);
  p.payload.data.assign(b.begin() + static_cast<std::ptrdiff_t>(messaging::kPublicationHeader + tlen), b.end());
  p.sequence = seq;
  p.gap = seq - m.last_seq - 1;
  m.last_seq = seq;
  m.stats.gaps += p.gap;
  ++m.stats.received;
  m.rx.took();
  return {};
}

std::optional<int> Subscriber::native_handle() const noexcept { return impl_->rx.native_handle(); }
SubscriberStats Subscriber::stats() const noexcept { return impl_->stats; }

}  // namespace ipcx
