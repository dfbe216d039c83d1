// The server engine, session side: reading with budgets, queued writing, pausing, deadlines.
#include <ipcx/server.hpp>

#include <algorithm>

#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>

#include <fmt/format.h>

#include "server/engine.hpp"

namespace ipcx {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(1);
constexpr std::size_t kKeepMessageBuffer = 1 << 20;  // larger message buffers are freed after use
constexpr std::size_t kGrowthSlack = 64 * 1024;      // header and read slack of a receive buffer

std::size_t default_max_connections() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 65536;
  auto soft = static_cast<std::size_t>(rl.rlim_cur);
  return std::max<std::size_t>(soft > 64 ? soft - 64 : 0, 16);
}

}  // namespace

// ---- Session ------------------------------------------------------------------------------------

PeerCred Session::peer() const noexcept { return impl_ ? impl_->conn.peer() : PeerCred{}; }
Capabilities Session::capabilities() const noexcept { return impl_ ? impl_->conn.capabilities() : Capabilities{}; }
std::size_t Session::queued() const noexcept { return impl_ && !impl_->dead ? impl_->io->queued() : 0; }
bool Session::open() const noexcept { return impl_ && !impl_->dead && !impl_->closing_after_flush; }

Result<void> Session::send(std::span<const std::byte> data, std::span<const int> fds) {
  if (!open()) return fail(Errc::closed, "send", "connection closed");
  auto& s = *impl_;
  auto& srv = *s.srv;
  if (s.io->queued() >= srv.opts.max_queued) {
    if (srv.opts.slow_peer == SlowPeer::drop) {
      ++srv.stats.dropped_slow;
      srv.finish(s,
                 server_error(Errc::resource_exhausted,
                          fmt::format("outgoing queue full ({} bytes): the peer does not read", s.io->queued())),
                 wire::Goodbye::slow_reader);
      return fail(Errc::closed, "send", "dropped: the peer does not read its messages");
    }
    if (!s.paused_queue) {
      s.paused_queue = true;
      srv.update_interest(s);
    }
    return fail(Errc::would_block, "send", fmt::format("outgoing queue full ({} bytes): the peer is not reading", s.io->queued()));
  }
  if (auto r = s.io->enqueue(data, fds); !r) {
    // Reading pauses until memory is given back, unless nothing holds any: then this message
    // alone is over the limit, no amount of waiting makes it fit, and the session must not stay
    // paused for good (the caller has the error).
    if (r.error().code == Errc::resource_exhausted && srv.budget->used() > 0) srv.pause_for_memory(s);
    return r;
  }
  ++srv.stats.messages_out;
  if (srv.opts.slow_peer == SlowPeer::pause && s.io->queued() >= srv.opts.max_queued) s.paused_queue = true;
  // (The send deadline starts at the flush, which finds the queue not empty.)
  // Replies made while this session's messages are handled go out together after the batch.
  if (srv.draining != &s && !srv.opts.caller_flushes) srv.post_flush(s);
  return {};
}

void Session::flush() noexcept {
  if (impl_ && !impl_->dead && impl_->io->queued() > 0) impl_->srv->flush(*impl_);
}

void Session::close() noexcept {
  if (!open()) return;
  auto& s = *impl_;
  if (s.io->queued() == 0) {
    ++s.srv->stats.closed_clean;
    s.srv->finish(s, server_error(Errc::closed, "closed by the application"), wire::Goodbye::other);
    return;
  }
  s.closing_after_flush = true;
  s.srv->update_interest(s);
  s.srv->update_deadlines(s);
}

void Session::abort(std::string why) noexcept {
  if (!impl_ || impl_->dead) return;
  ++impl_->srv->stats.dropped_other;
  impl_->srv->finish(*impl_, server_error(Errc::closed, std::move(why)), wire::Goodbye::other);
}

// ---- sessions -----------------------------------------------------------------------------------

Session::Impl* Server::Impl::get(Session::Id id) noexcept {
  auto it = sessions.find(id);
  if (it == sessions.end() || it->second->impl.dead) return nullptr;
  return &it->second->impl;
}

