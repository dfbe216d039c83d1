// One typed suite, run against every stream/record transport (see traits.hpp).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <ipcx/ipcx.hpp>

#include "conformance/traits.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"
#include "wire/frame.hpp"

namespace ipcx::conformance {
namespace {

using test::mismatch;
using test::pattern;
using test::why;
using test::Worker;

std::vector<std::byte> u32_bytes(std::uint32_t v) {
  std::vector<std::byte> b(4);
  for (int i = 0; i < 4; ++i) b[static_cast<std::size_t>(i)] = std::byte((v >> (8 * i)) & 0xff);
  return b;
}
std::uint32_t u32_of(const Message& m) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4 && static_cast<std::size_t>(i) < m.size(); ++i)
    v |= std::to_integer<std::uint32_t>(m.data[static_cast<std::size_t>(i)]) << (8 * i);
  return v;
}

// Polls `fd` for input, up to `ms`.
bool readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) > 0 && (p.revents & POLLIN);
}

std::vector<std::byte> frame_bytes(std::uint16_t flags, std::uint32_t length, std::size_t payload) {
  auto h = wire::encode_header({wire::FrameType::data, flags, 0, length});
  std::vector<std::byte> out(h.begin(), h.end());
  auto p = pattern(payload, 7);
  out.insert(out.end(), p.begin(), p.end());
  return out;
}

bool write_all(int fd, std::span<const std::byte> b) {
  while (!b.empty()) {
    ssize_t n = ::write(fd, b.data(), b.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    b = b.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

// `sizes` without those above the transport's largest message, which is added (its boundary).
template <class T>
std::vector<std::size_t> fitting(std::vector<std::size_t> sizes) {
  const std::size_t max = T::max_message();
  if (max < *std::ranges::max_element(sizes)) {
    std::erase_if(sizes, [max](std::size_t n) { return n > max; });
    sizes.push_back(max);
  }
  return sizes;
}

template <class T>
class Conformance : public ::testing::Test {
 protected:
  // A connected pair; on failure records it and returns closed connections.
  Pair make(const Options& client = {}, const Options& server = {}) {
    auto p = T::make_pair(env_, client, server);
    if (!p) {
      ADD_FAILURE() << T::name << ": making a connected pair failed: " << p.error().message();
      return {};
    }
    return std::move(*p);
  }
  // Closes the listener too where EOF needs it (see TraitsBase::eof_needs_listener_close).
  void close_server_side(Pair& p) {
    p.server.close();
    if constexpr (T::eof_needs_listener_close) env_.listener.close();
  }

  Env env_;
};

struct TransportName {
  template <class T>
  static std::string GetName(int) {
    return T::name;
  }
};

using Transports =
    ::testing::Types<PipeTraits, FifoTraits, UnixTraits, UnixAbstractTraits, UnixSeqTraits, TcpTraits, SysvTraits, MqTraits,
                     ShmTraits, ShmSpinTraits, ShmBlockTraits>;
TYPED_TEST_SUITE(Conformance, Transports, TransportName);

TYPED_TEST(Conformance, PairIsOpen) {
  auto p = this->make();
  EXPECT_TRUE(p.client.is_open());
  EXPECT_TRUE(p.server.is_open());
  EXPECT_GE(p.client.native_handle().value_or(-1), 0);
  EXPECT_GE(p.server.native_handle().value_or(-1), 0);
  EXPECT_TRUE(p.server.capabilities().pollable);
  EXPECT_EQ(p.server.capabilities().fd_passing, TypeParam::fd_passing);
  EXPECT_EQ(p.server.capabilities().records, TypeParam::records);
  EXPECT_EQ(p.server.capabilities().verified_peer, TypeParam::peer_credentials);
  EXPECT_FALSE(p.client.buffered());
  EXPECT_FALSE(p.server.buffered());
}

TYPED_TEST(Conformance, MessageOrderBothWays) {
  test::Watchdog wd(std::chrono::seconds(90));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  constexpr std::uint32_t kCount = 1000;
  std::atomic<int> send_errors{0};
  {
    Worker sender(p.server, [&] {
      for (std::uint32_t i = 0; i < kCount; ++i)
        if (!p.client.send(u32_bytes(i), std::chrono::seconds(30))) {
          ++send_errors;
          return;
        }
    });
    for (std::uint32_t i = 0; i < kCount; ++i) {
      auto m = p.server.recv(std::chrono::seconds(30));
      ASSERT_TRUE(m) << "message " << i << ": " << why(m);
      ASSERT_EQ(m->size(), 4u);
      ASSERT_EQ(u32_of(*m), i);
    }
    sender.join();
  }
  EXPECT_EQ(send_errors.load(), 0);
  {
    Worker sender(p.client, [&] {
      for (std::uint32_t i = 0; i < kCount; ++i)
        if (!p.server.send(u32_bytes(i + 7), std::chrono::seconds(30))) {
          ++send_errors;
          return;
        }
    });
    Message m;  // reused across calls
    for (std::uint32_t i = 0; i < kCount; ++i) {
      auto r = p.client.recv(m, std::chrono::seconds(30));
      ASSERT_TRUE(r) << "message " << i << ": " << why(r);
      ASSERT_EQ(u32_of(m), i + 7);
    }
    sender.join();
  }
  EXPECT_EQ(send_errors.load(), 0);
}

TYPED_TEST(Conformance, MessageBoundaries) {
  test::Watchdog wd(std::chrono::seconds(110));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  // 0 B, 1 B, 64 KiB and 16 MiB, plus sizes around the header and the seqpacket chunk size.
  const std::vector<std::size_t> sizes = fitting<TypeParam>({0,         1,         2,          15,         16,        17,
                                          4095,      65535,     65536,      65537,      3 * 65536 + 5,
                                          1u << 20,  16u << 20, 0,          1});
  std::atomic<int> send_errors{0};
  Worker sender(p.server, [&] {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      auto payload = pattern(sizes[i], static_cast<std::uint32_t>(i));
      if (!p.client.send(payload, std::chrono::seconds(60))) {
        ++send_errors;
        return;
      }
    }
  });
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    auto m = p.server.recv(std::chrono::seconds(60));
    ASSERT_TRUE(m) << "size " << sizes[i] << ": " << why(m);
    auto want = pattern(sizes[i], static_cast<std::uint32_t>(i));
    ASSERT_EQ(mismatch(m->bytes(), want), "") << "message " << i << " of " << sizes[i] << " bytes";
    EXPECT_TRUE(m->fds.empty());
  }
  sender.join();
  EXPECT_EQ(send_errors.load(), 0);
  IPCX_EXPECT_ERRC(p.server.try_recv(), Errc::would_block);
}

TYPED_TEST(Conformance, MessageBoundariesServerToClient) {
  test::Watchdog wd(std::chrono::seconds(60));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  const std::vector<std::size_t> sizes = fitting<TypeParam>({0, 1, 65536, 65537, 1u << 20});
  Worker sender(p.client, [&] {
    for (std::size_t i = 0; i < sizes.size(); ++i)
      if (!p.server.send(pattern(sizes[i], 100 + static_cast<std::uint32_t>(i)), std::chrono::seconds(30)))
        return;
  });
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    auto m = p.client.recv(std::chrono::seconds(30));
    ASSERT_TRUE(m) << why(m);
    ASSERT_EQ(mismatch(m->bytes(), pattern(sizes[i], 100 + static_cast<std::uint32_t>(i))), "");
  }
}

