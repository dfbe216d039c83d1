// The RPC layer's edges: a server in a thread of this process (or a raw peer that misbehaves)
// and a client, for what needs the server's options or its lifetime in hand: memory limits,
// stop and destruction around serve(), a server that never answers a cancel, sparse memfds.
#include <algorithm>
#include <future>
#include <thread>

#include <sys/mman.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>
#include <ipcx/rpc.hpp>

#include "rpc/wire.hpp"
#include "test_util.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;
using rpc::Code;

constexpr rpc::Method<std::uint64_t, std::vector<std::byte>> kBlob{"edge.Test/Blob"};  // that many bytes
constexpr rpc::Method<std::uint64_t, std::uint64_t> kTwice{"edge.Test/Twice"};

rpc::Server make_server(rpc::ServerOptions o = {}) {
  auto s = rpc::Server::create(o).value();
  s.unary(kBlob, [](rpc::Context&, const std::uint64_t& n, std::vector<std::byte>& out) {
    out.assign(n, std::byte{7});
    return rpc::Status{};
  });
  s.unary(kTwice, [](rpc::Context&, const std::uint64_t& n, std::uint64_t& out) {
    out = 2 * n;
    return rpc::Status{};
  }, rpc::Run::loop);
  return s;
}

// The server sends at most the lower of the two stream windows ahead of the client, and the
// client does not know the server's: whatever the two windows, a stream reaches its end (a
// client that credited only after half of its own window waited for ever on a server whose
// window was under that half).
TEST(RpcEdges, AStreamEndsWhateverTheTwoWindows) {
  Watchdog wd(120s);
  constexpr rpc::Method<std::uint32_t, std::uint32_t> kCount{"edge.Test/Count"};
  for (const std::uint32_t server_window : {1u, 10u, 64u}) {
    for (const std::uint32_t client_window : {1u, 2u, 64u, 130u, 100000u}) {
      SCOPED_TRACE(fmt::format("server window {}, client window {}", server_window, client_window));
      rpc::ServerOptions o;
      o.stream_window = server_window;
      auto server = make_server(o);
      server.server_stream(kCount, [](rpc::Context&, const std::uint32_t& n, rpc::Writer<std::uint32_t>& w) {
        for (std::uint32_t i = 0; i < n; ++i)
          if (!w.write(i)) return rpc::Status{Code::cancelled, "the stream was given up"};
        return rpc::Status{};
      });
      ScratchDir dir;
      auto url = server.listen("unix://" + dir.file("s.sock")).value();
      std::thread loop([&] { (void)server.run(); });
      std::uint32_t got = 0;
      std::string failure;
      {
        auto c = rpc::Client::connect(url, {.stream_window = client_window}).value();
        auto st = c.stream(kCount, std::uint32_t{300}, 20s);
        if (!st) failure = st.error().to_string();
        while (st) {
          auto item = st->next();
          if (!item) failure = item.error().to_string();
          if (!item || !item->has_value()) break;
          if (**item != got) failure = fmt::format("item {} where {} was due", **item, got);
          if (**item != got) break;
          ++got;
        }
      }
      server.stop();
      loop.join();
      EXPECT_EQ(failure, "");
      EXPECT_EQ(got, 300u);
    }
  }
}

// A response the server's engine cannot queue (over its memory limit) is answered with a status
// at once, never dropped with the caller left waiting.
TEST(RpcEdges, AResponseOverTheMemoryLimitIsAStatusNotASilence) {
  Watchdog wd(60s);
  rpc::ServerOptions o;
  o.engine.memory_limit = std::size_t{1} << 20;
  auto server = make_server(o);
  auto url = server.listen("tcp://127.0.0.1:0").value();
  std::thread loop([&] { (void)server.run(); });
  auto c = rpc::Client::connect(url).value();
  auto r = c.call(kBlob, std::uint64_t{2} << 20, 30s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::resource_exhausted) << r.error().to_string();
  auto ok = c.call(kTwice, std::uint64_t{21}, 10s);  // the connection goes on
  ASSERT_TRUE(ok.has_value()) << ok.error().to_string();
  EXPECT_EQ(*ok, 42u);
  server.stop();
  loop.join();
}

// cancel() from another thread ends a get() blocked reading, even when the server never
// answers anything (here: a listener that accepts and reads nothing).
TEST(RpcEdges, CancelWakesTheReadingThreadWithoutTheServersHelp) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto listener = listen("unix://" + dir.file("mute.sock")).value();
  auto c = rpc::Client::connect(listener.url()).value();
  auto mute = listener.accept(5s).value();
  auto p = c.start(kTwice, std::uint64_t{1}, 60s);
  ASSERT_TRUE(p);
  auto later = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(100ms);
    p->cancel();
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto r = p->get();
  later.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s);  // not the call's 60 s deadline
  // close() likewise, for a second call blocked the same way.
  auto q = c.start(kTwice, std::uint64_t{2}, 60s);
  ASSERT_TRUE(q);
  auto closer = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(100ms);
    c.close();
  });
  auto r2 = q->get();
  closer.get();
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, Code::unavailable);
}

