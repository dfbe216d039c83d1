// System V message queues (msgget/msgsnd/msgrcv) with their message types: selective receive,
// capacity in bytes, the kernel's limits reported by name. docs/sysv.md states every rule.
//
//   auto q = ipcx::sysv::Queue::create("sysv://0x1234").value();      // mode 0600, exclusive
//   q.send(7, ipcx::as_bytes("job"));                                  // type 7
//   auto r = q.recv(1s, 7);                                            // only type 7
//   auto any = q.recv(1s);                                             // the oldest, any type
//   auto urgent = q.recv(1s, -5);                                      // lowest type <= 5 first
//   ipcx::sysv::Queue::remove("sysv://0x1234");
//
// A System V queue lives until removed (or reboot), whatever happens to the processes using it.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include <ipcx/error.hpp>
#include <ipcx/message.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::sysv {

// A queue's key. Written "sysv://0x1234" (hex), "sysv://4660" (decimal), both 1..0xffffffff,
// or "sysv:///path?proj=N" (ftok of an existing path, N in 1..255); the "sysv://" prefix may
// be left out. 0 (IPC_PRIVATE) is refused: a private queue has no name anyone could open.
struct Key {
  key_t value = 0;
  // "0x00001234", the form ipcs prints.
  std::string str() const;
};
// Errc::invalid_argument naming the value and the allowed range or form; Errc::not_found for
// an ftok path that does not exist.
Result<Key> parse_key(std::string_view text);

// The kernel's limits, read from /proc/sys/kernel (sysctl kernel.msgmax / msgmnb / msgmni).
struct Limits {
  std::size_t max_message;      // msgmax: bytes in one message
  std::size_t max_queue_bytes;  // msgmnb: a new queue's capacity, and the most a non-root user may set
  std::size_t max_queues;       // msgmni: queues on the whole system
};
Result<Limits> limits();

struct CreateOptions {
  unsigned mode = 0600;    // permission bits (0777 at most), applied whatever the umask
  bool exclusive = true;   // fail with already_exists when a queue has the key; false: open it
};

struct Attributes {
  std::size_t messages = 0;        // msg_qnum
  std::size_t bytes = 0;           // bytes of message text held now (__msg_cbytes)
  std::size_t capacity_bytes = 0;  // msg_qbytes: the most it holds (also bounds the message count)
  pid_t last_send_pid = 0;         // msg_lspid (0: none yet)
  pid_t last_recv_pid = 0;         // msg_lrpid
  uid_t uid = 0;                   // owner
  gid_t gid = 0;
  uid_t creator_uid = 0;
  unsigned mode = 0;               // permission bits
};

struct Received {
  Message message;  // the text (a System V message carries no descriptors)
  long type = 0;    // the type it was sent with
};

// One open queue. Move-only; destroying it does not remove the queue (remove() does).
// Thread-safe: each call is one kernel operation, and the kernel serialises them.
class Queue {
 public:
  // Creates the queue at `key` with options.mode (exclusive: already_exists when one is there).
  static Result<Queue> create(std::string_view key, const CreateOptions& options = {});
  // Opens an existing queue: not_found when none, permission_denied when its mode excludes us.
  static Result<Queue> open(std::string_view key);
  // Removes the queue at `key` (IPC_RMID): every message is discarded, blocked callers get closed.
  static Result<void> remove(std::string_view key);

  Queue() noexcept = default;
  Queue(Queue&& o) noexcept;
  Queue& operator=(Queue&& o) noexcept;
  ~Queue() = default;

  // Sends one message of `type` (>= 1). Blocks up to `timeout` while the queue is full.
  // Nothing is enqueued on any error. Errors: invalid_argument (type < 1), too_large (larger
  // than msgmax or than the queue's capacity: it could never fit), would_block / timeout
  // (full), closed (the queue was removed), permission_denied.
  Result<void> send(long type, std::span<const std::byte> data, Timeout timeout = forever);
  // Receives one message. type 0: the oldest of any type; > 0: the oldest of exactly that
  // type; < 0: the oldest of the lowest type <= -type. Blocks up to `timeout`.
  // Errors: would_block / timeout, closed (removed), permission_denied.
  Result<Received> recv(Timeout timeout = forever, long type = 0);
  Result<void> recv(Received& into, Timeout timeout = forever, long type = 0);

  Result<Attributes> attributes() const;
  // Sets msg_qbytes. Above kernel.msgmnb only root (CAP_SYS_RESOURCE) may: permission_denied
  // naming the limit otherwise. Only the owner, the creator or root may change it at all.
  Result<void> set_capacity_bytes(std::size_t bytes);

  Key key() const noexcept { return key_; }
  int id() const noexcept { return id_; }
  bool valid() const noexcept { return id_ >= 0; }

 private:
  Queue(Key key, int id) noexcept : key_(key), id_(id) {}
  Key key_{};
  int id_ = -1;
};

}  // namespace ipcx::sysv
