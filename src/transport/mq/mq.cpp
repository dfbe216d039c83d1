// mq:///name — connections over POSIX message queues (docs/mq.md, "The mq:// transport").
//
// The listener owns the service queue /name and holds an exclusive flock(2) on it while it
// lives (how a new listener tells a stale queue from a live one). A client creates two queues,
// /name.ID.cs (client to server) and /name.ID.sc (server to client), announces them on the
// service queue ("ipcx-mq/1 PID ID"), and the listener's accept() opens both and unlinks them.
// Priorities carry the framing: 0 is the end-of-conversation marker (a zero-length message),
// data travels at 1 + the URL's priority, and the top priority is reserved. Each side holds
// open-file-description locks saying that it reads one queue and writes the other (ofd_lock).
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <deque>
#include <memory>

#include <fmt/format.h>

#include "os/pidfd.hpp"
#include "transport/address.hpp"
#include "transport/mq/mqueue.hpp"
#include "transport/transport.hpp"

namespace ipcx::transport {
namespace {

constexpr unsigned kEofPriority = 0;
// Data travels at 1 + the URL's priority; the top priority stays reserved.
constexpr unsigned kMaxUserPriority = mqueue::kPrioMax - 3;
constexpr long kAnnounceSize = 128;
constexpr std::size_t kMaxServiceName = 200;  // leaves room for ".ID.cs" within NAME_MAX
constexpr std::string_view kMagic = "ipcx-mq/1";
// A sender waiting for room looks again at whether its reader is still there this often (a
// reader that closes frees no room, so no readiness would wake the sender).
constexpr auto kReaderCheck = std::chrono::milliseconds(20);
// A client waiting for a message looks this often at whether the server is still there.
constexpr auto kWriterCheck = std::chrono::milliseconds(100);

struct MqAddress {
  std::string kernel;  // "/name"
  long capacity = 10;
  long msgsize = 8192;
  unsigned priority = 0;
};

std::unexpected<Error> bad_url(const Url& u, std::string_view why) {
  return fail(Errc::invalid_url, "parse URL", fmt::format("{} in '{}'", why, printable(u.str())));
}

Result<MqAddress> mq_address(const Url& u) {
  std::string_view b = u.body;
  if (!b.starts_with("///"))
    return bad_url(u, "an mq address is mq:///name (three slashes, no host)");
  auto name = b.substr(3);
  if (name.empty() || name.size() > kMaxServiceName)
    return bad_url(u, fmt::format("queue name of {} bytes (1 to {})", name.size(), kMaxServiceName));
  for (char c : name) {
    if (c == '/') return bad_url(u, "a queue name has no '/' after the leading one");
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return bad_url(u, "control byte in the queue name");
  }
  if (name == "." || name == "..") return bad_url(u, "'.' and '..' are not queue names");
  MqAddress a{.kernel = "/" + std::string(name)};
  for (const auto& [key, value] : u.query) {
    std::string hint = fmt::format(" (mq: key {})", key);
    if (key == "capacity") {
      auto v = parse_decimal(value, {.what = "capacity", .min = 1, .max = mqueue::kHardMsgMax});
      if (!v) return bad_url(u, v.error().detail);
      a.capacity = static_cast<long>(*v);
    } else if (key == "msgsize") {
      auto v = parse_decimal(value, {.what = "msgsize", .min = 1, .max = mqueue::kHardMsgSizeMax});
      if (!v) return bad_url(u, v.error().detail);
      a.msgsize = static_cast<long>(*v);
    } else if (key == "priority") {
      auto v = parse_decimal(value, {.what = "priority", .min = 0, .max = kMaxUserPriority});
      if (!v) return bad_url(u, v.error().detail);
      a.priority = static_cast<unsigned>(*v);
    } else {
      return bad_url(u, fmt::format("unknown query key '{}' (mq: takes only capacity, msgsize, priority)",
                                    printable(key)));
    }
  }
  return a;
}

// A process's liveness as a descriptor: readable once it has exited.
Fd watch_pid(pid_t pid) { return pid > 0 ? Fd(os::pidfd_open(pid)) : Fd(); }

// Presence on a conversation queue: open-file-description locks (F_OFD_SETLK), which the kernel
// drops when the side closes the queue or dies. The reader holds a read lock on byte 0, the
// writer a write lock on byte 1: they never conflict with each other, and either side can ask
// about the other with F_OFD_GETLK, which takes nothing (so asking never races with locking).
constexpr off_t kReaderByte = 0, kWriterByte = 1;

bool ofd_lock(int fd, short type, off_t byte) {
  struct flock l{};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = byte;
  l.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &l) == 0;
}

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

bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return os::retry([&] { return ::poll(&p, 1, 0); }) > 0 && (p.revents & (POLLIN | POLLHUP));
}

