// Point-to-point connections over any mechanism, chosen by URL.
//
//   auto listener = ipcx::listen("unix:///run/user/1000/app.sock").value();
//   auto client   = ipcx::connect("unix:///run/user/1000/app.sock").value();
//   auto server   = listener.accept(1s).value();
//   client.send(ipcx::as_bytes("hello"));
//   auto msg      = server.recv(100ms);       // Errc::timeout if nothing came
//
// Schemes: pipe:, fifo:///path, unix:///path, unix:@abstract, unix+seq:///path,
// tcp://host:port, signal://PID, mq:///name, sysv://KEY, shm://name (see docs/transports.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <ipcx/error.hpp>
#include <ipcx/message.hpp>
#include <ipcx/peer.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx {

// How messages are delimited on byte-stream transports (pipe, fifo, unix, tcp).
enum class Framing {
  frames,  // the ipcx frame format of docs/wire.md (default; any bytes, fds, boundaries kept)
  lines,   // newline-terminated text, for interop with shell tools; no fd passing
};

// Who may connect to a listener. Checked at accept() against the credentials the kernel
// recorded when the peer connected (SO_PEERCRED, plus SO_PEERGROUPS for supplementary
// groups); a refused peer is closed at once (with a goodbye frame saying why) and counted in
// Listener::stats().refused. Only transports with kernel-verified peers can enforce a rule.
struct AccessRule {
  bool anyone = false;      // no check: whoever can reach the address
  std::vector<uid_t> uids;  // peers running as one of these users
  std::vector<gid_t> gids;  // peers whose primary or a supplementary group is one of these

  static AccessRule everyone() { return {.anyone = true}; }
  static AccessRule user(uid_t uid) { return {.uids = {uid}}; }
  // True when `peer` (with its supplementary `groups`) may connect.
  bool allows(const PeerCred& peer, std::span<const gid_t> groups = {}) const noexcept;
};

struct Options {
  std::size_t max_message = std::size_t{64} << 20;  // larger frames are refused before allocation
  Framing framing = Framing::frames;
  unsigned mode = 0600;            // permissions of created sockets/FIFOs, whatever the umask
  int backlog = 128;               // listen(2) backlog for socket listeners
  // Listeners: who may connect. Unset: the transport's default — unix:@name (abstract, no
  // file permissions) admits only this process's effective uid; path sockets and FIFOs admit
  // whoever `mode` lets open them; tcp admits anyone who can reach the address.
  std::optional<AccessRule> access;
};

// What a transport can do, queried at run time instead of discovered by failing.
struct Capabilities {
  bool fd_passing = false;     // send(data, fds) carries descriptors (SCM_RIGHTS)
  bool records = false;        // the kernel keeps message boundaries (no stream framing)
  bool verified_peer = false;  // peer() comes from the kernel, not from the peer's word
  bool pollable = false;       // native_handle() has a descriptor for poll/epoll
  bool concurrent = true;      // listeners: several connections at once (false: one conversation at a time)
  std::size_t fixed_size = 0;  // every message has exactly this many bytes (signal: 4); 0: any size
  bool remote = false;         // listeners: reachable from other machines (tcp on a non-loopback address)
  bool goodbye = false;        // the peer can say why it closes (goodbye frames: frame-mode sockets)
};

class ConnectionImpl;
class ListenerImpl;
namespace detail {
struct Access;
}

// A bidirectional message channel. Move-only; closed on destruction.
//
// Threading: send()/try_send()/flush() may be called from any number of threads at once —
// each message goes out whole, never interleaved with another thread's. recv()/try_recv()
// may be called from any thread too (calls are serialised: each message goes to one caller),
// concurrently with senders. close() may be called from any thread at any time: it never
// blocks, later calls fail with Errc::closed, calls blocked on a socket in other threads
// return Errc::closed at once (pipe and FIFO calls return when their peer acts or their
// deadline passes), and the descriptors are released when the last call in progress returns,
// so a descriptor number is never reused under a running call. Waiting for another thread's
// call on the same connection counts against the caller's timeout. Destroying a Connection
// while another thread still uses it is a bug, as for any object.
class Connection {
 public:
  Connection() noexcept;
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  ~Connection();

