// Messaging patterns on the server engine: publish/subscribe and push/pull, over every socket
// transport (unix:, unix+seq:, tcp:) and the stream transports.
//
//   auto pub = ipcx::Publisher::bind("unix:///run/user/1000/quotes.sock").value();
//   auto sub = ipcx::Subscriber::connect("unix:///run/user/1000/quotes.sock", {"eur."}).value();
//   pub.publish("eur.usd", ipcx::as_bytes("1.09"));    // never blocks on a slow subscriber
//   auto p = sub.recv(1s);                              // Publication{topic, payload, sequence, gap}
//
//   auto push = ipcx::Pusher::bind("unix:///run/user/1000/jobs.sock").value();
//   auto pull = ipcx::Puller::connect("unix:///run/user/1000/jobs.sock").value();
//   push.push(ipcx::as_bytes("job 1"));                 // to the next worker with credit
//   auto job = pull.pull(1s);
//
// The bound side (Publisher, Pusher) is a Listener plus a Server on its own Reactor, driven by
// the calls made on it: publish/push/poll/flush run the engine (accept, read acknowledgements
// and subscriptions, write). Between calls only an internal flusher thread writes what is
// already queued; an application that stops calling should poll() (or flush() before it exits).
//
// The model (the vocabulary of semantics.hpp): per subscriber/worker, a `window` of messages
// handed to the transport and not yet acknowledged (the receiver acknowledges what its
// application took, cumulatively and in batches), then a PolicyQueue of QueueOptions
// (capacity, memory_cap, overflow). Accounting is exact per peer and in total:
// sent == delivered + dropped.total() + queued, where in-flight messages count as queued.
// Wire format, limits and late-join behaviour: docs/patterns.md.
//
// Threading: each endpoint is used by one thread at a time (move-only, not shared).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>
#include <ipcx/message.hpp>
#include <ipcx/peer.hpp>
#include <ipcx/semantics.hpp>
#include <ipcx/server.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx {

// Topics and subscription prefixes are bytes, at most this long (longer: invalid_argument).
inline constexpr std::size_t max_topic = 255;

// Counters of one subscriber or worker, as the bound side sees it.
struct PeerStats {
  Session::Id id = 0;
  PeerCred peer;
  Counters counters;                  // sent/delivered/dropped/queued for this peer
  std::size_t in_flight = 0;          // handed to the transport, not yet acknowledged (in `queued`)
  std::vector<std::string> prefixes;  // subscribers: its subscriptions
};

// The bound side's counters: `total` sums every peer, gone ones included, plus what no peer
// took (dropped.no_route).
struct EndpointStats {
  Counters total;
  std::vector<PeerStats> peers;     // connected peers
  std::size_t queue_bytes = 0;      // bytes held in the per-peer queues (bounded by memory_cap)
  ServerStats server;               // the engine's own (memory_in_use: its I/O buffers)
};

struct PublisherOptions {
  // Each subscriber's queue (beyond its window). A slow subscriber fills only its own.
  // Overflow::block makes publish() wait for the slowest matching subscriber (documented).
  QueueOptions queue{.capacity = 1000, .memory_cap = std::size_t{8} << 20, .overflow = Overflow::drop_oldest};
  // Messages in flight per subscriber (written, not yet acknowledged). 1..65536.
  std::size_t window = 4096;
  // Bytes held across every subscriber's queue; a copy that would pass it is treated as if
  // that subscriber's queue were full.
  std::size_t memory_cap = std::size_t{64} << 20;
  // Subscriptions one subscriber may hold; more drops it (protocol).
  std::size_t max_subscriptions = 256;
  ServerOptions server{.memory_limit = std::size_t{32} << 20};
  Options transport;
};

// One received publication.
struct Publication {
  std::string topic;
  Message payload;
  std::uint64_t sequence = 0;  // per subscriber, from 1, one per copy the publisher accepted
  std::uint64_t gap = 0;       // copies the publisher dropped for this subscriber since the previous one
};

class Publisher {
 public:
  struct Impl;
  static Result<Publisher> bind(std::string_view url, PublisherOptions options = {});
  Publisher(Publisher&&) noexcept;
  Publisher& operator=(Publisher&&) noexcept;
  ~Publisher();

