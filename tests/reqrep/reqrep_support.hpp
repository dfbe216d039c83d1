// Shared by the request/reply and survey tests: the table of transports, a replier served
// from a thread, raw pattern messages.
#pragma once

#include <cstring>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <ipcx/reqrep.hpp>

#include "messaging/reqrep_wire.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx::test {

// Every transport the patterns run over: one line adds one.
struct Transport {
  const char* name;
  std::function<std::string(const ScratchDir&)> url;
  bool verified_peer = true;              // Capabilities::verified_peer
  std::size_t largest = 64 * 1024 * 1024;  // the largest message its URL carries
};

inline const std::vector<Transport>& transports() {
  static const std::vector<Transport> all = {
      {"unix", [](const ScratchDir& d) { return "unix://" + d.file("s.sock"); }},
      {"unix_seq", [](const ScratchDir& d) { return "unix+seq://" + d.file("s.sock"); }},
      {"tcp", [](const ScratchDir&) { return std::string("tcp://127.0.0.1:0"); }, false},
      {"mq", [](const ScratchDir&) { return mq_test_url(4096); }, false, 4096},
      // kernel.msgmax's default 8192, less the kind byte sysv:// adds (docs/sysv.md).
      {"sysv", [](const ScratchDir&) { return sysv_test_url(); }, false, 8191},
  };
  return all;
}

inline std::string transport_name(const ::testing::TestParamInfo<Transport>& i) { return i.param.name; }

// A replier whose loop runs on a thread of its own; on_loop runs a function there and returns
// its result (the replier's state is loop-thread only).
class Running {
 public:
  explicit Running(Replier r) : rep_(std::move(r)), thread_([this] { (void)rep_.run(); }) {}
  ~Running() {
    rep_.stop();
    thread_.join();
  }
  template <class F>
  auto on_loop(F f) {
    std::promise<decltype(f())> p;
    auto fut = p.get_future();
    rep_.post([&] { p.set_value(f()); });
    return fut.get();
  }
  Counters stats() { return on_loop([this] { return rep_.stats(); }); }
  ServerStats server_stats() { return on_loop([this] { return rep_.server_stats(); }); }
  Replier& rep() { return rep_; }
  std::string url() const { return rep_.url(); }

 private:
  Replier rep_;
  std::thread thread_;
};

// Every request is, at any time, exactly one of answered, dropped or still held.
inline void expect_balanced_replier(const Counters& c) {
  EXPECT_EQ(c.received, c.delivered + c.dropped.total() + c.queued) << to_json(c);
}
inline void expect_balanced(const Counters& c) {
  EXPECT_EQ(c.sent, c.delivered + c.dropped.total() + c.queued) << to_json(c);
}

// A request as the wire carries it, for clients that misbehave on purpose.
inline std::vector<std::byte> raw_request(std::uint64_t id, std::string_view payload,
                                          std::uint64_t remaining_us = messaging::rr::kNoDeadline) {
  std::vector<std::byte> out;
  messaging::rr::encode_ask(out, messaging::Kind::request, id, remaining_us, as_bytes(payload));
  return out;
}

}  // namespace ipcx::test
