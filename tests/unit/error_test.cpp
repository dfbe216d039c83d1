// The error model: Errc names, errno mapping, Error::message().
#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include <ipcx/error.hpp>

#include "unit/support.hpp"

namespace ipcx {
namespace {

TEST(Error, EveryCodeHasAName) {
  for (int c = static_cast<int>(Errc::timeout); c <= static_cast<int>(Errc::system); ++c) {
    auto s = to_string(static_cast<Errc>(c));
    EXPECT_FALSE(s.empty());
    EXPECT_NE(s, "unknown error") << c;
  }
  EXPECT_EQ(to_string(static_cast<Errc>(999)), "unknown error");
  EXPECT_EQ(to_string(Errc::timeout), "timed out");
  EXPECT_EQ(to_string(Errc::too_large), "message too large");
}

TEST(Error, MessageHasOpDescriptionDetailAndStrerror) {
  Error e{Errc::not_found, ENOENT, "open", "/tmp/x"};
  auto m = e.message();
  EXPECT_EQ(m, std::string("open: not found (/tmp/x): ") + std::strerror(ENOENT));
}

TEST(Error, MessageOmitsWhatIsMissing) {
  EXPECT_EQ((Error{Errc::timeout, 0, "recv", ""}).message(), "recv: timed out");
  EXPECT_EQ((Error{Errc::closed, 0, "", ""}).message(), "connection closed");
  EXPECT_EQ((Error{Errc::protocol, 0, nullptr, "bad magic"}).message(), "protocol error (bad magic)");
  EXPECT_EQ((Error{Errc::system, EIO, "write", ""}).message(), std::string("write: system error: ") + std::strerror(EIO));
}

TEST(Error, FailBuilders) {
  auto f = fail(Errc::invalid_argument, "op", "why");
  EXPECT_EQ(f.error().code, Errc::invalid_argument);
  EXPECT_EQ(f.error().sys_errno, 0);
  EXPECT_STREQ(f.error().op, "op");
  EXPECT_EQ(f.error().detail, "why");
  auto g = fail_errno(ECONNREFUSED, "connect", "/p");
  EXPECT_EQ(g.error().code, Errc::connection_refused);
  EXPECT_EQ(g.error().sys_errno, ECONNREFUSED);
  EXPECT_NE(g.error().message().find("/p"), std::string::npos);
  Result<int> r = fail(Errc::timeout, "x");
  EXPECT_FALSE(r);
}

TEST(Error, ErrnoMapping) {
  struct Case {
    int err;
    Errc code;
  };
  for (auto c : {Case{ETIMEDOUT, Errc::timeout}, Case{EAGAIN, Errc::would_block}, Case{EPIPE, Errc::closed},
                 Case{ECONNRESET, Errc::closed}, Case{ENOTCONN, Errc::closed}, Case{ECONNREFUSED, Errc::connection_refused},
                 Case{ENXIO, Errc::connection_refused}, Case{EADDRINUSE, Errc::address_in_use},
                 Case{EINVAL, Errc::invalid_argument}, Case{EBADF, Errc::invalid_argument},
                 Case{EMSGSIZE, Errc::too_large}, Case{EACCES, Errc::permission_denied},
                 Case{EPERM, Errc::permission_denied}, Case{ENOENT, Errc::not_found}, Case{ESRCH, Errc::not_found},
                 Case{EOPNOTSUPP, Errc::not_supported}, Case{EIO, Errc::system}, Case{ENOMEM, Errc::resource_exhausted}, Case{EMFILE, Errc::resource_exhausted}}) {
    EXPECT_EQ(errc_from_errno(c.err), c.code) << std::strerror(c.err);
  }
}

}  // namespace
}  // namespace ipcx
