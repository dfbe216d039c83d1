// The bound side shared by Publisher and Pusher: a Listener plus a Server (caller_flushes) on
// its own Reactor, one Link per connected peer, the peer's hello and credit, stat requests,
// bad input, and the accounting of a peer that goes away. The pattern (pubsub.cpp,
// pushpull.cpp) decides where messages go.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <ipcx/pubsub.hpp>
#include <ipcx/server.hpp>

#include "messaging/envelope.hpp"
#include "transport/policy_queue.hpp"

namespace ipcx::messaging {

using transport::PolicyQueue;

// One connected peer (subscriber or worker) as the bound side sees it.
struct Link {
  Session::Id id = 0;
  Session* session = nullptr;  // nullptr once the connection has ended
  PeerCred cred;
  bool hello = false;          // said which role it plays
  bool ready = false;          // granted a window (its first credit)
  std::uint64_t window = 0;    // messages it lets us have in flight
  std::uint64_t sent = 0;      // copies accepted for it (pub/sub: its sequence numbers)
  std::uint64_t written = 0;   // handed to the transport
  std::uint64_t acked = 0;     // taken by its application (cumulative)
  std::uint64_t peer_died = 0; // in its queue or in flight when it went away
  bool pending = false;        // holds bytes not yet written (a batch in the making)
  bool stalled = false;        // ...that the kernel did not take at the last try (a full socket)
  std::chrono::steady_clock::time_point last_write{}, pending_since{};
  std::optional<PolicyQueue> queue;  // pub/sub: its own queue
  std::vector<std::string> prefixes;

  std::uint64_t in_flight() const noexcept { return written - acked; }
  bool has_credit() const noexcept { return session && ready && written - acked < window; }
  Counters counters() const;
  PeerStats stats() const;
};

class Bound {
 public:
  virtual ~Bound() = default;
  // Closes every connection (derived destructors call it first: the handlers use their state).
  void shutdown() noexcept;

  // Batching. A link's message is written at once when its peer had taken everything before
  // it, or when nothing was written to it for kQuiet (a lone message never waits). Messages
  // that follow each other faster gather in the link's queue and go out in one write once
  // kBatchBytes wait or the oldest has waited kQuiet (checked every 8th call on the endpoint),
  // or, when the application makes no further call, by the flusher thread within kTail (a
  // burst's tail is never left behind). Output a full socket did not take is retried by the
  // flusher at growing intervals (kTail doubling up to kStalledMax) while no call runs the
  // engine (which writes it as soon as the socket has room). The flusher sleeps while nothing
  // is pending.
  static constexpr auto kQuiet = std::chrono::microseconds(10);
  static constexpr auto kTail = std::chrono::microseconds(200);
  static constexpr auto kStalledMax = std::chrono::milliseconds(10);
  static constexpr std::size_t kBatchBytes = 16 * 1024;
  // Every public call and the flusher hold this: the engine is used by one thread at a time.
  mutable std::mutex mu;
  Result<void> start(std::string_view url, const Options& transport, ServerOptions server, std::string_view role);

  // One round of the engine (accept, read credits and subscriptions, write), then the writes
  // it made possible (all pending batches unless `timeout` is zero).
  Result<void> poll(Timeout timeout);
  // Serves until `done()` or the deadline (Errc::timeout, op `op`).
  template <class Pred>
  Result<void> serve_until(Pred done, Timeout timeout, const char* op, const char* what);
  std::size_t ready_links() const noexcept;
  EndpointStats stats() const;
  const std::string& url() const noexcept { return url_; }

 // The pattern (its Impl and its public class, which route messages) uses these.
  // A subscription or another pattern-specific message; an error drops the peer.
  virtual Result<void> on_pattern(Link& l, Kind kind, std::span<const std::byte> body) = 0;
  // The peer granted credit (or its queue drained): move waiting messages on.
  virtual void on_credit(Link& l) = 0;
  // The peer went away: count what it held.
  virtual void on_gone(Link& l) = 0;
  // Counters that belong to no live peer (gone peers, unrouted messages, a backlog).
  virtual Counters extra() const = 0;
  virtual std::size_t queue_bytes() const noexcept = 0;
  virtual void on_open(Link&) {}

  // Hands one frame to the link's transport queue; false when the engine cannot take it now
  // (its queue is full or the memory limit refuses it): the caller keeps the message.
  bool write(Link& l, std::span<const std::byte> frame);
  // Writes the pending batches: all of them, or those whose oldest message waited kQuiet; links
  // whose socket was full at the last try only with `stalled_too`. Returns whether any stalled
  // link made progress.
  bool flush_pending(bool all, bool stalled_too = false);
  // End of a publish/push: every 8th call, the batches whose oldest message waited kQuiet (a
  // clock read per call costs more than the check is worth).
  void after_call() {
    if (!pending_.empty() && (++calls_ & 7) == 0) flush_pending(false);
  }
  // Forgets links whose connection has ended (never during a handler's iteration).
  void reap();

  std::optional<Server> server_;
  std::unordered_map<Session::Id, Link> links_;
  std::vector<Session::Id> order_;  // links in connection order (round robin, fan-out)
  std::vector<Session::Id> pending_;  // links with a pending batch
  std::string url_;
  std::string role_;
  std::uint64_t window_cap_ = 65536;  // a peer's window is what it grants, at most this
  Counters gone_;  // counters of links that went away
  bool closing_ = false;
  unsigned calls_ = 0;
  std::condition_variable wake_;
  std::thread flusher_;
  bool flusher_idle_ = false, flusher_stop_ = false;

 private:
  void handle(Session& s, Message& m);
  void flusher_loop();
  void reject(Session& s, std::string reason);
};

template <class Pred>
Result<void> Bound::serve_until(Pred done, Timeout timeout, const char* op, const char* what) {
  const auto until = detail::deadline_after(timeout);
  while (!done()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return fail(Errc::timeout, op, what);
    const auto left = until == std::chrono::steady_clock::time_point::max() ? forever : Timeout(until - now);
    if (auto r = poll(std::min<Timeout>(left, std::chrono::milliseconds(100))); !r) return r;
  }
  return {};
}

}  // namespace ipcx::messaging
