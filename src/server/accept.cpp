// The server engine, listener side: accepting fairly, the connection limit, and running out of
// descriptors without dying.
#include <ipcx/server.hpp>

#include <fcntl.h>

#include <fmt/format.h>

#include "server/engine.hpp"

namespace ipcx {

namespace {
constexpr int kAcceptsPerTurn = 16;  // then the connections already open get their turn
constexpr auto kBackoff = std::chrono::milliseconds(100);
constexpr int kShedPerTurn = 64;  // refusals per back-off while out of descriptors
}  // namespace

Result<void> Server::add_listener(Listener listener) {
  if (!listener.is_open()) return fail(Errc::invalid_argument, "add_listener", "listener not open");
  auto& im = *impl_;
  auto& slot = im.listeners.emplace_back();
  slot.serial = !listener.capabilities().concurrent;
  slot.listener = std::move(listener);
  if (auto* impl = detail::Access::impl(slot.listener))
    impl->observe_refusals([&im](const PeerCred& peer) {
      if (im.handlers.on_refused)
        im.handlers.on_refused(peer, Error{Errc::permission_denied, 0, "accept",
                                           fmt::format("the access rule does not admit uid {}", peer.uid)});
    });
  im.arm(slot);
  im.check_exhausted();
  return {};
}

void Server::close_listeners() noexcept {
  for (auto& slot : impl_->listeners) impl_->retire(slot);
  impl_->check_exhausted();
}

void Server::Impl::retire(ListenerSlot& slot) noexcept {
  for (auto* reg : {&slot.reg, &slot.backoff})
    if (*reg) {
      reactor->remove(**reg);
      reg->reset();
    }
  slot.done = true;
  slot.listener.close();
}

void Server::Impl::arm(ListenerSlot& slot) {
  if (slot.done || slot.backoff) return;
  if (slot.serial && slot.current) return;  // one conversation at a time: the next after this one
  accept_some(slot);
  if (slot.done || slot.backoff || (slot.serial && slot.current)) return;
  auto fd = slot.listener.native_handle();
  if (!fd) return;  // nothing to wait on now; session_ended() asks again
  if (slot.reg) return;
  auto* p = &slot;
  auto r = reactor->add_fd(*fd, Reactor::readable, [w = weak(), p](unsigned) {
    if (auto self = w.lock()) self->accept_some(*p);
  });
  if (r) slot.reg = *r;
}

void Server::Impl::accept_some(ListenerSlot& slot) {
  if (slot.serial && slot.reg) {
    // The connection it yields may take over the very descriptor we watch (a FIFO's read end).
    reactor->remove(*slot.reg);
    slot.reg.reset();
  }
  for (int i = 0; i < kAcceptsPerTurn; ++i) {
    auto c = slot.listener.try_accept();
    if (c) {
      ++stats.accepted;
      if (live >= opts.max_connections) {
        ++stats.refused_limit;
        auto text = fmt::format("limit {}", opts.max_connections);
        if (handlers.on_refused)
          handlers.on_refused(c->peer(), Error{Errc::connection_refused, 0, "accept", "connection limit reached: " + text});
        refuse(*c, wire::Goodbye::connection_limit, text);
        continue;
      }
      auto id = adopt(std::move(*c), slot.serial ? &slot : nullptr);
      if (slot.serial) {
        if (id) {
          slot.current = *id;
          return;
        }
        break;
      }
      continue;
    }
    const auto code = c.error().code;
    if (code == Errc::would_block) break;
    if (code == Errc::resource_exhausted) return out_of_descriptors(slot);
    // closed: a single-peer listener has handed out its peer; anything else: the listener broke.
    slot.done = true;
    if (slot.reg) {
      reactor->remove(*slot.reg);
      slot.reg.reset();
    }
    check_exhausted();
    return;
  }
  if (slot.serial && !slot.current && !slot.done) {
    if (auto fd = slot.listener.native_handle(); fd && !slot.reg) {
      auto* p = &slot;
      if (auto r = reactor->add_fd(*fd, Reactor::readable, [w = weak(), p](unsigned) {
            if (auto self = w.lock()) self->accept_some(*p);
          }))
        slot.reg = *r;
    }
  }
}

void Server::Impl::refuse(Connection& c, wire::Goodbye why, std::string_view text) {
  if (auto* io = detail::Access::impl(c)) io->goodbye(why, text);
  c.close();
}

void Server::Impl::out_of_descriptors(ListenerSlot& slot) {
  ++stats.accept_backoffs;
  // Turn the waiting clients away with a reason rather than leave them hanging: the spare
  // descriptor makes room for one accept at a time.
  for (int i = 0; i < kShedPerTurn && spare.valid(); ++i) {
    spare.reset();
    auto c = slot.listener.try_accept();
    if (c) {
      ++stats.refused_resources;
      if (handlers.on_refused)
        handlers.on_refused(c->peer(), Error{Errc::resource_exhausted, 0, "accept", "out of descriptors"});
      refuse(*c, wire::Goodbye::out_of_resources, "the server is out of descriptors; try again later");
    }
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) spare = Fd(fd);
    if (!c) break;
  }
  // Stop watching the listener for a while (its readiness would spin the loop), with a timer
  // that needs no descriptor.
  if (slot.reg) {
    reactor->remove(*slot.reg);
    slot.reg.reset();
  }
  auto* p = &slot;
  auto t = reactor->add_timer(kBackoff, Timeout::zero(), [w = weak(), p] {
    if (auto self = w.lock()) {
      p->backoff.reset();
      self->arm(*p);
    }
  });
  if (t) slot.backoff = *t;
}

void Server::Impl::session_ended(ListenerSlot& slot) {
  slot.current = 0;
  // Ask for the next conversation once this round of events is over.
  auto* p = &slot;
  reactor->post([w = weak(), p] {
    if (auto self = w.lock()) self->arm(*p);
  });
}

}  // namespace ipcx
