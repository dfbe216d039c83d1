// The checked channels of the pattern rows (rows_patterns.hpp) and the raw Unix-socket links.
#include <algorithm>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

#include "bench/rows_patterns.hpp"
#include "bench/session.hpp"

namespace ipcx::bench::patterns {
namespace {

using namespace std::chrono_literals;

constexpr std::byte kFill{0xa5};
constexpr int kSliceMs = 100;          // a parent's waits with no descriptor to see a child die
constexpr std::uint64_t kJoinWaitNs = 30'000'000'000;  // subscribers that never join: give up

void put_seq(std::span<std::byte> msg, std::uint64_t seq) {
  for (std::size_t i = 0; i < std::min(msg.size(), kMinSize); ++i) msg[i] = std::byte(seq >> (8 * i));
}

std::uint64_t get_seq(std::span<const std::byte> msg) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < std::min(msg.size(), kMinSize); ++i) v |= std::uint64_t(msg[i]) << (8 * i);
  return v;
}

// A raw stream socket, both directions; the Links share it.
struct Socket {
  Fd fd;
  std::vector<std::byte> buf;  // bytes read, not yet handed out: [begin, end)
  std::size_t begin = 0, end = 0;
};

class RawOut final : public Link {
 public:
  explicit RawOut(std::shared_ptr<Socket> s) : s_(std::move(s)) {}
  Status send(std::span<const std::byte> msg) override {
    for (std::size_t off = 0; off < msg.size();) {
      ssize_t n = retry([&] { return ::write(s_->fd.get(), msg.data() + off, msg.size() - off); });
      if (n < 0) return sys_error("write");
      off += static_cast<std::size_t>(n);
    }
    return {};
  }
  Result<std::span<const std::byte>> recv() override { return fail(Errc::not_supported, "recv", "send-only link"); }

 private:
  std::shared_ptr<Socket> s_;
};

class RawIn final : public Link {
 public:
  RawIn(std::shared_ptr<Socket> s, std::size_t size) : s_(std::move(s)), size_(size) {}
  Status send(std::span<const std::byte>) override { return fail(Errc::not_supported, "send", "receive-only link"); }
  Result<std::span<const std::byte>> recv() override {
    auto& s = *s_;
    while (s.end - s.begin < size_) {
      if (s.begin > 0) {  // keep the partial message, make room after it
        std::memmove(s.buf.data(), s.buf.data() + s.begin, s.end - s.begin);
        s.end -= s.begin;
        s.begin = 0;
      }
      ssize_t n = retry([&] { return ::read(s.fd.get(), s.buf.data() + s.end, s.buf.size() - s.end); });
      if (n < 0) return sys_error("read");
      if (n == 0) return fail(Errc::closed, "read", "peer closed");
      s.end += static_cast<std::size_t>(n);
    }
    std::span<const std::byte> msg(s.buf.data() + s.begin, size_);
    s.begin += size_;
    return msg;
  }

 private:
  std::shared_ptr<Socket> s_;
  std::size_t size_;
};

}  // namespace

LinkPair raw_stream_links(Fd socket, std::size_t size) {
  auto s = std::make_shared<Socket>();
  s->fd = std::move(socket);
  s->buf.resize(std::max<std::size_t>(size, 64 * 1024));
  return {.out = std::make_unique<RawOut>(s), .in = std::make_unique<RawIn>(s, size)};
}

// ---- Stamps -----------------------------------------------------------------------------------

Stamps::Stamps(std::size_t size) : buf_(size, kFill), expect_(size, kFill) {}

std::span<const std::byte> Stamps::next() {
  put_seq(buf_, out_++);
  return buf_;
}

std::span<const std::byte> Stamps::join() {
  put_seq(buf_, kJoin);
  return buf_;
}

bool Stamps::is_join(std::span<const std::byte> msg) noexcept {
  return msg.size() >= kMinSize && get_seq(msg) == kJoin;
}

Status Stamps::check(std::span<const std::byte> msg) {
  if (msg.size() != expect_.size())
    return fail(Errc::protocol, "check", fmt::format("message {}: {} bytes, expected {}", in_, msg.size(), expect_.size()));
  put_seq(expect_, in_);
  if (std::memcmp(msg.data(), expect_.data(), msg.size()) != 0) {
    auto got = get_seq(msg);
    if (got != get_seq(expect_))
      return fail(Errc::protocol, "check",
                  fmt::format("message {} carries number {}: lost, duplicated or out of order", in_, got));
    return fail(Errc::protocol, "check", fmt::format("message {}: content damaged", in_));
  }
  ++in_;
  return {};
}

// ---- CheckedChannel, RoundTripChannel ---------------------------------------------------------

Status PlainChannel::recv(std::size_t size) {
  auto m = in_->recv();
  if (!m) return std::unexpected(m.error());
  if (m->size() != size) return fail(Errc::protocol, "recv", fmt::format("a message of {} bytes, expected {}", m->size(), size));
  last_ = *m;
  return {};
}

CheckedChannel::CheckedChannel(std::unique_ptr<Link> out, std::unique_ptr<Link> in, std::size_t size)
    : out_(std::move(out)), in_(std::move(in)), stamps_(size) {}

Status CheckedChannel::send(std::span<const std::byte>) { return out_->send(stamps_.next()); }

Status CheckedChannel::recv(std::size_t) {
  if (auto r = out_->settle(); !r) return r;
  auto m = in_->recv();
  if (!m) return std::unexpected(m.error());
  return stamps_.check(*m);
}

