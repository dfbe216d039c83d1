// signal://: one int per real-time signal, to ourselves (the test is its own peer).
//
// The transport signal must be blocked in every thread before it arrives, so each test blocks
// it first, before the watchdog (or anything else) starts a thread.
#include <csignal>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <ipcx/connection.hpp>
#include <ipcx/process.hpp>
#include <ipcx/signal.hpp>

#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx {
namespace {

using namespace std::chrono_literals;
using test::why;

std::vector<std::byte> le32(std::int32_t v) {
  auto u = static_cast<std::uint32_t>(v);
  return {std::byte(u & 0xff), std::byte((u >> 8) & 0xff), std::byte((u >> 16) & 0xff), std::byte(u >> 24)};
}
std::int32_t from_le32(const Message& m) {
  std::uint32_t u = 0;
  for (std::size_t i = 0; i < 4; ++i) u |= std::to_integer<std::uint32_t>(m.data[i]) << (8 * i);
  return static_cast<std::int32_t>(u);
}

TEST(SignalTransport, SendToSelf) {
  IPCX_ASSERT_OK(block_transport_signal());
  test::Watchdog wd(30s);
  auto l = ipcx::listen("signal://self");
  ASSERT_TRUE(l) << why(l);
  EXPECT_EQ(l->url(), fmt::format("signal://self?sig={}", kDefaultSignalOffset));
  auto server = l->accept(1s);
  ASSERT_TRUE(server) << why(server);
  // No peer yet: replies go to the last sender, and nobody has sent.
  IPCX_EXPECT_ERRC(server->send(le32(1)), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(l->accept(1s), Errc::closed);  // one connection only

  auto client = ipcx::connect(fmt::format("signal://{}", ::getpid()));
  ASSERT_TRUE(client) << why(client);
  IPCX_ASSERT_OK(client->send(le32(0x12345678)));
  auto m = server->recv(10s);
  ASSERT_TRUE(m) << why(m);
  ASSERT_EQ(m->size(), 4u);
  EXPECT_EQ(from_le32(*m), 0x12345678);
  EXPECT_TRUE(m->fds.empty());
  auto peer = server->peer();
  EXPECT_EQ(peer.pid, ::getpid());
  EXPECT_EQ(peer.uid, ::getuid());
  EXPECT_FALSE(peer.verified) << "sigqueue's sender can be forged";

  // The reply goes back to the sender (ourselves again).
  IPCX_ASSERT_OK(server->send(le32(-2)));
  auto reply = client->recv(10s);
  ASSERT_TRUE(reply) << why(reply);
  EXPECT_EQ(from_le32(*reply), -2);

  IPCX_EXPECT_ERRC(server->try_recv(), Errc::would_block);
  IPCX_EXPECT_ERRC(client->try_recv(), Errc::would_block);
}

// signal://self replies to whoever signalled last (signal.hpp), not to the first sender.
TEST(SignalTransport, ListenerRepliesToTheLastSender) {
  IPCX_ASSERT_OK(block_transport_signal());
  auto sig = transport_signal();
  ASSERT_TRUE(sig);
  auto l = ipcx::listen("signal://self");
  ASSERT_TRUE(l) << why(l);
  auto server = l->accept(1s);
  ASSERT_TRUE(server) << why(server);
  auto self = ipcx::connect("signal://self");
  ASSERT_TRUE(self) << why(self);
  IPCX_ASSERT_OK(self->send(le32(1)));
  auto first = server->recv(10s);
  ASSERT_TRUE(first) << why(first);

  // A second sender: a child (the signal stays blocked across fork) that signals us, waits for
  // the reply on its own signalfd and exits with the value it got (or 99 after 10 s).
  pid_t parent = ::getpid();
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, *sig);
    int sfd = ::signalfd(-1, &set, SFD_CLOEXEC);
    sigval v{};
    v.sival_int = 2;
    if (sfd < 0 || ::sigqueue(parent, *sig, v) != 0) ::_exit(98);
    pollfd p{sfd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) ::_exit(99);
    signalfd_siginfo si{};
    if (::read(sfd, &si, sizeof si) != sizeof si) ::_exit(97);
    ::_exit(si.ssi_int);
  }
  auto second = server->recv(10s);
  ASSERT_TRUE(second) << why(second);
  EXPECT_EQ(from_le32(*second), 2);
  EXPECT_EQ(server->peer().pid, child);
  IPCX_EXPECT_OK(server->send(le32(3)));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << "the reply did not reach the last sender";
  IPCX_EXPECT_ERRC(self->try_recv(), Errc::would_block);  // ...and not the first one
}

TEST(SignalTransport, PayloadMustBeFourBytes) {
  IPCX_ASSERT_OK(block_transport_signal());
  auto client = ipcx::connect("signal://self");
  ASSERT_TRUE(client) << why(client);
  for (std::size_t n : {0, 1, 3, 5, 8}) {
    std::vector<std::byte> payload(n);
    IPCX_EXPECT_ERRC(client->send(payload), Errc::invalid_argument);
  }
  int fds[] = {0};
  IPCX_EXPECT_ERRC(client->send(le32(1), fds), Errc::not_supported);
  IPCX_EXPECT_ERRC(client->try_recv(), Errc::would_block);  // nothing was sent
}

