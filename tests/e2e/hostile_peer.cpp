// ipcx-hostile-peer: clients that misbehave on purpose, run as a separate process so that the
// server under test cannot share a descriptor table, a memory allocator or a scheduler slot
// with them. Progress and results go to stdout, one line each, for the test to wait on.
//
//   flood PATH [RECONNECT_BYTES]   60 KB frames forever, never reading (reconnecting every N bytes)
//   stall PATH N                   N connections, 1 byte each, then nothing until killed
//   partial PATH N SENT LEN        N connections, each a header announcing LEN then SENT payload
//                                  bytes; exits once the server has dropped them all
//   hold URL N SETTLE_MS           N ipcx clients; reports which ones the server refused and
//                                  why, then holds the rest until killed
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ipcx/ipcx.hpp>

#include "wire/frame.hpp"

namespace {

using Clock = std::chrono::steady_clock;

int raw_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void say(const std::string& line) {
  std::fprintf(stdout, "%s\n", line.c_str());
  std::fflush(stdout);
}

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "ipcx-hostile-peer: %s: %s\n", why.c_str(), std::strerror(errno));
  std::exit(2);
}

std::vector<std::byte> frame_header(std::uint32_t length) {
  auto h = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = length});
  return {h.begin(), h.end()};
}

// Prints "flooding" once connected, "blocked" the first time a write waits 200 ms (the server
// stopped reading us), "reconnected" after the first reconnection.
int flood(const std::string& path, std::size_t reconnect_every) {
  constexpr std::uint32_t kPayload = 60'000;
  std::vector<std::byte> frame = frame_header(kPayload);
  frame.resize(frame.size() + kPayload, std::byte{'f'});
  bool announced = false, blocked = false, reconnected = false;
  for (;;) {
    int fd = raw_connect(path);
    if (fd < 0) die("connect " + path);
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    if (!announced) say("flooding");
    if (announced && !reconnected) say("reconnected");
    reconnected = announced;
    announced = true;
    std::size_t sent = 0;
    bool ok = true;
    while (ok && (reconnect_every == 0 || sent < reconnect_every)) {
      std::size_t off = 0;
      while (off < frame.size()) {
        ssize_t w = ::send(fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
        if (w > 0) {
          off += static_cast<std::size_t>(w);
          continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
          ok = false;  // dropped: come back
          break;
        }
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, 200) == 0 && !blocked) {
          blocked = true;
          say("blocked");
        }
      }
      sent += off;
    }
    ::close(fd);
  }
}

int stall(const std::string& path, int n) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = raw_connect(path);
    if (fd < 0) die("connect #" + std::to_string(i));
    // The first byte of a header: the server now holds a frame in progress for each of us.
    const char first = 'I';
    if (::send(fd, &first, 1, MSG_NOSIGNAL) != 1) die("send #" + std::to_string(i));
    fds.push_back(fd);
  }
  say("ready " + std::to_string(fds.size()));
  for (;;) ::pause();  // until killed: the kernel closes them all at once
}

// Reads what a server said before closing: the reason from its goodbye frame, if any.
std::string goodbye_reason(int fd) {
  std::vector<std::byte> buf(64 * 1024);
  std::size_t have = 0;
  for (;;) {
    ssize_t r = ::recv(fd, buf.data() + have, buf.size() - have, MSG_DONTWAIT);
    if (r <= 0) break;
    have += static_cast<std::size_t>(r);
    if (have == buf.size()) break;
  }
  ipcx::wire::StreamDecoder dec;
  auto space = dec.prepare(have);
  std::memcpy(space.data(), buf.data(), have);
  dec.commit(have);
  for (;;) {
    auto f = dec.next();
    if (!f || !*f) return "no goodbye";
    if ((*f)->header.type == ipcx::wire::FrameType::goodbye) return ipcx::wire::goodbye_error((*f)->payload).message();
  }
}

