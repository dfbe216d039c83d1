// Per-transport traits for the conformance suite: how to make a connected (client, server)
// pair, how to reach the server with a raw descriptor (to write malformed bytes), and what the
// transport can do.
#pragma once

#include <atomic>
#include <cstring>
#include <span>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <mqueue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "test_util.hpp"
#include "wire/frame.hpp"

namespace ipcx::conformance {

using namespace std::chrono_literals;

// State a test needs to keep alive while its connections exist.
struct Env {
  test::ScratchDir dir;
  std::string listen_url;  // set by the traits' listen()
  Listener listener;       // empty for pipe
  Connection raw_server;   // pipe: the server end created together with the raw writer
  std::vector<Fd> held;    // mq: the raw client's receive queue, kept open until accept
};

struct Pair {
  Connection client;
  Connection server;
};

namespace detail {

inline Fd raw_unix(int type, const std::string& where) {
  Fd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, where.data(), where.size());
  if (where.front() == '@') a.sun_path[0] = '\0';
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + where.size() +
                                    (where.front() == '@' ? 0 : 1));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), len) != 0) return Fd();
  return fd;
}

inline Fd raw_tcp(const std::string& url) {
  // url is "tcp://127.0.0.1:PORT"
  auto colon = url.rfind(':');
  int port = std::stoi(url.substr(colon + 1));
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Fd();
  return fd;
}

// Connects with `client_opts`, accepts with the listener's options.
inline Result<Pair> connect_accept(Env& env, const Options& client_opts) {
  auto c = ipcx::connect(env.listener.url(), client_opts, 5s);
  if (!c) return std::unexpected(c.error());
  auto s = env.listener.accept(10s);
  if (!s) return std::unexpected(s.error());
  return Pair{std::move(*c), std::move(*s)};
}

}  // namespace detail

// Common defaults; each transport overrides what differs.
struct TraitsBase {
  static constexpr bool has_listener = true;
  static constexpr bool multi_client = true;
  static constexpr bool fd_passing = false;
  static constexpr bool peer_credentials = false;
  static constexpr bool records = false;      // keeps record boundaries natively (seqpacket)
  static constexpr bool byte_stream = true;   // supports Framing::lines
  // Server -> client EOF needs the listener closed too (fifo: the listener keeps the reply
  // FIFO open read-write, so clients never see a false EOF between conversations).
  static constexpr bool eof_needs_listener_close = false;
  // Send space can reappear while the peer reads nothing (TCP moves queued bytes into the
  // peer's receive window in the background): "still full" checks would be racy.
  static constexpr bool elastic_send_buffer = false;
  // The largest message the transport carries (boundary tests skip larger sizes).
  static std::size_t max_message() { return std::size_t{64} << 20; }
  // A raw descriptor can be written to reach the server (raw_connect); false: the transport
  // has its own malformed-input tests.
  static constexpr bool raw_descriptor = true;
  // Clients ManyClients connects at once.
  static constexpr int many_clients = 8;
  // raw_connect's descriptor takes the ipcx frame format (docs/wire.md); false: the transport
  // has its own framing (mq: priorities), and raw_write sends one malformed message.
  static constexpr bool raw_frames = true;
  static bool raw_write(int fd, std::span<const std::byte> b) {
    while (!b.empty()) {
      ssize_t n = ::write(fd, b.data(), b.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      b = b.subspan(static_cast<std::size_t>(n));
    }
    return true;
  }
};

// --- pipe: ipcx::pipe_pair() -----------------------------------------------------------
struct PipeTraits : TraitsBase {
  static constexpr const char* name = "pipe";
  static constexpr bool has_listener = false;
  static constexpr bool multi_client = false;

