#include "messaging/pubsub_bound.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "messaging/pubsub_wire.hpp"
#include "messaging/serve.hpp"

namespace ipcx::messaging {

namespace {
void add(Counters& into, const Counters& c) {
  into.sent += c.sent;
  into.delivered += c.delivered;
  into.received += c.received;
  into.queued += c.queued;
  into.queued_bytes += c.queued_bytes;
  into.dropped.oldest += c.dropped.oldest;
  into.dropped.newest += c.dropped.newest;
  into.dropped.refused += c.dropped.refused;
  into.dropped.peer_died += c.dropped.peer_died;
  into.dropped.no_route += c.dropped.no_route;
  into.dropped.expired += c.dropped.expired;
}
}  // namespace

Counters Link::counters() const {
  Counters c;
  c.sent = sent;
  c.delivered = acked;
  if (queue) {
    c.dropped = queue->dropped();
    c.queued = queue->size();
    c.queued_bytes = queue->bytes();
  }
  c.dropped.peer_died += peer_died;
  c.queued += in_flight();
  return c;
}

PeerStats Link::stats() const {
  return {.id = id, .peer = cred, .counters = counters(), .in_flight = static_cast<std::size_t>(in_flight()),
          .prefixes = prefixes};
}

Result<void> Bound::start(std::string_view url, const Options& transport, ServerOptions so, std::string_view role) {
  role_ = std::string(role);
  // Writes are batched by the calls made on the endpoint (publish, push, poll), and a full
  // peer must only ever pause, never be dropped under a handler's feet.
  so.caller_flushes = true;
  so.slow_peer = SlowPeer::pause;
  Server::Handlers h;
  h.on_open = [this](Session& s) {
    if (closing_) return;
    auto [it, fresh] = links_.try_emplace(s.id());
    auto& l = it->second;
    l.id = s.id();
    l.session = &s;
    l.cred = s.peer();
    order_.push_back(s.id());
    on_open(l);
  };
  h.on_message = [this](Session& s, Message& m) { handle(s, m); };
  h.on_drain = [this](Session& s) {
    if (closing_) return;
    if (auto it = links_.find(s.id()); it != links_.end()) on_credit(it->second);
  };
  h.on_close = [this](Session& s, const Error&) {
    if (closing_) return;
    auto it = links_.find(s.id());
    if (it == links_.end()) return;
    auto& l = it->second;
    l.session = nullptr;
    // Whatever it held unacknowledged may or may not have reached its application: never
    // re-sent, counted.
    l.peer_died += l.in_flight();
    l.written = l.acked;
    on_gone(l);
  };
  auto served = serve(url, std::move(h), so, transport);
  if (!served) return std::unexpected(served.error());
  server_.emplace(std::move(served->server));
  url_ = std::move(served->url);
  flusher_ = std::thread([this] { flusher_loop(); });
  return {};
}

void Bound::reject(Session& s, std::string reason) {
  // The peer learns why (an error message), then the connection ends; the others go on.
  (void)s.send(tagged(Kind::error, reason));
  s.close();
}

void Bound::handle(Session& s, Message& m) {
  if (closing_) return;
  auto it = links_.find(s.id());
  if (it == links_.end() || !it->second.session) return;
  auto& l = it->second;
  const auto b = m.bytes();
  if (b.empty()) return reject(s, "protocol: empty message");
  const auto kind = static_cast<Kind>(b[0]);
  const auto body = b.subspan(1);
  switch (kind) {
    case Kind::stat_request: {
      if (!body.empty()) return reject(s, "protocol: stat_request carries no fields");
      (void)s.send(tagged(Kind::stat_reply, to_json(stats().total)));
      return;
    }
    case Kind::hello:
      if (l.hello) return reject(s, "protocol: second hello");
      if (text_of(body) != role_)
        return reject(s, fmt::format("protocol: this endpoint serves role '{}', not '{}'", role_,
                                     text_of(body.first(std::min<std::size_t>(body.size(), 32)))));
      l.hello = true;
      return;
    case Kind::credit: {
      if (!l.hello) return reject(s, "protocol: credit before hello");
      if (body.size() != kCreditSize - 1) return reject(s, fmt::format("protocol: credit of {} bytes, not 12", body.size()));
      const auto taken = get_u64(body.data());
      const auto window = get_u32(body.data() + 8);
      if (window == 0 || window > kMaxWindow) return reject(s, fmt::format("protocol: window {} out of 1..{}", window, kMaxWindow));
      if (taken < l.acked || taken > l.written)
        return reject(s, fmt::format("protocol: acknowledges {} messages; {} acknowledged, {} sent", taken, l.acked, l.written));
      l.acked = taken;
      l.window = std::min<std::uint64_t>(window, window_cap_);
      l.ready = true;
      on_credit(l);
      return;
    }
    case Kind::error: s.close(); return;
    default:
      if (!l.hello) return reject(s, fmt::format("protocol: kind 0x{:02x} before hello", std::to_integer<int>(b[0])));
      if (auto r = on_pattern(l, kind, body); !r) return reject(s, r.error().detail);
      return;
  }
}

bool Bound::write(Link& l, std::span<const std::byte> frame) {
  if (!l.session) return false;
  if (auto r = l.session->send(frame); !r) return false;
  ++l.written;
  if (l.pending && (l.stalled || l.session->queued() < kBatchBytes)) return true;  // the batch grows
  const auto now = std::chrono::steady_clock::now();
  const bool now_due = l.pending || l.acked + 1 == l.written || now - l.last_write >= kQuiet;
  if (now_due) {
    l.last_write = now;
    l.session->flush();  // may end the session: the link stays until reap()
    if (!l.session || l.session->queued() == 0) {
      l.pending = false;  // (its entry in pending_, if any, is skipped)
      return true;
    }
    l.stalled = true;  // the socket is full: the flusher (or the engine) writes the rest
  }
  if (!l.pending) {
    l.pending = true;
    l.pending_since = now;
    pending_.push_back(l.id);
    if (flusher_idle_) wake_.notify_one();
  }
  return true;
}

bool Bound::flush_pending(bool all, bool stalled_too) {
  const auto now = std::chrono::steady_clock::now();
  bool progress = false;
  std::size_t keep = 0;
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    auto it = links_.find(pending_[i]);
    if (it == links_.end() || !it->second.pending) continue;
    auto& l = it->second;
    if ((l.stalled && !stalled_too) || (!l.stalled && !all && now - l.pending_since < kQuiet)) {
      pending_[keep++] = l.id;
      continue;
    }
    l.last_write = now;
    const auto before = l.session ? l.session->queued() : 0;
    if (l.session) l.session->flush();  // may end the session: the link stays until reap()
    const auto after = l.session ? l.session->queued() : 0;
    if (l.stalled && after < before) progress = true;
    if (after > 0) {
      l.stalled = true;
      pending_[keep++] = l.id;
    } else {
      l.pending = l.stalled = false;
    }
  }
  pending_.resize(keep);
  return progress;
}