TYPED_TEST(Conformance, RecvTimeout) {
  test::Watchdog wd(std::chrono::seconds(30));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  IPCX_EXPECT_ERRC(p.server.recv(std::chrono::milliseconds(50)), Errc::timeout);
  IPCX_EXPECT_ERRC(p.client.recv(std::chrono::milliseconds(50)), Errc::timeout);
  // A timeout leaves the connection usable.
  IPCX_ASSERT_OK(p.client.send(as_bytes("after timeout")));
  auto m = p.server.recv(std::chrono::seconds(10));
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "after timeout");
}

TYPED_TEST(Conformance, TryRecvOnEmptyWouldBlock) {
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  IPCX_EXPECT_ERRC(p.server.try_recv(), Errc::would_block);
  IPCX_EXPECT_ERRC(p.client.try_recv(), Errc::would_block);
  IPCX_ASSERT_OK(p.client.send(as_bytes("x")));
  ASSERT_TRUE(readable(p.server.native_handle().value_or(-1), 10000));
  auto m = p.server.try_recv();
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "x");
  IPCX_EXPECT_ERRC(p.server.try_recv(), Errc::would_block);
  EXPECT_TRUE(p.server.is_open());
}

TYPED_TEST(Conformance, TrySendBackpressure) {
  test::Watchdog wd(std::chrono::seconds(110));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  const std::size_t kSize = std::min<std::size_t>(64 * 1024, TypeParam::max_message());
  constexpr std::uint32_t kLimit = 4096;  // 256 MiB: far beyond any socket/pipe buffer
  std::uint32_t accepted = 0;
  bool blocked = false;
  for (std::uint32_t i = 0; i < kLimit; ++i) {
    auto r = p.client.try_send(pattern(kSize, i));
    if (r) {
      ++accepted;
      continue;
    }
    ASSERT_EQ(r.error().code, Errc::would_block) << r.error().message();
    blocked = true;
    break;
  }
  ASSERT_TRUE(blocked) << "try_send never reported would_block";
  ASSERT_GT(accepted, 0u);
  if constexpr (!TypeParam::elastic_send_buffer) {
    // Still full: the peer has not read anything. A timed send of any size (even empty) waits
    // for space, then times out without sending anything.
    IPCX_EXPECT_ERRC(p.client.try_send(as_bytes("more")), Errc::would_block);
    IPCX_EXPECT_ERRC(p.client.send(std::span<const std::byte>{}, std::chrono::milliseconds(50)), Errc::timeout);
    IPCX_EXPECT_ERRC(p.client.send(as_bytes("x"), std::chrono::milliseconds(50)), Errc::timeout);
  }

  // Everything try_send accepted arrives intact once the peer reads (flush completes a frame
  // whose start went out), and so do messages sent while the connection is full: an empty
  // one included, which must not be lost because it had to wait for space.
  std::string send_error;
  {
    Worker writer(p.server, [&] {
      if (auto r = p.client.flush(std::chrono::seconds(60)); !r) {
        send_error = "flush: " + r.error().message();
      } else if (auto e = p.client.send(std::span<const std::byte>{}, std::chrono::seconds(60)); !e) {
        send_error = "send empty: " + e.error().message();
      } else if (auto t = p.client.send(as_bytes("tail"), std::chrono::seconds(60)); !t) {
        send_error = "send tail: " + t.error().message();
      }
    });
    // Usually lets the writer meet the full buffer first; the outcome must be the same anyway.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (std::uint32_t i = 0; i < accepted; ++i) {
      auto m = p.server.recv(std::chrono::seconds(60));
      ASSERT_TRUE(m) << "recv " << i << ": " << why(m);
      ASSERT_EQ(mismatch(m->bytes(), pattern(kSize, i)), "") << "message " << i;
    }
    auto empty = p.server.recv(std::chrono::seconds(60));
    ASSERT_TRUE(empty) << why(empty);
    EXPECT_EQ(empty->size(), 0u) << "the empty message was lost: got '" << empty->text() << "'";
    auto tail = p.server.recv(std::chrono::seconds(60));
    ASSERT_TRUE(tail) << why(tail);
    EXPECT_EQ(tail->text(), "tail");
    writer.join();
  }
  EXPECT_EQ(send_error, "");
  // Nothing extra: the refused messages were really refused.
  IPCX_EXPECT_ERRC(p.server.try_recv(), Errc::would_block);
}

