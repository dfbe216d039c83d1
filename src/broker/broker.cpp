#include "broker/broker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <future>
#include <stdexcept>

#include <fmt/format.h>

#include <ipcx/broker.hpp>

#include "broker/broker_impl.hpp"

namespace ipcx::broker {

namespace {
constexpr std::string_view kVersion = "0.1";
}

std::uint64_t unix_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

std::filesystem::path default_state_dir() {
  if (::geteuid() == 0) return "/var/lib/ipcx";
  if (const char* s = std::getenv("XDG_STATE_HOME"); s && *s == '/') return std::filesystem::path(s) / "ipcx";
  if (const char* h = std::getenv("HOME"); h && *h == '/') return std::filesystem::path(h) / ".local/state/ipcx";
  return fmt::format("/tmp/ipcx-{}/state", ::geteuid());
}

using Impl = Broker::Impl;

void Impl::log(std::string_view line) const {
  if (options.log_to_stderr) fmt::print(stderr, "ipcxd: {}\n", line);
}

void Impl::reply_error(Session& s, std::uint64_t corr, const Error& e) {
  reply(s, corr, wire::Failure{.code = static_cast<std::uint16_t>(e.code), .text = e.detail.empty() ? e.message() : e.detail});
}
void Impl::reply_error(Session& s, std::uint64_t corr, Errc code, std::string text) {
  reply(s, corr, wire::Failure{.code = static_cast<std::uint16_t>(code), .text = std::move(text)});
}

bool Impl::permit(Session& s, std::uint64_t corr, Kind kind, std::string_view name, Right right) {
  const auto peer = s.peer();
  if (policy.allows(peer, kind, name, right)) return true;
  ++denials;
  log(fmt::format("denied: uid {} gid {} pid {}: {} on {} {:?}", peer.uid, peer.gid, peer.pid, to_string(right), to_string(kind), name));
  reply_error(s, corr, Errc::permission_denied,
              fmt::format("uid {} may not {} {} {:?} (no rule in the broker's policy allows it)", peer.uid, to_string(right), to_string(kind), name));
  return false;
}

void Impl::on_message(Session& s, Message& msg) {
  auto h = wire::decode_header(msg.bytes());
  if (!h) {
    log(fmt::format("connection {} (pid {}): {}; dropped", s.id(), s.peer().pid, h.error().detail));
    s.abort(h.error().detail);
    return;
  }
  const auto in = msg.bytes();
  switch (h->op) {
    case wire::Op::declare: case wire::Op::publish: case wire::Op::consume: case wire::Op::cancel: case wire::Op::ack:
    case wire::Op::nack: case wire::Op::get: case wire::Op::purge: case wire::Op::remove: case wire::Op::list:
      return on_queue_request(s, *h, in);
    case wire::Op::subscribe: case wire::Op::unsubscribe: case wire::Op::topic_publish: case wire::Op::register_:
    case wire::Op::unregister: case wire::Op::lookup: case wire::Op::services: case wire::Op::watch: case wire::Op::unwatch:
      return on_registry_request(s, *h, in);
    case wire::Op::status: {
      wire::StatusRequest m;
      if (!decode_or_reply(s, *h, in, m)) return;
      if (!policy.knows(s.peer())) return (void)permit(s, h->corr, Kind::queue, "*", Right::lookup);
      wire::Status r{.pid = static_cast<std::uint32_t>(::getpid()),
                     .uptime_ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()),
                     .version = std::string(kVersion),
                     .socket = url,
                     .http = http ? http->url() : "",
                     .state_dir = options.state_dir.string(),
                     .queues = static_cast<std::uint32_t>(slots.size()),
                     .connections = static_cast<std::uint32_t>(server->connections())};
      return reply(s, h->corr, std::move(r));
    }
    default:
      return reply_error(s, h->corr, Errc::protocol, fmt::format("op {} is not a request", static_cast<unsigned>(h->op)));
  }
}

void Impl::on_close(Session& s) {
  if (closing) return;
  // Services first: their watchers hear of the death in this same loop round.
  drop_registrations(s.id());
  auto it = conns.find(s.id());
  if (it != conns.end()) {
    for (auto tag : it->second.consumers) end_consumer(tag, s.id());
    for (auto tag : it->second.topics) topic_subs.erase(tag);
    for (auto tag : it->second.watches) watches.erase(tag);
    conns.erase(it);
  }
  for (auto& [name, sl] : slots) {
    const auto before = sl.waiters.size();
    std::erase_if(sl.waiters, [&](const Waiter& w) { return w.session == s.id(); });
    if (sl.waiters.size() != before) dispatch(sl);
  }
}

