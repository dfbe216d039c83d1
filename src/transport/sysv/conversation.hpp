// One sysv:// conversation (either end): the ConnectionImpl over a pair of message types of a
// shared queue (protocol.hpp, docs/sysv.md). Made by the listener (accept) or connect.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "os/pidfd.hpp"
#include "transport/policy_queue.hpp"
#include "transport/sysv/msg.hpp"
#include "transport/sysv/protocol.hpp"
#include "transport/sysv/waiter.hpp"
#include "transport/sysv/watch.hpp"
#include "transport/transport.hpp"

namespace ipcx::sysv::detail {

namespace sd = ipcx::sysv::detail;
using proto::Kind;

inline std::span<const std::byte> kind_byte(Kind k) {
  static const std::byte bytes[] = {std::byte{0}, std::byte{1}, std::byte{2}, std::byte{3},
                                    std::byte{4}, std::byte{5}, std::byte{6}};
  return {&bytes[static_cast<int>(k)], 1};
}

class Conversation final : public ConnectionImpl {
 public:
  struct Params {
    int qid;
    long send_type, recv_type;
    long my_closed_type, peer_closed_type;  // where our closed note goes; where the peer's comes
    pid_t peer;
    Fd peer_fd;  // pidfd of the peer (may be empty when the kernel has none)
    std::size_t max_message;
    std::string what;
    // Server side: the queue, removed when the listener and every conversation it accepted
    // are closed.
    std::shared_ptr<const void> queue;
  };
  explicit Conversation(Params p)
      : p_(std::move(p)), out_({.capacity = unbounded, .memory_cap = std::size_t{64} << 20}) {
    watch_id_ = sd::watch_peer(p_.peer_fd.get(), p_.qid, p_.recv_type);
  }
  ~Conversation() override { release(); }

  Result<void> send(std::span<const std::byte> data, std::span<const int> fds, const os::Deadline& dl) override {
    if (auto v = validate(data, fds); !v) return v;
    if (auto f = flush(dl); !f) return f;
    if (auto c = peer_open(); !c) return c;
    return checked(sd::send(p_.qid, p_.send_type, kind_byte(Kind::data), data, dl, "send", p_.what));
  }
  Result<void> enqueue(std::span<const std::byte> data, std::span<const int> fds) override {
    if (auto v = validate(data, fds); !v) return v;
    // The payload alone: flush() sends it behind the kind byte, as send() does.
    if (out_.offer(data) != transport::PolicyQueue::Offer::queued)
      return fail(Errc::resource_exhausted, "enqueue", "outgoing queue holds 64 MiB already");
    return {};
  }
  Result<void> flush(const os::Deadline& dl) override {
    if (!out_.empty())
      if (auto c = peer_open(); !c) return c;
    while (!out_.empty()) {
      auto r = checked(sd::send(p_.qid, p_.send_type, kind_byte(Kind::data), out_.front(), dl, "flush", p_.what));
      if (!r) return r;
      out_.pop();
    }
    return {};
  }
  std::size_t queued() const noexcept override { return out_.bytes(); }
  Result<void> close_send(const os::Deadline& dl) override {
    if (auto f = flush(dl); !f) return f;
    auto r = checked(sd::send(p_.qid, p_.send_type, kind_byte(Kind::bye), {}, dl, "close_send", p_.what));
    if (r) said_bye_ = true;
    return r;
  }

  Result<void> recv(Message& into, const os::Deadline& dl, ReadBudget* budget) override {
    if (eof_) return fail(Errc::closed, "recv", "the peer closed the conversation");
    if (broken_) return fail(Errc::closed, "recv", "the conversation failed earlier");
    auto r = receive(into, dl, budget);
    if (!r && (r.error().code == Errc::protocol || r.error().code == Errc::too_large)) broken_ = true;
    return r;
  }

