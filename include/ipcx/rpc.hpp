// Typed remote procedure calls over any transport (docs/rpc.md).
//
//   struct Add { std::int64_t a, b; };                       // trivially copyable: sent as bytes
//   inline constexpr ipcx::rpc::Method<Add, std::int64_t> kAdd{"calc.Calc/Add"};
//
//   // server: handlers by method name, on a pool of threads (or on the loop: Run::loop)
//   auto server = ipcx::rpc::Server::create().value();
//   server.unary(kAdd, [](ipcx::rpc::Context&, const Add& q, std::int64_t& sum) {
//     sum = q.a + q.b;
//     return ipcx::rpc::Status{};
//   });
//   server.listen("unix:///run/user/1000/calc.sock").value();
//   server.run();                                            // until server.stop()
//
//   // client: a call is a function call with a deadline
//   auto calc = ipcx::rpc::Client::connect("unix:///run/user/1000/calc.sock").value();
//   auto sum = calc.call(kAdd, Add{2, 2}, 1s);               // Reply<int64_t>: 4, or a Status
//
// Unary calls, one-way calls (notify), server streaming (Stream<T>), cancellation, deadlines
// that travel with the call, gRPC's status codes, a per-connection limit on calls in flight,
// and payloads above a threshold handed over out of band in a sealed memfd (unix sockets).
// Codecs (<ipcx/rpc_codec.hpp>, included here): raw bytes (Payload, std::vector<std::byte>,
// std::string), trivially copyable types, and protobuf messages (<ipcx/rpc_protobuf.hpp>;
// protoc-gen-ipcx generates typed stubs).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>
#include <ipcx/peer.hpp>
#include <ipcx/rpc_codec.hpp>  // Status, Payload, Codec<T>, Method
#include <ipcx/server.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::rpc {

// ---- server ---------------------------------------------------------------------------------------

// Where a handler runs.
enum class Run {
  pool,  // a thread of the server's pool (it grows on demand up to max_threads): a handler may block
  loop,  // the server's loop thread, as the call is read: the lowest latency, for handlers that
         // never block (every other connection waits while it runs)
};

struct ServerOptions {
  ipcx::ServerOptions engine;  // connections, memory, fairness, timeouts (server.hpp)
  Options transport;           // max_message bounds a request that travels inline
  // Per connection: calls being handled at once. Further calls wait in a backlog, in order,
  // and start as running ones end; a call that finds the backlog full (max_backlog calls, or
  // max_backlog_bytes of inline requests) is answered RESOURCE_EXHAUSTED at once (a one-way
  // call is dropped, counted in ServerStats::refused).
  std::size_t max_in_flight = 16;
  std::size_t max_backlog = 256;
  std::size_t max_backlog_bytes = std::size_t{16} << 20;
  // Handler threads, started when every existing one is busy (they last as long as the server).
  std::size_t max_threads = 64;
  // Responses of more bytes go out of band (a sealed memfd) where the connection passes
  // descriptors (unix://); elsewhere they travel inline, up to the client's max_message.
  std::size_t large_threshold = std::size_t{2} << 20;
  // Out-of-band requests larger than this are refused (RESOURCE_EXHAUSTED).
  std::size_t max_payload = std::size_t{4} << 30;
  // Stream items a handler may write ahead of the client taking them; write() waits beyond.
  std::uint32_t stream_window = 64;
};

// What a handler knows about its call.
class Context {
 public:
  // The caller, as the kernel recorded it (verified over unix://; unverified elsewhere, see
  // PeerCred::verified).
  const PeerCred& peer() const noexcept { return peer_; }
  std::string_view method() const noexcept { return method_; }
  // When the client stops waiting; time_point::max() when it set none.
  std::chrono::steady_clock::time_point deadline() const noexcept { return deadline_; }
  // True once the client cancelled, the deadline passed, the connection went away or the
  // server is stopping: the response would be discarded, so a long handler should give up.
  bool cancelled() const noexcept;
  // A one-way call: the response is not sent.
  bool one_way() const noexcept { return one_way_; }
  CallId id() const noexcept { return id_; }

