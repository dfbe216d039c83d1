// Shared queue: a named queue of messages in shared memory that many processes write and one
// reads (docs/shm.md, "Shared queue: many writers, one reader"): the multi-writer variant of the
// shm:// ring, for a service that collects from any number of clients without a connection each.
//
//   // the process that reads
//   auto q = ipcx::shm::QueueReader::create("logs").value();
//   std::vector<std::byte> msg;
//   q.recv(msg);                                   // the next message, from any writer
//   // any number of others
//   auto w = ipcx::shm::QueueWriter::open("logs").value();
//   w.send(ipcx::as_bytes(std::string_view("hello")));
//
// The queue is a file /dev/shm/ipcx-<uid>-<name> (mode 0600; 0660 with a group) of fixed-size slots. A writer claims
// the next position with a compare-and-swap, copies its message into that position's slot and
// marks it complete; the reader takes positions in order. Each writer's own messages arrive in
// the order it sent them; messages of different writers interleave in the order they claimed.
//
// Crashes: a writer killed half-way through a message holds up the reader only until the reader
// sees it dead (by a file lock the kernel drops at its death: within 20 ms of sleeping, at once
// when spinning); that message is skipped and counted (abandoned()). A stopped writer is alive:
// the reader waits for its message. A reader that dies leaves the messages in the queue for the
// next one (QueueReader::create takes the queue over in place). Every process that has the queue
// open holds it; the last one to close removes it when it is empty (one that holds messages
// stays for its next reader), and `ipcx shm gc` removes an empty one nobody holds.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::shm {

inline constexpr std::size_t kMaxQueueSlots = std::size_t{1} << 20;
inline constexpr std::size_t kMaxQueueMessage = std::size_t{1} << 20;
inline constexpr std::size_t kMaxQueueWriters = 4095;
inline constexpr std::size_t kMaxQueueBytes = std::size_t{1} << 30;  // the whole file

// The shape is fixed by whoever creates the queue (a reader or a writer); later openers take the
// queue as it is. The file (slots x (16 + max_message rounded up to 64) bytes, plus a header of
// 320 + 64 x max_writers) is at most kMaxQueueBytes,
// and its pages are reserved at creation (resource_exhausted when /dev/shm cannot hold them).
struct QueueOptions {
  std::size_t slots = 1024;         // messages it holds: a power of two, 2 .. kMaxQueueSlots
  std::size_t max_message = 1024;   // the largest message in bytes: 1 .. kMaxQueueMessage
  std::size_t max_writers = 64;     // writers open at once: 1 .. kMaxQueueWriters
  // How long a waiting side spins before it sleeps in futex(2): zero sleeps at once (least CPU),
  // a long spin busy-polls (least latency).
  std::chrono::microseconds spin{50};
  // When this call creates the queue: empty, mode 0600 (this user only); a group name or gid,
  // mode 0660 and that group, whose members may write to it as "~OWNER/NAME".
  std::string group;
};

namespace detail {
// The mapped queue file and its shape, as both sides use it. Closing unmaps it and leaves it
// (the last user out removes an empty queue).
struct QueueFile {
  Fd fd;
  void* base = nullptr;
  std::size_t size = 0;
  std::size_t slots = 0, max_message = 0, max_writers = 0, stride = 0, slots_offset = 0;
  std::string path;

  QueueFile() noexcept = default;
  QueueFile(QueueFile&& o) noexcept { *this = std::move(o); }
  QueueFile& operator=(QueueFile&& o) noexcept;
  QueueFile(const QueueFile&) = delete;
  QueueFile& operator=(const QueueFile&) = delete;
  ~QueueFile() { close(); }
  void close() noexcept;
};
}  // namespace detail

// The one reading side. Not thread-safe: one thread receives.
class QueueReader {
 public:
  QueueReader() noexcept = default;
  QueueReader(QueueReader&& o) noexcept;
  QueueReader& operator=(QueueReader&& o) noexcept;
  QueueReader(const QueueReader&) = delete;
  QueueReader& operator=(const QueueReader&) = delete;
  ~QueueReader();  // close()

