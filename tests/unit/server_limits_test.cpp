// The server engine's bounds, each attacked the way a careless or hostile client would: the
// connection limit, a frame that never completes, silence, a client that never reads (send
// timeout, SlowPeer::drop, SlowPeer::pause), and a client that sends as fast as it can.
#include <atomic>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "support.hpp"
#include "unit/server_support.hpp"

using namespace std::chrono_literals;
using ipcx::Errc;
using ipcx::ServerStats;
using ipcx::test::echo_handlers;
using ipcx::test::echo_once;
using ipcx::test::UnixServer;
using ipcx::test::Watchdog;

namespace {
constexpr std::size_t KiB = 1024, MiB = 1024 * KiB;
}

TEST(ServerLimits, ConnectionLimitRefusesWithAGoodbye) {
  Watchdog wd(60s);
  UnixServer srv(echo_handlers(), {.max_connections = 3});
  std::vector<ipcx::Connection> in;
  for (int i = 0; i < 3; ++i) {
    in.push_back(srv.client());
    ASSERT_TRUE(echo_once(in.back(), "in " + std::to_string(i)));
  }
  auto fourth = srv.client();
  auto r = fourth.recv(10s);
  ASSERT_FALSE(r.has_value()) << "the fourth client was served";
  EXPECT_EQ(r.error().code, Errc::connection_refused) << r.error().message();
  EXPECT_NE(r.error().message().find("connection limit"), std::string::npos) << r.error().message();
  auto s = srv.stats();
  EXPECT_EQ(s.connections, 3u);
  EXPECT_EQ(s.refused_limit, 1u);
  for (auto& c : in) EXPECT_TRUE(echo_once(c, "still served"));

  // A freed slot is taken by the next client.
  in[0].close();
  ASSERT_TRUE(srv.wait_stats([](const ServerStats& st) { return st.connections == 2; }));
  auto fifth = srv.client();
  EXPECT_TRUE(echo_once(fifth, "fifth"));
}

// `ipcx ping` and most clients write first. A refused client that does so must still learn the
// reason, not a bare "broken pipe".
TEST(ServerLimits, RefusedClientThatSendsFirstStillLearnsWhy) {
  Watchdog wd(60s);
  UnixServer srv(echo_handlers(), {.max_connections = 1});
  auto first = srv.client();
  ASSERT_TRUE(echo_once(first, "first"));
  auto second = srv.client();
  ASSERT_TRUE(srv.wait_stats([](const ServerStats& s) { return s.refused_limit == 1; }));
  auto sent = second.send(ipcx::as_bytes("let me in"), 5s);
  if (!sent) {
    EXPECT_EQ(sent.error().code, Errc::connection_refused) << sent.error().message();
    EXPECT_NE(sent.error().message().find("connection limit"), std::string::npos) << sent.error().message();
  }
  auto r = second.recv(5s);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::connection_refused) << r.error().message();
}

// Slowloris: a header and part of a payload, then nothing. Dropped at the frame timeout with a
// goodbye saying so; a client that completes its frames meanwhile is untouched.
TEST(ServerLimits, UnfinishedFrameIsDroppedAtTheFrameTimeout) {
  Watchdog wd(60s);
  UnixServer srv(echo_handlers(), {.frame_timeout = 300ms});
  auto honest = srv.client();
  auto slow = ipcx::test::raw_unix_client(srv.path);
  ASSERT_TRUE(slow.valid());
  auto header = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = 1000});
  ASSERT_EQ(::write(slow.get(), header.data(), header.size()), 16);
  ASSERT_EQ(::write(slow.get(), "0123456789", 10), 10);
  const auto t0 = std::chrono::steady_clock::now();
  // The honest client keeps sending whole frames for longer than the frame timeout.
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(echo_once(honest, "whole frame " + std::to_string(i)));
    std::this_thread::sleep_for(100ms);
  }
  auto bye = ipcx::test::read_goodbye(slow.get());
  EXPECT_NE(bye.find("frame timeout"), std::string::npos) << bye;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms);
  ASSERT_TRUE(srv.wait_stats([](const ServerStats& s) { return s.dropped_frame_timeout == 1; }));
  auto s = srv.stats();
  EXPECT_EQ(s.connections, 1u);
  EXPECT_EQ(s.dropped_frame_timeout, 1u);
  EXPECT_TRUE(echo_once(honest, "after"));
}

