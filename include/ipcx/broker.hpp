// A client of ipcxd, the broker daemon (docs/broker.md): durable queues whose publisher and
// consumer need not be alive at the same time.
//
//   auto b = ipcx::broker::Client::connect().value();      // finds the daemon's socket
//   b.declare("jobs").value();
//   b.publish("jobs", ipcx::as_bytes("resize 42.png"), {.id = "job-42"}).value();  // confirmed: durable
//   b.consume("jobs").value();                               // deliveries pushed, 64 unacked at most
//   auto d = b.next(1s).value();                             // a Delivery
//   handle(d.body);
//   b.ack(d).value();                                        // not acked before the consumer dies: redelivered
//
// Delivery is at least once: a message is removed only by an ack; an unacknowledged delivery
// goes back to the queue when its consumer's connection ends (SIGKILL included) or its ack
// timeout passes, and after max_attempts deliveries to the queue's dead-letter queue.
//
// Threading: a Client is used by one thread at a time (it reads its connection in the calls
// that wait). Use one Client per thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>
#include <ipcx/peer.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::broker {

// Where ipcxd listens when nothing says otherwise: $IPCX_BROKER if set (a URL), else
// unix://$XDG_RUNTIME_DIR/ipcx/ipcxd.sock, else unix:///run/ipcx/ipcxd.sock for root and
// unix:///tmp/ipcx-<uid>/ipcxd.sock for others.
std::string default_url();

enum class Sync : std::uint8_t {
  always = 0,  // confirmed after an fdatasync that began after the message was written
  group = 1,   // as always, but a sync waits up to the daemon's group window for more messages
  none = 2,    // confirmed once written: survives ipcxd's crash, not the machine's
};
enum class Overflow : std::uint8_t {
  reject = 0,       // a publish over the limits fails (resource_exhausted)
  drop_oldest = 1,  // the oldest ready message is dead-lettered to make room
};

