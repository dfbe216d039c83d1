// A thread that blocks in msgrcv on one message type and hands each message over through a
// one-message slot and an eventfd: a System V queue has no descriptor, this gives it one.
// The thread takes the next message only after the slot was emptied, so nothing piles up in
// this process: unread messages stay in the kernel queue, counted against its capacity.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ipcx/error.hpp>

namespace ipcx::sysv::detail {

class Waiter {
 public:
  // Starts the thread. Errors: system (no thread, no eventfd).
  static Result<std::unique_ptr<Waiter>> start(int qid, long type, std::string what);
  // Stops the thread. It is joined when it can end (`woken`: the queue was removed or a
  // message of its type was sent to end its msgrcv), else left to end on its own: its state
  // is its own, and it ends at the next message of its type or the queue's removal.
  ~Waiter() { end(); }
  void set_woken(bool woken) noexcept { woken_ = woken; }
  // Stops and joins (or leaves, see above) the thread now; a message it took on the way stays
  // in the slot for take().
  void end() noexcept;

  // Readable while a message (or the error that ended the thread) waits in the slot.
  int fd() const noexcept;
  // Moves the slot's message into `text`; would_block when empty; the thread's error once it
  // ended (closed when the queue was removed).
  Result<void> take(std::vector<std::byte>& text);
  // Tells the thread to end after its current msgrcv (the caller makes that return).
  void stop() noexcept;

 private:
  struct State;
  explicit Waiter(std::shared_ptr<State> s) : s_(std::move(s)) {}
  std::shared_ptr<State> s_;
  bool woken_ = true;
};

}  // namespace ipcx::sysv::detail
