// mq:// conversations (conversation.hpp).
#include "transport/mq/conversation.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "os/pidfd.hpp"

namespace ipcx::transport::mq {
namespace {

using namespace std::chrono_literals;

// A sender waiting for room looks again at whether its reader is still there this often (a
// reader that closes frees no room, so no readiness would wake the sender).
constexpr auto kReaderCheck = std::chrono::milliseconds(20);
// A client waiting for a message looks this often at whether the server is still there.
constexpr auto kWriterCheck = std::chrono::milliseconds(100);


}  // namespace

bool ofd_lock(int fd, short type, off_t byte) {
  struct flock l{};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = byte;
  l.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &l) == 0;
}

namespace {

// True when some other open file description holds a lock on `byte` that `type` would conflict
// with; false when nobody does (or the question cannot be asked).
bool ofd_held(int fd, short type, off_t byte) {
  struct flock l{};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = byte;
  l.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &l) != 0) return true;  // unknown: do not declare anyone gone
  return l.l_type != F_UNLCK;
}

class MqConnection final : public ConnectionImpl {
 public:

  static Result<std::unique_ptr<MqConnection>> make(ConversationParts p) {
    auto c = std::unique_ptr<MqConnection>(new MqConnection(std::move(p)));
    if (auto r = c->setup(); !r) return std::unexpected(r.error());
    return c;
  }
  ~MqConnection() override { release(); }

  // ---- send side ----
  Result<void> send(std::span<const std::byte> data, std::span<const int> fds, const os::Deadline& dl) override {
    if (auto v = validate(data, fds); !v) return v;
    if (!out_.empty())
      if (auto r = flush(dl); !r) return r;
    return put(data, p_.priority, dl, "send");
  }
  Result<void> enqueue(std::span<const std::byte> data, std::span<const int> fds) override {
    if (auto v = validate(data, fds); !v) return v;
    if (!out_charge_.resize(out_bytes_ + data.size()))
      return fail(Errc::resource_exhausted, "send", "memory limit reached (outgoing queue)");
    out_.emplace_back(data.begin(), data.end());
    out_bytes_ += data.size();
    return {};
  }
  Result<void> flush(const os::Deadline& dl) override {
    while (!out_.empty()) {
      if (auto r = put(out_.front(), p_.priority, dl, "flush"); !r) return r;
      out_bytes_ -= out_.front().size();
      out_.pop_front();
      out_charge_.resize(out_bytes_);
    }
    return {};
  }
  std::size_t queued() const noexcept override { return out_bytes_; }
  Result<void> close_send(const os::Deadline& dl) override {
    if (auto r = flush(dl); !r) return r;
    if (auto r = put({}, kEofPriority, dl, "close_send"); !r) return r;
    eof_sent_ = true;
    return {};
  }