void Impl::tick() { tick_queues(); }

// ---- durability ----

void Impl::request_sync(Slot& s) {
  if (!s.queue->needs_sync() || s.sync_requested) return;
  s.sync_requested = true;
  {
    std::lock_guard lk(sync_mu);
    sync_wanted.push_back(s.queue);
  }
  sync_cv.notify_one();
}

void Impl::sync_loop() {
  std::unique_lock lk(sync_mu);
  for (;;) {
    sync_cv.wait(lk, [&] { return sync_stop || !sync_wanted.empty(); });
    if (sync_stop) return;
    auto batch = std::move(sync_wanted);
    sync_wanted.clear();
    lk.unlock();
    // Group commit: give the queues that asked for it up to the window to take more messages,
    // but no longer than appends keep coming (a pause of 100 µs means the publishers wait
    // for this sync).
    const bool group = std::any_of(batch.begin(), batch.end(), [](auto& q) { return q->config().sync == wire::SyncPolicy::group; });
    if (group && options.group_window.count() > 0) {
      const auto until = Clock::now() + options.group_window;
      auto appended = [&] {
        std::uint64_t n = 0;
        for (auto& q : batch) n += q->last_seq();
        return n;
      };
      for (auto seen = appended(); Clock::now() < until;) {
        std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::microseconds(100), until - Clock::now()));
        const auto now_seen = appended();
        if (now_seen == seen) break;
        seen = now_seen;
      }
    }
    for (auto& q : batch) {
      // Records appended while a sync ran are synced at once by the next one, without waiting
      // for the loop to ask (their confirms would otherwise wait a loop round trip more). A few
      // rounds at most: the other queues of the batch are waiting too.
      for (int round = 0; round < 8; ++round) {
        auto durable = q->sync_log();
        server->post([this, name = q->name(), qp = q.get(), durable] { on_synced(name, qp, durable); });
        if (!durable || q->last_seq() <= *durable) break;
      }
    }
    lk.lock();
  }
}

void Impl::on_synced(const std::string& name, Queue* qp, const Result<std::uint64_t>& durable) {
  auto* s = slot(name);
  if (!s || s->queue.get() != qp) return;
  // Publishes since the sync began wait for the next one (requested below).
  s->sync_requested = false;
  if (!durable) {
    log(fmt::format("queue {}: fdatasync failed: {}", name, durable.error().message()));
    while (!s->confirms.empty()) {
      auto c = s->confirms.front();
      s->confirms.pop_front();
      if (auto* session = server->find(c.session))
        reply_error(*session, c.corr, Errc::system, "the message could not be made durable: " + durable.error().message());
    }
    return;
  }
  while (!s->confirms.empty() && s->confirms.front().seq <= *durable) {
    auto c = s->confirms.front();
    s->confirms.pop_front();
    if (auto* session = server->find(c.session)) reply(*session, c.corr, wire::Confirm{.seq = c.seq, .duplicate = 0});
  }
  if (!s->confirms.empty()) request_sync(*s);
}

// ---- introspection ----

namespace {
std::string_view sync_name(wire::SyncPolicy p) {
  switch (p) {
    case wire::SyncPolicy::always: return "always";
    case wire::SyncPolicy::group: return "group";
    case wire::SyncPolicy::none: return "none";
  }
  return "?";
}
nlohmann::json service_json(const wire::ServiceInfo& i) {
  nlohmann::json meta = nlohmann::json::object();
  for (auto& m : i.metadata) meta[m.key] = m.value;
  return {{"name", i.name}, {"url", i.url}, {"pid", i.pid}, {"uid", i.uid}, {"gid", i.gid}, {"registered_ms", i.registered_ms}, {"metadata", meta}};
}
}  // namespace

