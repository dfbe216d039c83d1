// The broker protocol (docs/broker.md): what a client and ipcxd say to each other, one
// protocol message per transport message. Every message starts with a fixed header (version,
// op, flags, correlation id); the op's fields follow in a fixed order. Decoding checks every
// length against the message's size and the protocol's limits, rejects trailing bytes, and
// never allocates more than the message holds. Fuzzed (fuzz/broker_wire).
//
// Each message type lists its fields once (`fields(f)`): the same list encodes and decodes.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <ipcx/error.hpp>

namespace ipcx::broker::wire {

static_assert(std::endian::native == std::endian::little, "the wire is little-endian; add byte swaps for this target");

inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kHeader = 12;      // u8 version, u8 op, u16 flags, u64 correlation id
inline constexpr std::size_t kMaxName = 200;    // queue, topic and service names
inline constexpr std::size_t kMaxText = 4096;   // message ids, error texts, metadata values
inline constexpr std::size_t kMaxQueueName = 128;  // and 4 more for its dead-letter queue, NAME.dlq

enum class Op : std::uint8_t {
  // client → broker (a correlation id of 0 asks for no reply, where that makes sense)
  declare = 1,   // create a queue (or check that it exists)
  publish = 2,   // append a message; the reply is a confirm once it is as durable as the queue says
  consume = 3,   // subscribe to a queue: deliveries are pushed, up to `prefetch` unacknowledged
  cancel = 4,    // end a subscription (its unacknowledged deliveries go back to the queue)
  ack = 5,       // a delivery was handled: remove it
  nack = 6,      // a delivery was not handled: back to the queue (an attempt), or dead-letter it
  get = 7,       // take one message, leased for a time (acknowledged by any connection)
  purge = 8,     // remove every ready message
  remove = 9,    // delete a queue and its files
  list = 10,     // queues and their counters
  status = 11,   // the daemon: pid, uptime, addresses
  subscribe = 12,    // topics: messages on topics matching a pattern are pushed
  unsubscribe = 13,
  topic_publish = 14,  // a message to the current subscribers of a topic (not stored)
  register_ = 15,    // a service name → endpoint, leased to this connection
  unregister = 16,
  lookup = 17,       // one service
  services = 18,     // services whose names match a pattern
  watch = 19,        // up/down events of services matching a pattern (the current ones first)
  unwatch = 20,
  // broker → client
  ok = 64,        // a request succeeded (op-specific body, possibly empty)
  error = 65,     // a request failed: Errc and text
  confirm = 66,   // a publish is durable (or was a duplicate of a durable one)
  delivery = 67,  // a message for a subscription (correlation id 0) or a get (its id)
  topic_message = 68,  // a topic message for a subscription (correlation id 0)
  service_event = 69,  // a watched service came or went (correlation id 0)
  service_info = 70,   // lookup's reply
  service_list = 71,   // services' reply
  ended = 72,          // a queue subscription ended (its queue was removed); correlation id 0
};

// The header in front of every message.
struct Header {
  Op op{};
  std::uint16_t flags = 0;
  std::uint64_t corr = 0;
};

// How a queue keeps its log (docs/broker.md#durability).
enum class SyncPolicy : std::uint8_t {
  always = 0,  // a publish is confirmed after an fdatasync that began after its append
  group = 1,   // as always, but the sync waits up to the group window to take more messages
  none = 2,    // confirmed once written (page cache): survives ipcxd's crash, not the machine's
};
enum class Overflow : std::uint8_t {
  reject = 0,       // a publish over the limits fails (resource_exhausted): the publisher knows
  drop_oldest = 1,  // the oldest ready message is dead-lettered to make room
};

struct QueueConfig {
  std::uint64_t max_messages = 1'000'000;       // ready + unacknowledged
  std::uint64_t max_bytes = std::uint64_t{1} << 30;
  std::uint64_t ttl_ms = 0;                     // 0: messages never expire
  std::uint32_t max_attempts = 5;               // deliveries before dead-lettering; 0: unlimited
  std::uint32_t ack_timeout_ms = 30'000;        // an unacknowledged delivery is redelivered after this
  std::uint32_t dedup_window_ms = 120'000;      // a repeated message id within this is a duplicate
  SyncPolicy sync = SyncPolicy::always;
  Overflow overflow = Overflow::reject;
  template <class F>
  void fields(F& f) {
    f(max_messages), f(max_bytes), f(ttl_ms), f(max_attempts), f(ack_timeout_ms), f(dedup_window_ms);
    f(sync), f(overflow);
  }
  bool operator==(const QueueConfig&) const = default;
};

struct Declare {
  static constexpr Op op = Op::declare;
  std::string queue;
  QueueConfig config;
  template <class F> void fields(F& f) { f.name(queue), config.fields(f); }
};
struct Publish {
  static constexpr Op op = Op::publish;
  std::string queue;
  std::string id;                    // empty: no deduplication
  std::span<const std::byte> body;   // decoded: a view into the received message
  template <class F> void fields(F& f) { f.name(queue), f.text(id), f.blob(body); }
};
struct Consume {
  static constexpr Op op = Op::consume;
  std::string queue;
  std::uint32_t prefetch = 64;
  template <class F> void fields(F& f) { f.name(queue), f(prefetch); }
};
struct Cancel {
  static constexpr Op op = Op::cancel;
  std::uint64_t tag = 0;
  template <class F> void fields(F& f) { f(tag); }
};
struct Ack {
  static constexpr Op op = Op::ack;
  std::string queue;
  std::uint64_t seq = 0;
  template <class F> void fields(F& f) { f.name(queue), f(seq); }
};
struct Nack {
  static constexpr Op op = Op::nack;
  std::string queue;
  std::uint64_t seq = 0;
  std::uint8_t requeue = 1;  // 0: dead-letter it now
  template <class F> void fields(F& f) { f.name(queue), f(seq), f(requeue); }
};
struct Get {
  static constexpr Op op = Op::get;
  std::string queue;
  std::uint32_t wait_ms = 0;    // how long to wait for a message
  std::uint32_t lease_ms = 30'000;  // redelivered unless acknowledged within this
  template <class F> void fields(F& f) { f.name(queue), f(wait_ms), f(lease_ms); }
};
struct Purge {
  static constexpr Op op = Op::purge;
  std::string queue;
  template <class F> void fields(F& f) { f.name(queue); }
};
struct Remove {
  static constexpr Op op = Op::remove;
  std::string queue;
  template <class F> void fields(F& f) { f.name(queue); }
};
struct List {
  static constexpr Op op = Op::list;
  template <class F> void fields(F&) {}
};
struct StatusRequest {
  static constexpr Op op = Op::status;
  template <class F> void fields(F&) {}
};

// Replies.
struct Ok {
  static constexpr Op op = Op::ok;
  std::uint64_t value = 0;  // consume: the subscription's tag; purge: messages removed; declare: 1 if created
  template <class F> void fields(F& f) { f(value); }
};
struct Failure {
  static constexpr Op op = Op::error;
  std::uint16_t code = 0;  // ipcx::Errc
  std::string text;
  template <class F> void fields(F& f) { f(code), f.text(text); }
};
struct Confirm {
  static constexpr Op op = Op::confirm;
  std::uint64_t seq = 0;
  std::uint8_t duplicate = 0;  // the id was seen within the window: `seq` is the first one's
  template <class F> void fields(F& f) { f(seq), f(duplicate); }
};
struct Delivery {
  static constexpr Op op = Op::delivery;
  std::uint64_t tag = 0;  // the subscription; 0 for a get
  std::string queue;
  std::uint64_t seq = 0;
  std::uint32_t attempt = 1;  // 1 for the first delivery
  std::string id;
  std::uint64_t published_ms = 0;  // unix time
  std::span<const std::byte> body;
  template <class F> void fields(F& f) { f(tag), f.name(queue), f(seq), f(attempt), f.text(id), f(published_ms), f.blob(body); }
};
struct QueueInfo {
  std::string name;
  QueueConfig config;
  std::uint64_t ready = 0, unacked = 0, bytes = 0;
  std::uint32_t consumers = 0;
  std::uint64_t published = 0, duplicates = 0, delivered = 0, redelivered = 0, acked = 0;
  std::uint64_t dead_lettered = 0, expired = 0, rejected = 0;
  template <class F>
  void fields(F& f) {
    f.name(name), config.fields(f), f(ready), f(unacked), f(bytes), f(consumers);
    f(published), f(duplicates), f(delivered), f(redelivered), f(acked), f(dead_lettered), f(expired), f(rejected);
  }
};
struct Queues {
  static constexpr Op op = Op::ok;
  std::vector<QueueInfo> queues;
  template <class F> void fields(F& f) { f.list(queues); }
};
struct Status {
  static constexpr Op op = Op::ok;
  std::uint32_t pid = 0;
  std::uint64_t uptime_ms = 0;
  std::string version, socket, http, state_dir;
  std::uint32_t queues = 0, connections = 0;
  template <class F> void fields(F& f) { f(pid), f(uptime_ms), f.text(version), f.text(socket), f.text(http), f.text(state_dir), f(queues), f(connections); }
};

struct Ended {
  static constexpr Op op = Op::ended;
  std::uint64_t tag = 0;
  std::string reason;
  template <class F> void fields(F& f) { f(tag), f.text(reason); }
};

// Topics and services.
struct Subscribe {
  static constexpr Op op = Op::subscribe;
  std::string pattern;  // "a.b.c", "a.*.c" (one token), "a.>" (one or more trailing tokens)
  template <class F> void fields(F& f) { f.name(pattern); }
};
struct Unsubscribe {
  static constexpr Op op = Op::unsubscribe;
  std::uint64_t tag = 0;
  template <class F> void fields(F& f) { f(tag); }
};
struct TopicPublish {
  static constexpr Op op = Op::topic_publish;
  std::string topic;
  std::span<const std::byte> body;
  template <class F> void fields(F& f) { f.name(topic), f.blob(body); }
};
struct TopicMessage {
  static constexpr Op op = Op::topic_message;
  std::uint64_t tag = 0;
  std::string topic;
  std::uint64_t published_ms = 0;
  std::span<const std::byte> body;
  template <class F> void fields(F& f) { f(tag), f.name(topic), f(published_ms), f.blob(body); }
};
struct Meta {
  std::string key, value;
  template <class F> void fields(F& f) { f.name(key), f.text(value); }
};
struct ServiceInfo {
  static constexpr Op op = Op::service_info;
  std::string name;
  std::string url;
  std::vector<Meta> metadata;
  std::uint32_t pid = 0, uid = 0, gid = 0;
  std::uint64_t registered_ms = 0;
  template <class F> void fields(F& f) { f.name(name), f.text(url), f.list(metadata), f(pid), f(uid), f(gid), f(registered_ms); }
};
struct Register {
  static constexpr Op op = Op::register_;
  std::string name;
  std::string url;
  std::vector<Meta> metadata;
  template <class F> void fields(F& f) { f.name(name), f.text(url), f.list(metadata); }
};
struct Unregister {
  static constexpr Op op = Op::unregister;
  std::string name;
  template <class F> void fields(F& f) { f.name(name); }
};
struct Lookup {
  static constexpr Op op = Op::lookup;
  std::string name;
  template <class F> void fields(F& f) { f.name(name); }
};
struct ListServices {
  static constexpr Op op = Op::services;
  std::string pattern;
  template <class F> void fields(F& f) { f.name(pattern); }
};
struct ServiceList {
  static constexpr Op op = Op::service_list;
  std::vector<ServiceInfo> services;
  template <class F> void fields(F& f) { f.list(services); }
};
struct Watch {
  static constexpr Op op = Op::watch;
  std::string pattern;
  template <class F> void fields(F& f) { f.name(pattern); }
};
struct Unwatch {
  static constexpr Op op = Op::unwatch;
  std::uint64_t tag = 0;
  template <class F> void fields(F& f) { f(tag); }
};
struct ServiceEvent {
  static constexpr Op op = Op::service_event;
  std::uint64_t tag = 0;
  std::uint8_t up = 1;  // 1: registered (or there when the watch began); 0: gone
  std::string reason;   // down: "unregistered", "connection closed", "provider died"
  ServiceInfo service;
  template <class F> void fields(F& f) { f(tag), f(up), f.text(reason), service.fields(f); }
};

// Topic names: tokens of A-Z a-z 0-9 _ - : separated by '.'; patterns may also use '*' for
// one token and '>' as the last token for one or more.
bool valid_topic(std::string_view topic, bool pattern) noexcept;
bool topic_matches(std::string_view pattern, std::string_view topic) noexcept;
// Service names: 1-200 of A-Z a-z 0-9 . _ - : /
bool valid_service_name(std::string_view name) noexcept;
// Service patterns: a name with '*' matching any run of characters ("*" alone: all).
bool service_matches(std::string_view pattern, std::string_view name) noexcept;

// ---- encoding ---------------------------------------------------------------------------------------

class Encoder {
 public:
  explicit Encoder(std::vector<std::byte>& out) : out_(out) {}
  template <class T>
    requires std::is_integral_v<T> || std::is_enum_v<T>
  void operator()(const T& v) { put(&v, sizeof v); }
  void name(const std::string& s) { str(s); }
  void text(const std::string& s) { str(s); }
  void blob(std::span<const std::byte> b) {
    const auto n = static_cast<std::uint32_t>(b.size());
    put(&n, sizeof n);
    put(b.data(), b.size());
  }
  template <class T>
  void list(std::vector<T>& v) {
    const auto n = static_cast<std::uint32_t>(v.size());
    put(&n, sizeof n);
    for (auto& e : v) e.fields(*this);
  }

 private:
  void str(const std::string& s) {
    const auto n = static_cast<std::uint16_t>(s.size());
    put(&n, sizeof n);
    put(s.data(), s.size());
  }
  void put(const void* p, std::size_t n) {
    if (n == 0) return;
    const auto at = out_.size();
    out_.resize(at + n);
    std::memcpy(out_.data() + at, p, n);
  }
  std::vector<std::byte>& out_;
};

// Appends header + message to `out` (cleared first).
template <class M>
void encode(std::vector<std::byte>& out, M& m, std::uint64_t corr, std::uint16_t flags = 0) {
  out.clear();
  Encoder e(out);
  e(kVersion), e(M::op), e(flags), e(corr);
  m.fields(e);
}
template <class M>
std::vector<std::byte> encode(M& m, std::uint64_t corr, std::uint16_t flags = 0) {
  std::vector<std::byte> out;
  encode(out, m, corr, flags);
  return out;
}

// ---- decoding ---------------------------------------------------------------------------------------

class Decoder {
 public:
  explicit Decoder(std::span<const std::byte> in) : in_(in) {}
  template <class T>
    requires std::is_integral_v<T> || std::is_enum_v<T>
  void operator()(T& v) { take(&v, sizeof v); }
  void name(std::string& s) { str(s, kMaxName, "a name over 200 bytes"); }
  void text(std::string& s) { str(s, kMaxText, "a text over 4096 bytes"); }
  void blob(std::span<const std::byte>& b) {
    std::uint32_t n = 0;
    take(&n, sizeof n);
    if (!ok_ || n > in_.size() - at_) return bad("a body longer than the message");
    b = in_.subspan(at_, n);
    at_ += n;
  }
  template <class T>
  void list(std::vector<T>& v) {
    std::uint32_t n = 0;
    take(&n, sizeof n);
    // Each element takes at least one byte: a count above what is left is a lie, not an allocation.
    if (!ok_ || n > in_.size() - at_) return bad("a list longer than the message");
    v.clear();
    for (std::uint32_t i = 0; i < n && ok_; ++i) v.emplace_back().fields(*this);
  }
  bool ok() const noexcept { return ok_; }
  bool at_end() const noexcept { return at_ == in_.size(); }
  const char* why() const noexcept { return why_; }

