#include "transport/sysv/waiter.hpp"

#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

#include "os/eventfd.hpp"
#include "transport/sysv/msg.hpp"

namespace ipcx::sysv::detail {

struct Waiter::State {
  int qid;
  long type;
  std::string what;
  os::EventFd ev;
  std::mutex mu;
  std::condition_variable cv;
  bool full = false, ended = false, stop = false;
  std::vector<std::byte> slot;
  Error error;
  std::thread thread;

  void run() {
    std::vector<std::byte> text;
    for (;;) {
      auto r = recv(qid, type, text, os::Deadline::never(), "recv", what);
      std::unique_lock lk(mu);
      if (!r) {
        error = std::move(r.error());
        ended = true;
        (void)ev.signal();
        return;
      }
      // Even when stopping: a message taken from the queue is never dropped here.
      slot.swap(text);
      full = true;
      (void)ev.signal();
      if (stop) return;
      cv.wait(lk, [&] { return !full || stop; });
      if (stop) return;
    }
  }
};

Result<std::unique_ptr<Waiter>> Waiter::start(int qid, long type, std::string what) {
  auto ev = os::EventFd::create();
  if (!ev) return std::unexpected(ev.error());
  auto s = std::make_shared<State>();
  s->qid = qid;
  s->type = type;
  s->what = std::move(what);
  s->ev = std::move(*ev);
  try {
    s->thread = std::thread([s] { s->run(); });  // the thread keeps its state alive
  } catch (const std::system_error& e) {
    return fail_errno(e.code().value(), "sysv waiter", "cannot start the thread that waits on the queue");
  }
  return std::unique_ptr<Waiter>(new Waiter(std::move(s)));
}

void Waiter::end() noexcept {
  stop();
  if (!s_->thread.joinable()) return;
  if (woken_) s_->thread.join();
  else s_->thread.detach();
}

int Waiter::fd() const noexcept { return s_->ev.fd(); }

void Waiter::stop() noexcept {
  std::lock_guard lk(s_->mu);
  s_->stop = true;
  s_->cv.notify_all();
}

Result<void> Waiter::take(std::vector<std::byte>& text) {
  std::lock_guard lk(s_->mu);
  if (s_->full) {
    text.swap(s_->slot);
    s_->full = false;
    (void)s_->ev.drain();
    s_->cv.notify_all();
    return {};
  }
  if (s_->ended) return std::unexpected(s_->error);
  return fail(Errc::would_block, "recv");
}

}  // namespace ipcx::sysv::detail
