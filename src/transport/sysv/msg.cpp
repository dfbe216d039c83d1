#include "transport/sysv/msg.hpp"

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

namespace ipcx::sysv {

std::string Key::str() const { return fmt::format("0x{:08x}", static_cast<std::uint32_t>(value)); }

namespace {

Result<Key> bad_key(std::string_view text, std::string why) {
  return fail(Errc::invalid_argument, "sysv key", fmt::format("'{}': {}", text, why));
}

Result<std::uint64_t> number(std::string_view digits, int base) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (digits.empty() || ec == std::errc::invalid_argument || end != digits.data() + digits.size())
    return fail(Errc::invalid_argument, "sysv key");
  if (ec == std::errc::result_out_of_range) return std::numeric_limits<std::uint64_t>::max();
  return v;
}

}  // namespace

Result<Key> parse_key(std::string_view text) {
  std::string_view body = text;
  if (body.starts_with("sysv://")) body.remove_prefix(7);
  else if (body.starts_with("sysv:")) return bad_key(text, "write sysv://KEY or sysv:///path?proj=N");
  if (body.empty()) return bad_key(text, "no key (0x1..0xffffffff, 1..4294967295, or /path?proj=N)");
  for (char c : body)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return bad_key(text, "control byte in the key");
  if (body.front() == '/') {
    auto q = body.find('?');
    if (q == std::string_view::npos) return bad_key(text, "an ftok path needs ?proj=N (N in 1..255)");
    std::string path(body.substr(0, q));
    auto query = body.substr(q + 1);
    if (!query.starts_with("proj=")) return bad_key(text, "the only query key is proj (1..255)");
    auto n = number(query.substr(5), 10);
    if (!n || *n < 1 || *n > 255)
      return bad_key(text, fmt::format("proj '{}' outside 1..255 (ftok keeps 8 bits; 0 is not allowed)", query.substr(5)));
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return fail_errno(errno, "sysv key", fmt::format("ftok path '{}'", path));
    key_t k = ::ftok(path.c_str(), static_cast<int>(*n));
    if (k == -1) return fail_errno(errno, "sysv key", fmt::format("ftok '{}'", path));
    if (k == IPC_PRIVATE) return bad_key(text, "ftok gave 0 (IPC_PRIVATE); choose another proj");
    return Key{k};
  }
  const bool hex = body.starts_with("0x") || body.starts_with("0X");
  auto n = number(hex ? body.substr(2) : body, hex ? 16 : 10);
  if (!n) return bad_key(text, "not a number: write 0x1234 (hex), 4660 (decimal) or /path?proj=N");
  if (*n == 0) return bad_key(text, "key 0 is IPC_PRIVATE, a queue nobody else can open; use 0x1..0xffffffff");
  if (*n > 0xffffffffull) return bad_key(text, "outside 0x1..0xffffffff (a key has 32 bits)");
  return Key{static_cast<key_t>(static_cast<std::uint32_t>(*n))};
}

Result<Limits> limits() {
  auto a = detail::read_limit("msgmax");
  if (!a) return std::unexpected(a.error());
  auto b = detail::read_limit("msgmnb");
  if (!b) return std::unexpected(b.error());
  auto c = detail::read_limit("msgmni");
  if (!c) return std::unexpected(c.error());
  return Limits{.max_message = *a, .max_queue_bytes = *b, .max_queues = *c};
}

}  // namespace ipcx::sysv