// serve() after stop() returns at once; a Server destroyed while serve() runs in another thread
// ends that serve() first (its connection closed), and the client sees UNAVAILABLE.
TEST(RpcEdges, StopAndDestructionEndServe) {
  Watchdog wd(60s);
  ScratchDir dir;
  {
    auto server = make_server();
    auto listener = listen("unix://" + dir.file("a.sock")).value();
    auto c = rpc::Client::connect(listener.url()).value();
    server.stop();
    auto r = server.serve(listener.accept(5s).value());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::closed);
  }
  auto server = std::make_unique<rpc::Server>(make_server());
  auto listener = listen("unix://" + dir.file("b.sock")).value();
  auto c = rpc::Client::connect(listener.url()).value();
  auto conn = listener.accept(5s).value();
  std::promise<Result<void>> served;
  std::thread t([&] { served.set_value(server->serve(std::move(conn))); });
  auto ok = c.call(kTwice, std::uint64_t{4}, 10s);
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(*ok, 8u);
  server.reset();  // waits for serve() to return
  auto r = served.get_future().get();
  t.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed);
  auto after = c.call(kTwice, std::uint64_t{4}, 10s);
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, Code::unavailable);
}

// The same over a pipe, whose read closing the connection in another thread does not wake:
// stop() ends serve() all the same, and the call in flight ends UNAVAILABLE, not at its deadline.
TEST(RpcEdges, StopEndsServeOverAPipe) {
  Watchdog wd(60s);
  constexpr rpc::Method<std::uint64_t, std::uint64_t> kSlow{"edge.Test/Slow"};
  std::atomic<bool> release{false};  // (the handler answers only after the checks)
  auto server = make_server();
  server.unary(kSlow, [&release](rpc::Context&, const std::uint64_t& n, std::uint64_t& out) {
    while (!release.load()) std::this_thread::sleep_for(5ms);
    out = n;
    return rpc::Status{};
  });
  auto [ours, theirs] = pipe_pair().value();
  auto c = rpc::Client::adopt(std::move(ours)).value();
  std::promise<Result<void>> served;
  std::thread t([&, conn = std::move(theirs)]() mutable { served.set_value(server.serve(std::move(conn))); });
  auto ok = c.call(kTwice, std::uint64_t{4}, 10s);
  ASSERT_TRUE(ok) << ok.error().to_string();
  auto slow = c.start(kSlow, std::uint64_t{1}, 30s).value();
  std::this_thread::sleep_for(200ms);
  const auto t0 = std::chrono::steady_clock::now();
  server.stop();
  auto fut = served.get_future();
  const bool ended = fut.wait_for(5s) == std::future_status::ready;
  EXPECT_TRUE(ended) << "serve() still running 5 s after stop()";
  auto r = slow.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "the call ended only at its deadline";
  EXPECT_FALSE(r.has_value());
  if (!r) {
    EXPECT_EQ(r.error().code, Code::unavailable) << r.error().to_string();
  }
  release.store(true);
  t.join();
  auto sr = fut.get();
  ASSERT_FALSE(sr);
  EXPECT_EQ(sr.error().code, Errc::closed);
}

// An out-of-band request whose memfd has holes (sealed, but never written: it costs its sender
// nothing) is refused; mapping it would make the server allocate its pages.
TEST(RpcEdges, ASparseMemfdIsRefused) {
  Watchdog wd(60s);
  auto server = make_server();
  ScratchDir dir;
  auto url = server.listen("unix://" + dir.file("s.sock")).value();
  std::thread loop([&] { (void)server.run(); });
  auto raw = connect(url).value();
  Fd mem(::memfd_create("sparse", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(::ftruncate(mem.get(), std::int64_t{1} << 30), 0);
  ASSERT_EQ(::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL), 0);
  std::vector<std::byte> frame;
  rpc::wire::encode(frame, rpc::wire::Frame{.kind = rpc::wire::Kind::call, .flags = rpc::wire::flag::out_of_band, .id = 1,
                                            .method = kBlob.name, .oob_size = std::uint64_t{1} << 30}, 0);
  const int fd = mem.get();
  ASSERT_TRUE(raw.send(frame, std::span<const int>(&fd, 1), 5s));
  auto reply = raw.recv(10s);
  ASSERT_TRUE(reply) << reply.error().message();
  auto f = rpc::wire::decode(reply->bytes(), reply->fds.size());
  ASSERT_TRUE(f);
  EXPECT_EQ(f->aux, static_cast<std::uint32_t>(Code::invalid_argument));
  EXPECT_NE(f->message.find("holes"), std::string_view::npos) << f->message;
  server.stop();
  loop.join();
}

// A unary call read as a stream, or a stream read as a unary call: a clear status, not a hang.
TEST(RpcEdges, ReadingACallTheWrongWayIsAStatus) {
  Watchdog wd(60s);
  auto server = make_server();
  ScratchDir dir;
  auto url = server.listen("unix://" + dir.file("w.sock")).value();
  std::thread loop([&] { (void)server.run(); });
  auto c = rpc::Client::connect(url).value();
  const std::uint64_t n = 3;
  auto call = c.start_raw(kTwice.name, rpc::body_of(n), 10s, false);
  ASSERT_TRUE(call);
  auto wrong = call->next(1s);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Code::failed_precondition);
  auto right = call->wait(10s);
  ASSERT_TRUE(right) << right.error().to_string();
  server.stop();
  loop.join();
}