  // Internal (the typed wrappers): sends the response (unary) or one stream item.
  struct Call;
  explicit Context(std::shared_ptr<Call> call) noexcept;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context();
  // Stream: sends one item, waiting for room in the client's window; false once the call is over.
  bool write_item(const Body& body);
  // Ends the call (once): with `status`, and for a unary call with OK, the response `body`.
  // A body the connection cannot carry ends the call RESOURCE_EXHAUSTED instead.
  void finish(Status status, const Body& body = {});

 private:
  std::shared_ptr<Call> call_;
  PeerCred peer_;
  std::string_view method_;  // (in the call, which this context keeps)
  std::chrono::steady_clock::time_point deadline_;
  CallId id_ = 0;
  bool one_way_ = false;
};

// The writing end of a server stream.
template <class T>
class Writer {
 public:
  explicit Writer(Context& ctx) noexcept : ctx_(ctx) {}
  // Sends one item. Blocks while the client's window is full. False when the call is over
  // (cancelled, past its deadline, connection gone): stop writing.
  bool write(const T& item) { return ctx_.write_item(body_of(item)); }

 private:
  Context& ctx_;
};

struct ServerStats {
  std::uint64_t calls = 0;           // calls handed to a handler
  std::uint64_t ok = 0, failed = 0;  // ended with OK / with another status
  std::uint64_t one_way = 0;
  std::uint64_t cancelled = 0;       // cancelled by the client or by its connection closing
  std::uint64_t refused = 0;         // over max_in_flight, unknown method, undecodable request, too large
  std::uint64_t expired = 0;         // arrived or finished after their deadline
  std::uint64_t malformed = 0;       // frames that were not RPC (the connection was dropped)
  std::uint64_t out_of_band_in = 0, out_of_band_out = 0;
  std::size_t threads = 0, busy = 0;
};

class Server {
 public:
  // Handlers of every kind take the request as received (`Payload&`, decoded by the wrappers).
  using Handler = std::function<void(Context&, Payload&)>;
  enum class Shape : std::uint8_t { unary, server_stream };

  Server() noexcept;
  Server(Server&&) noexcept;
  Server& operator=(Server&&) noexcept;
  // Stops: every call is cancelled, the pool's threads are joined (a handler that ignores
  // cancellation delays this), connections and listeners are closed.
  ~Server();

  static Result<Server> create(ServerOptions options = {});

  // Serves connections made at `url`; returns the bound address (tcp port 0 resolved). Any
  // transport: unix, tcp, pipe:, shm://... (out-of-band payloads need unix://).
  Result<std::string> listen(std::string_view url);
  // Serves a connection made elsewhere (spawn_connected()'s pipe to a child, say) on the loop.
  Result<Session::Id> adopt(Connection connection);
  // Serves one connection on the calling thread until it ends (the client closes, the
  // connection fails, or stop()): it waits in the connection's own receive, with no event loop
  // in between — a shm://NAME?wait=spin connection busy-polls — and Run::loop handlers run on
  // this thread. The lowest latency, for a thread per connection. The engine's limits
  // (ServerOptions::engine) do not apply but its send_timeout: a client that does not read for
  // that long is dropped. Returns once the connection is closed; Errc::closed after stop().
  Result<void> serve(Connection connection);

  // A unary method: `fn` fills the response and returns the status (a non-OK status sends
  // no response body). A request that does not decode is answered INVALID_ARGUMENT.
  template <Receivable Req, Sendable Resp, class Fn>
    requires std::is_invocable_r_v<Status, Fn&, Context&, const Req&, Resp&>
  void unary(Method<Req, Resp> m, Fn fn, Run run = Run::pool) {
    add(m.name, Shape::unary, run, [fn = std::move(fn)](Context& ctx, Payload& in) mutable {
      Req req{};
      if (!decode(in, req)) return ctx.finish({Code::invalid_argument, "the request does not decode as its type"});
      Resp resp{};
      Status st = fn(ctx, req, resp);
      if (!st.ok()) return ctx.finish(std::move(st));
      ctx.finish({}, body_of(resp));
    });
  }
  // A server-streaming method: `fn` writes items, then returns the status that ends the stream.
  // Runs on the pool (writes wait for the client's window).
  template <Receivable Req, Sendable Resp, class Fn>
    requires std::is_invocable_r_v<Status, Fn&, Context&, const Req&, Writer<Resp>&>
  void server_stream(Method<Req, Resp> m, Fn fn) {
    add(m.name, Shape::server_stream, Run::pool, [fn = std::move(fn)](Context& ctx, Payload& in) mutable {
      Req req{};
      if (!decode(in, req)) return ctx.finish({Code::invalid_argument, "the request does not decode as its type"});
      Writer<Resp> w(ctx);
      ctx.finish(fn(ctx, req, w));
    });
  }
  // The untyped form of both (the handler must call ctx.finish()).
  void add(std::string_view method, Shape shape, Run run, Handler handler);

