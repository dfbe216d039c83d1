// The server engine's memory limit against messages too big to hold together: a message the
// limit could never hold is refused at its header, and unfinished messages that cannot all
// fit do not wait for each other until they all time out.
#include <fcntl.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "support.hpp"
#include "unit/server_support.hpp"
#include "wire/frame.hpp"

using namespace std::chrono_literals;
using ipcx::ServerStats;
using ipcx::test::UnixServer;
using ipcx::test::Watchdog;

namespace {
constexpr std::size_t KiB = 1024, MiB = 1024 * KiB;

ipcx::Server::Handlers counting_handlers() {
  ipcx::Server::Handlers h;
  h.on_message = [](ipcx::Session&, ipcx::Message&) {};
  return h;
}

std::vector<std::byte> header_for(std::size_t length) {
  auto h = ipcx::wire::encode_header({ipcx::wire::FrameType::data, 0, 0, static_cast<std::uint32_t>(length)});
  return {h.begin(), h.end()};
}

}  // namespace

// With an 8 MiB limit a frame needs up to twice its size while its buffer grows: 5 MiB can
// never be held, so the header alone gets a refusal, not a wait.
TEST(ServerMemory, MessageTheLimitCouldNeverHoldIsRefusedAtItsHeader) {
  Watchdog wd(60s);
  UnixServer srv(counting_handlers(), {.memory_limit = 8 * MiB, .frame_timeout = 60s});
  auto raw = ipcx::test::raw_unix_client(srv.path);
  ASSERT_TRUE(raw.valid());
  auto h = header_for(5 * MiB);
  ASSERT_EQ(::send(raw.get(), h.data(), h.size(), MSG_NOSIGNAL), static_cast<ssize_t>(h.size()));
  auto why = ipcx::test::read_goodbye(raw.get(), 10s);
  EXPECT_NE(why.find("exceeds maximum"), std::string::npos) << why;
  EXPECT_TRUE(srv.wait_stats([](const ServerStats& s) { return s.dropped_protocol == 1 && s.connections == 0; }));
  // 3 MiB fits: a whole message of that size is received.
  auto c = srv.client();
  std::vector<std::byte> big(3 * MiB, std::byte{'m'});
  ASSERT_TRUE(c.send(big, 10s).has_value());
  EXPECT_TRUE(srv.wait_stats([](const ServerStats& s) { return s.messages_in == 1; }));
}

// Three 3 MiB messages sent at once, round-robin, under an 8 MiB limit: they cannot all be
// held. When every unfinished one waits for memory, the one that started last is dropped with a
// goodbye saying so, and the others complete — nobody waits for the frame timeout.
TEST(ServerMemory, UnfinishedMessagesThatCannotAllFitDoNotWaitForEachOther) {
  Watchdog wd(90s);
  UnixServer srv(counting_handlers(), {.memory_limit = 8 * MiB, .frame_timeout = 60s});
  constexpr std::size_t kMessage = 3 * MiB;
  std::vector<std::byte> frame = header_for(kMessage);
  frame.resize(ipcx::wire::kHeaderSize + kMessage, std::byte{'p'});
  std::vector<ipcx::Fd> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(ipcx::test::raw_unix_client(srv.path));
    ASSERT_TRUE(clients.back().valid());
  }
  std::vector<std::size_t> sent(3, 0);
  std::vector<bool> refused(3, false);
  auto resolved = [&] {
    for (int i = 0; i < 3; ++i)
      if (!refused[i] && sent[i] < frame.size()) return false;
    return true;
  };
  const auto t0 = std::chrono::steady_clock::now();
  while (!resolved() && std::chrono::steady_clock::now() - t0 < 30s) {
    std::size_t moved = 0;
    for (int i = 0; i < 3; ++i) {
      if (refused[i] || sent[i] == frame.size()) continue;
      ssize_t n = ::send(clients[i].get(), frame.data() + sent[i], std::min<std::size_t>(64 * KiB, frame.size() - sent[i]),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        sent[i] += static_cast<std::size_t>(n);
        moved += static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EAGAIN) {
        refused[i] = true;  // the server closed it: it must say why
        auto why = ipcx::test::read_goodbye(clients[i].get(), 10s);
        EXPECT_NE(why.find("out of resources"), std::string::npos) << why;
      }
    }
    if (moved == 0) std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE(resolved()) << "after 30 s: sent " << sent[0] << "/" << sent[1] << "/" << sent[2]
                          << " of " << frame.size() << ", memory " << srv.stats().memory_in_use;
  std::size_t delivered = 0;
  for (int i = 0; i < 3; ++i) delivered += refused[i] ? 0 : 1;
  EXPECT_GE(delivered, 1u);
  EXPECT_TRUE(srv.wait_stats([&](const ServerStats& s) { return s.messages_in == delivered; }, 30s))
      << "messages_in " << srv.stats().messages_in << ", delivered " << delivered;
  auto st = srv.stats();
  EXPECT_EQ(st.dropped_memory, 3 - delivered);
  EXPECT_EQ(st.dropped_frame_timeout, 0u);
  EXPECT_LE(st.memory_peak, 8 * MiB);
}
