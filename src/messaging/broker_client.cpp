// The broker client (include/ipcx/broker.hpp): requests with correlation ids over one
// connection; replies are matched by id, deliveries pushed meanwhile are kept in order.
#include <ipcx/broker.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>

#include "messaging/broker_wire.hpp"
#include "os/sys.hpp"

namespace ipcx::broker {

std::string default_url() {
  if (const char* url = std::getenv("IPCX_BROKER"); url && *url) return url;
  if (const char* run = std::getenv("XDG_RUNTIME_DIR"); run && *run == '/') return fmt::format("unix://{}/ipcx/ipcxd.sock", run);
  if (::geteuid() == 0) return "unix:///run/ipcx/ipcxd.sock";
  return fmt::format("unix:///tmp/ipcx-{}/ipcxd.sock", ::geteuid());
}

namespace {

wire::QueueConfig to_wire(const QueueOptions& o) {
  return {.max_messages = o.max_messages,
          .max_bytes = o.max_bytes,
          .ttl_ms = static_cast<std::uint64_t>(o.ttl.count()),
          .max_attempts = o.max_attempts,
          .ack_timeout_ms = static_cast<std::uint32_t>(o.ack_timeout.count()),
          .dedup_window_ms = static_cast<std::uint32_t>(o.dedup_window.count()),
          .sync = static_cast<wire::SyncPolicy>(o.sync),
          .overflow = static_cast<wire::Overflow>(o.overflow)};
}

QueueOptions from_wire(const wire::QueueConfig& c) {
  return {.max_messages = c.max_messages,
          .max_bytes = c.max_bytes,
          .ttl = std::chrono::milliseconds(c.ttl_ms),
          .max_attempts = c.max_attempts,
          .ack_timeout = std::chrono::milliseconds(c.ack_timeout_ms),
          .dedup_window = std::chrono::milliseconds(c.dedup_window_ms),
          .sync = static_cast<Sync>(c.sync),
          .overflow = static_cast<Overflow>(c.overflow)};
}

Delivery from_wire(const wire::Delivery& d) {
  Delivery out{.subscription = d.tag,
               .queue = d.queue,
               .seq = d.seq,
               .attempt = d.attempt,
               .id = d.id,
               .published = std::chrono::system_clock::time_point(std::chrono::milliseconds(d.published_ms)),
               .body = {}};
  out.body.assign(d.body.begin(), d.body.end());
  return out;
}

// A reply's error frame as an Error: the daemon's Errc and text.
Error failure_of(std::span<const std::byte> msg) {
  wire::Failure f;
  if (!wire::decode(msg, f)) return Error{Errc::protocol, 0, "broker", "an undecodable error reply"};
  auto code = static_cast<Errc>(f.code);
  if (f.code < 1 || f.code > static_cast<std::uint16_t>(Errc::system)) code = Errc::system;
  return Error{code, 0, "ipcxd", std::move(f.text)};
}

Service from_wire(const wire::ServiceInfo& i) {
  Service s{.name = i.name, .url = i.url, .metadata = {}, .pid = static_cast<pid_t>(i.pid), .uid = static_cast<uid_t>(i.uid),
            .gid = static_cast<gid_t>(i.gid),
            .registered = std::chrono::system_clock::time_point(std::chrono::milliseconds(i.registered_ms))};
  for (auto& m : i.metadata) s.metadata.emplace_back(m.key, m.value);
  return s;
}

}  // namespace

struct Client::Impl {
  Connection conn;
  std::uint64_t next_corr = 1;
  std::deque<Delivery> pushed;
  std::deque<TopicMessage> messages;
  std::deque<ServiceEvent> events;
  // publish_async's and ack_async's correlation ids still waiting for their answer.
  // In sending order (ids only grow), so the usual answer, the oldest's, is found at the front
  // and the window costs no allocation per message.
  std::deque<std::uint64_t> unconfirmed;
  std::optional<Error> async_error;
  std::vector<std::byte> out;
  Message in;

  template <class M>
  Result<std::uint64_t> send(M& m) {
    const auto corr = next_corr++;
    wire::encode(out, m, corr);
    if (auto r = conn.send(out, std::chrono::seconds(30)); !r) return std::unexpected(r.error());
    return corr;
  }