TYPED_TEST(Conformance, PeerClosedMidMessageIsProtocolError) {
  test::Watchdog wd(std::chrono::seconds(30));
  if constexpr (!TypeParam::raw_descriptor) GTEST_SKIP() << "no raw descriptor: the transport tests its own malformed input";
  else if constexpr (!TypeParam::raw_frames) GTEST_SKIP() << "messages arrive whole: no fragments";
  Fd raw = TypeParam::raw_connect(this->env_, {});
  ASSERT_TRUE(raw.valid()) << std::strerror(errno);
  // Stream transports: a header announcing 100 bytes, then only 10. Records: a first fragment
  // ("more" flag), then nothing.
  auto partial = TypeParam::records ? frame_bytes(wire::kFlagMore, 10, 10) : frame_bytes(0, 100, 10);
  ASSERT_TRUE(write_all(raw.get(), partial));
  raw.reset();
  auto server = TypeParam::raw_accept(this->env_);
  ASSERT_TRUE(server) << why(server);
  auto m = server->recv(std::chrono::seconds(10));
  ASSERT_FALSE(m) << "a truncated frame was delivered";
  EXPECT_EQ(m.error().code, Errc::protocol) << m.error().message();
  EXPECT_FALSE(server->is_open());
  IPCX_EXPECT_ERRC(server->recv(std::chrono::seconds(1)), Errc::closed);
}

TYPED_TEST(Conformance, PeerClosedHalfwayThroughHeaderIsProtocolError) {
  test::Watchdog wd(std::chrono::seconds(30));
  if constexpr (TypeParam::records) GTEST_SKIP() << "records arrive whole";
  Fd raw = TypeParam::raw_connect(this->env_, {});
  ASSERT_TRUE(raw.valid()) << std::strerror(errno);
  auto whole = frame_bytes(0, 4, 4);
  ASSERT_TRUE(write_all(raw.get(), std::span(whole).first(7)));
  raw.reset();
  auto server = TypeParam::raw_accept(this->env_);
  ASSERT_TRUE(server) << why(server);
  IPCX_EXPECT_ERRC(server->recv(std::chrono::seconds(10)), Errc::protocol);
}

