// The shm:// transport against real processes and hand-made hostile clients (docs/shm.md):
//
// - hostile handshakes, made with raw syscalls: every bad Hello is Errc::protocol for that
//   connection only, and the listener goes on serving real clients;
// - a hostile ring writer with its own mapping of the conversation's memory: impossible
//   positions, lengths and flags are Errc::protocol, never a crash or a hang, also under a
//   hammer of random bytes;
// - peer death for real (SIGKILL of an ipcx-shm-peer process): between messages every complete
//   message arrives, then Errc::closed; in the middle of a message, Errc::protocol;
// - SIGSTOP is not death;
// - the server engine with a client that never reads beside clients that do;
// - nothing left behind (no /dev/shm entry, no socket name, no mapping, no descriptor);
// - who may connect, both ways (as root: a child of another uid, and an impostor listener).
//
// The constants of the layout are spelled out here from docs/shm.md, not taken from the
// sources: a hostile client works from the documentation too.
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/cli_harness.hpp"
#include "server_harness.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::unique_name;
using test::Watchdog;
using test::why;

// ---- the documented protocol (docs/shm.md, "Memory layout (version 3)") ----------------------

constexpr std::uint32_t kMagic = 0x48535849;  // "IXSH"
constexpr std::uint32_t kVersion = 3;
constexpr std::size_t kHeaderBytes = 64;
constexpr std::size_t kControl = 320;
constexpr std::size_t layout_size(std::size_t capacity) { return kHeaderBytes + 2 * (kControl + capacity); }
// Control fields.
constexpr std::size_t kUnused = 0, kHead = 64, kReaderWait = 128, kDataSeq = 132, kWriterWait = 192, kWriterClosed = 256,
                      kReaderClosed = 260;
constexpr std::uint32_t kWakeFd = 2;
// Record flags.
constexpr std::uint32_t kMore = 1, kPadding = 2, kPublished = 4;
// Rings.
constexpr int kToClient = 0, kToListener = 1;
constexpr std::size_t kCap = 4096;  // the smallest ring: every hostile case uses it

struct HelloRecord {
  std::uint32_t magic = kMagic;
  std::uint32_t version = kVersion;
  std::uint64_t capacity = kCap;
};
static_assert(sizeof(HelloRecord) == 16);

std::string shm_url(const std::string& name, std::string_view query = {}) { return fmt::format("shm://{}{}", name, query); }

// The payload of message i, as ipcx-shm-peer builds it.
std::string payload(std::size_t i, std::size_t size) {
  std::string s = fmt::format("msg-{}-", i);
  s.resize(std::max(size, s.size()), static_cast<char>('a' + i % 26));
  s.resize(size);
  return s;
}

// ---- raw syscalls: what a client that ignores ipcx can do -----------------------------------

// Connected to the listener's abstract seqpacket socket "@ipcx-shm.UID.NAME".
Fd raw_connect(const std::string& name, uid_t uid = ::geteuid()) {
  Fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Fd();
  const auto sock = fmt::format("ipcx-shm.{}.{}", uid, name);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path + 1, sock.data(), sock.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + sock.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), len) != 0) return Fd();
  return fd;
}

Fd make_memfd(std::size_t size, unsigned seals) {
  Fd fd(::memfd_create("shm-test-raw", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return Fd();
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return Fd();
  if (seals != 0 && ::fcntl(fd.get(), F_ADD_SEALS, seals) != 0) return Fd();
  return fd;
}
constexpr unsigned kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

// One end of a fresh pipe (a wake pipe as the handshake passes it); the other end is closed.
Fd make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return Fd();
  ::close(p[0]);
  return Fd(p[1]);
}
// Both ends of a fresh non-blocking pipe: [0] read, [1] write.
std::pair<Fd, Fd> make_pipe_pair() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return {};
  return {Fd(p[0]), Fd(p[1])};
}

// One seqpacket record with `fds` as SCM_RIGHTS.
bool send_record(int sock, const void* data, std::size_t n, const std::vector<int>& fds) {
  iovec iov{const_cast<void*>(data), n};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)]{};
  if (!fds.empty()) {
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    auto* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return ::sendmsg(sock, &m, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
}

// A client that did a correct handshake by hand and holds its own mapping of the memory: it
// writes into the rings whatever it likes.
class RawPeer {
 public:
  // `prepare` runs on the fresh memory before Hello is sent (the listener maps it after).
  static std::unique_ptr<RawPeer> connect(const std::string& name, std::size_t cap = kCap,
                                          const std::function<void(RawPeer&)>& prepare = {}, bool hello_now = true) {
    auto p = std::unique_ptr<RawPeer>(new RawPeer);
    p->cap_ = cap;
    p->sock_ = raw_connect(name);
    p->memfd_ = make_memfd(layout_size(cap), kSeals);
    p->data_ = make_pipe();
    p->space_ = make_pipe();
    if (!p->sock_.valid() || !p->memfd_.valid() || !p->data_.valid() || !p->space_.valid()) {
      ADD_FAILURE() << "raw peer setup: " << std::strerror(errno);
      return nullptr;
    }
    void* m = ::mmap(nullptr, layout_size(cap), PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd_.get(), 0);
    if (m == MAP_FAILED) {
      ADD_FAILURE() << "mmap: " << std::strerror(errno);
      return nullptr;
    }
    p->base_ = static_cast<std::byte*>(m);
    const std::uint64_t header[4] = {kMagic | (std::uint64_t{kVersion} << 32), cap, kHeaderBytes,
                                     kHeaderBytes + kControl + cap};
    std::memcpy(p->base_, header, sizeof header);
    if (prepare) prepare(*p);
    if (hello_now && !p->send_hello()) return nullptr;
    return p;
  }
  bool send_hello() {
    const HelloRecord h{.capacity = cap_};
    if (!send_record(sock_.get(), &h, sizeof h, {memfd_.get(), data_.get(), space_.get()})) {
      ADD_FAILURE() << "sending hello: " << std::strerror(errno);
      return false;
    }
    return true;
  }
  // Takes the listener's Setup off the socket (its pipes are closed again): true when it
  // was a proper one.
  bool read_setup(Timeout timeout = std::chrono::seconds(5)) {
    pollfd pf{sock_.get(), POLLIN, 0};
    if (::poll(&pf, 1, static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count())) != 1)
      return false;
    std::uint32_t setup[2]{};
    iovec iov{setup, sizeof setup};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)]{};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    const ssize_t n = ::recvmsg(sock_.get(), &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    std::size_t fds = 0;
    for (auto* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        ::close(fd);
        ++fds;
      }
    }
    return n == static_cast<ssize_t>(sizeof setup) && setup[0] == kMagic && setup[1] == kVersion && fds == 2;
  }
  ~RawPeer() {
    if (base_) ::munmap(base_, layout_size(cap_));
  }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  std::size_t cap() const { return cap_; }
  std::byte* ring(int r) const { return base_ + kHeaderBytes + static_cast<std::size_t>(r) * (kControl + cap_); }
  std::byte* data(int r) const { return ring(r) + kControl; }
  std::atomic_ref<std::uint64_t> u64(int r, std::size_t off) const {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(ring(r) + off));
  }
  std::atomic_ref<std::uint32_t> u32(int r, std::size_t off) const {
    return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(ring(r) + off));
  }
  std::byte* base() const { return base_; }
  std::size_t size() const { return layout_size(cap_); }
  // Passes these as the wake pipes (from `prepare`, before the hello).
  void use_pipes(Fd data, Fd space) {
    data_ = std::move(data);
    space_ = std::move(space);
  }
  int sock() const { return sock_.get(); }

  // The header word at position `pos` of ring `r` (rounded down to a multiple of 8).
  std::atomic_ref<std::uint64_t> header(int r, std::uint64_t pos) const {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data(r) + (pos & (cap_ - 8))));
  }
  // A record header (and payload) at position `pos` of ring 1, not published yet.
  void record(std::uint64_t pos, std::uint32_t length, std::uint32_t flags, std::string_view body = {}) {
    std::byte* at = data(kToListener) + (pos & (cap_ - 1));
    if (!body.empty()) std::memcpy(at + 8, body.data(), body.size());
    if (pos % 8 != 0) {  // no writer's record (a hammer's): bytes, published at once, no atomics
      const std::uint32_t h[2] = {length, flags | kPublished};
      std::memcpy(at, h, std::min<std::size_t>(sizeof h, cap_ - (pos & (cap_ - 1))));
      return;
    }
    header(kToListener, pos).store(length | (std::uint64_t{flags} << 32), std::memory_order_relaxed);
    pending_.push_back(pos);
    end_ = pos + 8 + ((std::uint64_t{length} + 7) & ~std::uint64_t{7});
  }
  // Publishes the records written since the last time as a writer does (the header after the
  // last one zeroed, then each record's published flag, the first last) and wakes the listener.
  void publish() {
    if (!pending_.empty() && end_ - pending_.front() < cap_) header(kToListener, end_).store(0, std::memory_order_relaxed);
    for (auto it = pending_.rbegin(); it != pending_.rend(); ++it)
      header(kToListener, *it).fetch_or(std::uint64_t{kPublished} << 32, std::memory_order_release);
    pending_.clear();
    wake();
  }
  void wake() {
    u32(kToListener, kDataSeq).fetch_add(1);
    (void)::syscall(SYS_futex, ring(kToListener) + kDataSeq, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  }
  // Hangs up: the socket, the memory, the pipes (as a process's exit would).
  void vanish() {
    if (base_) ::munmap(base_, layout_size(cap_));
    base_ = nullptr;
    sock_.reset();
    memfd_.reset();
    data_.reset();
    space_.reset();
  }

 private:
  RawPeer() = default;
  std::size_t cap_ = 0;
  Fd sock_, memfd_, data_, space_;
  std::byte* base_ = nullptr;
  std::vector<std::uint64_t> pending_;  // records not published yet
  std::uint64_t end_ = 0;               // where the last of them ends
};

