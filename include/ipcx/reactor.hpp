// An epoll event loop: descriptor readiness, timers, signals and posted functions, on one
// thread.
//
//   auto r = ipcx::Reactor::create().value();
//   r.add_fd(conn.native_handle(), ipcx::Reactor::readable, [&](unsigned) { drain(conn); });
//   r.add_signal(SIGTERM, [&](const ipcx::SignalInfo&) { r.stop(); });
//   r.run();
//
// Threading: one thread runs the loop and makes every call, except post() and stop(), which
// any thread may call. Callbacks run on the loop thread and may add, modify and remove any
// registration (their own included), add and re-arm timers and post.
//
// One dispatch round (run_once): wait for descriptors (no longer than the earliest timer, not
// at all while posted functions or always-ready descriptors are pending), then call, in order,
// the callbacks of the ready descriptors and signals, of the always-ready descriptors, of the
// due timers (earliest deadline first) and the functions posted before this step began.
//
// Timers live in the reactor's memory: they cost no descriptor, so add_timer works when the
// process is out of them, and thousands of per-connection deadlines are cheap. Deadlines are on
// the monotonic clock; the loop sleeps in whole milliseconds, rounded up, so a timer never fires
// early and usually fires within a millisecond of its deadline.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include <sys/types.h>

#include <ipcx/timeout.hpp>
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

  // Calls `cb(events)` whenever `fd` is ready for any of `events` (readable, writable or both;
  // level-triggered). The caller keeps owning fd and must remove() it before closing it.
  //
  // hangup and error are reported whether asked for or not, even with empty interest (epoll
  // always reports them): a callback that sees them should remove the registration, or it is
  // called again every round.
  //
  // A descriptor epoll cannot watch (a regular file, a directory, /dev/null: epoll_ctl says
  // EPERM) is accepted as always ready, as poll(2) reports it: its callback is called every
  // round with the registered interest as the events (never hangup or error), and the loop
  // does not sleep while such a registration has a non-empty interest. The callback sees
  // end-of-file through read() returning 0, not through hangup.
  Result<Id> add_fd(int fd, unsigned events, std::function<void(unsigned)> cb);
  // Replaces the interest of an add_fd registration. Zero pauses it (no readable or writable
  // callbacks, hangup and error still reported), from the next callback on, even one already
  // reported in the current round. not_found unless `id` is a live add_fd registration.
  Result<void> modify_fd(Id id, unsigned events);
  // Calls `cb` after `first`, then every `interval` (zero: once, and the registration ends
  // by itself just before the call). A periodic timer keeps its phase while the loop keeps up;
  // one that fell behind fires once, not once per missed period, and counts its next period
  // from then. `first` may be `forever`: armed by rearm_timer() only. Needs no descriptor and
  // never returns an error.
  Result<Id> add_timer(Timeout first, Timeout interval, std::function<void()> cb);
  // Sets a timer's next expiry to `first` from now, earlier or later than before (for idle
  // deadlines pushed back on every message: O(log n), no allocation); `forever` disarms it
  // until the next rearm_timer(). The interval is unchanged. not_found unless `id` is a live
  // timer (a one-shot that has fired is gone, even inside its own callback).
  Result<void> rearm_timer(Id id, Timeout first);
  // Blocks `signo` in the calling thread and delivers it through a signalfd. Signals that
  // should reach the reactor must be blocked in every thread (block them before starting any).
  Result<Id> add_signal(int signo, std::function<void(const SignalInfo&)> cb);
  // Removes a registration (descriptor, timer or signal); safe from inside any callback,
  // including its own. Its callback is not called again, even if already reported in the
  // current round. Unknown ids are ignored.
  void remove(Id id) noexcept;

  // Queues `fn` to run on the loop thread after the descriptor, signal and timer callbacks of
  // the round under way (posted from one of those callbacks) or of the next round; posted
  // functions run in the order they were posted. A function posted while posted functions are
  // running waits for the next round, so one that keeps posting itself cannot starve
  // descriptors, and the loop does not sleep while posts are queued. Thread-safe (not
  // async-signal-safe: use stop() from a signal handler); wakes a blocked run()/run_once().
  // Never blocks for long, needs no descriptor, cannot fail except for lack of memory.
  // Functions still queued when the reactor is destroyed are destroyed without being run.
  void post(std::function<void()> fn);

  // Dispatches rounds until stop(). Blocks.
  Result<void> run();
  // Runs one dispatch round, waiting up to `timeout` for something to do (see above); returns
  // how many callbacks and posted functions it ran (0 when nothing was due: the timeout
  // passed, or stop() or a signal handler woke it).
  Result<int> run_once(Timeout timeout);
  // Makes run() return. Thread-safe and async-signal-safe.
  void stop() noexcept;

 private:
  struct Impl;
  explicit Reactor(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipcx
