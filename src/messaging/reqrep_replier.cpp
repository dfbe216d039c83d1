// The replier: request/reply on the server engine. A request is handed to the handler as soon
// as it is read; the reply is queued on the session and written at the end of the engine's
// turn for that connection (Session::send), so an immediate reply costs one write.
#include <ipcx/reqrep.hpp>

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "transport/policy_queue.hpp"
#include "messaging/reqrep_wire.hpp"
#include "messaging/serve.hpp"

namespace ipcx {

using messaging::Kind;
using transport::PolicyQueue;
namespace rr = messaging::rr;
using rr::Clock;

namespace {

// What a replier keeps per connection.
struct PerConn {
  std::vector<RequestId> ids;         // in flight (handed to the handler) and in the backlog
  std::size_t in_flight = 0;
  std::optional<PolicyQueue> backlog;  // requests past max_in_flight, local deadline in the header
  bool pumping = false;
  bool pump_due = false;  // a pump is posted
};

}  // namespace

struct ReplyHandle::Owner {
  std::weak_ptr<Replier::Impl> impl;
};

struct Request::Impl {
  Replier::Impl* replier = nullptr;
  Session::Id session = 0;
  bool replied = false;
  bool deferred = false;
};

struct Replier::Impl : std::enable_shared_from_this<Replier::Impl> {
  Handler handler;
  ReplierOptions opts;
  std::string url;
  Counters c;
  std::vector<std::byte> tx;
  std::vector<std::byte> held;  // the backlog request being handled
  std::shared_ptr<ReplyHandle::Owner> owner = std::make_shared<ReplyHandle::Owner>();
  std::optional<Server> server;  // last: destroyed first, while the rest is still there

  PerConn& conn(Session& s) {
    auto& pc = s.state<PerConn>();
    if (!pc.backlog)
      pc.backlog.emplace(QueueOptions{.capacity = opts.max_backlog,
                                      .memory_cap = opts.max_backlog_bytes,
                                      .overflow = Overflow::fail});
    return pc;
  }

  // Tells the peer why, then closes its connection once that is written.
  void refuse_connection(Session& s, std::string_view why) {
    rr::encode_error(tx, why);
    (void)s.send(tx);
    s.close();
  }

  void on_message(Session& s, Message& m) {
    const auto b = m.bytes();
    const auto kind = rr::kind_of(b);
    if (kind == Kind::stat_request) {
      rr::encode_stat_reply(tx, stats());
      (void)s.send(tx);
      return;
    }
    if (kind != Kind::request)
      return refuse_connection(s, b.empty() ? std::string("empty message")
                                            : fmt::format("unexpected message kind {:#04x} (a replier takes requests)", int(b[0])));
    if (b.size() < rr::kAskHeader)
      return refuse_connection(s, fmt::format("request of {} bytes, shorter than its {}-byte header", b.size(), rr::kAskHeader));
    const auto id = rr::get_u64(b.data() + 1);
    auto& pc = conn(s);
    if (std::find(pc.ids.begin(), pc.ids.end(), id) != pc.ids.end())
      return refuse_connection(s, fmt::format("request id {} is already in flight on this connection", id));
    ++c.received;
    const auto now = Clock::now();
    const auto deadline = rr::local_deadline(rr::get_u64(b.data() + 9), now);
    if (deadline <= now) {
      ++c.dropped.expired;
      return;
    }
    if (pc.in_flight < opts.max_in_flight && pc.backlog->empty()) {
      pc.ids.push_back(id);
      ++c.queued;
      dispatch(s, pc, id, deadline, b.subspan(rr::kAskHeader));
      return;
    }
    // Held with its local deadline in place of the remaining time it came with.
    const auto at = static_cast<std::uint64_t>(deadline.time_since_epoch().count());
    rr::put_u64(m.data.data() + 9, at);
    if (pc.backlog->offer(m.bytes()) == PolicyQueue::Offer::queued) {
      pc.ids.push_back(id);
      ++c.queued;
      return;
    }
    ++c.dropped.refused;
    rr::encode_reply(tx, id, rr::Status::refused, {});
    (void)s.send(tx);
  }

