// The RPC server: the server engine reads calls and writes responses on its loop thread;
// handlers run there (Run::loop) or on the pool, whose results come back to the loop through
// Server::post. Every call in flight is a Context::Call shared by the loop and its handler.
#include <ipcx/rpc.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "messaging/serve.hpp"
#include "rpc/oob.hpp"
#include "rpc/pool.hpp"
#include "rpc/wire.hpp"

namespace ipcx::rpc {

using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kDescribe = "ipcx.Reflection/Describe";
constexpr std::string_view kList = "ipcx.Reflection/List";

Clock::time_point local_deadline(std::uint64_t remaining_us, Clock::time_point now) noexcept {
  if (remaining_us == wire::kNoDeadline) return Clock::time_point::max();
  const auto room = std::chrono::duration_cast<std::chrono::microseconds>(Clock::time_point::max() - now).count();
  if (remaining_us >= static_cast<std::uint64_t>(room)) return Clock::time_point::max();
  return now + std::chrono::microseconds(static_cast<std::int64_t>(remaining_us));
}

std::string_view clip(std::string_view s) { return s.substr(0, wire::kMaxStatusMessage); }

// A frame ready for Session::send: its bytes and, out of band, the memfd.
struct Outgoing {
  std::vector<std::byte> bytes;
  Fd fd;
};

}  // namespace



struct Context::Call {
  Server::Impl* server = nullptr;
  Session::Id session = 0;
  CallId id = 0;
  std::string method;
  PeerCred peer;
  Clock::time_point deadline = Clock::time_point::max();
  bool one_way = false, stream = false;
  bool fd_passing = false;   // the connection carries descriptors (out-of-band responses)
  bool on_loop = false;      // the handler is running on the loop thread, now
  Run run = Run::pool;
  std::size_t backlog_bytes = 0;  // inline request bytes counted while it waits
  Payload request;
  const Server::Handler* handler = nullptr;

  std::atomic<bool> cancelled{false};
  std::atomic<bool> finished{false};  // finish() called: nothing more goes out
  bool answered = false;              // loop only: the client has its final frame (cancel, or finish)

  // Stream flow control: items the client has room for.
  std::mutex m;
  std::condition_variable cv;
  std::uint32_t credits = 0;

  void cancel() {
    {
      std::lock_guard lk(m);
      cancelled = true;
    }
    cv.notify_all();
  }
};

namespace {

// What the server keeps per connection.
struct PerConn {
  std::unordered_map<CallId, std::shared_ptr<Context::Call>> calls;  // running and waiting
  std::deque<std::shared_ptr<Context::Call>> backlog;  // past max_in_flight, in arrival order
  std::size_t running = 0;
  std::size_t backlog_bytes = 0;
  bool pumping = false;
  std::deque<Outgoing> waiting;  // frames the session's queue had no room for (in order)
};

struct Entry {
  Server::Shape shape;
  Run run;
  Server::Handler fn;
};

}  // namespace

struct Server::Impl {
  ServerOptions opts;
  std::map<std::string, Entry, std::less<>> methods;
  std::map<std::string, std::vector<std::byte>, std::less<>> descriptors;  // service -> FileDescriptorSet
  ServerStats st;
  std::vector<std::byte> tx;
  Pool pool;
  std::optional<ipcx::Server> engine;  // after the pool: destroyed first… see ~Impl

  explicit Impl(const ServerOptions& o) : opts(o), pool(o.max_threads) {}

  ~Impl() {
    // Handlers are told, the pool's threads joined (none can post any more), then the engine
    // closes its connections.
    if (engine)
      engine->for_each([](Session& s) {
        for (auto& [id, c] : s.state<PerConn>().calls) c->cancel();
      });
    pool.stop();
    engine.reset();
  }

  // ---- sending (loop thread) ----

  // Queues `o` on the session, behind anything already waiting for room.
  void deliver(Session& s, Outgoing o) {
    auto& pc = s.state<PerConn>();
    if (pc.waiting.empty()) {
      const int fd = o.fd.get();
      auto r = o.fd ? s.send(o.bytes, std::span<const int>(&fd, 1)) : s.send(o.bytes);
      if (r || r.error().code != Errc::would_block) return;  // sent, or the session is gone
    }
    pc.waiting.push_back(std::move(o));
  }