constexpr std::uint64_t align8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }

// ---- process state: descriptors, mappings, names -------------------------------------------

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

std::size_t mappings_of(const std::string& needle) {
  std::ifstream maps("/proc/self/maps");
  std::size_t n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find(needle) != std::string::npos) ++n;
  return n;
}

bool socket_bound(const std::string& name) {
  std::ifstream f("/proc/net/unix");
  const auto needle = fmt::format("@ipcx-shm.{}.{}", ::geteuid(), name);
  for (std::string line; std::getline(f, line);) {
    auto at = line.find(needle);
    if (at != std::string::npos && at + needle.size() == line.size()) return true;
  }
  return false;
}

std::set<std::string> dev_shm() {
  std::set<std::string> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) out.insert(e.path().filename().string());
  return out;
}

char proc_state(pid_t pid) {
  std::ifstream f(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(f, line)) return '?';
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() ? line[paren + 2] : '?';
}

// ---- helpers -------------------------------------------------------------------------------

Child peer(std::vector<std::string> args) {
  args.insert(args.begin(), IPCX_SHM_PEER);
  return Child::start(std::move(args));
}

// A real ipcx client gets in after whatever happened before, and talks both ways.
void expect_served(Listener& l, const std::string& url) {
  auto c = ipcx::connect(url, {}, 5s);
  ASSERT_TRUE(c) << why(c);
  auto s = l.accept(5s);
  ASSERT_TRUE(s) << why(s);
  IPCX_ASSERT_OK(c->send(as_bytes("from the client"), 5s));
  auto m = s->recv(5s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "from the client");
  IPCX_ASSERT_OK(s->send(as_bytes("from the listener"), 5s));
  m = c->recv(5s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "from the listener");
}

// recv failed with `code` and a detail containing `needle`; the connection is then unusable.
void expect_recv_error(Connection& s, Errc code, std::string_view needle, Timeout timeout = 5s) {
  auto r = s.recv(timeout);
  ASSERT_FALSE(r) << "delivered " << r->size() << " bytes";
  EXPECT_EQ(r.error().code, code) << r.error().message();
  EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
  EXPECT_FALSE(s.is_open());
  IPCX_EXPECT_ERRC(s.recv(1s), Errc::closed);
}

// ============================================================================================
// 1. Hostile handshakes
// ============================================================================================

struct HelloCase {
  std::string what;
  std::function<void(int sock)> send;  // sends the (bad) hello on the raw socket
  std::string detail;                  // part of the listener's error
};

