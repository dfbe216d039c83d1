// Shared by the pattern tests: scratch URLs, the accounting identity, a peer process.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include <ipcx/pubsub.hpp>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"


namespace ipcx::test {

// The identity every endpoint keeps: each message sent is delivered, dropped or queued.
inline void expect_exact(const Counters& c, const char* where) {
  EXPECT_EQ(c.sent, c.delivered + c.dropped.total() + c.queued)
      << where << ": sent " << c.sent << " delivered " << c.delivered << " dropped " << c.dropped.total()
      << " queued " << c.queued;
}

// A URL for `scheme` in `dir` (unix, unix+seq), on a kernel-chosen loopback port (tcp) or with
// a fresh queue name or key (mq, sysv).
inline std::string url_for(const std::string& scheme, const ScratchDir& dir, const std::string& name) {
  if (scheme == "tcp") return "tcp://127.0.0.1:0";
  if (scheme == "mq") return mq_test_url();
  if (scheme == "sysv") return sysv_test_url();
  return scheme + "://" + dir.file(name);
}

// A subscriber or worker process (tests/patterns/pattern_peer.cpp).
inline Child peer(std::vector<std::string> args) {
  args.insert(args.begin(), IPCX_PATTERN_PEER);
  return Child::start(std::move(args));
}

// Parses the number after `word ` in `line`.
inline unsigned long long field(const std::string& text, const std::string& word) {
  auto at = text.find(word + " ");
  if (at == std::string::npos) return ~0ull;
  return std::stoull(text.substr(at + word.size() + 1));
}

}  // namespace ipcx::test