  void drain(Session& s) {
    auto& pc = s.state<PerConn>();
    while (!pc.waiting.empty()) {
      auto& o = pc.waiting.front();
      const int fd = o.fd.get();
      auto r = o.fd ? s.send(o.bytes, std::span<const int>(&fd, 1)) : s.send(o.bytes);
      if (!r && r.error().code == Errc::would_block) return;
      pc.waiting.pop_front();
    }
  }

  static Outgoing status_frame(wire::Kind kind, CallId id, const Status& status) {
    Outgoing o;
    wire::Frame f{.kind = kind, .id = id, .aux = static_cast<std::uint32_t>(status.code), .message = clip(status.message)};
    wire::encode(o.bytes, f, 0);
    return o;
  }

  // A response or stream item with `body`, out of band when large and the connection allows.
  // Any thread. A body that cannot travel becomes the status saying why.
  std::expected<Outgoing, Status> body_frame(wire::Kind kind, CallId id, const Body& body, bool fd_passing) const {
    Outgoing o;
    wire::Frame f{.kind = kind, .id = id};
    if (body.size > opts.large_threshold && fd_passing) {
      auto fd = oob::make_sealed(body);
      if (!fd) return std::unexpected(Status{Code::resource_exhausted, fmt::format("cannot hand over {} bytes: {}", body.size, fd.error().message())});
      f.flags = wire::flag::out_of_band;
      f.oob_size = body.size;
      wire::encode(o.bytes, f, 0);
      o.fd = std::move(*fd);
      return o;
    }
    auto room = wire::encode(o.bytes, f, body.size);
    if (o.bytes.size() > opts.transport.max_message)
      return std::unexpected(Status{Code::resource_exhausted,
                                    fmt::format("a response of {} bytes is over this connection's max_message ({}){}", body.size, opts.transport.max_message,
                                                fd_passing ? "" : "; larger payloads travel out of band over unix:// only")});
    if (body.write && body.size) body.write(body.object, room);
    return o;
  }

  // ---- calls (loop thread) ----

  void refuse(Session& s, const wire::Frame& f, Status status) {
    ++st.refused;
    if (!f.has(wire::flag::one_way))
      deliver(s, status_frame(f.has(wire::flag::stream) ? wire::Kind::end : wire::Kind::response, f.id, status));
  }

  // Tells the peer why, then closes its connection once that is written.
  void malformed(Session& s, const std::string& why) {
    ++st.malformed;
    deliver(s, status_frame(wire::Kind::error, 0, Status{Code::internal, why}));
    s.close();
  }

