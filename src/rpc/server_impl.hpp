// Inside the RPC server: a Link is one client connection as the call logic sees it, whichever
// way it is served — by the server engine's loop (SessionLink: sends go to the session's queue,
// completions are posted to the loop) or by a thread of its own (ConnLink, Server::serve:
// sends go straight to the connection, completions run where the handler ran).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <ipcx/rpc.hpp>

#include "rpc/pool.hpp"
#include "rpc/wire.hpp"

namespace ipcx::rpc {

using Clock = std::chrono::steady_clock;

// A frame ready to send: its bytes and, out of band, the memfd.
struct Outgoing {
  std::vector<std::byte> bytes;
  Fd fd;
  wire::Kind kind = wire::Kind::error;  // what it is: a refused response is answered with a status
  CallId id = 0;
};

struct Link;
struct Entry;

struct Context::Call {
  Server::Impl* server = nullptr;
  std::shared_ptr<Link> link;
  CallId id = 0;
  std::string method;
  Clock::time_point deadline = Clock::time_point::max();
  bool one_way = false, stream = false;
  Run run = Run::pool;
  bool on_loop = false;           // the handler is running on the link's serving thread, now
  std::size_t backlog_bytes = 0;  // inline request bytes counted while it waits
  Payload request;
  std::shared_ptr<const Entry> entry;  // the method's handler (kept even if it is replaced)

  std::atomic<bool> cancelled{false};
  std::atomic<bool> finished{false};  // finish() called: nothing more goes out
  bool answered = false;              // (link's mutex) the client has its final frame

  // Stream flow control: items the client has room for.
  std::mutex m;
  std::condition_variable cv;
  std::uint32_t credits = 0;
  std::uint32_t window = 0;  // the most credits can reach: the window agreed at the call

  void cancel() {
    {
      std::lock_guard lk(m);
      cancelled = true;
    }
    cv.notify_all();
  }
};

struct Link : std::enable_shared_from_this<Link> {
  // Everything below, and the order of this link's sends. Never held while a handler runs.
  std::mutex m;
  std::unordered_map<CallId, std::shared_ptr<Context::Call>> calls;  // running and waiting
  std::deque<std::shared_ptr<Context::Call>> backlog;                // past max_in_flight, in order
  std::size_t running = 0;
  std::size_t backlog_bytes = 0;
  bool pumping = false;
  bool gone = false;  // the connection ended: nothing more is sent or started
  PeerCred peer;
  Capabilities caps;

  virtual ~Link() = default;
  // Sends (or queues) one frame; m held.
  virtual void deliver(Outgoing o) = 0;
  // Closes the connection once what is queued is written; m held.
  virtual void close_after_queued() = 0;
  // Runs `fn` where this link's completions run: the engine's loop, or right here.
  virtual void later(std::function<void()> fn) = 0;
  // Closes the connection now, from any thread (serve()'s: its receive returns).
  virtual void abort() {}
};

struct Entry {
  Server::Shape shape;
  Run run;
  Server::Handler fn;
};

// ServerStats, counted from several threads when connections have threads of their own.
struct AtomicStats {
  std::atomic<std::uint64_t> calls{0}, ok{0}, failed{0}, one_way{0}, cancelled{0}, refused{0}, expired{0}, malformed{0},
      out_of_band_in{0}, out_of_band_out{0};
};

struct Server::Impl {
  ServerOptions opts;
  // Methods may be added while calls are served: the table under a lock, each entry shared
  // with the calls running it.
  mutable std::shared_mutex methods_m;
  std::map<std::string, std::shared_ptr<const Entry>, std::less<>> methods;
  std::map<std::string, std::vector<std::byte>, std::less<>> descriptors;  // service -> FileDescriptorSet
  AtomicStats st;
  Pool pool;
  std::optional<ipcx::Server> engine;
  ipcx::Server* loop = nullptr;  // the engine, for its sessions' links (valid while it is being destroyed)
  // Connections served by serve(), so that stop() and the destructor can end them, and how many
  // serve() calls are running (the destructor waits for them).
  std::mutex threads_m;
  std::condition_variable threads_cv;
  std::vector<std::weak_ptr<Link>> dedicated;
  std::size_t serving = 0;
  std::atomic<bool> stopping{false};
  std::atomic<bool> served{false};  // serve() was called: stop() has connections to close

  explicit Impl(const ServerOptions& o) : opts(o), pool(o.max_threads) {}
  ~Impl();

  static Outgoing status_frame(wire::Kind kind, CallId id, const Status& status);
  // A response or stream item with `body`, out of band when large and the link passes
  // descriptors; a body that cannot travel becomes the status saying why. Any thread.
  std::expected<Outgoing, Status> body_frame(wire::Kind kind, CallId id, const Body& body, bool fd_passing, std::uint32_t aux = 0) const;

  // A message from the client (the link's serving thread). False once the link is gone (the
  // connection is to be closed: malformed input, or a send that failed).
  bool on_message(Link& l, Message& m);
  // The connection is gone: its calls are cancelled.
  void on_close(Link& l);
  // A handler's final frame (or none), through Link::later.
  void complete(const std::shared_ptr<Context::Call>& call, std::optional<Outgoing> out, bool ok);
  void send_item(const std::shared_ptr<Context::Call>& call, Outgoing out);

 private:
  void handle(Link& l, Message& m, std::unique_lock<std::mutex>& lk);
  void on_call(Link& l, const wire::Frame& f, Message& m, std::unique_lock<std::mutex>& lk);
  // Runs a call's handler: on the pool, or here (lk released meanwhile) for Run::loop.
  void start(Link& l, std::unique_lock<std::mutex>& lk, std::shared_ptr<Context::Call> call);
  void refuse(Link& l, const wire::Frame& f, Status status);
  void malformed(Link& l, const std::string& why);
  void reflect(Link& l, const wire::Frame& f, const Payload& request);
  // Starts waiting calls while fewer than max_in_flight run. lk holds l.m; released while a
  // handler runs on this thread.
  void pump(Link& l, std::unique_lock<std::mutex>& lk);
  static void execute(const std::shared_ptr<Context::Call>& call);
};

}  // namespace ipcx::rpc