int partial(const std::string& path, int n, std::size_t sent_bytes, std::uint32_t length) {
  struct Conn {
    int fd;
    std::size_t sent = 0;  // payload bytes
    bool header_done = false;
    bool dropped = false;
    bool reported = false;
  };
  std::vector<Conn> conns;
  for (int i = 0; i < n; ++i) {
    int fd = raw_connect(path);
    if (fd < 0) die("connect #" + std::to_string(i));
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    conns.push_back({fd});
  }
  say("connected " + std::to_string(n));
  const auto header = frame_header(length);
  const std::vector<std::byte> junk(1 << 20, std::byte{'p'});
  int dropped = 0;
  while (dropped < n) {
    std::vector<pollfd> p;
    for (auto& c : conns) {
      short ev = POLLIN;
      if (!c.dropped && (!c.header_done || c.sent < sent_bytes)) ev |= POLLOUT;
      p.push_back({c.fd, c.dropped ? short(0) : ev, 0});
    }
    if (::poll(p.data(), p.size(), 1000) < 0 && errno != EINTR) die("poll");
    for (std::size_t i = 0; i < conns.size(); ++i) {
      auto& c = conns[i];
      if (c.dropped) continue;
      bool gone = p[i].revents & (POLLIN | POLLHUP | POLLERR);
      if (!gone && (p[i].revents & POLLOUT)) {
        ssize_t w;
        if (!c.header_done) {
          w = ::send(c.fd, header.data(), header.size(), MSG_NOSIGNAL);
          if (w == static_cast<ssize_t>(header.size())) c.header_done = true;
          else if (w >= 0) die("short header write");
        } else {
          w = ::send(c.fd, junk.data(), std::min(junk.size(), sent_bytes - c.sent), MSG_NOSIGNAL);
          if (w > 0) c.sent += static_cast<std::size_t>(w);
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) gone = true;
        if (c.header_done && c.sent == sent_bytes && !c.reported) {
          c.reported = true;
          say("sent " + std::to_string(i));
        }
      }
      if (gone) {
        c.dropped = true;
        ++dropped;
        say("dropped " + std::to_string(i) + " after " + std::to_string(c.sent) + ": " + goodbye_reason(c.fd));
        ::close(c.fd);
      }
    }
  }
  say("all dropped");
  return 0;
}

int hold(const std::string& url, int n, int settle_ms) {
  std::vector<ipcx::Connection> conns;
  int failed = 0;
  for (int i = 0; i < n; ++i) {
    auto c = ipcx::connect(url);
    if (!c) {
      ++failed;
      say("connect failed: " + c.error().message());
      continue;
    }
    conns.push_back(std::move(*c));
  }
  // A refused client hears why (a goodbye frame); an accepted one hears nothing.
  std::vector<bool> refused(conns.size(), false);
  int n_refused = 0;
  auto until = Clock::now() + std::chrono::milliseconds(settle_ms);
  while (Clock::now() < until) {
    std::vector<pollfd> p;
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < conns.size(); ++i)
      if (!refused[i]) {
        p.push_back({*conns[i].native_handle(), POLLIN, 0});
        idx.push_back(i);
      }
    if (p.empty() || ::poll(p.data(), p.size(), 50) <= 0) continue;
    for (std::size_t k = 0; k < p.size(); ++k) {
      if (!p[k].revents) continue;
      auto r = conns[idx[k]].try_recv();
      if (r) {
        say("unexpected message");
        continue;
      }
      if (r.error().code == ipcx::Errc::would_block) continue;
      refused[idx[k]] = true;
      ++n_refused;
      say("refused: " + std::string(ipcx::to_string(r.error().code)) + ": " + r.error().message());
    }
  }
  say("held " + std::to_string(static_cast<int>(conns.size()) - n_refused) + " refused " + std::to_string(n_refused) +
      " failed " + std::to_string(failed));
  for (;;) ::pause();
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> a(argv + 1, argv + argc);
  auto num = [&](std::size_t i) { return std::strtoull(a.at(i).c_str(), nullptr, 10); };
  try {
    if (a.at(0) == "flood") return flood(a.at(1), a.size() > 2 ? num(2) : 0);
    if (a.at(0) == "stall") return stall(a.at(1), static_cast<int>(num(2)));
    if (a.at(0) == "partial")
      return partial(a.at(1), static_cast<int>(num(2)), num(3), static_cast<std::uint32_t>(num(4)));
    if (a.at(0) == "hold") return hold(a.at(1), static_cast<int>(num(2)), static_cast<int>(num(3)));
  } catch (const std::out_of_range&) {
  }
  std::fprintf(stderr, "usage: ipcx-hostile-peer flood|stall|partial|hold ... (see the source)\n");
  return 2;
}
