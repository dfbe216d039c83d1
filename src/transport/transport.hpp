// The interface every transport implements, and the scheme registry.
//
// A transport provides a ConnectionImpl (one conversation) and, where it can listen, a
// ListenerImpl. The public Connection/Listener wrap them; the server engine drives them
// directly. Per operation, below: what it may block on, its errors, and its threading rule.
// Connection (transport/connection.cpp) serialises the calls for the implementation: at most
// one send-side call (send/enqueue/flush) and one receive-side call (recv/trim) run at a time,
// possibly concurrently with each other, and release() runs once, after every other call has
// returned. An implementation therefore keeps send-side and receive-side state apart.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <ipcx/connection.hpp>

#include "os/sys.hpp"
#include "transport/url.hpp"
#include "wire/budget.hpp"
#include "wire/frame.hpp"

namespace ipcx {

// What the receive side may read in one call (the server's fairness budget).
struct ReadBudget {
  std::size_t bytes;  // decremented by every byte read from the kernel
};

// The descriptors to wait on for progress; either may be absent (no descriptor: poll by time).
struct Handles {
  std::optional<int> read;   // readable: recv can progress
  std::optional<int> write;  // writable: flush can progress
};

class ConnectionImpl {
 public:
  virtual ~ConnectionImpl() = default;

  // ---- send side ----------------------------------------------------------------------------
  // Sends one message, blocking up to `deadline` for buffer space (Deadline::now(): never).
  // Queued bytes go first. If the deadline passes after the message's first byte went out, the
  // rest stays queued and the call succeeds. Errors: too_large, not_supported (fds on a
  // transport without fd passing, a read-only end), invalid_argument, would_block/timeout
  // (nothing of this message was sent), closed (peer gone), system.
  virtual Result<void> send(std::span<const std::byte> data, std::span<const int> fds,
                            const os::Deadline& deadline) = 0;
  // Appends one message to the outgoing queue without writing (the fds are duplicated). Never
  // blocks. Errors as send's validation, plus resource_exhausted (memory budget, EMFILE).
  virtual Result<void> enqueue(std::span<const std::byte> data, std::span<const int> fds) = 0;
  // Writes queued bytes until none is left, blocking up to `deadline`. Deadline::now() writes
  // what the kernel takes and returns would_block if bytes remain.
  virtual Result<void> flush(const os::Deadline& deadline) = 0;
  // Bytes waiting in the outgoing queue.
  virtual std::size_t queued() const noexcept = 0;
  // Writes what is queued (within the deadline), then ends the sending direction (see
  // Connection::close_send). Default: not supported.
  virtual Result<void> close_send(const os::Deadline&) {
    return fail(Errc::not_supported, "close_send", "this transport cannot close one direction");
  }
  // Says why we are closing: a goodbye frame (docs/wire.md) after any queued output, written
  // as far as the kernel takes it now. Best effort, never blocks; sockets only (not line
  // framing, signals, or pipes and FIFOs, whose far end may be a terminal or a file).
  virtual void goodbye(wire::Goodbye, std::string_view) noexcept {}

  // ---- receive side -------------------------------------------------------------------------
  // Receives one whole message, blocking up to `deadline`. With a budget, reads at most
  // budget->bytes from the kernel and returns would_block when that is used up first.
  // Errors: would_block, timeout, closed (EOF, or the peer's goodbye), protocol (malformed
  // input: the receive side is then failed for good), too_large, resource_exhausted (the memory
  // budget refused the buffer growth: retry later), permission_denied / connection_refused
  // (a goodbye saying so), system.
  virtual Result<void> recv(Message& into, const os::Deadline& deadline, ReadBudget* budget) = 0;
  // A whole message is decoded in user space already.
  virtual bool buffered() const noexcept { return false; }
  // Part of a message has arrived (a frame deadline applies).
  virtual bool mid_message() const noexcept { return false; }
  // Gives back receive/send buffer memory not needed for the bytes held.
  virtual void trim() noexcept {}
  // Charges every buffer of this connection to `budget` from now on.
  virtual void set_budget(std::shared_ptr<wire::MemoryBudget>) noexcept {}
  // Lowers the largest message accepted from the peer (never raises it): a server refuses at
  // the header a message its memory limit could never hold.
  virtual void limit_message(std::size_t) noexcept {}