class MqConnection final : public ConnectionImpl {
 public:
  struct Parts {
    Fd rx, tx;         // the queue we read, the queue we write
    long rx_size = 0;  // their message sizes
    long tx_size = 0;
    unsigned priority = 1;
    pid_t peer_pid = -1;
    uid_t peer_uid = static_cast<uid_t>(-1);
    std::string unlink_on_release[2];  // the client's own queues, in case nobody ever accepted
    std::string tx_name;               // client: the queue we write, named until accepted
    std::string rx_name;               // client: the queue we read, named until accepted
    Options options;
  };

  static Result<std::unique_ptr<MqConnection>> make(Parts p) {
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
  explicit MqConnection(Parts p) : p_(std::move(p)), rx_max_(p_.options.max_message) {}

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
    peer_fd_ = watch_pid(pid);
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
    return peer_fd_ && readable_now(peer_fd_.get());
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

  Parts p_;
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

std::string conversation_id() {
  static std::atomic<unsigned> counter{0};
  std::uint32_t r = 0;
  if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) r = static_cast<std::uint32_t>(::time(nullptr));
  return fmt::format("{}-{}-{:08x}", ::getpid(), counter++, r);
}

std::string queue_of(const std::string& service, std::string_view id, std::string_view dir) {
  return fmt::format("{}.{}.{}", service, id, dir);
}

struct Announcement {
  pid_t pid;
  std::string id;
};

std::optional<Announcement> parse_announcement(std::string_view t) {
  if (!t.starts_with(kMagic) || t.size() <= kMagic.size() + 1 || t[kMagic.size()] != ' ') return std::nullopt;
  t.remove_prefix(kMagic.size() + 1);
  auto sp = t.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + sp, pid);
  if (ec != std::errc() || end != t.data() + sp || pid <= 0) return std::nullopt;
  auto id = t.substr(sp + 1);
  if (id.empty() || id.size() > 40) return std::nullopt;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-')) return std::nullopt;
  return Announcement{pid, std::string(id)};
}

