// The server engine: many connections served from one event loop, fairly and within bounds.
//
//   ipcx::Server::Handlers h;
//   h.on_message = [](ipcx::Session& s, ipcx::Message& m) { (void)s.send(m.bytes()); };  // echo
//   auto server = ipcx::Server::create(std::move(h)).value();
//   server.add_listener(ipcx::listen("unix:///run/user/1000/echo.sock").value()).value();
//   server.run();                                          // until server.stop()
//
// What it guarantees (each a documented default in ServerOptions, all tested):
// - A send never blocks the loop: replies go to a per-connection queue, written as the peer
//   reads. A peer that does not read fills its own queue; the SlowPeer policy then applies to
//   it alone.
// - Fairness: each connection is read for at most `read_budget` bytes / `message_budget`
//   messages per turn, then the others get theirs.
// - Bounds: a connection limit (refused with a goodbye frame), a memory limit over every
//   buffer of every connection, a deadline for a started frame (slowloris), for queued output
//   to make progress, and optionally an idle timeout.
// - Running out of descriptors never stops it: it sheds the connection it cannot hold (with a
//   goodbye), pauses accepting briefly, and serves new clients once descriptors are free again.
//
// Threading: one loop thread (the one calling run()/run_once()); handlers run on it. Every
// member is loop-thread only, except stop() and post(), which any thread may call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <typeinfo>

#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>
#include <ipcx/message.hpp>
#include <ipcx/reactor.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx {

// What happens to a connection whose outgoing queue reached ServerOptions::max_queued.
enum class SlowPeer {
  pause,  // stop reading its requests until its queue drains to half; Session::send reports
          // would_block meanwhile (its other traffic waits in the kernel)
  drop,   // close it, with a goodbye frame saying why
};

struct ServerOptions {
  // Concurrent connections; further ones are closed at once with a goodbye frame
  // ("connection limit reached"). 0: RLIMIT_NOFILE's soft limit minus 64, at least 16.
  std::size_t max_connections = 0;
  // Bytes held across all connections: partial incoming frames and queued outgoing messages.
  // A connection that needs more waits (it is not read) until memory frees up.
  std::size_t memory_limit = std::size_t{256} << 20;
  // Per-connection outgoing queue high-water mark: at or above it the connection is full (one
  // message always fits in an empty queue, so a connection holds at most this plus one message).
  std::size_t max_queued = std::size_t{4} << 20;
  SlowPeer slow_peer = SlowPeer::pause;
  // Fairness: per turn, a connection is read for at most this many bytes and messages.
  std::size_t read_budget = 256 * 1024;
  std::size_t message_budget = 64;
  // A frame whose first byte arrived must be complete within this (slowloris defence).
  Timeout frame_timeout = std::chrono::seconds(10);
  // Queued output must make progress (some bytes taken by the peer) within this.
  Timeout send_timeout = std::chrono::seconds(30);
  // Nothing received or sent for this long closes the connection. Default: never.
  Timeout idle_timeout = forever;
  // Messages sent from outside a handler wait for the sender's Session::flush() (or for the
  // peer to make room, when older output is still queued) instead of the next loop round: a
  // sender that drives the loop itself batches many messages per write.
  bool caller_flushes = false;
};

// Counters; `memory_in_use` is exact (allocations held by connection buffers).
struct ServerStats {
  std::size_t connections = 0;
  std::size_t memory_in_use = 0, memory_peak = 0;
  std::uint64_t accepted = 0;
  std::uint64_t refused_limit = 0;      // over max_connections
  std::uint64_t refused_resources = 0;  // shed while out of descriptors
  std::uint64_t messages_in = 0, messages_out = 0;
  std::uint64_t closed_clean = 0;       // the peer closed, or the server closed after flushing
  std::uint64_t dropped_protocol = 0;   // malformed input, truncated frames
  std::uint64_t dropped_frame_timeout = 0, dropped_idle = 0, dropped_send_timeout = 0;
  std::uint64_t dropped_slow = 0;       // SlowPeer::drop
  std::uint64_t dropped_memory = 0;     // unfinished messages that could not all fit the memory limit
  std::uint64_t dropped_other = 0;      // I/O errors, aborts by the application
  std::uint64_t accept_backoffs = 0;    // times accepting paused for lack of descriptors
};

class Server;

// One connection inside a Server. References are valid during a handler call; to reach the
// connection later, keep its id() and use Server::find().
class Session {
 public:
  using Id = std::uint64_t;

  Id id() const noexcept { return id_; }
  PeerCred peer() const noexcept;
  Capabilities capabilities() const noexcept;