Result<Session::Id> Server::Impl::adopt(Connection c, ListenerSlot* origin) {
  auto* io = detail::Access::impl(c);
  if (!io || !c.is_open()) return fail(Errc::invalid_argument, "adopt", "connection not open");
  auto id = next_id++;
  auto entry = std::make_unique<Entry>(id);
  auto& s = entry->impl;
  s.srv = this;
  s.session = &entry->session;
  entry->session.impl_ = &s;
  s.conn = std::move(c);
  s.io = io;
  s.io->set_budget(budget);
  // A frame needs up to twice its size while its buffer grows (old and new side by side): one
  // the limit could never hold is refused at its header rather than waited for.
  s.io->limit_message(opts.memory_limit / 2 - kGrowthSlack);
  s.handles = io->handles();
  s.same_fd = s.handles.read && s.handles.write && *s.handles.read == *s.handles.write;
  s.origin = origin;
  s.last_activity = Clock::now();
  sessions.emplace(id, std::move(entry));
  ++live;
  update_interest(s);
  if (s.dead) return fail(Errc::system, "adopt", "could not watch the connection");
  if (handlers.on_open) handlers.on_open(*s.session);
  if (!s.dead) {
    update_deadlines(s);
    if (s.io->buffered()) post_drain(id);  // buffered before it was handed over
  }
  return id;
}

void Server::Impl::update_interest(Session::Impl& s) {
  if (s.dead) return;
  const bool reading = readable_now(s);
  const bool want_read = reading && s.handles.read.has_value();
  const bool want_write = s.io->queued() > 0 && s.handles.write.has_value();
  const Session::Id id = s.session->id();
  // Made only when a descriptor is registered (not on every update).
  auto on_event = [&] {
    return [w = weak(), id](unsigned ev) {
      auto self = w.lock();
      if (!self) return;
      auto* p = self->get(id);
      if (!p) return;
      if (ev & Reactor::writable) self->flush(*p);
      p = self->get(id);
      if (!p || !(ev & (Reactor::readable | Reactor::hangup | Reactor::error))) return;
      if (p->read_events & Reactor::readable) {
        self->drain(*p);
      } else if (ev & (Reactor::hangup | Reactor::error)) {
        // Not reading (paused), and the peer is gone both ways: nothing queued can be delivered.
        ++self->stats.dropped_other;
        self->finish(*p, server_error(Errc::closed, "peer hung up with output still queued"), std::nullopt);
      }
    };
  };
  auto sync = [&](std::optional<Reactor::Id>& reg, int fd, unsigned& cur, unsigned want) -> bool {
    if (reg && cur == want) return true;
    if (!reg) {
      if (want == 0) return true;
      auto r = reactor->add_fd(fd, want, on_event());
      if (!r) return false;
      reg = *r;
    } else if (want == 0 && &reg == &s.write_reg) {
      reactor->remove(*reg);
      reg.reset();
    } else if (auto r = reactor->modify_fd(*reg, want); !r) {
      return false;
    }
    cur = want;
    return true;
  };
  bool ok = true;
  if (s.same_fd) {
    unsigned want = (want_read ? Reactor::readable : 0u) | (want_write ? Reactor::writable : 0u);
    // A paused socket stays registered with no interest: its hang-up is still reported.
    ok = sync(s.read_reg, *s.handles.read, s.read_events, want);
  } else {
    if (s.handles.read) {
      if (want_read) ok = sync(s.read_reg, *s.handles.read, s.read_events, Reactor::readable);
      else if (s.read_reg) {
        // A pipe's read end would report its writer's hang-up over and over while paused.
        reactor->remove(*s.read_reg);
        s.read_reg.reset();
        s.read_events = 0;
      }
    }
    if (ok && s.handles.write) ok = sync(s.write_reg, *s.handles.write, s.write_events, want_write ? Reactor::writable : 0u);
  }
  // No descriptor for a side that needs one: try again every millisecond.
  const bool need_poll = (reading && !s.handles.read) || (s.io->queued() > 0 && !s.handles.write);
  if (need_poll && !s.poll_timer) {
    auto t = reactor->add_timer(kPollInterval, kPollInterval, [w = weak(), id] {
      auto self = w.lock();
      if (!self) return;
      if (auto* p = self->get(id); p && p->io->queued() > 0) self->flush(*p);
      if (auto* p = self->get(id); p && !p->handles.read) self->drain(*p);
    });
    if (t) s.poll_timer = *t;
  } else if (!need_poll && s.poll_timer) {
    reactor->remove(*s.poll_timer);
    s.poll_timer.reset();
  }
  if (!ok) {
    ++stats.dropped_other;
    finish(s, server_error(Errc::system, "could not watch the connection's descriptor"), std::nullopt);
  }
}

