// The RPC client: calls are slots in a table under one mutex; whichever waiting thread finds
// nobody reading becomes the reader, receives for everyone and hands each response to its
// slot, then passes the role on. With one thread this is a send and a receive on the caller's
// thread, with no thread of the client's own.
#include <ipcx/rpc.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>

#include "rpc/oob.hpp"
#include "rpc/wire.hpp"

namespace ipcx::rpc {

using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kReadSlice = std::chrono::milliseconds(100);

struct Slot {
  Clock::time_point deadline = Clock::time_point::max();
  bool stream = false;
  bool cancelled = false;
  std::optional<Payload> response;     // unary: the OK response
  std::deque<Payload> items;           // stream: received, not yet taken
  std::optional<Status> end;           // the final status (unary errors, the stream's end)
  std::uint32_t taken = 0;             // stream items taken since the last credit
  std::uint32_t window = 0;            // stream: the window the server keeps (in each item; 0: none seen yet)
};

Status from_error(const Error& e, std::string_view what) {
  switch (e.code) {
    case Errc::timeout: return {Code::deadline_exceeded, fmt::format("{}: {}", what, e.message())};
    case Errc::too_large: return {Code::resource_exhausted, fmt::format("{}: {}", what, e.message())};
    case Errc::resource_exhausted: return {Code::resource_exhausted, fmt::format("{}: {}", what, e.message())};
    case Errc::protocol: return {Code::internal, fmt::format("{}: {}", what, e.message())};
    default: return {Code::unavailable, fmt::format("{}: {}", what, e.message())};
  }
}

}  // namespace

struct Call::Owner {
  Connection conn;
  ClientOptions opts;
  Capabilities caps;
  std::mutex m;
  std::condition_variable cv;
  bool reading = false;
  std::unordered_map<CallId, Slot> slots;
  CallId next_id = 1;
  std::optional<Status> dead;  // the connection is gone: why
  Message rx;
  ClientStats st;

  // ---- sending (any thread, no lock held) ----

  // Encodes `f` with `body` inline or out of band and sends it within `deadline`.
  Result<void> send_frame(wire::Frame f, const Body& body, Clock::time_point deadline) {
    thread_local std::vector<std::byte> tx;
    if (body.size > body.limit)
      return fail(Errc::too_large, "rpc", fmt::format("a request of {} bytes is over what its codec can encode ({} bytes)", body.size, body.limit));
    if (body.size > opts.large_threshold && caps.fd_passing) {
      auto fd = oob::make_sealed(body);
      if (!fd) return std::unexpected(fd.error());
      f.flags |= wire::flag::out_of_band;
      f.oob_size = body.size;
      wire::encode(tx, f, 0);
      const int raw = fd->get();
      return conn.send(tx, std::span<const int>(&raw, 1), detail::timeout_until(deadline, Clock::now()));
    }
    // (Checked before the buffer grows for it, and again with the header.)
    std::span<std::byte> room;
    if (body.size <= opts.transport.max_message) room = wire::encode(tx, f, body.size);
    if (body.size > opts.transport.max_message || tx.size() > opts.transport.max_message)
      return fail(Errc::too_large, "rpc", fmt::format("a request of {} bytes is over max_message ({}){}", body.size, opts.transport.max_message,
                                                      caps.fd_passing ? "" : "; larger payloads travel out of band over unix:// only"));
    if (body.write && body.size) body.write(body.object, room);
    return conn.send(tx, detail::timeout_until(deadline, Clock::now()));
  }

  // A cancel or credit for the server, waiting at most 100 ms for room. False: not sent.
  bool send_control(wire::Kind kind, CallId id, std::uint32_t aux) {
    thread_local std::vector<std::byte> tx;
    wire::encode(tx, wire::Frame{.kind = kind, .id = id, .aux = aux}, 0);
    return conn.send(tx, std::chrono::milliseconds(100)).has_value();
  }

  // Stream items taken since the last credit, once half the call's window: tells the server (m
  // held on entry and on return). The window is the one each item states, the lower of ours and
  // the server's: half of ours alone could be more than a server with a smaller window ever
  // sends before it waits for credit. A credit that could not be sent stays owed and goes with
  // the next.
  void credit(std::unique_lock<std::mutex>& lk, CallId id, Slot& s) {
    if (s.taken < std::max<std::uint32_t>(1, s.window / 2)) return;
    const auto n = std::exchange(s.taken, 0);
    lk.unlock();
    const bool sent = send_control(wire::Kind::credit, id, n);
    lk.lock();
    if (sent) return;
    if (auto it = slots.find(id); it != slots.end()) it->second.taken += n;
  }

  // ---- the table (m held) ----