  // Queues one message; never blocks (it is written when the peer can take it). The caller
  // keeps `data` and `fds` (both are copied). Errors: would_block when the queue is full under
  // SlowPeer::pause (try again in on_drain), closed when the connection is gone (or was just
  // dropped under SlowPeer::drop), resource_exhausted when the memory limit refuses the bytes,
  // and send's validation errors (too_large, not_supported...).
  Result<void> send(std::span<const std::byte> data, std::span<const int> fds = {});
  // Writes the queued output now, as much as the peer takes without blocking (the rest waits
  // for the peer, as after a handler's turn). Never blocks; the session may end (write error).
  void flush() noexcept;
  // Bytes waiting in the outgoing queue.
  std::size_t queued() const noexcept;
  // Closes after the queued output is written (bounded by send_timeout); reads nothing more.
  void close() noexcept;
  // Closes at once; queued output is dropped. on_close runs with Errc::closed and `why`.
  void abort(std::string why = "closed by the application") noexcept;
  // False once closing (close(), the peer's EOF) or gone.
  bool open() const noexcept;

  // Per-connection application state: a T created on first use, destroyed with the session.
  // Engine internals (opaque).
  struct Impl;

  template <class T>
  T& state() {
    if (!state_ || state_type_ != &typeid(T)) {
      state_ = std::shared_ptr<void>(std::make_shared<T>());
      state_type_ = &typeid(T);
    }
    return *static_cast<T*>(state_.get());
  }

 private:
  friend class Server;
  explicit Session(Id id) noexcept : id_(id) {}
  Id id_;
  Impl* impl_ = nullptr;  // owned by the server
  std::shared_ptr<void> state_;
  const std::type_info* state_type_ = nullptr;
};

class Server {
 public:
  struct Handlers {
    std::function<void(Session&)> on_open;                  // optional
    std::function<void(Session&, Message&)> on_message;     // required; the Message may be moved from
    std::function<void(Session&)> on_drain;                 // a full queue drained to half (pause policy)
    // The connection is gone; `why` is Errc::closed for an orderly end, otherwise the reason
    // it was dropped (protocol, timeout, resource_exhausted...). Optional.
    std::function<void(Session&, const Error& why)> on_close;
    // Nothing is left to serve: no connection is open and no listener can produce one (a
    // pipe:'s single peer has gone, say). Optional; a typical reaction is stop().
    std::function<void()> on_exhausted;
    // A client was turned away before it became a session: over max_connections, out of
    // descriptors, or refused by a listener's access rule. Optional.
    std::function<void(const PeerCred& peer, const Error& why)> on_refused;
  };

  // A server with its own Reactor (run() drives it), or on the caller's reactor, which must
  // outlive the server and be run by the caller.
  static Result<Server> create(Handlers handlers, ServerOptions options = {});
  static Result<Server> create(Reactor& reactor, Handlers handlers, ServerOptions options = {});
  Server(Server&&) noexcept;
  Server& operator=(Server&&) noexcept;
  // Closes every connection (a goodbye "shutting down" where possible) and listener.
  ~Server();

  // Serves connections accepted on `listener` (several listeners may feed one server). A
  // listener that serves one conversation at a time (capabilities().concurrent false: pipe:,
  // fifo:, signal://self) is asked for the next one when the current one ends.
  Result<void> add_listener(Listener listener);
  // Serves a connection made elsewhere (connect(), pipe_pair(), spawn_connected()).
  Result<Session::Id> adopt(Connection connection);
  // Stops accepting: every listener is closed (its files removed). Open sessions go on.
  void close_listeners() noexcept;

  // The session with this id, or nullptr once it is gone.
  Session* find(Session::Id id) noexcept;
  // Calls f for every open session.
  void for_each(const std::function<void(Session&)>& f);

  // Runs the loop until stop(). Blocks.
  Result<void> run();
  // One round of the loop, waiting up to `timeout` for events.
  Result<int> run_once(Timeout timeout);
  // Makes run() return. Thread-safe and async-signal-safe.
  void stop() noexcept;
  // Runs fn on the loop thread soon. Thread-safe.
  void post(std::function<void()> fn);
  Reactor& reactor() noexcept;

  // True while some listener may still produce a connection.
  bool accepting() const noexcept;
  std::size_t connections() const noexcept;
  ServerStats stats() const noexcept;
  const ServerOptions& options() const noexcept;

  // Engine internals (opaque).
  struct Impl;

 private:
  explicit Server(std::shared_ptr<Impl> impl) noexcept;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ipcx