  void on_message(Session& s, Message& m) {
    auto f = wire::decode(m.bytes(), m.fds.size());
    if (!f) return malformed(s, f.error().detail);
    auto& pc = s.state<PerConn>();
    switch (f->kind) {
      case wire::Kind::call:
        return on_call(s, pc, *f, m);
      case wire::Kind::cancel: {
        auto it = pc.calls.find(f->id);
        if (it == pc.calls.end() || it->second->answered) return;  // already over
        it->second->cancel();
        it->second->answered = true;
        ++st.cancelled;
        deliver(s, status_frame(it->second->stream ? wire::Kind::end : wire::Kind::response, f->id,
                                Status{Code::cancelled, "cancelled by the client"}));
        return;
      }
      case wire::Kind::credit: {
        auto it = pc.calls.find(f->id);
        if (it == pc.calls.end()) return;
        auto& c = *it->second;
        {
          std::lock_guard lk(c.m);
          c.credits = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{c.credits} + f->aux, opts.stream_window));
        }
        c.cv.notify_all();
        return;
      }
      default:
        return malformed(s, fmt::format("a client sent RPC message kind {}", static_cast<int>(f->kind)));
    }
  }

  void on_call(Session& s, PerConn& pc, const wire::Frame& f, Message& m) {
    if (pc.calls.contains(f.id)) return malformed(s, fmt::format("call id {} is already in flight on this connection", f.id));
    const auto now = Clock::now();
    const auto deadline = local_deadline(f.remaining_us, now);
    if (deadline <= now) {
      ++st.expired;  // the caller has stopped waiting
      return;
    }
    const Entry* entry = nullptr;
    std::string method(f.method);
    if (f.method != kDescribe && f.method != kList) {
      auto it = methods.find(f.method);
      if (it == methods.end()) {
        const auto service = f.method.substr(0, f.method.find('/'));
        const bool known = std::any_of(methods.begin(), methods.end(), [&](auto& e) { return e.first.starts_with(std::string(service) + "/"); });
        return refuse(s, f, Status{Code::unimplemented, known ? fmt::format("service {} has no method {}", service, f.method.substr(service.size() + 1))
                                                               : fmt::format("no service {} here", service)});
      }
      entry = &it->second;
      if (f.has(wire::flag::stream) != (entry->shape == Shape::server_stream))
        return refuse(s, f, Status{Code::failed_precondition, fmt::format("{} is a {} method", f.method, entry->shape == Shape::server_stream ? "server-streaming" : "unary")});
    } else if (f.has(wire::flag::stream)) {
      return refuse(s, f, Status{Code::failed_precondition, fmt::format("{} is a unary method", f.method)});
    }
    const bool waits = pc.running >= opts.max_in_flight;
    const std::size_t inline_bytes = f.has(wire::flag::out_of_band) ? 0 : f.payload.size();
    if (waits && (pc.backlog.size() >= opts.max_backlog || pc.backlog_bytes + inline_bytes > opts.max_backlog_bytes))
      return refuse(s, f, Status{Code::resource_exhausted, fmt::format("{} calls running and {} waiting on this connection (max_in_flight, max_backlog)",
                                                                       pc.running, pc.backlog.size())});
    Payload request;
    if (f.has(wire::flag::out_of_band)) {
      if (f.oob_size > opts.max_payload)
        return refuse(s, f, Status{Code::resource_exhausted, fmt::format("a request of {} bytes is over this server's max_payload ({})", f.oob_size, opts.max_payload)});
      auto p = Payload::map_sealed(m.fds[0].get(), f.oob_size);
      if (!p) return refuse(s, f, Status{Code::invalid_argument, p.error().detail.empty() ? p.error().message() : p.error().detail});
      request = std::move(*p);
      ++st.out_of_band_in;
    } else {
      // In place: the header is dropped from the received buffer, which becomes the payload.
      const auto skip = static_cast<std::size_t>(f.payload.data() ? f.payload.data() - m.data.data() : m.data.size());
      m.data.erase(m.data.begin(), m.data.begin() + static_cast<std::ptrdiff_t>(skip));
      request = Payload(std::move(m.data));
    }
    m.fds.clear();

    if (!entry) return reflect(s, f, request);

    auto call = std::make_shared<Context::Call>();
    call->server = this;
    call->session = s.id();
    call->id = f.id;
    call->method = std::move(method);
    call->peer = s.peer();
    call->deadline = deadline;
    call->one_way = f.has(wire::flag::one_way);
    call->stream = f.has(wire::flag::stream);
    call->fd_passing = s.capabilities().fd_passing;
    call->request = std::move(request);
    call->handler = &entry->fn;
    call->credits = std::min<std::uint32_t>(f.aux == 0 ? opts.stream_window : f.aux, opts.stream_window);
    call->run = entry->run;
    call->backlog_bytes = inline_bytes;
    pc.calls.emplace(f.id, call);
    pc.backlog.push_back(std::move(call));
    pc.backlog_bytes += inline_bytes;
    pump(s, pc);
  }

  // Starts waiting calls while fewer than max_in_flight run. Not re-entered: a loop handler
  // that finishes at once comes back here through complete().
  void pump(Session& s, PerConn& pc) {
    if (pc.pumping) return;
    pc.pumping = true;
    const auto sid = s.id();
    while (pc.running < opts.max_in_flight && !pc.backlog.empty()) {
      auto call = std::move(pc.backlog.front());
      pc.backlog.pop_front();
      pc.backlog_bytes -= call->backlog_bytes;
      if (call->answered) {  // cancelled while it waited
        pc.calls.erase(call->id);
        continue;
      }
      if (Clock::now() >= call->deadline) {
        ++st.expired;
        pc.calls.erase(call->id);
        continue;
      }
      ++pc.running;
      ++st.calls;
      if (call->one_way) ++st.one_way;
      if (call->run == Run::loop) {
        call->on_loop = true;
        execute(call);
        call->on_loop = false;
        if (!engine->find(sid)) return;  // (the handler's send dropped the session: its state is gone)
      } else {
        pool.submit([call = std::move(call)] { execute(call); });
      }
    }
    pc.pumping = false;
  }

  static void execute(const std::shared_ptr<Context::Call>& call) {
    Context ctx(call);
    try {
      (*call->handler)(ctx, call->request);
    } catch (const std::exception& e) {
      ctx.finish(Status{Code::internal, fmt::format("the handler threw: {}", e.what())});
    } catch (...) {
      ctx.finish(Status{Code::internal, "the handler threw"});
    }
    // A handler that returned without finishing ends the call UNKNOWN (Context's destructor).
  }

  // The built-in reflection methods, answered on the loop.
  void reflect(Session& s, const wire::Frame& f, const Payload& request) {
    ++st.calls;
    auto send = [&](const Body& body) {
      if (f.has(wire::flag::one_way)) return;
      auto o = body_frame(wire::Kind::response, f.id, body, s.capabilities().fd_passing);
      deliver(s, o ? std::move(*o) : status_frame(wire::Kind::response, f.id, o.error()));
      ++(o ? st.ok : st.failed);
    };
    if (f.method == kList) {
      std::string all;
      for (auto& [name, e] : methods) all += fmt::format("{}{}\n", name, e.shape == Shape::server_stream ? " stream" : "");
      return send(body_of(all));
    }
    auto it = descriptors.find(request.text());
    if (it == descriptors.end()) {
      ++st.failed;
      if (!f.has(wire::flag::one_way))
        deliver(s, status_frame(wire::Kind::response, f.id, Status{Code::not_found, fmt::format("no descriptors for service \"{}\" (Server::describe)", request.text())}));
      return;
    }
    send(body_of(it->second));
  }

  // A handler's final frame (or none), on the loop thread.
  void complete(Session::Id sid, const std::shared_ptr<Context::Call>& call, std::optional<Outgoing> out, bool ok) {
    auto* s = engine->find(sid);
    if (!s) return;
    auto& pc = s->state<PerConn>();
    pc.calls.erase(call->id);
    --pc.running;
    if (!call->answered) {  // (cancelled: the client already has its answer)
      call->answered = true;
      if (Clock::now() >= call->deadline) {
        ++st.expired;
      } else {
        ++(ok ? st.ok : st.failed);
        if (out) {
          if (out->fd) ++st.out_of_band_out;
          deliver(*s, std::move(*out));
        }
      }
    }
    if (!pc.backlog.empty()) pump(*s, pc);
  }

  void send_item(Session::Id sid, const std::shared_ptr<Context::Call>& call, Outgoing out) {
    auto* s = engine->find(sid);
    if (!s || call->answered) return;
    if (out.fd) ++st.out_of_band_out;
    deliver(*s, std::move(out));
  }

  void on_close(Session& s) {
    auto& pc = s.state<PerConn>();
    for (auto& [id, c] : pc.calls) {
      if (!c->answered) ++st.cancelled;
      c->answered = true;
      c->cancel();
    }
    pc.waiting.clear();
    pc.backlog.clear();
    pc.backlog_bytes = 0;
  }
};

