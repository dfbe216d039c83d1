// Pusher and Puller: each message to one worker, round robin over the workers with credit.
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

struct Pusher::Impl final : messaging::Bound {
  PusherOptions opts;
  std::optional<PolicyQueue> backlog;  // messages no worker had credit for
  std::uint64_t accepted = 0;          // pushes that went into the backlog (sent, for `extra`)
  std::uint64_t backlog_out = 0;       // of those, handed to a worker since
  std::size_t next = 0;                // round robin position in order_
  std::vector<std::byte> frame;
  unsigned since_poll = 0;

  ~Impl() override { shutdown(); }

  Result<void> on_pattern(Link&, Kind kind, std::span<const std::byte>) override {
    return fail(Errc::protocol, "pusher",
                fmt::format("protocol: unknown message kind 0x{:02x} for a pusher", static_cast<int>(kind)));
  }

  // The next worker with credit after the last one served, or nullptr.
  Link* pick() {
    const auto n = order_.size();
    for (std::size_t i = 0; i < n; ++i) {
      const auto id = order_[(next + i) % n];
      auto it = links_.find(id);
      if (it != links_.end() && it->second.has_credit()) {
        next = (next + i + 1) % n;
        return &it->second;
      }
    }
    return nullptr;
  }

  void drain_backlog() {
    while (!backlog->empty()) {
      auto* l = pick();
      if (!l) return;
      if (!write(*l, backlog->front())) return;
      ++l->sent;
      ++backlog_out;
      backlog->pop();
    }
  }

  void on_credit(Link&) override { drain_backlog(); }
  void on_gone(Link&) override {}

  // The backlog's share of the totals: what went into it and is neither handed to a worker
  // (then counted by that worker's link) nor still there.
  Counters extra() const override {
    Counters c;
    c.dropped = backlog->dropped();
    c.queued = backlog->size();
    c.queued_bytes = backlog->bytes();
    c.sent = accepted - backlog_out;
    return c;
  }
  std::size_t queue_bytes() const noexcept override { return backlog->bytes(); }
};

Pusher::Pusher(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Pusher::Pusher(Pusher&&) noexcept = default;
Pusher& Pusher::operator=(Pusher&&) noexcept = default;
Pusher::~Pusher() = default;

Result<Pusher> Pusher::bind(std::string_view url, PusherOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  impl->backlog.emplace(options.queue);
  if (auto r = impl->start(url, options.transport, options.server, messaging::kRolePull); !r)
    return std::unexpected(r.error());
  return Pusher(std::move(impl));
}

Result<void> Pusher::push(std::span<const std::byte> data, Timeout timeout) {
  std::lock_guard lk(impl_->mu);
  auto& m = *impl_;
  const auto size = 1 + data.size();
  if (size > m.opts.queue.memory_cap || size > m.opts.transport.max_message)
    return fail(Errc::too_large, "push", fmt::format("{} bytes with its header", size));
  auto& f = m.frame;
  f.resize(size);
  f[0] = std::byte(Kind::work);
  if (!data.empty()) std::memcpy(f.data() + 1, data.data(), data.size());
  if (++m.since_poll >= 16) {
    m.since_poll = 0;
    if (auto r = m.poll(Timeout::zero()); !r) return r;
  }
  // Straight to a worker only when nothing waits before it (the backlog keeps its order).
  if (m.backlog->empty()) {
    if (auto* l = m.pick(); l && m.write(*l, f)) {
      ++l->sent;
      m.after_call();
      return {};
    }
  }
  if (m.opts.queue.overflow == Overflow::block && !m.backlog->has_room(size)) {
    if (auto r = m.serve_until([&] { return m.backlog->has_room(size); }, timeout, "push",
                               "the backlog stayed full (overflow: block)");
        !r)
      return r;
  }
  const auto r = m.backlog->offer(f);
  if (r == PolicyQueue::Offer::full) return fail(Errc::timeout, "push", "the backlog is full");
  ++m.accepted;
  m.drain_backlog();
  m.after_call();
  if (r == PolicyQueue::Offer::refused) return fail(Errc::would_block, "push", "the backlog is full (overflow: fail)");
  return {};
}

Result<void> Pusher::poll(Timeout timeout) {
  std::lock_guard lk(impl_->mu);
  return impl_->poll(timeout);
}

Result<void> Pusher::flush(Timeout timeout) {
  std::lock_guard lk(impl_->mu);
  auto& m = *impl_;
  return m.serve_until(
      [&] {
        return m.backlog->empty() && std::all_of(m.links_.begin(), m.links_.end(), [](const auto& kv) {
                 return !kv.second.session || kv.second.in_flight() == 0;
               });
      },
      timeout, "Pusher::flush", "workers have not taken every message");
}

Result<void> Pusher::wait_workers(std::size_t n, Timeout timeout) {
  std::lock_guard lk(impl_->mu);
  auto& m = *impl_;
  return m.serve_until([&] { return m.ready_links() >= n; }, timeout, "Pusher::wait_workers",
                       fmt::format("fewer than {} workers", n).c_str());
}

std::size_t Pusher::workers() const noexcept {
  std::lock_guard lk(impl_->mu);
  return impl_->ready_links();
}
EndpointStats Pusher::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->stats();
}
std::string Pusher::url() const { return impl_->url(); }

