// ipcx-shm-peer: the other process of the shm:// e2e tests (shm_transport_test.cpp), run with
// fork+exec so that it shares nothing with the test but the conversation, and can be stopped
// (SIGSTOP) or killed (SIGKILL) for real. Progress goes to stdout, one line each, for the test
// to wait on; failures go to stderr with a non-zero exit code.
//
//   send URL N SIZE idle|recv   connect, send N messages of SIZE bytes (payload(i, SIZE)), say
//                               "sent N", then sleep in pause() (idle) or in recv() (recv)
//   partial URL N BIG           connect, send N small messages, then a BIG-byte one that stays
//                               unfinished (the listener does not read): says "stuck" once part
//                               of it is in the ring, then blocks in flush() for the rest
//   wait-go URL                 connect, send "hello", block in recv() until "go" comes, reply
//                               "after the stop", exit 0
//   serve URL                   listen, say "listening", accept one client, send it "welcome"
//                               (and flush), say "served", then pause() until killed
//   echo URL N SIZE             connect, N round trips of payload(i, SIZE) against an echo server
//   as-user UID URL             drop to UID (setgroups/setgid/setuid), connect, try one recv;
//                               says "connect: ERRC" or "recv: ERRC" (ok when it worked)
//   impostor UID SOCKNAME       drop to UID, bind and listen on the abstract seqpacket socket
//                               SOCKNAME (without the leading '@'), say "bound", pause()
//   segment UID GID NAME        drop to UID with GID as its only group, open the segment NAME
//                               (~OWNER/...), add 1 to its std::atomic<long> "count" and say
//                               "count N", then try to remove it: "remove: ok" or "remove: ERRC";
//                               "open: ERRC" when it cannot open it
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <ipcx/ipcx.hpp>
#include <ipcx/segment.hpp>

namespace {

using namespace std::chrono_literals;

void say(const std::string& line) {
  std::fprintf(stdout, "%s\n", line.c_str());
  std::fflush(stdout);
}

[[noreturn]] void die(int code, const std::string& why) {
  std::fprintf(stderr, "ipcx-shm-peer: %s\n", why.c_str());
  std::exit(code);
}

// The payload of message i (the test builds the same bytes to compare).
std::string payload(std::size_t i, std::size_t size) {
  std::string s = fmt::format("msg-{}-", i);
  s.resize(std::max(size, s.size()), static_cast<char>('a' + i % 26));
  s.resize(size);
  return s;
}

ipcx::Connection connect_or_die(const std::string& url) {
  auto c = ipcx::connect(url, {}, 10s);
  if (!c) die(2, "connect " + url + ": " + c.error().message());
  return std::move(*c);
}

int send_n(const std::string& url, std::size_t n, std::size_t size, const std::string& then) {
  auto c = connect_or_die(url);
  for (std::size_t i = 0; i < n; ++i) {
    auto p = payload(i, size);
    if (auto r = c.send(ipcx::as_bytes(p)); !r) die(3, fmt::format("send #{}: {}", i, r.error().message()));
  }
  say(fmt::format("sent {}", n));
  if (then == "recv") {
    auto r = c.recv(ipcx::forever);
    die(4, "recv returned: " + (r ? std::string("a message") : r.error().message()));
  }
  for (;;) ::pause();
}

int partial(const std::string& url, std::size_t n, std::size_t big) {
  auto c = connect_or_die(url);
  for (std::size_t i = 0; i < n; ++i) {
    auto p = payload(i, 16);
    if (auto r = c.send(ipcx::as_bytes(p)); !r) die(3, fmt::format("send #{}: {}", i, r.error().message()));
  }
  // Part of it goes into the ring; the deadline passes while the ring is full and the rest is
  // kept by the connection (a started message is always finished later): we are mid-message.
  const std::string b = payload(n, big);
  if (auto r = c.send(ipcx::as_bytes(b), 300ms); !r) die(3, "big send: " + r.error().message());
  say("stuck");
  auto f = c.flush(ipcx::forever);
  die(4, "flush returned: " + (f ? std::string("done") : f.error().message()));
}

int wait_go(const std::string& url) {
  auto c = connect_or_die(url);
  if (auto r = c.send(ipcx::as_bytes("hello")); !r) die(3, "send hello: " + r.error().message());
  say("ready");
  auto m = c.recv(ipcx::forever);
  if (!m) die(4, "recv go: " + m.error().message());
  if (m->text() != "go") die(5, "got '" + std::string(m->text()) + "' instead of go");
  if (auto r = c.send(ipcx::as_bytes("after the stop")); !r) die(3, "send: " + r.error().message());
  // Our close marks the ring closed after what we wrote: the listener reads it, then EOF.
  c.close();
  say("done");
  return 0;
}

int serve(const std::string& url) {
  auto l = ipcx::listen(url);
  if (!l) die(2, "listen " + url + ": " + l.error().message());
  say("listening");
  auto s = l->accept(30s);
  if (!s) die(3, "accept: " + s.error().message());
  if (auto r = s->send(ipcx::as_bytes("welcome")); !r) die(3, "send: " + r.error().message());
  // accept() may have come before the client's hello: flush() waits for it and writes the
  // welcome (a send before the hello is held by the connection until its next call).
  if (auto r = s->flush(10s); !r) die(3, "flush: " + r.error().message());
  say("served");
  for (;;) ::pause();
}

int echo(const std::string& url, std::size_t n, std::size_t size) {
  auto c = connect_or_die(url);
  for (std::size_t i = 0; i < n; ++i) {
    auto p = payload(i, size);
    if (auto r = c.send(ipcx::as_bytes(p), 20s); !r) die(3, fmt::format("send #{}: {}", i, r.error().message()));
    auto m = c.recv(20s);
    if (!m) die(4, fmt::format("recv #{}: {}", i, m.error().message()));
    if (m->text() != p) die(5, fmt::format("reply #{} differs: {} bytes", i, m->size()));
  }
  say("echoed");
  return 0;
}

void become(uid_t uid, gid_t gid) {
  if (::setgroups(0, nullptr) != 0) die(6, fmt::format("setgroups: {}", std::strerror(errno)));
  if (::setgid(gid) != 0) die(6, fmt::format("setgid: {}", std::strerror(errno)));
  if (::setuid(uid) != 0) die(6, fmt::format("setuid: {}", std::strerror(errno)));
  if (::geteuid() != uid) die(6, "still not the user");
}

void become(uid_t uid) { become(uid, static_cast<gid_t>(uid)); }

int as_user(uid_t uid, const std::string& url) {
  become(uid);
  auto c = ipcx::connect(url, {}, 5s);
  if (!c) {
    say(fmt::format("connect: {}: {}", ipcx::to_string(c.error().code), c.error().message()));
    return 0;
  }
  // Connected (the socket was reached): the listener's accept refuses us, then we read the end.
  auto m = c->recv(20s);
  say(m ? std::string("recv: ok") : fmt::format("recv: {}: {}", ipcx::to_string(m.error().code), m.error().message()));
  return 0;
}

int impostor(uid_t uid, const std::string& name) {
  become(uid);
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) die(2, "socket");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (name.size() + 1 > sizeof a.sun_path) die(2, "name too long");
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0) die(2, fmt::format("bind: {}", std::strerror(errno)));
  if (::listen(fd, 16) != 0) die(2, "listen");
  say("bound");
  for (;;) ::pause();
}