// Methods may be added and replaced while the server serves (from another thread).
TEST(RpcEdges, MethodsAddedWhileServingAreCallable) {
  Watchdog wd(60s);
  auto server = make_server();
  ScratchDir dir;
  auto url = server.listen("unix://" + dir.file("m.sock")).value();
  std::thread loop([&] { (void)server.run(); });
  auto c = rpc::Client::connect(url).value();
  constexpr rpc::Method<std::uint64_t, std::uint64_t> kLate{"edge.Test/Late"};
  auto before = c.call(kLate, std::uint64_t{1}, 10s);
  ASSERT_FALSE(before);
  EXPECT_EQ(before.error().code, Code::unimplemented);
  for (std::uint64_t k : {10u, 20u}) {
    server.unary(kLate, [k](rpc::Context&, const std::uint64_t& n, std::uint64_t& out) {
      out = n + k;
      return rpc::Status{};
    });
    auto r = c.call(kLate, std::uint64_t{1}, 10s);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(*r, 1 + k);
  }
  server.stop();
  loop.join();
}

// A type whose codec cannot encode more than 1000 bytes (as protobuf cannot encode more than
// INT_MAX): `n` bytes of its value.
struct Capped {
  std::size_t n = 0;
};

}  // namespace
}  // namespace ipcx::test

template <>
struct ipcx::rpc::Codec<ipcx::test::Capped> {
  static constexpr std::size_t max_size = 1000;
  static std::size_t size(const ipcx::test::Capped& v) noexcept { return v.n; }
  static void write(const ipcx::test::Capped&, std::span<std::byte> out) noexcept { std::ranges::fill(out, std::byte{1}); }
  static bool read(std::span<const std::byte> in, ipcx::test::Capped& v) noexcept {
    v.n = in.size();
    return true;
  }
};

namespace ipcx::test {
namespace {

// A message over its codec's max_size is refused before anything is written: by the client
// (too large to send; the connection goes on), and from a handler (RESOURCE_EXHAUSTED).
TEST(RpcEdges, AMessageOverItsCodecsLimitIsRefused) {
  Watchdog wd(60s);
  constexpr rpc::Method<Capped, Capped> kEcho{"edge.Test/CappedEcho"};
  constexpr rpc::Method<std::uint64_t, Capped> kMake{"edge.Test/CappedMake"};
  auto server = make_server();
  server.unary(kEcho, [](rpc::Context&, const Capped& in, Capped& out) {
    out = in;
    return rpc::Status{};
  });
  server.unary(kMake, [](rpc::Context&, const std::uint64_t& n, Capped& out) {
    out.n = n;
    return rpc::Status{};
  });
  ScratchDir dir;
  auto url = server.listen("unix://" + dir.file("c.sock")).value();
  std::thread loop([&] { (void)server.run(); });
  auto c = rpc::Client::connect(url).value();
  auto ok = c.call(kEcho, Capped{1000}, 10s);
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->n, 1000u);
  auto over = c.call(kEcho, Capped{1001}, 10s);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, Code::resource_exhausted) << over.error().to_string();
  EXPECT_NE(over.error().message.find("what its codec can encode (1000 bytes)"), std::string::npos) << over.error().to_string();
  auto made = c.call(kMake, std::uint64_t{5000}, 10s);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().code, Code::resource_exhausted) << made.error().to_string();
  EXPECT_NE(made.error().message.find("5000 bytes"), std::string::npos) << made.error().to_string();
  auto after = c.call(kTwice, std::uint64_t{21}, 10s);
  ASSERT_TRUE(after) << after.error().to_string();
  EXPECT_EQ(*after, 42u);
  server.stop();
  loop.join();
}

}  // namespace
}  // namespace ipcx::test
