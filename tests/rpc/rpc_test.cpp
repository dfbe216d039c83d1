// Typed RPC (include/ipcx/rpc.hpp) between real processes: the test peer (ipcx-rpc-peer) runs
// in a child of its own over unix, tcp, shm and a pipe; it is killed with SIGKILL mid-call.
#include <array>
#include <future>

#include <sys/mman.h>
#include <thread>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>
#include <ipcx/rpc.hpp>

#include "e2e/cli_harness.hpp"
#include "rpc/rpc_peer.hpp"
#include "rpc/wire.hpp"
#include "test_util.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;
using namespace rpc_peer;
using rpc::Code;

#ifdef IPCX_TEST_SANITIZED
constexpr int kThreadCalls = 50;
#else
constexpr int kThreadCalls = 200;
#endif

// A peer process listening at a URL of `scheme`, and a client connected to it.
struct Peer {
  ScratchDir dir;
  Child child;
  std::string url;
  ipcx::Child piped;  // pipe: the child, connected

  // "unix", "tcp", "shm", "pipe": served by the engine's loop; "unix-threads", "shm-spin":
  // each connection served by Server::serve() on a thread of its own (shm busy-polling).
  static std::string address(const std::string& scheme, const ScratchDir& dir) {
    if (scheme.starts_with("unix")) return "unix://" + dir.file("rpc.sock");
    if (scheme == "tcp") return "tcp://127.0.0.1:0";
    if (scheme == "shm") return "shm://" + unique_name("rpc");
    if (scheme == "shm-spin") return "shm://" + unique_name("rpc") + "?wait=spin";
    return "pipe:";
  }
  static const char* mode(const std::string& scheme) { return scheme.ends_with("-threads") || scheme.ends_with("-spin") ? "threads" : "loop"; }

  explicit Peer(const std::string& scheme, std::size_t max_in_flight = 16, std::size_t max_backlog = 256) {
    if (scheme == "pipe") {
      auto c = spawn_connected({IPCX_RPC_PEER, "pipe:", std::to_string(max_in_flight), std::to_string(max_backlog)}, Options{.max_message = std::size_t{16} << 20});
      EXPECT_TRUE(c) << (c ? "" : c.error().message());
      if (c) piped = std::move(*c);
      url = "pipe:";
      return;
    }
    child = Child::start({IPCX_RPC_PEER, address(scheme, dir), std::to_string(max_in_flight), std::to_string(max_backlog), mode(scheme)});
    EXPECT_TRUE(child.wait_stdout("\n")) << child.err();
    const auto& out = child.out();
    EXPECT_TRUE(out.starts_with("ready ")) << out << child.err();
    url = out.substr(6, out.find('\n') - 6);
  }

  rpc::Client client(rpc::ClientOptions o = {}) {
    o.transport.max_message = std::size_t{16} << 20;
    if (url == "pipe:") {
      auto c = rpc::Client::adopt(std::move(piped.connection), o);
      EXPECT_TRUE(c) << (c ? "" : c.error().message());
      return c ? std::move(*c) : rpc::Client();
    }
    auto c = rpc::Client::connect(url, o);
    EXPECT_TRUE(c) << (c ? "" : c.error().message());
    return c ? std::move(*c) : rpc::Client();
  }

  void kill() {
    if (url == "pipe:") (void)piped.process.kill(SIGKILL);
    else child.signal(SIGKILL);
  }

  // Ends the peer (SIGTERM) and returns its exit code: 0 unless something failed in it (under
  // ASan, a leak found at exit).
  int stop() {
    if (stopped) return -1;
    stopped = true;
    if (url == "pipe:") {
      piped.connection.close();
      (void)piped.process.kill(SIGTERM);
      auto code = piped.process.wait(10s);
      return code ? *code : -1;
    }
    child.signal(SIGTERM);
    return child.finish();
  }
  bool stopped = false;

  ~Peer() { stop(); }
};

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> b(n);
  fill(b, seed);
  return b;
}

class RpcOver : public ::testing::TestWithParam<std::string> {};

TEST_P(RpcOver, UnaryEchoesEverySize) {
  Watchdog wd(60s);
  Peer peer(GetParam());
  auto c = peer.client();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{64}, std::size_t{64} << 10, (std::size_t{64} << 10) + 1, std::size_t{1} << 20}) {
    const auto req = pattern(n, n);
    for (auto m : {kEcho, kEchoLoop}) {
      auto r = c.call(m, rpc::Payload(req), 10s);
      ASSERT_TRUE(r) << m.name << " " << n << ": " << r.error().to_string();
      EXPECT_EQ(*r, req) << m.name << " " << n;
    }
  }
  auto sum = c.call(kAdd, Add{.a = 40, .b = 2}, 10s);
  ASSERT_TRUE(sum) << sum.error().to_string();
  EXPECT_EQ(*sum, 42);
  EXPECT_EQ(c.stats().in_flight, 0u);
}

