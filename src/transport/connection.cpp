// Connection and Listener: the threading contract of connection.hpp, then forwarding to the
// transport's implementation.
#include <ipcx/connection.hpp>

#include <algorithm>
#include <climits>
#include <mutex>
#include <optional>
#include <utility>

#include "os/futex.hpp"
#include "os/membarrier.hpp"
#include "transport/transport.hpp"

namespace ipcx {

namespace {

std::unexpected<Error> not_open(const char* op) { return fail(Errc::closed, op, "endpoint not open"); }

void release_once(ConnectionImpl* c) noexcept {
  if (!c->released.exchange(true)) c->release();
}

// A call in progress on the mutex path. close() releases the descriptors only when no call is
// in progress; a call that starts after close() never touches them. (users++ then closing-check
// here, and closing=true then users-check in close(): sequentially consistent, one of the two
// sides sees the other.)
class Use {
 public:
  explicit Use(ConnectionImpl* c) noexcept : c_(c) {
    c_->users.fetch_add(1);
    if (c_->closing.load()) {
      leave();
      c_ = nullptr;
    }
  }
  ~Use() {
    if (c_) leave();
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  explicit operator bool() const noexcept { return c_ != nullptr; }

 private:
  void leave() noexcept;
  ConnectionImpl* c_;
};

// ---- the biased fast path -------------------------------------------------------------------
//
// The thread a side's gate is biased to enters with plain stores: busy = 1, a compiler barrier,
// then a look at `biased` and `closing`; it leaves with busy = 0 and the same look. The rare
// parties pay for both sides: a second thread clears `biased`, a closer sets `closing`, and a
// barrier on every CPU running this process (membarrier) comes before they read `busy` (for
// the bias, the first thread on the mutex path after it went makes it: see quiesce). Either
// the fast caller sees their store, or they see its busy = 1 and wait for it (the second
// thread) or leave the release to it (the closer): a Dekker pair whose fence on the hot side
// is paid by the cold one. Without membarrier, or under ThreadSanitizer (which
// cannot see such a barrier), gates are never biased.

#if defined(__SANITIZE_THREAD__)
constexpr bool kBiasable = false;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kBiasable = false;
#else
constexpr bool kBiasable = true;
#endif
#else
constexpr bool kBiasable = true;
#endif

thread_local const char tls_tag = 0;  // its address names the calling thread

bool biasable() noexcept { return kBiasable && os::private_barriers(); }

// Releases the descriptors once no call is in progress on either path (called by whoever may be
// the last: a call leaving after close(), and close() itself). Both gates' busy words and the
// users count are read after a full fence; the closer's membarrier orders the fast callers.
void release_if_idle(ConnectionImpl* c) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (c->users.load() == 0 && c->send_gate.busy.load() == 0 && c->recv_gate.busy.load() == 0) release_once(c);
}

void Use::leave() noexcept {
  if (c_->users.fetch_sub(1) == 1 && c_->closing.load()) release_if_idle(c_);
}

// The biased thread leaves: busy = 0, then wakes a thread waiting to take the bias away, and
// releases the descriptors if close() came meanwhile.
void leave_fast(ConnectionImpl* c, ConnectionImpl::CallGate& g) noexcept {
  g.busy.store(0, std::memory_order_release);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  const bool revoked = !g.biased.load(std::memory_order_relaxed);
  const bool closing = c->closing.load(std::memory_order_relaxed);
  if (!revoked && !closing) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (revoked) (void)os::futex_wake(g.busy, INT_MAX, false);
  if (closing) release_if_idle(c);
}

// On the mutex path of a gate that was biased: makes sure no fast call is still in progress,
// once. After a barrier on every CPU of the process, the biased thread sees `biased` false on
// its next try; if it is not inside a call then (busy = 0), it never will be again.
Result<void> quiesce(ConnectionImpl::CallGate& g, const os::Deadline& dl, const char* op) {
  if (g.owner.load(std::memory_order_acquire) == nullptr || g.quiesced.load(std::memory_order_acquire)) return {};
  os::heavy_barrier_private();
  for (;;) {
    if (g.busy.load(std::memory_order_acquire) == 0) {
      g.quiesced.store(true, std::memory_order_release);
      return {};
    }
    if (dl.immediate()) return fail(Errc::would_block, op, "another thread is using this side of the connection");
    if (dl.expired()) return fail(Errc::timeout, op, "another thread is using this side of the connection");
    Timeout slice = std::chrono::milliseconds(10);
    if (!dl.infinite()) slice = std::min<Timeout>(slice, dl.remaining());
    (void)os::futex_wait(g.busy, 1, slice, false);
  }
}

// How a call got in: the fast path, or the mutex path (with its Use and lock). Leaving is the
// destructor's job, in that order: the side's lock, then the count, then the fast path's busy.
class Entry {
 public:
  Entry() = default;
  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;
  ~Entry() {
    lock_ = {};
    use_.reset();
    if (fast_) leave_fast(c_, *fast_);
  }
  Result<void> enter(ConnectionImpl* impl, ConnectionImpl::CallGate& g, const os::Deadline& dl, const char* op);

