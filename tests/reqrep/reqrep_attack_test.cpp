// Bad input: a client that sends what no requester would (unknown kind, short header, a
// duplicate id in flight, garbage bytes) loses its own connection, with a reason; the others
// keep being served. A replier that sends a reply for an unknown id loses the requester.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include "reqrep/reqrep_support.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;
using messaging::Kind;

class ReqRepAttack : public ::testing::TestWithParam<Transport> {
 protected:
  std::string url() { return GetParam().url(dir_); }
  ScratchDir dir_;
};

// Reads until the connection ends; returns the reason of the error message it got, if any.
std::string error_then_closed(Connection& c) {
  std::string reason;
  for (;;) {
    auto m = c.recv(10s);
    if (!m) {
      EXPECT_EQ(m.error().code, Errc::closed) << m.error().message();
      return reason;
    }
    if (!m->data.empty() && m->data[0] == std::byte{static_cast<unsigned char>(Kind::error)})
      reason = text(m->bytes().subspan(1));
  }
}

struct Case {
  const char* name;
  std::vector<std::vector<std::byte>> messages;
  const char* reason;  // a part of what the replier says
};

std::vector<Case> cases() {
  auto kind = [](Kind k) { return std::vector<std::byte>{static_cast<std::byte>(k)}; };
  auto short_request = raw_request(1, "");
  short_request.resize(messaging::rr::kAskHeader - 1);
  return {
      {"unknown kind", {{std::byte{0x55}, std::byte{1}}}, "unexpected message kind 0x55"},
      {"empty message", {{}}, "empty message"},
      {"a reply sent to a replier", {kind(Kind::reply)}, "unexpected message kind 0x21"},
      {"short header", {short_request}, "shorter than its 17-byte header"},
      {"duplicate id in flight", {raw_request(7, "hold"), raw_request(7, "again")}, "request id 7 is already in flight"},
  };
}

TEST_P(ReqRepAttack, BadInputDropsOnlyThatConnection) {
  Watchdog wd(60s);
  std::vector<ReplyHandle> held;
  auto rep = Replier::bind(url(), [&](Request& r) {
    if (text(r.payload) == "hold") held.push_back(r.defer());
    else (void)r.reply(r.payload);
  });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto good = Requester::connect(run.url());
  IPCX_ASSERT_OK(good);
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    auto bad = connect(run.url());
    IPCX_ASSERT_OK(bad);
    for (const auto& m : c.messages) IPCX_ASSERT_OK(bad->send(m, 10s));
    EXPECT_NE(error_then_closed(*bad).find(c.reason), std::string::npos);
    auto m = good->request(as_bytes(c.name), 10s);
    IPCX_ASSERT_OK(m);
    EXPECT_EQ(m->text(), c.name);
  }
  // The held request's connection is gone: answering it is discarded and counted.
  IPCX_EXPECT_ERRC(run.on_loop([&] { return held.front().reply(as_bytes("x")); }), Errc::closed);
  EXPECT_EQ(run.stats().dropped.peer_died, 1u);
  expect_balanced_replier(run.stats());
}