TEST_P(RpcOver, ServerStreamsInOrderPastItsWindow) {
  Watchdog wd(60s);
  Peer peer(GetParam());
  auto c = peer.client({.stream_window = 8});
  auto s = c.stream(kCount, std::uint32_t{1000}, 30s);
  ASSERT_TRUE(s) << s.error().to_string();
  for (std::uint32_t i = 0; i < 1000; ++i) {
    auto item = s->next();
    ASSERT_TRUE(item) << i << ": " << item.error().to_string();
    ASSERT_TRUE(item->has_value()) << "the stream ended after " << i << " items";
    ASSERT_EQ(**item, i);
  }
  auto end = s->next();
  ASSERT_TRUE(end) << end.error().to_string();
  EXPECT_FALSE(end->has_value());
}

TEST_P(RpcOver, OneWayCallsAllArriveAndSendNothingBack) {
  Watchdog wd(60s);
  Peer peer(GetParam());
  auto c = peer.client();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(c.notify(kNote, std::uint64_t{1}, 10s));
  // Handled on the pool, in any order: the count gets there.
  EXPECT_TRUE(eventually([&] {
    auto n = c.call(kCounts, rpc::Empty{}, 10s);
    return n && n->notes == 100;
  }, 20s));
  EXPECT_EQ(c.stats().late, 0u);  // nothing came back for them
}

TEST_P(RpcOver, StatusCodesAndUnknownMethodsLeaveTheConnectionUsable) {
  Watchdog wd(60s);
  Peer peer(GetParam());
  auto c = peer.client();
  auto f = c.call(kFail, std::string("not you"), 10s);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, Code::permission_denied);
  EXPECT_EQ(f.error().message, "not you");
  auto m = c.call_raw("test.Peer/Nope", {}, 10s);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Code::unimplemented);
  EXPECT_NE(m.error().message.find("Nope"), std::string::npos) << m.error().message;
  auto s = c.call_raw("nosuch.Service/Echo", {}, 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::unimplemented);
  EXPECT_NE(s.error().message.find("nosuch.Service"), std::string::npos) << s.error().message;
  // A request of the wrong size for its type.
  auto bad = c.call_raw(kAdd.name, as_bytes("x"), 10s);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::invalid_argument);
  // Streaming a unary method.
  auto wrong = c.stream(kAdd, Add{}, 10s);
  ASSERT_TRUE(wrong);
  auto item = wrong->next();
  ASSERT_FALSE(item);
  EXPECT_EQ(item.error().code, Code::failed_precondition);
  auto ok = c.call(kAdd, Add{.a = 1, .b = 1}, 10s);
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(*ok, 2);
}

TEST_P(RpcOver, DeadlineExpiresAndTheHandlerSeesIt) {
  Watchdog wd(60s);
  Peer peer(GetParam());
  auto c = peer.client();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c.call(kSleep, std::uint32_t{20000}, 200ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::deadline_exceeded) << r.error().to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);  // at the deadline, not the handler's end
  EXPECT_TRUE(eventually([&] {
    auto n = c.call(kCounts, rpc::Empty{}, 10s);
    return n && n->saw_cancel == 1 && n->sleeping == 0;
  }, 20s));
}

TEST_P(RpcOver, CancelFromAnotherThreadEndsTheCallAndTellsTheHandler) {
  Watchdog wd(60s);
  Peer peer(GetParam());
  auto c = peer.client();
  auto p = c.start(kSleep, std::uint32_t{20000}, 60s);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_TRUE(eventually([&] {
    auto n = c.call(kCounts, rpc::Empty{}, 10s);
    return n && n->sleeping == 1;
  }, 20s));
  std::thread canceller([&] {
    std::this_thread::sleep_for(50ms);
    p->cancel();
  });
  auto r = p->get();  // blocked here when cancel() comes
  canceller.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::cancelled);
  EXPECT_TRUE(eventually([&] {
    auto n = c.call(kCounts, rpc::Empty{}, 10s);
    return n && n->saw_cancel == 1 && n->sleeping == 0;
  }, 20s));
}