 private:
  void str(std::string& s, std::size_t max, const char* too_long) {
    std::uint16_t n = 0;
    take(&n, sizeof n);
    if (!ok_) return;
    if (n > max) return bad(too_long);
    if (n > in_.size() - at_) return bad("a string longer than the message");
    s.assign(reinterpret_cast<const char*>(in_.data() + at_), n);
    at_ += n;
  }
  void take(void* p, std::size_t n) {
    if (!ok_) return;
    if (n > in_.size() - at_) return bad("the message ends inside a field");
    std::memcpy(p, in_.data() + at_, n);
    at_ += n;
  }
  void bad(const char* why) {
    if (ok_) why_ = why;
    ok_ = false;
  }
  std::span<const std::byte> in_;
  std::size_t at_ = 0;
  bool ok_ = true;
  const char* why_ = "";
};

// The header of a received message (version and op checked). Errors: protocol.
Result<Header> decode_header(std::span<const std::byte> in);

// Decodes the body of a message whose header said M::op. Errors: protocol, with the reason.
template <class M>
Result<void> decode(std::span<const std::byte> in, M& m) {
  if (in.size() < kHeader) return fail(Errc::protocol, "broker decode", "a message shorter than its header");
  Decoder d(in.subspan(kHeader));
  m.fields(d);
  if (!d.ok()) return fail(Errc::protocol, "broker decode", d.why());
  if (!d.at_end()) return fail(Errc::protocol, "broker decode", "bytes after the last field");
  return {};
}

// Checks the fields a decoder cannot: enum values in range, names made of allowed characters.
bool valid_queue_name(std::string_view name) noexcept;
Result<void> validate(const QueueConfig& c);

}  // namespace ipcx::broker::wire
