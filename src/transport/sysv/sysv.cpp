// sysv://KEY — Connection and Listener over one System V queue, conversations multiplexed by
// message type (protocol.hpp, docs/sysv.md).
#include <sys/ipc.h>
#include <sys/msg.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <sstream>

#include <fmt/format.h>

#include "messaging/policy_queue.hpp"
#include "os/pidfd.hpp"
#include "transport/sysv/msg.hpp"
#include "transport/sysv/protocol.hpp"
#include "transport/sysv/waiter.hpp"
#include "transport/sysv/watch.hpp"
#include "transport/transport.hpp"

namespace ipcx::sysv::proto {

std::optional<std::uint64_t> start_time(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i)
    if (i == 22) return std::stoull(field);
  return std::nullopt;
}

bool alive(pid_t pid, std::uint64_t started) {
  auto t = start_time(pid);
  return t && *t == started;
}

}  // namespace ipcx::sysv::proto

namespace ipcx::transport {
namespace {

namespace sd = ipcx::sysv::detail;
using sysv::proto::Kind;

std::span<const std::byte> kind_byte(Kind k) {
  static const std::byte bytes[] = {std::byte{0}, std::byte{1}, std::byte{2}, std::byte{3},
                                    std::byte{4}, std::byte{5}, std::byte{6}};
  return {&bytes[static_cast<int>(k)], 1};
}

struct Owner {
  pid_t pid = 0;
  std::uint64_t started = 0;
};

// The listener's owner record, or nullopt when the queue has none (not an ipcx listener's).
std::optional<Owner> read_owner(int qid) {
  std::vector<std::byte> text;
  auto t = sd::peek(qid, 0, text);
  if (!t || *t != sysv::proto::kOwnerType || text.empty() || text[0] != std::byte(Kind::owner)) return std::nullopt;
  auto pid = sysv::proto::get(text, 1, 4);
  auto started = sysv::proto::get(text, 5, 8);
  if (!pid || !started) return std::nullopt;
  return Owner{static_cast<pid_t>(*pid), *started};
}

bool pidfd_dead(const Fd& pidfd) {
  if (!pidfd) return false;
  pollfd p{pidfd.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

class SysvConnection final : public ConnectionImpl {
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
  explicit SysvConnection(Params p)
      : p_(std::move(p)), out_({.capacity = unbounded, .memory_cap = std::size_t{64} << 20}) {
    watch_id_ = sd::watch_peer(p_.peer_fd.get(), p_.qid, p_.recv_type);
  }
  ~SysvConnection() override { release(); }

  Result<void> send(std::span<const std::byte> data, std::span<const int> fds, const os::Deadline& dl) override {
    if (auto v = validate(data, fds); !v) return v;
    if (auto f = flush(dl); !f) return f;
    if (auto c = peer_open(); !c) return c;
    return checked(sd::send(p_.qid, p_.send_type, kind_byte(Kind::data), data, dl, "send", p_.what));
  }
  Result<void> enqueue(std::span<const std::byte> data, std::span<const int> fds) override {
    if (auto v = validate(data, fds); !v) return v;
    std::vector<std::byte> m;
    m.reserve(data.size() + 1);
    m.push_back(std::byte(Kind::data));
    m.insert(m.end(), data.begin(), data.end());
    if (out_.offer(m) != messaging::PolicyQueue::Offer::queued)
      return fail(Errc::resource_exhausted, "enqueue", "outgoing queue holds 64 MiB already");
    return {};
  }
  Result<void> flush(const os::Deadline& dl) override {
    if (!out_.empty())
      if (auto c = peer_open(); !c) return c;
    while (!out_.empty()) {
      auto r = checked(sd::send(p_.qid, p_.send_type, {}, out_.front(), dl, "flush", p_.what));
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
          if (pidfd_dead(p_.peer_fd)) return died();
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
    const bool peer_gone = gone_ || peer_closed_ || pidfd_dead(p_.peer_fd);
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
    if ((code == Errc::would_block || code == Errc::timeout) && pidfd_dead(p_.peer_fd)) {
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
      if (watch_id_ == 0 && pidfd_dead(p_.peer_fd)) return died();
      if (auto a = os::await(w.fd(), POLLIN, dl, "recv"); !a) return a;
    }
  }
  // Every 32nd send (the first included) looks for the peer's closed note and its death: a
  // msgrcv and a poll that usually find nothing, kept off most sends.
  Result<void> peer_open(bool now = false) {
    if (!peer_closed_ && (now || sends_++ % 32 == 0)) {
      std::vector<std::byte>& junk = note_;
      if (sd::recv(p_.qid, p_.peer_closed_type, junk, os::Deadline::now(), "send", p_.what)) peer_closed_ = true;
      else if (pidfd_dead(p_.peer_fd)) {
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
    if (r.error().code == Errc::would_block || r.error().code == Errc::timeout)
      if (auto c = peer_open(true); !c) return c;
    if (r.error().code == Errc::closed) gone_ = true;
    if ((r.error().code == Errc::would_block || r.error().code == Errc::timeout) && pidfd_dead(p_.peer_fd)) {
      gone_ = true;
      return fail(Errc::closed, r.error().op, fmt::format("the peer (pid {}) died", p_.peer));
    }
    return r;
  }

  Params p_;
  messaging::PolicyQueue out_;  // send side
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

Fd open_pidfd(pid_t pid) { return Fd(os::pidfd_open(pid)); }

std::uint64_t next_conversation() {
  static std::atomic<std::uint32_t> counter{0};
  return (static_cast<std::uint64_t>(::getpid()) << 20) | (counter.fetch_add(1) & 0xfffff);
}

// Removes the queue when the last of the listener and its conversations lets go of it.
struct QueueRemover {
  int qid;
  explicit QueueRemover(int id) : qid(id) {}
  ~QueueRemover() { ::msgctl(qid, IPC_RMID, nullptr); }
  QueueRemover(const QueueRemover&) = delete;
  QueueRemover& operator=(const QueueRemover&) = delete;
};

class SysvListener final : public ListenerImpl {
 public:
  SysvListener(sysv::Key key, int qid, std::unique_ptr<sd::Waiter> w, const Options& o)
      : key_(key),
        qid_(qid),
        queue_(std::make_shared<QueueRemover>(qid)),
        waiter_(std::move(w)),
        max_message_(o.max_message) {}
  ~SysvListener() override { close(); }

  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline& dl) override {
    if (qid_ < 0) return fail(Errc::closed, "accept", "listener closed");
    for (;;) {
      auto t = waiter_->take(hello_);
      if (!t) {
        if (t.error().code != Errc::would_block) return std::unexpected(t.error());
        if (auto w = os::await(waiter_->fd(), POLLIN, dl, "accept"); !w) return std::unexpected(w.error());
        continue;
      }
      auto id = sysv::proto::get(hello_, 1, 8);
      auto pid = sysv::proto::get(hello_, 9, 4);
      if (hello_.empty() || hello_[0] != std::byte(Kind::hello) || !id || !pid || *pid == 0) continue;  // not a hello
      Fd pidfd = open_pidfd(static_cast<pid_t>(*pid));
      if (!pidfd) {  // the client is gone already: take back what it sent
        std::vector<std::byte> junk;
        for (long type : {sysv::proto::client_to_server(*id), sysv::proto::client_closed(*id)})
          while (sd::recv(qid_, type, junk, os::Deadline::now(), "accept", "queue")) {
          }
        continue;
      }
      auto what = fmt::format("queue {}", key_.str());
      ++stats_.accepted;
      return std::make_unique<SysvConnection>(SysvConnection::Params{
          .qid = qid_,
          .send_type = sysv::proto::server_to_client(*id),
          .recv_type = sysv::proto::client_to_server(*id),
          .my_closed_type = sysv::proto::server_closed(*id),
          .peer_closed_type = sysv::proto::client_closed(*id),
          .peer = static_cast<pid_t>(*pid),
          .peer_fd = std::move(pidfd),
          .max_message = max_message_,
          .what = what,
          .queue = queue_});
    }
  }
  std::optional<int> native_handle() const noexcept override {
    if (qid_ < 0) return std::nullopt;
    return waiter_->fd();
  }
  std::string url() const override { return fmt::format("sysv://{}", key_.str()); }
  Capabilities capabilities() const noexcept override { return {.records = true, .pollable = true}; }
  ListenerStats stats() const noexcept override { return stats_; }
  void close() noexcept override {
    if (qid_ < 0) return;
    // Stop accepting: the waiter's msgrcv ends with a wake on the hello type.
    waiter_->stop();
    waiter_->set_woken(static_cast<bool>(
        sd::send(qid_, sysv::proto::kHelloType, kind_byte(Kind::wake), {}, os::Deadline::now(), "close", "queue")));
    waiter_->end();
    // New clients are refused from now on (no owner record), and clients that said hello but
    // were never accepted (the one in the waiter's slot included) are told it is over.
    std::vector<std::byte> text;
    (void)sd::recv(qid_, sysv::proto::kOwnerType, text, os::Deadline::now(), "close", "queue");
    bool from_slot = static_cast<bool>(waiter_->take(text));
    waiter_.reset();
    while (from_slot || sd::recv(qid_, sysv::proto::kHelloType, text, os::Deadline::now(), "close", "queue")) {
      from_slot = false;
      auto id = sysv::proto::get(text, 1, 8);
      if (text.empty() || text[0] != std::byte(Kind::hello) || !id) continue;
      (void)sd::send(qid_, sysv::proto::server_to_client(*id), kind_byte(Kind::bye), {}, os::Deadline::now(), "close", "queue");
      (void)sd::send(qid_, sysv::proto::server_closed(*id), kind_byte(Kind::bye), {}, os::Deadline::now(), "close", "queue");
    }
    queue_.reset();  // the queue goes with the last accepted conversation
    qid_ = -1;
  }
  bool is_open() const noexcept override { return qid_ >= 0; }

 private:
  sysv::Key key_;
  int qid_;
  std::shared_ptr<const void> queue_;
  std::unique_ptr<sd::Waiter> waiter_;
  std::size_t max_message_;
  std::vector<std::byte> hello_;
  ListenerStats stats_;
};

Result<sysv::Key> key_of(const Url& u) {
  if (!u.query.empty() && !(u.query.size() == 1 && u.query.contains("proj")))
    return fail(Errc::invalid_url, "parse URL", fmt::format("sysv: takes only the query key proj ({})", u.str()));
  auto k = sysv::parse_key(u.str());
  if (!k) return fail(Errc::invalid_url, "parse URL", k.error().detail);
  return k;
}

Result<std::unique_ptr<ListenerImpl>> listen_sysv(const Url& u, const Options& o) {
  auto key = key_of(u);
  if (!key) return std::unexpected(key.error());
  if (o.access && !o.access->anyone)
    return fail(Errc::not_supported, "listen", "System V queues cannot verify a sender (use mode to limit who may open it)");
  if (o.framing != Framing::frames)
    return fail(Errc::not_supported, "listen", "sysv:// keeps message boundaries itself: no line framing");
  if (o.mode > 0777) return fail(Errc::invalid_argument, "listen", fmt::format("mode {:o} outside 0..0777", o.mode));
  const int flags = IPC_CREAT | IPC_EXCL | static_cast<int>(o.mode);
  int qid = os::retry([&] { return ::msgget(key->value, flags); });
  if (qid == -1 && errno == EEXIST) {
    // Stale when its owner record names a process that is gone: take the key over.
    int old = os::retry([&] { return ::msgget(key->value, 0); });
    if (old == -1) return sd::get_error(errno, "listen", *key);
    auto owner = read_owner(old);
    if (!owner)
      return fail(Errc::address_in_use, "listen",
                  fmt::format("a System V queue with key {} exists and is no ipcx listener's (remove it: "
                              "ipcx sysv rm {} or ipcrm -Q {})",
                              key->str(), key->str(), key->str()));
    if (sysv::proto::alive(owner->pid, owner->started))
      return fail(Errc::address_in_use, "listen",
                  fmt::format("queue {} belongs to a live listener (pid {})", key->str(), owner->pid));
    if (::msgctl(old, IPC_RMID, nullptr) == -1 && errno != EIDRM && errno != EINVAL)
      return sd::get_error(errno, "listen", *key);
    qid = os::retry([&] { return ::msgget(key->value, flags); });
  }
  if (qid == -1) return sd::get_error(errno, "listen", *key);
  auto remove = [&] { ::msgctl(qid, IPC_RMID, nullptr); };
  std::vector<std::byte> owner{std::byte(Kind::owner)};
  sysv::proto::put(owner, static_cast<std::uint32_t>(::getpid()), 4);
  sysv::proto::put(owner, sysv::proto::start_time(::getpid()).value_or(0), 8);
  auto what = fmt::format("queue {}", key->str());
  if (auto r = sd::send(qid, sysv::proto::kOwnerType, {}, owner, os::Deadline::now(), "listen", what); !r) {
    remove();
    return std::unexpected(r.error());
  }
  auto w = sd::Waiter::start(qid, sysv::proto::kHelloType, what);
  if (!w) {
    remove();
    return std::unexpected(w.error());
  }
  return std::make_unique<SysvListener>(*key, qid, std::move(*w), o);
}

Result<std::unique_ptr<ConnectionImpl>> connect_sysv(const Url& u, const Options& o, const os::Deadline& dl) {
  auto key = key_of(u);
  if (!key) return std::unexpected(key.error());
  if (o.framing != Framing::frames)
    return fail(Errc::not_supported, "connect", "sysv:// keeps message boundaries itself: no line framing");
  int qid = os::retry([&] { return ::msgget(key->value, 0); });
  if (qid == -1) {
    if (errno == ENOENT)
      return fail(Errc::connection_refused, "connect", fmt::format("no listener at sysv://{}", key->str()));
    return sd::get_error(errno, "connect", *key);
  }
  auto what = fmt::format("queue {}", key->str());
  auto owner = read_owner(qid);
  if (!owner) {
    msqid_ds ds{};
    if (::msgctl(qid, IPC_STAT, &ds) == -1) return sd::queue_error(errno, "connect", what);
    return fail(Errc::connection_refused, "connect", fmt::format("{} is no ipcx listener's", what));
  }
  if (!sysv::proto::alive(owner->pid, owner->started))
    return fail(Errc::connection_refused, "connect", fmt::format("the listener of {} (pid {}) is gone", what, owner->pid));
  Fd server_fd = open_pidfd(owner->pid);
  const auto id = next_conversation();
  std::vector<std::byte> hello{std::byte(Kind::hello)};
  sysv::proto::put(hello, id, 8);
  sysv::proto::put(hello, static_cast<std::uint32_t>(::getpid()), 4);
  // Connected once the hello is queued, as a socket is once in the backlog: the conversation's
  // peer is the listener's process, which accepted connections never leave.
  if (auto r = sd::send(qid, sysv::proto::kHelloType, {}, hello, dl, "connect", what); !r) return std::unexpected(r.error());
  return std::make_unique<SysvConnection>(SysvConnection::Params{.qid = qid,
                                                                 .send_type = sysv::proto::client_to_server(id),
                                                                 .recv_type = sysv::proto::server_to_client(id),
                                                                 .my_closed_type = sysv::proto::client_closed(id),
                                                                 .peer_closed_type = sysv::proto::server_closed(id),
                                                                 .peer = owner->pid,
                                                                 .peer_fd = std::move(server_fd),
                                                                 .max_message = o.max_message,
                                                                 .what = what});
}

}  // namespace

Scheme sysv_scheme() {
  Scheme s;
  s.name = "sysv";
  s.listen = listen_sysv;
  s.connect = connect_sysv;
  return s;
}

}  // namespace ipcx::transport
