// A Server on its own thread listening at a scratch Unix socket, and clients for it.
#pragma once

#include <memory>
#include <string>

#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "server_harness.hpp"
#include "test_util.hpp"
#include "wire/frame.hpp"

namespace ipcx::test {

inline Server::Handlers echo_handlers() {
  Server::Handlers h;
  h.on_message = [](Session& s, Message& m) { (void)s.send(m.bytes()); };
  return h;
}

struct UnixServer {
  // `setup` runs on the loop thread before any client exists, with the server where it will
  // stay (a Server& taken before the move into the thread would dangle).
  UnixServer(Server::Handlers h, ServerOptions o, const std::function<void(Server&)>& setup = {})
      : path(dir.file("s")), url("unix://" + path) {
    auto l = ipcx::listen(url);
    EXPECT_TRUE(l.has_value()) << l.error().message();
    auto s = Server::create(std::move(h), o);
    EXPECT_TRUE(s.has_value()) << s.error().message();
    EXPECT_TRUE(s->add_listener(std::move(*l)).has_value());
    thread = std::make_unique<ServerThread>(std::move(*s));
    if (setup) thread->call(setup);
  }
  Connection client() {
    auto c = ipcx::connect(url);
    EXPECT_TRUE(c.has_value()) << c.error().message();
    return c ? std::move(*c) : Connection();
  }
  ServerStats stats() { return thread->stats(); }
  template <class Pred>
  bool wait_stats(Pred p, std::chrono::milliseconds t = std::chrono::seconds(10)) {
    return thread->wait_stats(p, t);
  }

  ScratchDir dir;  // outlives the server, which removes its socket file first
  std::string path, url;
  std::unique_ptr<ServerThread> thread;
};

// Reads a raw connection to its end (or `timeout`) and returns the goodbye's message, or why
// there was none.
inline std::string read_goodbye(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  wire::StreamDecoder dec;
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) return "no goodbye: still open";
    auto space = dec.prepare();
    ssize_t n = ::recv(fd, space.data(), space.size(), 0);
    if (n <= 0) return "no goodbye: connection ended without one";
    dec.commit(static_cast<std::size_t>(n));
    for (;;) {
      auto f = dec.next();
      if (!f) return "no goodbye: " + f.error().message();
      if (!*f) break;
      if ((*f)->header.type == wire::FrameType::goodbye) return wire::goodbye_error((*f)->payload).message();
    }
  }
}

// One echo round trip; fails the test (and returns false) if it does not come back intact.
inline bool echo_once(Connection& c, std::string_view text) {
  auto s = c.send(as_bytes(text), std::chrono::seconds(10));
  EXPECT_TRUE(s.has_value()) << s.error().message();
  if (!s) return false;
  auto r = c.recv(std::chrono::seconds(10));
  EXPECT_TRUE(r.has_value()) << r.error().message();
  if (!r) return false;
  EXPECT_EQ(r->text(), text);
  return r->text() == text;
}

}  // namespace ipcx::test
