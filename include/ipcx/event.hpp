// Events: a named, pollable "something changed" across processes, with an event id per
// notification and no payload (docs/shm.md, "Events").
//
//   auto l = ipcx::shm::EventListener::open("config").value();    // any number of listeners
//   auto n = ipcx::shm::EventNotifier::open("config").value();    // any number of notifiers
//   n.notify(7);                                                  // id 7: "section 7 changed"
//   for (auto id : l.wait(std::chrono::seconds(1)).value()) ...   // {7}
//   // or poll l.native_handle() (readable while ids are pending), then l.take()
//
// The event is a file /dev/shm/ipcx-<uid>-<name> (mode 0600) holding one slot per listener:
// a bitmap of pending ids (0 .. kMaxEventId) and the name of the listener's wake-up socket.
// notify(id) sets bit `id` in every listener's bitmap and, when that listener had nothing
// pending, sends it a one-byte datagram. A listener takes the whole bitmap at once: several
// notifications of one id before a take are reported once (ids are never lost, repeats merge).
// Whoever opens the event first creates it; the last process to close it removes the name
// (`ipcx shm gc` removes one whose users were all killed). A listener's slot is held by a lock
// the kernel drops when its process dies, and the next listener reuses it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx::shm {

inline constexpr std::uint32_t kMaxEventId = 4095;
inline constexpr std::size_t kMaxEventListeners = 4096;

struct EventOptions {
  // Listener slots, when this call creates the event (1 .. kMaxEventListeners); an existing
  // event keeps its own number.
  std::size_t max_listeners = 256;
  // When this call creates the event: empty, mode 0600 (this user only); a group name or gid,
  // mode 0660 and that group, whose members open it as "~OWNER/NAME".
  std::string group;
};

class EventNotifier {
 public:
  EventNotifier() noexcept = default;
  EventNotifier(EventNotifier&&) noexcept;
  EventNotifier& operator=(EventNotifier&&) noexcept;
  ~EventNotifier();

  // Opens the event, creating it if it does not exist. Errors: invalid_argument (name: 1 to
  // 200 bytes, no NUL; max_listeners), protocol (the name holds something else, or a header
  // that does not add up), type_mismatch (another layout version), permission_denied,
  // resource_exhausted (/dev/shm full).
  static Result<EventNotifier> open(std::string_view name, EventOptions options = {});
  // Notifies every listener open now. Never waits. Errors: invalid_argument (id > kMaxEventId).
  Result<void> notify(std::uint32_t id = 0);
  // Listener slots in use now (a killed listener's slot counts until it is reused).
  std::size_t listeners() const noexcept;
  const std::string& path() const noexcept { return path_; }
  void close() noexcept;

 private:
  bool wake(std::uint32_t uid, std::uint64_t token) noexcept;

  Fd fd_;
  std::vector<Fd> socks_;  // wake-up senders, opened as needed (a full one stays charged until read)
  void* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t slots_ = 0;
  std::string path_;
};

class EventListener {
 public:
  EventListener() noexcept = default;
  EventListener(EventListener&&) noexcept;
  EventListener& operator=(EventListener&&) noexcept;
  ~EventListener();

  // Opens (or creates) the event and takes a listener slot: notifications from now on are
  // this listener's. Errors: as EventNotifier::open, and resource_exhausted (every slot is
  // held by a live listener).
  static Result<EventListener> open(std::string_view name, EventOptions options = {});

  // Readable while notifications are pending (a datagram socket). After readiness, take().
  int native_handle() const noexcept { return sock_.get(); }
  // The ids notified since the last take, ascending; empty when none. Never waits.
  std::vector<std::uint32_t> take();
  // take(), waiting up to `timeout` for at least one id. Errors: timeout.
  Result<std::vector<std::uint32_t>> wait(Timeout timeout = forever);
  const std::string& path() const noexcept { return path_; }
  void close() noexcept;

 private:
  Fd fd_, sock_;
  void* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t slot_ = 0;
  std::string path_;
};

}  // namespace ipcx::shm
