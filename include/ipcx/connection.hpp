// Point-to-point connections over any mechanism, chosen by URL.
//
//   auto listener = ipcx::listen("unix:///run/user/1000/app.sock").value();
//   auto client   = ipcx::connect("unix:///run/user/1000/app.sock").value();
//   auto server   = listener.accept(1s).value();
//   client.send(ipcx::as_bytes("hello"));
//   auto msg      = server.recv(100ms);       // Errc::timeout if nothing came
//
// Schemes: pipe:, fifo:///path, unix:///path, unix:@abstract, unix+seq:///path,
// tcp://host:port, signal://PID (see docs/transports.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <sys/types.h>

#include <ipcx/error.hpp>
#include <ipcx/message.hpp>

namespace ipcx {

// How long an operation may block. `forever` blocks without limit; zero never blocks.
using Timeout = std::chrono::nanoseconds;
inline constexpr Timeout forever = Timeout::max();

// How messages are delimited on byte-stream transports (pipe, fifo, unix, tcp).
enum class Framing {
  frames,  // the ipcx frame format of docs/wire.md (default; any bytes, fds, boundaries kept)
  lines,   // newline-terminated text, for interop with shell tools; no fd passing
};

struct Options {
  std::size_t max_message = std::size_t{64} << 20;  // larger frames are refused before allocation
  Framing framing = Framing::frames;
  unsigned mode = 0600;            // permissions of created sockets/FIFOs, whatever the umask
  int backlog = 128;               // listen(2) backlog for socket listeners
};

// Who is on the other end. `verified` is true when the kernel supplied it (SO_PEERCRED).
struct PeerCred {
  pid_t pid = -1;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  bool verified = false;
};

class ConnectionImpl;
class ListenerImpl;

// A bidirectional message channel. Move-only; closing is implicit on destruction.
// Not thread-safe: one sender thread and one receiver thread at most, or external locking.
class Connection {
 public:
  Connection() noexcept;
  explicit Connection(std::unique_ptr<ConnectionImpl> impl) noexcept;
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

  // Receives one whole message. Blocks up to `timeout`. Errc::closed on orderly EOF,
  // Errc::protocol on malformed input (the connection is then unusable).
  Result<Message> recv(Timeout timeout = forever);
  // Same, into an existing message whose buffer capacity is reused.
  Result<void> recv(Message& into, Timeout timeout = forever);
  Result<Message> try_recv() { return recv(Timeout::zero()); }

  // A descriptor that polls readable when recv() can make progress. After readiness, call
  // try_recv() until it returns Errc::would_block: several messages may arrive in one read.
  int native_handle() const noexcept;
  // True when a message is already decoded in user space (recv will not need the kernel).
  bool buffered() const noexcept;
  PeerCred peer() const noexcept;
  // Closes at once (never blocks); pending unsent bytes are dropped.
  void close() noexcept;
  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }

 private:
  std::unique_ptr<ConnectionImpl> impl_;
};

// Accepts connections at an address. Removes the filesystem objects it created on close.
class Listener {
 public:
  Listener() noexcept;
  explicit Listener(std::unique_ptr<ListenerImpl> impl) noexcept;
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;
  ~Listener();

  Result<Connection> accept(Timeout timeout = forever);
  Result<Connection> try_accept() { return accept(Timeout::zero()); }
  // Polls readable when accept() would not block.
  int native_handle() const noexcept;
  // The bound address, with anything the kernel chose filled in (e.g. tcp port 0).
  std::string url() const;
  void close() noexcept;
  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }

 private:
  std::unique_ptr<ListenerImpl> impl_;
};

// Starts listening at `url`. Stale socket files left by a dead server are replaced; a live
// server's address is never taken (Errc::address_in_use).
Result<Listener> listen(std::string_view url, const Options& options = {});
// Connects to `url`, waiting up to `timeout` for the connection to be established.
Result<Connection> connect(std::string_view url, const Options& options = {},
                           Timeout timeout = std::chrono::seconds(5));

// Two connected endpoints over a pair of anonymous pipes (for threads or fork()).
Result<std::pair<Connection, Connection>> pipe_pair(const Options& options = {});

}  // namespace ipcx