std::vector<HelloCase> bad_hellos(const std::string& scratch_file) {
  auto with = [](HelloRecord h, std::function<Fd()> memfd, std::function<Fd()> data = [] { return make_pipe(); },
                 std::function<Fd()> space = [] { return make_pipe(); }) {
    return [=](int sock) {
      Fd m = memfd(), d = data(), s = space();
      ASSERT_TRUE(m.valid() && d.valid() && s.valid()) << std::strerror(errno);
      ASSERT_TRUE(send_record(sock, &h, sizeof h, {m.get(), d.get(), s.get()})) << std::strerror(errno);
    };
  };
  auto sealed = [](std::size_t size) { return [size] { return make_memfd(size, kSeals); }; };
  std::vector<HelloCase> v;
  v.push_back({"an unsealed memfd", with({}, [] { return make_memfd(layout_size(kCap), 0); }),
               "not sealed against shrinking"});
  v.push_back({"a memfd sealed against growing only",
               with({}, [] { return make_memfd(layout_size(kCap), F_SEAL_GROW | F_SEAL_SEAL); }),
               "not sealed against shrinking"});
  v.push_back({"a memfd sealed but still sealable (no F_SEAL_SEAL)",
               with({}, [] { return make_memfd(layout_size(kCap), F_SEAL_SHRINK | F_SEAL_GROW); }),
               "not sealed against shrinking"});
  v.push_back({"a memfd one page short", with({}, sealed(layout_size(kCap) - 4096)), "not a file of the layout's size"});
  v.push_back({"a memfd a page too long", with({}, sealed(layout_size(kCap) + 4096)), "not a file of the layout's size"});
  v.push_back({"a memfd sized for another capacity", with({}, sealed(layout_size(2 * kCap))),
               "not a file of the layout's size"});
  v.push_back({"a regular file of the right size", with({}, [scratch_file] {
                 Fd f(::open(scratch_file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
                 if (f.valid() && ::ftruncate(f.get(), static_cast<off_t>(layout_size(kCap))) != 0) return Fd();
                 return f;
               }),
               "not sealed"});
  v.push_back({"an eventfd instead of the data pipe",
               with({}, sealed(layout_size(kCap)), [] { return Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }),
               "not a pipe"});
  v.push_back({"a socket instead of the space pipe", with({}, sealed(layout_size(kCap)), [] { return make_pipe(); }, [] {
                 return Fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
               }),
               "not a pipe"});
  v.push_back({"the memfd where a pipe goes", with({}, sealed(layout_size(kCap)), sealed(layout_size(kCap))),
               "not a pipe"});
  v.push_back({"a bad magic", with({.magic = 0x50545448}, sealed(layout_size(kCap))), "magic 0x50545448"});
  v.push_back({"version 1 (eventfd wake-ups)", with({.version = 1}, sealed(layout_size(kCap))), "version 1"});
  v.push_back({"version 2 (a published position, not published records)", with({.version = 2}, sealed(layout_size(kCap))),
               "version 2"});
  v.push_back({"version 4", with({.version = 4}, sealed(layout_size(kCap))), "version 4"});
  v.push_back({"a capacity that is not a power of two", with({.capacity = 5000}, sealed(layout_size(5000))),
               "ring capacity 5000"});
  v.push_back({"a capacity under 4096", with({.capacity = 2048}, sealed(layout_size(2048))), "ring capacity 2048"});
  v.push_back({"a capacity over 1 GiB", with({.capacity = std::uint64_t{1} << 31}, sealed(layout_size(kCap))),
               "ring capacity 2147483648"});
  v.push_back({"a capacity of 0", with({.capacity = 0}, sealed(layout_size(kCap))), "ring capacity 0"});
  v.push_back({"a capacity whose layout overflows", with({.capacity = std::uint64_t{1} << 63}, sealed(layout_size(kCap))),
               "ring capacity"});
  v.push_back({"no descriptors",
               [](int sock) {
                 const HelloRecord h;
                 ASSERT_TRUE(send_record(sock, &h, sizeof h, {}));
               },
               "with 0 descriptors"});
  v.push_back({"two descriptors",
               [](int sock) {
                 const HelloRecord h;
                 Fd m = make_memfd(layout_size(kCap), kSeals), d = make_pipe();
                 ASSERT_TRUE(send_record(sock, &h, sizeof h, {m.get(), d.get()}));
               },
               "with 2 descriptors"});
  v.push_back({"four descriptors",
               [](int sock) {
                 const HelloRecord h;
                 Fd m = make_memfd(layout_size(kCap), kSeals), d = make_pipe(), s = make_pipe(), x = make_pipe();
                 ASSERT_TRUE(send_record(sock, &h, sizeof h, {m.get(), d.get(), s.get(), x.get()}));
               },
               "with 4 descriptors"});
  v.push_back({"a short record",
               [](int sock) {
                 Fd m = make_memfd(layout_size(kCap), kSeals), d = make_pipe(), s = make_pipe();
                 const std::uint32_t h[2] = {kMagic, kVersion};
                 ASSERT_TRUE(send_record(sock, h, sizeof h, {m.get(), d.get(), s.get()}));
               },
               "a record of 8 bytes"});
  v.push_back({"a long record",
               [](int sock) {
                 Fd m = make_memfd(layout_size(kCap), kSeals), d = make_pipe(), s = make_pipe();
                 const std::uint64_t h[4] = {kMagic | (std::uint64_t{kVersion} << 32), kCap, 7, 7};
                 ASSERT_TRUE(send_record(sock, h, sizeof h, {m.get(), d.get(), s.get()}));
               },
               "hello"});
  v.push_back({"text instead of a hello",
               [](int sock) {
                 const char text[] = "GET / HTTP/1.1\r\n\r\n";
                 ASSERT_TRUE(send_record(sock, text, sizeof text - 1, {}));
               },
               "hello"});
  return v;
}

TEST(ShmHostileHello, EachBadHelloIsProtocolAndTheListenerServesTheNextClient) {
  Watchdog wd(90s);
  test::ScratchDir dir;
  const auto name = unique_name("shm-hello");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  expect_served(*l, shm_url(name));  // the descriptors a working conversation leaves (none) aside
  const auto fds_before = open_fds();
  for (const auto& c : bad_hellos(dir.file("not-a-memfd"))) {
    SCOPED_TRACE(c.what);
    for (bool before_accept : {true, false}) {
      SCOPED_TRACE(before_accept ? "hello before accept" : "hello after accept");
      Fd raw = raw_connect(name);
      ASSERT_TRUE(raw.valid()) << std::strerror(errno);
      if (before_accept) c.send(raw.get());
      auto s = l->accept(5s);
      ASSERT_TRUE(s) << why(s);
      if (!before_accept) c.send(raw.get());
      auto r = s->recv(5s);
      ASSERT_FALSE(r) << "a bad hello was taken: " << r->size() << " bytes delivered";
      EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
      EXPECT_NE(r.error().message().find("hello"), std::string::npos) << r.error().message();
      EXPECT_NE(r.error().message().find(c.detail), std::string::npos) << r.error().message();
      EXPECT_FALSE(s->is_open());
      // Its sends fail too, and nothing was written anywhere.
      auto sent = s->send(as_bytes("x"), 1s);
      EXPECT_FALSE(sent) << "a send on a conversation whose hello was refused succeeded";
      IPCX_EXPECT_ERRC(s->recv(1s), Errc::closed);
      s->close();
    }
    expect_served(*l, shm_url(name));
  }
  // Every descriptor a bad hello brought was closed.
  EXPECT_EQ(open_fds(), fds_before);
}

// The memory is the client's: one sealed so that nobody may write it (F_SEAL_WRITE,
// F_SEAL_FUTURE_WRITE) cannot be mapped writable by the listener. That is a bad hello like any
// other: the first recv says so, it does not wait for a hello that already came.
TEST(ShmHostileHello, AWriteSealedMemfdIsProtocolNotATimeout) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-hello");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  for (unsigned seal : {unsigned{F_SEAL_WRITE}, unsigned{F_SEAL_FUTURE_WRITE}}) {
    SCOPED_TRACE(seal == F_SEAL_WRITE ? "F_SEAL_WRITE" : "F_SEAL_FUTURE_WRITE");
    Fd raw = raw_connect(name);
    ASSERT_TRUE(raw.valid());
    Fd m = make_memfd(layout_size(kCap), kSeals | seal), d = make_pipe(), sp = make_pipe();
    ASSERT_TRUE(m.valid()) << std::strerror(errno);
    const HelloRecord h;
    ASSERT_TRUE(send_record(raw.get(), &h, sizeof h, {m.get(), d.get(), sp.get()}));
    auto s = l->accept(5s);
    ASSERT_TRUE(s) << why(s);
    auto r = s->recv(3s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
    EXPECT_FALSE(s->is_open());
  }
  expect_served(*l, shm_url(name));
}

// No hello at all: a client that connects and says nothing keeps its conversation waiting (its
// recv times out: that is only a slow client); one that hangs up is closed, not protocol.
// The wake pipes come from the peer, but the listener uses them through open file descriptions
// of its own: a peer that fills its data pipe, empties its space pipe and makes its ends
// blocking (O_NONBLOCK belongs to a description) cannot make the listener's calls wait, nor
// kill it with SIGPIPE by closing its read ends.
TEST(ShmHostileHello, BlockingOrClosedWakePipesCannotMakeTheListenerWait) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-pipes");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  for (bool close_readers : {false, true}) {
    SCOPED_TRACE(close_readers ? "read ends closed" : "read ends kept, blocking");
    auto [dr, dw] = make_pipe_pair();
    auto [sr, sw] = make_pipe_pair();
    ASSERT_TRUE(dr.valid() && sr.valid());
    const std::string filler(4096, 'x');
    while (::write(dw.get(), filler.data(), filler.size()) > 0) {
    }
    for (int fd : {dr.get(), dw.get(), sr.get(), sw.get()}) ASSERT_EQ(::fcntl(fd, F_SETFL, 0), 0);
    auto peer = RawPeer::connect(name, kCap, [&](RawPeer& p) {
      p.use_pipes(Fd(::dup(dw.get())), Fd(::dup(sw.get())));
      // Asleep both ways, polled: the listener's send pokes the full data pipe, its receive
      // drains the empty space pipe.
      p.u32(kToClient, kReaderWait).store(kWakeFd);
      p.u32(kToListener, kWriterWait).store(kWakeFd);
      p.record(0, 2, 0, "hi");
      p.publish();
    });
    ASSERT_TRUE(peer);
    if (close_readers) {
      dr.reset();
      sr.reset();
    }
    auto s = l->accept(5s);
    ASSERT_TRUE(s) << why(s);
    auto m = s->recv(5s);
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), "hi");
    for (int i = 0; i < 3; ++i) {
      peer->u32(kToClient, kReaderWait).store(kWakeFd);
      auto r = s->send(as_bytes("x"), 5s);
      ASSERT_TRUE(r) << why(r);
    }
    EXPECT_TRUE(s->is_open());
    s->close();
  }
}