TYPED_TEST(Conformance, RawOversizedRecordIsProtocolError) {
  test::Watchdog wd(std::chrono::seconds(30));
  if constexpr (!TypeParam::records || !TypeParam::raw_descriptor || !TypeParam::raw_frames) {
    GTEST_SKIP() << "byte streams have no records; a queue refuses messages above its size";
  } else {
    Fd raw = TypeParam::raw_connect(this->env_, {});
    ASSERT_TRUE(raw.valid()) << std::strerror(errno);
    // One record bigger than the receiver's record buffer (a header that claims it all).
    auto huge = frame_bytes(0, 100 * 1024, 100 * 1024);
    ASSERT_EQ(::send(raw.get(), huge.data(), huge.size(), 0), static_cast<ssize_t>(huge.size()));
    auto server = TypeParam::raw_accept(this->env_);
    ASSERT_TRUE(server) << why(server);
    IPCX_EXPECT_ERRC(server->recv(std::chrono::seconds(10)), Errc::protocol);
    EXPECT_FALSE(server->is_open());
  }
}

TYPED_TEST(Conformance, RawCleanCloseIsClosed) {
  test::Watchdog wd(std::chrono::seconds(30));
  if constexpr (!TypeParam::raw_descriptor) GTEST_SKIP() << "no raw descriptor: the transport tests its own malformed input";
  else if constexpr (!TypeParam::raw_frames) GTEST_SKIP() << "no frames: EofIsClosedAfterPendingMessages covers the end";
  Fd raw = TypeParam::raw_connect(this->env_, {});
  ASSERT_TRUE(raw.valid()) << std::strerror(errno);
  auto whole = frame_bytes(0, 10, 10);
  ASSERT_TRUE(write_all(raw.get(), whole));
  raw.reset();
  auto server = TypeParam::raw_accept(this->env_);
  ASSERT_TRUE(server) << why(server);
  auto m = server->recv(std::chrono::seconds(10));
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(mismatch(m->bytes(), pattern(10, 7)), "");
  IPCX_EXPECT_ERRC(server->recv(std::chrono::seconds(10)), Errc::closed);
}

TYPED_TEST(Conformance, RawGarbageIsProtocolError) {
  test::Watchdog wd(std::chrono::seconds(30));
  if constexpr (!TypeParam::raw_descriptor) GTEST_SKIP() << "no raw descriptor: the transport tests its own malformed input";
  Fd raw = TypeParam::raw_connect(this->env_, {});
  ASSERT_TRUE(raw.valid()) << std::strerror(errno);
  std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(TypeParam::raw_write(raw.get(), as_bytes(junk)));
  auto server = TypeParam::raw_accept(this->env_);
  ASSERT_TRUE(server) << why(server);
  auto m = server->recv(std::chrono::seconds(10));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Errc::protocol) << m.error().message();
  if constexpr (TypeParam::raw_frames) {
    EXPECT_NE(m.error().message().find("magic"), std::string::npos) << m.error().message();
  }
  EXPECT_FALSE(server->is_open());
}

// close_send(): the peer reads what was sent, then EOF, and can still answer.
TYPED_TEST(Conformance, CloseSendIsEofForThePeerWhoCanStillAnswer) {
  test::Watchdog wd(std::chrono::seconds(30));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  IPCX_ASSERT_OK(p.client.send(u32_bytes(7)));
  IPCX_ASSERT_OK(p.client.close_send(std::chrono::seconds(10)));
  IPCX_EXPECT_ERRC(p.client.send(u32_bytes(8)), Errc::closed);
  auto m = p.server.recv(std::chrono::seconds(10));
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(u32_of(*m), 7u);
  IPCX_EXPECT_ERRC(p.server.recv(std::chrono::seconds(10)), Errc::closed);
  IPCX_ASSERT_OK(p.server.send(u32_bytes(9)));
  auto back = p.client.recv(std::chrono::seconds(10));
  ASSERT_TRUE(back) << why(back);
  EXPECT_EQ(u32_of(*back), 9u);
}

TYPED_TEST(Conformance, EofIsClosedAfterPendingMessages) {
  test::Watchdog wd(std::chrono::seconds(30));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  for (int i = 0; i < 3; ++i) IPCX_ASSERT_OK(p.client.send(u32_bytes(static_cast<std::uint32_t>(i))));
  p.client.close();
  EXPECT_FALSE(p.client.is_open());
  for (std::uint32_t i = 0; i < 3; ++i) {
    auto m = p.server.recv(std::chrono::seconds(10));
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(u32_of(*m), i);
  }
  IPCX_EXPECT_ERRC(p.server.recv(std::chrono::seconds(10)), Errc::closed);
  IPCX_EXPECT_ERRC(p.server.recv(std::chrono::seconds(10)), Errc::closed);
  IPCX_EXPECT_ERRC(p.client.send(as_bytes("x")), Errc::closed);
  IPCX_EXPECT_ERRC(p.client.recv(std::chrono::seconds(1)), Errc::closed);
}

TYPED_TEST(Conformance, ServerCloseIsClientEof) {
  test::Watchdog wd(std::chrono::seconds(30));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  IPCX_ASSERT_OK(p.server.send(as_bytes("bye")));
  this->close_server_side(p);
  auto m = p.client.recv(std::chrono::seconds(10));
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(m->text(), "bye");
  IPCX_EXPECT_ERRC(p.client.recv(std::chrono::seconds(10)), Errc::closed);
}