  // Creates the queue, or opens it and becomes its reader when no live process is (the messages
  // a dead reader left are kept). Errors: already_exists (a live reader has it), invalid_argument
  // (name: 1 to 200 bytes, no NUL; options out of range), protocol (the name holds another kind
  // of object, or a queue whose header does not add up), type_mismatch (another layout
  // version), resource_exhausted, permission_denied.
  static Result<QueueReader> create(std::string_view name, QueueOptions options = {});

  // The next message into `out` (resized to its length), waiting up to `timeout`. Errors:
  // timeout (nothing within it), would_block (Timeout::zero() and nothing there), protocol (a
  // writer wrote something impossible into the shared area: the reader is unusable after it).
  Result<void> recv(std::vector<std::byte>& out, Timeout timeout = forever);

  // For an event loop: a descriptor that turns readable when a message arrives after a
  // recv(out, Timeout::zero()) said would_block. Poll it for POLLIN, then recv with a zero
  // timeout until would_block again. It may also be readable with nothing to take (a wake-up
  // for a message already taken): recv says would_block then. -1 when not open, or when the
  // socket cannot be made (no descriptor left). The first call binds it and switches the reader
  // to these wake-ups (each would_block then asks the writers for a datagram, a system call for
  // the writer that sends it); a reader that never asks for its descriptor has no socket and
  // costs the writers nothing when it polls with zero timeouts.
  int native_handle() const noexcept;

  // Messages claimed and not yet received (some may still be being written).
  std::size_t depth() const noexcept;
  std::uint64_t received() const noexcept { return received_; }
  // Messages skipped because their writer died before finishing them.
  std::uint64_t abandoned() const noexcept { return abandoned_; }
  // Writers that have the queue open now.
  std::size_t writers() const noexcept;
  std::size_t max_message() const noexcept { return q_.max_message; }
  const std::string& path() const noexcept { return q_.path; }
  // Stops reading (writers see reader_alive() false) and leaves; the last one out removes it.
  void close() noexcept;

 private:
  void publish_head() noexcept;

  detail::QueueFile q_;
  std::uint64_t head_ = 0, published_ = 0;
  std::size_t batch_ = 1;
  bool heavy_ = false;
  std::uint64_t received_ = 0, abandoned_ = 0;
  std::chrono::microseconds spin_{50};
  bool broken_ = false;
  void poke_self() const noexcept;
  mutable Fd wake_;              // the wake-up socket writers send a datagram to (native_handle)
  mutable bool polled_ = false;  // native_handle() was asked for
};

// A writing side. Any number of processes (and QueueWriter objects) at once, up to the queue's
// max_writers; one object is used by one thread at a time.
class QueueWriter {
 public:
  QueueWriter() noexcept = default;
  QueueWriter(QueueWriter&& o) noexcept;
  QueueWriter& operator=(QueueWriter&& o) noexcept;
  QueueWriter(const QueueWriter&) = delete;
  QueueWriter& operator=(const QueueWriter&) = delete;
  ~QueueWriter();  // close()

  // Opens the queue, creating it (with `options`) when there is none. Errors: resource_exhausted
  // (max_writers writers have it open), and those of QueueReader::create but already_exists.
  static Result<QueueWriter> open(std::string_view name, QueueOptions options = {});

  // Puts one message of up to max_message() bytes into the queue. When it is full, waits up to
  // `timeout` for the reader to take one. Errors: too_large, timeout, would_block
  // (Timeout::zero() and full), closed (full and no reader is alive: nobody will make room),
  // protocol (the shared area holds impossible values).
  Result<void> send(std::span<const std::byte> msg, Timeout timeout = forever);

  // A process is the queue's reader now (a stopped one counts).
  bool reader_alive() const noexcept;
  std::uint64_t sent() const noexcept { return sent_; }
  std::size_t max_message() const noexcept { return q_.max_message; }
  const std::string& path() const noexcept { return q_.path; }
  void close() noexcept;

 private:
  detail::QueueFile q_;
  std::uint32_t index_ = 0;
  std::uint64_t head_seen_ = 0;
  bool registered_ = false;
  std::uint64_t sent_ = 0;
  std::chrono::microseconds spin_{50};
  std::vector<Fd> wake_socks_;  // datagrams to a reader that polls, opened as needed

  void wake_reader(std::uint32_t how) noexcept;
};

}  // namespace ipcx::shm
