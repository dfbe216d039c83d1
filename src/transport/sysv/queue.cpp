// ipcx::sysv::Queue — see include/ipcx/sysv.hpp and docs/sysv.md.
#include <sys/ipc.h>
#include <sys/msg.h>
#include <unistd.h>

#include <climits>

#include <fmt/format.h>

#include "transport/sysv/msg.hpp"

namespace ipcx::sysv {

namespace {

// "queue 0x00001234" for error details, without allocating: every send and recv passes it.
struct QueueName {
  explicit QueueName(const Key& k) noexcept {
    size = fmt::format_to_n(text, sizeof text, "queue 0x{:08x}", static_cast<std::uint32_t>(k.value)).size;
  }
  std::string_view view() const noexcept { return {text, std::min(size, sizeof text)}; }
  char text[24];
  std::size_t size;
};

}  // namespace

Result<Queue> Queue::create(std::string_view text, const CreateOptions& options) {
  auto key = parse_key(text);
  if (!key) return std::unexpected(key.error());
  if (options.mode > 0777)
    return fail(Errc::invalid_argument, "sysv create", fmt::format("mode {:o} outside 0..0777", options.mode));
  const int flags = IPC_CREAT | (options.exclusive ? IPC_EXCL : 0) | static_cast<int>(options.mode);
  int id = os::retry([&] { return ::msgget(key->value, flags); });
  if (id == -1) return detail::get_error(errno, "sysv create", *key);
  return Queue(*key, id);
}

Result<Queue> Queue::open(std::string_view text) {
  auto key = parse_key(text);
  if (!key) return std::unexpected(key.error());
  int id = os::retry([&] { return ::msgget(key->value, 0); });
  if (id == -1) return detail::get_error(errno, "sysv open", *key);
  // msgget checks no permission for an existing queue when asked for none: ask the kernel now,
  // so an excluded user learns it here rather than at the first send.
  msqid_ds ds{};
  if (::msgctl(id, IPC_STAT, &ds) == -1) return detail::get_error(errno, "sysv open", *key);
  return Queue(*key, id);
}

Result<void> Queue::remove(std::string_view text) {
  auto key = parse_key(text);
  if (!key) return std::unexpected(key.error());
  int id = os::retry([&] { return ::msgget(key->value, 0); });
  if (id == -1) return detail::get_error(errno, "sysv remove", *key);
  if (::msgctl(id, IPC_RMID, nullptr) == -1) {
    if (errno == EPERM)
      return std::unexpected(Error{Errc::permission_denied, EPERM, "sysv remove",
                                   fmt::format("queue {}: only its owner, creator or root may remove it", key->str())});
    return detail::queue_error(errno, "sysv remove", key->str());
  }
  return {};
}

Queue::Queue(Queue&& o) noexcept : key_(o.key_), id_(std::exchange(o.id_, -1)) {}
Queue& Queue::operator=(Queue&& o) noexcept {
  key_ = o.key_;
  id_ = std::exchange(o.id_, -1);
  return *this;
}

Result<void> Queue::send(long type, std::span<const std::byte> data, Timeout timeout) {
  if (id_ < 0) return fail(Errc::closed, "sysv send", "no queue");
  if (type < 1) return fail(Errc::invalid_argument, "sysv send", fmt::format("type {} (a message type is >= 1)", type));
  // Above kernel.msgmax or the queue's capacity: too_large, named (detail::send).
  return detail::send(id_, type, {}, data, os::Deadline::after(timeout), "sysv send", QueueName(key_).view());
}

Result<void> Queue::recv(Received& into, Timeout timeout, long type) {
  if (id_ < 0) return fail(Errc::closed, "sysv recv", "no queue");
  into.message.fds.clear();
  auto t = detail::recv(id_, type, into.message.data, os::Deadline::after(timeout), "sysv recv",
                        QueueName(key_).view());
  if (!t) return std::unexpected(t.error());
  into.type = *t;
  return {};
}

Result<Received> Queue::recv(Timeout timeout, long type) {
  Received r;
  if (auto e = recv(r, timeout, type); !e) return std::unexpected(e.error());
  return r;
}

Result<Attributes> Queue::attributes() const {
  if (id_ < 0) return fail(Errc::closed, "sysv attributes", "no queue");
  msqid_ds ds{};
  if (::msgctl(id_, IPC_STAT, &ds) == -1) return detail::queue_error(errno, "sysv attributes", key_.str());
  return Attributes{.messages = ds.msg_qnum,
                    .bytes = ds.__msg_cbytes,
                    .capacity_bytes = ds.msg_qbytes,
                    .last_send_pid = ds.msg_lspid,
                    .last_recv_pid = ds.msg_lrpid,
                    .uid = ds.msg_perm.uid,
                    .gid = ds.msg_perm.gid,
                    .creator_uid = ds.msg_perm.cuid,
                    .mode = static_cast<unsigned>(ds.msg_perm.mode) & 0777u};
}

Result<void> Queue::set_capacity_bytes(std::size_t bytes) {
  if (id_ < 0) return fail(Errc::closed, "sysv set_capacity_bytes", "no queue");
  // msg_qbytes is an unsigned long in the kernel but compared as an int-sized count there too.
  if (bytes == 0 || bytes > static_cast<std::size_t>(INT_MAX))
    return fail(Errc::invalid_argument, "sysv set_capacity_bytes", fmt::format("{} outside 1..{}", bytes, INT_MAX));
  msqid_ds ds{};
  if (::msgctl(id_, IPC_STAT, &ds) == -1) return detail::queue_error(errno, "sysv set_capacity_bytes", key_.str());
  ds.msg_qbytes = bytes;
  if (::msgctl(id_, IPC_SET, &ds) == -1) {
    const int err = errno;
    if (err == EPERM) {
      auto mnb = detail::read_limit("msgmnb");
      return std::unexpected(Error{
          Errc::permission_denied, err, "sysv set_capacity_bytes",
          fmt::format("queue {}: {} bytes need root above kernel.msgmnb = {} (raise it: sysctl -w kernel.msgmnb=N), "
                      "and only the owner, creator or root may change the capacity",
                      key_.str(), bytes, mnb ? fmt::to_string(*mnb) : "?")});
    }
    return detail::queue_error(err, "sysv set_capacity_bytes", key_.str());
  }
  return {};
}

}  // namespace ipcx::sysv