  // Makes the service's protobuf descriptors (a serialized FileDescriptorSet) available to
  // `ipcx call` through the built-in method ipcx.Reflection/Describe.
  void describe(std::string_view service, std::vector<std::byte> file_descriptor_set);

  // Serves the listeners and adopted connections until stop(). Blocks.
  Result<void> run();
  Result<int> run_once(Timeout timeout);
  // Makes run() return, and closes the connections serve() calls are serving. Thread-safe;
  // async-signal-safe as long as no serve() call is running (it takes a lock to find them).
  void stop() noexcept;
  // Runs fn on the loop thread. Thread-safe.
  void post(std::function<void()> fn);

  ServerStats stats() const noexcept;
  ipcx::ServerStats engine_stats() const noexcept;
  std::vector<std::string> methods() const;

  struct Impl;

 private:
  explicit Server(std::shared_ptr<Impl> impl) noexcept;
  std::shared_ptr<Impl> impl_;
};

// ---- client ---------------------------------------------------------------------------------------

struct ClientOptions {
  Options transport;  // max_message bounds a response that travels inline
  // Calls started and not finished; one more: RESOURCE_EXHAUSTED without sending.
  std::size_t max_in_flight = 64;
  // Requests of more bytes go out of band (a sealed memfd) where the connection passes
  // descriptors; elsewhere inline, up to max_message.
  std::size_t large_threshold = std::size_t{2} << 20;
  // Out-of-band responses larger than this end their call RESOURCE_EXHAUSTED.
  std::size_t max_payload = std::size_t{4} << 30;
  // Stream items received and not yet taken by next(), per stream (the server waits beyond).
  std::uint32_t stream_window = 64;
};

struct ClientStats {
  std::uint64_t calls = 0, ok = 0, failed = 0, one_way = 0, cancelled = 0, expired = 0;
  std::uint64_t late = 0;  // responses for calls that had already ended (discarded)
  std::size_t in_flight = 0;
};

class Client;

// A call started with Client::start or Client::stream. Move-only; destroying an unfinished
// call cancels it.
class Call {
 public:
  Call() noexcept = default;
  Call(Call&& o) noexcept;
  Call& operator=(Call&& o) noexcept;
  ~Call();

  CallId id() const noexcept { return id_; }
  // Unary: the response, waiting up to `timeout` (Code::deadline_exceeded at the call's own
  // deadline; at an earlier `timeout`, also deadline_exceeded and the call goes on: wait again).
  Reply<Payload> wait(Timeout timeout = forever);
  // Stream: the next item; nullopt when the stream ended with OK. A non-OK end is the error.
  Reply<std::optional<Payload>> next(Timeout timeout = forever);
  // Cancels the call: the server is told, and a wait()/next() in any thread returns
  // Code::cancelled at once (within 100 ms when that thread is the one reading the connection
  // and the server does not answer the cancel). Thread-safe. No effect on a call that has ended.
  void cancel() noexcept;
  bool valid() const noexcept { return owner_ != nullptr; }

  struct Owner;

 private:
  friend class Client;
  std::shared_ptr<Owner> owner_;
  CallId id_ = 0;
  bool ended_ = false;  // wait()/next() saw the call end: nothing to forget on destruction
};

