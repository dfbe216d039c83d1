// What listeners do to the filesystem: stale socket files are replaced, live servers are never
// robbed of their address, created sockets/FIFOs get the requested mode whatever the umask,
// and they are removed again (only while they are still ours). Plus per-transport specifics
// that do not fit the typed suite (FIFO conversations, pipe: listener, tcp port 0).
#include <cstring>
#include <fstream>
#include <future>
#include <thread>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using test::why;

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}
unsigned mode_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 07777 + 1;
  return st.st_mode & 07777;
}
ino_t inode_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_ino;
}

// Sets the umask for a scope (it is process-wide: these tests start no threads meanwhile).
class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t m) : old_(::umask(m)) {}
  ~UmaskGuard() { ::umask(old_); }

 private:
  mode_t old_;
};

// A socket file whose server is gone: bound, then closed without unlink.
void make_stale_socket(const std::string& path, int type) {
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  ::close(fd);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  ASSERT_TRUE(S_ISSOCK(st.st_mode));
}

// Connects to `url`, sends `text`, and checks the listener delivers it. Tolerates connections
// that end without a message first (a failed second listen() probes the address by
// connecting, which a live server sees as a connection that closes at once).
void expect_serves(Listener& l, const std::string& url, const std::string& text) {
  auto c = ipcx::connect(url, {}, 5s);
  ASSERT_TRUE(c) << why(c);
  IPCX_ASSERT_OK(c->send(as_bytes(text)));
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto s = l.accept(10s);
    ASSERT_TRUE(s) << why(s);
    auto m = s->recv(10s);
    if (!m && m.error().code == Errc::closed) continue;  // a prober's connection
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), text);
    return;
  }
  ADD_FAILURE() << "the message never arrived";
}

class SocketFiles : public ::testing::TestWithParam<const char*> {
 protected:
  std::string url(const std::string& path) const { return std::string(GetParam()) + "://" + path; }
  int type() const { return std::string(GetParam()) == "unix+seq" ? SOCK_SEQPACKET : SOCK_STREAM; }
  test::ScratchDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Unix, SocketFiles, ::testing::Values("unix", "unix+seq"),
                         [](const auto& param_info) { return std::string(param_info.param) == "unix" ? "stream" : "seqpacket"; });

TEST_P(SocketFiles, StaleSocketFileIsReplaced) {
  test::Watchdog wd(30s);
  auto path = dir_.file("s");
  make_stale_socket(path, type());
  {
    auto l = ipcx::listen(url(path));
    ASSERT_TRUE(l) << why(l);
    expect_serves(*l, url(path), "over a replaced socket");
  }
  EXPECT_FALSE(exists(path));
}

TEST_P(SocketFiles, LiveServerIsNeverStolen) {
  test::Watchdog wd(30s);
  auto path = dir_.file("s");
  auto first = ipcx::listen(url(path));
  ASSERT_TRUE(first) << why(first);
  auto inode = inode_of(path);
  {
    auto second = ipcx::listen(url(path));
    ASSERT_FALSE(second) << "a live server's address was taken";
    EXPECT_EQ(second.error().code, Errc::address_in_use) << second.error().message();
  }
  EXPECT_EQ(inode_of(path), inode) << "the live server's socket file was touched";
  expect_serves(*first, url(path), "still mine");
  first->close();
  EXPECT_FALSE(exists(path));
}

TEST_P(SocketFiles, LiveServerOfTheOtherSocketTypeIsNeverStolen) {
  test::Watchdog wd(30s);
  auto path = dir_.file("s");
  std::string other = std::string(GetParam()) == "unix" ? "unix+seq" : "unix";
  auto first = ipcx::listen(other + "://" + path);
  ASSERT_TRUE(first) << why(first);
  IPCX_EXPECT_ERRC(ipcx::listen(url(path)), Errc::address_in_use);
  expect_serves(*first, other + "://" + path, "still mine");
}

TEST_P(SocketFiles, NonSocketFileIsNeverReplaced) {
  auto path = dir_.file("s");
  { std::ofstream(path) << "precious"; }
  auto l = ipcx::listen(url(path));
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, Errc::address_in_use) << l.error().message();
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_P(SocketFiles, ModeIgnoresUmaskAndFileIsRemoved) {
  for (mode_t mask : {mode_t{0}, mode_t{0077}, mode_t{0777}}) {
    UmaskGuard guard(mask);
    auto path = dir_.file("m" + std::to_string(mask));
    {
      auto l = ipcx::listen(url(path));
      ASSERT_TRUE(l) << why(l);
      EXPECT_EQ(mode_of(path), 0600u) << "umask " << std::oct << mask;
    }
    EXPECT_FALSE(exists(path)) << "umask " << std::oct << mask;
    {
      Options o;
      o.mode = 0660;
      auto l = ipcx::listen(url(path), o);
      ASSERT_TRUE(l) << why(l);
      EXPECT_EQ(mode_of(path), 0660u) << "umask " << std::oct << mask;
      l->close();
      EXPECT_FALSE(exists(path));
    }
  }
}

TEST_P(SocketFiles, ListenerRemovesOnlyItsOwnFile) {
  auto path = dir_.file("s");
  auto first = ipcx::listen(url(path));
  ASSERT_TRUE(first) << why(first);
  ASSERT_EQ(::unlink(path.c_str()), 0);  // someone removed it...
  // ...but the listener is alive: its lock keeps another ipcx listener from starting there.
  IPCX_EXPECT_ERRC(ipcx::listen(url(path)), Errc::address_in_use);
  make_stale_socket(path, type());  // another program's socket now sits at the path
  first->close();
  EXPECT_TRUE(exists(path)) << "closing the listener removed a socket it did not bind";
  EXPECT_FALSE(exists(path + ".lock")) << "the lock file is the listener's own: it goes on close";
  auto second = ipcx::listen(url(path));  // the other program's socket is stale: taken over
  ASSERT_TRUE(second) << why(second);
  EXPECT_TRUE(exists(path + ".lock"));
  second->close();
  EXPECT_FALSE(exists(path));
  EXPECT_FALSE(exists(path + ".lock"));
}

TEST_P(SocketFiles, ConnectErrors) {
  IPCX_EXPECT_ERRC(ipcx::connect(url(dir_.file("nobody")), {}, 1s), Errc::not_found);
  auto stale = dir_.file("stale");
  make_stale_socket(stale, type());
  IPCX_EXPECT_ERRC(ipcx::connect(url(stale), {}, 1s), Errc::connection_refused);
  IPCX_EXPECT_ERRC(ipcx::connect(url("/" + std::string(200, 'x')), {}, 1s), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen(url("/" + std::string(200, 'x'))), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen(std::string(GetParam()) + "://relative/path"), Errc::invalid_url);
}

TEST(UnixAbstract, LiveNameIsNeverStolenAndNoFileIsCreated) {
  test::Watchdog wd(30s);
  test::ScratchDir dir;
  auto url = "unix:@" + test::unique_name("abstract");
  auto first = ipcx::listen(url);
  ASSERT_TRUE(first) << why(first);
  IPCX_EXPECT_ERRC(ipcx::listen(url), Errc::address_in_use);
  expect_serves(*first, url, "abstract");
  first->close();
  // The name is free again once the listener is gone.
  auto again = ipcx::listen(url);
  EXPECT_TRUE(again) << why(again);
  IPCX_EXPECT_ERRC(ipcx::connect("unix:@" + test::unique_name("nobody"), {}, 1s), Errc::connection_refused);
  IPCX_EXPECT_ERRC(ipcx::listen("unix:@"), Errc::invalid_url);
}

// ---- fifo --------------------------------------------------------------------------------