 private:
  Result<void> receive(Message& into, const os::Deadline& dl, ReadBudget* budget) {
    sd::Waiter* w = waiter();
    for (;;) {
      if (budget && budget->bytes == 0) return fail(Errc::would_block, "recv");
      auto got = w ? take(*w, dl) : direct(dl);
      if (!got) return got;
      if (budget) budget->bytes -= std::min(budget->bytes, text_.size() + sizeof(long));
      if (text_.empty()) return fail(Errc::protocol, "recv", "an empty System V message (no kind byte)");
      switch (static_cast<Kind>(text_[0])) {
        case Kind::data:
          if (text_.size() - 1 > p_.max_message)
            return fail(Errc::too_large, "recv",
                        fmt::format("a {}-byte message exceeds max_message = {}", text_.size() - 1, p_.max_message));
          into.fds.clear();
          into.data.assign(text_.begin() + 1, text_.end());
          return {};
        case Kind::bye:
          eof_ = true;
          return fail(Errc::closed, "recv", "the peer closed the conversation");
        case Kind::wake:
          // From close() in another thread, or the watch saying the peer died: everything the
          // peer sent before dying came before it.
          if (closing.load()) return fail(Errc::closed, "recv", "connection closed");
          if (os::process_exited(p_.peer_fd)) return died();
          continue;  // a wake meant for an earlier call
        default:
          return fail(Errc::protocol, "recv",
                      fmt::format("unknown message kind 0x{:02x} on type {}", static_cast<unsigned>(text_[0]),
                                  p_.recv_type));
      }
    }
  }
 public:
  void trim() noexcept override {
    if (text_.capacity() > 64 * 1024) std::vector<std::byte>().swap(text_);
  }
  void limit_message(std::size_t n) noexcept override { p_.max_message = std::min(p_.max_message, n); }

  // The first ask starts the waiter thread: from then on messages come through its slot.
  Handles handles() const noexcept override {
    std::lock_guard lk(waiter_mu_);
    if (!waiter_ && p_.qid >= 0) {
      auto w = sd::Waiter::start(p_.qid, p_.recv_type, p_.what);
      if (!w) return {};  // no thread: the engine polls by time
      waiter_ = std::move(*w);
    }
    Handles h;
    if (waiter_) h.read = waiter_->fd();
    return h;
  }
  Capabilities capabilities() const noexcept override { return {.records = true, .pollable = true}; }
  // The server engine ends this conversation with a reason: when it is that the peer does not
  // read, what it left unread is taken back at release (the queue is shared).
  void goodbye(wire::Goodbye why, std::string_view) noexcept override {
    if (why == wire::Goodbye::slow_reader || why == wire::Goodbye::send_timeout) purge_ = true;
  }
  // Wakes a recv blocked in msgrcv in another thread: a wake message to our own type.
  void shutdown() noexcept override {
    (void)sd::send(p_.qid, p_.recv_type, kind_byte(Kind::wake), {}, os::Deadline::now(), "close", p_.what);
  }
  void release() noexcept override {
    if (p_.qid < 0) return;
    sd::unwatch_peer(watch_id_);
    if (auto w = std::move(waiter_)) {
      w->stop();
      // End its msgrcv with a wake; if the queue is too full to take one, it is left to end on
      // its own (at the next message of this type, or the queue's removal).
      w->set_woken(static_cast<bool>(
          sd::send(p_.qid, p_.recv_type, kind_byte(Kind::wake), {}, os::Deadline::now(), "close", p_.what)));
    }
    // The queue is shared by every conversation: leave nothing of this one in it. Messages to
    // the peer are taken back too once the peer is known to be gone.
    // (A bye alone is not gone: after close_send the peer still reads.)
    (void)peer_open(true);
    const bool peer_gone = gone_ || peer_closed_ || os::process_exited(p_.peer_fd);
    std::vector<std::byte> junk;
    // Dropped for not reading: take back what it left unread, so the shared queue has room.
    if (purge_.load() && !peer_gone)
      while (sd::recv(p_.qid, p_.send_type, junk, os::Deadline::now(), "close", p_.what)) {
      }
    if (!peer_gone) {
      if (!said_bye_)
        (void)sd::send(p_.qid, p_.send_type, kind_byte(Kind::bye), {}, os::Deadline::now(), "close", p_.what);
      (void)sd::send(p_.qid, p_.my_closed_type, kind_byte(Kind::bye), {}, os::Deadline::now(), "close", p_.what);
    }
    for (long type : {p_.recv_type, p_.peer_closed_type})
      while (sd::recv(p_.qid, type, junk, os::Deadline::now(), "close", p_.what)) {
      }
    if (peer_gone)
      for (long type : {p_.send_type, p_.my_closed_type})
        while (sd::recv(p_.qid, type, junk, os::Deadline::now(), "close", p_.what)) {
        }
    // What the peer still sends goes when it exits (the queue may outlive both of us).
    if (!peer_gone)
      sd::purge_on_exit(p_.peer_fd.get(), p_.peer, p_.qid,
                        {p_.send_type, p_.recv_type, p_.my_closed_type, p_.peer_closed_type});
    p_.qid = -1;
    p_.peer_fd.reset();
    p_.queue.reset();
  }

