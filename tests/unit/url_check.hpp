// Shared by the URL and address tests: how a rejection must look, and parsing a good URL.
#pragma once

#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "transport/url.hpp"

namespace ipcx::transport::test_url {

// A failed address must say what was wrong and where: invalid_url, op "parse URL", and a
// detail that names `mention` (the value, its range, or the form to use).
template <class T>
void expect_invalid(const Result<T>& r, std::string_view input, std::string_view mention) {
  if (r) {
    ADD_FAILURE() << "'" << printable(input) << "' was accepted";
    return;
  }
  EXPECT_EQ(r.error().code, Errc::invalid_url) << printable(input) << ": " << r.error().message();
  EXPECT_STREQ(r.error().op, "parse URL") << printable(input);
  EXPECT_NE(r.error().detail.find(mention), std::string::npos)
      << "'" << printable(input) << "': detail '" << r.error().detail << "' does not mention '" << mention << "'";
}

// The Url of `text`, which must parse (address tests start from a well-formed URL).
inline Url parsed(std::string_view text) {
  auto u = Url::parse(text);
  if (!u) {
    ADD_FAILURE() << "'" << printable(text) << "' did not parse: " << u.error().message();
    return {};
  }
  return *u;
}

inline std::string repeat(char c, std::size_t n) { return std::string(n, c); }
}  // namespace ipcx::transport::test_url
