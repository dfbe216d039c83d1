// The server engine's internals, shared by server.cpp (sessions: reading, writing, deadlines)
// and accept.cpp (listeners: accepting, limits, running out of descriptors).
#pragma once

#include <chrono>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include <ipcx/server.hpp>

#include "transport/transport.hpp"
#include "wire/budget.hpp"

namespace ipcx {

using Clock = std::chrono::steady_clock;

// Why the engine ended a session (op "server").
inline Error server_error(Errc code, std::string detail) { return Error{code, 0, "server", std::move(detail)}; }

struct Session::Impl {
  Server::Impl* srv = nullptr;
  Session* session = nullptr;
  Connection conn;
  ConnectionImpl* io = nullptr;
  Handles handles;
  bool same_fd = false;  // read and write progress are reported on one descriptor (sockets)
  std::optional<Reactor::Id> read_reg, write_reg;
  unsigned read_events = 0, write_events = 0;
  std::optional<Reactor::Id> poll_timer;  // no descriptor to wait on: try again every millisecond
  std::optional<Reactor::Id> deadline_timer;
  std::optional<Clock::time_point> deadline_armed;  // when deadline_timer fires next (none: not armed)
  std::optional<Clock::time_point> frame_started, send_deadline;
  Clock::time_point last_activity{};
  bool dead = false;
  bool paused_queue = false;   // SlowPeer::pause and the queue is full
  bool paused_memory = false;  // the memory limit refused a buffer
  bool closing_after_flush = false;
  bool flush_due = false;  // on the list of sessions to flush at the end of the round
  struct ListenerSlot* origin = nullptr;  // a one-conversation-at-a-time listener waiting for this to end
};

struct ListenerSlot {
  Listener listener;
  bool serial = false;  // one conversation at a time
  bool done = false;    // will produce nothing more
  std::optional<Reactor::Id> reg;
  std::optional<Reactor::Id> backoff;
  Session::Id current = 0;  // serial: the conversation in progress
};

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  std::unique_ptr<Reactor> own_reactor;
  Reactor* reactor = nullptr;
  Handlers handlers;
  ServerOptions opts;
  std::shared_ptr<wire::MemoryBudget> budget;
  std::list<ListenerSlot> listeners;
  struct Entry {
    Session session;
    Session::Impl impl;
    explicit Entry(Session::Id id) : session(id) {}
  };
  std::unordered_map<Session::Id, std::unique_ptr<Entry>> sessions;
  std::size_t live = 0;  // sessions not yet closed (dead ones wait to be reaped)
  Session::Id next_id = 1;
  std::vector<Session::Id> memory_waiters;
  std::size_t waiting_since_used = 0;  // memory in use when the last waiter paused
  Fd spare;  // a descriptor kept in reserve: given up to accept-and-refuse when out of them
  ServerStats stats;
  Session::Impl* draining = nullptr;  // the session whose messages are being handled
  // Sessions sent to from outside their own turn, flushed together once per loop round (one
  // posted function per round, not one per message).
  std::vector<Session::Id> flush_due, flushing;
  // Messages are handled one at a time on the loop thread: one buffer serves every session
  // (a buffer per session would keep each one's largest message alive, uncounted).
  Message msg;

  // ---- sessions (server.cpp) ----
  Result<Session::Id> adopt(Connection c, ListenerSlot* origin);
  Session::Impl* get(Session::Id id) noexcept;
  void drain(Session::Impl& s);
  void flush(Session::Impl& s);
  void post_flush(Session::Impl& s);
  void flush_round();
  // A turn for this session at the end of the round: bytes already decoded (or read before a
  // pause) wait in user space, where no poll reports them.
  void post_drain(Session::Id id);
  // Neither paused, nor closing, nor gone: its requests may be read.
  static bool readable_now(const Session::Impl& s) noexcept {
    return !s.dead && !s.paused_queue && !s.paused_memory && !s.closing_after_flush;
  }
  void update_interest(Session::Impl& s);
  void update_deadlines(Session::Impl& s);
  std::optional<Clock::time_point> frame_deadline(const Session::Impl& s) const noexcept;
  void on_deadline(Session::Id id);
  void pause_for_memory(Session::Impl& s);
  void resume_memory_waiters();
  // Every connection with a frame in progress waits for memory: none can ever finish. Drops
  // the one whose frame started last, so the others can.
  void break_memory_deadlock();
  void touch(Session::Impl& s) noexcept { s.last_activity = Clock::now(); }
  // Ends a session: goodbye (when `bye` says why and the transport can), unregister, close,
  // on_close; the entry itself is freed later (handlers may still hold the Session).
  void finish(Session::Impl& s, Error why, std::optional<wire::Goodbye> bye);
  void reap(Session::Id id);
  // Calls on_exhausted (once it becomes true) when nothing is left to serve.
  void check_exhausted();
  bool any_listener_open() const noexcept;
  // Unregisters a listener and closes it: it will produce nothing more.
  void retire(ListenerSlot& slot) noexcept;
  bool exhausted_reported = false;

  // ---- listeners (accept.cpp) ----
  void arm(ListenerSlot& slot);
  void accept_some(ListenerSlot& slot);
  void refuse(Connection& c, wire::Goodbye why, std::string_view text);
  void out_of_descriptors(ListenerSlot& slot);
  void session_ended(ListenerSlot& slot);

  std::weak_ptr<Impl> weak() { return weak_from_this(); }
};

}  // namespace ipcx
