#include "transport/sysv/waiter.hpp"

#include <system_error>

#include "transport/sysv/msg.hpp"

namespace ipcx::sysv::detail {

Result<std::unique_ptr<Waiter>> Waiter::start(int qid, long type, std::string what) {
  auto ev = os::EventFd::create();
  if (!ev) return std::unexpected(ev.error());
  std::unique_ptr<Waiter> w(new Waiter(qid, type, std::move(what), std::move(*ev)));
  try {
    w->thread_ = std::thread([p = w.get()] { p->run(); });
  } catch (const std::system_error& e) {
    return fail_errno(e.code().value(), "sysv waiter", "cannot start the thread that waits on the queue");
  }
  return w;
}

Waiter::~Waiter() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void Waiter::stop() noexcept {
  std::lock_guard lk(mu_);
  stop_ = true;
  cv_.notify_all();
}

void Waiter::run() {
  std::vector<std::byte> text;
  for (;;) {
    auto r = recv(qid_, type_, text, os::Deadline::never(), "recv", what_);
    std::unique_lock lk(mu_);
    if (stop_) return;
    if (!r) {
      error_ = std::move(r.error());
      ended_ = true;
      (void)ev_.signal();
      return;
    }
    slot_.swap(text);
    full_ = true;
    (void)ev_.signal();
    cv_.wait(lk, [&] { return !full_ || stop_; });
    if (stop_) return;
  }
}

Result<void> Waiter::take(std::vector<std::byte>& text) {
  std::lock_guard lk(mu_);
  if (full_) {
    text.swap(slot_);
    full_ = false;
    (void)ev_.drain();
    cv_.notify_all();
    return {};
  }
  if (ended_) return std::unexpected(error_);
  return fail(Errc::would_block, "recv");
}

}  // namespace ipcx::sysv::detail