class MqListener final : public ListenerImpl {
 public:
  MqListener(Fd service, MqAddress a, std::string url, Options o)
      : service_(std::move(service)), a_(std::move(a)), url_(std::move(url)), options_(o) {}
  ~MqListener() override { close(); }

  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline& dl) override {
    char buf[kAnnounceSize];
    for (;;) {
      if (!service_) return fail(Errc::closed, "accept", "listener closed");
      unsigned prio = 0;
      ssize_t n = ::mq_receive(service_.get(), buf, sizeof buf, &prio);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return fail_errno(errno, "accept");
        if (auto w = os::await(service_.get(), POLLIN, dl, "accept"); !w) return std::unexpected(w.error());
        continue;
      }
      auto an = parse_announcement({buf, static_cast<std::size_t>(n)});
      if (!an) continue;  // not ours to answer: garbage on the service queue is dropped
      auto c = open_conversation(*an);
      if (!c) {
        // The client gave up (its queues are gone) or announced something unusable: next one.
        if (c.error().code == Errc::not_found || c.error().code == Errc::protocol) continue;
        return std::unexpected(c.error());
      }
      ++stats_.accepted;
      return std::unique_ptr<ConnectionImpl>(std::move(*c));
    }
  }
  std::optional<int> native_handle() const noexcept override {
    if (service_) return service_.get();
    return std::nullopt;
  }
  std::string url() const override { return url_; }
  Capabilities capabilities() const noexcept override {
    return {.records = true, .verified_peer = false, .pollable = true, .concurrent = true};
  }
  ListenerStats stats() const noexcept override { return stats_; }
  void close() noexcept override {
    if (!service_) return;
    // Remove the name first so no new client announces itself, then tell the announced ones.
    // Only if the name is still ours: someone may have removed it and made another queue there.
    if (mqd_t now = ::mq_open(a_.kernel.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC); now != static_cast<mqd_t>(-1)) {
      struct stat mine{}, named{};
      bool same = ::fstat(service_.get(), &mine) == 0 && ::fstat(now, &named) == 0 && mine.st_ino == named.st_ino;
      ::mq_close(now);
      if (same) ::mq_unlink(a_.kernel.c_str());
    }
    drain_announcements(service_.get(), a_.kernel, /*tell=*/true);
    service_.reset();
  }
  bool is_open() const noexcept override { return service_.valid(); }

  // Unlinks the queues of every pending announcement; with `tell`, puts the end marker in the
  // client's receive queue first so a waiting client learns there will be no answer.
  static void drain_announcements(int service, const std::string& kernel, bool tell) noexcept {
    char buf[kAnnounceSize];
    for (int i = 0; i < 100000; ++i) {
      ssize_t n = ::mq_receive(service, buf, sizeof buf, nullptr);
      if (n < 0) return;
      auto an = parse_announcement({buf, static_cast<std::size_t>(n)});
      if (!an) continue;
      auto sc = queue_of(kernel, an->id, "sc"), cs = queue_of(kernel, an->id, "cs");
      if (tell) {
        mqd_t q = ::mq_open(sc.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (q != static_cast<mqd_t>(-1)) {
          ::mq_send(q, "", 0, kEofPriority);
          ::mq_close(q);
        }
      }
      ::mq_unlink(sc.c_str());
      ::mq_unlink(cs.c_str());
    }
  }

 private:
  Result<std::unique_ptr<MqConnection>> open_conversation(const Announcement& an) {
    auto cs_name = queue_of(a_.kernel, an.id, "cs"), sc_name = queue_of(a_.kernel, an.id, "sc");
    auto cs = mqueue::open(cs_name, O_RDONLY, "accept");
    // Lock before unlinking: a client finds its queue unnamed and unlocked only once we are gone.
    if (cs) ofd_lock(cs->get(), F_RDLCK, kReaderByte);
    auto sc = cs ? mqueue::open(sc_name, O_WRONLY, "accept") : std::move(cs);
    if (sc) ofd_lock(sc->get(), F_WRLCK, kWriterByte);
    // Both sides have them open (or the client is gone): the names are no longer needed, and a
    // SIGKILLed side now leaves nothing behind.
    ::mq_unlink(cs_name.c_str());
    ::mq_unlink(sc_name.c_str());
    if (!cs) return std::unexpected(cs.error());
    if (!sc) return std::unexpected(sc.error());
    auto ca = mqueue::attributes(cs->get());
    auto sa = mqueue::attributes(sc->get());
    if (!ca || !sa) return fail(Errc::system, "accept", "mq_getattr failed");
    struct stat st{};
    uid_t uid = ::fstat(cs->get(), &st) == 0 ? st.st_uid : static_cast<uid_t>(-1);
    return MqConnection::make({.rx = std::move(*cs), .tx = std::move(*sc), .rx_size = ca->mq_msgsize,
                               .tx_size = sa->mq_msgsize, .priority = 1 + a_.priority, .peer_pid = an.pid,
                               .peer_uid = uid, .options = options_});
  }

  Fd service_;
  MqAddress a_;
  std::string url_;
  Options options_;
  ListenerStats stats_;
};

