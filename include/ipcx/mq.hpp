// POSIX message queues: named kernel queues of whole messages with priorities, and mailboxes
// built on them (docs/mq.md).
//
//   auto q = ipcx::mq::Queue::create("jobs", {.capacity = 10, .message_size = 1024}).value();
//   q.send(ipcx::as_bytes("build"), /*priority=*/5, 1s);
//   auto got = q.recv(1s);               // highest priority first, FIFO within a priority
//
//   auto box = ipcx::Mailbox::open("inbox").value();   // created if missing, outlives both sides
//   box.post(ipcx::as_bytes("hello"));
//   auto m = box.take(1s);
//
// Names are the caller's: "jobs" is the kernel queue /ipcx-<euid>-jobs (see /dev/mqueue when
// it is mounted), so users never collide. The mq:///name transport (connection.hpp) is a
// different thing: its URL names a kernel queue directly.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/message.hpp>
#include <ipcx/semantics.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::mq {

// Priorities are 0 .. kMaxPriority; higher ones are received first.
inline constexpr unsigned kMaxPriority = 32767;
// The longest user name: the kernel name "/ipcx-<uid>-NAME" must fit NAME_MAX (255) bytes
// after its slash, and a uid takes up to 10 digits.
inline constexpr std::size_t kMaxName = 255 - 16;

struct CreateOptions {
  long capacity = 10;         // messages the queue holds (mq_maxmsg); limit: fs.mqueue.msg_max
  long message_size = 8192;   // the largest message (mq_msgsize); limit: fs.mqueue.msgsize_max
  unsigned mode = 0600;       // permissions, whatever the umask
  bool exclusive = false;     // fail with already_exists instead of opening an existing queue
};

struct OpenOptions {
  // The user whose namespace the name is in (default: the caller's effective uid). The queue
  // must belong to that user: one created there by someone else is refused (permission_denied).
  std::optional<uid_t> owner;
  bool read = true;
  bool write = true;
};

struct Attributes {
  long capacity = 0;      // mq_maxmsg
  long message_size = 0;  // mq_msgsize
  long messages = 0;      // messages queued now (mq_curmsgs)
};

struct Received {
  Message message;
  unsigned priority = 0;
};

// One open descriptor of a named queue. Move-only; closes on destruction (the queue stays
// until removed). Thread-safe: the kernel serialises sends and receives on one queue.
class Queue {
 public:
  Queue() noexcept = default;
  Queue(Queue&&) noexcept;
  Queue& operator=(Queue&&) noexcept;
  ~Queue();

  // Creates the queue `name` (or opens it if it exists and !exclusive: then its attributes and
  // mode are the existing ones). Errors: invalid_argument (name, zero or negative sizes),
  // resource_exhausted (a limit: the detail names it, its value and how to raise it),
  // already_exists, permission_denied (the queue exists and belongs to someone else).
  static Result<Queue> create(std::string_view name, const CreateOptions& options = {});
  // Opens an existing queue. Errors: not_found, permission_denied, invalid_argument.
  static Result<Queue> open(std::string_view name, const OpenOptions& options = {});
  // Unlinks the caller's queue `name`; open descriptors keep working until closed.
  static Result<void> remove(std::string_view name);
  // The kernel name of `name` for user `owner` (default: the caller): "/ipcx-<uid>-NAME".
  static Result<std::string> kernel_name(std::string_view name, std::optional<uid_t> owner = std::nullopt);

  // Sends one message, waiting up to `timeout` for room. Errors: too_large (more than the
  // queue's message size, named in the detail; nothing is queued), invalid_argument (priority
  // above kMaxPriority), would_block (try_send, full), timeout, not_supported (opened
  // read-only), closed.
  Result<void> send(std::span<const std::byte> data, unsigned priority = 0, Timeout timeout = forever);
  Result<void> try_send(std::span<const std::byte> data, unsigned priority = 0) {
    return send(data, priority, Timeout::zero());
  }
  // Receives the oldest message of the highest priority, waiting up to `timeout`.
  Result<Received> recv(Timeout timeout = forever);
  Result<Received> try_recv() { return recv(Timeout::zero()); }
  // Same, into an existing message whose buffer is reused; returns the priority.
  Result<unsigned> recv(Message& into, Timeout timeout = forever);

  Result<Attributes> attributes() const;
  // The mqd_t: a descriptor on Linux, readable when a message waits, writable when there is room.
  int native_handle() const noexcept { return fd_; }
  // The caller's name and the kernel's.
  const std::string& name() const noexcept { return name_; }
  const std::string& kernel_name() const noexcept { return kernel_; }
  bool is_open() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return is_open(); }
  void close() noexcept;

 private:
  int fd_ = -1;
  long msgsize_ = 0;
  std::string name_, kernel_;
};

// The kernel's limits for a process without CAP_SYS_RESOURCE, read from /proc/sys/fs/mqueue
// (sysctl fs.mqueue.msg_max / msgsize_max); -1 where the file cannot be read.
struct Limits {
  long max_capacity;      // msg_max: messages in one queue
  long max_message_size;  // msgsize_max: bytes in one message
};
Limits limits() noexcept;

// The caller's queues (names without the /ipcx-<uid>- prefix), read from /dev/mqueue.
// Errors: not_supported when the mqueue filesystem is not mounted there (the detail says how).
Result<std::vector<std::string>> list();

}  // namespace ipcx::mq

namespace ipcx {

struct MailboxOptions {
  long capacity = 10;        // used when the mailbox is created
  long message_size = 8192;  // used when the mailbox is created
  unsigned mode = 0600;      // used when the mailbox is created
  Overflow overflow = Overflow::block;  // what post() does when the mailbox is full
};

// A named mailbox that outlives its users: posts wait in the kernel queue until someone takes
// them, in order (FIFO: every post has the same priority). Counters are this object's: posts
// and takes of other processes are not in them (queued is the queue's, so counts everyone's).
// Thread-safe. Not a replacement for PolicyQueue: the messages are held by the kernel, so the
// overflow policy is applied at the kernel queue.
class Mailbox {
 public:
  // Opens `name`, creating it if missing.
  static Result<Mailbox> open(std::string_view name, const MailboxOptions& options = {});
  static Result<void> remove(std::string_view name) { return mq::Queue::remove(name); }

  // Posts one message. When the mailbox is full, options.overflow decides: block waits up to
  // `timeout` (then Errc::timeout); fail returns would_block (dropped.refused); drop_newest
  // discards this message and succeeds (dropped.newest); drop_oldest takes and discards the
  // oldest message to make room (dropped.oldest; see docs/mq.md for the race with takers).
  // Errors: too_large (nothing posted, nothing counted), and the queue's.
  Result<void> post(std::span<const std::byte> data, Timeout timeout = forever);
  Result<Message> take(Timeout timeout = forever);
  Result<Message> try_take() { return take(Timeout::zero()); }

  // sent/received/dropped by this process; queued = messages in the mailbox now.
  Counters stats() const;
  Result<mq::Attributes> attributes() const { return queue_.attributes(); }
  int native_handle() const noexcept { return queue_.native_handle(); }
  const mq::Queue& queue() const noexcept { return queue_; }

 private:
  Mailbox(mq::Queue q, Overflow o) : queue_(std::move(q)), overflow_(o), mu_(std::make_unique<std::mutex>()) {}
  mq::Queue queue_;
  Overflow overflow_ = Overflow::block;
  std::unique_ptr<std::mutex> mu_;  // guards counters_ (post and take may run in several threads)
  Counters counters_;
};

}  // namespace ipcx