 private:
  ConnectionImpl* c_ = nullptr;
  ConnectionImpl::CallGate* fast_ = nullptr;
  std::optional<Use> use_;
  std::unique_lock<std::timed_mutex> lock_;
};

// Takes a side's lock within the call's deadline: waiting for another thread counts.
Result<std::unique_lock<std::timed_mutex>> lock_side(std::timed_mutex& mu, const os::Deadline& dl, const char* op) {
  std::unique_lock lk(mu, std::try_to_lock);
  if (lk.owns_lock()) return lk;
  if (dl.infinite()) {
    lk.lock();
    return lk;
  }
  if (dl.immediate()) return fail(Errc::would_block, op, "another thread is using this side of the connection");
  // Waited on in slices against the system clock (pthread_mutex_timedlock, which sanitizers
  // understand, unlike pthread_mutex_clocklock), each slice re-checked against the monotonic
  // deadline so a wall-clock jump cannot stretch the wait.
  while (!dl.expired()) {
    auto slice = std::min<Timeout>(dl.remaining(), std::chrono::milliseconds(10));
    if (lk.try_lock_until(std::chrono::system_clock::now() + slice)) return lk;
  }
  return fail(Errc::timeout, op, "another thread is using this side of the connection");
}

enum class Side { send, recv };

// Gets a call onto one side: the biased fast path, or counted in progress (see Use) and holding
// that side's lock within the call's deadline. Refused once the connection is closed.
Result<void> Entry::enter(ConnectionImpl* impl, ConnectionImpl::CallGate& g, const os::Deadline& dl, const char* op) {
  c_ = impl;
  if (g.biased.load(std::memory_order_relaxed)) {
    const void* me = &tls_tag;
    const void* owner = g.owner.load(std::memory_order_relaxed);
    if (owner == nullptr) {
      if (!biasable()) {
        g.biased.store(false);
      } else if (g.owner.compare_exchange_strong(owner, me)) {
        owner = me;
      }
    }
    if (owner == me) {
      g.busy.store(1, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      // seq_cst: after our claim of the gate (a seq_cst CAS), a close() that found no owner
      // and skipped its barrier is seen here (see Connection::close).
      if (g.biased.load(std::memory_order_relaxed) && !impl->closing.load(std::memory_order_seq_cst)) {
        fast_ = &g;
        return {};
      }
      leave_fast(impl, g);  // taken away, or closing: the mutex path decides
    } else {
      g.biased.store(false);  // another thread: the bias is gone for good
    }
  }
  use_.emplace(impl);
  if (!*use_) return fail(Errc::closed, op, "connection closed");
  auto lk = lock_side(g.mu, dl, op);
  if (!lk) return std::unexpected(std::move(lk.error()));
  lock_ = std::move(*lk);
  return quiesce(g, dl, op);
}

// The biased thread's way in and out, inline (the same steps as Entry's fast path): true once
// inside (busy = 1); false when the full path must decide.
inline bool enter_fast(ConnectionImpl* impl, ConnectionImpl::CallGate& g) noexcept {
  if (!g.biased.load(std::memory_order_relaxed) || g.owner.load(std::memory_order_relaxed) != &tls_tag) return false;
  g.busy.store(1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (g.biased.load(std::memory_order_relaxed) && !impl->closing.load(std::memory_order_seq_cst)) [[likely]]
    return true;
  leave_fast(impl, g);
  return false;
}

class FastExit {
 public:
  FastExit(ConnectionImpl* c, ConnectionImpl::CallGate& g) noexcept : c_(c), g_(g) {}
  FastExit(const FastExit&) = delete;
  FastExit& operator=(const FastExit&) = delete;
  ~FastExit() {
    g_.busy.store(0, std::memory_order_release);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (!g_.biased.load(std::memory_order_relaxed) || c_->closing.load(std::memory_order_relaxed)) [[unlikely]]
      leave_fast(c_, g_);  // stores busy = 0 again, then wakes or releases
  }

 private:
  ConnectionImpl* c_;
  ConnectionImpl::CallGate& g_;
};

// The full way onto a side (see Entry::enter): out of line, so that the fast path stays small.
template <class Call>
[[gnu::noinline]] Result<void> on_side_slow(ConnectionImpl* impl, ConnectionImpl::CallGate& gate, Side side, const char* op,
                                            const os::Deadline& dl, Call& call) {
  Entry entry;
  if (auto r = entry.enter(impl, gate, dl, op); !r) return r;
  if (side == Side::send && impl->failed.load(std::memory_order_relaxed)) return fail(Errc::closed, op, "connection closed");
  return call(dl);
}

[[gnu::noinline]] std::unexpected<Error> closed_error(const char* op) { return fail(Errc::closed, op, "connection closed"); }

// The common part of every call on one side: entered (the biased fast path, else the full
// one), refused once the connection is closed (or, for sending, failed); then `call(deadline)`.
template <class Call>
[[gnu::always_inline]] inline Result<void> on_side(ConnectionImpl* impl, Side side, const char* op, Timeout timeout, Call&& call) {
  if (!impl) [[unlikely]] return not_open(op);
  if (impl->closing.load(std::memory_order_relaxed)) [[unlikely]] return closed_error(op);
  auto dl = os::Deadline::after(timeout);
  auto& gate = side == Side::send ? impl->send_gate : impl->recv_gate;
  if (!enter_fast(impl, gate)) [[unlikely]] return on_side_slow(impl, gate, side, op, dl, call);
  FastExit exit(impl, gate);
  if (side == Side::send && impl->failed.load(std::memory_order_relaxed)) [[unlikely]] return closed_error(op);
  return call(dl);
}

// Errors after which nothing more can be received: the connection is unusable.
bool fatal(const Error& e) noexcept {
  switch (e.code) {
    case Errc::would_block:
    case Errc::timeout:
    case Errc::resource_exhausted:
    case Errc::closed:  // orderly EOF: the peer may still read what we send (half-close)
      return false;
    default:
      return true;
  }
}

}  // namespace

Connection::Connection() noexcept = default;
Connection::Connection(std::unique_ptr<ConnectionImpl> impl) noexcept : impl_(std::move(impl)) {}
Connection::Connection(Connection&& o) noexcept : impl_(std::move(o.impl_)) {}
Connection& Connection::operator=(Connection&& o) noexcept {
  if (this != &o) {
    close();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
Connection::~Connection() { close(); }

namespace {

// Both send() overloads, each with the whole fast path inline (no call from one to the other).
[[gnu::always_inline]] inline Result<void> send_on(ConnectionImpl* impl, std::span<const std::byte> data,
                                                   std::span<const int> fds, Timeout timeout) {
  return on_side(impl, Side::send, "send", timeout, [&](const os::Deadline& dl) -> Result<void> {
    if (impl->send_closed) return fail(Errc::closed, "send", "this side was closed for sending (close_send)");
    return impl->send(data, fds, dl);
  });
}

}  // namespace

Result<void> Connection::send(std::span<const std::byte> data, Timeout timeout) {
  return send_on(impl_.get(), data, {}, timeout);
}
Result<void> Connection::send(std::span<const std::byte> data, std::span<const int> fds, Timeout timeout) {
  return send_on(impl_.get(), data, fds, timeout);
}
Result<void> Connection::close_send(Timeout timeout) {
  return on_side(impl_.get(), Side::send, "close_send", timeout, [&](const os::Deadline& dl) -> Result<void> {
    if (impl_->send_closed) return {};
    auto r = impl_->close_send(dl);
    if (r) impl_->send_closed = true;
    return r;
  });
}
Result<void> Connection::flush(Timeout timeout) {
  return on_side(impl_.get(), Side::send, "flush", timeout, [&](const os::Deadline& dl) -> Result<void> {
    if (impl_->send_closed) return {};
    return impl_->flush(dl);
  });
}
Result<Message> Connection::recv(Timeout timeout) {
  Message m;
  auto r = recv(m, timeout);
  if (!r) return std::unexpected(std::move(r.error()));
  return m;
}
Result<void> Connection::recv(Message& into, Timeout timeout) {
  return on_side(impl_.get(), Side::recv, "recv", timeout, [&](const os::Deadline& dl) -> Result<void> {
    auto r = impl_->recv(into, dl, nullptr);
    if (!r && fatal(r.error()) && !impl_->failed.exchange(true)) impl_->shutdown();  // the peer learns at once
    return r;
  });
}
std::optional<int> Connection::native_handle() const noexcept {
  if (!impl_ || impl_->closing.load()) return std::nullopt;
  return impl_->handles().read;
}
bool Connection::buffered() const noexcept { return impl_ && !impl_->closing.load() && impl_->buffered(); }
PeerCred Connection::peer() const noexcept { return impl_ ? impl_->peer() : PeerCred{}; }
Capabilities Connection::capabilities() const noexcept { return impl_ ? impl_->capabilities() : Capabilities{}; }
void Connection::close() noexcept {
  if (!impl_ || impl_->closing.load()) return;
  // Counted as a call itself: a call finishing meanwhile must not release the descriptors
  // while shutdown() still uses them. The last one out releases.
  impl_->users.fetch_add(1);
  if (!impl_->closing.exchange(true)) {
    // A biased caller now either sees `closing` or is seen busy (see enter). A gate nobody
    // claimed needs no barrier (a claim after our look sees `closing`).
    if (impl_->send_gate.owner.load() != nullptr || impl_->recv_gate.owner.load() != nullptr) os::heavy_barrier_private();
    impl_->shutdown();
  }
  if (impl_->users.fetch_sub(1) == 1) release_if_idle(impl_.get());
}
bool Connection::is_open() const noexcept { return impl_ && !impl_->closing.load() && !impl_->failed.load(); }

bool AccessRule::allows(const PeerCred& peer, std::span<const gid_t> groups) const noexcept {
  if (anyone) return true;
  if (!peer.verified) return false;
  if (std::find(uids.begin(), uids.end(), peer.uid) != uids.end()) return true;
  for (gid_t g : gids) {
    if (g == peer.gid || std::find(groups.begin(), groups.end(), g) != groups.end()) return true;
  }
  return false;
}

Listener::Listener() noexcept = default;
Listener::Listener(std::unique_ptr<ListenerImpl> impl) noexcept : impl_(std::move(impl)) {}
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;
Listener::~Listener() = default;

Result<Connection> Listener::accept(Timeout timeout) {
  if (!impl_) return not_open("accept");
  auto c = impl_->accept(os::Deadline::after(timeout));
  if (!c) return std::unexpected(std::move(c.error()));
  return detail::Access::wrap(std::move(*c));
}
std::optional<int> Listener::native_handle() const noexcept {
  return impl_ ? impl_->native_handle() : std::nullopt;
}
std::string Listener::url() const { return impl_ ? impl_->url() : std::string(); }
Capabilities Listener::capabilities() const noexcept { return impl_ ? impl_->capabilities() : Capabilities{}; }
ListenerStats Listener::stats() const noexcept { return impl_ ? impl_->stats() : ListenerStats{}; }
void Listener::close() noexcept {
  if (impl_) impl_->close();
}
bool Listener::is_open() const noexcept { return impl_ && impl_->is_open(); }

}  // namespace ipcx
