#include <ipcx/reactor.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/epoll.h>
#include <unistd.h>

#include "os/eventfd.hpp"
#include "os/signals.hpp"
#include "os/sys.hpp"
#include "os/timer_queue.hpp"

namespace ipcx {

namespace {

using Clock = os::TimerQueue::Clock;

std::uint32_t epoll_interest(unsigned events) {
  return (events & Reactor::readable ? EPOLLIN : 0u) | (events & Reactor::writable ? EPOLLOUT : 0u);
}

}  // namespace

struct Reactor::Impl {
  enum class Kind { fd, signal };
  struct Entry {
    Kind kind;
    int fd;
    Fd owned;                   // signalfd
    unsigned interest = 0;      // readable | writable
    bool always_ready = false;  // epoll refused the descriptor (EPERM): ready every round
    std::function<void(unsigned)> on_fd;
    std::function<void(const SignalInfo&)> on_signal;
  };

  Fd epoll;
  os::EventFd wake;
  std::unordered_map<Id, std::shared_ptr<Entry>> entries;
  std::set<Id> always_ready;  // ids of always-ready entries, dispatched in registration order
  os::TimerQueue timers;
  Id next_id = 1;
  std::atomic<bool> stopping{false};

  std::mutex post_mutex;
  std::vector<std::function<void()>> posted;  // guarded by post_mutex
  std::atomic<bool> has_posts{false};         // !posted.empty(), readable without the lock
  std::atomic<std::thread::id> loop_thread{}; // the thread in run_once (posts from it need no wake)
  std::vector<std::function<void()>> spare;   // loop thread only: the last round's buffer

  Result<Id> insert(std::shared_ptr<Entry> e, unsigned events) {
    Id id = next_id;
    epoll_event ev{};
    ev.events = epoll_interest(events);
    ev.data.u64 = id;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, e->fd, &ev) != 0) {
      // Only plain add_fd entries can be always ready: a signalfd is always pollable.
      if (errno != EPERM || e->kind != Kind::fd) return fail_errno(errno, "epoll_ctl(ADD)");
      e->always_ready = true;
      always_ready.insert(id);
    }
    e->interest = events & (readable | writable);
    entries.emplace(id, std::move(e));
    ++next_id;
    return id;
  }

  bool posts_pending() const { return has_posts.load(std::memory_order_acquire); }

  bool always_ready_pending() const {
    return std::any_of(always_ready.begin(), always_ready.end(),
                       [&](Id id) { return entries.at(id)->interest != 0; });
  }

  // epoll_wait's timeout: until the caller's deadline or the earliest timer, in milliseconds
  // rounded up (a timer must never fire early); 0 when work is already waiting.
  int wait_ms(Clock::time_point now, Clock::time_point until) {
    if (posts_pending() || always_ready_pending()) return 0;
    if (auto next = timers.next_due()) until = std::min(until, *next);
    if (until == Clock::time_point::max()) return -1;
    if (until <= now) return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
  }

  int dispatch(Id id, std::uint32_t ev) {
    auto it = entries.find(id);
    if (it == entries.end()) return 0;  // removed by an earlier callback in this round
    auto e = it->second;                // keeps the entry alive while its callback runs
    switch (e->kind) {
      case Kind::fd: {
        // Masked with the current interest: an earlier callback of this round may have paused it.
        unsigned out = (ev & EPOLLIN ? readable : 0u) | (ev & EPOLLOUT ? writable : 0u);
        out = (out & e->interest) | (ev & (EPOLLHUP | EPOLLRDHUP) ? hangup : 0u) | (ev & EPOLLERR ? error : 0u);
        if (out == 0) return 0;
        e->on_fd(out);
        return 1;
      }
      case Kind::signal: {
        int handled = 0;
        while (auto si = os::read_signal(e->fd)) {
          ++handled;
          e->on_signal(SignalInfo{static_cast<int>(si->ssi_signo), static_cast<pid_t>(si->ssi_pid),
                                  static_cast<uid_t>(si->ssi_uid), si->ssi_int});
          if (!entries.contains(id)) break;
        }
        return handled;
      }
    }
    return 0;
  }

  int dispatch_always_ready() {
    if (always_ready.empty()) return 0;
    // A snapshot: callbacks may add and remove entries while we walk it.
    std::vector<Id> ids(always_ready.begin(), always_ready.end());
    int handled = 0;
    for (Id id : ids) {
      auto it = entries.find(id);
      if (it == entries.end() || it->second->interest == 0) continue;
      auto e = it->second;
      e->on_fd(e->interest);
      ++handled;
    }
    return handled;
  }

  int run_posts() {
    if (!posts_pending()) return 0;  // the common round: no lock
    std::vector<std::function<void()>> batch = std::move(spare);
    batch.clear();
    {
      std::lock_guard lock(post_mutex);
      batch.swap(posted);  // posts made from here on wait for the next round
      has_posts.store(false, std::memory_order_relaxed);
    }
    for (auto& fn : batch) fn();
    int ran = static_cast<int>(batch.size());
    batch.clear();
    spare = std::move(batch);
    return ran;
  }
};