Result<std::unique_ptr<ListenerImpl>> mq_listen(const Url& u, const Options& o) {
  auto a = mq_address(u);
  if (!a) return std::unexpected(a.error());
  if (o.framing == Framing::lines) return fail(Errc::not_supported, "listen", "mq: messages are records, not lines");
  if (o.access && !o.access->anyone)
    return fail(Errc::not_supported, "listen", "mq: peers are not verified (use mode to choose who may connect)");
  const mqueue::Create c{.capacity = a->capacity, .message_size = kAnnounceSize, .mode = o.mode, .exclusive = true};
  for (int round = 0; round < 100; ++round) {
    auto made = mqueue::create(a->kernel, c, "listen");
    if (made) {
      if (::flock(made->fd.get(), LOCK_EX | LOCK_NB) != 0) return fail_errno(errno, "flock", a->kernel);
      return std::make_unique<MqListener>(std::move(made->fd), *a, u.str(), o);
    }
    if (made.error().code != Errc::already_exists) return std::unexpected(made.error());
    // Someone's queue is there: a live listener holds its lock; a dead one's does not.
    auto old = mqueue::open(a->kernel, O_RDWR, "listen");
    if (!old) {
      if (old.error().code == Errc::not_found) continue;
      return std::unexpected(old.error());
    }
    if (::flock(old->get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return fail(Errc::address_in_use, "listen", fmt::format("a live listener owns mq://{}", a->kernel));
      return fail_errno(errno, "flock", a->kernel);
    }
    // Stale. Make sure the name still means the queue we locked before removing it.
    auto again = mqueue::open(a->kernel, O_RDONLY, "listen");
    struct stat s1{}, s2{};
    if (again && ::fstat(old->get(), &s1) == 0 && ::fstat(again->get(), &s2) == 0 && s1.st_ino == s2.st_ino) {
      MqListener::drain_announcements(old->get(), a->kernel, /*tell=*/true);
      ::mq_unlink(a->kernel.c_str());
    }
  }
  return fail(Errc::address_in_use, "listen", fmt::format("mq://{} keeps being taken by someone else", a->kernel));
}

Result<std::unique_ptr<ConnectionImpl>> mq_connect(const Url& u, const Options& o, const os::Deadline& dl) {
  auto a = mq_address(u);
  if (!a) return std::unexpected(a.error());
  if (o.framing == Framing::lines) return fail(Errc::not_supported, "connect", "mq: messages are records, not lines");
  auto service = mqueue::open(a->kernel, O_WRONLY, "connect");
  if (!service) {
    auto e = service.error();
    if (e.code == Errc::not_found) return fail(Errc::connection_refused, "connect", fmt::format("no listener at mq://{}", a->kernel));
    return std::unexpected(std::move(e));
  }
  const auto id = conversation_id();
  const auto cs_name = queue_of(a->kernel, id, "cs"), sc_name = queue_of(a->kernel, id, "sc");
  const mqueue::Create c{.capacity = a->capacity, .message_size = a->msgsize, .mode = o.mode, .exclusive = true};
  auto cs = mqueue::create(cs_name, c, "connect");
  if (!cs) return std::unexpected(cs.error());
  auto sc = mqueue::create(sc_name, c, "connect");
  if (!sc) {
    ::mq_unlink(cs_name.c_str());
    return std::unexpected(sc.error());
  }
  auto conn = MqConnection::make({.rx = std::move(sc->fd), .tx = std::move(cs->fd), .rx_size = a->msgsize,
                                  .tx_size = a->msgsize, .priority = 1 + a->priority,
                                  .unlink_on_release = {cs_name, sc_name}, .tx_name = cs_name, .rx_name = sc_name,
                                  .options = o});
  if (!conn) {
    ::mq_unlink(cs_name.c_str());
    ::mq_unlink(sc_name.c_str());
    return std::unexpected(conn.error());
  }
  auto text = fmt::format("{} {} {}", kMagic, ::getpid(), id);
  if (auto r = mqueue::send(service->get(), as_bytes(text), 0, kAnnounceSize, dl, "connect"); !r)
    return std::unexpected(r.error());  // conn's release unlinks both queues
  return std::unique_ptr<ConnectionImpl>(std::move(*conn));
}

}  // namespace

Scheme mq_scheme() {
  Scheme s;
  s.name = "mq";
  s.listen = mq_listen;
  s.connect = mq_connect;
  return s;
}

}  // namespace ipcx::transport