  void dispatch(Session& s, PerConn& pc, RequestId id, Clock::time_point deadline, std::span<const std::byte> payload) {
    ++pc.in_flight;
    Request::Impl ri{.replier = this, .session = s.id()};
    Request req{.payload = payload, .peer = s.peer(), .id = id, .deadline = deadline, .impl_ = &ri};
    handler(req);
    if (!ri.replied && !ri.deferred) finish(s.id(), id, &DropCounts::no_route);
  }

  // The request left flight (answered or dropped): its place goes to the backlog's next.
  void finish(Session::Id sid, RequestId id, std::uint64_t DropCounts::*reason) {
    if (reason) ++(c.dropped.*reason);
    else ++c.delivered;
    --c.queued;
    auto* s = server->find(sid);
    if (!s) return;
    auto& pc = conn(*s);
    forget(pc, id);
    --pc.in_flight;
    // The backlog's next request is handed over from the loop, never from inside this call:
    // a reply made (or a handle destroyed) while the application walks its own containers must
    // not call the handler back re-entrantly.
    if (!pc.backlog->empty() && !pc.pump_due) {
      pc.pump_due = true;
      server->post([w = weak_from_this(), sid] {
        if (auto self = w.lock()) self->pump(sid);
      });
    }
  }

  static void forget(PerConn& pc, RequestId id) noexcept {
    if (auto it = std::find(pc.ids.begin(), pc.ids.end(), id); it != pc.ids.end()) {
      *it = pc.ids.back();
      pc.ids.pop_back();
    }
  }

  // Hands backlog requests to the handler while there is room in flight. Requests whose
  // deadline passed while they waited are skipped (nobody waits for their reply any more).
  void pump(Session::Id sid) {
    auto* s = server->find(sid);
    if (!s) return;
    auto& pc = conn(*s);
    pc.pump_due = false;
    if (pc.pumping) return;
    pc.pumping = true;
    while (s->open() && pc.in_flight < opts.max_in_flight && !pc.backlog->empty()) {
      held.assign(pc.backlog->front().begin(), pc.backlog->front().end());
      pc.backlog->pop();
      const auto id = rr::get_u64(held.data() + 1);
      const auto deadline = Clock::time_point(Clock::duration(static_cast<Clock::rep>(rr::get_u64(held.data() + 9))));
      if (Clock::now() >= deadline) {
        ++c.dropped.expired;
        --c.queued;
        forget(pc, id);
        continue;
      }
      dispatch(*s, pc, id, deadline, std::span<const std::byte>(held).subspan(rr::kAskHeader));
      s = server->find(sid);
      if (!s) return;  // gone, and its state with it
    }
    pc.pumping = false;
  }

  // Writes a reply to session `sid`, if it is still there. The request leaves flight either way.
  Result<void> reply(Session::Id sid, RequestId id, std::span<const std::byte> data) {
    auto* s = server->find(sid);
    if (!s || !s->open()) {
      finish(sid, id, &DropCounts::peer_died);
      return fail(Errc::closed, "reply", fmt::format("the requester of request {} has gone", id));
    }
    rr::encode_reply(tx, id, rr::Status::ok, data);
    if (auto r = s->send(tx); !r) {
      finish(sid, id, r.error().code == Errc::closed ? &DropCounts::peer_died : &DropCounts::refused);
      return r;
    }
    ++c.sent;
    finish(sid, id, nullptr);
    return {};
  }

  void on_close(Session& s) {
    auto& pc = conn(s);
    const auto n = pc.backlog->drop_all(&DropCounts::peer_died);
    c.dropped.peer_died += n;
    c.queued -= n;
  }