TEST(ShmHostileHello, NoHelloIsATimeoutAndAHangUpIsClosed) {
  Watchdog wd(30s);
  const auto name = unique_name("shm-hello");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  Fd silent = raw_connect(name);
  ASSERT_TRUE(silent.valid());
  auto s = l->accept(5s);
  ASSERT_TRUE(s) << why(s);
  IPCX_EXPECT_ERRC(s->recv(200ms), Errc::timeout);
  IPCX_EXPECT_ERRC(s->try_recv(), Errc::would_block);
  EXPECT_TRUE(s->is_open());
  silent.reset();
  auto r = s->recv(5s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
  expect_served(*l, shm_url(name));
}

// The listener's accept() may come before the client's Hello (the client connects, then sends
// it). A send() that succeeded must reach the client without the listener making another call
// on that connection, as over any socket — whether the send waited for the Hello or returned
// before it: here the listener sends a welcome and then only waits (it could be blocked on
// anything else). The Hello comes 200 ms after the accept.
TEST(ShmHandshake, ASendBeforeTheHelloArrivesIsDeliveredWithoutAnotherCall) {
  Watchdog wd(30s);
  const auto name = unique_name("shm-early");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  auto p = RawPeer::connect(name, kCap, {}, /*hello_now=*/false);
  ASSERT_TRUE(p);
  auto s = l->accept(5s);
  ASSERT_TRUE(s) << why(s);
  std::thread late([&] {
    std::this_thread::sleep_for(200ms);
    (void)p->send_hello();
  });
  auto sent = s->send(as_bytes("welcome"), 5s);
  late.join();
  IPCX_ASSERT_OK(sent);
  const bool arrived = test::eventually([&] { return p->header(kToClient, 0).load() != 0; }, 5s);
  EXPECT_TRUE(arrived) << "the welcome never reached the ring (the listener made no other call)";
  if (arrived) {
    const std::uint64_t h = p->header(kToClient, 0).load();
    EXPECT_EQ(h & 0xffffffffu, 7u);
    EXPECT_EQ(h >> 32, kPublished);
    EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(p->data(kToClient)) + 8, 7), "welcome");
  }
  // An explicit flush() writes it in any case: the conversation itself works.
  IPCX_EXPECT_OK(s->flush(5s));
  EXPECT_EQ(p->header(kToClient, 0).load(), 7u | (std::uint64_t{kPublished} << 32));
  EXPECT_EQ(p->header(kToClient, 16).load(), 0u) << "the header after the last record is zero";
}

// ============================================================================================
// 2. A hostile ring writer
// ============================================================================================

struct RingCase {
  std::string what;
  // Writes into ring 1 of `p` (the listener's connection `s` may be used for valid messages
  // first); returns nothing: the expectation is in `code` and `detail`.
  std::function<void(RawPeer& p, Connection& s)> act;
  Errc code;
  std::string detail;
};

std::vector<RingCase> bad_rings() {
  std::vector<RingCase> v;
  v.push_back({"a length near 4 GiB",
               [](RawPeer& p, Connection&) {
                 p.record(0, 0xfffffff8u, 0);
                 p.publish();
               },
               Errc::protocol, "overruns the end of the data area"});
  v.push_back({"a record longer than capacity / 4",
               [](RawPeer& p, Connection&) {
                 p.record(0, 1032, 0);
                 p.publish();
               },
               Errc::protocol, "records carry at most 1024"});
  v.push_back({"unknown flags",
               [](RawPeer& p, Connection&) {
                 p.record(0, 0, 8);
                 p.publish();
               },
               Errc::protocol, "record flags 0xc"});
  v.push_back({"high flag bits with a valid length",
               [](RawPeer& p, Connection&) {
                 p.record(0, 5, 0x80000000u, "hello");
                 p.publish();
               },
               Errc::protocol, "record flags 0x80000004"});
  v.push_back({"more and padding at once",
               [](RawPeer& p, Connection&) {
                 p.record(0, 0, kMore | kPadding);
                 p.publish();
               },
               Errc::protocol, "record flags 0x7"});
  v.push_back({"padding that does not reach the end",
               [](RawPeer& p, Connection&) {
                 p.record(0, 0, kPadding);
                 p.publish();
               },
               Errc::protocol, "padding of 8 bytes does not reach the end"});
  v.push_back({"padding at the start of the data area",
               [](RawPeer& p, Connection&) {
                 p.record(0, static_cast<std::uint32_t>(p.cap() - 8), kPadding);
                 p.publish();
               },
               Errc::protocol, "padding at the start"});
  v.push_back({"an empty record in the middle of a message",
               [](RawPeer& p, Connection&) {
                 p.record(0, 0, kMore);
                 p.publish();
               },
               Errc::protocol, "an empty record in the middle"});
  v.push_back({"a record that crosses the end of the data area",
               [](RawPeer& p, Connection& s) {
                 // Valid messages first, up to 32 bytes before the end.
                 std::uint64_t pos = 0;
                 for (std::uint32_t len : {1016u, 1016u, 1016u, 984u}) {
                   p.record(pos, len, 0, std::string(len, 'v'));
                   pos += 8 + len;
                   p.publish();
                   auto m = s.recv(5s);
                   ASSERT_TRUE(m) << why(m);
                   ASSERT_EQ(m->size(), len);
                 }
                 ASSERT_EQ(pos, p.cap() - 32);
                 p.record(pos, 40, 0, std::string(40, 'x'));
                 p.publish();
               },
               Errc::protocol, "overruns the end of the data area (32 bytes left)"});
  v.push_back({"the writer closes in the middle of a message",
               [](RawPeer& p, Connection&) {
                 p.record(0, 5, kMore, "hello");
                 p.publish();
                 p.u32(kToListener, kWriterClosed).store(1);
                 p.wake();
               },
               Errc::protocol, "closed in the middle of a message"});
  v.push_back({"a message over max_message in records of kMore",
               [](RawPeer& p, Connection&) {
                 // Two records of 1000: over the listener's max_message of 1500.
                 p.record(0, 1000, kMore, std::string(1000, 'a'));
                 p.record(1008, 1000, 0, std::string(1000, 'b'));
                 p.publish();
               },
               Errc::too_large, "the limit is 1500"});
  return v;
}

TEST(ShmHostileRing, ImpossiblePositionsLengthsAndFlagsAreProtocol) {
  Watchdog wd(90s);
  const auto name = unique_name("shm-ring");
  auto l = ipcx::listen(shm_url(name), {.max_message = 1500});
  ASSERT_TRUE(l) << why(l);
  for (const char* mode : {"hybrid", "block", "spin"}) {
    for (const auto& c : bad_rings()) {
      SCOPED_TRACE(fmt::format("{} (listener wait={})", c.what, mode));
      // Each conversation's listener side waits its own way: a second listener per mode.
      auto name_m = unique_name("shm-ring");
      auto lm = ipcx::listen(shm_url(name_m, std::string("?wait=") + mode), {.max_message = 1500});
      ASSERT_TRUE(lm) << why(lm);
      auto p = RawPeer::connect(name_m);
      ASSERT_TRUE(p);
      auto s = lm->accept(5s);
      ASSERT_TRUE(s) << why(s);
      c.act(*p, *s);
      if (HasFatalFailure()) return;
      expect_recv_error(*s, c.code, c.detail);
      // Closing marks the ring: the hostile writer is told that nothing more will be read.
      s->close();
      EXPECT_EQ(p->u32(kToListener, kReaderClosed).load(), 1u) << "reader_closed";
      expect_served(*lm, shm_url(name_m));
    }
  }
  expect_served(*l, shm_url(name));
}

// The listener writes ring 0: a hostile reader's head there is checked as well.
TEST(ShmHostileRing, AnImpossibleReaderPositionFailsTheListenersSend) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-ring");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  // Ahead of everything written (the writer's own position is at most 4096 here).
  for (std::uint64_t head : {std::uint64_t{1} << 40, std::uint64_t{4096 + 8}, ~std::uint64_t{0}}) {
    SCOPED_TRACE(fmt::format("head {}", head));
    auto p = RawPeer::connect(name);
    ASSERT_TRUE(p);
    auto s = l->accept(5s);
    ASSERT_TRUE(s) << why(s);
    // Some messages go in while the ring has room (the writer has no reason to look yet).
    p->u64(kToClient, kHead).store(head);
    Result<void> r;
    int sent = 0;
    // Records of 504 bytes: after eight, 56 bytes are free as the writer last saw it (it keeps 8
    // for the zeroed header), room for a small message that must be refused all the same (the
    // ring is unusable once refused).
    for (; sent < 64 && r; ++sent) r = s->send(std::vector<std::byte>(496), 2s);
    ASSERT_FALSE(r) << "64 sends of 496 bytes into a 4096-byte ring whose reader is impossible all succeeded";
    EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
    EXPECT_NE(r.error().message().find("reader's position"), std::string::npos) << r.error().message();
    EXPECT_LE(sent, 10);
    IPCX_EXPECT_ERRC(s->send(as_bytes("again"), 1s), Errc::protocol);
    IPCX_EXPECT_ERRC(s->send({}, 1s), Errc::protocol);
  }
  expect_served(*l, shm_url(name));
}

