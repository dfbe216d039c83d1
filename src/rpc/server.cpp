// The RPC server's call logic, the same for every way a connection is served (server_impl.hpp):
// calls are decoded, checked, started (or queued past max_in_flight) and answered; handlers run
// on the link's serving thread (Run::loop) or on the pool, whose results come back through
// Link::later. Every call in flight is a Context::Call shared by the link and its handler.
#include <algorithm>

#include <fmt/format.h>

#include "rpc/oob.hpp"
#include "rpc/server_impl.hpp"

namespace ipcx::rpc {

namespace {

constexpr std::string_view kDescribe = "ipcx.Reflection/Describe";
constexpr std::string_view kList = "ipcx.Reflection/List";

std::string_view clip(std::string_view s) { return s.substr(0, wire::kMaxStatusMessage); }

void bump(std::atomic<std::uint64_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

Server::Impl::~Impl() {
  // serve() calls are ended and waited for; handlers are told, the pool's threads joined (no
  // completion can be posted any more), then the engine closes its connections.
  stopping.store(true);
  std::vector<std::shared_ptr<Link>> links;
  {
    std::unique_lock lk(threads_m);
    for (auto& w : dedicated)
      if (auto l = w.lock()) links.push_back(std::move(l));
    for (auto& l : links) l->abort();
    threads_cv.wait(lk, [&] { return serving == 0; });
  }
  if (engine)
    engine->for_each([&](Session& s) {
      if (auto& l = s.state<std::shared_ptr<Link>>()) links.push_back(l);
    });
  for (auto& l : links) {
    std::lock_guard lk(l->m);
    for (auto& [id, c] : l->calls) c->cancel();
  }
  pool.stop();
  engine.reset();
}

Outgoing Server::Impl::status_frame(wire::Kind kind, CallId id, const Status& status) {
  Outgoing o{.kind = kind, .id = id};
  wire::Frame f{.kind = kind, .id = id, .aux = static_cast<std::uint32_t>(status.code), .message = clip(status.message)};
  wire::encode(o.bytes, f, 0);
  return o;
}

std::expected<Outgoing, Status> Server::Impl::body_frame(wire::Kind kind, CallId id, const Body& body, bool fd_passing, std::uint32_t aux) const {
  Outgoing o{.kind = kind, .id = id};
  wire::Frame f{.kind = kind, .id = id, .aux = aux};
  if (body.size > body.limit)
    return std::unexpected(Status{Code::resource_exhausted, fmt::format("a response of {} bytes is over what its codec can encode ({} bytes)", body.size, body.limit)});
  if (body.size > opts.large_threshold && fd_passing) {
    auto fd = oob::make_sealed(body);
    if (!fd) return std::unexpected(Status{Code::resource_exhausted, fmt::format("cannot hand over {} bytes: {}", body.size, fd.error().message())});
    f.flags = wire::flag::out_of_band;
    f.oob_size = body.size;
    wire::encode(o.bytes, f, 0);
    o.fd = std::move(*fd);
    return o;
  }
  if (body.size >= (std::size_t{64} << 10)) o.bytes = buffers::take();
  std::span<std::byte> room;  // (checked before the buffer grows for it, and again with the header)
  if (body.size <= opts.transport.max_message) room = wire::encode(o.bytes, f, body.size);
  if (body.size > opts.transport.max_message || o.bytes.size() > opts.transport.max_message)
    return std::unexpected(Status{Code::resource_exhausted,
                                  fmt::format("a response of {} bytes is over this connection's max_message ({}){}", body.size, opts.transport.max_message,
                                              fd_passing ? "" : "; larger payloads travel out of band over unix:// only")});
  if (body.write && body.size) body.write(body.object, room);
  return o;
}

// ---- calls (the link's serving thread, l.m held unless said otherwise) ----

void Server::Impl::refuse(Link& l, const wire::Frame& f, Status status) {
  bump(st.refused);
  if (!f.has(wire::flag::one_way))
    l.deliver(status_frame(f.has(wire::flag::stream) ? wire::Kind::end : wire::Kind::response, f.id, status));
}

// Tells the peer why, then closes its connection once that is written.
void Server::Impl::malformed(Link& l, const std::string& why) {
  bump(st.malformed);
  l.deliver(status_frame(wire::Kind::error, 0, Status{Code::internal, why}));
  l.close_after_queued();
  l.gone = true;
}

bool Server::Impl::on_message(Link& l, Message& m) {
  std::unique_lock lk(l.m);
  if (!l.gone) handle(l, m, lk);
  return !l.gone;
}

void Server::Impl::handle(Link& l, Message& m, std::unique_lock<std::mutex>& lk) {
  auto f = wire::decode(m.bytes(), m.fds.size());
  if (!f) return malformed(l, f.error().detail);
  switch (f->kind) {
    case wire::Kind::call:
      on_call(l, *f, m, lk);
      if (!l.backlog.empty()) pump(l, lk);
      return;
    case wire::Kind::cancel: {
      auto it = l.calls.find(f->id);
      if (it == l.calls.end() || it->second->answered) return;  // already over
      auto& c = *it->second;
      c.cancel();
      c.answered = true;
      bump(st.cancelled);
      if (c.one_way) return;  // (nobody waits for its answer)
      l.deliver(status_frame(c.stream ? wire::Kind::end : wire::Kind::response, f->id, Status{Code::cancelled, "cancelled by the client"}));
      return;
    }
    case wire::Kind::credit: {
      auto it = l.calls.find(f->id);
      if (it == l.calls.end()) return;
      auto& c = *it->second;
      {
        std::lock_guard clk(c.m);
        c.credits = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{c.credits} + f->aux, c.window));
      }
      c.cv.notify_all();
      return;
    }
    default:
      return malformed(l, fmt::format("a client sent RPC message kind {}", static_cast<int>(f->kind)));
  }
}

void Server::Impl::on_call(Link& l, const wire::Frame& f, Message& m, std::unique_lock<std::mutex>& lk) {
  if (l.calls.contains(f.id)) return malformed(l, fmt::format("call id {} is already in flight on this connection", f.id));
  const auto now = Clock::now();
  const auto deadline = ::ipcx::wire::local_deadline(f.remaining_us, now);
  if (deadline <= now) {
    bump(st.expired);  // the caller has stopped waiting
    return;
  }
  std::shared_ptr<const Entry> entry;
  if (f.method != kDescribe && f.method != kList) {
    std::shared_lock ml(methods_m);
    auto it = methods.find(f.method);
    if (it == methods.end()) {
      const auto service = f.method.substr(0, f.method.find('/'));
      const bool known = std::any_of(methods.begin(), methods.end(), [&](auto& e) { return e.first.starts_with(std::string(service) + "/"); });
      ml.unlock();
      return refuse(l, f, Status{Code::unimplemented, known ? fmt::format("service {} has no method {}", service, f.method.substr(service.size() + 1))
                                                             : fmt::format("no service {} here", service)});
    }
    entry = it->second;
    ml.unlock();
    if (f.has(wire::flag::stream) != (entry->shape == Shape::server_stream))
      return refuse(l, f, Status{Code::failed_precondition, fmt::format("{} is a {} method", f.method, entry->shape == Shape::server_stream ? "server-streaming" : "unary")});
  } else if (f.has(wire::flag::stream)) {
    return refuse(l, f, Status{Code::failed_precondition, fmt::format("{} is a unary method", f.method)});
  }
  const bool waits = l.running >= opts.max_in_flight;
  const std::size_t inline_bytes = f.has(wire::flag::out_of_band) ? 0 : f.payload.size();
  if (entry && waits && (l.backlog.size() >= opts.max_backlog || l.backlog_bytes + inline_bytes > opts.max_backlog_bytes))
    return refuse(l, f, Status{Code::resource_exhausted, fmt::format("{} calls running and {} waiting ({} bytes) on this connection (max_in_flight, {})",
                                                                     l.running, l.backlog.size(), l.backlog_bytes,
                                                                     l.backlog.size() >= opts.max_backlog ? "max_backlog" : "max_backlog_bytes")});
  Payload request;
  if (f.has(wire::flag::out_of_band)) {
    if (f.oob_size > opts.max_payload)
      return refuse(l, f, Status{Code::resource_exhausted, fmt::format("a request of {} bytes is over this server's max_payload ({})", f.oob_size, opts.max_payload)});
    auto p = Payload::map_sealed(m.fds[0].get(), f.oob_size);
    if (!p) return refuse(l, f, Status{Code::invalid_argument, p.error().detail.empty() ? p.error().message() : p.error().detail});
    request = std::move(*p);
    bump(st.out_of_band_in);
  } else {
    // In place: the received buffer becomes the payload, its header skipped (not moved).
    // f's views (f.method) point into that buffer: moving the vector keeps its heap block, now
    // owned by request, so they stay valid below for as long as request lives.
    const auto skip = static_cast<std::size_t>(f.payload.data() ? f.payload.data() - m.data.data() : m.data.size());
    const bool large = m.data.capacity() >= (std::size_t{64} << 10);
    request = Payload(std::move(m.data), skip);
    if (large) m.data = buffers::take();  // (the next large request lands in pages already there)
  }
  m.fds.clear();

  if (!entry) return reflect(l, f, request);

  auto call = std::make_shared<Context::Call>();
  call->server = this;
  call->link = l.shared_from_this();
  call->id = f.id;
  call->method = std::string(f.method);
  call->deadline = deadline;
  call->one_way = f.has(wire::flag::one_way);
  call->stream = f.has(wire::flag::stream);
  call->request = std::move(request);
  call->entry = entry;
  call->run = entry->run;
  call->backlog_bytes = inline_bytes;
  call->credits = call->window = std::min<std::uint32_t>(f.aux == 0 ? opts.stream_window : f.aux, opts.stream_window);
  l.calls.emplace(f.id, call);
  if (!waits && l.backlog.empty()) return start(l, lk, std::move(call));  // (the usual case)
  l.backlog.push_back(std::move(call));
  l.backlog_bytes += inline_bytes;
}

void Server::Impl::start(Link& l, std::unique_lock<std::mutex>& lk, std::shared_ptr<Context::Call> call) {
  ++l.running;
  bump(st.calls);
  if (call->one_way) bump(st.one_way);
  if (call->run == Run::pool) return pool.submit([call = std::move(call)] { execute(call); });
  call->on_loop = true;
  lk.unlock();
  execute(call);
  lk.lock();
  call->on_loop = false;
}

void Server::Impl::pump(Link& l, std::unique_lock<std::mutex>& lk) {
  if (l.pumping) return;
  l.pumping = true;
  while (!l.gone && l.running < opts.max_in_flight && !l.backlog.empty()) {
    auto call = std::move(l.backlog.front());
    l.backlog.pop_front();
    l.backlog_bytes -= call->backlog_bytes;
    if (call->answered) {  // cancelled while it waited
      l.calls.erase(call->id);
      continue;
    }
    if (Clock::now() >= call->deadline) {
      bump(st.expired);
      l.calls.erase(call->id);
      continue;
    }
    start(l, lk, std::move(call));
  }
  l.pumping = false;
}

void Server::Impl::execute(const std::shared_ptr<Context::Call>& call) {
  Context ctx(call);
  try {
    call->entry->fn(ctx, call->request);
  } catch (const std::exception& e) {
    ctx.finish(Status{Code::internal, fmt::format("the handler threw: {}", e.what())});
  } catch (...) {
    ctx.finish(Status{Code::internal, "the handler threw"});
  }
  // A handler that returned without finishing ends the call UNKNOWN (Context's destructor).
}

// The built-in reflection methods.
void Server::Impl::reflect(Link& l, const wire::Frame& f, const Payload& request) {
  bump(st.calls);
  auto send = [&](const Body& body) {
    if (f.has(wire::flag::one_way)) return;
    auto o = body_frame(wire::Kind::response, f.id, body, l.caps.fd_passing);
    l.deliver(o ? std::move(*o) : status_frame(wire::Kind::response, f.id, o.error()));
    bump(o ? st.ok : st.failed);
  };
  std::shared_lock ml(methods_m);
  if (f.method == kList) {
    std::string all;
    for (auto& [name, e] : methods) all += fmt::format("{}{}\n", name, e->shape == Shape::server_stream ? " stream" : "");
    ml.unlock();
    return send(body_of(all));
  }
  auto it = descriptors.find(request.text());
  if (it == descriptors.end()) {
    ml.unlock();
    bump(st.failed);
    if (!f.has(wire::flag::one_way))
      l.deliver(status_frame(wire::Kind::response, f.id, Status{Code::not_found, fmt::format("no descriptors for service \"{}\" (Server::describe)", request.text())}));
    return;
  }
  send(body_of(it->second));
}

// ---- completions (through Link::later; l.m not held on entry) ----

void Server::Impl::complete(const std::shared_ptr<Context::Call>& call, std::optional<Outgoing> out, bool ok) {
  auto& l = *call->link;
  std::unique_lock lk(l.m);
  l.calls.erase(call->id);
  --l.running;
  if (!call->answered) {  // (cancelled: the client already has its answer)
    call->answered = true;
    if (l.gone) {
      // (counted cancelled by on_close)
    } else if (Clock::now() >= call->deadline) {
      bump(st.expired);
    } else {
      bump(ok ? st.ok : st.failed);
      if (out) {
        if (out->fd) bump(st.out_of_band_out);
        l.deliver(std::move(*out));
      }
    }
  }
  if (!l.backlog.empty() && !call->on_loop) pump(l, lk);
}

void Server::Impl::send_item(const std::shared_ptr<Context::Call>& call, Outgoing out) {
  auto& l = *call->link;
  std::lock_guard lk(l.m);
  if (l.gone || call->answered) return;
  if (out.fd) bump(st.out_of_band_out);
  l.deliver(std::move(out));
}

void Server::Impl::on_close(Link& l) {
  std::lock_guard lk(l.m);
  l.gone = true;
  for (auto& [id, c] : l.calls) {
    if (!c->answered) bump(st.cancelled);
    c->answered = true;
    c->cancel();
  }
  // Running calls hold the link until they complete; the link holds no call any more (a call
  // whose completion never runs, posted to a loop that is gone, must not keep both alive).
  l.calls.clear();
  l.backlog.clear();
  l.backlog_bytes = 0;
}

// ---- Context ----------------------------------------------------------------------------------------

Context::Context(std::shared_ptr<Call> call) noexcept
    : call_(std::move(call)),
      peer_(call_->link->peer),
      method_(call_->method),
      deadline_(call_->deadline),
      id_(call_->id),
      one_way_(call_->one_way) {}

Context::~Context() {
  if (call_ && !call_->finished) finish(Status{Code::unknown, "the handler returned without a status"});
}

bool Context::cancelled() const noexcept {
  return call_->cancelled.load(std::memory_order_relaxed) || call_->server->stopping.load(std::memory_order_relaxed) || Clock::now() >= deadline_;
}

void Context::finish(Status status, const Body& body) {
  auto& c = *call_;
  if (c.finished.exchange(true)) return;
  auto* impl = c.server;
  std::optional<Outgoing> out;
  if (!c.one_way) {
    const auto kind = c.stream ? wire::Kind::end : wire::Kind::response;
    if (status.ok() && !c.stream) {
      auto o = impl->body_frame(kind, c.id, body, c.link->caps.fd_passing);
      if (o) out = std::move(*o);
      else status = std::move(o.error());
    }
    if (!out) out = Server::Impl::status_frame(kind, c.id, status);
  }
  const bool ok = status.ok();
  if (c.on_loop) return impl->complete(call_, std::move(out), ok);
  c.link->later([impl, call = call_, out = std::make_shared<std::optional<Outgoing>>(std::move(out)), ok] {
    impl->complete(call, std::move(*out), ok);
  });
}

bool Context::write_item(const Body& body) {
  auto& c = *call_;
  if (!c.stream || c.finished) return false;
  if (c.on_loop) return false;  // (streams run on the pool; a write on the serving thread would stall it)
  {
    // In slices, so that a stopping server (which cannot take locks from a signal handler) is
    // seen within one.
    std::unique_lock lk(c.m);
    for (;;) {
      if (c.cancelled || c.server->stopping.load()) return false;
      if (c.credits > 0) break;
      const auto now = Clock::now();
      if (now >= c.deadline) return false;
      c.cv.wait_until(lk, std::min(c.deadline, now + std::chrono::milliseconds(100)));
    }
    --c.credits;
  }
  auto o = c.server->body_frame(wire::Kind::item, c.id, body, c.link->caps.fd_passing, c.window);  // (the client credits by it)
  if (!o) {
    finish(std::move(o.error()));
    return false;
  }
  auto* impl = c.server;
  c.link->later([impl, call = call_, out = std::make_shared<Outgoing>(std::move(*o))] { impl->send_item(call, std::move(*out)); });
  return true;
}

}  // namespace ipcx::rpc