// ---- Puller -----------------------------------------------------------------------------------

struct Puller::Impl {
  messaging::Receiver rx;
  Message msg;
};

Puller::Puller(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Puller::Puller(Puller&&) noexcept = default;
Puller& Puller::operator=(Puller&&) noexcept = default;
Puller::~Puller() = default;

Result<Puller> Puller::connect(std::string_view url, PullerOptions options, Timeout timeout) {
  auto impl = std::make_unique<Impl>();
  if (auto r = impl->rx.open(url, options.transport, timeout, messaging::kRolePull, options.window, "Puller::connect"); !r)
    return std::unexpected(r.error());
  if (auto r = impl->rx.grant(timeout); !r) return std::unexpected(r.error());
  return Puller(std::move(impl));
}

Result<Message> Puller::pull(Timeout timeout) {
  auto& m = *impl_;
  if (auto r = m.rx.next(m.msg, Kind::work, timeout, "Puller::pull"); !r) return std::unexpected(r.error());
  Message out;
  out.data.assign(m.msg.data.begin() + 1, m.msg.data.end());
  m.rx.took();
  return out;
}

std::optional<int> Puller::native_handle() const noexcept { return impl_->rx.native_handle(); }
std::uint64_t Puller::received() const noexcept { return impl_->rx.taken(); }

// ---- stat ------------------------------------------------------------------------------------

Result<std::string> query_stats(std::string_view url, Timeout timeout) {
  const auto until = detail::deadline_after(timeout);
  auto left = [&] { return Timeout(std::max(until - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero())); };
  auto c = connect(url, {}, timeout);
  if (!c) return std::unexpected(c.error());
  const std::byte req[1] = {std::byte(Kind::stat_request)};
  if (auto r = c->send(req, left()); !r) return std::unexpected(r.error());
  Message m;
  for (;;) {
    if (auto r = c->recv(m, left()); !r) return std::unexpected(r.error());
    if (m.data.empty()) return fail(Errc::protocol, "stat", "empty reply");
    const auto kind = static_cast<Kind>(m.data[0]);
    if (kind == Kind::stat_reply) return std::string(messaging::text_of(m.bytes().subspan(1)));
    if (kind == Kind::error) return fail(Errc::closed, "stat", std::string(messaging::text_of(m.bytes().subspan(1))));
    // Anything else (a publication to an earlier connection cannot reach this one) is not an
    // answer: the endpoint does not speak this protocol.
    return fail(Errc::protocol, "stat", fmt::format("unexpected message kind 0x{:02x}", std::to_integer<int>(m.data[0])));
  }
}

}  // namespace ipcx