struct QueueOptions {
  std::uint64_t max_messages = 1'000'000;  // ready + unacknowledged
  std::uint64_t max_bytes = std::uint64_t{1} << 30;
  std::chrono::milliseconds ttl{0};        // 0: never expire; expired messages are dead-lettered
  std::uint32_t max_attempts = 5;          // deliveries before dead-lettering; 0: unlimited
  std::chrono::milliseconds ack_timeout{30'000};
  std::chrono::milliseconds dedup_window{120'000};
  Sync sync = Sync::always;
  Overflow overflow = Overflow::reject;
};

struct PublishOptions {
  // Deduplication: a second publish with the same id within the queue's window is confirmed
  // as a duplicate (Confirm::duplicate) and not stored again. Empty: no deduplication.
  std::string id;
};

struct Confirm {
  std::uint64_t seq = 0;   // the message's sequence number in its queue
  bool duplicate = false;  // the id was seen within the window: seq is the first message's
};

struct Delivery {
  std::uint64_t subscription = 0;  // consume()'s tag; 0 for get()
  std::string queue;
  std::uint64_t seq = 0;
  std::uint32_t attempt = 1;       // 2 and more: delivered before and not acknowledged
  std::string id;
  std::chrono::system_clock::time_point published;
  std::vector<std::byte> body;
  std::string_view text() const noexcept { return {reinterpret_cast<const char*>(body.data()), body.size()}; }
};

struct QueueInfo {
  std::string name;
  QueueOptions options;
  std::uint64_t ready = 0, unacked = 0, bytes = 0;
  std::uint32_t consumers = 0;
  std::uint64_t published = 0, duplicates = 0, delivered = 0, redelivered = 0, acked = 0;
  std::uint64_t dead_lettered = 0, expired = 0, rejected = 0;
};

struct TopicMessage {
  std::uint64_t subscription = 0;
  std::string topic;
  std::chrono::system_clock::time_point published;
  std::vector<std::byte> body;
  std::string_view text() const noexcept { return {reinterpret_cast<const char*>(body.data()), body.size()}; }
};

struct Service {
  std::string name;
  std::string url;                                          // where to reach it (the provider's word)
  std::vector<std::pair<std::string, std::string>> metadata;
  pid_t pid = 0;                                            // the provider, as the kernel reported it
  uid_t uid = 0;
  gid_t gid = 0;
  std::chrono::system_clock::time_point registered;
};

struct ServiceEvent {
  std::uint64_t watch = 0;
  bool up = true;      // registered (or already there when the watch began); false: gone
  std::string reason;  // when gone: "unregistered", "provider disconnected"
  Service service;
};

struct Status {
  pid_t pid = 0;
  std::chrono::milliseconds uptime{0};
  std::string version, socket, http, state_dir;
  std::uint32_t queues = 0, connections = 0;
};

class Client {
 public:
  Client() noexcept;
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // Connects to ipcxd at `url` (default_url() when empty). Errors: connection_refused or
  // not_found when no daemon listens there.
  static Result<Client> connect(std::string_view url = {}, Timeout timeout = std::chrono::seconds(5));

  // Creates the queue, or checks that it exists (its options are kept: created is false).
  Result<bool> declare(std::string_view queue, const QueueOptions& options = {}, Timeout timeout = std::chrono::seconds(10));

  // Publishes and waits for the confirm: the message is as durable as the queue's sync policy
  // says. Errors: not_found (no such queue), resource_exhausted (over the queue's limits with
  // Overflow::reject), permission_denied, too_large, timeout.
  Result<Confirm> publish(std::string_view queue, std::span<const std::byte> body, const PublishOptions& options = {},
                          Timeout timeout = std::chrono::seconds(10));
  // Publishes without waiting: returns a token for confirmed(). At most `window` publishes
  // wait for their confirm at once (this call waits for the oldest beyond that).
  Result<std::uint64_t> publish_async(std::string_view queue, std::span<const std::byte> body,
                                      const PublishOptions& options = {}, std::size_t window = 256,
                                      Timeout timeout = std::chrono::seconds(10));
  // Waits until every publish_async (and ack_async) so far is answered; the first failure is
  // returned (the others are still answered: see unconfirmed()).
  Result<void> confirm_all(Timeout timeout = std::chrono::seconds(30));
  std::size_t unconfirmed() const noexcept;

  // Subscribes: messages are pushed to this client, at most `prefetch` unacknowledged at
  // once, shared round-robin with the queue's other consumers. Returns the subscription tag.
  Result<std::uint64_t> consume(std::string_view queue, std::uint32_t prefetch = 64, Timeout timeout = std::chrono::seconds(10));
  Result<void> cancel(std::uint64_t subscription, Timeout timeout = std::chrono::seconds(10));
  // The next pushed delivery. Errors: timeout, closed (the daemon went away), not_found (a
  // subscription ended because its queue was removed; the deliveries before it come first).
  Result<Delivery> next(Timeout timeout = forever);
  // Takes one message (waiting up to `wait`), leased for `lease`: acknowledged by any
  // connection before then, or it goes back to the queue. Errors: timeout when none came.
  Result<Delivery> get(std::string_view queue, std::chrono::milliseconds wait = std::chrono::milliseconds(0),
                       std::chrono::milliseconds lease = std::chrono::seconds(30));

  // Acknowledges a delivery (it is removed for good). Waits for the daemon's answer.
  Result<void> ack(std::string_view queue, std::uint64_t seq, Timeout timeout = std::chrono::seconds(10));
  Result<void> ack(const Delivery& d, Timeout timeout = std::chrono::seconds(10)) { return ack(d.queue, d.seq, timeout); }
  // Acknowledges without waiting for the daemon's answer (a consumer's fast path): at most
  // `window` acks and publish_async()s are unanswered at once (this call waits for the oldest
  // beyond that). A refusal (the delivery was no longer out) is reported by confirm_all().
  Result<void> ack_async(std::string_view queue, std::uint64_t seq, std::size_t window = 256,
                         Timeout timeout = std::chrono::seconds(10));
  Result<void> ack_async(const Delivery& d, std::size_t window = 256) { return ack_async(d.queue, d.seq, window); }
  // Gives a delivery back: to the queue (an attempt counted), or (requeue false) to the dead-letter queue.
  Result<void> nack(std::string_view queue, std::uint64_t seq, bool requeue = true, Timeout timeout = std::chrono::seconds(10));

  // Removes every ready message; returns how many.
  Result<std::uint64_t> purge(std::string_view queue, Timeout timeout = std::chrono::seconds(10));
  // Deletes the queue and its files. Its consumers' subscriptions end.
  Result<void> remove(std::string_view queue, Timeout timeout = std::chrono::seconds(10));
  Result<std::vector<QueueInfo>> queues(Timeout timeout = std::chrono::seconds(10));
  Result<Status> status(Timeout timeout = std::chrono::seconds(10));

  // ---- topics: many-to-many publish/subscribe through the daemon, nothing stored ----
  // Topic names are tokens separated by '.' ("sensors.cam1.frame"); a pattern may use '*' for
  // one token and '>' as its last token for one or more ("sensors.*.frame", "sensors.>").
  Result<std::uint64_t> subscribe(std::string_view pattern, Timeout timeout = std::chrono::seconds(10));
  Result<void> unsubscribe(std::uint64_t subscription, Timeout timeout = std::chrono::seconds(10));
  // Sends to the topic's current subscribers; returns how many it reached (0 is not an error).
  // A subscriber whose connection is full misses it (counted by the daemon, never blocking the publisher).
  Result<std::size_t> publish_topic(std::string_view topic, std::span<const std::byte> body, Timeout timeout = std::chrono::seconds(10));
  Result<TopicMessage> next_message(Timeout timeout = forever);

  // ---- services: names leased to the registering connection ----
  // Registers `name` → `url` while this client stays connected: when its connection ends
  // (close, exit, SIGKILL), watchers are told at once. Errors: already_exists when another
  // live connection holds the name.
  Result<void> register_service(std::string_view name, std::string_view url,
                                std::vector<std::pair<std::string, std::string>> metadata = {}, Timeout timeout = std::chrono::seconds(10));
  Result<void> unregister_service(std::string_view name, Timeout timeout = std::chrono::seconds(10));
  // Errors: not_found.
  Result<Service> lookup(std::string_view name, Timeout timeout = std::chrono::seconds(10));
  // Services whose names match `pattern` ('*': any run of characters).
  Result<std::vector<Service>> services(std::string_view pattern = "*", Timeout timeout = std::chrono::seconds(10));
  // Up/down events for services matching `pattern`: first an `up` for each current one.
  Result<std::uint64_t> watch(std::string_view pattern = "*", Timeout timeout = std::chrono::seconds(10));
  Result<void> unwatch(std::uint64_t watch, Timeout timeout = std::chrono::seconds(10));
  Result<ServiceEvent> next_event(Timeout timeout = forever);

  bool is_open() const noexcept;
  void close() noexcept;

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipcx::broker
