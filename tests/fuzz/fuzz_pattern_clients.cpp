// The connecting pattern endpoints (Subscriber, Puller, Requester, Respondent) and Channel read
// whatever the bound side sends. Each input is one hostile server: its first byte picks the
// client, the rest is a series of messages (a length byte, then up to that many bytes) that a
// real unix:@ listener writes to that client, which then receives until it fails or runs dry.
// A bad message must end in an error, never in a crash, a hang or an unbounded wait.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

#include <unistd.h>

#include <ipcx/ipcx.hpp>

namespace {

using namespace std::chrono_literals;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_pattern_clients: %s\n", what);
    std::abort();
  }
}

ipcx::Listener& listener() {
  static ipcx::Listener* l = [] {
    auto r = ipcx::listen("unix:@ipcx-fuzz-clients-" + std::to_string(::getpid()));
    check(r.has_value(), "could not listen");
    return new ipcx::Listener(std::move(*r));
  }();
  return *l;
}

// Writes the input's messages from the server side of the conversation, then closes it.
void play(std::span<const std::byte> rest) {
  auto server = listener().accept(1s);
  check(server.has_value(), "accept failed");
  while (!rest.empty()) {
    const std::size_t n = std::min<std::size_t>(std::to_integer<std::size_t>(rest[0]), rest.size() - 1);
    if (!server->send(rest.subspan(1, n), 100ms)) break;
    rest = rest.subspan(1 + n);
  }
  server->close();
}

constexpr int kMaxReads = 64;  // every message is read once at most; the close ends the rest

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto url = listener().url();
  std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  const std::byte ask[] = {std::byte{'?'}};
  switch (data[0] % 5) {
    case 0: {
      auto sub = ipcx::Subscriber::connect(url, {""}, {}, 1s);
      check(sub.has_value(), "subscriber connect failed");
      play(rest);
      ipcx::Publication p;
      for (int i = 0; i < kMaxReads && sub->recv(p, 10ms); ++i) {
      }
      break;
    }
    case 1: {
      auto pull = ipcx::Puller::connect(url, {}, 1s);
      check(pull.has_value(), "puller connect failed");
      play(rest);
      for (int i = 0; i < kMaxReads && pull->pull(10ms); ++i) {
      }
      break;
    }
    case 2: {
      auto req = ipcx::Requester::connect(url, {}, 1s);
      check(req.has_value(), "requester connect failed");
      auto id = req->send_request(ask, 1s);
      play(rest);
      if (id) (void)req->wait(*id, 10ms);
      (void)req->request(ask, 10ms);
      break;
    }
    case 3: {
      auto resp = ipcx::Respondent::connect(url, {}, 1s);
      check(resp.has_value(), "respondent connect failed");
      play(rest);
      for (int i = 0; i < kMaxReads; ++i) {
        auto q = resp->next(10ms);
        if (!q) break;
        (void)resp->answer(*q, ask);
      }
      break;
    }
    default: {
      auto ch = ipcx::Channel::connect(url, {}, 1s);
      check(ch.has_value(), "channel connect failed");
      (void)ch->try_send(ask);
      play(rest);
      for (int i = 0; i < kMaxReads && ch->recv(10ms); ++i) {
      }
      break;
    }
  }
  return 0;
}