TEST_P(RpcOver, ServerKilledMidCallFailsPromptly) {
  Watchdog wd(60s);
  Peer peer(GetParam());
  auto c = peer.client();
  auto p = c.start(kSleep, std::uint32_t{30000}, 50s);
  ASSERT_TRUE(p);
  auto s = c.stream(kCount, std::uint32_t{1u << 30}, 50s);  // a stream in the middle of its items
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->next());
  const auto t0 = std::chrono::steady_clock::now();
  peer.kill();
  auto r = p->get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::unavailable) << r.error().to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);  // long before the 50 s deadline
  Code end = Code::ok;
  for (int i = 0; i < 10000 && end == Code::ok; ++i)
    if (auto item = s->next(); !item) end = item.error().code;
  EXPECT_EQ(end, Code::unavailable);
  auto again = c.call(kAdd, Add{}, 5s);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Code::unavailable);
}

TEST_P(RpcOver, ManyThreadsShareOneClient) {
  Watchdog wd(90s);
  Peer peer(GetParam());
  auto c = peer.client();
  constexpr int kThreads = 4, kCalls = kThreadCalls;
  std::vector<std::future<int>> done;
  for (int t = 0; t < kThreads; ++t)
    done.push_back(std::async(std::launch::async, [&c, t] {
      int good = 0;
      for (int i = 0; i < kCalls; ++i) {
        auto r = c.call(kAdd, Add{.a = t * 1000, .b = i}, 20s);
        if (r && *r == t * 1000 + i) ++good;
      }
      return good;
    }));
  for (auto& d : done) EXPECT_EQ(d.get(), kCalls);
  EXPECT_EQ(c.stats().in_flight, 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, RpcOver, ::testing::Values("unix", "tcp", "shm", "pipe", "unix-threads", "shm-spin"),
                         [](const auto& i) {
                           auto name = i.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// ---- unix only: descriptors and credentials ----------------------------------------------------

TEST(Rpc, PeerIdentityIsTheKernels) {
  Watchdog wd(30s);
  Peer peer("unix");
  auto c = peer.client();
  auto w = c.call(kWho, rpc::Empty{}, 10s);
  ASSERT_TRUE(w) << w.error().to_string();
  EXPECT_TRUE(w->verified);
  EXPECT_EQ(w->pid, ::getpid());
  EXPECT_EQ(w->uid, static_cast<std::int64_t>(::geteuid()));
  EXPECT_EQ(w->gid, static_cast<std::int64_t>(::getegid()));
  for (const char* verified : {"shm", "shm-spin"}) {
    Peer shm(verified);
    auto sc = shm.client();
    auto sw = sc.call(kWho, rpc::Empty{}, 10s);
    ASSERT_TRUE(sw) << verified << ": " << sw.error().to_string();
    EXPECT_TRUE(sw->verified) << verified;
    EXPECT_EQ(sw->pid, ::getpid()) << verified;
    EXPECT_EQ(sw->uid, static_cast<std::int64_t>(::geteuid())) << verified;
  }
  Peer piped("pipe");
  auto pc = piped.client();
  auto pw = pc.call(kWho, rpc::Empty{}, 10s);
  ASSERT_TRUE(pw) << pw.error().to_string();
  EXPECT_FALSE(pw->verified);
  Peer tcp("tcp");
  auto t = tcp.client();
  auto tw = t.call(kWho, rpc::Empty{}, 10s);
  ASSERT_TRUE(tw) << tw.error().to_string();
  EXPECT_FALSE(tw->verified);
}

TEST(Rpc, LargeArgumentsAndResultsTravelOutOfBand) {
  Watchdog wd(60s);
  Peer peer("unix");
  auto c = peer.client();
  const auto big = pattern(std::size_t{8} << 20, 7);
  auto s = c.call(kChecksum, std::span<const std::byte>(big), 20s);
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_TRUE(s->mapped);
  EXPECT_EQ(s->size, big.size());
  EXPECT_EQ(s->checksum, checksum(big));
  auto small = c.call(kChecksum, std::span<const std::byte>(big).first(1000), 20s);
  ASSERT_TRUE(small);
  EXPECT_FALSE(small->mapped);
  auto f = c.call(kFill, Fill{.size = std::size_t{32} << 20, .seed = 9}, 20s);
  ASSERT_TRUE(f) << f.error().to_string();
  EXPECT_TRUE(f->mapped());
  EXPECT_TRUE(std::ranges::equal(f->bytes(), pattern(std::size_t{32} << 20, 9)));
  // Beyond max_message over a transport without descriptors: a clear status, nothing sent.
  Peer tcp("tcp");
  auto t = tcp.client();
  auto over = t.call(kChecksum, std::span<const std::byte>(pattern(std::size_t{17} << 20, 1)), 20s);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, Code::resource_exhausted);
  EXPECT_NE(over.error().message.find("out of band"), std::string::npos) << over.error().message;
  EXPECT_TRUE(t.call(kAdd, Add{}, 10s));
}

TEST(Rpc, AGibibyteArgument) {
  Watchdog wd(120s);
  Peer peer("unix");
  auto c = peer.client();
  const std::size_t n = std::size_t{1} << 30;
  std::vector<std::byte> big(n);
  fill(big, 1234);
  auto s = c.call(kChecksum, std::span<const std::byte>(big), 100s);
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_TRUE(s->mapped);
  EXPECT_EQ(s->size, n);
  EXPECT_EQ(s->checksum, checksum(big));
}

TEST(Rpc, CallsPastTheLimitWaitTheirTurn) {
  Watchdog wd(60s);
  Peer peer("unix", 1);
  auto c = peer.client();
  auto a = c.start(kSleep, std::uint32_t{20000}, 30s);
  ASSERT_TRUE(a);
  auto b = c.start(kAdd, Add{.a = 1, .b = 2}, 30s);  // waits behind the sleep
  ASSERT_TRUE(b);
  auto early = b->get(300ms);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, Code::deadline_exceeded);  // not yet: the call goes on
  a->cancel();
  auto r = b->get();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, 3);
}