TEST(SignalTransport, ValuesArriveInOrder) {
  IPCX_ASSERT_OK(block_transport_signal());
  test::Watchdog wd(30s);
  auto l = ipcx::listen("signal://self");
  ASSERT_TRUE(l) << why(l);
  auto server = l->accept();
  ASSERT_TRUE(server) << why(server);
  auto client = ipcx::connect("signal://self");
  ASSERT_TRUE(client) << why(client);
  for (std::int32_t v : {0, 1, -1, 42, INT32_MIN, INT32_MAX, 7, 8, 9, 10})
    IPCX_ASSERT_OK(client->send(le32(v), 5s));
  Message m;
  for (std::int32_t v : {0, 1, -1, 42, INT32_MIN, INT32_MAX, 7, 8, 9, 10}) {
    IPCX_ASSERT_OK(server->recv(m, 10s));
    EXPECT_EQ(from_le32(m), v);
  }
  IPCX_EXPECT_ERRC(server->recv(20ms), Errc::timeout);
}

TEST(SignalTransport, NativeHandleBecomesReadable) {
  IPCX_ASSERT_OK(block_transport_signal());
  auto l = ipcx::listen("signal://self");
  ASSERT_TRUE(l) << why(l);
  EXPECT_FALSE(l->native_handle().has_value());
  EXPECT_FALSE(l->capabilities().concurrent);
  auto server = l->accept();
  ASSERT_TRUE(server) << why(server);
  EXPECT_EQ(server->capabilities().fixed_size, 4u);
  ASSERT_TRUE(server->native_handle().has_value());
  pollfd p{*server->native_handle(), POLLIN, 0};
  ASSERT_GE(p.fd, 0);
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  IPCX_ASSERT_OK(send_signal(::getpid(), 5));
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  auto m = server->try_recv();
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(from_le32(*m), 5);
  IPCX_EXPECT_ERRC(server->try_recv(), Errc::would_block);
  server->close();
  EXPECT_FALSE(server->is_open());
  IPCX_EXPECT_ERRC(server->try_recv(), Errc::closed);
  IPCX_EXPECT_ERRC(server->send(le32(1)), Errc::closed);
}

TEST(SignalTransport, OtherSignalOffset) {
  IPCX_ASSERT_OK(block_transport_signal(6));
  auto l = ipcx::listen("signal://self?sig=6");
  ASSERT_TRUE(l) << why(l);
  auto server = l->accept();
  ASSERT_TRUE(server) << why(server);
  auto client = ipcx::connect(fmt::format("signal://{}?sig=6", ::getpid()));
  ASSERT_TRUE(client) << why(client);
  IPCX_ASSERT_OK(client->send(le32(66)));
  auto m = server->recv(10s);
  ASSERT_TRUE(m) << why(m);
  EXPECT_EQ(from_le32(*m), 66);
}

TEST(SignalTransport, AddressErrors) {
  IPCX_ASSERT_OK(block_transport_signal());
  IPCX_EXPECT_ERRC(ipcx::connect("signal://abc"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect("signal://0"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect("signal://-5"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect("signal://999999999"), Errc::invalid_url);  // above kernel.pid_max
  IPCX_EXPECT_ERRC(ipcx::connect("signal://4294967297"), Errc::invalid_url);  // would wrap to pid 1
  pid_t gone = 0;  // a pid in range that no process has
  for (pid_t p = 32000; p > 300 && gone == 0; --p)
    if (::kill(p, 0) != 0 && errno == ESRCH) gone = p;
  ASSERT_NE(gone, 0);
  IPCX_EXPECT_ERRC(ipcx::connect(fmt::format("signal://{}", gone)), Errc::connection_refused);
  IPCX_EXPECT_ERRC(ipcx::listen("signal://1234"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen("signal://self?sig=x"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen("signal://self?sig=4abc"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::listen("signal://self?sig=999"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect("signal://self?sig=-1"), Errc::invalid_url);
  IPCX_EXPECT_ERRC(ipcx::connect("signal://self?foo=1"), Errc::invalid_url);  // unknown keys are errors
}

TEST(SignalTransport, Helpers) {
  auto s = transport_signal(0);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, SIGRTMIN);
  auto d = transport_signal();
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, SIGRTMIN + kDefaultSignalOffset);
  auto top = transport_signal(SIGRTMAX - SIGRTMIN);
  ASSERT_TRUE(top);
  EXPECT_EQ(*top, SIGRTMAX);
  IPCX_EXPECT_ERRC(transport_signal(-1), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(transport_signal(SIGRTMAX - SIGRTMIN + 1), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(block_transport_signal(-1), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(send_signal(0, 1), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(send_signal(-1, 1), Errc::invalid_argument);
  IPCX_EXPECT_ERRC(send_signal(::getpid(), 1, 999), Errc::invalid_argument);
  // The default transport signal is blocked after block_transport_signal().
  IPCX_ASSERT_OK(block_transport_signal());
  sigset_t mask;
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, nullptr, &mask), 0);
  EXPECT_TRUE(sigismember(&mask, *d));
}

}  // namespace
}  // namespace ipcx

namespace ipcx {
namespace {
// A real-time signal nobody blocks or catches kills its target: neither `send_signal` nor a
// connection may fire one at a process that does not receive it.
TEST(SignalTransport, RefusesATargetThatWouldBeKilled) {
  test::Watchdog wd(std::chrono::seconds(30));
  auto child = Process::spawn({"sleep", "30"});
  ASSERT_TRUE(child) << test::why(child);
  auto r = send_signal(child->pid(), 1);
  ASSERT_FALSE(r) << "signalled a process that does not receive it";
  EXPECT_EQ(r.error().code, Errc::connection_refused) << r.error().message();
  EXPECT_NE(r.error().message().find("would be killed"), std::string::npos) << r.error().message();
  IPCX_EXPECT_ERRC(ipcx::connect(fmt::format("signal://{}", child->pid())), Errc::connection_refused);
  EXPECT_TRUE(child->running());
  EXPECT_FALSE(child->wait(std::chrono::milliseconds(100)).has_value()) << "the target died";
}
}  // namespace
}  // namespace ipcx