  // Sends one message. Blocks up to `timeout` for buffer space. The caller keeps ownership of
  // `data` and `fds` (fds are duplicated into the peer by the kernel). A frame whose first
  // byte has been written is always completed: if the deadline passes part-way, the rest is
  // kept and written by the next send() or flush(), and the call succeeds.
  Result<void> send(std::span<const std::byte> data, Timeout timeout = forever);
  Result<void> send(std::span<const std::byte> data, std::span<const int> fds,
                    Timeout timeout = forever);
  Result<void> try_send(std::span<const std::byte> data) { return send(data, Timeout::zero()); }
  // Writes any remainder kept by an earlier send.
  Result<void> flush(Timeout timeout = forever);
  // Tells the peer this side will send nothing more (after writing what is queued, within
  // `timeout`); receiving goes on, so the peer can still answer, or say why it closes.
  // Sockets: shutdown(SHUT_WR), the peer reads EOF. Pipes and FIFOs: closes this end's write
  // descriptor (the peer reads EOF once no other copy is open). Later sends: Errc::closed.
  Result<void> close_send(Timeout timeout = forever);

  // Receives one whole message. Blocks up to `timeout`. Errc::closed on orderly EOF (or when
  // the peer said goodbye, with its reason in the detail), Errc::protocol on malformed input.
  // After any error other than timeout/would_block the connection is unusable (is_open() is
  // false, later calls fail with Errc::closed); close it.
  Result<Message> recv(Timeout timeout = forever);
  // Same, into an existing message whose buffer capacity is reused.
  Result<void> recv(Message& into, Timeout timeout = forever);
  Result<Message> try_recv() { return recv(Timeout::zero()); }

  // A descriptor that polls readable when recv() can make progress, or nothing when the
  // transport has none (capabilities().pollable). After readiness, call try_recv() until it
  // returns Errc::would_block: several messages may arrive in one read.
  std::optional<int> native_handle() const noexcept;
  // True when a message is already decoded in user space (recv will not need the kernel).
  // Ask from the receiving thread.
  bool buffered() const noexcept;
  PeerCred peer() const noexcept;
  Capabilities capabilities() const noexcept;
  // Shuts the connection down without blocking; pending unsent bytes are dropped.
  void close() noexcept;
  // False once closed, or after an error made the connection unusable.
  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }

 private:
  friend struct detail::Access;
  explicit Connection(std::unique_ptr<ConnectionImpl> impl) noexcept;
  std::unique_ptr<ConnectionImpl> impl_;
};

struct ListenerStats {
  std::uint64_t accepted = 0;  // connections handed out by accept()
  std::uint64_t refused = 0;   // peers closed at accept because the access rule refused them
};

// Accepts connections at an address. Removes the filesystem objects it created on close.
// One thread at a time (close() included).
class Listener {
 public:
  Listener() noexcept;
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;
  ~Listener();

  // The next connection. Peers the access rule refuses are closed and counted, never returned.
  // Errc::closed once a single-peer listener (pipe:, signal://self) has handed out its peer.
  Result<Connection> accept(Timeout timeout = forever);
  Result<Connection> try_accept() { return accept(Timeout::zero()); }
  // Polls readable when accept() would not block; nothing when the transport has no such
  // descriptor right now (a FIFO during a conversation, signal://self).
  std::optional<int> native_handle() const noexcept;
  // The bound address, with anything the kernel chose filled in (e.g. tcp port 0).
  std::string url() const;
  Capabilities capabilities() const noexcept;
  ListenerStats stats() const noexcept;
  void close() noexcept;
  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }

 private:
  friend struct detail::Access;
  explicit Listener(std::unique_ptr<ListenerImpl> impl) noexcept;
  std::unique_ptr<ListenerImpl> impl_;
};

// Starts listening at `url`. Stale socket files left by a dead server are replaced; a live
// server's address is never taken (Errc::address_in_use).
Result<Listener> listen(std::string_view url, const Options& options = {});
// Takes over a Unix stream socket that is already bound and listening (one passed by systemd
// socket activation, say). The listener owns `fd` from then on (closed on error too) and never
// removes the socket file: whoever bound it does. Errors: invalid_argument when `fd` is not a
// listening AF_UNIX SOCK_STREAM socket.
Result<Listener> adopt_listener(int fd, const Options& options = {});
// Connects to `url`, waiting up to `timeout` for the connection to be established.
Result<Connection> connect(std::string_view url, const Options& options = {},
                           Timeout timeout = std::chrono::seconds(5));

// Two connected endpoints over a pair of anonymous pipes (for threads or fork()).
Result<std::pair<Connection, Connection>> pipe_pair(const Options& options = {});

}  // namespace ipcx