  // ---- any thread ---------------------------------------------------------------------------
  virtual Handles handles() const noexcept = 0;
  virtual PeerCred peer() const noexcept { return {}; }
  virtual Capabilities capabilities() const noexcept = 0;
  // Wakes calls blocked in other threads where the mechanism allows it (sockets: shutdown(2)).
  // Never blocks, never closes a descriptor.
  virtual void shutdown() noexcept {}
  // Closes the descriptors. Called once, when no other call is running.
  virtual void release() noexcept = 0;

  // ---- state the wrappers share (transport/connection.cpp) ----------------------------------
  // One per side: who may call now. The first thread to call on a side has it to itself with
  // no atomic read-modify-write (a hot loop over a shared-memory ring would otherwise stall on
  // every call, each locked instruction waiting for the previous message's stores); a second
  // thread takes that away for good, and from then on the side's mutex serialises calls.
  struct CallGate {
    std::timed_mutex mu;                       // every call once the gate is not biased
    std::atomic<std::uint32_t> busy{0};        // the biased thread is inside a call (a futex word)
    std::atomic<bool> biased{true};            // the fast path may be taken
    std::atomic<const void*> owner{nullptr};   // the thread it is biased to, once one called
    std::atomic<bool> quiesced{false};         // no fast call can be in progress any more
  };
  CallGate send_gate, recv_gate;
  std::atomic<int> users{0};  // calls in progress on the mutex path (and close() itself)
  std::atomic<bool> closing{false};
  std::atomic<bool> released{false};
  std::atomic<bool> failed{false};  // the receive side hit a fatal error: unusable
  bool send_closed = false;          // close_send() done (send side lock held)
};

class ListenerImpl {
 public:
  virtual ~ListenerImpl() = default;
  // The next connection. Errors: would_block, timeout, closed (listener closed, or a
  // single-peer listener already handed out its peer), resource_exhausted (EMFILE/ENFILE:
  // the pending connection stays queued in the kernel), system.
  virtual Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline& deadline) = 0;
  virtual std::optional<int> native_handle() const noexcept = 0;
  virtual std::string url() const = 0;
  virtual Capabilities capabilities() const noexcept = 0;
  virtual ListenerStats stats() const noexcept { return {}; }
  virtual void close() noexcept = 0;
  virtual bool is_open() const noexcept = 0;
  // Told of every peer the access rule turns away, with its credentials (the server engine
  // reports them). Listeners without access rules never call it.
  void observe_refusals(std::function<void(const PeerCred&)> f) { on_refused_ = std::move(f); }

 protected:
  std::function<void(const PeerCred&)> on_refused_;
};

namespace detail {
// How the library (and only it) turns implementations into public objects and back.
struct Access {
  static Connection wrap(std::unique_ptr<ConnectionImpl> impl) noexcept { return Connection(std::move(impl)); }
  static Listener wrap(std::unique_ptr<ListenerImpl> impl) noexcept { return Listener(std::move(impl)); }
  static ConnectionImpl* impl(const Connection& c) noexcept { return c.impl_.get(); }
  static ListenerImpl* impl(const Listener& l) noexcept { return l.impl_.get(); }
};
}  // namespace detail

namespace transport {

struct Scheme {
  std::string name;  // "unix", "tcp", ...
  std::function<Result<std::unique_ptr<ListenerImpl>>(const Url&, const Options&)> listen;
  std::function<Result<std::unique_ptr<ConnectionImpl>>(const Url&, const Options&,
                                                        const os::Deadline&)>
      connect;
};

// Adds or replaces the transport for a scheme (thread-safe).
void register_scheme(Scheme scheme);
// The transport for a scheme, or nullptr. The result stays valid whatever is registered later.
std::shared_ptr<const Scheme> find_scheme(std::string_view name);

// Built-in transports (each defined in its own folder).
Scheme pipe_scheme();
Scheme fifo_scheme();
Scheme unix_scheme();
Scheme unix_seq_scheme();
Scheme tcp_scheme();
Scheme signal_scheme();
Scheme mq_scheme();
Scheme sysv_scheme();
Scheme shm_scheme();

}  // namespace transport
}  // namespace ipcx