TEST(Fifo, ModeIgnoresUmaskAndFifosAreRemoved) {
  test::ScratchDir dir;
  for (mode_t mask : {mode_t{0}, mode_t{0077}, mode_t{0777}}) {
    UmaskGuard guard(mask);
    auto path = dir.file("f" + std::to_string(mask));
    {
      auto l = ipcx::listen("fifo://" + path);
      ASSERT_TRUE(l) << why(l);
      EXPECT_EQ(mode_of(path), 0600u) << "umask " << std::oct << mask;
      EXPECT_EQ(mode_of(path + ".back"), 0600u) << "umask " << std::oct << mask;
    }
    EXPECT_FALSE(exists(path));
    EXPECT_FALSE(exists(path + ".back"));
  }
}

TEST(Fifo, PreexistingFifoIsKept) {
  test::ScratchDir dir;
  auto path = dir.file("f");
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  {
    auto l = ipcx::listen("fifo://" + path);
    ASSERT_TRUE(l) << why(l);
    EXPECT_TRUE(exists(path + ".back"));
  }
  EXPECT_TRUE(exists(path)) << "a FIFO the listener did not create was removed";
  EXPECT_FALSE(exists(path + ".back"));
}

TEST(Fifo, LiveListenerIsNeverStolen) {
  test::ScratchDir dir;
  auto url = "fifo://" + dir.file("f");
  auto first = ipcx::listen(url);
  ASSERT_TRUE(first) << why(first);
  auto second = ipcx::listen(url);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::address_in_use) << second.error().message();
  EXPECT_NE(second.error().message().find("live listener"), std::string::npos) << second.error().message();
  EXPECT_TRUE(exists(dir.file("f"))) << "the refused listener removed the live one's FIFO";
  EXPECT_TRUE(exists(dir.file("f.back")));
  // The first listener still serves.
  auto c = ipcx::connect(url, {}, 5s);
  ASSERT_TRUE(c) << why(c);
  ASSERT_TRUE(c->send(as_bytes("still mine"), 5s));
  auto s = first->accept(5s);
  ASSERT_TRUE(s) << why(s);
  auto m = s->recv(5s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "still mine");
  // Once it is gone, the address is free again.
  *first = Listener();
  auto third = ipcx::listen(url);
  EXPECT_TRUE(third) << why(third);
}

TEST(Fifo, NonFifoIsRefused) {
  test::ScratchDir dir;
  auto path = dir.file("f");
  { std::ofstream(path) << "x"; }
  IPCX_EXPECT_ERRC(ipcx::listen("fifo://" + path), Errc::address_in_use);
  EXPECT_TRUE(exists(path));
}

TEST(Fifo, ForeignOwnedFifoIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a FIFO owned by someone else";
  test::ScratchDir dir;
  auto path = dir.file("f");
  ASSERT_EQ(::mkfifo(path.c_str(), 0666), 0);
  ASSERT_EQ(::chown(path.c_str(), 12345, 12345), 0);
  IPCX_EXPECT_ERRC(ipcx::listen("fifo://" + path), Errc::permission_denied);
}

TEST(Fifo, ConnectWithoutListener) {
  test::ScratchDir dir;
  IPCX_EXPECT_ERRC(ipcx::connect("fifo://" + dir.file("nobody"), {}, 100ms), Errc::not_found);
  auto path = dir.file("f");
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  // A FIFO nobody reads: connect waits for a reader until the deadline.
  IPCX_EXPECT_ERRC(ipcx::connect("fifo://" + path, {}, 50ms), Errc::connection_refused);
  IPCX_EXPECT_ERRC(ipcx::connect("fifo://relative", {}, 50ms), Errc::invalid_url);
}