  Counters stats() const noexcept { return c; }
};

// ---- Request, ReplyHandle -------------------------------------------------------------------------

Result<void> Request::reply(std::span<const std::byte> data) {
  if (!impl_ || impl_->replied || impl_->deferred)
    return fail(Errc::invalid_argument, "reply", "this request was already answered or deferred");
  impl_->replied = true;
  return impl_->replier->reply(impl_->session, id, data);
}

ReplyHandle Request::defer() {
  ReplyHandle h;
  if (!impl_ || impl_->replied || impl_->deferred) return h;
  impl_->deferred = true;
  h.owner_ = impl_->replier->owner;
  h.session_ = impl_->session;
  h.id_ = id;
  h.deadline_ = deadline;
  return h;
}

ReplyHandle::ReplyHandle(ReplyHandle&& o) noexcept
    : owner_(std::move(o.owner_)), session_(o.session_), id_(o.id_), deadline_(o.deadline_) {}

ReplyHandle& ReplyHandle::operator=(ReplyHandle&& o) noexcept {
  if (this != &o) {
    this->~ReplyHandle();
    owner_ = std::move(o.owner_);
    session_ = o.session_;
    id_ = o.id_;
    deadline_ = o.deadline_;
  }
  return *this;
}

ReplyHandle::~ReplyHandle() {
  if (!owner_) return;
  if (auto impl = owner_->impl.lock())
    impl->finish(session_, id_, impl->server->find(session_) ? &DropCounts::no_route : &DropCounts::peer_died);
  owner_.reset();
}

Result<void> ReplyHandle::reply(std::span<const std::byte> data) {
  if (!owner_) return fail(Errc::invalid_argument, "reply", "empty handle (already replied, or moved from)");
  auto impl = owner_->impl.lock();
  owner_.reset();
  if (!impl) return fail(Errc::closed, "reply", "the replier has been destroyed");
  return impl->reply(session_, id_, data);
}

// ---- Replier --------------------------------------------------------------------------------------

Replier::Replier() noexcept = default;
Replier::Replier(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Replier::Replier(Replier&&) noexcept = default;
Replier& Replier::operator=(Replier&&) noexcept = default;
Replier::~Replier() = default;

Result<Replier> Replier::bind(std::string_view url, Handler handler, ReplierOptions options) {
  if (!handler) return fail(Errc::invalid_argument, "bind", "a replier needs a handler");
  if (options.max_in_flight == 0) return fail(Errc::invalid_argument, "bind", "max_in_flight must be at least 1");
  auto impl = std::make_shared<Impl>();
  impl->handler = std::move(handler);
  impl->opts = options;
  impl->owner->impl = impl;
  Impl* self = impl.get();
  Server::Handlers h;
  h.on_message = [self](Session& s, Message& m) { self->on_message(s, m); };
  h.on_close = [self](Session& s, const Error&) { self->on_close(s); };
  auto served = messaging::serve(url, std::move(h), options.server, options.transport);
  if (!served) return std::unexpected(served.error());
  impl->server.emplace(std::move(served->server));
  impl->url = std::move(served->url);
  return Replier(std::move(impl));
}

namespace {
Error no_replier(const char* op) { return Error{Errc::closed, 0, op, "no replier (default-constructed or moved from)"}; }
}  // namespace

Result<void> Replier::run() {
  if (!impl_) return std::unexpected(no_replier("run"));
  return impl_->server->run();
}
Result<int> Replier::poll(Timeout timeout) {
  if (!impl_) return std::unexpected(no_replier("poll"));
  return impl_->server->run_once(timeout);
}
void Replier::stop() noexcept {
  if (impl_) impl_->server->stop();
}
void Replier::post(std::function<void()> fn) {
  if (impl_) impl_->server->post(std::move(fn));
}
std::string Replier::url() const { return impl_ ? impl_->url : std::string(); }
Counters Replier::stats() const noexcept { return impl_ ? impl_->stats() : Counters{}; }
ServerStats Replier::server_stats() const noexcept { return impl_ ? impl_->server->stats() : ServerStats{}; }

}  // namespace ipcx
