// The bound pattern endpoints (Replier, Surveyor, Publisher, Pusher) read whatever a connected
// peer sends. Each input is one peer: its first byte picks the endpoint, the rest is a series of
// messages (a length byte, then up to that many bytes), sent over a real unix:@ connection.
// The endpoint must survive every input, keep serving, and keep its counters balanced.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include <ipcx/ipcx.hpp>

namespace {

using namespace std::chrono_literals;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_pattern_endpoints: %s\n", what);
    std::abort();
  }
}

std::string name(const char* what) { return "unix:@ipcx-fuzz-" + std::to_string(::getpid()) + "-" + what; }

struct Endpoints {
  ipcx::Replier replier;
  ipcx::Surveyor surveyor;
  ipcx::Publisher publisher;
  ipcx::Pusher pusher;
};

Endpoints& endpoints() {
  static Endpoints* e = [] {
    auto rep = ipcx::Replier::bind(name("rep"), [](ipcx::Request& r) { (void)r.reply(r.payload); });
    auto sv = ipcx::Surveyor::bind(name("survey"));
    ipcx::PublisherOptions po;
    po.queue = {.capacity = 16, .memory_cap = 64 * 1024, .overflow = ipcx::Overflow::drop_oldest};
    auto pub = ipcx::Publisher::bind(name("pub"), po);
    ipcx::PusherOptions qo;
    qo.queue = {.capacity = 16, .memory_cap = 64 * 1024, .overflow = ipcx::Overflow::drop_oldest};
    auto push = ipcx::Pusher::bind(name("push"), qo);
    check(rep && sv && pub && push, "could not bind the endpoints");
    return new Endpoints{std::move(*rep), std::move(*sv), std::move(*pub), std::move(*push)};
  }();
  return *e;
}

// One round of serving for the endpoint `which` (0..3): accepts, reads and writes what is
// ready now (a Unix socket has the bytes in the kernel once send returned).
void serve(Endpoints& e, int which) {
  switch (which) {
    case 0: (void)e.replier.poll(ipcx::Timeout::zero()); break;
    case 1: (void)e.surveyor.poll(ipcx::Timeout::zero()); break;
    case 2: (void)e.publisher.poll(ipcx::Timeout::zero()); break;
    default: (void)e.pusher.poll(ipcx::Timeout::zero()); break;
  }
}

void check_balanced(const ipcx::Counters& c, const char* who) {
  if (c.sent != c.delivered + c.dropped.total() + c.queued) {
    std::fprintf(stderr, "%s: sent %llu != delivered %llu + dropped %llu + queued %llu\n", who,
                 static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.delivered),
                 static_cast<unsigned long long>(c.dropped.total()), static_cast<unsigned long long>(c.queued));
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  auto& e = endpoints();
  const int which = data[0] % 4;
  const char* urls[] = {"rep", "survey", "pub", "push"};
  auto conn = ipcx::connect(name(urls[which]), {}, 1s);
  check(conn.has_value(), "connect failed: the endpoint stopped listening");
  std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  ipcx::Message sink;
  while (!rest.empty()) {
    const std::size_t n = std::min<std::size_t>(std::to_integer<std::size_t>(rest[0]), rest.size() - 1);
    if (!conn->send(rest.subspan(1, n), 100ms)) break;  // the endpoint closed us: bad input
    rest = rest.subspan(1 + n);
    serve(e, which);
    while (conn->recv(sink, ipcx::Timeout::zero())) {
    }
  }
  // Something to deliver, so credits and acknowledgements from the input are used.
  const std::byte payload[] = {std::byte{'x'}};
  if (which == 2) (void)e.publisher.publish("t", payload);
  if (which == 3) (void)e.pusher.push(payload, std::chrono::milliseconds(0));
  for (int i = 0; i < 4; ++i) {
    serve(e, which);
    while (conn->recv(sink, ipcx::Timeout::zero())) {
    }
  }
  conn->close();
  for (int i = 0; i < 2; ++i) serve(e, which);
  switch (which) {
    case 2: check_balanced(e.publisher.stats().total, "publisher"); break;
    case 3: check_balanced(e.pusher.stats().total, "pusher"); break;
    default: break;
  }
  return 0;
}
