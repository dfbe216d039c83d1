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
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <memory>

#include <fmt/format.h>

#include "transport/address.hpp"
#include "transport/mq/conversation.hpp"
#include "transport/mq/mqueue.hpp"
#include "transport/transport.hpp"

namespace ipcx::transport {
namespace {

using namespace mq;

constexpr long kAnnounceSize = 128;
constexpr std::size_t kMaxServiceName = 200;  // leaves room for ".ID.cs" within NAME_MAX
constexpr std::string_view kMagic = "ipcx-mq/1";

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
      return std::move(*c);
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
    if (name_is_ours()) ::mq_unlink(a_.kernel.c_str());
    drain_announcements(service_.get(), a_.kernel, /*tell=*/true);
    service_.reset();
  }

  // Whether the service queue's name still names our queue. Through the mqueue file system when
  // it is mounted at /dev/mqueue, which takes no descriptor (a process out of them still removes
  // its name); else by opening the name.
  bool name_is_ours() const noexcept {
    struct stat mine{}, named{};
    if (::fstat(service_.get(), &mine) != 0) return false;
    const std::string path = "/dev/mqueue" + a_.kernel;
    if (::stat(path.c_str(), &named) == 0) return named.st_dev == mine.st_dev && named.st_ino == mine.st_ino;
    mqd_t now = ::mq_open(a_.kernel.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (now == static_cast<mqd_t>(-1)) return false;
    const bool same = ::fstat(now, &named) == 0 && named.st_dev == mine.st_dev && named.st_ino == mine.st_ino;
    ::mq_close(now);
    return same;
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
  Result<std::unique_ptr<ConnectionImpl>> open_conversation(const Announcement& an) {
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
    return make_conversation({.rx = std::move(*cs), .tx = std::move(*sc), .rx_size = ca->mq_msgsize,
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
  auto conn = make_conversation({.rx = std::move(sc->fd), .tx = std::move(cs->fd), .rx_size = a->msgsize,
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
  return std::move(*conn);
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