void Server::Impl::drain(Session::Impl& s) {
  if (!readable_now(s)) return;
  ReadBudget turn{opts.read_budget};
  std::size_t handled = 0;
  bool would_block = false;
  draining = &s;
  for (;;) {
    if (handled == opts.message_budget) {
      if (s.io->buffered()) post_drain(s.session->id());  // our turn is over; come back for them
      break;
    }
    auto r = s.io->recv(msg, os::Deadline::now(), &turn);
    if (r) {
      ++handled;
      ++stats.messages_in;
      handlers.on_message(*s.session, msg);
      msg.fds.clear();  // descriptors the handler did not take are closed now
      if (msg.data.capacity() > kKeepMessageBuffer) msg = {};
      if (!readable_now(s)) break;
      continue;
    }
    auto& e = r.error();
    if (e.code == Errc::would_block) {
      would_block = turn.bytes > 0;  // the kernel had nothing more (not just our budget used)
      break;
    }
    if (e.code == Errc::resource_exhausted) {
      pause_for_memory(s);
      break;
    }
    draining = nullptr;
    if (e.code == Errc::closed) {
      // The peer finished sending; it may still be reading (a half-closed socket): deliver what
      // is queued, then close.
      if (s.io->queued() > 0) {
        s.closing_after_flush = true;
        update_interest(s);
        update_deadlines(s);
        flush(s);
      } else {
        ++stats.closed_clean;
        finish(s, std::move(e), std::nullopt);
      }
      return;
    }
    ++stats.dropped_protocol;
    std::optional<wire::Goodbye> bye;
    if (e.code == Errc::protocol || e.code == Errc::too_large) bye = wire::Goodbye::protocol_error;
    finish(s, std::move(e), bye);
    return;
  }
  draining = nullptr;
  if (s.dead) return;
  if (handled > 0 || turn.bytes < opts.read_budget) touch(s);  // bytes arrived (a whole message or not)
  if (s.io->queued() > 0) flush(s);
  if (s.dead) return;
  if (would_block) s.io->trim();  // idle until the next wake-up: hold only what is pending
  update_deadlines(s);
  resume_memory_waiters();
}

void Server::Impl::post_flush(Session::Impl& s) {
  if (s.flush_due) return;
  s.flush_due = true;
  flush_due.push_back(s.session->id());
  if (flush_due.size() == 1)
    reactor->post([w = weak()] {
      if (auto self = w.lock()) self->flush_round();
    });
}

void Server::Impl::flush_round() {
  flushing.swap(flush_due);  // flushes may queue more (on_drain): they wait for the next round
  for (auto id : flushing)
    if (auto* p = get(id)) {
      p->flush_due = false;
      flush(*p);
    }
  flushing.clear();
}

void Server::Impl::post_drain(Session::Id id) {
  reactor->post([w = weak(), id] {
    if (auto self = w.lock())
      if (auto* p = self->get(id)) self->drain(*p);
  });
}

void Server::Impl::flush(Session::Impl& s) {
  if (s.dead) return;
  const auto before = s.io->queued();
  auto r = s.io->flush(os::Deadline::now());
  const auto after = s.io->queued();
  if (after < before) {
    touch(s);
    s.send_deadline.reset();  // progress: update_deadlines below starts a new one if any is left
  }
  if (!r && r.error().code != Errc::would_block) {
    if (r.error().code == Errc::closed) ++stats.closed_clean;
    else ++stats.dropped_other;
    finish(s, std::move(r.error()), std::nullopt);
    return;
  }
  if (after == 0 && s.closing_after_flush) {
    ++stats.closed_clean;
    finish(s, server_error(Errc::closed, "closed after the last reply"), std::nullopt);
    return;
  }
  if (s.paused_queue && after <= opts.max_queued / 2) {
    s.paused_queue = false;
    if (handlers.on_drain) handlers.on_drain(*s.session);
    if (s.dead) return;
    if (!s.paused_queue) post_drain(s.session->id());  // requests read before the pause
  }
  if (after < before && after == 0) s.io->trim();
  update_interest(s);
  update_deadlines(s);
  if (after < before) resume_memory_waiters();
}