namespace ipcx::sysv::detail {
namespace {

// The msgbuf the kernel reads: a long, then the text. One per thread, grown as needed.
std::vector<long>& scratch(std::size_t text_bytes) {
  thread_local std::vector<long> buf;
  const std::size_t longs = 1 + (text_bytes + sizeof(long) - 1) / sizeof(long);
  if (buf.size() < longs) buf.resize(longs);
  return buf;
}

}  // namespace

Result<std::size_t> read_limit(const char* name) {
  std::ifstream in(fmt::format("/proc/sys/kernel/{}", name));
  long long v = -1;
  if (!(in >> v) || v < 0) return fail(Errc::system, "sysv limits", fmt::format("cannot read kernel.{}", name));
  return static_cast<std::size_t>(v);
}

std::size_t max_message(bool fresh) noexcept {
  // Read once per process (a file read per message would cost more than the message), again
  // when asked: before refusing a message as too large, in case msgmax was raised since.
  static std::atomic<std::size_t> cached{0};
  std::size_t v = cached.load(std::memory_order_relaxed);
  if (v == 0 || fresh) {
    auto r = read_limit("msgmax");
    v = r ? *r : 8192;
    cached.store(v, std::memory_order_relaxed);
  }
  return v;
}

std::unexpected<Error> queue_error(int err, const char* op, std::string_view what) {
  switch (err) {
    case EIDRM:
    case EINVAL:
      return fail(Errc::closed, op, fmt::format("{} was removed", what));
    case EAGAIN:
      return fail(Errc::would_block, op, fmt::format("{} is full", what));
    case ENOMSG:
      return fail(Errc::would_block, op);
    case EACCES:
    case EPERM:
      return std::unexpected(Error{Errc::permission_denied, err, op,
                                   fmt::format("{}: its mode does not let uid {} do this", what, ::geteuid())});
    default:
      return fail_errno(err, op, std::string(what));
  }
}

std::unexpected<Error> get_error(int err, const char* op, const Key& key) {
  auto k = key.str();
  switch (err) {
    case ENOENT:
      return std::unexpected(Error{Errc::not_found, err, op, fmt::format("no System V queue with key {}", k)});
    case EEXIST:
      return std::unexpected(Error{Errc::already_exists, err, op, fmt::format("a System V queue with key {} exists", k)});
    case EACCES:
      return std::unexpected(Error{Errc::permission_denied, err, op,
                                   fmt::format("queue {}: its mode does not admit uid {}", k, ::geteuid())});
    case ENOSPC: {
      auto n = read_limit("msgmni");
      return std::unexpected(Error{
          Errc::resource_exhausted, err, op,
          fmt::format("queue {}: the system has kernel.msgmni = {} queues already (raise it: sysctl -w kernel.msgmni=N)",
                      k, n ? fmt::to_string(*n) : "?")});
    }
    default:
      return fail_errno(err, op, fmt::format("queue {}", k));
  }
}

Result<void> send(int qid, long type, std::span<const std::byte> head, std::span<const std::byte> data,
                  const os::Deadline& deadline, const char* op, std::string_view what) {
  const std::size_t n = head.size() + data.size();
  if (n > max_message() && n > max_message(true))
    return fail(Errc::too_large, op,
                fmt::format("{} bytes exceed kernel.msgmax = {} (raise it: sysctl -w kernel.msgmax=N)", n,
                            max_message()));
  auto& buf = scratch(n);
  buf[0] = type;
  auto* text = reinterpret_cast<std::byte*>(buf.data() + 1);
  if (!head.empty()) std::memcpy(text, head.data(), head.size());
  if (!data.empty()) std::memcpy(text + head.size(), data.data(), data.size());
  Timeout step = kFirstStep;
  bool fits = false;  // known to fit the queue's capacity once room appears
  for (;;) {
    const int flags = deadline.infinite() && fits ? 0 : IPC_NOWAIT;
    if (os::retry([&] { return ::msgsnd(qid, buf.data(), n, flags); }) == 0) return {};
    const int err = errno;
    if (err != EAGAIN) return queue_error(err, op, what);
    if (!fits) {
      // A full queue: unless the message is larger than its capacity, when no room would ever
      // appear (asked only now, so a send with room costs no extra system call).
      msqid_ds ds{};
      if (::msgctl(qid, IPC_STAT, &ds) == -1) return queue_error(errno, op, what);
      if (n > ds.msg_qbytes)
        return fail(Errc::too_large, op,
                    fmt::format("{} bytes exceed the capacity of {} (msg_qbytes = {}; see set_capacity_bytes)", n,
                                what, ds.msg_qbytes));
      fits = true;
      if (deadline.infinite()) continue;  // now wait in msgsnd itself
    }
    if (auto p = os::pause_before_retry(deadline, step, op); !p) {
      auto e = queue_error(EAGAIN, op, what);
      e.error().code = p.error().code;
      return e;
    }
    step = std::min(step * 2, kMaxStep);
  }
}

Result<long> recv(int qid, long type, std::vector<std::byte>& text, const os::Deadline& deadline, const char* op,
                  std::string_view what) {
  std::size_t room = max_message();
  Timeout step = kFirstStep;
  for (;;) {
    auto& buf = scratch(room);
    const int flags = deadline.infinite() ? 0 : IPC_NOWAIT;
    ssize_t n = os::retry([&] { return ::msgrcv(qid, buf.data(), room, type, flags); });
    if (n >= 0) {
      auto* p = reinterpret_cast<const std::byte*>(buf.data() + 1);
      text.assign(p, p + n);
      return buf[0];
    }
    const int err = errno;
    if (err == E2BIG) {  // msgmax was raised since: the message stays queued, make room
      room = std::max(room * 2, max_message(true));
      continue;
    }
    if (err != ENOMSG) return queue_error(err, op, what);
    if (auto p = os::pause_before_retry(deadline, step, op); !p) return std::unexpected(p.error());
    step = std::min(step * 2, kMaxStep);
  }
}

Result<long> peek(int qid, long index, std::vector<std::byte>& text) {
  std::size_t room = max_message();
  for (;;) {
    auto& buf = scratch(room);
    ssize_t n = os::retry([&] { return ::msgrcv(qid, buf.data(), room, index, MSG_COPY | IPC_NOWAIT); });
    if (n >= 0) {
      auto* p = reinterpret_cast<const std::byte*>(buf.data() + 1);
      text.assign(p, p + n);
      return buf[0];
    }
    if (errno == E2BIG) {
      room *= 2;
      continue;
    }
    return queue_error(errno, "peek", "queue");
  }
}

}  // namespace ipcx::sysv::detail
