// The messaging-pattern rows (reqrep-unix, pushpull-unix, pubsub-unix): what their raw, ipcx and
// peer (ZeroMQ) setups share.
//
// A row must not win by losing messages: every message carries its sequence number in its first
// 8 bytes (the rest is the fill byte), and every receiver checks each message it gets — size,
// number, content — so a dropped, duplicated, reordered or damaged message fails the
// measurement instead of making it faster. Each impl supplies Links (one direction of one
// conversation); the channels below do the stamping and checking, the same for all of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "bench/mechanism.hpp"

namespace ipcx::bench::patterns {

// The smallest message that holds a sequence number: smaller --sizes are measured at this size.
inline constexpr std::size_t kMinSize = 8;
// Subscribers of the fan-out row: one echo child each.
inline constexpr int kSubscribers = 4;
// Sequence number of the join message a publisher repeats until every subscriber answered it
// (a subscriber may miss those published before it joined); never a data message's number.
inline constexpr std::uint64_t kJoin = ~std::uint64_t{0};

// One direction of one conversation, as an impl provides it.
class Link {
 public:
  virtual ~Link() = default;
  // Sends one message (blocks while the mechanism has no room).
  virtual Status send(std::span<const std::byte> msg) = 0;
  // The next message, valid until the next recv() (blocks). The parent's receivers give up once
  // an echo child exited (child_exited()).
  virtual Result<std::span<const std::byte>> recv() = 0;
  // Before this process waits for an answer: makes everything sent go out. For endpoints that
  // run only inside their own calls (ipcx's bound Pusher and Publisher: flush()); nothing to do
  // for a socket the kernel drives.
  virtual Status settle() { return {}; }
};

// Writes sequence numbers into outgoing messages and checks incoming ones.
class Stamps {
 public:
  explicit Stamps(std::size_t size);
  // The next outgoing message (number `next_out()`), `size` bytes.
  std::span<const std::byte> next();
  // A join message (kJoin).
  std::span<const std::byte> join();
  // Checks `msg` is the next expected message; counts it.
  Status check(std::span<const std::byte> msg);
  static bool is_join(std::span<const std::byte> msg) noexcept;
  std::uint64_t received() const noexcept { return in_; }
  std::uint64_t sent() const noexcept { return out_; }

 private:
  std::vector<std::byte> buf_, expect_;
  std::uint64_t out_ = 0, in_ = 0;
};

// Point to point over two Links carrying the harness's own bytes (no stamps): for a peer of a
// plain transport row (unix, tcp), checked by the harness's verify rounds like the raw and ipcx
// channels of that row.
class PlainChannel final : public Channel {
 public:
  PlainChannel(std::unique_ptr<Link> out, std::unique_ptr<Link> in) : out_(std::move(out)), in_(std::move(in)) {}
  Status send(std::span<const std::byte> msg) override { return out_->send(msg); }
  Status recv(std::size_t size) override;
  std::span<const std::byte> received() const override { return last_; }

 private:
  std::unique_ptr<Link> out_, in_;
  std::span<const std::byte> last_;  // valid until the next recv() (Link::recv)
};

// Point to point over two Links (they may be the two directions of one socket): the ordinary
// harness drives it (ping-pong, bursts, acks), every message stamped and checked.
class CheckedChannel final : public Channel {
 public:
  CheckedChannel(std::unique_ptr<Link> out, std::unique_ptr<Link> in, std::size_t size);
  Status send(std::span<const std::byte>) override;
  Status recv(std::size_t size) override;
  Status recv_many(std::size_t count, std::size_t size) override;
  bool self_checked() const override { return true; }

 private:
  std::unique_ptr<Link> out_, in_;
  Stamps stamps_;
};

// Request/reply: self-timed, because a REQ socket cannot send a burst without the replies. The
// parent times `rounds` request → reply round trips (one sample each); msgs_per_s is round trips
// per second (count / sum of samples). The echo child answers each request with a reply.
class RoundTripChannel final : public SelfTimedChannel {
 public:
  RoundTripChannel(std::unique_ptr<Link> out, std::unique_ptr<Link> in, std::size_t size);
  Result<Timing> measure(int warmup, int rounds) override;
  Status answer(int warmup, int rounds) override;
  bool self_checked() const override { return true; }