  void die(Status why) {
    if (!dead) dead = std::move(why);
    conn.close();
    cv.notify_all();
  }

  void end(CallId id, std::uint64_t ClientStats::*counter) {
    if (slots.erase(id) && counter) ++(st.*counter);
  }

  // Hands the message in `rx` to its slot.
  void dispatch() {
    auto f = wire::decode(rx.bytes(), rx.fds.size());
    if (!f) return die(Status{Code::internal, fmt::format("malformed message from the server: {}", f.error().detail)});
    if (f->kind == wire::Kind::error)
      return die(Status{static_cast<Code>(f->aux), fmt::format("the server closed the connection: {}", f->message)});
    if (f->kind != wire::Kind::response && f->kind != wire::Kind::item && f->kind != wire::Kind::end)
      return die(Status{Code::internal, fmt::format("the server sent RPC message kind {}", static_cast<int>(f->kind))});
    auto it = slots.find(f->id);
    if (it == slots.end()) {
      if (f->id < next_id) {
        ++st.late;  // a call that ended here first (deadline, cancel)
        return;
      }
      return die(Status{Code::internal, fmt::format("a response for call {}, never made", f->id)});
    }
    auto& s = it->second;
    if ((f->kind == wire::Kind::response) == s.stream || s.end || s.response)
      return die(Status{Code::internal, fmt::format("an RPC message of kind {} out of place for call {}", static_cast<int>(f->kind), f->id)});
    if (s.cancelled) return;  // (the call ends as cancelled when its waiter looks)
    if (f->kind == wire::Kind::end || (f->kind == wire::Kind::response && f->aux != 0)) {
      s.end = Status{static_cast<Code>(f->aux), std::string(f->message)};
      return;
    }
    auto p = take_payload(*f);
    if (!p) {
      s.end = std::move(p.error());
      return;
    }
    if (s.stream) {
      // The server may run ahead of next() by the window it was given, no further.
      if (s.items.size() >= opts.stream_window)
        return die(Status{Code::internal, fmt::format("the server sent call {} more stream items than its window ({})", f->id, opts.stream_window)});
      s.window = std::min(f->aux, opts.stream_window);
      s.items.push_back(std::move(*p));
    } else {
      s.response = std::move(*p);
    }
  }

  Reply<Payload> take_payload(const wire::Frame& f) {
    if (f.has(wire::flag::out_of_band)) {
      if (f.oob_size > opts.max_payload)
        return std::unexpected(Status{Code::resource_exhausted, fmt::format("a response of {} bytes is over max_payload ({})", f.oob_size, opts.max_payload)});
      auto p = Payload::map_sealed(rx.fds[0].get(), f.oob_size);
      rx.fds.clear();
      if (!p) return std::unexpected(Status{Code::internal, p.error().message()});
      return std::move(*p);
    }
    const auto skip = static_cast<std::size_t>(f.payload.data() ? f.payload.data() - rx.data.data() : rx.data.size());
    if (skip == rx.data.size()) return Payload();
    const bool large = rx.data.capacity() >= (std::size_t{64} << 10);
    Payload p(std::move(rx.data), skip);  // (the header skipped, not moved)
    if (large) rx.data = buffers::take();  // (the next large response lands in pages already there)
    return p;
  }

  // ---- waiting ----

  enum class Want { response, item };

