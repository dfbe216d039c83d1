// Url::parse: the shape of every transport URL, and what it refuses.
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

TEST(Url, SchemeBodyAndQuery) {
  auto u = Url::parse("unix+seq:///run/app.sock?mode=0600&flag");
  ASSERT_TRUE(u) << why(u);
  EXPECT_EQ(u->scheme, "unix+seq");
  EXPECT_EQ(u->body, "///run/app.sock");
  ASSERT_EQ(u->query.size(), 2u);
  EXPECT_EQ(u->query.at("mode"), "0600");
  EXPECT_EQ(u->query.at("flag"), "");
  EXPECT_EQ(u->authority_and_path(), "/run/app.sock");
}

TEST(Url, FormsOfEveryTransport) {
  struct Case {
    const char* text;
    const char* scheme;
    const char* body;
  };
  for (auto c : {Case{"pipe:", "pipe", ""}, Case{"pipe:?rfd=3&wfd=4", "pipe", ""},
                 Case{"fifo:///tmp/f", "fifo", "///tmp/f"}, Case{"unix:@name", "unix", "@name"},
                 Case{"tcp://127.0.0.1:0", "tcp", "//127.0.0.1:0"}, Case{"tcp://[::1]:80", "tcp", "//[::1]:80"},
                 Case{"signal://1234?sig=2", "signal", "//1234"}, Case{"mq:///jobs", "mq", "///jobs"},
                 Case{"x-y.z:body", "x-y.z", "body"}}) {
    auto u = Url::parse(c.text);
    ASSERT_TRUE(u) << c.text << ": " << why(u);
    EXPECT_EQ(u->scheme, c.scheme) << c.text;
    EXPECT_EQ(u->body, c.body) << c.text;
  }
  auto sig = Url::parse("signal://1234?sig=2");
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->authority_and_path(), "1234");
  EXPECT_EQ(sig->query.at("sig"), "2");
  auto abs = Url::parse("unix:@name");
  ASSERT_TRUE(abs);
  EXPECT_EQ(abs->authority_and_path(), "@name");
}

TEST(Url, Rejects) {
  for (const char* bad : {"", "nocolon", ":///x", "UNIX:///x", "un ix:///x", "unix/x:y", "tcp://h:1?=v",
                          "tcp://h:1?a&&b", "tcp://h:1?&"}) {
    auto u = Url::parse(bad);
    ASSERT_FALSE(u) << "'" << bad << "' was accepted";
    EXPECT_EQ(u.error().code, Errc::invalid_url) << bad;
    EXPECT_FALSE(u.error().message().empty());
  }
  auto u = Url::parse("nocolon");
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().message().find("nocolon"), std::string::npos) << u.error().message();
  EXPECT_NE(u.error().message().find("scheme"), std::string::npos) << u.error().message();
}

TEST(Url, FilePath) {
  auto ok = Url::parse("fifo:///tmp/dir/f");
  ASSERT_TRUE(ok);
  auto p = ok->file_path();
  ASSERT_TRUE(p) << why(p);
  EXPECT_EQ(*p, "/tmp/dir/f");
  for (const char* bad : {"fifo://tmp/f", "fifo:/tmp/f", "fifo:tmp", "fifo:///", "fifo:"}) {
    auto u = Url::parse(bad);
    ASSERT_TRUE(u) << bad;
    auto fp = u->file_path();
    ASSERT_FALSE(fp) << bad << " gave " << *fp;
    EXPECT_EQ(fp.error().code, Errc::invalid_url) << bad;
  }
  auto rel = Url::parse("unix://relative");
  ASSERT_TRUE(rel);
  auto fp = rel->file_path();
  ASSERT_FALSE(fp);
  EXPECT_NE(fp.error().message().find("unix:///path"), std::string::npos) << fp.error().message();
}

TEST(Url, StrRoundTrips) {
  for (const char* text : {"pipe:", "unix:///a/b", "unix:@x", "tcp://127.0.0.1:9", "pipe:?rfd=3&wfd=4",
                           "signal://self?sig=4", "x:y?flag"}) {
    auto u = Url::parse(text);
    ASSERT_TRUE(u) << text;
    EXPECT_EQ(u->str(), text);
    auto again = Url::parse(u->str());
    ASSERT_TRUE(again);
    EXPECT_EQ(again->scheme, u->scheme);
    EXPECT_EQ(again->body, u->body);
    EXPECT_EQ(again->query, u->query);
  }
}

// ---- Url::parse hardening ----

TEST(Url, RejectsControlBytesAnywhere) {
  // Built with their full length: a NUL inside must not end the URL early.
  const std::string nul_in_path = "unix:///tmp/a\0b.sock"s;
  const std::string nul_in_scheme = "un\0ix:///x"s;
  const std::string nul_in_query = "pipe:?rfd=3\0&wfd=4"s;
  const std::string nul_at_end = "fifo:///tmp/f\0"s;
  for (std::string_view bad : {std::string_view(nul_in_path), std::string_view(nul_in_scheme),
                               std::string_view(nul_in_query), std::string_view(nul_at_end), "unix:///tmp/a\nb"sv,
                               "tcp://h:1\r"sv, "fifo:///tmp/\tf"sv, "unix:@a\x7f"sv, "x:y?k=\x1f"sv, "\x01x:y"sv}) {
    auto u = Url::parse(bad);
    expect_invalid(u, bad, "control byte");
  }
  auto u = Url::parse(nul_in_path);
  ASSERT_FALSE(u);
  // Offset and escaped byte point at the culprit; the message itself holds no raw NUL.
  EXPECT_NE(u.error().detail.find("0x00 at offset 13"), std::string::npos) << u.error().detail;
  EXPECT_NE(u.error().detail.find("/tmp/a\\x00b.sock"), std::string::npos) << u.error().detail;
  EXPECT_EQ(u.error().message().find('\0'), std::string::npos);
}

TEST(Url, KeepsSpacesAndNonAsciiBytes) {
  // Only control bytes are refused: paths may hold spaces and UTF-8.
  for (std::string_view ok : {"unix:///tmp/my app.sock"sv, "fifo:///tmp/caf\xc3\xa9"sv}) {
    auto u = Url::parse(ok);
    ASSERT_TRUE(u) << ok << ": " << why(u);
    EXPECT_EQ(u->scheme + ":" + u->body, ok);
  }
}

TEST(Url, RejectsRepeatedQueryKeys) {
  for (std::string_view bad : {"signal://self?sig=1&sig=2"sv, "pipe:?rfd=3&wfd=4&rfd=5"sv, "x:y?a&a"sv,
                               "x:y?a=&a=1"sv}) {
    auto u = Url::parse(bad);
    expect_invalid(u, bad, "given twice");
  }
  auto u = Url::parse("signal://self?sig=1&sig=2");
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().detail.find("'sig'"), std::string::npos) << u.error().detail;
}

TEST(Url, RejectsEmptyQueryKeys) {
  for (std::string_view bad : {"x:y?=1"sv, "x:y?a=1&"sv, "x:y?a=1&&b"sv, "x:y?&a=1"sv, "x:y?&"sv, "x:y?a=1&=2"sv}) {
    auto u = Url::parse(bad);
    expect_invalid(u, bad, "empty query key");
  }
  // A lone '?' is no query at all, as before.
  auto u = Url::parse("pipe:?");
  ASSERT_TRUE(u) << why(u);
  EXPECT_TRUE(u->query.empty());
  EXPECT_EQ(u->body, "");
}

// ---- parse_decimal ----
}  // namespace
}  // namespace ipcx::transport