TEST(ServerLimits, IdleTimeoutClosesOnlyQuietClients) {
  Watchdog wd(60s);
  UnixServer srv(echo_handlers(), {.idle_timeout = 300ms});
  auto quiet = srv.client();
  auto chatty = srv.client();
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(echo_once(chatty, "chat " + std::to_string(i)));
    std::this_thread::sleep_for(100ms);
  }
  auto r = quiet.recv(10s);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
  EXPECT_NE(r.error().message().find("idle timeout"), std::string::npos) << r.error().message();
  auto s = srv.stats();
  EXPECT_EQ(s.dropped_idle, 1u);
  EXPECT_EQ(s.connections, 1u);
  EXPECT_TRUE(echo_once(chatty, "still here"));
}

// The server pushes to a client (from a timer, through find(id)) that never reads: once the
// kernel buffers and its queue are full, nothing moves, and send_timeout drops it.
TEST(ServerLimits, SendTimeoutDropsAClientThatNeverReads) {
  Watchdog wd(60s);
  std::vector<ipcx::Session::Id> ids;  // loop thread only
  ipcx::Server::Handlers h;
  h.on_open = [&](ipcx::Session& s) { ids.push_back(s.id()); };
  h.on_message = [](ipcx::Session&, ipcx::Message&) {};
  std::vector<std::byte> chunk(64 * KiB, std::byte{7});
  std::uint64_t would_block = 0;
  UnixServer srv(std::move(h), {.max_queued = 1 * MiB, .send_timeout = 500ms}, [&](ipcx::Server& server) {
    auto* sv = &server;
    (void)server.reactor().add_timer(1ms, 1ms, [&, sv] {
      for (auto id : ids)
        if (auto* s = sv->find(id))
          while (true) {
            auto r = s->send(chunk);
            if (!r) {
              if (r.error().code == Errc::would_block) ++would_block;
              break;
            }
          }
    });
  });
  auto mute = srv.client();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(srv.wait_stats([](const ServerStats& s) { return s.dropped_send_timeout == 1; }, 20s))
      << "dropped_send_timeout " << srv.stats().dropped_send_timeout;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 500ms);
  auto s = srv.stats();
  EXPECT_EQ(s.connections, 0u);
  // The queue holds at most max_queued plus one message; its buffer grows by half at a time,
  // and while it moves, old and new buffers both exist (and are both counted).
  EXPECT_LE(s.memory_peak, 5 * (1 * MiB + 64 * KiB) / 2) << "the queue of a client that never reads stays bounded";
  EXPECT_GT(srv.thread->call([&](ipcx::Server&) { return would_block; }), 0u);
}

// SlowPeer::drop: the reply that finds the queue full closes the client, which reads what was
// queued and then the reason.
TEST(ServerLimits, SlowPeerDropClosesAClientWhoseQueueIsFull) {
  Watchdog wd(60s);
  int accepted_sends = 0;
  Errc last = Errc::system;
  ipcx::Server::Handlers h;
  h.on_message = [&](ipcx::Session& s, ipcx::Message&) {
    std::vector<std::byte> reply(16 * KiB, std::byte{'r'});
    for (int i = 0; i < 100; ++i) {
      auto r = s.send(reply);
      if (!r) {
        last = r.error().code;
        return;
      }
      ++accepted_sends;
    }
  };
  UnixServer srv(std::move(h), {.max_queued = 64 * KiB, .slow_peer = ipcx::SlowPeer::drop});
  auto c = srv.client();
  ASSERT_TRUE(c.send(ipcx::as_bytes("go"), 5s).has_value());
  ASSERT_TRUE(srv.wait_stats([](const ServerStats& s) { return s.dropped_slow == 1; }));
  auto [sent, code] = srv.thread->call([&](ipcx::Server&) { return std::pair{accepted_sends, last}; });
  EXPECT_EQ(code, Errc::closed);
  EXPECT_GE(sent, 1);
  EXPECT_LT(sent, 100);
  for (int i = 0; i < sent; ++i) {
    auto m = c.recv(10s);
    ASSERT_TRUE(m.has_value()) << "message " << i << ": " << m.error().message();
    EXPECT_EQ(m->size(), 16 * KiB);
  }
  auto end = c.recv(10s);
  ASSERT_FALSE(end.has_value());
  EXPECT_EQ(end.error().code, Errc::closed) << end.error().message();
  EXPECT_NE(end.error().message().find("outgoing queue full"), std::string::npos) << end.error().message();
}