// ---- Context ----------------------------------------------------------------------------------------

Context::Context(std::shared_ptr<Call> call) noexcept
    : call_(std::move(call)),
      peer_(call_->peer),
      method_(call_->method),
      deadline_(call_->deadline),
      id_(call_->id),
      session_(call_->session),
      one_way_(call_->one_way) {}

Context::~Context() {
  if (call_ && !call_->finished) finish(Status{Code::unknown, "the handler returned without a status"});
}

bool Context::cancelled() const noexcept { return call_->cancelled.load(std::memory_order_relaxed) || Clock::now() >= deadline_; }

void Context::finish(Status status, const Body& body) {
  auto& c = *call_;
  if (c.finished.exchange(true)) return;
  auto* impl = c.server;
  std::optional<Outgoing> out;
  if (!c.one_way) {
    const auto kind = c.stream ? wire::Kind::end : wire::Kind::response;
    if (status.ok() && !c.stream) {
      auto o = impl->body_frame(kind, c.id, body, c.fd_passing);
      if (o) {
        out = std::move(*o);
      } else {
        status = std::move(o.error());
      }
    }
    if (!out) out = Server::Impl::status_frame(kind, c.id, status);
  }
  const bool ok = status.ok();
  if (c.on_loop) return impl->complete(c.session, call_, std::move(out), ok);
  impl->engine->post([impl, call = call_, out = std::make_shared<std::optional<Outgoing>>(std::move(out)), ok] {
    impl->complete(call->session, call, std::move(*out), ok);
  });
}