  // Sends a copy to every subscriber with a matching prefix (none: counted dropped.no_route).
  // Never blocks on a subscriber unless its queue's overflow is block (then waits up to
  // `timeout` for room for every matching copy: Errc::timeout, nothing queued). Overflow::fail:
  // Errc::would_block when some copy was refused (the others were queued). invalid_argument for
  // a topic over max_topic; too_large for a message over the queue's memory_cap.
  Result<void> publish(std::string_view topic, std::span<const std::byte> data, Timeout timeout = Timeout::zero());
  // Serves subscribers (accepts, reads subscriptions and acknowledgements, writes queued
  // copies) for up to `timeout`, returning early once something was done.
  Result<void> poll(Timeout timeout);
  // Serves until every queued copy has been acknowledged (or its subscriber has gone), or the
  // deadline passes (Errc::timeout).
  Result<void> flush(Timeout timeout);
  // Waits (serving) until at least `n` subscribers have sent their subscriptions.
  Result<void> wait_subscribers(std::size_t n, Timeout timeout);
  std::size_t subscribers() const noexcept;
  EndpointStats stats() const;
  std::string url() const;

 private:
  explicit Publisher(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

struct SubscriberOptions {
  // Messages the publisher may have in flight to us; acknowledged every window/2 taken, and
  // whenever recv finds nothing more buffered. 1..65536.
  std::size_t window = 4096;
  Options transport;
};

// A subscriber's own counters.
struct SubscriberStats {
  std::uint64_t received = 0;  // publications handed to the application
  std::uint64_t gaps = 0;      // copies the publisher dropped for us (sum of every gap)
};

class Subscriber {
 public:
  struct Impl;
  // Connects and sends the subscriptions ("" matches every topic).
  static Result<Subscriber> connect(std::string_view url, std::vector<std::string> prefixes,
                                    SubscriberOptions options = {}, Timeout timeout = std::chrono::seconds(5));
  Subscriber(Subscriber&&) noexcept;
  Subscriber& operator=(Subscriber&&) noexcept;
  ~Subscriber();

  Result<void> subscribe(std::string_view prefix, Timeout timeout = std::chrono::seconds(5));
  Result<void> unsubscribe(std::string_view prefix, Timeout timeout = std::chrono::seconds(5));
  // The next publication. Errc::timeout; closed when the publisher went away (with its reason);
  // protocol on malformed input.
  Result<Publication> recv(Timeout timeout = forever);
  // The same into `into`, reusing its buffers: in steady state a publication allocates nothing.
  // On error `into` is unspecified.
  Result<void> recv(Publication& into, Timeout timeout = forever);
  std::optional<int> native_handle() const noexcept;
  SubscriberStats stats() const noexcept;

 private:
  explicit Subscriber(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

struct PusherOptions {
  // The backlog: messages no worker has credit for. Default: block (push waits).
  QueueOptions queue{.capacity = 10000, .memory_cap = std::size_t{64} << 20, .overflow = Overflow::block};
  ServerOptions server{.memory_limit = std::size_t{32} << 20};
  Options transport;
};

class Pusher {
 public:
  struct Impl;
  static Result<Pusher> bind(std::string_view url, PusherOptions options = {});
  Pusher(Pusher&&) noexcept;
  Pusher& operator=(Pusher&&) noexcept;
  ~Pusher();

  // Hands `data` to the next worker (round robin) that has credit, else to the backlog under
  // its overflow policy (block: waits up to `timeout`). A worker that dies holding messages
  // has them counted in dropped.peer_died; they are never re-sent.
  Result<void> push(std::span<const std::byte> data, Timeout timeout = forever);
  Result<void> poll(Timeout timeout);
  // Serves until nothing is queued or in flight, or the deadline (Errc::timeout).
  Result<void> flush(Timeout timeout);
  Result<void> wait_workers(std::size_t n, Timeout timeout);
  std::size_t workers() const noexcept;
  EndpointStats stats() const;
  std::string url() const;

 private:
  explicit Pusher(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

struct PullerOptions {
  // Credit granted to the pusher: messages it may have in flight to us (and that are counted
  // dropped.peer_died if we die holding them). 1..65536.
  std::size_t window = 8192;
  Options transport;
};

class Puller {
 public:
  struct Impl;
  static Result<Puller> connect(std::string_view url, PullerOptions options = {},
                                Timeout timeout = std::chrono::seconds(5));
  Puller(Puller&&) noexcept;
  Puller& operator=(Puller&&) noexcept;
  ~Puller();

  // The next message (taking it acknowledges it, in batches). Errc::timeout; closed when the
  // pusher went away.
  Result<Message> pull(Timeout timeout = forever);
  std::optional<int> native_handle() const noexcept;
  std::uint64_t received() const noexcept;

 private:
  explicit Puller(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

// Asks a bound pattern endpoint for its counters (Kind::stat_request); the JSON it answers.
Result<std::string> query_stats(std::string_view url, Timeout timeout = std::chrono::seconds(5));

}  // namespace ipcx