  // Waits for `id`'s response (unary) or next item (stream), up to `timeout` and the call's
  // own deadline. The call's slot is gone when this returns an end (anything but an item, or
  // a timeout that is not the call's own deadline).
  Reply<std::optional<Payload>> await(CallId id, Want want, Timeout timeout, bool& over) {
    std::unique_lock lk(m);
    const auto give_up_at = detail::deadline_after(timeout);
    for (;;) {
      auto it = slots.find(id);
      if (it == slots.end()) {
        over = true;
        return std::unexpected(Status{Code::failed_precondition, fmt::format("call {} has already ended", id)});
      }
      auto& s = it->second;
      if (s.stream != (want == Want::item))
        return std::unexpected(Status{Code::failed_precondition, s.stream ? "a stream's items are read with next()" : "a unary call's response is read with wait()"});
      if (s.cancelled) {
        over = true;
        end(id, &ClientStats::cancelled);
        return std::unexpected(Status{Code::cancelled, "cancelled"});
      }
      if (want == Want::item && !s.items.empty()) {
        Payload p = std::move(s.items.front());
        s.items.pop_front();
        ++s.taken;
        credit(lk, id, s);
        return std::optional<Payload>(std::move(p));
      }
      if (want == Want::item && s.taken > 0 && !s.end && !dead) {
        credit(lk, id, s);  // (one owed from a send that failed)
        it = slots.find(id);
        if (it == slots.end()) continue;
      }
      auto& cur = it->second;
      if (cur.response) {
        Payload p = std::move(*cur.response);
        over = true;
        end(id, &ClientStats::ok);
        return std::optional<Payload>(std::move(p));
      }
      if (cur.end) {
        Status e = std::move(*cur.end);
        over = true;
        end(id, e.ok() ? &ClientStats::ok : &ClientStats::failed);
        if (e.ok()) return std::optional<Payload>();
        return std::unexpected(std::move(e));
      }
      if (dead) {
        Status e = *dead;
        over = true;
        end(id, &ClientStats::failed);
        return std::unexpected(std::move(e));
      }
      const auto now = Clock::now();
      if (now >= cur.deadline) {
        over = true;
        end(id, &ClientStats::expired);
        lk.unlock();
        send_control(wire::Kind::cancel, id, 0);
        return std::unexpected(Status{Code::deadline_exceeded, "no response within the call's deadline"});
      }
      const auto wake = std::min(cur.deadline, give_up_at);
      if (now >= give_up_at)
        return std::unexpected(Status{Code::deadline_exceeded, fmt::format("no response to call {} yet (it goes on)", id)});
      if (reading) {
        cv.wait_until(lk, wake);
        continue;
      }
      reading = true;
      lk.unlock();
      // In slices: a cancel() or close() from another thread, which cannot interrupt a receive
      // on every transport, is seen within one even if nothing arrives.
      auto r = conn.recv(rx, detail::timeout_until(std::min(wake, now + kReadSlice), now));
      lk.lock();
      reading = false;
      if (r) dispatch();
      else if (r.error().code != Errc::timeout && r.error().code != Errc::would_block)
        die(from_error(r.error(), r.error().code == Errc::closed ? "the connection closed" : "the connection failed"));
      cv.notify_all();
    }
  }

  void cancel(CallId id) {
    {
      std::lock_guard lk(m);
      auto it = slots.find(id);
      if (it == slots.end() || it->second.cancelled) return;
      auto& s = it->second;
      if (s.response || (s.end && !s.stream)) return;  // (already answered)
      s.cancelled = true;
      cv.notify_all();
    }
    send_control(wire::Kind::cancel, id, 0);
  }

  // A Call handle went away: the call is forgotten (and cancelled if still running).
  void forget(CallId id) {
    bool running = false;
    {
      std::lock_guard lk(m);
      auto it = slots.find(id);
      if (it == slots.end()) return;
      running = !it->second.end && !it->second.response && !dead;
      slots.erase(it);
      ++st.cancelled;
    }
    if (running) send_control(wire::Kind::cancel, id, 0);
  }
};

// ---- Call -------------------------------------------------------------------------------------------

Call::Call(Call&& o) noexcept : owner_(std::move(o.owner_)), id_(std::exchange(o.id_, 0)), ended_(std::exchange(o.ended_, false)) {}
Call& Call::operator=(Call&& o) noexcept {
  if (this != &o) {
    if (owner_ && !ended_) owner_->forget(id_);
    owner_ = std::move(o.owner_);
    id_ = std::exchange(o.id_, 0);
    ended_ = std::exchange(o.ended_, false);
  }
  return *this;
}
Call::~Call() {
  if (owner_ && !ended_) owner_->forget(id_);
}

Reply<Payload> Call::wait(Timeout timeout) {
  if (!owner_) return std::unexpected(Status{Code::failed_precondition, "no call (default-constructed or moved from)"});
  // (owner_ stays: cancel() may run in another thread at the same time; an ended call is
  // simply no longer in the table, and ended_ spares the destructor looking for it.)
  auto r = owner_->await(id_, Owner::Want::response, timeout, ended_);
  if (!r) return std::unexpected(std::move(r.error()));
  if (!*r) return Payload();
  return std::move(**r);
}

Reply<std::optional<Payload>> Call::next(Timeout timeout) {
  if (!owner_) return std::unexpected(Status{Code::failed_precondition, "the stream has ended"});
  return owner_->await(id_, Owner::Want::item, timeout, ended_);
}

void Call::cancel() noexcept {
  if (owner_) owner_->cancel(id_);
}

// ---- Client -------------------------------------------------------------------------------------------

struct Client::Impl : Call::Owner {};

Client::Client() noexcept = default;
Client::Client(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&& o) noexcept {
  if (this != &o) {
    if (impl_) impl_->conn.close();  // (as the destructor does: calls of the old one end UNAVAILABLE)
    impl_ = std::move(o.impl_);
  }
  return *this;
}
Client::~Client() {
  if (impl_) impl_->conn.close();
}