  // Reads one message and files it: a delivery is queued, an async publish's answer is
  // recorded. Returns the header and keeps the bytes in `in` for the caller.
  Result<wire::Header> read_one(const os::Deadline& deadline) {
    auto r = conn.recv(in, deadline.remaining());
    if (!r) return std::unexpected(r.error());
    auto h = wire::decode_header(in.bytes());
    if (!h) {
      conn.close();
      return std::unexpected(h.error());
    }
    if (h->op == wire::Op::delivery && h->corr == 0) {
      wire::Delivery d;
      if (auto ok = wire::decode(in.bytes(), d); !ok) {
        conn.close();
        return std::unexpected(ok.error());
      }
      pushed.push_back(from_wire(d));
    } else if (h->op == wire::Op::ended && h->corr == 0) {
      wire::Ended e;
      if (auto ok = wire::decode(in.bytes(), e); !ok) {
        conn.close();
        return std::unexpected(ok.error());
      }
      // In order with the deliveries before it; attempt 0 marks it (a delivery's is 1 or more).
      pushed.push_back({.subscription = e.tag, .queue = {}, .seq = 0, .attempt = 0, .id = e.reason, .published = {}, .body = {}});
    } else if (h->op == wire::Op::topic_message && h->corr == 0) {
      wire::TopicMessage m;
      if (auto ok = wire::decode(in.bytes(), m); !ok) {
        conn.close();
        return std::unexpected(ok.error());
      }
      messages.push_back({.subscription = m.tag, .topic = m.topic,
                          .published = std::chrono::system_clock::time_point(std::chrono::milliseconds(m.published_ms)),
                          .body = {m.body.begin(), m.body.end()}});
    } else if (h->op == wire::Op::service_event && h->corr == 0) {
      wire::ServiceEvent e;
      if (auto ok = wire::decode(in.bytes(), e); !ok) {
        conn.close();
        return std::unexpected(ok.error());
      }
      events.push_back({.watch = e.tag, .up = e.up != 0, .reason = e.reason, .service = from_wire(e.service)});
    } else if (auto it = std::lower_bound(unconfirmed.begin(), unconfirmed.end(), h->corr);
               it != unconfirmed.end() && *it == h->corr) {
      unconfirmed.erase(it);
      if (h->op == wire::Op::error && !async_error) async_error = failure_of(in.bytes());
    }
    return *h;
  }

  // Waits for the reply to `corr`; the message stays in `in`.
  Result<wire::Header> reply(std::uint64_t corr, Timeout timeout) {
    const auto deadline = os::Deadline::after(timeout);
    for (;;) {
      auto h = read_one(deadline);
      if (!h) return h;
      if (h->corr != corr) continue;
      if (h->op == wire::Op::error) return std::unexpected(failure_of(in.bytes()));
      return h;
    }
  }

  // Sends without waiting for the answer (read later by read_one), once fewer than `window`
  // are unanswered. Returns the correlation id.
  template <class M>
  Result<std::uint64_t> send_async(M& m, std::size_t window, Timeout timeout) {
    const auto deadline = os::Deadline::after(timeout);
    while (unconfirmed.size() >= std::max<std::size_t>(window, 1)) {
      if (auto h = read_one(deadline); !h) return std::unexpected(h.error());
    }
    auto corr = send(m);
    if (!corr) return std::unexpected(corr.error());
    unconfirmed.push_back(*corr);
    return *corr;
  }

