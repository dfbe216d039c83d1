// The two ways an RPC connection is served, and the public Server around them.
//
// SessionLink: a connection of the server engine. Everything happens on the loop thread: sends
// go to the session's queue (frames it has no room for wait here, in order, for on_drain), and
// the pool's completions are posted to the loop.
//
// ConnLink: a connection served by Server::serve() on a thread of its own, in a blocking receive
// (or a spinning one). Sends go straight to the connection, which takes them from any thread;
// completions run on the thread that finished the call.
#include <sys/stat.h>

#include <fmt/format.h>

#include "rpc/oob.hpp"
#include "rpc/server_impl.hpp"

namespace ipcx::rpc {

namespace {

Result<void> send_to(auto& sink, Outgoing& o, auto... timeout) {
  const int fd = o.fd.get();
  return o.fd ? sink.send(o.bytes, std::span<const int>(&fd, 1), timeout...) : sink.send(o.bytes, timeout...);
}

struct SessionLink final : Link {
  ipcx::Server* engine = nullptr;
  Session::Id sid = 0;
  std::deque<Outgoing> waiting;  // frames the session's queue had no room for

  void deliver(Outgoing o) override {
    auto* s = engine->find(sid);
    if (!s) return;
    if (waiting.empty()) {
      auto r = send_to(*s, o);
      if (r) return buffers::give(std::move(o.bytes));  // (copied into the session's queue)
      if (r.error().code != Errc::would_block) return refused(*s, o, r.error());
    }
    waiting.push_back(std::move(o));
  }
  // The session would not take a frame (the memory limit, its size): a response becomes the
  // status saying so; anything else, or a status it will not take either, ends the connection
  // with the reason, so that no caller waits for what will never come.
  void refused(Session& s, const Outgoing& o, const Error& why) {
    if (why.code == Errc::closed || !s.open()) return;
    if (o.kind == wire::Kind::response || o.kind == wire::Kind::end) {
      auto st = Server::Impl::status_frame(o.kind, o.id, Status{Code::resource_exhausted, fmt::format("the server could not queue the response: {}", why.message())});
      if (s.send(st.bytes)) return;
    }
    s.abort(fmt::format("a response could not be queued: {}", why.message()));
  }
  void drain() {
    std::lock_guard lk(m);
    auto* s = engine->find(sid);
    while (s && !waiting.empty()) {
      auto r = send_to(*s, waiting.front());
      if (!r && r.error().code == Errc::would_block) return;
      if (!r) refused(*s, waiting.front(), r.error());
      buffers::give(std::move(waiting.front().bytes));
      waiting.pop_front();
      s = engine->find(sid);
    }
  }
  void close_after_queued() override {
    if (auto* s = engine->find(sid)) s->close();
  }
  void later(std::function<void()> fn) override { engine->post(std::move(fn)); }
};

struct ConnLink final : Link {
  Connection conn;
  Timeout send_timeout{};