TEST(Rpc, InFlightLimitRefusesTheExtraCall) {
  Watchdog wd(60s);
  Peer peer("unix", 2, 0);
  auto c = peer.client();
  auto a = c.start(kSleep, std::uint32_t{20000}, 30s);
  auto b = c.start(kSleep, std::uint32_t{20000}, 30s);
  ASSERT_TRUE(a && b);
  auto third = c.call(kAdd, Add{}, 10s);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, Code::resource_exhausted) << third.error().to_string();
  a->cancel();
  b->cancel();
  EXPECT_FALSE(a->get());
  EXPECT_FALSE(b->get());
  // Once the handlers have given up, the connection takes calls again.
  EXPECT_TRUE(eventually([&] { return c.call(kAdd, Add{}, 10s).has_value(); }, 20s));
}

TEST(Rpc, ABlockingHandlerDoesNotHoldUpTheCallBehindIt) {
  Watchdog wd(60s);
  Peer peer("unix");
  auto c = peer.client();
  ASSERT_TRUE(c.call(kAdd, Add{}, 10s));  // the pool has one thread, idle now
  auto p = c.start(kSleep, std::uint32_t{20000}, 60s);
  ASSERT_TRUE(p);
  auto r = c.call(kAdd, Add{.a = 1, .b = 1}, 10s);  // right behind it: another thread takes it
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, 2);
  auto n = c.call(kCounts, rpc::Empty{}, 10s);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->sleeping, 1u);
  p->cancel();
}

// Calls waiting in a connection's backlog when the client goes away are freed with it (under
// ASan the peer's exit code says whether anything leaked).
TEST(Rpc, TheBacklogOfAClosedConnectionIsFreed) {
  Watchdog wd(60s);
  Peer peer("unix", 1);
  {
    auto c = peer.client();
    auto sleeping = c.start(kSleep, std::uint32_t{20000}, 60s);
    ASSERT_TRUE(sleeping);
    std::vector<rpc::Pending<Sum>> waiting;
    const auto big = pattern(std::size_t{1} << 20, 3);
    for (int i = 0; i < 3; ++i) {
      auto w = c.start(kChecksum, std::span<const std::byte>(big), 60s);
      ASSERT_TRUE(w);
      waiting.push_back(std::move(*w));
    }
    auto other = peer.client();
    EXPECT_TRUE(eventually([&] {
      auto n = other.call(kCounts, rpc::Empty{}, 10s);
      return n && n->sleeping == 1;
    }, 20s));
  }  // the client closes with one call running and three waiting
  EXPECT_EQ(peer.stop(), 0);
}

TEST(Rpc, ASlowHandlerDoesNotHoldUpOtherClients) {
  Watchdog wd(60s);
  Peer peer("unix");
  auto slow = peer.client();
  auto fast = peer.client();
  auto p = slow.start(kSleep, std::uint32_t{20000}, 60s);
  ASSERT_TRUE(p);
  ASSERT_TRUE(eventually([&] {
    auto n = fast.call(kCounts, rpc::Empty{}, 10s);
    return n && n->sleeping == 1;
  }, 20s));
  for (int i = 0; i < 50; ++i) {
    auto r = fast.call(kAdd, Add{.a = i, .b = 1}, 10s);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(*r, i + 1);
  }
  auto n = fast.call(kCounts, rpc::Empty{}, 10s);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->sleeping, 1u);  // the slow call was still running all along
  p->cancel();
}