  template <class R, class M>
  Result<R> call(M& m, Timeout timeout) {
    auto corr = send(m);
    if (!corr) return std::unexpected(corr.error());
    auto h = reply(*corr, timeout);
    if (!h) return std::unexpected(h.error());
    R r;
    if (h->op != R::op) return fail(Errc::protocol, "broker", fmt::format("reply op {} to a request expecting {}", static_cast<unsigned>(h->op), static_cast<unsigned>(R::op)));
    if (auto ok = wire::decode(in.bytes(), r); !ok) return std::unexpected(ok.error());
    return r;
  }
};

Client::Client() noexcept = default;
Client::Client(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Result<Client> Client::connect(std::string_view url, Timeout timeout) {
  const std::string where = url.empty() ? default_url() : std::string(url);
  auto conn = ipcx::connect(where, {}, timeout);
  if (!conn) {
    auto e = conn.error();
    e.detail = fmt::format("no broker at {}{}{}", where, e.detail.empty() ? "" : ": ", e.detail);
    return std::unexpected(std::move(e));
  }
  // A daemon found by the default path must be ours or root's: anyone may create
  // /tmp/ipcx-<uid>/ before us and listen there, and would read what we publish.
  if (url.empty()) {
    const auto peer = conn->peer();
    if (peer.verified && peer.uid != ::geteuid() && peer.uid != 0)
      return fail(Errc::permission_denied, "broker",
                  fmt::format("the broker at {} runs as uid {}, neither this user nor root (pass its URL to trust it)", where, peer.uid));
  }
  auto impl = std::make_unique<Impl>();
  impl->conn = std::move(*conn);
  return Client(std::move(impl));
}

// Waits until `queue` has an entry (reading the connection meanwhile) and takes it.
template <class T>
static Result<T> next_of(Client::Impl* impl, std::deque<T>& queue, Timeout timeout) {
  if (!impl) return fail(Errc::closed, "broker", "the client is not connected");
  const auto deadline = os::Deadline::after(timeout);
  while (queue.empty()) {
    if (!impl->conn.is_open()) return fail(Errc::closed, "broker", "the connection to ipcxd is closed");
    if (auto h = impl->read_one(deadline); !h) return std::unexpected(h.error());
  }
  auto v = std::move(queue.front());
  queue.pop_front();
  return v;
}

#define IPCX_BROKER_OPEN()                                                  \
  if (!impl_ || !impl_->conn.is_open()) return fail(Errc::closed, "broker", "the client is not connected")

Result<bool> Client::declare(std::string_view queue, const QueueOptions& options, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Declare m{.queue = std::string(queue), .config = to_wire(options)};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return r->value == 1;
}

Result<Confirm> Client::publish(std::string_view queue, std::span<const std::byte> body, const PublishOptions& options, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Publish m{.queue = std::string(queue), .id = options.id, .body = body};
  auto r = impl_->call<wire::Confirm>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return Confirm{.seq = r->seq, .duplicate = r->duplicate != 0};
}

Result<std::uint64_t> Client::publish_async(std::string_view queue, std::span<const std::byte> body, const PublishOptions& options,
                                            std::size_t window, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Publish m{.queue = std::string(queue), .id = options.id, .body = body};
  return impl_->send_async(m, window, timeout);
}

Result<void> Client::ack_async(std::string_view queue, std::uint64_t seq, std::size_t window, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Ack m{.queue = std::string(queue), .seq = seq};
  auto corr = impl_->send_async(m, window, timeout);
  if (!corr) return std::unexpected(corr.error());
  return {};
}

Result<void> Client::confirm_all(Timeout timeout) {
  IPCX_BROKER_OPEN();
  const auto deadline = os::Deadline::after(timeout);
  while (!impl_->unconfirmed.empty()) {
    if (auto h = impl_->read_one(deadline); !h) return std::unexpected(h.error());
  }
  if (impl_->async_error) return std::unexpected(*std::exchange(impl_->async_error, std::nullopt));
  return {};
}

std::size_t Client::unconfirmed() const noexcept { return impl_ ? impl_->unconfirmed.size() : 0; }

Result<std::uint64_t> Client::consume(std::string_view queue, std::uint32_t prefetch, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Consume m{.queue = std::string(queue), .prefetch = prefetch};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return r->value;
}

Result<void> Client::cancel(std::uint64_t subscription, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Cancel m{.tag = subscription};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  // Deliveries of that subscription still unread go back with it: drop them here.
  std::erase_if(impl_->pushed, [&](const Delivery& d) { return d.subscription == subscription; });
  return {};
}

Result<Delivery> Client::next(Timeout timeout) {
  if (!impl_) return fail(Errc::closed, "broker", "the client is not connected");
  auto d = next_of(impl_.get(), impl_->pushed, timeout);
  if (d && d->attempt == 0) return fail(Errc::not_found, "broker", fmt::format("subscription {} ended: {}", d->subscription, d->id));
  return d;
}

Result<Delivery> Client::get(std::string_view queue, std::chrono::milliseconds wait, std::chrono::milliseconds lease) {
  IPCX_BROKER_OPEN();
  wire::Get m{.queue = std::string(queue),
              .wait_ms = static_cast<std::uint32_t>(std::clamp<std::int64_t>(wait.count(), 0, UINT32_MAX)),
              .lease_ms = static_cast<std::uint32_t>(std::clamp<std::int64_t>(lease.count(), 1, UINT32_MAX))};
  // The daemon answers by the end of `wait` (a timeout error when no message came).
  auto r = impl_->call<wire::Delivery>(m, wait + std::chrono::seconds(10));
  if (!r) return std::unexpected(r.error());
  return from_wire(*r);
}

Result<void> Client::ack(std::string_view queue, std::uint64_t seq, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Ack m{.queue = std::string(queue), .seq = seq};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<void> Client::nack(std::string_view queue, std::uint64_t seq, bool requeue, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Nack m{.queue = std::string(queue), .seq = seq, .requeue = static_cast<std::uint8_t>(requeue ? 1 : 0)};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<std::uint64_t> Client::purge(std::string_view queue, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Purge m{.queue = std::string(queue)};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return r->value;
}

Result<void> Client::remove(std::string_view queue, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Remove m{.queue = std::string(queue)};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<std::vector<QueueInfo>> Client::queues(Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::List m;
  auto r = impl_->call<wire::Queues>(m, timeout);
  if (!r) return std::unexpected(r.error());
  std::vector<QueueInfo> out;
  for (auto& q : r->queues)
    out.push_back({.name = q.name, .options = from_wire(q.config), .ready = q.ready, .unacked = q.unacked, .bytes = q.bytes,
                   .consumers = q.consumers, .published = q.published, .duplicates = q.duplicates, .delivered = q.delivered,
                   .redelivered = q.redelivered, .acked = q.acked, .dead_lettered = q.dead_lettered, .expired = q.expired,
                   .rejected = q.rejected});
  return out;
}

Result<Status> Client::status(Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::StatusRequest m;
  auto r = impl_->call<wire::Status>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return Status{.pid = static_cast<pid_t>(r->pid), .uptime = std::chrono::milliseconds(r->uptime_ms), .version = r->version,
                .socket = r->socket, .http = r->http, .state_dir = r->state_dir, .queues = r->queues, .connections = r->connections};
}


Result<std::uint64_t> Client::subscribe(std::string_view pattern, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Subscribe m{.pattern = std::string(pattern)};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return r->value;
}

Result<void> Client::unsubscribe(std::uint64_t subscription, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Unsubscribe m{.tag = subscription};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  std::erase_if(impl_->messages, [&](const TopicMessage& t) { return t.subscription == subscription; });
  return {};
}

Result<std::size_t> Client::publish_topic(std::string_view topic, std::span<const std::byte> body, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::TopicPublish m{.topic = std::string(topic), .body = body};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return static_cast<std::size_t>(r->value);
}

Result<TopicMessage> Client::next_message(Timeout timeout) {
  if (!impl_) return fail(Errc::closed, "broker", "the client is not connected");
  return next_of(impl_.get(), impl_->messages, timeout);
}

Result<void> Client::register_service(std::string_view name, std::string_view url, std::vector<std::pair<std::string, std::string>> metadata,
                                      Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Register m{.name = std::string(name), .url = std::string(url), .metadata = {}};
  for (auto& [k, v] : metadata) m.metadata.push_back({.key = k, .value = v});
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<void> Client::unregister_service(std::string_view name, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Unregister m{.name = std::string(name)};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<Service> Client::lookup(std::string_view name, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Lookup m{.name = std::string(name)};
  auto r = impl_->call<wire::ServiceInfo>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return from_wire(*r);
}

Result<std::vector<Service>> Client::services(std::string_view pattern, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::ListServices m{.pattern = std::string(pattern)};
  auto r = impl_->call<wire::ServiceList>(m, timeout);
  if (!r) return std::unexpected(r.error());
  std::vector<Service> out;
  for (auto& s : r->services) out.push_back(from_wire(s));
  return out;
}

Result<std::uint64_t> Client::watch(std::string_view pattern, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Watch m{.pattern = std::string(pattern)};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  return r->value;
}

Result<void> Client::unwatch(std::uint64_t watch, Timeout timeout) {
  IPCX_BROKER_OPEN();
  wire::Unwatch m{.tag = watch};
  auto r = impl_->call<wire::Ok>(m, timeout);
  if (!r) return std::unexpected(r.error());
  std::erase_if(impl_->events, [&](const ServiceEvent& e) { return e.watch == watch; });
  return {};
}

Result<ServiceEvent> Client::next_event(Timeout timeout) {
  if (!impl_) return fail(Errc::closed, "broker", "the client is not connected");
  return next_of(impl_.get(), impl_->events, timeout);
}

bool Client::is_open() const noexcept { return impl_ && impl_->conn.is_open(); }
void Client::close() noexcept {
  if (impl_) impl_->conn.close();
}

}  // namespace ipcx::broker