void Bound::flusher_loop() {
  std::unique_lock lk(mu);
  auto interval = std::chrono::duration_cast<std::chrono::microseconds>(kTail);
  while (!flusher_stop_) {
    if (pending_.empty()) {
      flusher_idle_ = true;
      wake_.wait(lk, [this] { return flusher_stop_ || !pending_.empty(); });
      flusher_idle_ = false;
      interval = kTail;
      continue;
    }
    wake_.wait_for(lk, interval);
    if (flusher_stop_ || !server_) continue;
    const bool progress = flush_pending(false, true);
    const bool stalled = std::any_of(pending_.begin(), pending_.end(), [this](Session::Id id) {
      auto it = links_.find(id);
      return it != links_.end() && it->second.stalled;
    });
    // A socket that stays full (a stopped reader) is retried less and less often.
    interval = stalled && !progress ? std::min<std::chrono::microseconds>(interval * 2, kStalledMax) : kTail;
  }
}

void Bound::shutdown() noexcept {
  {
    std::lock_guard lk(mu);
    flusher_stop_ = true;
    closing_ = true;
  }
  wake_.notify_one();
  if (flusher_.joinable()) flusher_.join();
  server_.reset();
}

void Bound::reap() {
  std::erase_if(order_, [this](Session::Id id) {
    auto it = links_.find(id);
    if (it == links_.end()) return true;
    if (it->second.session) return false;
    add(gone_, it->second.counters());
    links_.erase(it);
    return true;
  });
}

Result<void> Bound::poll(Timeout timeout) {
  // Nothing pending waits while the loop sleeps; a zero-timeout round (the one publish/push
  // make every few calls) leaves batches in the making to their size and age limits.
  const bool all = timeout != Timeout::zero();
  flush_pending(all, all);
  auto r = server_->run_once(timeout);
  flush_pending(all, all);
  reap();
  if (!r) return std::unexpected(r.error());
  return {};
}

std::size_t Bound::ready_links() const noexcept {
  return static_cast<std::size_t>(std::count_if(links_.begin(), links_.end(),
                                                [](const auto& kv) { return kv.second.session && kv.second.ready; }));
}

EndpointStats Bound::stats() const {
  EndpointStats out;
  out.total = gone_;
  add(out.total, extra());
  for (auto id : order_) {
    auto it = links_.find(id);
    if (it == links_.end()) continue;
    auto ps = it->second.stats();
    add(out.total, ps.counters);
    if (it->second.session) out.peers.push_back(std::move(ps));
  }
  out.queue_bytes = queue_bytes();
  out.server = server_->stats();
  return out;
}

}  // namespace ipcx::messaging