Reactor::Reactor(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Reactor::Reactor(Reactor&&) noexcept = default;
Reactor& Reactor::operator=(Reactor&&) noexcept = default;
Reactor::~Reactor() = default;

Result<Reactor> Reactor::create() {
  auto impl = std::make_unique<Impl>();
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return fail_errno(errno, "epoll_create1");
  impl->epoll = Fd(ep);
  auto wake = os::EventFd::create();
  if (!wake) return std::unexpected(wake.error());
  impl->wake = std::move(*wake);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // id 0: the wake-up eventfd
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, impl->wake.fd(), &ev) != 0) return fail_errno(errno, "epoll_ctl(ADD)");
  return Reactor(std::move(impl));
}

Result<Reactor::Id> Reactor::add_fd(int fd, unsigned events, std::function<void(unsigned)> cb) {
  if (fd < 0) return fail(Errc::invalid_argument, "reactor add_fd", "negative fd");
  auto e = std::make_shared<Impl::Entry>();
  e->kind = Impl::Kind::fd;
  e->fd = fd;
  e->on_fd = std::move(cb);
  return impl_->insert(std::move(e), events);
}

Result<void> Reactor::modify_fd(Id id, unsigned events) {
  auto it = impl_->entries.find(id);
  if (it == impl_->entries.end() || it->second->kind != Impl::Kind::fd)
    return fail(Errc::not_found, "reactor modify_fd");
  auto& e = *it->second;
  if (!e.always_ready) {
    epoll_event ev{};
    ev.events = epoll_interest(events);
    ev.data.u64 = id;
    if (::epoll_ctl(impl_->epoll.get(), EPOLL_CTL_MOD, e.fd, &ev) != 0) return fail_errno(errno, "epoll_ctl(MOD)");
  }
  e.interest = events & (readable | writable);
  return {};
}

Result<Reactor::Id> Reactor::add_timer(Timeout first, Timeout interval, std::function<void()> cb) {
  Id id = impl_->next_id++;
  impl_->timers.add(id, os::TimerQueue::later(Clock::now(), first), interval, std::move(cb));
  return id;
}

Result<void> Reactor::rearm_timer(Id id, Timeout first) {
  if (!impl_->timers.rearm(id, os::TimerQueue::later(Clock::now(), first)))
    return fail(Errc::not_found, "reactor rearm_timer");
  return {};
}

Result<Reactor::Id> Reactor::add_signal(int signo, std::function<void(const SignalInfo&)> cb) {
  if (auto r = os::block_signals({signo}); !r) return std::unexpected(r.error());
  auto sfd = os::make_signalfd({signo});
  if (!sfd) return std::unexpected(sfd.error());
  auto e = std::make_shared<Impl::Entry>();
  e->kind = Impl::Kind::signal;
  e->fd = sfd->get();
  e->owned = std::move(*sfd);
  e->on_signal = std::move(cb);
  return impl_->insert(std::move(e), readable);
}

void Reactor::remove(Id id) noexcept {
  if (impl_->timers.remove(id)) return;
  auto it = impl_->entries.find(id);
  if (it == impl_->entries.end()) return;
  if (it->second->always_ready)
    impl_->always_ready.erase(id);
  else
    ::epoll_ctl(impl_->epoll.get(), EPOLL_CTL_DEL, it->second->fd, nullptr);
  impl_->entries.erase(it);
}

void Reactor::post(std::function<void()> fn) {
  bool was_empty;
  {
    std::lock_guard lock(impl_->post_mutex);
    was_empty = impl_->posted.empty();
    impl_->posted.push_back(std::move(fn));
    impl_->has_posts.store(true, std::memory_order_release);
  }
  // Only the first post of a round needs to wake the loop: it sees a non-empty queue before it
  // sleeps again, or sleeps already and this wakes it. The loop's own thread is not asleep: it
  // checks for posts before it waits (no eventfd write and read per round).
  if (was_empty && std::this_thread::get_id() != impl_->loop_thread.load(std::memory_order_relaxed))
    (void)impl_->wake.signal();
}

Result<int> Reactor::run_once(Timeout timeout) {
  auto& s = *impl_;
  s.loop_thread.store(std::this_thread::get_id(), std::memory_order_relaxed);
  constexpr int batch = 256;
  epoll_event evs[batch];
  auto now = Clock::now();
  int n = ::epoll_wait(s.epoll.get(), evs, batch, s.wait_ms(now, os::TimerQueue::later(now, timeout)));
  if (n < 0) {
    if (errno != EINTR) return fail_errno(errno, "epoll_wait");
    n = 0;  // a signal handler ran: the timers and posts may still be due
  }
  int handled = 0;
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.u64 == 0) {
      (void)s.wake.drain();
      continue;
    }
    handled += s.dispatch(evs[i].data.u64, evs[i].events);
  }
  handled += s.dispatch_always_ready();
  handled += s.timers.run_due(Clock::now());
  handled += s.run_posts();
  return handled;
}

Result<void> Reactor::run() {
  while (!impl_->stopping.load()) {
    auto r = run_once(forever);
    if (!r) return std::unexpected(r.error());
  }
  impl_->stopping.store(false);  // a later run() starts afresh
  return {};
}

void Reactor::stop() noexcept {
  impl_->stopping.store(true);
  (void)impl_->wake.signal();
}

}  // namespace ipcx
