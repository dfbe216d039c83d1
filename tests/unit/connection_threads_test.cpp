// Connection's threading contract (connection.hpp), attacked with real threads on every
// connection-oriented transport; meant to run under TSan as well. Concurrent senders never
// interleave; a receive side failing mid-stream fails senders cleanly and never lets a write
// land in a reused descriptor; close() from another thread frees a blocked call at once.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "support.hpp"
#include "test_util.hpp"
#include "wire/frame.hpp"

using namespace std::chrono_literals;
using ipcx::Errc;
using ipcx::test::ScratchDir;
using ipcx::test::Watchdog;

namespace {

#ifdef IPCX_TEST_SANITIZED
constexpr int kPerThread = 300;
#else
constexpr int kPerThread = 1000;
#endif

// One ipcx end (`conn`) and its peer: another ipcx end, or raw descriptors for bytes no ipcx
// end would send (`raw_w` to write, `raw_r` to read; one socket for both on sockets).
struct Ends {
  std::unique_ptr<ScratchDir> dir = std::make_unique<ScratchDir>();
  ipcx::Listener listener;
  ipcx::Connection conn, peer;
  ipcx::Fd raw_r, raw_w;
};

ipcx::Fd raw_connect_unix(int type, const std::string& path) {
  ipcx::Fd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
  return fd;
}

ipcx::Fd raw_connect_tcp(const std::string& url) {
  int port = std::stoi(url.substr(url.rfind(':') + 1));
  ipcx::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
  return fd;
}

// `raw`: the peer is raw descriptors instead of an ipcx connection.
Ends make_ends(const std::string& kind, bool raw) {
  Ends e;
  if (kind == "pipe") {
    int to_conn[2], from_conn[2];
    EXPECT_EQ(::pipe2(to_conn, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(from_conn, O_CLOEXEC), 0);
    ipcx::Fd cr(to_conn[0]), pw(to_conn[1]), pr(from_conn[0]), cw(from_conn[1]);
    e.conn = ipcx::connect(fmt::format("pipe:?rfd={}&wfd={}", cr.get(), cw.get())).value();
    if (raw) {
      e.raw_r = std::move(pr);
      e.raw_w = std::move(pw);
    } else {
      e.peer = ipcx::connect(fmt::format("pipe:?rfd={}&wfd={}", pr.get(), pw.get())).value();
    }
    return e;
  }
  std::string url = kind == "tcp" ? "tcp://127.0.0.1:0" : kind + "://" + e.dir->file("s");
  e.listener = ipcx::listen(url).value();
  url = e.listener.url();
  if (raw) {
    ipcx::Fd fd = kind == "tcp"        ? raw_connect_tcp(url)
                  : kind == "unix+seq" ? raw_connect_unix(SOCK_SEQPACKET, e.dir->file("s"))
                                       : raw_connect_unix(SOCK_STREAM, e.dir->file("s"));
    EXPECT_TRUE(fd.valid());
    e.raw_w = ipcx::Fd(::dup(fd.get()));
    e.raw_r = std::move(fd);
  } else {
    e.peer = ipcx::connect(url).value();
  }
  e.conn = e.listener.accept(10s).value();
  return e;
}

std::vector<std::byte> message(std::uint32_t thread, std::uint32_t seq) {
  // Every 25th message is large, so that writes are partial and would interleave if unguarded.
  std::size_t size = seq % 25 == 0 ? 100'000 : 16 + (seq * 37) % 3000;
  auto m = ipcx::test::pattern(size, thread * 1'000'003u + seq);
  std::memcpy(m.data(), &thread, 4);
  std::memcpy(m.data() + 4, &seq, 4);
  return m;
}

class ConnectionThreads : public ::testing::TestWithParam<std::string> {};

std::string param_name(const ::testing::TestParamInfo<std::string>& p) {
  std::string n = p.param;
  std::replace(n.begin(), n.end(), '+', '_');
  return n;
}

}  // namespace

TEST_P(ConnectionThreads, ConcurrentSendersNeverInterleave) {
  Watchdog wd(110s);
  auto e = make_ends(GetParam(), false);
  std::vector<std::thread> senders;
  std::atomic<int> failures{0};
  for (std::uint32_t t = 0; t < 4; ++t)
    senders.emplace_back([&, t] {
      for (std::uint32_t i = 0; i < kPerThread; ++i)
        if (!e.conn.send(message(t, i), 30s)) {
          ++failures;
          return;
        }
    });
  std::uint32_t next[4] = {0, 0, 0, 0};
  ipcx::Message m;
  for (int n = 0; n < 4 * kPerThread; ++n) {
    auto r = e.peer.recv(m, 30s);
    ASSERT_TRUE(r.has_value()) << "after " << n << " messages: " << r.error().message();
    ASSERT_GE(m.size(), 8u);
    std::uint32_t t, seq;
    std::memcpy(&t, m.data.data(), 4);
    std::memcpy(&seq, m.data.data() + 4, 4);
    ASSERT_LT(t, 4u) << "message " << n << " does not start with a sender id: frames interleaved";
    ASSERT_EQ(seq, next[t]) << "sender " << t << ": messages lost or reordered";
    ASSERT_EQ(ipcx::test::mismatch(m.bytes(), message(t, seq)), "") << "sender " << t << " message " << seq;
    ++next[t];
  }
  for (auto& s : senders) s.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_FALSE(e.peer.recv(50ms).has_value()) << "nothing beyond the 4 x " << kPerThread << " messages";
}

TEST_P(ConnectionThreads, GarbageMidStreamFailsSendersCleanlyAndNoWriteLandsInAReusedDescriptor) {
  Watchdog wd(60s);
  auto e = make_ends(GetParam(), true);
  // The raw peer drains whatever the senders manage to write, until the connection goes.
  std::thread drain([&] {
    std::vector<char> buf(256 * 1024);
    while (::read(e.raw_r.get(), buf.data(), buf.size()) > 0) {
    }
  });
  std::atomic<bool> receiver_done{false};
  std::vector<Errc> sender_errors(2, Errc::timeout);
  std::vector<std::thread> senders;
  for (int t = 0; t < 2; ++t)
    senders.emplace_back([&, t] {
      auto m = message(static_cast<std::uint32_t>(t), 1);
      for (;;) {
        auto r = e.conn.send(m, 20s);
        if (!r) {
          sender_errors[static_cast<std::size_t>(t)] = r.error().code;
          return;
        }
      }
    });
  std::vector<std::string> received;
  Errc receive_error = Errc::timeout;
  std::thread receiver([&] {
    for (;;) {
      auto r = e.conn.recv(20s);
      if (!r) {
        receive_error = r.error().code;
        break;
      }
      received.emplace_back(r->text());
    }
    receiver_done = true;
  });

  std::this_thread::sleep_for(50ms);  // the senders are busy by now
  auto hdr = ipcx::wire::encode_header({.type = ipcx::wire::FrameType::data, .length = 5});
  std::string good(reinterpret_cast<const char*>(hdr.data()), hdr.size());
  good += "hello";
  ASSERT_EQ(::write(e.raw_w.get(), good.data(), good.size()), static_cast<ssize_t>(good.size()));
  std::this_thread::sleep_for(20ms);
  const std::string garbage = "GARBAGE: this is not an ipcx frame header at all";
  ASSERT_EQ(::write(e.raw_w.get(), garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  receiver.join();
  EXPECT_EQ(receive_error, Errc::protocol);
  EXPECT_EQ(received, std::vector<std::string>{"hello"});
  EXPECT_FALSE(e.conn.is_open());

  // Close while the senders may still be inside a call, then take fresh descriptors at once:
  // they are likely to get the numbers the connection used, if those were freed too early.
  e.conn.close();
  std::vector<std::pair<ipcx::Fd, ipcx::Fd>> fresh;
  for (int i = 0; i < 16; ++i) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fresh.emplace_back(ipcx::Fd(sv[0]), ipcx::Fd(sv[1]));
  }
  for (auto& s : senders) s.join();
  for (auto code : sender_errors) EXPECT_EQ(code, Errc::closed) << ipcx::to_string(code);
  // The drain sees end-of-file once the connection's descriptors are released.
  drain.join();
  for (auto& [a, b] : fresh) {
    char c;
    EXPECT_EQ(::recv(a.get(), &c, 1, MSG_DONTWAIT), -1) << "a stray write landed in a reused descriptor";
    EXPECT_EQ(::recv(b.get(), &c, 1, MSG_DONTWAIT), -1) << "a stray write landed in a reused descriptor";
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, ConnectionThreads, ::testing::Values("unix", "unix+seq", "tcp", "pipe"), param_name);

class CloseFromAnotherThread : public ::testing::TestWithParam<std::string> {};

TEST_P(CloseFromAnotherThread, FreesABlockedRecvPromptly) {
  Watchdog wd(30s);
  auto e = make_ends(GetParam(), false);
  std::atomic<bool> returned{false};
  ipcx::Error err;
  std::thread t([&] {
    auto r = e.conn.recv();  // forever: only close() can end it
    if (!r) err = r.error();
    returned = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(returned.load());
  auto t0 = std::chrono::steady_clock::now();
  e.conn.close();
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(err.code, Errc::closed) << err.message();
  EXPECT_FALSE(e.conn.recv(0ms).has_value());
}

// A send blocked on a full socket (the peer reads nothing) is freed by close() too.
TEST_P(CloseFromAnotherThread, FreesABlockedSendPromptly) {
  Watchdog wd(30s);
  auto e = make_ends(GetParam(), false);
  std::atomic<bool> blocked_once{false};
  Errc code = Errc::timeout;
  std::thread t([&] {
    std::vector<std::byte> big(64 * 1024, std::byte{1});
    for (;;) {
      // A short try first tells the test when the kernel buffers are full.
      auto r = e.conn.send(big, 0ms);
      if (r) continue;
      if (r.error().code != Errc::would_block) {
        code = r.error().code;
        return;
      }
      blocked_once = true;
      auto b = e.conn.send(big);  // forever: only close() can end it
      if (!b) {
        code = b.error().code;
        return;
      }
    }
  });
  for (int i = 0; i < 500 && !blocked_once.load(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(blocked_once.load());
  std::this_thread::sleep_for(100ms);
  auto t0 = std::chrono::steady_clock::now();
  e.conn.close();
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(code, Errc::closed) << ipcx::to_string(code);
}

INSTANTIATE_TEST_SUITE_P(Sockets, CloseFromAnotherThread, ::testing::Values("unix", "unix+seq", "tcp"), param_name);