// One conversation at a time, but one after another. Between conversations nobody reads the
// FIFO, so a client's connect() waits (like a shell's `>`) until the server accepts again:
// clients run on their own thread.
TEST(Fifo, SequentialConversations) {
  test::Watchdog wd(60s);
  test::ScratchDir dir;
  auto url = "fifo://" + dir.file("f");
  auto l = ipcx::listen(url);
  ASSERT_TRUE(l) << why(l);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::promise<void> accepted;
    std::string client_error, reply;
    std::thread client([&, round, go = accepted.get_future()]() mutable {
      auto c = ipcx::connect(url, {}, 20s);
      if (!c) {
        client_error = "connect: " + c.error().message();
        return;
      }
      if (auto r = c->send(as_bytes("ping " + std::to_string(round))); !r) {
        client_error = "send: " + r.error().message();
        return;
      }
      // Read only once the server has accepted: the reply FIFO is cleaned at accept time.
      if (go.wait_for(20s) != std::future_status::ready) {
        client_error = "server never accepted";
        return;
      }
      auto m = c->recv(20s);
      if (!m) {
        client_error = "recv: " + m.error().message();
        return;
      }
      reply = std::string(m->text());
    });
    auto s = l->accept(20s);
    accepted.set_value();
    if (!s) {
      client.join();
      FAIL() << "accept: " << why(s);
    }
    auto m = s->recv(10s);
    EXPECT_TRUE(m) << why(m);
    if (m) {
      EXPECT_EQ(m->text(), "ping " + std::to_string(round));
    }
    EXPECT_TRUE(s->send(as_bytes("pong " + std::to_string(round)), 5s));
    client.join();
    EXPECT_EQ(client_error, "");
    EXPECT_EQ(reply, "pong " + std::to_string(round));
    IPCX_EXPECT_ERRC(s->recv(10s), Errc::closed);  // the client has gone
    // Nobody reads this one: it must not reach the next client.
    IPCX_EXPECT_OK(s->send(as_bytes("stale")));  // blocking send (default)
  }
}

TEST(Fifo, ShellStyleWriterWithoutReplyChannel) {
  test::Watchdog wd(30s);
  test::ScratchDir dir;
  auto path = dir.file("f");
  Options lines;
  lines.framing = Framing::lines;
  auto l = ipcx::listen("fifo://" + path, lines);
  ASSERT_TRUE(l) << why(l);
  // Like `echo hello > PATH`.
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "hello\nworld\n", 12), 12);
  ::close(fd);
  auto s = l->accept(10s);
  ASSERT_TRUE(s) << why(s);
  for (std::string_view want : {"hello", "world"}) {
    auto m = s->recv(10s);
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), want);
  }
  IPCX_EXPECT_ERRC(s->recv(10s), Errc::closed);
}

// ---- tcp, pipe: --------------------------------------------------------------------------