int segment(uid_t uid, gid_t gid, const std::string& name) {
  become(uid, gid);
  auto s = ipcx::shm::Segment::open(name);
  if (!s) {
    say(fmt::format("open: {}: {}", ipcx::to_string(s.error().code), s.error().message()));
    return 0;
  }
  auto c = s->find<std::atomic<long>>("count");
  if (!c) die(7, fmt::format("find: {}", c.error().message()));
  say(fmt::format("count {}", (*c)->fetch_add(1) + 1));
  auto r = ipcx::shm::Segment::remove(name);
  say(r ? std::string("remove: ok") : fmt::format("remove: {}: {}", ipcx::to_string(r.error().code), r.error().message()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> a(argv + 1, argv + argc);
  auto num = [&](std::size_t i) { return static_cast<std::size_t>(std::strtoull(a.at(i).c_str(), nullptr, 10)); };
  try {
    if (a.at(0) == "send") return send_n(a.at(1), num(2), num(3), a.at(4));
    if (a.at(0) == "partial") return partial(a.at(1), num(2), num(3));
    if (a.at(0) == "wait-go") return wait_go(a.at(1));
    if (a.at(0) == "serve") return serve(a.at(1));
    if (a.at(0) == "echo") return echo(a.at(1), num(2), num(3));
    if (a.at(0) == "as-user") return as_user(static_cast<uid_t>(num(1)), a.at(2));
    if (a.at(0) == "impostor") return impostor(static_cast<uid_t>(num(1)), a.at(2));
    if (a.at(0) == "segment") return segment(static_cast<uid_t>(num(1)), static_cast<gid_t>(num(2)), a.at(3));
  } catch (const std::out_of_range&) {
  }
  std::fprintf(stderr, "usage: ipcx-shm-peer send|partial|wait-go|serve|echo|as-user|impostor|segment ... (see the source)\n");
  return 2;
}