TYPED_TEST(Conformance, SendToClosedPeerIsClosed) {
  test::Watchdog wd(std::chrono::seconds(60));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  this->close_server_side(p);
  // The first write after the peer went may still be buffered (TCP learns of the close from
  // the RST it provokes); a later one must fail with closed, never kill us with SIGPIPE.
  Result<void> r;
  for (int i = 0; i < 1000 && r; ++i) {
    r = p.client.send(as_bytes("are you there"), std::chrono::seconds(5));
    if (r) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed) << r.error().message();
}

TYPED_TEST(Conformance, ManyClients) {
  if constexpr (!TypeParam::multi_client) {
    GTEST_SKIP() << TypeParam::name << " serves one peer at a time";
  } else {
    test::Watchdog wd(std::chrono::seconds(100));
    auto first = this->make();  // creates the listener; also one of the clients
    ASSERT_TRUE(first.client && first.server);
    constexpr int kClients = TypeParam::many_clients;
    constexpr std::uint32_t kPerClient = 200;
    std::atomic<int> client_errors{0};
    std::vector<std::thread> threads;
    std::vector<Connection> accepted;  // destroyed after the threads are joined (see below)
    auto join_all = [&] {
      for (auto& t : threads)
        if (t.joinable()) t.join();
    };
    struct Guard {  // on an early return: close our ends so blocked clients fail, then join
      std::vector<Connection>& conns;
      std::function<void()> join;
      ~Guard() {
        for (auto& c : conns) c.close();
        join();
      }
    } guard{accepted, join_all};
    for (int c = 0; c < kClients; ++c) {
      threads.emplace_back([&, c] {
        auto conn = TypeParam::connect_client(this->env_, {});
        if (!conn) {
          ++client_errors;
          return;
        }
        for (std::uint32_t j = 0; j < kPerClient; ++j) {
          auto msg = u32_bytes(static_cast<std::uint32_t>(c) << 16 | j);
          if (!conn->send(msg, std::chrono::seconds(30))) {
            ++client_errors;
            return;
          }
        }
      });  // the connection closes when the thread ends: the server sees EOF
    }
    for (int c = 0; c < kClients; ++c) {
      auto s = this->env_.listener.accept(std::chrono::seconds(30));
      ASSERT_TRUE(s) << "accept " << c << ": " << why(s);
      accepted.push_back(std::move(*s));
    }
    std::set<std::uint32_t> seen;
    for (auto& s : accepted) {
      std::uint32_t id = 0xffff;
      for (std::uint32_t j = 0;; ++j) {
        auto m = s.recv(std::chrono::seconds(30));
        if (!m) {
          ASSERT_EQ(m.error().code, Errc::closed) << m.error().message();
          ASSERT_EQ(j, kPerClient) << "client " << id << " lost messages";
          break;
        }
        auto v = u32_of(*m);
        if (j == 0) id = v >> 16;
        ASSERT_EQ(v >> 16, id) << "messages of two clients on one connection";
        ASSERT_EQ(v & 0xffff, j) << "client " << id << " out of order";
      }
      EXPECT_TRUE(seen.insert(id).second) << "client " << id << " accepted twice";
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kClients));
    join_all();
    EXPECT_EQ(client_errors.load(), 0);
    // The first pair still works alongside.
    IPCX_ASSERT_OK(first.client.send(as_bytes("still here")));
    auto m = first.server.recv(std::chrono::seconds(10));
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), "still here");
  }
}

TYPED_TEST(Conformance, NativeHandleBecomesReadable) {
  test::Watchdog wd(std::chrono::seconds(60));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  auto check = [](Connection& from, Connection& to) {
    int fd = to.native_handle().value_or(-1);
    ASSERT_GE(fd, 0);
    EXPECT_FALSE(readable(fd, 0));
    constexpr int kCount = 5;
    for (int i = 0; i < kCount; ++i) IPCX_ASSERT_OK(from.send(u32_bytes(static_cast<std::uint32_t>(i))));
    int got = 0;
    // Readiness, then try_recv until would_block (several messages may come in one read).
    for (int round = 0; round < 100 && got < kCount; ++round) {
      ASSERT_TRUE(readable(fd, 10000)) << "no readiness after " << got << " messages";
      for (;;) {
        auto m = to.try_recv();
        if (!m) {
          ASSERT_EQ(m.error().code, Errc::would_block) << m.error().message();
          break;
        }
        EXPECT_EQ(u32_of(*m), static_cast<std::uint32_t>(got));
        ++got;
      }
    }
    EXPECT_EQ(got, kCount);
    EXPECT_FALSE(to.buffered());
    EXPECT_FALSE(readable(fd, 0)) << "still readable after draining";
  };
  check(p.client, p.server);
  check(p.server, p.client);
}

TYPED_TEST(Conformance, BufferedMessagesNeedNoReadiness) {
  test::Watchdog wd(std::chrono::seconds(30));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  // Several small messages usually arrive in one read; whatever is decoded but not returned
  // must be reported by buffered() (poll would not wake for it).
  for (int i = 0; i < 10; ++i) IPCX_ASSERT_OK(p.client.send(u32_bytes(static_cast<std::uint32_t>(i))));
  int got = 0;
  while (got < 10) {
    if (!p.server.buffered()) {
      ASSERT_TRUE(readable(p.server.native_handle().value_or(-1), 10000)) << got;
    }
    auto m = p.server.try_recv();
    if (!m) {
      ASSERT_EQ(m.error().code, Errc::would_block);
      continue;
    }
    EXPECT_EQ(u32_of(*m), static_cast<std::uint32_t>(got++));
  }
  EXPECT_FALSE(p.server.buffered());
}

TYPED_TEST(Conformance, FdPassing) {
  test::Watchdog wd(std::chrono::seconds(30));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  int pfd[2];
  ASSERT_EQ(::pipe2(pfd, O_CLOEXEC), 0);
  Fd pr(pfd[0]), pw(pfd[1]);
  int one[] = {pw.get()};
  if constexpr (!TypeParam::fd_passing) {
    IPCX_EXPECT_ERRC(p.client.send(as_bytes("fd"), one), Errc::not_supported);
    // Refusing fds does not break the connection.
    IPCX_ASSERT_OK(p.client.send(as_bytes("plain")));
    auto m = p.server.recv(std::chrono::seconds(10));
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), "plain");
  } else {
    int two[] = {pw.get(), pr.get()};
    IPCX_ASSERT_OK(p.client.send(as_bytes("one fd"), one));
    IPCX_ASSERT_OK(p.client.send(as_bytes("no fd")));
    IPCX_ASSERT_OK(p.client.send(as_bytes("two fds"), two));
    IPCX_ASSERT_OK(p.client.send(std::span<const std::byte>{}, one));  // fds with an empty payload
    auto m1 = p.server.recv(std::chrono::seconds(10));
    auto m2 = p.server.recv(std::chrono::seconds(10));
    auto m3 = p.server.recv(std::chrono::seconds(10));
    auto m4 = p.server.recv(std::chrono::seconds(10));
    ASSERT_TRUE(m1 && m2 && m3 && m4) << why(m1) << why(m2) << why(m3) << why(m4);
    EXPECT_EQ(m1->text(), "one fd");
    ASSERT_EQ(m1->fds.size(), 1u);
    EXPECT_EQ(m2->text(), "no fd");
    EXPECT_EQ(m2->fds.size(), 0u);
    EXPECT_EQ(m3->text(), "two fds");
    ASSERT_EQ(m3->fds.size(), 2u);
    EXPECT_EQ(m4->size(), 0u);
    ASSERT_EQ(m4->fds.size(), 1u);
    // Received descriptors are close-on-exec.
    EXPECT_TRUE(::fcntl(m1->fds[0].get(), F_GETFD) & FD_CLOEXEC);

    // The receiver writes into the passed write end; the original reader sees the bytes.
    ASSERT_EQ(::write(m1->fds[0].get(), "xyz", 3), 3);
    ASSERT_EQ(::write(m3->fds[0].get(), "!", 1), 1);
    char buf[8] = {};
    ASSERT_TRUE(readable(pr.get(), 10000));
    ASSERT_EQ(::read(pr.get(), buf, sizeof buf), 4);
    EXPECT_EQ(std::string(buf, 4), "xyz!");
    // m3's second fd is the read end: writing through the first and reading through it works.
    ASSERT_EQ(::write(pw.get(), "q", 1), 1);
    ASSERT_TRUE(readable(m3->fds[1].get(), 10000));
    ASSERT_EQ(::read(m3->fds[1].get(), buf, 1), 1);
    EXPECT_EQ(buf[0], 'q');

    // And the other way round.
    IPCX_ASSERT_OK(p.server.send(as_bytes("back"), one));
    auto m5 = p.client.recv(std::chrono::seconds(10));
    ASSERT_TRUE(m5) << why(m5);
    ASSERT_EQ(m5->fds.size(), 1u);
    ASSERT_EQ(::write(m5->fds[0].get(), "ok", 2), 2);
    ASSERT_TRUE(readable(pr.get(), 10000));
    ASSERT_EQ(::read(pr.get(), buf, sizeof buf), 2);

    // A descriptor with a payload larger than one socket write or seqpacket record.
    Worker big_sender(p.server, [&] { (void)p.client.send(pattern(300 * 1024, 5), one, std::chrono::seconds(20)); });
    auto big = p.server.recv(std::chrono::seconds(20));
    big_sender.join();
    ASSERT_TRUE(big) << why(big);
    EXPECT_EQ(mismatch(big->bytes(), pattern(300 * 1024, 5)), "");
    EXPECT_EQ(big->fds.size(), 1u);

    // More than SCM_MAX_FD descriptors is refused up front.
    std::vector<int> many(wire::kMaxFds + 1, pw.get());
    IPCX_EXPECT_ERRC(p.client.send(as_bytes("many"), many), Errc::invalid_argument);
    IPCX_ASSERT_OK(p.client.send(as_bytes("still fine")));
    auto m6 = p.server.recv(std::chrono::seconds(10));
    ASSERT_TRUE(m6) << why(m6);
    EXPECT_EQ(m6->text(), "still fine");
  }
}