bool Context::write_item(const Body& body) {
  auto& c = *call_;
  if (!c.stream || c.finished) return false;
  if (c.on_loop) return false;  // (streams run on the pool; a write on the loop would stall it)
  {
    std::unique_lock lk(c.m);
    const bool room = c.cv.wait_until(lk, c.deadline, [&] { return c.cancelled || c.credits > 0; });
    if (!room || c.cancelled) return false;
    --c.credits;
  }
  auto o = c.server->body_frame(wire::Kind::item, c.id, body, c.fd_passing);
  if (!o) {
    finish(std::move(o.error()));
    return false;
  }
  auto* impl = c.server;
  impl->engine->post([impl, call = call_, out = std::make_shared<Outgoing>(std::move(*o))] {
    impl->send_item(call->session, call, std::move(*out));
  });
  return true;
}

// ---- Server ---------------------------------------------------------------------------------------

Server::Server() noexcept = default;
Server::Server(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Server::Server(Server&&) noexcept = default;
Server& Server::operator=(Server&&) noexcept = default;
Server::~Server() = default;

Result<Server> Server::create(ServerOptions options) {
  if (options.max_in_flight == 0) return fail(Errc::invalid_argument, "rpc::Server", "max_in_flight must be at least 1");
  if (options.stream_window == 0) return fail(Errc::invalid_argument, "rpc::Server", "stream_window must be at least 1");
  auto impl = std::make_shared<Impl>(options);
  Impl* self = impl.get();
  ipcx::Server::Handlers h;
  h.on_message = [self](Session& s, Message& m) { self->on_message(s, m); };
  h.on_drain = [self](Session& s) { self->drain(s); };
  h.on_close = [self](Session& s, const Error&) { self->on_close(s); };
  auto engine = ipcx::Server::create(std::move(h), options.engine);
  if (!engine) return std::unexpected(engine.error());
  impl->engine.emplace(std::move(*engine));
  return Server(std::move(impl));
}

namespace {
Error no_server(const char* op) { return Error{Errc::closed, 0, op, "no server (default-constructed or moved from)"}; }
}  // namespace

Result<std::string> Server::listen(std::string_view url) {
  if (!impl_) return std::unexpected(no_server("listen"));
  auto l = ipcx::listen(url, impl_->opts.transport);
  if (!l) return std::unexpected(l.error());
  std::string bound = l->url();
  if (auto r = impl_->engine->add_listener(std::move(*l)); !r) return std::unexpected(r.error());
  return bound;
}

Result<Session::Id> Server::adopt(Connection connection) {
  if (!impl_) return std::unexpected(no_server("adopt"));
  return impl_->engine->adopt(std::move(connection));
}

void Server::add(std::string_view method, Shape shape, Run run, Handler handler) {
  if (!impl_ || !handler) return;
  impl_->methods.insert_or_assign(std::string(method), Entry{.shape = shape, .run = run, .fn = std::move(handler)});
}

void Server::describe(std::string_view service, std::vector<std::byte> file_descriptor_set) {
  if (impl_) impl_->descriptors.insert_or_assign(std::string(service), std::move(file_descriptor_set));
}

Result<void> Server::run() {
  if (!impl_) return std::unexpected(no_server("run"));
  return impl_->engine->run();
}
Result<int> Server::run_once(Timeout timeout) {
  if (!impl_) return std::unexpected(no_server("run_once"));
  return impl_->engine->run_once(timeout);
}
void Server::stop() noexcept {
  if (impl_) impl_->engine->stop();
}
void Server::post(std::function<void()> fn) {
  if (impl_) impl_->engine->post(std::move(fn));
}

ServerStats Server::stats() const noexcept {
  if (!impl_) return {};
  auto s = impl_->st;
  s.threads = impl_->pool.threads();
  s.busy = impl_->pool.busy();
  return s;
}
ipcx::ServerStats Server::engine_stats() const noexcept { return impl_ ? impl_->engine->stats() : ipcx::ServerStats{}; }

std::vector<std::string> Server::methods() const {
  std::vector<std::string> out;
  if (impl_)
    for (auto& [name, e] : impl_->methods) out.push_back(name);
  return out;
}

}  // namespace ipcx::rpc