Status CheckedChannel::recv_many(std::size_t count, std::size_t) {
  if (auto r = out_->settle(); !r) return r;
  for (std::size_t i = 0; i < count; ++i) {
    auto m = in_->recv();
    if (!m) return std::unexpected(m.error());
    if (auto r = stamps_.check(*m); !r) return r;
  }
  return {};
}

RoundTripChannel::RoundTripChannel(std::unique_ptr<Link> out, std::unique_ptr<Link> in, std::size_t size)
    : out_(std::move(out)), in_(std::move(in)), stamps_(size) {}

Result<Timing> RoundTripChannel::measure(int warmup, int rounds) {
  Timing t;
  t.samples_ns.reserve(static_cast<std::size_t>(rounds));
  std::uint64_t total = 0;
  for (int i = 0; i < warmup + rounds; ++i) {
    auto t0 = now_ns();
    if (auto r = out_->send(stamps_.next()); !r) return std::unexpected(r.error());
    auto m = in_->recv();
    if (!m) return std::unexpected(m.error());
    auto d = now_ns() - t0;
    if (auto r = stamps_.check(*m); !r) return std::unexpected(r.error());
    if (i < warmup) continue;
    t.samples_ns.push_back(d);
    total += d;
  }
  t.per_s = static_cast<double>(rounds) * 1e9 / static_cast<double>(std::max<std::uint64_t>(total, 1));
  return t;
}

Status RoundTripChannel::answer(int warmup, int rounds) {
  for (int i = 0; i < warmup + rounds; ++i) {
    auto m = in_->recv();
    if (!m) return std::unexpected(m.error());
    if (auto r = stamps_.check(*m); !r) return r;
    if (auto r = out_->send(stamps_.next()); !r) return r;
  }
  return {};
}

// ---- fan-out ----------------------------------------------------------------------------------

Status AckPipe::create(ChildWiring& wiring) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return sys_error("pipe2");
  read = Fd(p[0]);
  wiring.give(Fd(p[1]));
  return {};
}

Result<Fd> AckPipe::inherited(const RunCtx& ctx) {
  if (ctx.inherited.empty()) return fail(Errc::invalid_argument, "fan-out", "no inherited ack pipe");
  return Fd(ctx.inherited[0]);
}

FanoutChannel::FanoutChannel(std::unique_ptr<Link> pub, Fd acks, int subscribers, std::size_t size)
    : pub_(std::move(pub)), acks_(std::move(acks)), subscribers_(subscribers), stamps_(size) {}

Result<std::uint64_t> FanoutChannel::read_ack(int timeout_ms) {
  for (int waited = 0;;) {
    pollfd p{.fd = acks_.get(), .events = POLLIN, .revents = 0};
    int n = retry([&] { return ::poll(&p, 1, std::min(timeout_ms - waited, kSliceMs)); });
    if (n < 0) return sys_error("poll");
    if (n > 0) break;
    waited += kSliceMs;
    if (child_exited()) return child_gone("ack");
    if (waited >= timeout_ms) return fail(Errc::timeout, "ack", "none yet");
  }
  std::uint64_t v = 0;
  ssize_t n = retry([&] { return ::read(acks_.get(), &v, sizeof v); });
  if (n < 0) return sys_error("read", "acks");
  if (n != sizeof v) return fail(Errc::protocol, "read", "short ack");
  return v;
}

Status FanoutChannel::join() {
  const auto until = now_ns() + kJoinWaitNs;
  for (int joined = 0; joined < subscribers_;) {
    if (now_ns() > until) return fail(Errc::timeout, "join", fmt::format("{} of {} subscribers joined", joined, subscribers_));
    if (auto r = pub_->send(stamps_.join()); !r) return r;
    for (;;) {  // what came within 10 ms; then publish the join message again
      auto a = read_ack(10);
      if (!a && a.error().code == Errc::timeout) break;
      if (!a) return std::unexpected(a.error());
      if (*a != kJoin) return fail(Errc::protocol, "join", fmt::format("ack {} before any message", *a));
      ++joined;
    }
  }
  return {};
}

Status FanoutChannel::send(std::span<const std::byte>) { return pub_->send(stamps_.next()); }

Status FanoutChannel::recv(std::size_t) {
  if (auto r = pub_->settle(); !r) return r;
  for (int i = 0; i < subscribers_; ++i) {
    auto a = read_ack(1 << 30);
    if (!a) return std::unexpected(a.error());
    if (*a != stamps_.sent())
      return fail(Errc::protocol, "ack",
                  fmt::format("a subscriber has {} messages of the {} published", *a, stamps_.sent()));
  }
  return {};
}

SubscriberChannel::SubscriberChannel(std::unique_ptr<Link> sub, Fd acks, std::size_t size)
    : sub_(std::move(sub)), acks_(std::move(acks)), stamps_(size) {}

Status SubscriberChannel::write_ack(std::uint64_t v) {
  ssize_t n = retry([&] { return ::write(acks_.get(), &v, sizeof v); });  // <= PIPE_BUF: atomic
  if (n != sizeof v) return sys_error("write", "ack");
  return {};
}

Status SubscriberChannel::join() {
  for (;;) {
    auto m = sub_->recv();
    if (!m) return std::unexpected(m.error());
    if (Stamps::is_join(*m)) return write_ack(kJoin);
  }
}

Status SubscriberChannel::send(std::span<const std::byte>) { return write_ack(stamps_.received()); }

Status SubscriberChannel::recv(std::size_t) {
  for (;;) {
    auto m = sub_->recv();
    if (!m) return std::unexpected(m.error());
    if (!Stamps::is_join(*m)) return stamps_.check(*m);  // joins published after ours: skipped
  }
}

}  // namespace ipcx::bench::patterns