TYPED_TEST(Conformance, PeerCredentials) {
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  for (auto* c : {&p.server, &p.client}) {
    auto cred = c->peer();
    if constexpr (TypeParam::peer_credentials) {
      EXPECT_TRUE(cred.verified);
      EXPECT_EQ(cred.uid, ::getuid());
      EXPECT_EQ(cred.gid, ::getgid());
      EXPECT_EQ(cred.pid, ::getpid());
    } else {
      EXPECT_FALSE(cred.verified) << "unverifiable credentials must not claim to be verified";
    }
  }
}

TYPED_TEST(Conformance, SendLargerThanMaxIsTooLarge) {
  test::Watchdog wd(std::chrono::seconds(30));
  Options o;
  o.max_message = 1024;
  auto p = this->make(o, o);
  ASSERT_TRUE(p.client && p.server);
  IPCX_EXPECT_ERRC(p.client.send(pattern(1025, 1)), Errc::too_large);
  IPCX_EXPECT_ERRC(p.client.try_send(pattern(1 << 20, 1)), Errc::too_large);
  // The refusal happens before any byte is written: the connection stays usable.
  IPCX_ASSERT_OK(p.client.send(pattern(1024, 2)));
  auto m = p.server.recv(std::chrono::seconds(10));
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(mismatch(m->bytes(), pattern(1024, 2)), "");
  IPCX_EXPECT_ERRC(p.server.try_recv(), Errc::would_block);
}

TYPED_TEST(Conformance, ReceiverRejectsOversizedFrame) {
  test::Watchdog wd(std::chrono::seconds(60));
  Options small;
  small.max_message = 1024;
  auto p = this->make({}, small);
  ASSERT_TRUE(p.client && p.server);
  IPCX_ASSERT_OK(p.client.send(pattern(1024, 3)));  // exactly the maximum is fine
  auto ok = p.server.recv(std::chrono::seconds(10));
  ASSERT_TRUE(ok) << why(ok);
  EXPECT_EQ(mismatch(ok->bytes(), pattern(1024, 3)), "");

  IPCX_ASSERT_OK(p.client.send(pattern(4096, 4), std::chrono::seconds(10)));  // fits any buffer
  auto m = p.server.recv(std::chrono::seconds(10));
  ASSERT_FALSE(m) << "an oversized frame was delivered";
  EXPECT_TRUE(m.error().code == Errc::too_large || m.error().code == Errc::protocol) << m.error().message();
  EXPECT_FALSE(p.server.is_open()) << "the connection must be dropped";
  IPCX_EXPECT_ERRC(p.server.recv(std::chrono::seconds(1)), Errc::closed);
}

TYPED_TEST(Conformance, ReusedMessageKeepsCapacity) {
  test::Watchdog wd(std::chrono::seconds(30));
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  const std::size_t kBig = std::min<std::size_t>(256 * 1024, TypeParam::max_message());
  Worker sender(p.server, [&] {
    (void)p.client.send(pattern(kBig, 1), std::chrono::seconds(20));
    (void)p.client.send(pattern(10, 2), std::chrono::seconds(20));
    (void)p.client.send(pattern(1000, 3), std::chrono::seconds(20));
  });
  Message m;
  IPCX_ASSERT_OK(p.server.recv(m, std::chrono::seconds(20)));
  EXPECT_EQ(mismatch(m.bytes(), pattern(kBig, 1)), "");
  IPCX_ASSERT_OK(p.server.recv(m, std::chrono::seconds(20)));
  EXPECT_EQ(mismatch(m.bytes(), pattern(10, 2)), "");
  EXPECT_GE(m.data.capacity(), kBig) << "recv(Message&) must keep the buffer's capacity";
  IPCX_ASSERT_OK(p.server.recv(m, std::chrono::seconds(20)));
  EXPECT_EQ(mismatch(m.bytes(), pattern(1000, 3)), "");
  EXPECT_GE(m.data.capacity(), kBig);
}