  static Result<Pair> make_pair(Env&, const Options& client_opts, const Options& server_opts) {
    if (client_opts.max_message == server_opts.max_message && client_opts.framing == server_opts.framing) {
      auto p = ipcx::pipe_pair(server_opts);
      if (!p) return std::unexpected(p.error());
      return Pair{std::move(p->first), std::move(p->second)};
    }
    // Different options per end: wire two pipes by hand and use the pipe:?rfd=&wfd= URL.
    int a[2], b[2];  // a: client -> server, b: server -> client
    if (::pipe2(a, O_CLOEXEC) != 0) return fail_errno(errno, "pipe2");
    if (::pipe2(b, O_CLOEXEC) != 0) return fail_errno(errno, "pipe2");
    Fd ar(a[0]), aw(a[1]), br(b[0]), bw(b[1]);
    auto c = ipcx::connect(fmt::format("pipe:?rfd={}&wfd={}", br.get(), aw.get()), client_opts);
    if (!c) return std::unexpected(c.error());
    auto s = ipcx::connect(fmt::format("pipe:?rfd={}&wfd={}", ar.get(), bw.get()), server_opts);
    if (!s) return std::unexpected(s.error());
    return Pair{std::move(*c), std::move(*s)};  // the connections own duplicates
  }
  static Result<Connection> connect_client(Env&, const Options&) {
    return fail(Errc::not_supported, "pipe", "no listener");
  }
  // The test writes raw bytes into the returned fd; raw_accept() yields the framed reader.
  static Fd raw_connect(Env& env, const Options& server_opts) {
    int a[2];
    if (::pipe2(a, O_CLOEXEC) != 0) return Fd();
    Fd ar(a[0]), aw(a[1]);
    int b[2];
    if (::pipe2(b, O_CLOEXEC) != 0) return Fd();
    Fd br(b[0]), bw(b[1]);
    auto s = ipcx::connect(fmt::format("pipe:?rfd={}&wfd={}", ar.get(), bw.get()), server_opts);
    if (!s) return Fd();
    env.raw_server = std::move(*s);
    return aw;
  }
  static Result<Connection> raw_accept(Env& env) { return std::move(env.raw_server); }
};

// --- fifo:///path ----------------------------------------------------------------------
struct FifoTraits : TraitsBase {
  static constexpr const char* name = "fifo";
  static constexpr bool multi_client = false;
  static constexpr bool eof_needs_listener_close = true;