// The client makes the memory and so chooses where positions start. Starting the listener's
// ring (ring 0) at a position that is not a multiple of 8 must not make the listener write
// outside ring 0 (docs/shm.md: a peer "cannot make the other side read or write outside"; the
// ring's promise, src/shm/ring.hpp: "never a read or write outside the ring").
TEST(ShmHostileRing, AnUnalignedStartDoesNotMakeTheListenerWriteOutsideItsRing) {
  Watchdog wd(30s);
  const auto name = unique_name("shm-ring");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  auto p = RawPeer::connect(name, kCap, [](RawPeer& fresh) {
    fresh.u64(kToClient, kUnused).store(kCap - 4);
    fresh.u64(kToClient, kHead).store(kCap - 4);
  });
  ASSERT_TRUE(p);
  auto s = l->accept(5s);
  ASSERT_TRUE(s) << why(s);
  std::vector<std::byte> ring1_before(p->ring(kToListener), p->ring(kToListener) + kControl + kCap);
  auto r = s->send(as_bytes(std::string(100, 'z')), 1s);
  // Refusing the position (protocol) or writing inside ring 0 are both fine; touching ring 1 is not.
  if (!r) {
    EXPECT_EQ(r.error().code, Errc::protocol) << r.error().message();
  }
  std::vector<std::byte> ring1_after(p->ring(kToListener), p->ring(kToListener) + kControl + kCap);
  EXPECT_TRUE(ring1_before == ring1_after) << "the listener wrote into ring 1";
}

// A thread writes random values all over the conversation's memory while the listener reads
// and writes: every call ends with a message or one of the documented errors, never a crash
// or a hang (the watchdog), and the listener serves a normal client after.
TEST(ShmHostileRing, RandomBytesHammerNeverCrashesOrHangs) {
  Watchdog wd(90s);
  const auto name = unique_name("shm-hammer");
  auto l = ipcx::listen(shm_url(name, "?spin=20"), {.max_message = 1 << 20});
  ASSERT_TRUE(l) << why(l);
  std::map<std::string, int> outcomes;
  int conversations = 0;
  std::uint64_t seed = 0x9e3779b97f4a7c15ULL ^ static_cast<std::uint64_t>(::getpid());
  const auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    auto p = RawPeer::connect(name);
    ASSERT_TRUE(p);
    auto s = l->accept(5s);
    ASSERT_TRUE(s) << why(s);
    ++conversations;
    std::atomic<bool> stop{false};
    // Three kinds of conversation in turn: chaos (random values everywhere, as fast as the
    // thread goes), and a mostly proper writer that goes wrong one time in 500, or in 20000
    // (so that the reader gets deep into the ring, across wraps, before it does).
    const int kind = conversations % 3;
    std::thread hammer([&, seed = seed++, kind] {
      std::uint64_t x = seed | 1;
      auto next = [&] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
      };
      const std::uint64_t bad_one_in = kind == 1 ? 500 : 20000;
      std::uint64_t tail = 0;  // where this "writer" is in ring 1, as far as it knows
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t r = next();
        const int ring = (r & 1) ? kToListener : kToClient;
        const unsigned what = kind == 0 ? (r >> 1) % 16 : (next() % bad_one_in == 0 ? 6 + (r >> 1) % 10 : 0);
        switch (what) {
          case 0: case 1: case 2: case 3: case 4: case 5: {
            // A proper writer of ring 1 (waits for room), one time in eight a wrong length,
            // flag or position when in chaos.
            const std::uint64_t pos = tail & (kCap - 1);
            std::uint32_t len = static_cast<std::uint32_t>((r >> 8) % 1025);
            std::uint32_t flags = ((r >> 20) % 3 == 0) ? kMore : 0;
            std::uint64_t size = 8 + align8(len);
            if (pos + size > kCap) {  // pad to the end first
              len = static_cast<std::uint32_t>(kCap - pos - 8);
              flags = kPadding;
              size = kCap - pos;
            }
            if (kind != 0 && tail + size + 8 - p->u64(kToListener, kHead).load() > kCap) {
              std::this_thread::yield();
              break;
            }
            if (kind == 0 && (r >> 24) % 8 == 0) {
              switch ((r >> 27) % 4) {
                case 0: len = static_cast<std::uint32_t>(next()); break;
                case 1: flags = static_cast<std::uint32_t>(next() % 16); break;  // kPublished or not
                case 2: size += 8 * ((r >> 30) % 4) - 8; break;
                default: tail = next() % (tail + 2 * kCap + 1); break;
              }
            }
            p->record(tail, len, flags);
            tail += size;
            p->publish();
            break;
          }
          case 6: case 7:  // a plausible published header where the listener reads next, or a zero one
            p->header(kToListener, p->u64(kToListener, kHead).load())
                .store((r & 2) ? ((r >> 20) % 1100) | (std::uint64_t{kPublished | ((r >> 40) % 4)} << 32) : 0,
                       std::memory_order_release);
            break;
          case 8:  // any head, or the unused word
            p->u64(ring, (r & 2) ? kUnused : kHead).store(next(), std::memory_order_release);
            break;
          case 9:  // a plausible record header somewhere
            p->header(ring, 8 * ((r >> 8) % (kCap / 8)))
                .store(((r >> 20) % 1100) | (((r >> 40) % 8) << 32), std::memory_order_relaxed);
            break;
          case 10:  // the wait and closed words
            p->u32(ring, kReaderWait + 4 * ((r >> 8) % 2) + 64 * ((r >> 9) % 3)).store(static_cast<std::uint32_t>(next()));
            break;
          case 11:  // futex wakes, as a writer would
            p->wake();
            break;
          case 12: case 13: {  // ring 0's reader: takes what the listener published, one time in eight more
            std::uint64_t h = p->u64(kToClient, kHead).load();
            for (int k = 0; k < 64; ++k) {
              const std::uint64_t w = p->header(kToClient, h).load(std::memory_order_acquire);
              if (((w >> 32) & kPublished) == 0) break;
              h += 8 + align8(w & 0xffffffffu);
            }
            if ((r >> 8) % 8 == 0) h += 8 * ((r >> 11) % 8);
            p->u64(kToClient, kHead).store(h, std::memory_order_release);
            break;
          }
          default: {  // anything anywhere in the memory, the header included
            const std::size_t off = 8 * ((r >> 8) % (p->size() / 8));
            std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(p->base() + off))
                .store(next(), std::memory_order_relaxed);
            break;
          }
        }
      }
    });
    bool over = false;
    for (int i = 0; i < 2000 && !over && std::chrono::steady_clock::now() < until; ++i) {
      Result<void> r;
      Message m;
      switch (i % 4) {
        case 0: r = s->recv(m, 2ms); break;
        case 1: r = s->recv(m, Timeout::zero()); break;
        case 2: {
          pollfd pf{s->native_handle().value_or(-1), POLLIN, 0};
          (void)::poll(&pf, 1, 1);
          r = s->recv(m, Timeout::zero());
          break;
        }
        default: r = s->send(std::vector<std::byte>(i * 7 % 3000), 1ms); break;
      }
      if (r) {
        ++outcomes[i % 4 == 3 ? "sent" : "message"];
        continue;
      }
      const auto code = r.error().code;
      ++outcomes[code == Errc::protocol ? "protocol" : std::string(to_string(code))];
      EXPECT_TRUE(code == Errc::timeout || code == Errc::would_block || code == Errc::protocol || code == Errc::closed ||
                  code == Errc::too_large)
          << "unexpected " << r.error().message();
      over = !(code == Errc::timeout || code == Errc::would_block);
    }
    stop = true;
    hammer.join();
  }
  std::string summary;
  for (auto& [k, n] : outcomes) summary += fmt::format("{} {}, ", k, n);
  std::fprintf(stderr, "hammer: %d conversations: %s\n", conversations, summary.c_str());
  EXPECT_GT(conversations, 0);
  expect_served(*l, shm_url(name));
}

