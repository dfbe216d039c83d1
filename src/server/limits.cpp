// The server engine's bounds: per-connection deadlines (frame, send, idle) and the memory
// limit (pausing, resuming, and breaking a deadlock of unfinished messages).
#include <ipcx/server.hpp>

#include <algorithm>

#include <fmt/format.h>

#include "server/engine.hpp"

namespace ipcx {

namespace {
long long ms(Timeout t) { return std::chrono::duration_cast<std::chrono::milliseconds>(t).count(); }
}  // namespace

std::optional<Clock::time_point> Server::Impl::frame_deadline(const Session::Impl& s) const noexcept {
  if (!s.frame_started || opts.frame_timeout == forever) return std::nullopt;
  return *s.frame_started + opts.frame_timeout;
}

void Server::Impl::update_deadlines(Session::Impl& s) {
  if (s.dead) return;
  if (!s.io->mid_message()) s.frame_started.reset();
  else if (!s.frame_started) s.frame_started = Clock::now();
  if (s.io->queued() == 0) s.send_deadline.reset();
  else if (!s.send_deadline && opts.send_timeout != forever) s.send_deadline = Clock::now() + opts.send_timeout;
  std::optional<Clock::time_point> next;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  consider(frame_deadline(s));
  consider(s.send_deadline);
  if (opts.idle_timeout != forever) consider(s.last_activity + opts.idle_timeout);
  // Only an earlier deadline moves the timer. One armed too early just fires, finds nothing
  // due and arms the next: most turns (an idle deadline pushed back by every message) cost no
  // timer work at all.
  if (!next || (s.deadline_armed && *s.deadline_armed <= *next)) return;
  s.deadline_armed = next;
  auto in = std::max(Timeout::zero(), std::chrono::duration_cast<Timeout>(*next - Clock::now()));
  if (s.deadline_timer) {
    (void)reactor->rearm_timer(*s.deadline_timer, in);
  } else if (auto t = reactor->add_timer(in, forever, [w = weak(), id = s.session->id()] {
               if (auto self = w.lock()) self->on_deadline(id);
             })) {
    s.deadline_timer = *t;
  }
}

void Server::Impl::on_deadline(Session::Id id) {
  auto* p = get(id);
  if (!p) return;
  auto& s = *p;
  s.deadline_armed.reset();  // fired: whatever comes next is armed anew
  auto now = Clock::now();
  if (auto fd = frame_deadline(s); fd && now >= *fd) {
    ++stats.dropped_frame_timeout;
    return finish(s, server_error(Errc::timeout, fmt::format("a frame did not complete within {} ms", ms(opts.frame_timeout))),
                  wire::Goodbye::frame_timeout);
  }
  if (s.send_deadline && now >= *s.send_deadline) {
    ++stats.dropped_send_timeout;
    return finish(s,
                  server_error(Errc::timeout, fmt::format("queued output ({} bytes) made no progress for {} ms",
                                                          s.io->queued(), ms(opts.send_timeout))),
                  wire::Goodbye::send_timeout);
  }
  if (opts.idle_timeout != forever && now >= s.last_activity + opts.idle_timeout) {
    ++stats.dropped_idle;
    return finish(s, server_error(Errc::timeout, fmt::format("idle for {} ms", ms(opts.idle_timeout))),
                  wire::Goodbye::idle_timeout);
  }
  update_deadlines(s);
}

void Server::Impl::pause_for_memory(Session::Impl& s) {
  if (s.paused_memory || s.dead) return;
  s.paused_memory = true;
  memory_waiters.push_back(s.session->id());
  waiting_since_used = budget->used();
  update_interest(s);
  update_deadlines(s);
  break_memory_deadlock();
}

void Server::Impl::break_memory_deadlock() {
  Session::Impl* newest = nullptr;
  std::size_t stuck = 0;
  for (auto& [id, e] : sessions) {
    auto& x = e->impl;
    if (x.dead || !x.io->mid_message()) continue;
    if (!x.paused_memory) return;  // someone can still make progress (and free memory)
    ++stuck;
    if (!newest || (x.frame_started && (!newest->frame_started || *x.frame_started > *newest->frame_started))) newest = &x;
  }
  // A single waiter waits for memory held elsewhere (queued output drains as peers read).
  if (stuck < 2 || !newest) return;
  ++stats.dropped_memory;
  finish(*newest,
         server_error(Errc::resource_exhausted,
                  fmt::format("memory limit ({} bytes) held by {} unfinished messages that cannot all complete; this one "
                              "started last",
                              opts.memory_limit, stuck)),
         wire::Goodbye::out_of_resources);
}

void Server::Impl::resume_memory_waiters() {
  // Only once memory was given back since the last one paused: resuming them while nothing
  // was freed would just have them fail again (and never all be seen waiting together).
  if (memory_waiters.empty() || budget->used() >= waiting_since_used) return;
  auto waiters = std::exchange(memory_waiters, {});
  for (auto id : waiters) {
    if (auto* p = get(id)) {
      p->paused_memory = false;
      update_interest(*p);
      post_drain(id);  // its decoded bytes may never wake a poll again
    }
  }
}

}  // namespace ipcx
