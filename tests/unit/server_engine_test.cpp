// The server engine's lifecycle: connections made elsewhere (adopt), a listener that runs dry
// (on_exhausted), handlers that end their own session mid-batch, and post() from other threads.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "support.hpp"
#include "unit/server_support.hpp"

using namespace std::chrono_literals;
using ipcx::Errc;
using ipcx::ServerStats;
using ipcx::test::echo_handlers;
using ipcx::test::echo_once;
using ipcx::test::ServerThread;
using ipcx::test::UnixServer;
using ipcx::test::Watchdog;

TEST(ServerEngine, CreateRequiresOnMessageAndSaneOptions) {
  auto none = ipcx::Server::create({});
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, Errc::invalid_argument);
  auto tiny = ipcx::Server::create(echo_handlers(), {.memory_limit = 1024});
  ASSERT_FALSE(tiny.has_value());
  EXPECT_EQ(tiny.error().code, Errc::invalid_argument);
}

// A pipe_pair end handed to the server is served like an accepted connection, and its end is
// reported to on_close as an orderly close.
TEST(ServerEngine, AdoptsOneEndOfAPipePair) {
  Watchdog wd(30s);
  auto pair = ipcx::pipe_pair();
  ASSERT_TRUE(pair.has_value()) << pair.error().message();
  std::vector<Errc> closes;  // loop thread only
  auto h = echo_handlers();
  h.on_close = [&](ipcx::Session&, const ipcx::Error& why) { closes.push_back(why.code); };
  auto server = ipcx::Server::create(std::move(h));
  ASSERT_TRUE(server.has_value());
  auto id = server->adopt(std::move(pair->second));
  ASSERT_TRUE(id.has_value()) << id.error().message();
  EXPECT_NE(server->find(*id), nullptr);
  EXPECT_EQ(server->connections(), 1u);
  EXPECT_FALSE(server->adopt(ipcx::Connection()).has_value()) << "an empty connection cannot be adopted";

  ServerThread st(std::move(*server));
  auto& client = pair->first;
  for (const std::string& m : std::vector<std::string>{"one", "two", std::string(300'000, 'x')})
    ASSERT_TRUE(echo_once(client, m));
  client.close();
  ASSERT_TRUE(st.wait_stats([](const ServerStats& s) { return s.connections == 0; }));
  auto got = st.call([&](ipcx::Server& s) {
    EXPECT_EQ(s.find(*id), nullptr);
    return closes;
  });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], Errc::closed);
  EXPECT_EQ(st.stats().closed_clean, 1u);
}

// A pipe: listener has one peer. Once that conversation ends nothing can arrive again:
// on_exhausted fires (once), and its stop() ends run().
TEST(ServerEngine, OnExhaustedFiresWhenAPipeListenersPeerLeaves) {
  Watchdog wd(30s);
  int to_server[2], to_client[2];
  ASSERT_EQ(::pipe2(to_server, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(to_client, O_CLOEXEC), 0);
  ipcx::Fd sr(to_server[0]), sw(to_server[1]), cr(to_client[0]), cw(to_client[1]);
  auto listener = ipcx::listen(fmt::format("pipe:?rfd={}&wfd={}", sr.get(), cw.get()));
  ASSERT_TRUE(listener.has_value()) << listener.error().message();
  auto client = ipcx::connect(fmt::format("pipe:?rfd={}&wfd={}", cr.get(), sw.get()));
  ASSERT_TRUE(client.has_value()) << client.error().message();
  sr.reset();  // the listener and the client hold their own duplicates
  sw.reset();
  cr.reset();
  cw.reset();

  std::atomic<int> exhausted{0};
  ipcx::Server* self = nullptr;
  auto h = echo_handlers();
  h.on_exhausted = [&] {
    ++exhausted;
    self->stop();
  };
  auto server = ipcx::Server::create(std::move(h));
  ASSERT_TRUE(server.has_value());
  self = &*server;
  ASSERT_TRUE(server->add_listener(std::move(*listener)).has_value());
  std::thread loop([&] { (void)server->run(); });
  ASSERT_TRUE(echo_once(*client, "only conversation"));
  client->close();
  loop.join();  // returns once on_exhausted has stopped it (the watchdog catches a hang)
  EXPECT_EQ(exhausted.load(), 1);
  EXPECT_FALSE(server->accepting());
  EXPECT_EQ(server->connections(), 0u);
}

// Handlers ending their own session in the middle of a batch: whatever the client pipelined
// after the request is not delivered, later calls on the session are harmless, and nothing is
// used after it is freed (this test is meant to run under ASan too).
TEST(ServerEngine, AbortAndCloseFromInsideOnMessageAreSafe) {
  Watchdog wd(30s);
  struct Seen {
    int after_abort = 0, after_close = 0;
    std::vector<std::string> late_errors;
  } seen;  // loop thread only
  ipcx::Server::Handlers h;
  h.on_message = [&](ipcx::Session& s, ipcx::Message& m) {
    auto text = std::string(m.text());
    if (text == "abort") {
      s.abort("aborted by the test");
      s.abort("twice");
      s.close();
      auto r = s.send(ipcx::as_bytes("too late"));
      seen.late_errors.push_back(r ? "sent" : std::string(ipcx::to_string(r.error().code)));
      EXPECT_FALSE(s.open());
      EXPECT_EQ(s.queued(), 0u);
    } else if (text == "close") {
      (void)s.send(ipcx::as_bytes("last words"));
      s.close();
      s.close();
      auto r = s.send(ipcx::as_bytes("too late"));
      seen.late_errors.push_back(r ? "sent" : std::string(ipcx::to_string(r.error().code)));
    } else if (text == "after abort") {
      ++seen.after_abort;
    } else if (text == "after close") {
      ++seen.after_close;
    } else {
      (void)s.send(m.bytes());
    }
  };
  std::vector<std::string> why;
  h.on_close = [&](ipcx::Session&, const ipcx::Error& e) { why.push_back(e.message()); };
  UnixServer srv(std::move(h), {});

  auto a = srv.client();
  ASSERT_TRUE(a.send(ipcx::as_bytes("abort"), 5s).has_value());
  (void)a.send(ipcx::as_bytes("after abort"), 5s);  // may find the connection closed already
  auto ra = a.recv(10s);
  ASSERT_FALSE(ra.has_value());
  EXPECT_EQ(ra.error().code, Errc::closed);
  EXPECT_NE(ra.error().message().find("aborted by the test"), std::string::npos) << ra.error().message();

  auto c = srv.client();
  ASSERT_TRUE(c.send(ipcx::as_bytes("close"), 5s).has_value());
  (void)c.send(ipcx::as_bytes("after close"), 5s);
  auto last = c.recv(10s);
  ASSERT_TRUE(last.has_value()) << "queued output is written before a close: " << last.error().message();
  EXPECT_EQ(last->text(), "last words");
  auto rc = c.recv(10s);
  ASSERT_FALSE(rc.has_value());
  EXPECT_EQ(rc.error().code, Errc::closed);

  ASSERT_TRUE(srv.wait_stats([](const ServerStats& s) { return s.connections == 0; }));
  auto other = srv.client();
  EXPECT_TRUE(echo_once(other, "the server is fine"));
  auto [got, whys] = srv.thread->call([&](ipcx::Server&) { return std::pair{seen, why}; });
  EXPECT_EQ(got.after_abort, 0);
  EXPECT_EQ(got.after_close, 0);
  EXPECT_EQ(got.late_errors, (std::vector<std::string>{"connection closed", "connection closed"}));
  EXPECT_EQ(whys.size(), 2u) << "on_close runs once per session";
  auto s = srv.stats();
  EXPECT_EQ(s.dropped_other, 1u) << "the abort";
  EXPECT_GE(s.closed_clean, 1u) << "the close";
}

// A handler that aborts a different session (found by id) while that one has messages queued.
TEST(ServerEngine, AbortingAnotherSessionFromAHandlerIsSafe) {
  Watchdog wd(30s);
  std::vector<ipcx::Session::Id> ids;
  ipcx::Server* self = nullptr;
  ipcx::Server::Handlers h;
  h.on_open = [&](ipcx::Session& s) { ids.push_back(s.id()); };
  h.on_message = [&](ipcx::Session& s, ipcx::Message& m) {
    if (m.text() == "kill the first") {
      if (auto* victim = self->find(ids.front())) victim->abort("killed by another client");
      EXPECT_EQ(self->find(ids.front()), nullptr);
    }
    (void)s.send(m.bytes());
  };
  UnixServer srv(std::move(h), {}, [&](ipcx::Server& s) { self = &s; });
  auto first = srv.client();
  ASSERT_TRUE(echo_once(first, "hello"));
  ASSERT_TRUE(first.send(ipcx::as_bytes("pending"), 5s).has_value());
  auto second = srv.client();
  ASSERT_TRUE(echo_once(second, "kill the first"));
  ipcx::Message m;
  for (;;) {
    auto r = first.recv(m, 10s);
    if (!r) {
      EXPECT_NE(r.error().message().find("killed by another client"), std::string::npos) << r.error().message();
      break;
    }
  }
  EXPECT_TRUE(echo_once(second, "still served"));
}

// post() from several threads while the loop runs: every function runs, on the loop thread.
TEST(ServerEngine, PostFromOtherThreadsRunsEverythingOnTheLoop) {
  Watchdog wd(30s);
  UnixServer srv(echo_handlers(), {});
  std::thread::id loop_id = srv.thread->call([](ipcx::Server&) { return std::this_thread::get_id(); });
  long counter = 0;  // touched by the loop thread only
  std::atomic<int> off_loop{0};
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t)
    posters.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        srv.thread->server().post([&] {
          if (std::this_thread::get_id() != loop_id) ++off_loop;
          ++counter;
        });
    });
  // Clients are served meanwhile.
  auto c = srv.client();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(echo_once(c, "during posts " + std::to_string(i)));
  for (auto& p : posters) p.join();
  EXPECT_EQ(srv.thread->call([&](ipcx::Server&) { return counter; }), 4000);
  EXPECT_EQ(off_loop.load(), 0);
}