// A typed stream of responses.
template <Receivable T>
class Stream {
 public:
  explicit Stream(Call call) noexcept : call_(std::move(call)) {}
  // The next item; nullopt at the end of a stream that ended OK.
  Reply<std::optional<T>> next(Timeout timeout = forever) {
    auto p = call_.next(timeout);
    if (!p) return std::unexpected(std::move(p.error()));
    if (!*p) return std::optional<T>();
    T v{};
    if (!decode(**p, v)) {
      call_.cancel();
      return std::unexpected(Status{Code::internal, "a stream item does not decode as its type"});
    }
    return std::optional<T>(std::move(v));
  }
  void cancel() noexcept { call_.cancel(); }
  CallId id() const noexcept { return call_.id(); }

 private:
  Call call_;
};

// A typed unary call in flight.
template <Receivable T>
class Pending {
 public:
  explicit Pending(Call call) noexcept : call_(std::move(call)) {}
  Reply<T> get(Timeout timeout = forever) {
    auto p = call_.wait(timeout);
    if (!p) return std::unexpected(std::move(p.error()));
    T v{};
    if (!decode(*p, v)) return std::unexpected(Status{Code::internal, "the response does not decode as its type"});
    return v;
  }
  void cancel() noexcept { call_.cancel(); }
  CallId id() const noexcept { return call_.id(); }

 private:
  Call call_;
};

// The calling side: one connection to a Server. Thread-safe: any number of threads may call
// at once (one of them reads the connection for all, the others wait for their response).
class Client {
 public:
  Client() noexcept;
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  // Closes the connection; calls in flight end UNAVAILABLE.
  ~Client();

  static Result<Client> connect(std::string_view url, ClientOptions options = {},
                                Timeout timeout = std::chrono::seconds(5));
  // A client over a connection made elsewhere (spawn_connected()'s pipe to a child, say).
  static Result<Client> adopt(Connection connection, ClientOptions options = {});

  // A unary call: blocks until the response, an error status, or `deadline` (which travels
  // with the call: the server sees it in Context::deadline()).
  template <class Req, Receivable Resp, ArgumentFor<Req> A>
  Reply<Resp> call(Method<Req, Resp> m, const A& req, Timeout deadline = forever) {
    auto c = start(m, req, deadline);
    if (!c) return std::unexpected(std::move(c.error()));
    return c->get();
  }
  // A call whose response is not wanted: returns once the request is sent. The server runs
  // it and sends nothing back (its status is not reported).
  template <class Req, class Resp, ArgumentFor<Req> A>
  Reply<void> notify(Method<Req, Resp> m, const A& req, Timeout deadline = forever) {
    return notify_raw(m.name, body_of(req), deadline);
  }
  // A unary call in flight: get() its response later, or cancel() it.
  template <class Req, Receivable Resp, ArgumentFor<Req> A>
  Reply<Pending<Resp>> start(Method<Req, Resp> m, const A& req, Timeout deadline = forever) {
    auto c = start_raw(m.name, body_of(req), deadline, false);
    if (!c) return std::unexpected(std::move(c.error()));
    return Pending<Resp>(std::move(*c));
  }
  // A server-streaming call: read the items with next().
  template <class Req, Receivable Resp, ArgumentFor<Req> A>
  Reply<Stream<Resp>> stream(Method<Req, Resp> m, const A& req, Timeout deadline = forever) {
    auto c = start_raw(m.name, body_of(req), deadline, true);
    if (!c) return std::unexpected(std::move(c.error()));
    return Stream<Resp>(std::move(*c));
  }

  // The untyped forms.
  Reply<Call> start_raw(std::string_view method, const Body& request, Timeout deadline, bool stream);
  Reply<void> notify_raw(std::string_view method, const Body& request, Timeout deadline);
  // Calls `method` with raw bytes and waits for the raw response.
  Reply<Payload> call_raw(std::string_view method, std::span<const std::byte> request, Timeout deadline = forever);

  PeerCred peer() const noexcept;
  Capabilities capabilities() const noexcept;
  ClientStats stats() const noexcept;
  // Closes the connection: every call in flight ends UNAVAILABLE (in any thread, within 100 ms).
  void close() noexcept;
  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }

  struct Impl;

 private:
  explicit Client(std::shared_ptr<Impl> impl) noexcept;
  Reply<CallId> send_call(std::string_view method, const Body& request, Timeout deadline, std::uint8_t flags);
  std::shared_ptr<Impl> impl_;
};

}  // namespace ipcx::rpc