// A client that left a record unread on the socket (the handshake's socket carries nothing after
// the hello) and vanished is still seen to be gone: its socket's end is what says so.
TEST(ShmHostileRing, APeerThatVanishesWithUnreadSocketDataIsClosed) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-vanish");
  auto l = ipcx::listen(shm_url(name, "?wait=block"));
  ASSERT_TRUE(l) << why(l);
  auto p = RawPeer::connect(name);
  ASSERT_TRUE(p);
  auto s = l->accept(5s);
  ASSERT_TRUE(s) << why(s);
  // The Setup is read, as a client does: the socket's end then carries no error, only a hang-up.
  ASSERT_TRUE(p->read_setup());
  const char extra = 'x';
  ASSERT_TRUE(send_record(p->sock(), &extra, 1, {}));
  p->record(0, 5, 0, "hello");
  p->publish();
  auto m = s->recv(5s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "hello");
  p->vanish();
  auto r = s->recv(10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
}

// ============================================================================================
// 3. Peer death for real
// ============================================================================================

struct DeathCase {
  std::string listener_query;  // how the listener waits
  std::string client_query;    // how the child waits
  std::string child_then;      // idle (pause) or recv (blocked in recv) when killed
  bool polled;                 // the listener polls native_handle() and calls try_recv()
};

// Every complete message the child sent before SIGKILL is delivered, in order, then
// Errc::closed — within recv's own (generous) timeout, not at its end.
TEST(ShmPeerDeath, KilledBetweenMessagesAllCompleteMessagesThenClosed) {
  Watchdog wd(110s);
  constexpr std::size_t kN = 100, kSize = 1000;
  for (const DeathCase& dc : {DeathCase{"?wait=block", "?wait=hybrid", "idle", false},
                              DeathCase{"?wait=spin", "?wait=block", "recv", false},
                              DeathCase{"?wait=hybrid", "?wait=spin", "recv", false},
                              DeathCase{"", "?wait=block", "recv", true}, DeathCase{"", "", "idle", true}}) {
    SCOPED_TRACE(fmt::format("listener {} client {} child {} {}", dc.listener_query, dc.client_query, dc.child_then,
                             dc.polled ? "polled" : "blocking"));
    const auto name = unique_name("shm-death");
    auto l = ipcx::listen(shm_url(name, dc.listener_query));
    ASSERT_TRUE(l) << why(l);
    auto child = peer({"send", shm_url(name, dc.client_query), std::to_string(kN), std::to_string(kSize), dc.child_then});
    auto s = l->accept(10s);
    ASSERT_TRUE(s) << why(s);
    ASSERT_TRUE(child.wait_stdout(fmt::format("sent {}", kN), 20s)) << child.out() << child.err();
    // Let it settle into its wait (pause, or recv's spin/futex sleep) before the kill.
    std::this_thread::sleep_for(50ms);
    child.signal(SIGKILL);
    EXPECT_EQ(child.finish(), 128 + SIGKILL) << child.err();
    std::size_t got = 0;
    std::optional<Error> end;
    if (!dc.polled) {
      for (;;) {
        // Each recv's timeout is a hang detector: the end must come as closed, not as timeout.
        auto m = s->recv(10s);
        if (!m) {
          end = m.error();
          break;
        }
        ASSERT_LT(got, kN) << "more messages than were sent";
        ASSERT_EQ(m->text(), payload(got, kSize)) << "message " << got;
        ++got;
      }
    } else {
      const int fd = s->native_handle().value_or(-1);
      ASSERT_GE(fd, 0);
      for (int rounds = 0; !end && rounds < 10000; ++rounds) {
        pollfd pf{fd, POLLIN, 0};
        ASSERT_EQ(::poll(&pf, 1, 10000), 1) << "the descriptor did not poll readable after the peer's death";
        for (;;) {
          auto m = s->try_recv();
          if (!m) {
            if (m.error().code != Errc::would_block) end = m.error();
            break;
          }
          ASSERT_LT(got, kN);
          ASSERT_EQ(m->text(), payload(got, kSize)) << "message " << got;
          ++got;
        }
      }
    }
    EXPECT_EQ(got, kN);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->code, Errc::closed) << end->message();
    // The listener's sends fail too once its ring is full (it cannot hang on a dead reader).
    Result<void> sent;
    for (int i = 0; i < 1000 && sent; ++i) sent = s->send(std::vector<std::byte>(1000), 10s);
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, Errc::closed) << sent.error().message();
  }
}

// More messages than the ring holds, read while they come; the kill then finds the child idle.
TEST(ShmPeerDeath, KilledAfterMoreThanARingfulEverythingDeliveredThenClosed) {
  Watchdog wd(60s);
  constexpr std::size_t kN = 2000, kSize = 300;
  const auto name = unique_name("shm-death");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  auto child = peer({"send", shm_url(name, "?ring=4096"), std::to_string(kN), std::to_string(kSize), "idle"});
  auto s = l->accept(10s);
  ASSERT_TRUE(s) << why(s);
  for (std::size_t i = 0; i < kN; ++i) {
    auto m = s->recv(10s);
    ASSERT_TRUE(m) << "message " << i << ": " << why(m) << "\n" << child.err();
    ASSERT_EQ(m->text(), payload(i, kSize)) << "message " << i;
  }
  ASSERT_TRUE(child.wait_stdout(fmt::format("sent {}", kN), 10s)) << child.out() << child.err();
  child.signal(SIGKILL);
  (void)child.finish();
  auto r = s->recv(10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
}

// A 1 MiB message over a 4096-byte ring, the listener not reading: the child is stuck in the
// middle of it when killed. The complete messages before it arrive; the cut one is protocol.
TEST(ShmPeerDeath, KilledInTheMiddleOfAMessageIsProtocolAfterTheCompleteOnes) {
  Watchdog wd(60s);
  for (const char* query : {"?wait=block", "?wait=spin", ""}) {
    SCOPED_TRACE(fmt::format("listener {}", query));
    const auto name = unique_name("shm-death");
    auto l = ipcx::listen(shm_url(name, query));
    ASSERT_TRUE(l) << why(l);
    auto child = peer({"partial", shm_url(name, "?ring=4096&wait=block"), "3", std::to_string(1 << 20)});
    auto s = l->accept(10s);
    ASSERT_TRUE(s) << why(s);
    ASSERT_TRUE(child.wait_stdout("stuck", 20s)) << child.out() << child.err();
    child.signal(SIGKILL);
    EXPECT_EQ(child.finish(), 128 + SIGKILL) << child.err();
    for (std::size_t i = 0; i < 3; ++i) {
      auto m = s->recv(10s);
      ASSERT_TRUE(m) << "message " << i << ": " << why(m);
      EXPECT_EQ(m->text(), payload(i, 16));
    }
    expect_recv_error(*s, Errc::protocol, "died in the middle of a message", 10s);
  }
}

// The listener's process dies: a client blocked in recv, in each wait mode, learns it.
TEST(ShmPeerDeath, KilledListenerIsClosedForItsClient) {
  Watchdog wd(110s);
  for (const char* query : {"?wait=block", "?wait=spin", "?wait=hybrid"}) {
    SCOPED_TRACE(fmt::format("client {}", query));
    const auto name = unique_name("shm-death");
    auto server = peer({"serve", shm_url(name)});
    ASSERT_TRUE(server.wait_stdout("listening", 10s)) << server.err();
    auto c = ipcx::connect(shm_url(name, query), {}, 5s);
    ASSERT_TRUE(c) << why(c);
    auto m = c->recv(10s);
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), "welcome");
    ASSERT_TRUE(server.wait_stdout("served", 10s));
    server.signal(SIGKILL);
    (void)server.finish();
    auto r = c->recv(10s);
    ASSERT_FALSE(r) << "a message from a dead listener";
    EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
  }
}