 private:
  std::unique_ptr<Link> out_, in_;
  Stamps stamps_;
};

// Fan-out, the publisher's side: send() publishes one message to every subscriber; recv() waits
// for one ack from each subscriber and checks that each has received every message published so
// far. The acks come back over one pipe that all subscribers share (8-byte writes, atomic), the
// same for every impl, so that the impls differ only in the fan-out path.
class FanoutChannel final : public Channel {
 public:
  // `acks`: the pipe's read end.
  FanoutChannel(std::unique_ptr<Link> pub, Fd acks, int subscribers, std::size_t size);
  // Publishes join messages until every subscriber acknowledged one.
  Status join();
  Status send(std::span<const std::byte>) override;
  Status recv(std::size_t size) override;
  bool self_checked() const override { return true; }  // each subscriber checks every stamp

 private:
  Result<std::uint64_t> read_ack(int timeout_ms);
  std::unique_ptr<Link> pub_;
  Fd acks_;
  int subscribers_;
  Stamps stamps_;
};

// Fan-out, one subscriber (an echo child): recv() takes the next data message (join messages are
// skipped) and checks it; send() writes the ack: how many data messages it has received.
class SubscriberChannel final : public Channel {
 public:
  // `acks`: the pipe's write end.
  SubscriberChannel(std::unique_ptr<Link> sub, Fd acks, std::size_t size);
  // Waits for the first join message and acknowledges it.
  Status join();
  Status send(std::span<const std::byte>) override;
  Status recv(std::size_t size) override;

 private:
  Status write_ack(std::uint64_t value);
  std::unique_ptr<Link> sub_;
  Fd acks_;
  Stamps stamps_;
};

// The ack pipe of a fan-out row: made by the parent, its write end handed to every subscriber.
struct AckPipe {
  Fd read;
  Status create(ChildWiring& wiring);
  // Child: the inherited write end (the first inherited descriptor).
  static Result<Fd> inherited(const RunCtx& ctx);
};

// Raw Unix stream socket as a Link: one write() per message; the receiver reads what is there
// (up to 64 KiB at once) and hands it out message by message.
struct LinkPair {
  std::unique_ptr<Link> out, in;
};
LinkPair raw_stream_links(Fd socket, std::size_t size);

// The rows' ipcx setups (rows_patterns_ipcx.cpp).
std::unique_ptr<Setup> ipcx_reqrep(const RunCtx& c);
std::unique_ptr<Setup> ipcx_pushpull(const RunCtx& c);
std::unique_ptr<Setup> ipcx_pubsub(const RunCtx& c);

// Why this build has no ZeroMQ peers (empty when it has them: IPCX_BENCH_ZMQ), for every row
// whose peer is ZeroMQ's.
#if IPCX_BENCH_ZMQ
inline constexpr std::string_view kZmqSkipped{};
#elif IPCX_BENCH_ZMQ_TSAN
inline constexpr std::string_view kZmqSkipped = "ZeroMQ left out of ThreadSanitizer builds (libzmq is not instrumented)";
#else
inline constexpr std::string_view kZmqSkipped = "ZeroMQ (libzmq, pkg-config) not found when ipcx was built";
#endif

// The rows' peer setups, when the build has ZeroMQ (rows_patterns_zmq.cpp), and the tcp row's
// (zmq-tcp: PAIR over TCP, a PlainChannel).
std::unique_ptr<Setup> zmq_tcp_pair(const RunCtx& c);
// The unix row's peer when the build has NNG (nng-ipc: pair0 over ipc://, rows_socket_nng.cpp).
std::unique_ptr<Setup> nng_ipc_pair(const RunCtx& c);
std::unique_ptr<Setup> zmq_reqrep(const RunCtx& c);
std::unique_ptr<Setup> zmq_pushpull(const RunCtx& c);
std::unique_ptr<Setup> zmq_pubsub(const RunCtx& c);

}  // namespace ipcx::bench::patterns