// Bytes that are not even frames, from a plain socket: the engine drops that client alone.
TEST(ReqRepAttackRaw, GarbageBytesOnAUnixSocket) {
  Watchdog wd(60s);
  ScratchDir dir;
  const auto path = dir.file("s.sock");
  auto rep = Replier::bind("unix://" + path, [](Request& r) { (void)r.reply(r.payload); });
  IPCX_ASSERT_OK(rep);
  Running run(std::move(*rep));
  auto good = Requester::connect(run.url());
  IPCX_ASSERT_OK(good);
  Fd raw = raw_unix_client(path);
  ASSERT_TRUE(raw.valid());
  const std::string junk(4096, '\xff');
  ASSERT_EQ(::send(raw.get(), junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
  ASSERT_TRUE(eventually([&] { return run.server_stats().dropped_protocol == 1; }, 20s));
  auto m = good->request(as_bytes("fine"), 10s);
  IPCX_ASSERT_OK(m);
  EXPECT_EQ(m->text(), "fine");
}

// A "replier" that answers what no replier would: the requester closes with Errc::protocol,
// every request in flight counted lost.
TEST_P(ReqRepAttack, BadRepliesCloseTheRequester) {
  Watchdog wd(60s);
  namespace rr = messaging::rr;
  struct Bad {
    const char* name;
    std::function<std::vector<std::vector<std::byte>>(RequestId)> messages;
    const char* detail;
  };
  auto reply = [](RequestId id, rr::Status st) {
    std::vector<std::byte> m;
    rr::encode_reply(m, id, st, as_bytes("?"));
    return m;
  };
  using Msgs = std::vector<std::vector<std::byte>>;
  const std::vector<Bad> bad = {
      {"unknown id", [&](RequestId) { return Msgs{reply(9999, rr::Status::ok)}; }, "never sent"},
      {"second reply", [&](RequestId id) { return Msgs{reply(id, rr::Status::ok), reply(id, rr::Status::ok)}; }, "second reply"},
      {"unknown status", [&](RequestId id) { return Msgs{reply(id, rr::Status{7})}; }, "unknown reply status"},
      {"not a reply", [&](RequestId) { return Msgs{raw_request(1, "x")}; }, "unexpected message kind"},
      {"short reply", [&](RequestId) { return Msgs{std::vector<std::byte>{std::byte{0x21}, std::byte{1}}}; }, "shorter than its header"},
      {"error", [&](RequestId) {
         std::vector<std::byte> m;
         rr::encode_error(m, "go away");
         return Msgs{m};
       }, "go away"},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.name);
    ScratchDir d;
    auto l = listen(GetParam().url(d));
    IPCX_ASSERT_OK(l);
    auto req = Requester::connect(l->url());
    IPCX_ASSERT_OK(req);
    auto srv = l->accept(10s);
    IPCX_ASSERT_OK(srv);
    auto one = req->send_request(as_bytes("x"), 30s);
    auto two = req->send_request(as_bytes("y"), 30s);
    IPCX_ASSERT_OK(one);
    IPCX_ASSERT_OK(two);
    IPCX_ASSERT_OK(srv->recv(10s));
    for (const auto& m : b.messages(*two)) IPCX_ASSERT_OK(srv->send(m, 10s));
    // (With "second reply", the first reply is taken for `two` and kept; the second breaks.)
    auto r = req->wait(*one, 30s);
    IPCX_EXPECT_ERRC(r, Errc::protocol);
    if (!r) {
      EXPECT_NE(r.error().detail.find(b.detail), std::string::npos) << r.error().message();
    }
    EXPECT_FALSE(req->is_open());
    IPCX_EXPECT_ERRC(req->request(as_bytes("z"), 1s), Errc::closed);
    expect_balanced(req->stats());
  }
}

// A reply larger than the requester accepts is refused before it is buffered whole.
TEST_P(ReqRepAttack, OversizedReplyIsRefused) {
  Watchdog wd(60s);
  auto l = listen(url());
  IPCX_ASSERT_OK(l);
  RequesterOptions o;
  o.transport.max_message = 1024;
  auto req = Requester::connect(l->url(), o);
  IPCX_ASSERT_OK(req);
  auto srv = l->accept(10s);
  IPCX_ASSERT_OK(srv);
  auto id = req->send_request(as_bytes("x"), 30s);
  IPCX_ASSERT_OK(id);
  IPCX_ASSERT_OK(srv->recv(10s));
  std::vector<std::byte> reply;
  // Above the requester's 1024, within what the transport carries.
  const std::size_t size = std::min<std::size_t>(64 * 1024, GetParam().largest - 64);
  messaging::rr::encode_reply(reply, *id, messaging::rr::Status::ok, std::vector<std::byte>(size));
  Worker w([&] { (void)srv->send(reply, 10s); });
  auto r = req->wait(*id, 30s);
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().code == Errc::too_large || r.error().code == Errc::protocol) << r.error().message();
  EXPECT_EQ(req->stats().dropped.peer_died, 1u);
  req->close();
  srv->close();
}

INSTANTIATE_TEST_SUITE_P(Transports, ReqRepAttack, ::testing::ValuesIn(transports()), transport_name);

}  // namespace
}  // namespace ipcx::test