// ---- hostile clients -------------------------------------------------------------------------------

// Sends `payload` as one ipcx frame over a raw connection and returns what comes back.
std::optional<rpc::wire::Frame> exchange(Connection& conn, std::span<const std::byte> payload, Message& reply, std::span<const int> fds = {}) {
  if (!conn.send(payload, fds, 5s)) return std::nullopt;
  if (!conn.recv(reply, 10s)) return std::nullopt;
  auto f = rpc::wire::decode(reply.bytes(), reply.fds.size());
  if (!f) return std::nullopt;
  return *f;
}

std::vector<std::byte> call_frame(std::uint64_t id, std::string_view method, std::span<const std::byte> payload, std::uint8_t flags = 0, std::uint64_t oob = 0) {
  std::vector<std::byte> out;
  auto room = rpc::wire::encode(out, rpc::wire::Frame{.kind = rpc::wire::Kind::call, .flags = flags, .id = id, .method = method, .oob_size = oob}, payload.size());
  std::ranges::copy(payload, room.begin());
  return out;
}

TEST(Rpc, MalformedFramesGetAnErrorAndOthersAreServed) {
  Watchdog wd(60s);
  Peer peer("unix");
  auto good = peer.client();
  Message reply;
  {
    auto raw = connect(peer.url).value();
    auto f = exchange(raw, as_bytes("GET / HTTP/1.0\r\n\r\n"), reply);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->kind, rpc::wire::Kind::error);
    EXPECT_EQ(f->aux, static_cast<std::uint32_t>(Code::internal));
    EXPECT_NE(f->message.find("not an RPC message"), std::string_view::npos) << f->message;
    auto eof = raw.recv(reply, 10s);
    ASSERT_FALSE(eof);
    EXPECT_EQ(eof.error().code, Errc::closed);
  }
  {  // a bad method name in an otherwise good call
    auto raw = connect(peer.url).value();
    auto frame = call_frame(1, "test.Peer/Add", {});
    frame[rpc::wire::kFixed + 10 + 4] = std::byte{' '};
    auto f = exchange(raw, frame, reply);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->kind, rpc::wire::Kind::error);
  }
  {  // "out of band" with a descriptor that is not a sealed memfd: that call fails, the connection goes on
    auto raw = connect(peer.url).value();
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    Fd r(p[0]), w(p[1]);
    const int fd = r.get();
    auto f = exchange(raw, call_frame(5, kChecksum.name, {}, rpc::wire::flag::out_of_band, 4096), reply, std::span<const int>(&fd, 1));
    ASSERT_TRUE(f);
    EXPECT_EQ(f->kind, rpc::wire::Kind::response);
    EXPECT_EQ(f->id, 5u);
    EXPECT_EQ(f->aux, static_cast<std::uint32_t>(Code::invalid_argument));
    EXPECT_NE(f->message.find("seal"), std::string_view::npos) << f->message;
    // An unsealed memfd, which the sender could still change under the reader.
    Fd mem(::memfd_create("unsealed", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(mem.get(), 4096), 0);
    const int mfd = mem.get();
    f = exchange(raw, call_frame(6, kChecksum.name, {}, rpc::wire::flag::out_of_band, 4096), reply, std::span<const int>(&mfd, 1));
    ASSERT_TRUE(f);
    EXPECT_EQ(f->aux, static_cast<std::uint32_t>(Code::invalid_argument));
    // The same id twice while the first is in flight (a 10 s sleep: a request of all 4 bytes,
    // or the first call fails to decode, ends, and no longer holds its id).
    const std::uint32_t ms = 10000;
    const auto sleep = std::as_bytes(std::span(&ms, 1));
    ASSERT_TRUE(raw.send(call_frame(7, kSleep.name, sleep), 5s));
    f = exchange(raw, call_frame(7, kSleep.name, sleep), reply);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->kind, rpc::wire::Kind::error);
  }
  auto ok = good.call(kAdd, Add{.a = 2, .b = 3}, 10s);
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(*ok, 5);
}

TEST(Rpc, MethodNamesAreCheckedBeforeSending) {
  Watchdog wd(30s);
  Peer peer("unix");
  auto c = peer.client();
  for (std::string_view bad : {"", "NoSlash", "a/b/c", "/Method", "Service/", "has space/M"}) {
    auto r = c.call_raw(bad, {}, 5s);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Code::invalid_argument) << bad;
  }
  EXPECT_TRUE(c.call(kAdd, Add{}, 10s));
}

}  // namespace
}  // namespace ipcx::test
