#include <ipcx/reactor.hpp>

#include <atomic>
#include <map>
#include <memory>

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "os/eventfd.hpp"
#include "os/signals.hpp"
#include "os/sys.hpp"

namespace ipcx {

struct Reactor::Impl {
  enum class Kind { fd, timer, signal };
  struct Entry {
    Kind kind;
    int fd;
    Fd owned;  // timerfd / signalfd
    bool one_shot = false;  // a timer without interval: unregistered once it fired
    std::function<void(unsigned)> on_fd;
    std::function<void()> on_timer;
    std::function<void(const SignalInfo&)> on_signal;
  };

  Fd epoll;
  os::EventFd wake;
  std::map<Id, std::shared_ptr<Entry>> entries;
  Id next_id = 1;
  std::atomic<bool> stopping{false};

  Result<Id> insert(std::shared_ptr<Entry> e, unsigned events) {
    Id id = next_id++;
    epoll_event ev{};
    ev.events = (events & readable ? EPOLLIN : 0u) | (events & writable ? EPOLLOUT : 0u);
    ev.data.u64 = id;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, e->fd, &ev) != 0) return fail_errno(errno, "epoll_ctl(ADD)");
    entries.emplace(id, std::move(e));
    return id;
  }

  void dispatch(Id id, std::uint32_t ev) {
    auto it = entries.find(id);
    if (it == entries.end()) return;  // removed by an earlier callback in this batch
    auto e = it->second;             // keeps the entry alive while its callback runs
    switch (e->kind) {
      case Kind::fd: {
        unsigned out = (ev & EPOLLIN ? readable : 0u) | (ev & EPOLLOUT ? writable : 0u) |
                       (ev & (EPOLLHUP | EPOLLRDHUP) ? hangup : 0u) | (ev & EPOLLERR ? error : 0u);
        e->on_fd(out);
        break;
      }
      case Kind::timer: {
        std::uint64_t expirations = 0;
        if (::read(e->fd, &expirations, sizeof expirations) != sizeof expirations) break;
        if (e->one_shot) {  // done with its descriptor whatever the callback does
          ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, e->fd, nullptr);
          entries.erase(id);
        }
        e->on_timer();
        break;
      }
      case Kind::signal: {
        while (auto si = os::read_signal(e->fd)) {
          e->on_signal(SignalInfo{static_cast<int>(si->ssi_signo), static_cast<pid_t>(si->ssi_pid),
                                  static_cast<uid_t>(si->ssi_uid), si->ssi_int});
          if (!entries.count(id)) break;
        }
        break;
      }
    }
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
  epoll_event ev{};
  ev.events = (events & readable ? EPOLLIN : 0u) | (events & writable ? EPOLLOUT : 0u);
  ev.data.u64 = id;
  if (::epoll_ctl(impl_->epoll.get(), EPOLL_CTL_MOD, it->second->fd, &ev) != 0) return fail_errno(errno, "epoll_ctl(MOD)");
  return {};
}

Result<Reactor::Id> Reactor::add_timer(Timeout first, Timeout interval, std::function<void()> cb) {
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) return fail_errno(errno, "timerfd_create");
  auto e = std::make_shared<Impl::Entry>();
  e->kind = Impl::Kind::timer;
  e->owned = Fd(tfd);
  e->fd = tfd;
  e->on_timer = std::move(cb);
  e->one_shot = interval <= Timeout::zero();
  auto to_ts = [](Timeout t) {
    auto ns = t.count() < 0 ? 0 : t.count();
    return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  };
  itimerspec spec{to_ts(interval), to_ts(first)};
  if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;  // 0 would disarm
  if (::timerfd_settime(tfd, 0, &spec, nullptr) != 0) return fail_errno(errno, "timerfd_settime");
  return impl_->insert(std::move(e), readable);
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
  auto it = impl_->entries.find(id);
  if (it == impl_->entries.end()) return;
  ::epoll_ctl(impl_->epoll.get(), EPOLL_CTL_DEL, it->second->fd, nullptr);
  impl_->entries.erase(it);
}

Result<int> Reactor::run_once(Timeout timeout) {
  epoll_event evs[64];
  auto dl = os::Deadline::after(timeout);
  int n = ::epoll_wait(impl_->epoll.get(), evs, 64, dl.poll_ms());
  if (n < 0) {
    if (errno == EINTR) return 0;
    return fail_errno(errno, "epoll_wait");
  }
  int handled = 0;
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.u64 == 0) {
      (void)impl_->wake.drain();
      continue;
    }
    impl_->dispatch(evs[i].data.u64, evs[i].events);
    ++handled;
  }
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
