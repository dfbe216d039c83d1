// ipcxd's queues: opening and recovering them, the queue requests, and delivery to gets and
// subscriptions (round-robin, within each consumer's prefetch and its connection's room).
#include <sys/stat.h>

#include <fstream>

#include <fmt/format.h>

#include "broker/broker_impl.hpp"

namespace ipcx::broker {

using Impl = Broker::Impl;

Slot* Impl::slot(std::string_view name) {
  auto it = slots.find(name);
  return it == slots.end() ? nullptr : &it->second;
}

Slot* Impl::existing(Session& s, std::uint64_t corr, const std::string& name) {
  if (auto* sl = slot(name)) return sl;
  reply_error(s, corr, Errc::not_found, fmt::format("no queue named {:?}", name));
  return nullptr;
}

namespace {
// A removed queue leaves its last seq in STATE/queues/.removed/NAME, so that a queue made again
// under that name continues the numbering: an ack or a lease of the old one's (queue, seq)
// never settles a message of the new one.
std::filesystem::path tombstone(const std::filesystem::path& state, std::string_view name) {
  return state / "queues" / ".removed" / std::string(name);
}
std::uint64_t first_seq_after(const std::filesystem::path& state, std::string_view name) {
  std::ifstream in(tombstone(state, name));
  std::uint64_t last = 0;
  if (in && (in >> last)) return last + 1;
  return 1;
}
}  // namespace

Result<Slot*> Impl::open_queue(const std::string& name, const wire::QueueConfig& config, bool create, bool* created) {
  if (auto* s = slot(name)) return s;
  RecoveryReport report;
  auto q = Queue::open(queue_dir(name), name, config, create, &report, first_seq_after(options.state_dir, name));
  if (!q) return std::unexpected(q.error());
  for (auto& p : report.problems) log(fmt::format("queue {}: {}", name, p));
  if (report.corrupt_records || report.torn_tail_bytes)
    log(fmt::format("queue {}: recovered {} records; {} corrupt (quarantined in {}), {} bytes of torn tail cut", name, report.records,
                    report.corrupt_records, (queue_dir(name) / "log" / "quarantine").string(), report.torn_tail_bytes));
  if (created) *created = true;
  auto& s = slots[name];
  s.queue = std::shared_ptr<Queue>(std::move(*q));
  return &s;
}

Result<void> Impl::recover_all() {
  std::error_code ec;
  const auto root = options.state_dir / "queues";
  std::filesystem::create_directories(root, ec);
  if (ec) return fail_errno(ec.value(), "mkdir", root.string());
  ::chmod(options.state_dir.c_str(), 0700);
  ::chmod(root.c_str(), 0700);
  for (auto& e : std::filesystem::directory_iterator(root, ec)) {
    const auto name = e.path().filename().string();
    if (!e.is_directory() || !wire::valid_queue_name(name)) continue;
    if (auto r = open_queue(name, {}, false, nullptr); !r) log(fmt::format("queue {} not opened: {}", name, r.error().message()));
  }
  if (ec) return fail_errno(ec.value(), "read", root.string());
  return {};
}

// Puts a copy of `m` in the queue's dead-letter queue (`<name>.dlq`, made on first use). A
// dead-letter queue's own dead letters are not copied anywhere (dropped, counted by the caller).
void Impl::copy_to_dead_letters(Slot& s, const Stored& m) {
  auto& q = *s.queue;
  if (q.is_dead_letter_queue()) return;
  const std::string dlq = q.name() + ".dlq";
  wire::QueueConfig c{.max_attempts = 0, .dedup_window_ms = 0, .sync = q.config().sync};
  auto d = open_queue(dlq, c, true, nullptr);
  if (!d) return log(fmt::format("queue {}: dead-letter queue not opened: {}", q.name(), d.error().message()));
  std::vector<std::pair<std::uint64_t, Stored>> none;
  if (auto p = (*d)->queue->publish(m.id, m.body, m.published_ms, none, /*dead_letter=*/true); !p)
    log(fmt::format("queue {}: a message not dead-lettered: {}", q.name(), p.error().message()));
  else
    request_sync(**d);
  dispatch(**d);
}

// Moves a live message to the dead-letter queue and removes it here.
void Impl::dead_letter(Slot& s, std::uint64_t seq, Removal why) {
  const Stored* m = s.queue->find(seq);
  if (!m) return;
  copy_to_dead_letters(s, *m);
  s.queue->remove(seq, why);
}

void Impl::send_delivery(Session& session, std::uint64_t corr, std::uint64_t tag, Queue& q, std::uint64_t seq) {
  const Stored& m = *q.find(seq);
  wire::Delivery d{.tag = tag, .queue = q.name(), .seq = seq, .attempt = m.attempts, .id = m.id, .published_ms = m.published_ms, .body = m.body};
  wire::encode(out, d, corr);
  if (!session.send(out)) q.give_back(seq);  // the connection is going: on_close gives back the rest
}

// True when a ready message can be delivered, after expiring and dead-lettering what is due.
bool Impl::front_deliverable(Slot& s) {
  auto& q = *s.queue;
  for (auto seq : q.expired(unix_ms(), 256)) dead_letter(s, seq, Removal::expired);
  while (q.has_ready()) {
    const auto seq = q.peek();
    if (!q.over_attempts(seq)) return true;
    dead_letter(s, seq, Removal::dead_lettered);
  }
  return false;
}

// Hands ready messages to waiting gets, then to subscriptions with room, round-robin.
void Impl::dispatch(Slot& s) {
  auto& q = *s.queue;
  const auto now = Clock::now();
  while (!s.waiters.empty() && front_deliverable(s)) {
    auto w = s.waiters.front();
    s.waiters.pop_front();
    auto* session = server->find(w.session);
    if (!session || !session->open()) continue;
    auto seq = q.take({.session = w.session, .tag = 0, .deadline = now + std::chrono::milliseconds(w.lease_ms)});
    send_delivery(*session, w.corr, 0, q, *seq);
  }
  const std::size_t limit = server->options().max_queued;
  std::size_t idle = 0;
  while (!s.consumers.empty() && idle < s.consumers.size() && front_deliverable(s)) {
    auto& c = s.consumers[s.next % s.consumers.size()];
    s.next = (s.next + 1) % s.consumers.size();
    auto* session = server->find(c.session);
    if (c.unacked >= c.prefetch || !session || !session->open() || session->queued() >= limit) {
      ++idle;
      continue;
    }
    idle = 0;
    auto seq = q.take({.session = c.session, .tag = c.tag, .deadline = now + std::chrono::milliseconds(q.config().ack_timeout_ms)});
    ++c.unacked;
    send_delivery(*session, 0, c.tag, q, *seq);
  }
}

Consumer* Impl::consumer_of(Slot& s, std::uint64_t tag) {
  for (auto& c : s.consumers)
    if (c.tag == tag) return &c;
  return nullptr;
}

// A message out with a subscription came back (ack, nack, timeout): its consumer has room.
void Impl::release(Slot& s, std::uint64_t seq) {
  if (const Holder* h = s.queue->holder(seq); h && h->tag != 0)
    if (auto* c = consumer_of(s, h->tag); c && c->unacked > 0) --c->unacked;
}

// Ends a queue subscription: what it holds unacknowledged goes back to the queue.
void Impl::end_consumer(std::uint64_t tag, Session::Id session) {
  auto it = consumer_queue.find(tag);
  if (it == consumer_queue.end()) return;
  if (auto* s = slot(it->second)) {
    for (auto seq : s->queue->held_by(session, tag))
      if (s->queue->holder(seq)->tag != 0) s->queue->give_back(seq);  // leases outlive their connection
    std::erase_if(s->consumers, [&](const Consumer& c) { return c.tag == tag; });
    s->queue->consumers = static_cast<std::uint32_t>(s->consumers.size());
    dispatch(*s);
  }
  consumer_queue.erase(it);
}

// Ack timeouts and leases, TTLs, gets that waited long enough, tidying.
void Impl::tick_queues() {
  const auto now = Clock::now();
  const auto now_ms = unix_ms();
  for (auto& [name, sl] : slots) {
    for (auto seq : sl.queue->overdue(now)) {
      release(sl, seq);
      sl.queue->give_back(seq);
    }
    while (!sl.waiters.empty() && sl.waiters.front().deadline <= now) {
      auto w = sl.waiters.front();
      sl.waiters.pop_front();
      if (auto* session = server->find(w.session)) reply_error(*session, w.corr, Errc::timeout, fmt::format("no message in {} within the wait", name));
    }
    sl.queue->tidy(now_ms);
    dispatch(sl);
  }
}

void Impl::on_queue_request(Session& s, const wire::Header& h, std::span<const std::byte> in) {
  switch (h.op) {
    case wire::Op::declare: {
      wire::Declare m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!wire::valid_queue_name(m.queue))
        return reply_error(s, h.corr, Errc::invalid_argument,
                           fmt::format("{:?} is not a queue name (1-128 of A-Z a-z 0-9 . _ -, not starting with . or -)", m.queue));
      if (!permit(s, h.corr, Kind::queue, m.queue, Right::admin)) return;
      if (auto v = wire::validate(m.config); !v) return reply_error(s, h.corr, v.error());
      bool created = false;
      auto sl = open_queue(m.queue, m.config, true, &created);
      if (!sl) return reply_error(s, h.corr, sl.error());
      return reply(s, h.corr, wire::Ok{.value = created ? 1u : 0u});
    }
    case wire::Op::publish: {
      wire::Publish m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!permit(s, h.corr, Kind::queue, m.queue, Right::publish)) return;
      auto* sl = existing(s, h.corr, m.queue);
      if (!sl) return;
      std::vector<std::pair<std::uint64_t, Stored>> evicted;
      auto p = sl->queue->publish(m.id, m.body, unix_ms(), evicted);
      // Overflow::drop_oldest: the evicted go to the dead-letter queue.
      for (auto& [seq, stored] : evicted) {
        copy_to_dead_letters(*sl, stored);
        if (!sl->queue->is_dead_letter_queue()) ++sl->queue->counters.dead_lettered;
      }
      if (!p) return reply_error(s, h.corr, p.error());
      if (p->duplicate || !sl->queue->needs_sync()) {
        reply(s, h.corr, wire::Confirm{.seq = p->seq, .duplicate = static_cast<std::uint8_t>(p->duplicate)});
      } else {
        sl->confirms.push_back({.session = s.id(), .corr = h.corr, .seq = p->seq});
        request_sync(*sl);
      }
      return dispatch(*sl);
    }
    case wire::Op::consume: {
      wire::Consume m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!permit(s, h.corr, Kind::queue, m.queue, Right::consume)) return;
      auto* sl = existing(s, h.corr, m.queue);
      if (!sl) return;
      if (m.prefetch == 0 || m.prefetch > 65536)
        return reply_error(s, h.corr, Errc::invalid_argument, fmt::format("prefetch {} is not within 1..65536", m.prefetch));
      const auto tag = next_tag++;
      sl->consumers.push_back({.tag = tag, .session = s.id(), .prefetch = m.prefetch, .unacked = 0});
      sl->queue->consumers = static_cast<std::uint32_t>(sl->consumers.size());
      consumer_queue[tag] = m.queue;
      conns[s.id()].consumers.insert(tag);
      reply(s, h.corr, wire::Ok{.value = tag});
      return dispatch(*sl);
    }
    case wire::Op::cancel: {
      wire::Cancel m;
      if (!decode_or_reply(s, h, in, m)) return;
      auto& mine = conns[s.id()].consumers;
      if (!mine.contains(m.tag)) return reply_error(s, h.corr, Errc::not_found, fmt::format("no subscription {} on this connection", m.tag));
      mine.erase(m.tag);
      end_consumer(m.tag, s.id());
      return reply(s, h.corr, wire::Ok{});
    }
    case wire::Op::ack:
    case wire::Op::nack: {
      wire::Nack m;
      if (h.op == wire::Op::ack) {
        wire::Ack a;
        if (!decode_or_reply(s, h, in, a)) return;
        m = {.queue = a.queue, .seq = a.seq, .requeue = 0};
      } else if (!decode_or_reply(s, h, in, m)) {
        return;
      }
      if (!permit(s, h.corr, Kind::queue, m.queue, Right::consume)) return;
      auto* sl = existing(s, h.corr, m.queue);
      if (!sl) return;
      if (!sl->queue->is_out(m.seq))
        return reply_error(s, h.corr, Errc::not_found,
                           fmt::format("message {} of {} is not out for delivery (acknowledged already, or redelivered after its ack timeout)", m.seq, m.queue));
      // A subscription's delivery is settled by the connection it went to; only a lease (get)
      // may be settled by any connection with the consume right.
      if (const Holder* holder = sl->queue->holder(m.seq); holder->tag != 0 && holder->session != s.id())
        return reply_error(s, h.corr, Errc::permission_denied,
                           fmt::format("message {} of {} was delivered to another connection's subscription", m.seq, m.queue));
      release(*sl, m.seq);
      if (h.op == wire::Op::ack) sl->queue->remove(m.seq, Removal::acked);
      else if (m.requeue) sl->queue->give_back(m.seq);
      else dead_letter(*sl, m.seq, Removal::dead_lettered);
      reply(s, h.corr, wire::Ok{});
      return dispatch(*sl);
    }
    case wire::Op::get: {
      wire::Get m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!permit(s, h.corr, Kind::queue, m.queue, Right::consume)) return;
      auto* sl = existing(s, h.corr, m.queue);
      if (!sl) return;
      if (m.lease_ms == 0) return reply_error(s, h.corr, Errc::invalid_argument, "a lease of 0 ms");
      sl->waiters.push_back({.session = s.id(), .corr = h.corr, .lease_ms = m.lease_ms, .deadline = Clock::now() + std::chrono::milliseconds(m.wait_ms)});
      dispatch(*sl);
      // Nothing came at once and the caller would not wait: say so now.
      if (m.wait_ms == 0 && !sl->waiters.empty() && sl->waiters.back().corr == h.corr && sl->waiters.back().session == s.id()) {
        sl->waiters.pop_back();
        reply_error(s, h.corr, Errc::timeout, fmt::format("queue {} has no ready message", m.queue));
      }
      return;
    }
    case wire::Op::purge: {
      wire::Purge m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!permit(s, h.corr, Kind::queue, m.queue, Right::admin)) return;
      auto* sl = existing(s, h.corr, m.queue);
      if (!sl) return;
      return reply(s, h.corr, wire::Ok{.value = sl->queue->purge()});
    }
    case wire::Op::remove: {
      wire::Remove m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!permit(s, h.corr, Kind::queue, m.queue, Right::admin)) return;
      auto* sl = existing(s, h.corr, m.queue);
      if (!sl) return;
      auto q = sl->queue;
      // Subscriptions end: their connections learn it from a failed ack or cancel.
      for (auto& c : sl->consumers) {
        consumer_queue.erase(c.tag);
        if (auto it = conns.find(c.session); it != conns.end()) it->second.consumers.erase(c.tag);
        // The consumer is told, after the deliveries already on their way: its next() fails.
        if (auto* session = server->find(c.session)) {
          wire::Ended e{.tag = c.tag, .reason = fmt::format("queue {} was removed", m.queue)};
          wire::encode(out, e, 0);
          (void)session->send(out);
        }
      }
      for (auto& c : sl->confirms)
        if (auto* session = server->find(c.session)) reply_error(*session, c.corr, Errc::not_found, fmt::format("queue {} was removed", m.queue));
      for (auto& w : sl->waiters)
        if (auto* session = server->find(w.session)) reply_error(*session, w.corr, Errc::not_found, fmt::format("queue {} was removed", m.queue));
      slots.erase(m.queue);
      std::error_code ec;
      std::filesystem::create_directories(tombstone(options.state_dir, m.queue).parent_path(), ec);
      const auto last = std::to_string(q->last_seq());
      if (auto r = write_file_durably(tombstone(options.state_dir, m.queue), std::as_bytes(std::span(last))); !r)
        log(fmt::format("queue {}: its last seq was not kept ({}); a queue made again under its name restarts at 1", m.queue, r.error().message()));
      if (auto r = q->destroy(); !r) return reply_error(s, h.corr, r.error());
      return reply(s, h.corr, wire::Ok{});
    }
    case wire::Op::list: {
      if (!policy.knows(s.peer())) return (void)permit(s, h.corr, Kind::queue, "*", Right::lookup);
      wire::Queues r;
      const auto peer = s.peer();
      for (auto& [name, sl] : slots)
        if (policy.allows(peer, Kind::queue, name, Right::consume) || policy.allows(peer, Kind::queue, name, Right::publish) ||
            policy.allows(peer, Kind::queue, name, Right::admin) || policy.allows(peer, Kind::queue, name, Right::lookup))
          r.queues.push_back(sl.queue->info());
      return reply(s, h.corr, std::move(r));
    }
    default:
      return reply_error(s, h.corr, Errc::protocol, fmt::format("op {} is not a queue request", static_cast<unsigned>(h.op)));
  }
}

}  // namespace ipcx::broker