  static Result<void> listen(Env& env, const Options& o) {
    env.listen_url = "fifo://" + env.dir.file("f");
    auto l = ipcx::listen(env.listen_url, o);
    if (!l) return std::unexpected(l.error());
    env.listener = std::move(*l);
    return {};
  }
  // A FIFO listener accepts when the first bytes arrive (a FIFO cannot report a writer that
  // has not written), so the client says hello first and the server consumes it.
  static Result<Pair> make_pair(Env& env, const Options& client_opts, const Options& server_opts) {
    if (auto r = listen(env, server_opts); !r) return std::unexpected(r.error());
    return connect_pair(env, client_opts);
  }
  static Result<Pair> connect_pair(Env& env, const Options& client_opts) {
    auto c = ipcx::connect(env.listener.url(), client_opts, 5s);
    if (!c) return std::unexpected(c.error());
    if (auto r = c->send(as_bytes("hello"), 5s); !r) return std::unexpected(r.error());
    auto s = env.listener.accept(10s);
    if (!s) return std::unexpected(s.error());
    auto hello = s->recv(10s);
    if (!hello) return std::unexpected(hello.error());
    if (hello->text() != "hello") return fail(Errc::protocol, "fifo handshake", std::string(hello->text()));
    return Pair{std::move(*c), std::move(*s)};
  }
  static Result<Connection> connect_client(Env&, const Options&) {
    return fail(Errc::not_supported, "fifo", "one conversation at a time");
  }
  static Fd raw_connect(Env& env, const Options& server_opts) {
    if (!listen(env, server_opts)) return Fd();
    return Fd(::open(env.dir.file("f").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  }
  static Result<Connection> raw_accept(Env& env) { return env.listener.accept(10s); }
};

// --- socket transports ------------------------------------------------------------------
template <class Derived>
struct SocketTraits : TraitsBase {
  static Result<void> listen(Env& env, const Options& o) {
    env.listen_url = Derived::listen_url(env);
    auto l = ipcx::listen(env.listen_url, o);
    if (!l) return std::unexpected(l.error());
    env.listener = std::move(*l);
    return {};
  }
  static Result<Pair> make_pair(Env& env, const Options& client_opts, const Options& server_opts) {
    if (auto r = listen(env, server_opts); !r) return std::unexpected(r.error());
    return detail::connect_accept(env, client_opts);
  }
  static Result<Connection> connect_client(Env& env, const Options& o) {
    return ipcx::connect(env.listener.url(), o, 10s);
  }
  static Fd raw_connect(Env& env, const Options& server_opts) {
    if (!listen(env, server_opts)) return Fd();
    return Derived::raw_socket(env);
  }
  static Result<Connection> raw_accept(Env& env) { return env.listener.accept(10s); }
};

struct UnixTraits : SocketTraits<UnixTraits> {
  static constexpr const char* name = "unix";
  static constexpr bool fd_passing = true;
  static constexpr bool peer_credentials = true;
  static std::string listen_url(Env& env) { return "unix://" + env.dir.file("s"); }
  static Fd raw_socket(Env& env) { return detail::raw_unix(SOCK_STREAM, env.dir.file("s")); }
};

struct UnixAbstractTraits : SocketTraits<UnixAbstractTraits> {
  static constexpr const char* name = "unix_abstract";
  static constexpr bool fd_passing = true;
  static constexpr bool peer_credentials = true;
  static std::string listen_url(Env&) { return "unix:@" + test::unique_name("abs"); }
  static Fd raw_socket(Env& env) {
    return detail::raw_unix(SOCK_STREAM, env.listen_url.substr(std::strlen("unix:")));
  }
};

struct UnixSeqTraits : SocketTraits<UnixSeqTraits> {
  static constexpr const char* name = "unix_seq";
  static constexpr bool fd_passing = true;
  static constexpr bool peer_credentials = true;
  static constexpr bool records = true;
  static constexpr bool byte_stream = false;
  static std::string listen_url(Env& env) { return "unix+seq://" + env.dir.file("s"); }
  static Fd raw_socket(Env& env) { return detail::raw_unix(SOCK_SEQPACKET, env.dir.file("s")); }
};

struct TcpTraits : SocketTraits<TcpTraits> {
  static constexpr const char* name = "tcp";
  static constexpr bool elastic_send_buffer = true;
  static std::string listen_url(Env&) { return "tcp://127.0.0.1:0"; }
  static Fd raw_socket(Env& env) { return detail::raw_tcp(env.listener.url()); }
};

// --- sysv://KEY (System V queue; keys in the test range tests/check-leftovers.sh checks) ---
struct SysvTraits : SocketTraits<SysvTraits> {
  static constexpr const char* name = "sysv";
  static constexpr bool records = true;
  static constexpr bool byte_stream = false;
  static constexpr bool raw_descriptor = false;  // malformed input: tests/e2e/sysv_transport_test.cpp
  // The queue counts bytes: a small message fits in the room a large one could not use.
  static constexpr bool elastic_send_buffer = true;
  // kernel.msgmax, less the one kind byte every sysv:// message carries (docs/sysv.md).
  static std::size_t max_message() { return ipcx::sysv::limits().value().max_message - 1; }
  static std::string listen_url(Env&) { return test::sysv_test_url(); }
  static Fd raw_socket(Env&) { return Fd(); }
};

// --- shm://name (three wait modes; the hybrid one with the smallest ring, so that messages
// travel in many records and wrap often) ----------------------------------------------------
template <class Derived>
struct ShmTraitsBase : SocketTraits<Derived> {
  static constexpr bool records = true;
  static constexpr bool byte_stream = false;
  static constexpr bool peer_credentials = true;
  static constexpr bool raw_descriptor = false;  // malformed input: tests/e2e/shm_transport_test.cpp
  static std::string listen_url(Env&) { return fmt::format("shm://{}?{}", test::unique_name("conf"), Derived::query); }
  static Fd raw_socket(Env&) { return Fd(); }
};
struct ShmTraits : ShmTraitsBase<ShmTraits> {
  static constexpr const char* name = "shm";
  static constexpr const char* query = "ring=4096";
};
struct ShmSpinTraits : ShmTraitsBase<ShmSpinTraits> {
  static constexpr const char* name = "shm_spin";
  static constexpr const char* query = "wait=spin";
};
struct ShmBlockTraits : ShmTraitsBase<ShmBlockTraits> {
  static constexpr const char* name = "shm_block";
  static constexpr const char* query = "wait=block&ring=65536";
};

// --- mq:///name -------------------------------------------------------------------------
struct MqTraits : TraitsBase {
  static constexpr const char* name = "mq";
  static constexpr bool records = true;
  static constexpr bool byte_stream = false;
  static constexpr bool raw_frames = false;
  // The queues' message size, within fs.mqueue.msgsize_max's default 8192 (a process without
  // CAP_SYS_RESOURCE, root in a container included, may not exceed it).
  static constexpr std::size_t max_record = 4096;
  static std::size_t max_message() { return max_record; }
  static constexpr int many_clients = 4;  // RLIMIT_MSGQUEUE: see listen()

  static Result<void> listen(Env& env, const Options& o) {
    // Every conversation charges capacity x message size twice to RLIMIT_MSGQUEUE (800 KiB by
    // default, per user, shared with tests running in parallel): about 84 KiB each here.
    env.listen_url = fmt::format("mq:///{}?msgsize={}&capacity=10", test::unique_name("conf"), max_record);
    auto l = ipcx::listen(env.listen_url, o);
    if (!l) return std::unexpected(l.error());
    env.listener = std::move(*l);
    return {};
  }
  static Result<Pair> make_pair(Env& env, const Options& client_opts, const Options& server_opts) {
    if (auto r = listen(env, server_opts); !r) return std::unexpected(r.error());
    return detail::connect_accept(env, client_opts);
  }
  static Result<Connection> connect_client(Env& env, const Options& o) {
    return ipcx::connect(env.listener.url(), o, std::chrono::seconds(10));
  }
  // A client by hand: its two queues and the announcement (docs/mq.md); returns the queue the
  // server reads, for raw_write.
  static Fd raw_connect(Env& env, const Options& server_opts) {
    if (!listen(env, server_opts)) return Fd();
    auto service = "/" + env.listen_url.substr(6, env.listen_url.find('?') - 6);
    static std::atomic<unsigned> counter{0};
    auto id = fmt::format("{}-{}-0000abcd", ::getpid(), counter++);
    mq_attr a{};
    a.mq_maxmsg = 10;
    a.mq_msgsize = 1024;
    mqd_t cs = ::mq_open((service + "." + id + ".cs").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
    mqd_t sc = ::mq_open((service + "." + id + ".sc").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
    mqd_t sv = ::mq_open(service.c_str(), O_WRONLY | O_CLOEXEC);
    if (cs == -1 || sc == -1 || sv == -1) return Fd();
    env.held.emplace_back(sc);
    auto text = fmt::format("ipcx-mq/1 {} {}", ::getpid(), id);
    int r = ::mq_send(sv, text.data(), text.size(), 0);
    ::mq_close(sv);
    return r == 0 ? Fd(cs) : Fd();
  }
  static Result<Connection> raw_accept(Env& env) { return env.listener.accept(std::chrono::seconds(10)); }
  // Garbage: a message at priority 0, which only the empty end-of-conversation marker may use.
  static bool raw_write(int fd, std::span<const std::byte> b) {
    return ::mq_send(fd, reinterpret_cast<const char*>(b.data()), b.size(), 0) == 0;
  }
};

}  // namespace ipcx::conformance
