// `ipcx listen --echo` against clients that do not play along: one that writes and never reads
// (staying connected, or reconnecting over and over), and an honest one that reads slowly.
// Every listener here is the real binary in its own process.
#include <cstring>
#include <string>
#include <thread>

#include <poll.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "e2e/attack_util.hpp"
#include "e2e/cli_harness.hpp"
#include "test_util.hpp"
#include "wire/frame.hpp"

using namespace std::chrono_literals;
using ipcx::test::Child;
using ipcx::test::ScratchDir;
using ipcx::test::Watchdog;

namespace {

// An echoing listener whose stdout (every message printed) goes nowhere and whose stderr goes
// to a file: a pipe the test does not drain while it plays clients would block the listener.
struct EchoListener {
  EchoListener(const ScratchDir& dir, const std::string& extra = "")
      : sock(dir.file("s")),
        log(dir.file("listener.log")),
        child(Child::shell(fmt::format("exec {} listen unix://{} --echo {} >/dev/null 2>{}", IPCX_CLI, sock, extra, log))) {}
  bool ready() { return ipcx::test::wait_file(log, "listening on "); }
  std::string url() const { return "unix://" + sock; }
  std::string stderr_text() const { return ipcx::test::read_file(log); }
  // SIGTERM; returns the exit status.
  int stop() {
    child.signal(SIGTERM);
    return child.finish();
  }
  std::string sock, log;
  Child child;
};

}  // namespace

// A client that sends 60 KB frames and never reads its echoes fills its own queue and is then
// no longer read (it ends up blocked in write); another client's round trips go on as before.
TEST(NeverReadingClient, DoesNotStallOtherClients) {
  Watchdog wd(90s);
  ScratchDir dir;
  EchoListener server(dir);
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  auto flooder = Child::start({IPCX_HOSTILE_PEER, "flood", server.sock});
  // Its queue full, the listener stops reading it, and its writes wait.
  ASSERT_TRUE(flooder.wait_stdout("blocked", 30s)) << flooder.out() << flooder.err();

  auto honest = ipcx::connect(server.url());
  ASSERT_TRUE(honest.has_value()) << honest.error().message();
  auto took = ipcx::test::round_trips(*honest, 100);
  EXPECT_LT(took, ipcx::test::kServedWithin) << "100 round trips beside a flooder took " << took.count() << " ms";
  EXPECT_TRUE(ipcx::test::alive(server.child.pid()));

  flooder.signal(SIGKILL);
  (void)flooder.finish();
  honest->close();
  EXPECT_LT(server.stop(), 128) << "the listener must exit from SIGTERM, not crash\n" << server.stderr_text();
}

// The same flooder closing and reconnecting every 4 MB: each new connection starts with an
// empty queue, so the flood never pauses, yet the honest client is still served.
TEST(NeverReadingClient, ReconnectingFlooderDoesNotStallOtherClients) {
  Watchdog wd(90s);
  ScratchDir dir;
  EchoListener server(dir);
  ASSERT_TRUE(server.ready()) << server.stderr_text();
  auto flooder = Child::start({IPCX_HOSTILE_PEER, "flood", server.sock, std::to_string(4'000'000)});
  ASSERT_TRUE(flooder.wait_stdout("reconnected", 30s)) << flooder.out() << flooder.err();

  auto honest = ipcx::connect(server.url());
  ASSERT_TRUE(honest.has_value()) << honest.error().message();
  for (int round = 0; round < 3; ++round) {
    auto took = ipcx::test::round_trips(*honest, 100);
    EXPECT_LT(took, ipcx::test::kServedWithin) << "round " << round << ": 100 round trips took " << took.count() << " ms";
  }
  EXPECT_TRUE(ipcx::test::alive(server.child.pid()));
  flooder.signal(SIGKILL);
  (void)flooder.finish();
  honest->close();
  EXPECT_LT(server.stop(), 128) << server.stderr_text();
}

// An honest client that reads its 4 MiB echo 64 KiB at a time with pauses gets every byte: a
// slow reader is not a dead one (its queue makes progress, so no send timeout applies).
TEST(SlowHonestReader, GetsEveryByteOfAFourMebibyteEcho) {
  Watchdog wd(90s);
  ScratchDir dir;
  EchoListener server(dir);
  ASSERT_TRUE(server.ready()) << server.stderr_text();

  constexpr std::size_t kSize = 4 * 1024 * 1024;
  std::vector<std::byte> payload(kSize);
  for (std::size_t i = 0; i < kSize; ++i) payload[i] = std::byte(static_cast<unsigned char>((i * 131 + i / 4099) & 0xff));
  auto header = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = kSize});

  auto fd = ipcx::test::raw_unix_client(server.sock);
  ASSERT_TRUE(fd.valid());
  ASSERT_TRUE(ipcx::test::write_all(fd.get(), header.data(), header.size()));
  ASSERT_TRUE(ipcx::test::write_all(fd.get(), payload.data(), payload.size()));

  std::vector<std::byte> got;
  got.reserve(ipcx::wire::kHeaderSize + kSize);
  std::vector<std::byte> chunk(64 * 1024);
  while (got.size() < ipcx::wire::kHeaderSize + kSize) {
    pollfd p{fd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "echo stalled after " << got.size() << " bytes";
    ssize_t n = ::recv(fd.get(), chunk.data(), chunk.size(), 0);
    ASSERT_GT(n, 0) << "connection ended after " << got.size() << " bytes: " << std::strerror(errno);
    got.insert(got.end(), chunk.begin(), chunk.begin() + n);
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(got.size(), ipcx::wire::kHeaderSize + kSize) << "more than one frame came back";
  auto h = ipcx::wire::decode_header(std::span<const std::byte, ipcx::wire::kHeaderSize>(got.data(), ipcx::wire::kHeaderSize),
                                     ipcx::wire::kDefaultMaxPayload);
  ASSERT_TRUE(h.has_value()) << h.error().message();
  EXPECT_EQ(h->type, ipcx::wire::FrameType::data);
  EXPECT_EQ(h->length, kSize);
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), got.begin() + ipcx::wire::kHeaderSize)) << "payload corrupted";

  fd.reset();
  EXPECT_EQ(server.stop(), 0) << "no client was dropped:\n" << server.stderr_text();
  EXPECT_EQ(server.stderr_text().find("dropping"), std::string::npos) << server.stderr_text();
}