nlohmann::json Impl::snapshot() {
  nlohmann::json j;
  j["broker"] = {{"pid", ::getpid()},
                 {"version", kVersion},
                 {"uptime_ms", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()},
                 {"socket", url},
                 {"state_dir", options.state_dir.string()},
                 {"http", http ? http->url() : ""},
                 {"connections", server->connections()},
                 {"denials", denials},
                 {"topic_messages", topic_messages},
                 {"topic_missed", topic_missed},
                 {"time_ms", unix_ms()}};
  auto& qs = j["queues"] = nlohmann::json::array();
  for (auto& [name, sl] : slots) {
    auto i = sl.queue->info();
    qs.push_back({{"name", i.name}, {"ready", i.ready}, {"unacked", i.unacked}, {"bytes", i.bytes}, {"consumers", i.consumers},
                  {"published", i.published}, {"duplicates", i.duplicates}, {"delivered", i.delivered}, {"redelivered", i.redelivered},
                  {"acked", i.acked}, {"dead_lettered", i.dead_lettered}, {"expired", i.expired}, {"rejected", i.rejected},
                  {"sync", sync_name(i.config.sync)}});
  }
  std::map<std::string, std::size_t> patterns;
  for (auto& [tag, sub] : topic_subs) ++patterns[sub.pattern];
  auto& ts = j["topics"] = nlohmann::json::array();
  for (auto& [p, n] : patterns) ts.push_back({{"pattern", p}, {"subscribers", n}});
  j["topic_messages"] = topic_messages;
  j["topic_missed"] = topic_missed;
  auto& ss = j["services"] = nlohmann::json::array();
  for (auto& [name, reg] : services) ss.push_back(service_json(reg.info));
  auto& cs = j["connections"] = nlohmann::json::array();
  server->for_each([&](Session& s) {
    const auto peer = s.peer();
    std::size_t subs = 0, svcs = 0;
    if (auto it = conns.find(s.id()); it != conns.end()) {
      subs = it->second.consumers.size() + it->second.topics.size() + it->second.watches.size();
      svcs = it->second.services.size();
    }
    cs.push_back({{"id", s.id()}, {"pid", peer.pid}, {"uid", peer.uid}, {"gid", peer.gid}, {"subscriptions", subs}, {"services", svcs}});
  });
  return j;
}

nlohmann::json Impl::snapshot_from_any_thread() {
  auto promise = std::make_shared<std::promise<nlohmann::json>>();
  auto result = promise->get_future();
  server->post([this, promise] { promise->set_value(snapshot()); });
  // Http answers 503 for a snapshot that throws (the exception stays inside its handler).
  if (result.wait_for(std::chrono::seconds(2)) != std::future_status::ready)
    throw std::runtime_error("the broker's loop did not answer within 2 s");
  return result.get();
}

// ---- lifecycle ----

Broker::Broker(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

Broker::~Broker() {
  if (!impl_) return;
  impl_->http.reset();  // its threads ask the loop for snapshots: gone before the loop
  {
    std::lock_guard lk(impl_->sync_mu);
    impl_->sync_stop = true;
  }
  impl_->sync_cv.notify_all();
  if (impl_->syncer.joinable()) impl_->syncer.join();
  // The engine closes the connections left as it goes, and would call on_close for each:
  // nothing is left to release, and the state it would touch must outlive it. So first.
  impl_->closing = true;
  impl_->server.reset();
}

namespace {
Result<HttpOptions> http_options(const std::string& spec) {
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos) return fail(Errc::invalid_argument, "http", fmt::format("{:?} is not ADDRESS:PORT", spec));
  HttpOptions o;
  o.address = spec.substr(0, colon);
  if (o.address.size() > 2 && o.address.front() == '[' && o.address.back() == ']') o.address = o.address.substr(1, o.address.size() - 2);
  const auto port = spec.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
    return fail(Errc::invalid_argument, "http", fmt::format("{:?} is not a port", port));
  o.port = static_cast<std::uint16_t>(std::stoul(port));
  if (o.address == "localhost") o.address = "127.0.0.1";  // bound as an address, never resolved
  return o;
}
}  // namespace