// SlowPeer::pause: send reports would_block while the queue is full, the client's requests wait
// unread, and on_drain fires only once the client reads. Everything arrives, in order.
TEST(ServerLimits, SlowPeerPauseWaitsForTheReaderAndResumes) {
  Watchdog wd(60s);
  constexpr int kTotal = 64;
  struct State {
    int next = 0, would_block = 0, drains = 0, requests = 0;
  } st;  // loop thread only
  auto message = [](int i) {
    auto m = ipcx::test::pattern(64 * KiB, static_cast<std::uint32_t>(i));
    std::memcpy(m.data(), &i, sizeof i);
    return m;
  };
  auto pump = [&](ipcx::Session& s) {
    while (st.next < kTotal) {
      auto r = s.send(message(st.next));
      if (!r) {
        EXPECT_EQ(r.error().code, Errc::would_block) << r.error().message();
        ++st.would_block;
        return;
      }
      ++st.next;
    }
  };
  ipcx::Server::Handlers h;
  h.on_message = [&](ipcx::Session& s, ipcx::Message&) {
    if (++st.requests == 1) pump(s);
  };
  h.on_drain = [&](ipcx::Session& s) {
    ++st.drains;
    pump(s);
  };
  UnixServer srv(std::move(h), {.max_queued = 1 * MiB});
  auto snapshot = [&] { return srv.thread->call([&](ipcx::Server&) { return st; }); };
  auto c = srv.client();
  // Both requests in one write, so the server reads them in one go: the second is already
  // decoded, in user space, when the first one's replies pause the client.
  std::string two;
  for (std::string_view text : {"go", "while paused"}) {
    auto hdr = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = static_cast<std::uint32_t>(text.size())});
    two.append(reinterpret_cast<const char*>(hdr.data()), hdr.size());
    two.append(text);
  }
  ASSERT_EQ(::write(*c.native_handle(), two.data(), two.size()), static_cast<ssize_t>(two.size()));
  std::this_thread::sleep_for(300ms);
  auto paused = snapshot();
  EXPECT_GE(paused.would_block, 1);
  EXPECT_EQ(paused.drains, 0) << "nothing can drain while the client reads nothing";
  EXPECT_EQ(paused.requests, 1) << "a paused client's requests wait in the kernel";
  EXPECT_LT(paused.next, kTotal);

  for (int i = 0; i < kTotal; ++i) {
    auto m = c.recv(10s);
    ASSERT_TRUE(m.has_value()) << "message " << i << ": " << m.error().message();
    ASSERT_EQ(ipcx::test::mismatch(m->bytes(), message(i)), "") << "message " << i;
  }
  // The request that waited while paused is handled now, without the client sending more.
  EXPECT_TRUE(srv.wait_stats([&](const ServerStats&) { return snapshot().requests == 2; }, 5s))
      << "requests " << snapshot().requests << ", drains " << snapshot().drains << ", sent " << snapshot().next;
  auto done = snapshot();
  EXPECT_GE(done.drains, 1);
  EXPECT_EQ(done.next, kTotal);
}

// One client sends small messages as fast as it can; another's round trips still complete.
TEST(ServerLimits, AFastSenderCannotStarveAnotherClient) {
  Watchdog wd(60s);
  ipcx::Server::Handlers h;
  h.on_message = [](ipcx::Session& s, ipcx::Message& m) {
    if (m.text().starts_with("ping")) (void)s.send(m.bytes());
  };
  UnixServer srv(std::move(h), {});
  auto flood = srv.client();
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> flooded{0};
  ipcx::test::Worker flooder(flood, [&] {
    std::string junk(64, 'j');
    while (!stop.load() && flood.send(ipcx::as_bytes(junk), 5s)) ++flooded;
  });
  ASSERT_TRUE(srv.wait_stats([](const ServerStats& s) { return s.messages_in > 10'000; }, 20s));
  auto other = srv.client();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(echo_once(other, "ping " + std::to_string(i)));
  auto took = std::chrono::steady_clock::now() - t0;
  auto before = flooded.load();
  EXPECT_LT(took, 2s) << "100 round trips beside a flood took "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  stop = true;
  flooder.join();
  EXPECT_GT(before, 10'000u) << "the flood was running all along";
}
