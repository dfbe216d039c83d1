// Rows over sockets: Unix stream, Unix seqpacket, TCP on loopback.
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench/mechanism.hpp"
#include "bench/rows_patterns.hpp"
#include "bench/rows_socket.hpp"

namespace ipcx::bench {
namespace {

// Peers, each compiled only when bench/CMakeLists.txt found its library (and not under
// ThreadSanitizer: neither library is instrumented, and their threads' lock-free queues would be
// reported).
#if IPCX_BENCH_NNG
constexpr MakeSetup kNng = patterns::nng_ipc_pair;
constexpr std::string_view kNngSkipped{};
#elif IPCX_BENCH_NNG_TSAN
constexpr MakeSetup kNng = nullptr;
constexpr std::string_view kNngSkipped = "NNG left out of ThreadSanitizer builds (libnng is not instrumented)";
#else
constexpr MakeSetup kNng = nullptr;
constexpr std::string_view kNngSkipped = "NNG (libnng-dev) not found when ipcx was built";
#endif
#if IPCX_BENCH_ZMQ
constexpr MakeSetup kZmqTcp = patterns::zmq_tcp_pair;
#else
constexpr MakeSetup kZmqTcp = nullptr;
#endif
using patterns::kZmqSkipped;

// raw: socket/bind/listen/accept in the child, socket/connect in the parent. AF_UNIX (stream or
// seqpacket) at the measurement's path, or TCP on 127.0.0.1 with a kernel-chosen port and
// TCP_NODELAY on both ends (as ipcx sets it).
class RawSocketSetup final : public Setup {
 public:
  RawSocketSetup(int family, int type, const RunCtx& c) : family_(family), type_(type), ctx_(c) {}

  Result<std::string> child_prepare() override {
    listener_ = Fd(::socket(family_, type_ | SOCK_CLOEXEC, 0));
    if (!listener_) return sys_error("socket");
    auto addr = address(0);
    if (!addr) return std::unexpected(addr.error());
    if (::bind(listener_.get(), addr->get(), addr->len) != 0) return sys_error("bind", ctx_.path);
    if (::listen(listener_.get(), 1) != 0) return sys_error("listen");
    if (family_ != AF_INET) return std::string();
    sockaddr_in in{};
    socklen_t len = sizeof in;
    if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&in), &len) != 0) return sys_error("getsockname");
    return std::to_string(ntohs(in.sin_port));
  }
  Made<Channel> child_channel() override {
    Fd c(retry([&] { return ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC); }));
    if (!c) return sys_error("accept");
    listener_.reset();
    if (family_ == AF_UNIX) ::unlink(ctx_.path.c_str());
    return finish(std::move(c));
  }
  Made<Channel> parent_channel(const std::string& ready, pid_t) override {
    Fd s(::socket(family_, type_ | SOCK_CLOEXEC, 0));
    if (!s) return sys_error("socket");
    auto addr = address(family_ == AF_INET ? static_cast<std::uint16_t>(std::stoi(ready)) : 0);
    if (!addr) return std::unexpected(addr.error());
    if (retry([&] { return ::connect(s.get(), addr->get(), addr->len); }) != 0)
      return sys_error("connect", family_ == AF_UNIX ? ctx_.path : "127.0.0.1:" + ready);
    return finish(std::move(s));
  }

 private:
  struct Addr {
    sockaddr_storage storage{};
    socklen_t len = 0;
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  };
  Result<Addr> address(std::uint16_t port) const {
    Addr a;
    if (family_ == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
      in->sin_family = AF_INET;
      in->sin_port = htons(port);
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.len = sizeof *in;
      return a;
    }
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    un->sun_family = AF_UNIX;
    if (ctx_.path.size() >= sizeof un->sun_path)
      return fail(Errc::invalid_argument, "bind", "path too long: " + ctx_.path);
    std::memcpy(un->sun_path, ctx_.path.c_str(), ctx_.path.size() + 1);
    a.len = sizeof *un;
    return a;
  }
  Made<Channel> finish(Fd s) const {
    if (family_ == AF_INET) {
      int one = 1;
      if (::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) return sys_error("setsockopt");
    }
    auto kind = type_ == SOCK_SEQPACKET ? FdChannel::Kind::records : FdChannel::Kind::stream;
    return std::make_unique<FdChannel>(std::move(s), Fd(), kind, ctx_.size);
  }

  int family_, type_;
  RunCtx ctx_;
  Fd listener_;
};

template <int Family, int Type>
std::unique_ptr<Setup> raw_socket(const RunCtx& c) {
  return std::make_unique<RawSocketSetup>(Family, Type, c);
}

const Mechanism kRows[] = {
    {.name = "unix",
     .group = Group::message_passing,
     .purpose = "local stream socket: any two processes, descriptors and credentials passed",
     .raw = raw_socket<AF_UNIX, SOCK_STREAM>,
     .ipcx = [](const RunCtx& c) { return ipcx_listen("unix://" + c.path); },
     .peer = kNng,
     .peer_skipped = kNngSkipped,
     .peer_row = "nng-ipc"},
    {.name = "unix-seq",
     .group = Group::message_passing,
     .purpose = "local socket that keeps message boundaries: request and response",
     .raw = raw_socket<AF_UNIX, SOCK_SEQPACKET>,
     .ipcx = [](const RunCtx& c) { return ipcx_listen("unix+seq://" + c.path); }},
    {.name = "tcp",
     .group = Group::message_passing,
     .purpose = "the same over loopback TCP: the one that also reaches other machines",
     .raw = raw_socket<AF_INET, SOCK_STREAM>,
     .ipcx = [](const RunCtx&) { return ipcx_listen("tcp://127.0.0.1:0"); },
     .peer = kZmqTcp,
     .peer_skipped = kZmqSkipped,
     .peer_row = "zmq-tcp"},
};

}  // namespace

std::unique_ptr<Setup> raw_unix_stream(const RunCtx& c) { return raw_socket<AF_UNIX, SOCK_STREAM>(c); }

std::span<const Mechanism> socket_rows() { return kRows; }

}  // namespace ipcx::bench
