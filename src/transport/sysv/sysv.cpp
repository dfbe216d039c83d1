// sysv://KEY — the Listener, listen and connect over one System V queue, conversations
// multiplexed by message type (protocol.hpp, conversation.hpp, docs/sysv.md).
#include <sys/ipc.h>
#include <sys/msg.h>
#include <unistd.h>

#include <atomic>

#include <fmt/format.h>

#include "os/pidfd.hpp"
#include "transport/sysv/msg.hpp"
#include "transport/sysv/protocol.hpp"
#include "transport/sysv/conversation.hpp"
#include "transport/transport.hpp"

namespace ipcx::sysv::proto {

bool alive(pid_t pid, std::uint64_t started) {
  auto t = os::process_start_time(pid);
  return t && *t == started;
}

}  // namespace ipcx::sysv::proto

namespace ipcx::transport {
namespace {

namespace sd = ipcx::sysv::detail;
using sd::kind_byte;
using SysvConnection = sd::Conversation;
using sysv::proto::Kind;


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
      Fd pidfd = os::watch_process(static_cast<pid_t>(*pid));
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
                              "ipcrm -Q {})",
                              key->str(), key->str()));
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
  sysv::proto::put(owner, os::process_start_time(::getpid()).value_or(0), 8);
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
  Fd server_fd = os::watch_process(owner->pid);
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
