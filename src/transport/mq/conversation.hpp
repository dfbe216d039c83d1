// One mq:// conversation: a pair of POSIX message queues, one read and one written (docs/mq.md,
// "Protocol" and "End of conversation and peer death").
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include <ipcx/connection.hpp>

#include "transport/mq/mqueue.hpp"
#include "transport/transport.hpp"

namespace ipcx::transport::mq {

// Priority 0 carries only the end marker (a zero-length message); data travels at 1 + the
// URL's priority; the top priority stays reserved.
inline constexpr unsigned kEofPriority = 0;
inline constexpr unsigned kMaxUserPriority = mqueue::kPrioMax - 3;

// Presence on a conversation queue: open-file-description locks (F_OFD_SETLK), which the kernel
// drops when the side closes the queue or dies. The reader holds a read lock on byte 0, the
// writer a write lock on byte 1: they never conflict with each other, and either side can ask
// about the other with F_OFD_GETLK, which takes nothing (so asking never races with locking).
inline constexpr off_t kReaderByte = 0, kWriterByte = 1;
bool ofd_lock(int fd, short type, off_t byte);

struct ConversationParts {
  Fd rx, tx;         // the queue we read, the queue we write
  long rx_size = 0;  // their message sizes
  long tx_size = 0;
  unsigned priority = 1;
  pid_t peer_pid = -1;
  uid_t peer_uid = static_cast<uid_t>(-1);
  std::string unlink_on_release[2];  // the client's own queues, in case nobody ever accepted
  std::string tx_name;               // client: the queue we write, named until accepted
  std::string rx_name;               // client: the queue we read, named until accepted
  Options options;
};

// Takes the queues' locks and builds the connection.
Result<std::unique_ptr<ConnectionImpl>> make_conversation(ConversationParts parts);

}  // namespace ipcx::transport::mq