TYPED_TEST(Conformance, LineFraming) {
  test::Watchdog wd(std::chrono::seconds(30));
  Options lines;
  lines.framing = Framing::lines;
  if constexpr (!TypeParam::byte_stream) {
    auto p = TypeParam::make_pair(this->env_, lines, lines);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, Errc::not_supported) << p.error().message();
  } else {
    auto p = this->make(lines, lines);
    ASSERT_TRUE(p.client && p.server);
    IPCX_ASSERT_OK(p.client.send(as_bytes("hello world")));
    IPCX_ASSERT_OK(p.client.send(as_bytes("")));
    IPCX_EXPECT_ERRC(p.client.send(as_bytes("two\nlines")), Errc::invalid_argument);
    IPCX_ASSERT_OK(p.client.send(as_bytes("last")));
    for (std::string_view want : {"hello world", "", "last"}) {
      auto m = p.server.recv(std::chrono::seconds(10));
      ASSERT_TRUE(m) << why(m);
      EXPECT_EQ(m->text(), want);
    }
    if constexpr (TypeParam::fd_passing) {
      int fds[] = {0};
      IPCX_EXPECT_ERRC(p.client.send(as_bytes("fd"), fds), Errc::not_supported);
    }
  }
}

TYPED_TEST(Conformance, RawLinesWithoutFinalNewline) {
  test::Watchdog wd(std::chrono::seconds(30));
  if constexpr (!TypeParam::byte_stream) GTEST_SKIP() << "records only";
  Options lines;
  lines.framing = Framing::lines;
  Fd raw = TypeParam::raw_connect(this->env_, lines);
  ASSERT_TRUE(raw.valid()) << std::strerror(errno);
  ASSERT_TRUE(write_all(raw.get(), as_bytes("abc\n\ndef")));
  raw.reset();
  auto server = TypeParam::raw_accept(this->env_);
  ASSERT_TRUE(server) << why(server);
  for (std::string_view want : {"abc", "", "def"}) {
    auto m = server->recv(std::chrono::seconds(10));
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), want);
  }
  IPCX_EXPECT_ERRC(server->recv(std::chrono::seconds(10)), Errc::closed);
}

TYPED_TEST(Conformance, ListenerAcceptTimeoutAndReadiness) {
  if constexpr (!TypeParam::has_listener) {
    GTEST_SKIP() << "no listener";
  } else {
    test::Watchdog wd(std::chrono::seconds(30));
    IPCX_ASSERT_OK(TypeParam::listen(this->env_, {}));
    auto& l = this->env_.listener;
    EXPECT_TRUE(l.is_open());
    IPCX_EXPECT_ERRC(l.try_accept(), Errc::would_block);
    IPCX_EXPECT_ERRC(l.accept(std::chrono::milliseconds(50)), Errc::timeout);
    EXPECT_EQ(l.capabilities().concurrent, TypeParam::multi_client);
    int fd = l.native_handle().value_or(-1);
    ASSERT_GE(fd, 0);
    EXPECT_FALSE(readable(fd, 0));
    auto c = ipcx::connect(l.url(), {}, std::chrono::seconds(5));
    ASSERT_TRUE(c) << why(c);
    IPCX_ASSERT_OK(c->send(as_bytes("hi")));  // a FIFO listener sees a client by its bytes
    EXPECT_TRUE(readable(fd, 10000)) << "listener not readable with a client waiting";
    auto s = l.try_accept();
    ASSERT_TRUE(s) << why(s);
    auto m = s->recv(std::chrono::seconds(10));
    ASSERT_TRUE(m) << why(m);
    EXPECT_EQ(m->text(), "hi");
    l.close();
    EXPECT_FALSE(l.is_open());
    IPCX_EXPECT_ERRC(l.accept(std::chrono::milliseconds(10)), Errc::closed);
  }
}

TYPED_TEST(Conformance, ClosedConnectionRefusesEverything) {
  auto p = this->make();
  ASSERT_TRUE(p.client && p.server);
  p.client.close();
  p.client.close();  // idempotent
  EXPECT_FALSE(p.client.is_open());
  EXPECT_FALSE(static_cast<bool>(p.client));
  IPCX_EXPECT_ERRC(p.client.send(as_bytes("x")), Errc::closed);
  IPCX_EXPECT_ERRC(p.client.recv(std::chrono::milliseconds(1)), Errc::closed);
  IPCX_EXPECT_ERRC(p.client.flush(), Errc::closed);
  Connection empty;
  EXPECT_FALSE(empty.is_open());
  EXPECT_FALSE(empty.native_handle().has_value());
  IPCX_EXPECT_ERRC(empty.send(as_bytes("x")), Errc::closed);
  IPCX_EXPECT_ERRC(empty.try_recv(), Errc::closed);
  // Moving keeps the connection.
  Connection moved = std::move(p.server);
  EXPECT_TRUE(moved.is_open());
}

}  // namespace
}  // namespace ipcx::conformance
