// An epoll event loop: descriptor readiness, timers and signals, on one thread.
//
//   auto r = ipcx::Reactor::create().value();
//   r.add_fd(conn.native_handle(), ipcx::Reactor::readable, [&](unsigned) { drain(conn); });
//   r.add_signal(SIGTERM, [&](const ipcx::SignalInfo&) { r.stop(); });
//   r.run();
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include <sys/types.h>

#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>

namespace ipcx {

struct SignalInfo {
  int signo = 0;
  pid_t sender_pid = 0;
  uid_t sender_uid = 0;
  int value = 0;  // sigqueue payload, 0 for kill()
};

class Reactor {
 public:
  using Id = std::uint64_t;
  static constexpr unsigned readable = 1u << 0;
  static constexpr unsigned writable = 1u << 1;
  static constexpr unsigned hangup = 1u << 2;  // reported, never requested
  static constexpr unsigned error = 1u << 3;   // reported, never requested

  static Result<Reactor> create();
  Reactor(Reactor&&) noexcept;
  Reactor& operator=(Reactor&&) noexcept;
  ~Reactor();

  // Calls `cb(events)` whenever `fd` is ready (level-triggered). The caller keeps owning fd
  // and must remove() it before closing it.
  Result<Id> add_fd(int fd, unsigned events, std::function<void(unsigned)> cb);
  Result<void> modify_fd(Id id, unsigned events);
  // Calls `cb` after `first`, then every `interval` (zero: once, and the registration ends
  // by itself after the call).
  Result<Id> add_timer(Timeout first, Timeout interval, std::function<void()> cb);
  // Blocks `signo` in the calling thread and delivers it through a signalfd. Signals that
  // should reach the reactor must be blocked in every thread (block them before starting any).
  Result<Id> add_signal(int signo, std::function<void(const SignalInfo&)> cb);
  // Removes a registration; safe from inside any callback, including its own.
  void remove(Id id) noexcept;

  // Dispatches events until stop(). Blocks.
  Result<void> run();
  // Waits up to `timeout` for events and dispatches them; returns how many were handled.
  Result<int> run_once(Timeout timeout);
  // Makes run() return. Thread-safe and async-signal-safe.
  void stop() noexcept;

 private:
  struct Impl;
  explicit Reactor(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipcx
