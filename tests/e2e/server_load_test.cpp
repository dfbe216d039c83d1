// The server engine in this process against thousands of stalled clients and against clients
// that send most of a huge frame and stop. The clients run in a separate process
// (ipcx-hostile-peer): they hold real descriptors and real socket buffers of their own.
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/attack_util.hpp"
#include "e2e/cli_harness.hpp"
#include "server_harness.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using ipcx::ServerStats;
using ipcx::test::Child;
using ipcx::test::ScratchDir;
using ipcx::test::ServerThread;
using ipcx::test::Watchdog;

namespace {

constexpr std::size_t MiB = std::size_t{1} << 20;

#ifdef IPCX_TEST_SANITIZED
constexpr int kStalled = 2000;  // same property, fewer connections: sanitizers are slow and hungry
#else
constexpr int kStalled = 5000;
#endif

ipcx::Server echo_server(const std::string& url, ipcx::ServerOptions so) {
  ipcx::Options lo;
  lo.backlog = 4096;  // the kernel caps it at somaxconn; only makes connecting faster
  auto listener = ipcx::listen(url, lo);
  EXPECT_TRUE(listener.has_value()) << listener.error().message();
  ipcx::Server::Handlers h;
  h.on_message = [](ipcx::Session& s, ipcx::Message& m) { (void)s.send(m.bytes()); };
  auto server = ipcx::Server::create(std::move(h), so);
  EXPECT_TRUE(server.has_value()) << server.error().message();
  auto added = server->add_listener(std::move(*listener));
  EXPECT_TRUE(added.has_value());
  return std::move(*server);
}

void expect_fresh_client_served(const std::string& url) {
  auto c = ipcx::connect(url);
  ASSERT_TRUE(c.has_value()) << c.error().message();
  ASSERT_TRUE(c->send(ipcx::as_bytes("fresh"), 10s).has_value());
  auto r = c->recv(10s);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ(r->text(), "fresh");
}

}  // namespace

// Thousands of clients that each send one byte of a header and stall: all are held at once,
// within the memory limit, and everything they held is given back when they go.
TEST(StalledClients, ThousandsAreHeldCheaplyAndReleasedCompletely) {
  Watchdog wd(110s);
  if (auto soft = ipcx::test::raise_fd_limit(); soft < 12'000)
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << soft << " < 12000: cannot hold " << kStalled << " clients";
  ScratchDir dir;
  auto sock = dir.file("s");
  const std::size_t limit = 64 * MiB;
  ServerThread st(echo_server("unix://" + sock, {.max_connections = 6000,
                                                 .memory_limit = limit,
                                                 .frame_timeout = ipcx::forever}));

  auto peer = Child::start({IPCX_HOSTILE_PEER, "stall", sock, std::to_string(kStalled)});
  ASSERT_TRUE(peer.wait_stdout("ready " + std::to_string(kStalled), 90s)) << peer.out() << peer.err();
  ASSERT_TRUE(st.wait_stats([](const ServerStats& s) { return s.connections == static_cast<std::size_t>(kStalled); }, 30s))
      << "connections: " << st.stats().connections;
  auto held = st.stats();
  EXPECT_EQ(held.accepted, static_cast<std::uint64_t>(kStalled));
  EXPECT_EQ(held.refused_limit, 0u);
  EXPECT_EQ(held.refused_resources, 0u);
  EXPECT_LE(held.memory_in_use, limit);
  EXPECT_LE(held.memory_peak, limit);
  EXPECT_LT(held.memory_in_use, 64 * MiB) << "per stalled client: " << held.memory_in_use / kStalled << " bytes";
  // An honest client still gets in and is served beside them.
  expect_fresh_client_served("unix://" + sock);

  peer.signal(SIGKILL);
  (void)peer.finish();
  EXPECT_TRUE(st.wait_stats([](const ServerStats& s) { return s.connections == 0 && s.memory_in_use == 0; }, 30s))
      << "connections " << st.stats().connections << ", memory_in_use " << st.stats().memory_in_use;
}

// Ten clients each send 59 MiB of a 60 MiB frame and stop. The server never holds more than its
// 128 MiB limit, drops each at the frame timeout with a goodbye saying so, returns to zero
// memory, and serves a fresh client.
TEST(StalledClients, HugeUnfinishedFramesStayWithinTheMemoryLimit) {
  Watchdog wd(110s);
  ScratchDir dir;
  auto sock = dir.file("s");
  const std::size_t limit = 128 * MiB;
  ServerThread st(echo_server("unix://" + sock, {.memory_limit = limit, .frame_timeout = 2s}));

  auto peer = Child::start({IPCX_HOSTILE_PEER, "partial", sock, "10", std::to_string(59 * MiB), std::to_string(60 * MiB)});
  ASSERT_TRUE(peer.wait_stdout("all dropped", 60s)) << peer.out() << peer.err();
  EXPECT_EQ(peer.finish(), 0) << peer.err();
  // Each is dropped with a reason: stalled at its frame deadline, or — while every unfinished
  // message waits for memory none of them can get — as the one that started last.
  EXPECT_EQ(ipcx::test::count_of(peer.out(), "frame timeout") + ipcx::test::count_of(peer.out(), "out of resources"), 10)
      << peer.out();

  ASSERT_TRUE(st.wait_stats([](const ServerStats& s) { return s.connections == 0 && s.memory_in_use == 0; }, 30s))
      << "connections " << st.stats().connections << ", memory_in_use " << st.stats().memory_in_use;
  auto s = st.stats();
  EXPECT_LE(s.memory_peak, limit);
  EXPECT_GT(s.memory_peak, 16 * MiB) << "the clients did get their bytes in";
  EXPECT_EQ(s.dropped_frame_timeout + s.dropped_memory, 10u);
  EXPECT_EQ(s.messages_in, 0u);
  expect_fresh_client_served("unix://" + sock);
}