TEST(Tcp, ListenerReportsTheChosenPort) {
  test::Watchdog wd(30s);
  auto l = ipcx::listen("tcp://127.0.0.1:0");
  ASSERT_TRUE(l) << why(l);
  auto url = l->url();
  ASSERT_TRUE(url.starts_with("tcp://127.0.0.1:")) << url;
  EXPECT_NE(url, "tcp://127.0.0.1:0");
  EXPECT_GT(std::stoi(url.substr(url.rfind(':') + 1)), 0);
  expect_serves(*l, url, "tcp");
  IPCX_EXPECT_ERRC(ipcx::listen("tcp://127.0.0.1"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen("tcp:127.0.0.1:0"), Errc::invalid_url);
}

TEST(Tcp, Ipv6Loopback) {
  test::Watchdog wd(30s);
  auto l = ipcx::listen("tcp://[::1]:0");
  if (!l) GTEST_SKIP() << "no IPv6 loopback here: " << l.error().message();
  auto url = l->url();
  ASSERT_TRUE(url.starts_with("tcp://[::1]:")) << url;
  expect_serves(*l, url, "over IPv6");
}

TEST(Tcp, PortInUseIsAddressInUse) {
  auto l = ipcx::listen("tcp://127.0.0.1:0");
  ASSERT_TRUE(l) << why(l);
  IPCX_EXPECT_ERRC(ipcx::listen(l->url()), Errc::address_in_use);
}

TEST(PipeListener, YieldsItsOneConnectionOnce) {
  test::Watchdog wd(30s);
  int a[2], b[2];
  ASSERT_EQ(::pipe2(a, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(b, O_CLOEXEC), 0);
  Fd ar(a[0]), aw(a[1]), br(b[0]), bw(b[1]);
  auto l = ipcx::listen(fmt::format("pipe:?rfd={}&wfd={}", ar.get(), bw.get()));
  ASSERT_TRUE(l) << why(l);
  auto c = ipcx::connect(fmt::format("pipe:?rfd={}&wfd={}", br.get(), aw.get()));
  ASSERT_TRUE(c) << why(c);
  // The connections own duplicates: the originals can go.
  ar.reset();
  aw.reset();
  br.reset();
  bw.reset();
  auto s = l->try_accept();
  ASSERT_TRUE(s) << why(s);
  // A pipe has one peer: the listener says so at once, whatever the timeout.
  EXPECT_FALSE(l->capabilities().concurrent);
  IPCX_EXPECT_ERRC(l->try_accept(), Errc::closed);
  IPCX_EXPECT_ERRC(l->accept(20ms), Errc::closed);
  IPCX_EXPECT_ERRC(l->accept(), Errc::closed);
  IPCX_ASSERT_OK(c->send(as_bytes("over pipe:")));
  auto m = s->recv(10s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "over pipe:");
  IPCX_ASSERT_OK(s->send(as_bytes("back")));
  auto r = c->recv(10s);
  ASSERT_TRUE(r) << why(r);
  EXPECT_EQ(r->text(), "back");
  IPCX_EXPECT_ERRC(ipcx::connect("pipe:?rfd=x&wfd=1"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect("pipe:///path"), Errc::invalid_url);
}

// pipe: connections use duplicates of descriptors the process may share (a shell's stdin and
// stdout): O_NONBLOCK lives in the shared file description, so they must leave it as found.
TEST(PipeUrl, LeavesTheDescriptorsBlockingModeAsFound) {
  for (bool explicit_close : {true, false}) {
    SCOPED_TRACE(explicit_close ? "close()" : "destructor");
    int a[2], b[2];
    ASSERT_EQ(::pipe2(a, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(b, O_CLOEXEC), 0);
    Fd ar(a[0]), aw(a[1]), br(b[0]), bw(b[1]);
    {
      auto c = ipcx::connect(fmt::format("pipe:?rfd={}&wfd={}", ar.get(), bw.get()));
      ASSERT_TRUE(c) << why(c);
      // Timed calls switch the descriptions to non-blocking.
      IPCX_EXPECT_ERRC(c->recv(1ms), Errc::timeout);
      IPCX_ASSERT_OK(c->send(as_bytes("x"), 1s));
      if (explicit_close) c->close();
    }
    EXPECT_FALSE(::fcntl(ar.get(), F_GETFL) & O_NONBLOCK) << "read end left non-blocking";
    EXPECT_FALSE(::fcntl(bw.get(), F_GETFL) & O_NONBLOCK) << "write end left non-blocking";
  }
}

TEST(PipePair, ClosingOneEndIsEofForTheOther) {
  auto p = ipcx::pipe_pair();
  ASSERT_TRUE(p) << why(p);
  auto& [a, b] = *p;
  IPCX_ASSERT_OK(a.send(as_bytes("last words")));
  a.close();
  auto m = b.recv(10s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "last words");
  IPCX_EXPECT_ERRC(b.recv(10s), Errc::closed);
  IPCX_EXPECT_ERRC(b.send(as_bytes("anyone?")), Errc::closed);  // SIGPIPE must not kill us
}

// A hostile unix+seq peer must not keep the receiver looping or hoarding descriptors: ipcx
// flags MORE only on full 64 KiB records, and descriptors ride on the first record only.
TEST(Seqpacket, HostileContinuationRecordsAreProtocolErrors) {
  test::ScratchDir dir;
  std::string path = dir.file("s");
  auto l = ipcx::listen("unix+seq://" + path);
  ASSERT_TRUE(l) << why(l);
  auto raw_client = [&] {
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    return Fd(fd);
  };
  auto header = [](std::uint16_t flags, std::uint16_t fd_count, std::uint32_t length) {
    std::vector<std::byte> h = {std::byte{'I'}, std::byte{'X'}, std::byte{1}, std::byte{1},
                                std::byte(flags & 0xff), std::byte(flags >> 8),
                                std::byte(fd_count & 0xff), std::byte(fd_count >> 8),
                                std::byte(length & 0xff), std::byte((length >> 8) & 0xff),
                                std::byte((length >> 16) & 0xff), std::byte(length >> 24),
                                std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}};
    return h;
  };
  auto send_record = [](int fd, std::vector<std::byte> rec, int pass_fd) {
    iovec v{rec.data(), rec.size()};
    msghdr m{};
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    if (pass_fd >= 0) {
      m.msg_control = cbuf;
      m.msg_controllen = sizeof cbuf;
      auto* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    return ::sendmsg(fd, &m, MSG_NOSIGNAL) == static_cast<ssize_t>(rec.size());
  };

  {  // An empty record flagged MORE: endless ones would never grow the message, never end it.
    Fd raw = raw_client();
    ASSERT_TRUE(send_record(raw.get(), header(1, 0, 0), -1)) << std::strerror(errno);
    auto server = l->accept(10s);
    ASSERT_TRUE(server) << why(server);
    IPCX_EXPECT_ERRC(server->recv(10s), Errc::protocol);
  }
  {  // A descriptor on a continuation record: unbounded descriptors for an unbounded message.
    Fd raw = raw_client();
    auto first = header(1, 0, 64 * 1024);
    first.resize(first.size() + 64 * 1024);
    ASSERT_TRUE(send_record(raw.get(), first, -1)) << std::strerror(errno);
    auto second = header(1, 1, 64 * 1024);
    second.resize(second.size() + 64 * 1024);
    ASSERT_TRUE(send_record(raw.get(), second, 0)) << std::strerror(errno);
    auto server = l->accept(10s);
    ASSERT_TRUE(server) << why(server);
    IPCX_EXPECT_ERRC(server->recv(10s), Errc::protocol);
  }
}

TEST(Urls, UnknownSchemeAndBadUrls) {
  IPCX_EXPECT_ERRC(ipcx::listen("carrier-pigeon://coop"), Errc::unknown_scheme);
  IPCX_EXPECT_ERRC(ipcx::connect("carrier-pigeon://coop"), Errc::unknown_scheme);
  IPCX_EXPECT_ERRC(ipcx::listen("no scheme here"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect(""), Errc::invalid_url);
}

}  // namespace
}  // namespace ipcx

namespace ipcx {
namespace {
// Transports that cannot tell who is on the other end refuse an access rule rather than
// ignore it.
TEST(AccessRuleSupport, TransportsWithoutVerifiedPeersRefuseARule) {
  Options o;
  o.access = AccessRule::user(0);
  IPCX_EXPECT_ERRC(ipcx::listen("tcp://127.0.0.1:0", o), Errc::not_supported);
  IPCX_EXPECT_ERRC(ipcx::listen("pipe:", o), Errc::not_supported);
  test::ScratchDir dir;
  IPCX_EXPECT_ERRC(ipcx::listen("fifo://" + dir.file("f"), o), Errc::not_supported);
  o.access = AccessRule::everyone();  // "anyone" is what they do anyway
  auto l = ipcx::listen("tcp://127.0.0.1:0", o);
  EXPECT_TRUE(l.has_value()) << l.error().message();
}
}  // namespace
}  // namespace ipcx