// Same, the client only sending: it fills the ring (nobody reads), then learns the listener
// is gone instead of waiting for space forever.
TEST(ShmPeerDeath, KilledListenerFailsTheClientsSends) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-death");
  auto server = peer({"serve", shm_url(name)});
  ASSERT_TRUE(server.wait_stdout("listening", 10s)) << server.err();
  auto c = ipcx::connect(shm_url(name, "?ring=4096&wait=block"), {}, 5s);
  ASSERT_TRUE(c) << why(c);
  ASSERT_TRUE(server.wait_stdout("served", 10s));
  server.signal(SIGKILL);
  (void)server.finish();
  Result<void> sent;
  int n = 0;
  for (; n < 100 && sent; ++n) sent = c->send(std::vector<std::byte>(1000), 10s);
  ASSERT_FALSE(sent) << "100 sends into a 4096-byte ring of a dead listener succeeded";
  EXPECT_EQ(sent.error().code, Errc::closed) << sent.error().message();
}

// ============================================================================================
// 4. SIGSTOP is not death (takes 5 s: the suite name says Slow; ctest label "slow")
// ============================================================================================

TEST(ShmTransportSlow, AStoppedPeerIsNotTakenForDead) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-stop");
  auto l = ipcx::listen(shm_url(name, "?wait=block"));
  ASSERT_TRUE(l) << why(l);
  auto child = peer({"wait-go", shm_url(name, "?wait=block")});
  auto s = l->accept(10s);
  ASSERT_TRUE(s) << why(s);
  auto hello = s->recv(10s);
  ASSERT_TRUE(hello) << why(hello) << child.err();
  EXPECT_EQ(hello->text(), "hello");
  ASSERT_TRUE(child.wait_stdout("ready", 10s)) << child.err();

  std::atomic<bool> returned{false};
  Result<Message> got = fail(Errc::system, "not yet");
  test::Worker reader(*s, [&] {
    got = s->recv(20s);
    returned = true;
  });
  child.signal(SIGSTOP);
  ASSERT_TRUE(test::eventually([&] { return proc_state(child.pid()) == 'T'; }, 10s)) << proc_state(child.pid());
  std::this_thread::sleep_for(2500ms);
  EXPECT_FALSE(returned.load()) << "recv returned while the peer was stopped: " << why(got);
  // Sending to a stopped peer works (the ring has room), and does not end anything either.
  IPCX_EXPECT_OK(s->send(as_bytes("go"), 5s));
  std::this_thread::sleep_for(2500ms);
  EXPECT_FALSE(returned.load()) << "recv returned while the peer was stopped: " << why(got);
  EXPECT_EQ(proc_state(child.pid()), 'T');
  child.signal(SIGCONT);
  reader.join();
  ASSERT_TRUE(got) << why(got) << child.err();
  EXPECT_EQ(got->text(), "after the stop");
  IPCX_EXPECT_ERRC(s->recv(10s), Errc::closed);
  EXPECT_EQ(child.finish(), 0) << child.err();
}

// ============================================================================================
// 5. The server engine: one client never reads, the others are served
// ============================================================================================

constexpr std::size_t kReply = 1000;  // one record of a 4096-byte ring

Result<Server> shm_server(Listener l, ServerOptions so) {
  Server::Handlers h;
  h.on_message = [](Session& s, Message& m) {
    if (m.text() == "big") (void)s.send(std::vector<std::byte>(kReply, std::byte{'B'}));
    else (void)s.send(m.bytes());
  };
  auto srv = Server::create(std::move(h), so);
  if (!srv) return srv;
  if (auto r = srv->add_listener(std::move(l)); !r) return std::unexpected(r.error());
  return srv;
}

// Sends "big" requests without ever reading until one send cannot go (the server stopped
// reading it, or dropped it). Returns that send's error.
Error flood_unread(Connection& idle) {
  for (int i = 0; i < 100000; ++i) {
    auto r = idle.send(as_bytes("big"), 300ms);
    if (!r) return r.error();
  }
  return Error{};
}

std::vector<Child> echo_clients(const std::string& url, int n, int rounds) {
  std::vector<Child> v;
  for (int i = 0; i < n; ++i) v.push_back(peer({"echo", url, std::to_string(rounds), std::to_string(100 + 37 * i)}));
  return v;
}

TEST(ShmServer, AClientThatNeverReadsIsPausedWhileTheOthersAreServed) {
  Watchdog wd(110s);
  const auto name = unique_name("shm-srv");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  auto srv = shm_server(std::move(*l), {.max_queued = 16 << 10, .slow_peer = SlowPeer::pause, .send_timeout = forever});
  ASSERT_TRUE(srv) << why(srv);
  test::ServerThread st(std::move(*srv));
  auto idle = ipcx::connect(shm_url(name, "?ring=4096"), {}, 5s);
  ASSERT_TRUE(idle) << why(idle);
  const auto stuck = flood_unread(*idle);
  ASSERT_EQ(stuck.code, Errc::timeout) << "the client that never reads was not stopped: " << stuck.message();
  auto clients = echo_clients(shm_url(name), 4, 300);
  for (auto& c : clients) EXPECT_EQ(c.finish(60s), 0) << c.err();
  auto stats = st.stats();
  EXPECT_EQ(stats.dropped_send_timeout + stats.dropped_slow + stats.dropped_other + stats.dropped_protocol, 0u);
  EXPECT_TRUE(st.wait_stats([](const ServerStats& s) { return s.connections == 1; }, 30s))
      << "the stuck client is still there, the others closed: " << st.stats().connections;
  // The stuck one reads at last: its replies are there, and it is served again.
  for (int i = 0; i < 4; ++i) {
    auto m = idle->recv(10s);
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->size(), kReply);
  }
}

TEST(ShmServer, AClientThatNeverReadsIsDroppedUnderSlowPeerDrop) {
  Watchdog wd(110s);
  const auto name = unique_name("shm-srv");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  auto srv = shm_server(std::move(*l), {.max_queued = 16 << 10, .slow_peer = SlowPeer::drop});
  ASSERT_TRUE(srv) << why(srv);
  test::ServerThread st(std::move(*srv));
  auto clients = echo_clients(shm_url(name), 4, 500);
  auto idle = ipcx::connect(shm_url(name, "?ring=4096"), {}, 5s);
  ASSERT_TRUE(idle) << why(idle);
  const auto dropped = flood_unread(*idle);
  EXPECT_EQ(dropped.code, Errc::closed) << dropped.message();
  EXPECT_TRUE(st.wait_stats([](const ServerStats& s) { return s.dropped_slow == 1; }, 30s)) << st.stats().dropped_slow;
  for (auto& c : clients) EXPECT_EQ(c.finish(60s), 0) << c.err();
  // What the ring held when it was dropped is read, then the end (whole records: never protocol).
  Result<Message> m;
  int replies = 0;
  while ((m = idle->recv(10s))) {
    EXPECT_EQ(m->size(), kReply);
    ++replies;
  }
  EXPECT_EQ(m.error().code, Errc::closed) << m.error().message() << " after " << replies << " replies";
  EXPECT_EQ(st.stats().dropped_slow, 1u);
}