Result<Client> Client::adopt(Connection connection, ClientOptions options) {
  if (options.max_in_flight == 0) return fail(Errc::invalid_argument, "rpc::Client", "max_in_flight must be at least 1");
  if (options.stream_window == 0) return fail(Errc::invalid_argument, "rpc::Client", "stream_window must be at least 1");
  if (!connection.is_open()) return fail(Errc::closed, "rpc::Client", "the connection is closed");
  auto impl = std::make_shared<Impl>();
  impl->caps = connection.capabilities();
  impl->conn = std::move(connection);
  impl->opts = options;
  return Client(std::move(impl));
}

Result<Client> Client::connect(std::string_view url, ClientOptions options, Timeout timeout) {
  auto conn = ipcx::connect(url, options.transport, timeout);
  if (!conn) return std::unexpected(conn.error());
  return adopt(std::move(*conn), options);
}

namespace {
Status no_client() { return Status{Code::unavailable, "no client (default-constructed or moved from)"}; }
}  // namespace

// Sends a call (one-way, unary or stream by `flags`): the method checked, a slot for its
// response unless one-way, the request sent within the deadline. A send that failed half-way
// (anything but a timeout or a size refusal before the first byte) ends the connection.
Reply<CallId> Client::send_call(std::string_view method, const Body& request, Timeout deadline, std::uint8_t flags) {
  if (!impl_) return std::unexpected(no_client());
  if (!wire::valid_method(method))
    return std::unexpected(Status{Code::invalid_argument, fmt::format("\"{}\" is not a method name (package.Service/Method, printable ASCII)", method)});
  const bool one_way = flags & wire::flag::one_way, stream = flags & wire::flag::stream;
  const auto dl = detail::deadline_after(deadline);
  CallId id = 0;
  {
    std::lock_guard lk(impl_->m);
    if (impl_->dead) return std::unexpected(*impl_->dead);
    if (!one_way && impl_->slots.size() >= impl_->opts.max_in_flight)
      return std::unexpected(Status{Code::resource_exhausted, fmt::format("{} calls already in flight (max_in_flight)", impl_->slots.size())});
    id = impl_->next_id++;
    if (one_way) {
      ++impl_->st.one_way;
    } else {
      impl_->slots.emplace(id, Slot{.deadline = dl, .stream = stream});
      ++impl_->st.calls;
    }
  }
  wire::Frame f{.kind = wire::Kind::call,
                .flags = flags,
                .id = id,
                .aux = stream ? impl_->opts.stream_window : 0,
                .remaining_us = ::ipcx::wire::remaining_us(dl, Clock::now()),
                .method = method};
  if (auto r = impl_->send_frame(f, request, dl); !r) {
    std::lock_guard lk(impl_->m);
    if (!one_way) impl_->end(id, &ClientStats::failed);
    auto st = from_error(r.error(), "sending the request");
    if (r.error().code != Errc::timeout && r.error().code != Errc::too_large && r.error().code != Errc::resource_exhausted)
      impl_->die(st);
    return std::unexpected(std::move(st));
  }
  return id;
}

Reply<Call> Client::start_raw(std::string_view method, const Body& request, Timeout deadline, bool stream) {
  auto id = send_call(method, request, deadline, stream ? wire::flag::stream : std::uint8_t{0});
  if (!id) return std::unexpected(std::move(id.error()));
  Call c;
  c.owner_ = impl_;
  c.id_ = *id;
  return c;
}

Reply<void> Client::notify_raw(std::string_view method, const Body& request, Timeout deadline) {
  auto id = send_call(method, request, deadline, wire::flag::one_way);
  if (!id) return std::unexpected(std::move(id.error()));
  return {};
}

Reply<Payload> Client::call_raw(std::string_view method, std::span<const std::byte> request, Timeout deadline) {
  auto c = start_raw(method, body_of(request), deadline, false);
  if (!c) return std::unexpected(std::move(c.error()));
  return c->wait();
}

PeerCred Client::peer() const noexcept { return impl_ ? impl_->conn.peer() : PeerCred{}; }
Capabilities Client::capabilities() const noexcept { return impl_ ? impl_->caps : Capabilities{}; }

ClientStats Client::stats() const noexcept {
  if (!impl_) return {};
  std::lock_guard lk(impl_->m);
  auto s = impl_->st;
  s.in_flight = impl_->slots.size();
  return s;
}

void Client::close() noexcept {
  if (!impl_) return;
  std::lock_guard lk(impl_->m);
  impl_->die(Status{Code::unavailable, "the client was closed"});
}

bool Client::is_open() const noexcept {
  if (!impl_) return false;
  std::lock_guard lk(impl_->m);
  return !impl_->dead && impl_->conn.is_open();
}

}  // namespace ipcx::rpc