  void deliver(Outgoing o) override {
    if (gone) return;
    if (auto r = send_to(conn, o, send_timeout); !r) {
      gone = true;  // a client that does not read, or a connection that failed: dropped
      conn.close();
    }
    buffers::give(std::move(o.bytes));
  }
  void close_after_queued() override {
    (void)conn.flush(send_timeout);
    conn.close();
  }
  void later(std::function<void()> fn) override { fn(); }
  void abort() override { conn.close(); }
};

}  // namespace

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
  auto link_of = [self](Session& s) -> SessionLink& {
    auto& l = s.state<std::shared_ptr<Link>>();
    if (!l) {
      auto sl = std::make_shared<SessionLink>();
      sl->engine = self->loop;
      sl->sid = s.id();
      sl->peer = s.peer();
      sl->caps = s.capabilities();
      l = std::move(sl);
    }
    return static_cast<SessionLink&>(*l);
  };
  h.on_message = [self, link_of](Session& s, Message& m) { self->on_message(link_of(s), m); };
  h.on_drain = [link_of](Session& s) { link_of(s).drain(); };
  h.on_close = [self, link_of](Session& s, const Error&) { self->on_close(link_of(s)); };
  auto engine = ipcx::Server::create(std::move(h), options.engine);
  if (!engine) return std::unexpected(engine.error());
  impl->engine.emplace(std::move(*engine));
  impl->loop = &*impl->engine;
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

Result<void> Server::serve(Connection connection) {
  if (!impl_) return std::unexpected(no_server("serve"));
  auto* impl = impl_.get();
  auto link = std::make_shared<ConnLink>();
  link->peer = connection.peer();
  link->caps = connection.capabilities();
  link->send_timeout = impl->opts.engine.send_timeout;
  link->conn = std::move(connection);
  {
    std::lock_guard lk(impl->threads_m);
    std::erase_if(impl->dedicated, [](auto& w) { return w.expired(); });
    impl->dedicated.push_back(link);
    impl->served.store(true);
    ++impl->serving;
  }
  // (Registered before looking at `stopping`: a stop() from now on closes this connection.)
  // A read from a pipe or FIFO is not woken by closing the connection in another thread, as a
  // socket's is (shutdown(2)): there serve() receives in slices of 100 ms and looks at
  // `stopping` between them, so that stop() and the destructor end it.
  const bool sliced = [&] {
    struct stat st{};
    auto fd = link->conn.native_handle();
    return fd && ::fstat(*fd, &st) == 0 && S_ISFIFO(st.st_mode);
  }();
  Result<void> result;
  Message m;
  while (!impl->stopping.load()) {
    auto r = sliced ? link->conn.recv(m, std::chrono::milliseconds(100)) : link->conn.recv(m, forever);
    if (!r) {
      if (sliced && (r.error().code == Errc::timeout || r.error().code == Errc::would_block)) continue;
      if (r.error().code != Errc::closed) result = std::unexpected(r.error());
      break;
    }
    if (!impl->on_message(*link, m)) break;
  }
  impl->on_close(*link);
  link->conn.close();
  if (impl->stopping.load() && result) result = fail(Errc::closed, "serve", "the server was stopped");
  {
    // Notified under the lock: the destructor, waiting for serving == 0, cannot go on (and
    // destroy the condition variable) before this thread has left it.
    std::lock_guard lk(impl->threads_m);
    --impl->serving;
    impl->threads_cv.notify_all();
  }
  return result;
}

void Server::add(std::string_view method, Shape shape, Run run, Handler handler) {
  if (!impl_ || !handler) return;
  auto e = std::make_shared<const Entry>(Entry{.shape = shape, .run = run, .fn = std::move(handler)});
  std::unique_lock ml(impl_->methods_m);
  impl_->methods.insert_or_assign(std::string(method), std::move(e));
}

void Server::describe(std::string_view service, std::vector<std::byte> file_descriptor_set) {
  if (!impl_) return;
  std::unique_lock ml(impl_->methods_m);
  impl_->descriptors.insert_or_assign(std::string(service), std::move(file_descriptor_set));
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
  if (!impl_) return;
  impl_->stopping.store(true);
  impl_->engine->stop();
  if (!impl_->served.load()) return;  // (async-signal-safe up to here)
  std::lock_guard lk(impl_->threads_m);
  for (auto& w : impl_->dedicated)
    if (auto l = w.lock()) static_cast<ConnLink&>(*l).conn.close();
}

void Server::post(std::function<void()> fn) {
  if (impl_) impl_->engine->post(std::move(fn));
}

ServerStats Server::stats() const noexcept {
  if (!impl_) return {};
  const auto& a = impl_->st;
  auto get = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  return ServerStats{.calls = get(a.calls),
                     .ok = get(a.ok),
                     .failed = get(a.failed),
                     .one_way = get(a.one_way),
                     .cancelled = get(a.cancelled),
                     .refused = get(a.refused),
                     .expired = get(a.expired),
                     .malformed = get(a.malformed),
                     .out_of_band_in = get(a.out_of_band_in),
                     .out_of_band_out = get(a.out_of_band_out),
                     .threads = impl_->pool.threads(),
                     .busy = impl_->pool.busy()};
}
ipcx::ServerStats Server::engine_stats() const noexcept { return impl_ ? impl_->engine->stats() : ipcx::ServerStats{}; }

std::vector<std::string> Server::methods() const {
  std::vector<std::string> out;
  if (!impl_) return out;
  std::shared_lock ml(impl_->methods_m);
  for (auto& [name, e] : impl_->methods) out.push_back(name);
  return out;
}

}  // namespace ipcx::rpc