TEST(ShmServer, AClientThatNeverReadsIsDroppedAtTheSendTimeout) {
  Watchdog wd(110s);
  const auto name = unique_name("shm-srv");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  auto srv = shm_server(std::move(*l), {.max_queued = 16 << 10, .slow_peer = SlowPeer::pause, .send_timeout = 2s});
  ASSERT_TRUE(srv) << why(srv);
  test::ServerThread st(std::move(*srv));
  auto idle = ipcx::connect(shm_url(name, "?ring=4096"), {}, 5s);
  ASSERT_TRUE(idle) << why(idle);
  (void)flood_unread(*idle);
  EXPECT_TRUE(st.wait_stats([](const ServerStats& s) { return s.dropped_send_timeout == 1; }, 30s))
      << st.stats().dropped_send_timeout;
  Result<Message> m;
  while ((m = idle->recv(10s))) EXPECT_EQ(m->size(), kReply);
  EXPECT_EQ(m.error().code, Errc::closed) << m.error().message();
  auto clients = echo_clients(shm_url(name), 2, 100);
  for (auto& c : clients) EXPECT_EQ(c.finish(60s), 0) << c.err();
}

// A dead client of the engine (its process killed between messages) goes; the engine does not
// keep it, nor spin on it.
TEST(ShmServer, AKilledClientIsClosedByTheEngine) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-srv");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  auto srv = shm_server(std::move(*l), {});
  ASSERT_TRUE(srv) << why(srv);
  test::ServerThread st(std::move(*srv));
  auto child = peer({"send", shm_url(name), "10", "100", "idle"});
  ASSERT_TRUE(child.wait_stdout("sent 10", 10s)) << child.err();
  ASSERT_TRUE(st.wait_stats([](const ServerStats& s) { return s.messages_in == 10; }, 10s)) << st.stats().messages_in;
  child.signal(SIGKILL);
  (void)child.finish();
  EXPECT_TRUE(st.wait_stats([](const ServerStats& s) { return s.connections == 0; }, 10s)) << st.stats().connections;
}

// The same with a client that leaves a record unread on the socket before it vanishes.
TEST(ShmServer, AVanishedClientWithUnreadSocketDataIsClosedByTheEngine) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-srv");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  auto srv = shm_server(std::move(*l), {});
  ASSERT_TRUE(srv) << why(srv);
  test::ServerThread st(std::move(*srv));
  auto p = RawPeer::connect(name);
  ASSERT_TRUE(p);
  ASSERT_TRUE(st.wait_stats([](const ServerStats& s) { return s.connections == 1; }, 10s));
  ASSERT_TRUE(p->read_setup());
  const char extra = 'x';
  ASSERT_TRUE(send_record(p->sock(), &extra, 1, {}));
  p->vanish();
  EXPECT_TRUE(st.wait_stats([](const ServerStats& s) { return s.connections == 0; }, 10s))
      << "the engine still holds the vanished client";
}

// ============================================================================================
// 6. Nothing left behind
// ============================================================================================

TEST(ShmLeftovers, NothingRemainsAfterTheConversationsEnd) {
  Watchdog wd(60s);
  const auto name = unique_name("shm-left");
  const auto shm_before = dev_shm();
  const auto fds_before = open_fds();
  const auto maps_before = mappings_of("memfd:ipcx-shm");
  {
    auto l = ipcx::listen(shm_url(name));
    ASSERT_TRUE(l) << why(l);
    EXPECT_TRUE(socket_bound(name)) << "the check below would prove nothing";
    std::vector<Connection> clients, served;
    for (const char* q : {"", "?wait=spin", "?wait=block&ring=4096"}) {
      auto c = ipcx::connect(shm_url(name, q), {}, 5s);
      ASSERT_TRUE(c) << why(c);
      auto s = l->accept(5s);
      ASSERT_TRUE(s) << why(s);
      IPCX_ASSERT_OK(c->send(std::vector<std::byte>(1000), 10s));
      auto m = s->recv(10s);
      ASSERT_TRUE(m) << why(m);
      clients.push_back(std::move(*c));
      served.push_back(std::move(*s));
    }
    EXPECT_GT(mappings_of("memfd:ipcx-shm"), maps_before) << "the check below would prove nothing";
    // And a child process killed in the middle of a message.
    auto child = peer({"partial", shm_url(name, "?ring=4096"), "1", std::to_string(1 << 20)});
    auto s = l->accept(10s);
    ASSERT_TRUE(s) << why(s);
    ASSERT_TRUE(child.wait_stdout("stuck", 20s)) << child.err();
    child.signal(SIGKILL);
    (void)child.finish();
    (void)s->recv(10s);
    (void)s->recv(10s);
    for (auto& c : clients) c.close();
    for (auto& c : served) c.close();
    l->close();
  }
  EXPECT_FALSE(socket_bound(name)) << "the listener's abstract socket is still bound";
  for (const auto& e : dev_shm()) {
    if (shm_before.contains(e)) continue;
    EXPECT_EQ(e.find(name), std::string::npos) << "/dev/shm/" << e;
    EXPECT_EQ(e.find("ipcx-shm"), std::string::npos) << "/dev/shm/" << e;
  }
  EXPECT_EQ(mappings_of("memfd:ipcx-shm"), maps_before) << "a conversation's memory is still mapped";
  EXPECT_EQ(open_fds(), fds_before) << "descriptors leaked";
}

// ============================================================================================
// 7. Who may connect (as root: processes of another uid)
// ============================================================================================

constexpr uid_t kNobody = 65534;

TEST(ShmAccess, AnotherUsersClientIsRefusedAndCounted) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a child as uid " << kNobody;
  Watchdog wd(60s);
  const auto name = unique_name("shm-access");
  auto l = ipcx::listen(shm_url(name));
  ASSERT_TRUE(l) << why(l);
  // In its own namespace there is no such listener.
  auto own = peer({"as-user", std::to_string(kNobody), shm_url(name)});
  EXPECT_EQ(own.finish(), 0) << own.err();
  EXPECT_NE(own.out().find(fmt::format("connect: {}:", to_string(Errc::connection_refused))), std::string::npos)
      << own.out() << own.err();
  // In ours (user=0) it reaches the socket, and the listener refuses it at accept.
  auto other = peer({"as-user", std::to_string(kNobody), shm_url(name, "?user=0")});
  for (int i = 0; i < 200 && other.out().find(": ") == std::string::npos; ++i) {
    auto s = l->accept(100ms);
    ASSERT_FALSE(s) << "a client of uid " << kNobody << " was accepted";
    EXPECT_EQ(s.error().code, Errc::timeout) << s.error().message();
    (void)other.wait_stdout(": ", 1ms);
  }
  EXPECT_EQ(other.finish(), 0) << other.err();
  const bool refused = other.out().find(fmt::format("recv: {}:", to_string(Errc::closed))) != std::string::npos ||
                       other.out().find(fmt::format("connect: {}:", to_string(Errc::closed))) != std::string::npos ||
                       other.out().find(fmt::format("connect: {}:", to_string(Errc::permission_denied))) != std::string::npos;
  EXPECT_TRUE(refused) << other.out() << other.err();
  EXPECT_EQ(l->stats().refused, 1u);
  EXPECT_EQ(l->stats().accepted, 0u);
  expect_served(*l, shm_url(name));
  EXPECT_EQ(l->stats().accepted, 1u);
}

// Anyone may bind a free abstract name: a process of another uid squatting ours is not
// mistaken for our listener (the client checks who serves the socket).
TEST(ShmAccess, AnImpostorListenerOfAnotherUserIsRefusedByTheClient) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a child as uid " << kNobody;
  Watchdog wd(30s);
  const auto name = unique_name("shm-access");
  auto impostor = peer({"impostor", std::to_string(kNobody), fmt::format("ipcx-shm.{}.{}", ::geteuid(), name)});
  ASSERT_TRUE(impostor.wait_stdout("bound", 10s)) << impostor.err();
  auto c = ipcx::connect(shm_url(name), {}, 5s);
  ASSERT_FALSE(c) << "connected to a listener of uid " << kNobody;
  EXPECT_EQ(c.error().code, Errc::permission_denied) << c.error().message();
  EXPECT_NE(c.error().message().find(fmt::format("uid {}", kNobody)), std::string::npos) << c.error().message();
  // Nor can our own listener take the name while the impostor holds it.
  IPCX_EXPECT_ERRC(ipcx::listen(shm_url(name)), Errc::address_in_use);
}

}  // namespace
}  // namespace ipcx