Result<std::unique_ptr<Broker>> Broker::create(BrokerOptions options) {
  auto impl = std::make_unique<Impl>();
  if (options.state_dir.empty()) options.state_dir = default_state_dir();
  if (options.url.empty()) options.url = default_url();
  impl->options = options;
  impl->policy = Policy::owner_only(::geteuid());
  if (!options.policy.empty()) {
    auto p = Policy::load(options.policy, ::geteuid());
    if (!p) return std::unexpected(p.error());
    impl->policy = std::move(*p);
    for (auto& line : impl->policy.describe()) impl->log("policy: " + line);
  }

  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec) return fail_errno(ec.value(), "mkdir", options.state_dir.string());
  // One daemon per state directory: a second one would serve the same queues' files.
  const auto lock_path = options.state_dir / "ipcxd.lock";
  impl->state_lock = Fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!impl->state_lock) return fail_errno(errno, "open", lock_path.string());
  if (::flock(impl->state_lock.get(), LOCK_EX | LOCK_NB) != 0)
    return fail(Errc::address_in_use, "ipcxd", fmt::format("another ipcxd uses the state directory {}", options.state_dir.string()));

  auto* p = impl.get();
  Server::Handlers h;
  h.on_message = [p](Session& s, Message& m) { p->on_message(s, m); };
  h.on_close = [p](Session& s, const Error&) { p->on_close(s); };
  h.on_drain = [p](Session&) {
    if (p->closing) return;
    for (auto& [name, sl] : p->slots) p->dispatch(sl);
  };
  ServerOptions so;
  so.max_connections = options.max_connections;
  so.memory_limit = options.memory_limit;
  auto server = Server::create(std::move(h), so);
  if (!server) return std::unexpected(server.error());
  impl->server.emplace(std::move(*server));

  if (auto r = impl->recover_all(); !r) return std::unexpected(r.error());

  Result<Listener> listener = fail(Errc::invalid_argument, "listen");
  if (options.listen_fd >= 0) {
    listener = adopt_listener(options.listen_fd);
  } else {
    // Without a policy only our uid may connect at all (a 0600 socket in a 0700 directory we
    // create); with one, everyone may connect and the policy decides each request by the
    // kernel's word on who is asking.
    const bool open_to_all = !options.policy.empty();
    if (options.url.starts_with("unix:///")) {
      const std::filesystem::path sock(options.url.substr(7));
      if (!std::filesystem::exists(sock.parent_path(), ec)) {
        std::filesystem::create_directories(sock.parent_path(), ec);
        if (ec) return fail_errno(ec.value(), "mkdir", sock.parent_path().string());
        ::chmod(sock.parent_path().c_str(), open_to_all ? 0755 : 0700);
      }
      // Someone else's writable directory would let them replace our socket with theirs and
      // read what clients send: refuse it (a sticky directory such as /tmp is safe).
      struct stat st {};
      if (::stat(sock.parent_path().c_str(), &st) == 0 && st.st_uid != ::geteuid() && st.st_uid != 0 &&
          (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0)
        return fail(Errc::permission_denied, "ipcxd",
                    fmt::format("{} is writable by uid {}'s group or others: another user could take over the socket",
                                sock.parent_path().string(), st.st_uid));
      if (::stat(sock.parent_path().c_str(), &st) == 0 && st.st_uid != ::geteuid() && st.st_uid != 0)
        return fail(Errc::permission_denied, "ipcxd",
                    fmt::format("{} belongs to uid {}: another user could replace the socket", sock.parent_path().string(), st.st_uid));
    }
    Options lo;
    lo.mode = open_to_all ? 0666 : 0600;
    if (open_to_all) lo.access = AccessRule::everyone();
    listener = ipcx::listen(options.url, lo);
  }
  if (!listener) return std::unexpected(listener.error());
  impl->url = listener->url();
  if (auto r = impl->server->add_listener(std::move(*listener)); !r) return std::unexpected(r.error());
  if (auto t = impl->server->reactor().add_timer(std::chrono::milliseconds(50), std::chrono::milliseconds(50), [p] { p->tick(); }); !t)
    return std::unexpected(t.error());
  if (!options.http.empty()) {
    auto ho = http_options(options.http);
    if (!ho) return std::unexpected(ho.error());
    auto http = Http::start(*ho, [p] { return p->snapshot_from_any_thread(); });
    if (!http) return std::unexpected(http.error());
    impl->http = std::move(*http);
  }
  impl->syncer = std::thread([p] { p->sync_loop(); });
  impl->log(fmt::format("serving {} ({} queues in {}){}", impl->url, impl->slots.size(), options.state_dir.string(),
                        impl->http ? "; dashboard at " + impl->http->url() : ""));
  return std::unique_ptr<Broker>(new Broker(std::move(impl)));
}

Result<void> Broker::run() { return impl_->server->run(); }
void Broker::stop() noexcept { impl_->server->stop(); }
const std::string& Broker::url() const noexcept { return impl_->url; }

void Broker::block_stop_signals() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Result<void> Broker::handle_signals() {
  auto* p = impl_.get();
  for (int sig : {SIGTERM, SIGINT}) {
    auto r = impl_->server->reactor().add_signal(sig, [p](const SignalInfo&) {
      p->log("stopping");
      p->server->stop();
    });
    if (!r) return std::unexpected(r.error());
  }
  return {};
}

}  // namespace ipcx::broker