  // ---- receive side ----
  Result<void> recv(Message& into, const os::Deadline& dl, ReadBudget* budget) override {
    if (rx_after_) return std::unexpected(*rx_after_);
    bool woke = false, last_try = false;
    for (;;) {
      if (budget && budget->bytes == 0) return fail(Errc::would_block, "recv");
      unsigned prio = 0;
      ssize_t n = ::mq_receive(p_.rx.get(), reinterpret_cast<char*>(scratch_.get()), static_cast<std::size_t>(p_.rx_size),
                               &prio);
      if (n >= 0) {
        if (budget) budget->bytes -= std::min(budget->bytes, static_cast<std::size_t>(n));
        if (prio == kEofPriority) {
          if (n == 0) return rx_fail(Error{Errc::closed, 0, "recv", "peer closed the connection"});
          return rx_fail(Error{Errc::protocol, 0, "recv",
                               fmt::format("{}-byte message at priority 0 (reserved for the end marker)", n)});
        }
        if (prio > kMaxUserPriority + 1)
          return rx_fail(Error{Errc::protocol, 0, "recv", fmt::format("message at reserved priority {}", prio)});
        if (static_cast<std::size_t>(n) > rx_max_)
          return rx_fail(Error{Errc::too_large, 0, "recv", fmt::format("{} bytes > maximum {}", n, rx_max_)});
        into.fds.clear();
        into.data.assign(scratch_.get(), scratch_.get() + n);
        return {};
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return rx_fail(fail_errno(errno, "recv").error());
      if (last_try)
        return rx_fail(Error{Errc::closed, 0, "recv",
                             peer_dead() ? fmt::format("peer process {} died", peer_pid_.load())
                                         : std::string("peer closed the connection")});
      if (closing.load()) return fail(Errc::closed, "recv", "connection closed");
      if (((woke || dl.immediate()) && peer_dead()) || writer_gone()) {
        last_try = true;  // it may have sent something before going: one more look
        continue;
      }
      if (peer_fd_ || dl.immediate()) {
        if (auto w = os::await(ep_.get(), POLLIN, dl, "recv"); !w) return w;
      } else {
        // No pidfd for the peer (a client does not know the server's pid): look again at the
        // writer's lock now and then, so a server that died is noticed while we wait.
        if (dl.expired()) return fail(Errc::timeout, "recv");
        auto slice = os::Deadline::after(std::min<Timeout>(dl.remaining(), kWriterCheck));
        auto w = os::wait_fd(ep_.get(), POLLIN, slice);
        if (!w && w.error().code != Errc::timeout) return std::unexpected(w.error());
      }
      woke = true;
    }
  }
  void limit_message(std::size_t max) noexcept override { rx_max_ = std::min(rx_max_, max); }
  // What enqueue holds is charged to the server's memory budget (messages waiting in the kernel
  // queues are the kernel's, bounded by capacity x message size).
  void set_budget(std::shared_ptr<wire::MemoryBudget> budget) noexcept override { out_charge_.attach(std::move(budget)); }

  // ---- any thread ----
  Handles handles() const noexcept override {
    Handles h;
    if (ep_.valid()) h.read = ep_.get();
    if (p_.tx.valid()) h.write = p_.tx.get();
    return h;
  }
  PeerCred peer() const noexcept override {
    return PeerCred{.pid = peer_pid_.load(), .uid = p_.peer_uid, .verified = false};
  }
  Capabilities capabilities() const noexcept override {
    return {.records = true, .verified_peer = false, .pollable = ep_.valid()};
  }
  void shutdown() noexcept override {
    if (wake_.valid()) {
      std::uint64_t one = 1;
      (void)!::write(wake_.get(), &one, sizeof one);
    }
  }
  void release() noexcept override {
    if (p_.tx.valid() && !eof_sent_) {
      // Best effort, never blocks: with the peer's queue full the marker cannot go in (docs/mq.md).
      (void)::mq_send(p_.tx.get(), "", 0, kEofPriority);
      eof_sent_ = true;
    }
    for (auto& n : p_.unlink_on_release)
      if (!n.empty()) (void)::mq_unlink(n.c_str());
    p_.rx.reset();
    p_.tx.reset();
    peer_fd_.reset();
    ep_.reset();
    wake_.reset();
    out_.clear();
    out_bytes_ = 0;
    out_charge_.resize(0);
  }

 private:
  explicit MqConnection(ConversationParts p) : p_(std::move(p)), rx_max_(p_.options.max_message) {}

  Result<void> setup() {
    scratch_ = std::make_unique_for_overwrite<std::byte[]>(static_cast<std::size_t>(p_.rx_size));
    // We read rx and write tx: say so to the peer.
    if (!ofd_lock(p_.rx.get(), F_RDLCK, kReaderByte)) return fail_errno(errno, "fcntl F_OFD_SETLK", "receive queue");
    if (!ofd_lock(p_.tx.get(), F_WRLCK, kWriterByte)) return fail_errno(errno, "fcntl F_OFD_SETLK", "send queue");
    ep_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep_) return fail_errno(errno, "epoll_create1");
    wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) return fail_errno(errno, "eventfd");
    for (int fd : {p_.rx.get(), wake_.get()}) {
      epoll_event ev{.events = EPOLLIN, .data = {.fd = fd}};
      if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return fail_errno(errno, "epoll_ctl");
    }
    if (p_.peer_pid > 0) return watch(p_.peer_pid);
    return {};
  }

  // Adds the peer's pidfd to what recv waits on: its death wakes us and the server engine.
  Result<void> watch(pid_t pid) {
    peer_pid_.store(pid);
    peer_fd_ = os::watch_process(pid);
    if (!peer_fd_) {
      if (errno == ESRCH) {
        peer_gone_ = true;
        return {};
      }
      return fail_errno(errno, "pidfd_open");
    }
    epoll_event ev{.events = EPOLLIN, .data = {.fd = peer_fd_.get()}};
    if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, peer_fd_.get(), &ev) != 0) return fail_errno(errno, "epoll_ctl");
    return {};
  }

  bool peer_dead() {
    if (peer_gone_) return true;
    return os::process_exited(peer_fd_);
  }

  // A client's queues have no peer before accept: while one still has its name, nobody has
  // come yet (the server locks both before it unlinks them).
  // Once unlinked, a name never comes back (each conversation's is unique): then forgotten.
  static bool still_named(std::string& name) {
    if (name.empty()) return false;
    mqd_t q = ::mq_open(name.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (q == static_cast<mqd_t>(-1)) {
      if (errno != ENOENT) return true;
      name.clear();
      return false;
    }
    ::mq_close(q);
    return true;
  }
  // Our reader's lock is gone: it closed, or died.
  bool reader_gone() { return !ofd_held(p_.tx.get(), F_WRLCK, kReaderByte) && !still_named(p_.tx_name); }
  // Our writer's lock is gone. Catches a writer that closed while its end marker did not fit.
  bool writer_gone() { return !ofd_held(p_.rx.get(), F_RDLCK, kWriterByte) && !still_named(p_.rx_name); }

  Result<void> validate(std::span<const std::byte> data, std::span<const int> fds) const {
    if (!fds.empty()) return fail(Errc::not_supported, "send", "mq: cannot carry file descriptors");
    if (eof_sent_) return fail(Errc::closed, "send", "this side closed its sending direction");
    const std::size_t limit = std::min(p_.options.max_message, static_cast<std::size_t>(p_.tx_size));
    if (data.size() > limit)
      return fail(Errc::too_large, "send",
                  fmt::format("{} bytes > the {} of {} bytes (nothing was sent)", data.size(),
                              limit == static_cast<std::size_t>(p_.tx_size) ? "queue's message size" : "maximum",
                              limit));
    return {};
  }

  std::unexpected<Error> rx_fail(Error e) {
    if (!rx_after_)
      rx_after_ = Error{Errc::closed, 0, "recv",
                        e.code == Errc::closed ? e.detail : fmt::format("connection failed earlier: {}", e.message())};
    return std::unexpected(std::move(e));
  }

  Result<void> put(std::span<const std::byte> data, unsigned prio, const os::Deadline& dl, const char* op) {
    for (;;) {
      if (::mq_send(p_.tx.get(), mqueue::bytes_of(data), data.size(), prio) == 0) return {};
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return fail_errno(errno, op);
      if (closing.load()) return fail(Errc::closed, op, "connection closed");
      // Full. Whether the reader is still there is asked only when we would give up, or after
      // a while without room: a reader that left frees no room, so nothing else would tell.
      if (dl.immediate() || dl.expired()) {
        if (reader_gone() || peer_dead()) return fail(Errc::closed, op, "the peer closed the connection");
        return fail(dl.immediate() ? Errc::would_block : Errc::timeout, op);
      }
      auto slice = os::Deadline::after(std::min<Timeout>(dl.remaining(), kReaderCheck));
      auto w = os::wait_fd(p_.tx.get(), POLLOUT, slice);
      if (!w && w.error().code != Errc::timeout) return std::unexpected(w.error());
      if (!w && (reader_gone() || peer_dead())) return fail(Errc::closed, op, "the peer closed the connection");
    }
  }

  ConversationParts p_;
  std::size_t rx_max_;
  std::unique_ptr<std::byte[]> scratch_;
  Fd ep_, wake_, peer_fd_;
  std::atomic<pid_t> peer_pid_{-1};
  bool peer_gone_ = false;  // recv side
  bool eof_sent_ = false;   // send side
  std::optional<Error> rx_after_;
  std::deque<std::vector<std::byte>> out_;
  std::size_t out_bytes_ = 0;
  wire::Charge out_charge_;
};


}  // namespace

Result<std::unique_ptr<ConnectionImpl>> make_conversation(ConversationParts parts) {
  auto c = MqConnection::make(std::move(parts));
  if (!c) return std::unexpected(c.error());
  return std::unique_ptr<ConnectionImpl>(std::move(*c));
}

}  // namespace ipcx::transport::mq
