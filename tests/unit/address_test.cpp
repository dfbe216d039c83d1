// transport/address: every URL field range-checked into a typed address, per scheme.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <unistd.h>

#include <fmt/format.h>

#include "os/socket.hpp"
#include "transport/address.hpp"
#include "transport/url.hpp"
#include "unit/support.hpp"
#include "unit/url_check.hpp"

namespace ipcx::transport {
namespace {

using test::why;
using namespace test_url;
using namespace std::string_literals;
using namespace std::string_view_literals;

TEST(UrlAddress, ParseDecimalAcceptsPlainDigitsInRange) {
  struct Case {
    std::string_view text;
    std::uint64_t min, max, want;
  };
  for (auto c : {Case{"0", 0, 10, 0}, Case{"10", 0, 10, 10}, Case{"007", 0, 10, 7}, Case{"65535", 0, 65535, 65535},
                 Case{"0000000000000000000000065535", 0, 65535, 65535}, Case{"1", 1, 1, 1},
                 Case{"18446744073709551615", 0, std::numeric_limits<std::uint64_t>::max(),
                      std::numeric_limits<std::uint64_t>::max()}}) {
    auto v = parse_decimal(c.text, {.what = "n", .min = c.min, .max = c.max});
    ASSERT_TRUE(v) << c.text << ": " << why(v);
    EXPECT_EQ(*v, c.want) << c.text;
  }
}

TEST(UrlAddress, ParseDecimalRejectsWrapSignsAndJunk) {
  struct Case {
    std::string_view text;
    std::uint64_t min, max;
    std::string_view mention;
  };
  for (auto c : {Case{"11", 0, 10, "n 11 outside 0..10"}, Case{"65536", 0, 65535, "outside 0..65535"},
                 Case{"4294967297", 0, 65535, "n 4294967297 outside"},
                 Case{"18446744073709551616", 0, std::numeric_limits<std::uint64_t>::max(), "outside"},
                 Case{"99999999999999999999999999999", 0, 65535, "outside 0..65535"},
                 Case{"0", 1, 10, "n 0 outside 1..10"}, Case{"", 0, 10, "n is empty"},
                 Case{"-1", 0, 10, "not a decimal number"}, Case{"+5", 0, 10, "not a decimal number"},
                 Case{"5 ", 0, 10, "'5 '"}, Case{" 5", 0, 10, "not a decimal"}, Case{"0x10", 0, 100, "'0x10'"},
                 Case{"1e3", 0, 5000, "not a decimal"}, Case{"12abc", 0, 100, "not a decimal"},
                 Case{"99999x", 0, 10, "not a decimal"}, Case{"\xd9\xa3", 0, 10, "not a decimal"}}) {
    auto v = parse_decimal(c.text, {.what = "n", .min = c.min, .max = c.max});
    expect_invalid(v, c.text, c.mention);
  }
}

// ---- unix ----

TEST(UrlAddress, UnixGoodForms) {
  struct Case {
    std::string_view text, where, name;
    bool abstract;
  };
  for (auto c : {Case{"unix:///run/app.sock", "/run/app.sock", "/run/app.sock", false},
                 Case{"unix+seq:///tmp/s", "/tmp/s", "/tmp/s", false},
                 Case{"unix:////double/slash", "//double/slash", "//double/slash", false},
                 Case{"unix:@name", "@name", "name", true}, Case{"unix+seq:@a.b-c", "@a.b-c", "a.b-c", true},
                 Case{"unix:@with@at", "@with@at", "with@at", true}}) {
    auto a = unix_address(parsed(c.text));
    ASSERT_TRUE(a) << c.text << ": " << why(a);
    EXPECT_EQ(a->where, c.where) << c.text;
    EXPECT_EQ(a->abstract, c.abstract) << c.text;
    EXPECT_EQ(a->name(), c.name) << c.text;
  }
}

TEST(UrlAddress, UnixRejectsRelativeHostsAndEmpties) {
  struct Case {
    std::string_view text, mention;
  };
  for (auto c : {Case{"unix:", "no path"}, Case{"unix:relative", "not an absolute path"},
                 Case{"unix:/one/slash", "not an absolute path"}, Case{"unix://relative", "host part 'relative' not allowed: a unix: address is local"},
                 Case{"unix://host/run/app.sock", "host part 'host'"}, Case{"unix+seq://h/p", "unix+seq:///path"},
                 Case{"unix:///", "empty path"}, Case{"unix:///tmp/dir/", "ends in '/'"},
                 Case{"unix:@", "empty abstract socket name"}, Case{"unix+seq:@", "unix+seq:@name"},
                 Case{"unix:///tmp/s?mode=0600", "unknown query key 'mode'"},
                 Case{"unix:@n?backlog=5", "unknown query key 'backlog'"}}) {
    auto a = unix_address(parsed(c.text));
    expect_invalid(a, c.text, c.mention);
  }
  // Every rejection names the URL it came from.
  auto a = unix_address(parsed("unix://host/p"));
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().detail.find("in 'unix://host/p'"), std::string::npos) << a.error().detail;
}

TEST(UrlAddress, UnixPathAndAbstractNameFitSunPath) {
  const std::string longest_path = "/" + repeat('p', kMaxUnixPath - 1);
  const std::string longest_name = repeat('n', kMaxAbstractName);
  struct Case {
    std::string text;
    bool ok;
    std::string_view mention;
  };
  for (const auto& c : {Case{"unix://" + longest_path, true, ""},
                        Case{"unix://" + longest_path + "q", false, "path of 108 bytes is longer than 107"},
                        Case{"unix+seq://" + longest_path + "q", false, "longer than 107"},
                        Case{"unix:@" + longest_name, true, ""},
                        Case{"unix:@" + longest_name + "m", false, "abstract socket name of 108 bytes is longer than 107"},
                        Case{"unix:@" + repeat('n', 4096), false, "longer than 107"}}) {
    auto a = unix_address(parsed(c.text));
    if (!c.ok) {
      expect_invalid(a, c.text, c.mention);
      continue;
    }
    ASSERT_TRUE(a) << c.text << ": " << why(a);
    // What is accepted here, the socket layer can really put in a sockaddr_un.
    auto sa = os::unix_address(a->where);
    EXPECT_TRUE(sa) << c.text << ": " << why(sa);
  }
}

TEST(UrlAddress, UnixRejectsEmbeddedNulInAUrlBuiltByHand) {
  // Url::parse refuses NUL, but a Url can also be built field by field.
  for (auto body : {"///tmp/a\0b"s, "@ab\0c"s, "///tmp/x\n"s}) {
    Url u{.scheme = "unix", .body = body};
    auto a = unix_address(u);
    expect_invalid(a, u.body, "control byte");
  }
}

// ---- tcp ----

TEST(UrlAddress, TcpGoodForms) {
  struct Case {
    std::string_view text;
    Role role;
    std::string_view host;
    std::uint16_t port;
    bool all;
  };
  for (auto c : {Case{"tcp://127.0.0.1:80", Role::connect, "127.0.0.1", 80, false},
                 Case{"tcp://localhost:65535", Role::connect, "localhost", 65535, false},
                 Case{"tcp://example.com.:443/", Role::connect, "example.com.", 443, false},
                 Case{"tcp://db_1:5432", Role::connect, "db_1", 5432, false},
                 Case{"tcp://:8080", Role::connect, "127.0.0.1", 8080, false},
                 Case{"tcp://:0", Role::listen, "127.0.0.1", 0, false},
                 Case{"tcp://127.0.0.1:0/", Role::listen, "127.0.0.1", 0, false},
                 Case{"tcp://0.0.0.0:9", Role::listen, "0.0.0.0", 9, true},
                 Case{"tcp://[::]:9", Role::listen, "::", 9, true},
                 Case{"tcp://[0:0::0]:9", Role::listen, "0:0::0", 9, true},
                 Case{"tcp://[::1]:80", Role::connect, "::1", 80, false},
                 Case{"tcp://[fe80::1%eth0]:80", Role::connect, "fe80::1%eth0", 80, false},
                 Case{"tcp://[::ffff:127.0.0.1]:1", Role::connect, "::ffff:127.0.0.1", 1, false},
                 Case{"tcp://h:000080", Role::connect, "h", 80, false}}) {
    auto a = tcp_address(parsed(c.text), c.role);
    ASSERT_TRUE(a) << c.text << ": " << why(a);
    EXPECT_EQ(a->host, c.host) << c.text;
    EXPECT_EQ(a->port, c.port) << c.text;
    EXPECT_EQ(a->all_interfaces, c.all) << c.text;
  }
}

TEST(UrlAddress, TcpPortIsDecimalInRange) {
  struct Case {
    std::string_view port;
    std::string_view mention;  // empty: accepted
  };
  for (auto c : {Case{"65535", ""}, Case{"1", ""}, Case{"0000065535", ""}, Case{"65536", "port 65536 outside 0..65535"},
                 Case{"99999", "port 99999 outside 0..65535 in 'tcp://h:99999'"},
                 Case{"4294967376", "outside 0..65535"}, Case{"18446744073709551696", "outside 0..65535"},
                 Case{"-1", "port '-1' is not a decimal number"}, Case{"+5", "'+5'"}, Case{"5 ", "'5 '"},
                 Case{" 5", "not a decimal"}, Case{"", "no port"}, Case{"http", "port 'http'"},
                 Case{"0x10", "'0x10'"}, Case{"1e3", "not a decimal"}, Case{"8o", "not a decimal"}}) {
    auto text = fmt::format("tcp://h:{}", c.port);
    for (auto role : {Role::listen, Role::connect}) {
      auto a = tcp_address(parsed(text), role);
      if (c.mention.empty()) {
        ASSERT_TRUE(a) << text << ": " << why(a);
        EXPECT_EQ(std::to_string(a->port), std::string(c.port).erase(0, c.port.find_first_not_of('0')));
      } else {
        expect_invalid(a, text, c.mention);
      }
    }
  }
}

TEST(UrlAddress, TcpPortZeroOnlyWhenListening) {
  for (std::string_view text : {"tcp://:0"sv, "tcp://127.0.0.1:0"sv, "tcp://[::1]:000"sv}) {
    auto l = tcp_address(parsed(text), Role::listen);
    ASSERT_TRUE(l) << text << ": " << why(l);
    EXPECT_EQ(l->port, 0);
    auto c = tcp_address(parsed(text), Role::connect);
    expect_invalid(c, text, "port 0 picks a free port when listening; connect needs a port");
  }
}

TEST(UrlAddress, TcpEmptyHostIsLoopbackNotAllInterfaces) {
  auto a = tcp_address(parsed("tcp://:7"), Role::listen);
  ASSERT_TRUE(a) << why(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_FALSE(a->all_interfaces);
}

TEST(UrlAddress, TcpRejectsBadHostsAndShapes) {
  struct Case {
    std::string_view text, mention;
  };
  for (auto c : {Case{"tcp:h:80", "expected tcp://host:port"}, Case{"tcp://h", "no port"}, Case{"tcp://h:", "no port"},
                 Case{"tcp://", "no port"}, Case{"tcp://h:80/x", "path '/x' not allowed"},
                 Case{"tcp://h:80//", "path '/' not allowed"}, Case{"tcp://::1:80", "needs brackets: tcp://[::1]:80"},
                 Case{"tcp://::1", "needs brackets: tcp://[::1]:PORT"}, Case{"tcp://fe80::1", "needs brackets"},
                 Case{"tcp://[::1:80", "'[' without ']'"}, Case{"tcp://[::1]", "no port"},
                 Case{"tcp://[::1]80", "after ']'"}, Case{"tcp://[]:80", "empty IPv6 address"},
                 Case{"tcp://[zz::1]:80", "'zz::1' is not an IPv6 address"},
                 Case{"tcp://[127.0.0.1]:80", "not an IPv6 address"}, Case{"tcp://[fe80::1%]:80", "bad zone"},
                 Case{"tcp://[fe80::1%a/b]:80", "not allowed"},
                 Case{"tcp://*:80", "0.0.0.0 or [::]"}, Case{"tcp://a b:80", "character ' ' not allowed"},
                 Case{"tcp://user@h:80", "character '@' not allowed"}, Case{"tcp://h%20:80", "character '%'"},
                 Case{"tcp://a..b:80", "empty label"}, Case{"tcp://.a:80", "empty label"},
                 Case{"tcp://.:80", "empty label"},
                 Case{"tcp://256.1.1.1:80", "'256.1.1.1' is not an IPv4 address"},
                 Case{"tcp://127.1:80", "not an IPv4 address"}, Case{"tcp://2130706433:80", "not an IPv4 address"},
                 Case{"tcp://0x7f.0.0.1:80", "not an IPv4 address"}, Case{"tcp://a.0x7f:80", "not an IPv4"},
                 Case{"tcp://010.0.0.1:80", "no leading zeros"}, Case{"tcp://1.2.3.4.5:80", "not an IPv4"},
                 Case{"tcp://h:80?nodelay=1", "unknown query key 'nodelay' (tcp: takes no query parameters)"}}) {
    auto a = tcp_address(parsed(c.text), Role::connect);
    expect_invalid(a, c.text, c.mention);
  }
}

TEST(UrlAddress, TcpHostLengthLimits) {
  const std::string label63 = repeat('a', 63);
  const std::string host253 = label63 + "." + label63 + "." + label63 + "." + repeat('b', 61);  // 253 bytes
  ASSERT_EQ(host253.size(), 253u);
  struct Case {
    std::string host;
    std::string_view mention;  // empty: accepted
  };
  for (const auto& c : {Case{label63, ""}, Case{host253, ""}, Case{host253 + ".", ""},
                        Case{repeat('a', 64), "longer than 63"}, Case{host253 + "c", "254 bytes is longer than 253"},
                        Case{repeat('a', 5000), "longer than 253"}}) {
    auto text = fmt::format("tcp://{}:80", c.host);
    auto a = tcp_address(parsed(text), Role::connect);
    if (c.mention.empty()) {
      ASSERT_TRUE(a) << c.host.size() << ": " << why(a);
      EXPECT_EQ(a->host, c.host);
    } else {
      expect_invalid(a, text, c.mention);
    }
  }
}

// ---- signal ----

std::optional<long> read_pid_max() {
  std::ifstream f("/proc/sys/kernel/pid_max");
  long v = 0;
  if (f >> v) return v;
  return std::nullopt;
}

TEST(UrlAddress, SignalGoodForms) {
  const int max_offset = SIGRTMAX - SIGRTMIN;
  struct Case {
    std::string text;
    Role role;
    bool self;
    pid_t pid;
    int offset;
  };
  for (const auto& c : {Case{"signal://self", Role::connect, true, ::getpid(), kDefaultSignalOffset},
                        Case{"signal://self", Role::listen, true, ::getpid(), kDefaultSignalOffset},
                        Case{"signal:", Role::listen, true, ::getpid(), kDefaultSignalOffset},
                        Case{"signal://", Role::listen, true, ::getpid(), kDefaultSignalOffset},
                        Case{"signal://1", Role::connect, false, 1, kDefaultSignalOffset},
                        Case{"signal://0001?sig=0", Role::connect, false, 1, 0},
                        Case{fmt::format("signal://{}?sig=2", ::getpid()), Role::connect, false, ::getpid(), 2},
                        Case{fmt::format("signal://self?sig={}", max_offset), Role::listen, true, ::getpid(),
                             max_offset},
                        Case{"signal://self?sig=007", Role::connect, true, ::getpid(), 7}}) {
    auto t = signal_target(parsed(c.text), c.role);
    ASSERT_TRUE(t) << c.text << ": " << why(t);
    EXPECT_EQ(t->self, c.self) << c.text;
    EXPECT_EQ(t->pid, c.pid) << c.text;
    EXPECT_EQ(t->offset, c.offset) << c.text;
    // The offset always names a real-time signal.
    auto sig = transport_signal(t->offset);
    EXPECT_TRUE(sig) << c.text << ": " << why(sig);
  }
}

TEST(UrlAddress, SignalRejectsPidsThatWrapOrAreNotPids) {
  struct Case {
    std::string_view text, mention;
  };
  // 4294967297 would become pid 1 through a cast to pid_t; 2147483648 would become negative
  // (kill(-N) signals a process group); 0 and -1 mean "my group" and "everyone" to kill(2).
  for (auto c : {Case{"signal://4294967297", "pid 4294967297 outside 1..2147483647"},
                 Case{"signal://2147483648", "pid 2147483648 outside 1..2147483647"},
                 Case{"signal://18446744073709551617", "outside 1..2147483647"},
                 Case{"signal://0", "pid 0 outside 1..2147483647"}, Case{"signal://-1", "pid '-1' is not a decimal"},
                 Case{"signal://+1", "pid '+1'"}, Case{"signal://12abc", "pid '12abc' is not a decimal"},
                 Case{"signal://%201", "not a decimal"}, Case{"signal://1 ", "pid '1 '"},
                 Case{"signal://0x10", "not a decimal"}, Case{"signal://1/", "not a decimal"},
                 Case{"signal:///1", "not a decimal"}, Case{"signal://", "no target"}, Case{"signal:", "no target"},
                 Case{"signal://SELF", "not a decimal"}}) {
    auto t = signal_target(parsed(c.text), Role::connect);
    expect_invalid(t, c.text, c.mention);
  }
}

TEST(UrlAddress, SignalOffsetStaysInRealTimeRange) {
  const auto range = fmt::format("0..{}", SIGRTMAX - SIGRTMIN);
  struct Case {
    std::string text;
    std::string mention;
  };
  for (const auto& c : {Case{"signal://self?sig=99", "sig 99 outside " + range},
                        Case{fmt::format("signal://self?sig={}", SIGRTMAX - SIGRTMIN + 1), "outside " + range},
                        Case{"signal://self?sig=4294967300", "outside " + range},
                        Case{"signal://self?sig=-1", "sig '-1' is not a decimal number in " + range},
                        Case{"signal://self?sig=", "sig is empty"}, Case{"signal://self?sig", "sig is empty"},
                        Case{"signal://self?sig=+1", "not a decimal"}, Case{"signal://self?sig=SIGUSR1", "not a decimal"},
                        Case{"signal://1?sig=0x2", "not a decimal"}}) {
    for (auto role : {Role::listen, Role::connect}) {
      auto t = signal_target(parsed(c.text), role);
      expect_invalid(t, c.text, c.mention);
      if (!t) {
        EXPECT_NE(t.error().detail.find("SIGRTMIN"), std::string::npos) << t.error().detail;
      }
    }
  }
}

TEST(UrlAddress, SignalListensOnlyAsSelf) {
  for (std::string_view text : {"signal://1"sv, "signal://1234?sig=1"sv, "signal://me"sv}) {
    auto t = signal_target(parsed(text), Role::listen);
    expect_invalid(t, text, "listens as signal://self");
  }
}

TEST(UrlAddress, SignalPidAboveKernelPidMax) {
  auto pid_max = read_pid_max();
  if (!pid_max) GTEST_SKIP() << "/proc/sys/kernel/pid_max is not readable here";
  auto last = fmt::format("signal://{}", *pid_max - 1);
  auto ok = signal_target(parsed(last), Role::connect);
  ASSERT_TRUE(ok) << last << ": " << why(ok);
  EXPECT_EQ(ok->pid, *pid_max - 1);
  for (long pid : {*pid_max, *pid_max + 1, long{std::numeric_limits<pid_t>::max()}}) {
    if (pid < *pid_max) continue;  // a kernel whose pid_max is the pid_t maximum
    auto text = fmt::format("signal://{}", pid);
    auto t = signal_target(parsed(text), Role::connect);
    expect_invalid(t, text, fmt::format("pid {} outside 1..{} (kernel.pid_max is {})", pid, *pid_max - 1, *pid_max));
  }
}

// ---- pipe ----

TEST(UrlAddress, PipeFdsFromUrlEnvAndDefaults) {
  struct Case {
    std::string_view text;
    const char* env;
    int read_fd, write_fd;
  };
  for (auto c : {Case{"pipe:", nullptr, 0, 1}, Case{"pipe://", nullptr, 0, 1}, Case{"pipe:", "3,4", 3, 4},
                 Case{"pipe:?rfd=5", "3,4", 5, 4}, Case{"pipe:?wfd=6", "3,4", 3, 6}, Case{"pipe:?rfd=5", nullptr, 5, 1},
                 Case{"pipe:?rfd=5&wfd=6", nullptr, 5, 6},
                 // Both given: the environment is not consulted, so junk in it does not matter.
                 Case{"pipe:?rfd=5&wfd=6", "junk", 5, 6}, Case{"pipe:?rfd=007&wfd=0", nullptr, 7, 0},
                 Case{"pipe:?rfd=2147483647&wfd=2147483647", nullptr, 2147483647, 2147483647},
                 Case{"pipe:", "2147483647,0", 2147483647, 0}, Case{"pipe:", "9,9", 9, 9}}) {
    auto f = pipe_fds(parsed(c.text), c.env);
    ASSERT_TRUE(f) << c.text << " env " << (c.env ? c.env : "(unset)") << ": " << why(f);
    EXPECT_EQ(f->read_fd, c.read_fd) << c.text;
    EXPECT_EQ(f->write_fd, c.write_fd) << c.text;
  }
}

TEST(UrlAddress, PipeFdsRejectsOverflowAndJunkInUrl) {
  struct Case {
    std::string_view text, mention;
  };
  for (auto c : {Case{"pipe:?rfd=2147483648", "rfd 2147483648 outside 0..2147483647"},
                 Case{"pipe:?wfd=4294967297", "wfd 4294967297 outside 0..2147483647"},
                 Case{"pipe:?rfd=99999999999999999999999", "outside 0..2147483647"},
                 Case{"pipe:?rfd=-1", "rfd '-1' is not a decimal"}, Case{"pipe:?wfd=+1", "wfd '+1'"},
                 Case{"pipe:?rfd=", "rfd is empty"}, Case{"pipe:?rfd=0x3", "not a decimal"},
                 Case{"pipe:?rfd=3%20", "not a decimal"}, Case{"pipe:/dev/fd/3", "pipe: takes no path"},
                 Case{"pipe:///x", "pipe: takes no path"}, Case{"pipe:3,4", "takes no path"},
                 Case{"pipe:?fd=3", "unknown query key 'fd' (pipe: takes only rfd, wfd)"}}) {
    auto f = pipe_fds(parsed(c.text), nullptr);
    expect_invalid(f, c.text, c.mention);
  }
}

TEST(UrlAddress, PipeFdsRejectsMalformedEnvironment) {
  struct Case {
    const char* env;
    std::string_view mention;
  };
  for (auto c : {Case{"3", "no ','"}, Case{"a,b", "read fd 'a' is not a decimal"}, Case{"3,b", "write fd 'b'"},
                 Case{"3,", "write fd is empty"}, Case{",4", "read fd is empty"}, Case{"", "no ','"},
                 Case{"3,4,5", "write fd '4,5'"}, Case{" 3,4", "read fd ' 3'"}, Case{"3,4 ", "'4 '"},
                 Case{"3;4", "no ','"}, Case{"2147483648,4", "read fd 2147483648 outside 0..2147483647"},
                 Case{"-1,1", "not a decimal"}, Case{"3,4\n", "4\\x0a"}}) {
    // Consulted whenever the URL leaves one descriptor to it.
    for (std::string_view text : {"pipe:"sv, "pipe:?rfd=3"sv, "pipe:?wfd=4"sv}) {
      auto f = pipe_fds(parsed(text), c.env);
      expect_invalid(f, c.env, "IPCX_PIPE_FDS");
      expect_invalid(f, c.env, c.mention);
    }
  }
}

// ---- fifo ----

TEST(UrlAddress, FifoPathGoodForms) {
  for (auto [text, want] : {std::pair{"fifo:///tmp/f"sv, "/tmp/f"sv}, std::pair{"fifo:///a"sv, "/a"sv},
                            std::pair{"fifo:///tmp/dir/x.y"sv, "/tmp/dir/x.y"sv},
                            std::pair{"fifo:///tmp/with space"sv, "/tmp/with space"sv}}) {
    auto p = fifo_path(parsed(text));
    ASSERT_TRUE(p) << text << ": " << why(p);
    EXPECT_EQ(*p, want);
  }
}

TEST(UrlAddress, FifoPathRejectsRelativeHostsAndQueries) {
  struct Case {
    std::string_view text, mention;
  };
  for (auto c : {Case{"fifo:", "no path (fifo:///path)"}, Case{"fifo:tmp", "'tmp' is not an absolute path"},
                 Case{"fifo:/tmp/f", "not an absolute path (fifo:///path)"},
                 Case{"fifo://tmp/f", "host part 'tmp' not allowed"}, Case{"fifo://host", "host part 'host'"},
                 Case{"fifo:///", "empty path"}, Case{"fifo:///tmp/d/", "ends in '/'"},
                 Case{"fifo:///tmp/f?mode=0600", "unknown query key 'mode' (fifo: takes no query parameters)"}}) {
    auto p = fifo_path(parsed(c.text));
    expect_invalid(p, c.text, c.mention);
  }
}

TEST(UrlAddress, FifoPathLeavesRoomForItsBackTwin) {
  // PATH.back must fit in PATH_MAX (4096 with its NUL), and its last component in NAME_MAX.
  auto deep = [](std::size_t size) {  // an absolute path of `size` bytes made of 200-byte components
    std::string p;
    while (p.size() < size) p += "/" + repeat('d', std::min<std::size_t>(200, size - p.size() - 1));
    return p;
  };
  struct Case {
    std::string path;
    std::string_view mention;  // empty: accepted
  };
  for (const auto& c : {Case{deep(4090), ""}, Case{deep(4091), "path of 4091 bytes is longer than 4090"},
                        Case{deep(5000), "longer than 4090"}, Case{"/tmp/" + repeat('f', 250), ""},
                        Case{"/tmp/" + repeat('f', 251), "file name of 251 bytes is longer than 250"}}) {
    ASSERT_FALSE(c.path.ends_with('/')) << c.path.size();  // a bad fixture, not the limit under test
    auto text = "fifo://" + c.path;
    auto p = fifo_path(parsed(text));
    if (c.mention.empty()) {
      ASSERT_TRUE(p) << c.path.size() << ": " << why(p);
      EXPECT_EQ(*p, c.path);
    } else {
      expect_invalid(p, text.substr(0, 40), c.mention);
    }
  }
}

TEST(UrlAddress, FifoPathRejectsEmbeddedNulInAUrlBuiltByHand) {
  Url u{.scheme = "fifo", .body = "///tmp/f\0.sock"s};
  auto p = fifo_path(u);
  expect_invalid(p, u.body, "control byte 0x00 at offset 6 of the path");
  // The same bytes through Url::parse never get this far.
  auto text = "fifo:///tmp/f\0.sock"s;
  expect_invalid(Url::parse(text), text, "control byte 0x00");
}

// ---- every scheme ----

TEST(UrlAddress, EverySchemeRejectsUnknownQueryKeys) {
  struct Case {
    std::string_view text;
    std::function<Result<void>(const Url&)> check;
    std::string_view mention;
  };
  auto ignore = [](auto r) { return r ? Result<void>() : std::unexpected(r.error()); };
  for (const auto& c : {
           Case{"unix:///tmp/s?x=1", [&](const Url& u) { return ignore(unix_address(u)); }, "unknown query key 'x'"},
           Case{"unix+seq:///tmp/s?x", [&](const Url& u) { return ignore(unix_address(u)); }, "'x'"},
           Case{"unix:@n?x=1", [&](const Url& u) { return ignore(unix_address(u)); }, "'x'"},
           Case{"tcp://h:1?timeout=5", [&](const Url& u) { return ignore(tcp_address(u, Role::connect)); },
                "unknown query key 'timeout'"},
           Case{"tcp://:0?reuse", [&](const Url& u) { return ignore(tcp_address(u, Role::listen)); }, "'reuse'"},
           Case{"signal://self?signal=3", [&](const Url& u) { return ignore(signal_target(u, Role::listen)); },
                "unknown query key 'signal' (signal: takes only sig)"},
           Case{"signal://1?sig=1&value=2", [&](const Url& u) { return ignore(signal_target(u, Role::connect)); },
                "'value'"},
           Case{"pipe:?rfd=3&wfd=4&nonblock", [&](const Url& u) { return ignore(pipe_fds(u, nullptr)); },
                "unknown query key 'nonblock'"},
           Case{"fifo:///tmp/f?back=/tmp/g", [&](const Url& u) { return ignore(fifo_path(u)); }, "'back'"}}) {
    expect_invalid(c.check(parsed(c.text)), c.text, c.mention);
  }
}

TEST(UrlAddress, EachFunctionChecksItsScheme) {
  expect_invalid(unix_address(parsed("fifo:///tmp/f")), "fifo:///tmp/f", "scheme 'fifo' is not unix or unix+seq");
  expect_invalid(tcp_address(parsed("unix:///tmp/s"), Role::connect), "unix:///tmp/s", "is not tcp");
  expect_invalid(signal_target(parsed("tcp://h:1"), Role::connect), "tcp://h:1", "is not signal");
  expect_invalid(pipe_fds(parsed("fifo:///x"), nullptr), "fifo:///x", "is not pipe");
  expect_invalid(fifo_path(parsed("unix:///x")), "unix:///x", "is not fifo");
}

}  // namespace
}  // namespace ipcx::transport
