// A thread that blocks in msgrcv on one message type and hands each message over through a
// one-message slot and an eventfd: a System V queue has no descriptor, this gives it one.
// The thread takes the next message only after the slot was emptied, so nothing piles up in
// this process: unread messages stay in the kernel queue, counted against its capacity.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <ipcx/error.hpp>

#include "os/eventfd.hpp"

namespace ipcx::sysv::detail {

class Waiter {
 public:
  // Starts the thread. Errors: system (no thread, no eventfd).
  static Result<std::unique_ptr<Waiter>> start(int qid, long type, std::string what);
  // Requires that the thread can end: the queue was removed, or wake() reached it.
  ~Waiter();

  // Readable while a message (or the error that ended the thread) waits in the slot.
  int fd() const noexcept { return ev_.fd(); }
  // Moves the slot's message into `text`; would_block when empty; the thread's error once it
  // ended (closed when the queue was removed).
  Result<void> take(std::vector<std::byte>& text);
  // Tells the thread to end after its current msgrcv (the caller makes that return).
  void stop() noexcept;

 private:
  Waiter(int qid, long type, std::string what, os::EventFd ev)
      : qid_(qid), type_(type), what_(std::move(what)), ev_(std::move(ev)) {}
  void run();

  const int qid_;
  const long type_;
  const std::string what_;
  os::EventFd ev_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool full_ = false, ended_ = false, stop_ = false;
  std::vector<std::byte> slot_;
  Error error_;
  std::thread thread_;
};

}  // namespace ipcx::sysv::detail