void Server::Impl::finish(Session::Impl& s, Error why, std::optional<wire::Goodbye> bye) {
  if (s.dead) return;
  if (bye) s.io->goodbye(*bye, why.detail);
  s.dead = true;
  for (auto* reg : {&s.read_reg, &s.write_reg, &s.poll_timer, &s.deadline_timer})
    if (*reg) {
      reactor->remove(**reg);
      reg->reset();
    }
  s.conn.close();
  --live;
  if (draining == &s) draining = nullptr;
  if (handlers.on_close) handlers.on_close(*s.session, why);
  if (s.origin) session_ended(*s.origin);
  reactor->post([w = weak(), id = s.session->id()] {
    if (auto self = w.lock()) self->reap(id);
  });
  resume_memory_waiters();
#ifdef __GLIBC__
  // The last client gone (after a burst of thousands, say): hand freed heap back to the system.
  if (live == 0) ::malloc_trim(0);
#endif
  check_exhausted();
}

bool Server::Impl::any_listener_open() const noexcept {
  return std::any_of(listeners.begin(), listeners.end(), [](const ListenerSlot& l) { return !l.done; });
}

void Server::Impl::check_exhausted() {
  if (live > 0 || any_listener_open()) {
    exhausted_reported = false;
    return;
  }
  if (exhausted_reported || !handlers.on_exhausted) return;
  exhausted_reported = true;
  handlers.on_exhausted();
}

void Server::Impl::reap(Session::Id id) {
  auto it = sessions.find(id);
  if (it != sessions.end() && it->second->impl.dead) sessions.erase(it);
}

// ---- Server -------------------------------------------------------------------------------------

Server::Server(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Server::Server(Server&&) noexcept = default;
Server& Server::operator=(Server&&) noexcept = default;

Server::~Server() {
  if (!impl_) return;
  auto& im = *impl_;
  std::vector<Session::Impl*> open;
  for (auto& [id, e] : im.sessions)
    if (!e->impl.dead) open.push_back(&e->impl);
  for (auto* s : open) im.finish(*s, server_error(Errc::closed, "server shutting down"), wire::Goodbye::shutdown);
  for (auto& slot : im.listeners) im.retire(slot);
}

Result<Server> Server::create(Handlers handlers, ServerOptions options) {
  auto r = Reactor::create();
  if (!r) return std::unexpected(r.error());
  auto reactor = std::make_unique<Reactor>(std::move(*r));
  auto s = create(*reactor, std::move(handlers), options);
  if (!s) return s;
  s->impl_->own_reactor = std::move(reactor);  // the engine owns the loop it runs on
  return s;
}

Result<Server> Server::create(Reactor& reactor, Handlers handlers, ServerOptions options) {
  if (!handlers.on_message) return fail(Errc::invalid_argument, "server", "on_message handler required");
  if (options.max_connections == 0) options.max_connections = default_max_connections();
  if (options.read_budget == 0 || options.message_budget == 0 || options.max_queued == 0 ||
      options.memory_limit < 64 * 1024)
    return fail(Errc::invalid_argument, "server",
                "read_budget, message_budget and max_queued must be positive, memory_limit at least 64 KiB");
  auto impl = std::make_shared<Impl>();
  impl->reactor = &reactor;
  impl->handlers = std::move(handlers);
  impl->opts = options;
  impl->budget = std::make_shared<wire::MemoryBudget>(options.memory_limit);
  int spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (spare >= 0) impl->spare = Fd(spare);
  return Server(std::move(impl));
}

Result<Session::Id> Server::adopt(Connection connection) { return impl_->adopt(std::move(connection), nullptr); }

Session* Server::find(Session::Id id) noexcept {
  auto* p = impl_->get(id);
  return p ? p->session : nullptr;
}

void Server::for_each(const std::function<void(Session&)>& f) {
  std::vector<Session::Id> ids;
  for (auto& [id, e] : impl_->sessions)
    if (!e->impl.dead) ids.push_back(id);
  for (auto id : ids)
    if (auto* s = find(id)) f(*s);
}

Result<void> Server::run() { return impl_->reactor->run(); }
Result<int> Server::run_once(Timeout timeout) { return impl_->reactor->run_once(timeout); }
void Server::stop() noexcept { impl_->reactor->stop(); }
void Server::post(std::function<void()> fn) { impl_->reactor->post(std::move(fn)); }
Reactor& Server::reactor() noexcept { return *impl_->reactor; }
std::size_t Server::connections() const noexcept { return impl_->live; }
const ServerOptions& Server::options() const noexcept { return impl_->opts; }

bool Server::accepting() const noexcept { return impl_->any_listener_open(); }

ServerStats Server::stats() const noexcept {
  auto s = impl_->stats;
  s.connections = impl_->live;
  s.memory_in_use = impl_->budget->used();
  s.memory_peak = impl_->budget->peak();
  return s;
}

}  // namespace ipcx