 private:
  Result<void> validate(std::span<const std::byte> data, std::span<const int> fds) const {
    if (!fds.empty()) return fail(Errc::not_supported, "send", "System V messages cannot carry file descriptors");
    if (data.size() > p_.max_message)
      return fail(Errc::too_large, "send",
                  fmt::format("{} bytes exceed max_message = {}", data.size(), p_.max_message));
    if (data.size() + 1 > sd::max_message() && data.size() + 1 > sd::max_message(true))
      return fail(Errc::too_large, "send",
                  fmt::format("{} bytes + 1 kind byte exceed kernel.msgmax = {} (raise it: sysctl -w kernel.msgmax=N)",
                              data.size(), sd::max_message()));
    return {};
  }
  sd::Waiter* waiter() const {
    std::lock_guard lk(waiter_mu_);
    return waiter_.get();
  }
  std::unexpected<Error> died() {
    gone_ = true;
    return fail(Errc::closed, "recv", fmt::format("the peer (pid {}) died", p_.peer));
  }
  // The next message straight from the kernel queue.
  Result<void> direct(const os::Deadline& dl) {
    auto t = sd::recv(p_.qid, p_.recv_type, text_, dl, "recv", p_.what);
    if (t) return {};
    auto code = t.error().code;
    if (code == Errc::closed) gone_ = true;
    if ((code == Errc::would_block || code == Errc::timeout) && os::process_exited(p_.peer_fd)) {
      // Whatever it sent before dying is queued before this check: take that first.
      if (sd::recv(p_.qid, p_.recv_type, text_, os::Deadline::now(), "recv", p_.what)) return {};
      return died();
    }
    return std::unexpected(t.error());
  }
  // The next message through the waiter's slot, waiting on its eventfd.
  Result<void> take(sd::Waiter& w, const os::Deadline& dl) {
    for (;;) {
      auto r = w.take(text_);
      if (r) return r;
      if (r.error().code != Errc::would_block) {
        if (r.error().code == Errc::closed) gone_ = true;
        return r;
      }
      // Without a watch, nothing will wake us when the peer dies: look ourselves. (With one,
      // its wake comes after the peer's last messages, which the waiter may not have taken yet.)
      if (watch_id_ == 0 && os::process_exited(p_.peer_fd)) return died();
      if (auto a = os::await(w.fd(), POLLIN, dl, "recv"); !a) return a;
    }
  }
  // Every 32nd send (the first included) looks for the peer's closed note and its death: a
  // msgrcv and a poll that usually find nothing, kept off most sends.
  Result<void> peer_open(bool now = false) {
    if (!peer_closed_ && (now || sends_++ % 32 == 0)) {
      std::vector<std::byte>& junk = note_;
      if (sd::recv(p_.qid, p_.peer_closed_type, junk, os::Deadline::now(), "send", p_.what)) peer_closed_ = true;
      else if (os::process_exited(p_.peer_fd)) {
        gone_ = true;
        return fail(Errc::closed, "send", fmt::format("the peer (pid {}) died", p_.peer));
      }
    }
    if (peer_closed_) return fail(Errc::closed, "send", "the peer closed the conversation");
    return {};
  }
  // A full queue whose reader died or left is a closed conversation, not a wait.
  Result<void> checked(Result<void> r) {
    if (r) return r;
    // peer_open(true) looks at the closed note and the peer's pidfd now.
    if (r.error().code == Errc::would_block || r.error().code == Errc::timeout)
      if (auto c = peer_open(true); !c) return c;
    if (r.error().code == Errc::closed) gone_ = true;
    return r;
  }

  Params p_;
  transport::PolicyQueue out_;  // send side
  bool said_bye_ = false;       // send side
  bool peer_closed_ = false;    // send side: the peer's closed note came
  std::uint64_t sends_ = 0;     // send side
  std::vector<std::byte> note_;  // send side
  std::vector<std::byte> text_;  // receive side
  bool eof_ = false;             // receive side
  bool broken_ = false;          // receive side: malformed or oversized input came
  std::atomic<bool> gone_{false};
  std::atomic<bool> purge_{false};
  std::uint64_t watch_id_ = 0;
  mutable std::mutex waiter_mu_;
  mutable std::unique_ptr<sd::Waiter> waiter_;
};

}  // namespace ipcx::sysv::detail
