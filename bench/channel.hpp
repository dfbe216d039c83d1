// Channel: one process's end of an established conversation, as the harness drives it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <sys/types.h>
#include <signal.h>

#include <ipcx/ipcx.hpp>

#include "bench/util.hpp"

namespace ipcx::bench {

class Channel {
 public:
  virtual ~Channel() = default;
  // Sends one message (blocks until the kernel has taken it).
  virtual Status send(std::span<const std::byte> msg) = 0;
  // Receives one message of exactly `size` bytes into the channel's own buffer (blocks).
  virtual Status recv(std::size_t size) = 0;
  // Receives `count` messages of `size` bytes: the throughput receiver.
  virtual Status recv_many(std::size_t count, std::size_t size);
  // What the last recv() took: its bytes, or the leading part of them that the channel keeps;
  // empty when it keeps none. The harness's verify rounds check it (docs/bench.md).
  virtual std::span<const std::byte> received() const { return {}; }
  // True for a channel that stamps every message and checks each stamp itself (it sends its own
  // bytes, not the harness's): its verify rounds count as checked without received().
  virtual bool self_checked() const { return false; }
};

// What a self-timed row measured in the parent: one latency per sample, and how many samples
// fit in a second of measured time (count / sum of samples).
struct Timing {
  std::vector<std::uint64_t> samples_ns;
  double per_s = 0;
  bool compared = false;  // the row compared the bytes that came back with those it sent
};

// A row whose unit of work is not a message (a lock hand-off; lock+unlock in one process)
// times itself: the harness calls measure() in the parent and answer() in the echo child
// instead of its ping-pong and bursts. send()/recv() are not used (docs/bench.md).
class SelfTimedChannel : public Channel {
 public:
  // Parent: `warmup` untimed rounds, then `rounds` samples.
  virtual Result<Timing> measure(int warmup, int rounds) = 0;
  // Echo child: its side of the same rounds.
  virtual Status answer(int warmup, int rounds) = 0;

  Status send(std::span<const std::byte>) final { return fail(Errc::not_supported, "send", "self-timed row"); }
  Status recv(std::size_t) final { return fail(Errc::not_supported, "recv", "self-timed row"); }
};

// Through the ipcx API: blocking calls (timeout forever), one Message reused for every recv.
class IpcxChannel final : public Channel {
 public:
  explicit IpcxChannel(Connection c) : conn_(std::move(c)) {}
  Status send(std::span<const std::byte> msg) override { return conn_.send(msg); }
  Status recv(std::size_t size) override;
  std::span<const std::byte> received() const override { return msg_.data; }

 private:
  Connection conn_;
  Message msg_;
};

Made<Channel> ipcx_channel(Result<Connection> c);

// Raw descriptors: read/write on a pipe, FIFO pair or socket. A stream receiver loops on partial
// reads until it has exactly `size` bytes (and reads big chunks for throughput); a record
// receiver (SOCK_SEQPACKET) gets one message per read.
class FdChannel final : public Channel {
 public:
  enum class Kind { stream, records };
  // `wfd` invalid: write to `rfd` (a socket).
  FdChannel(Fd rfd, Fd wfd, Kind kind, std::size_t size);

  Status send(std::span<const std::byte> msg) override;
  Status recv(std::size_t size) override;
  Status recv_many(std::size_t count, std::size_t size) override;
  std::span<const std::byte> received() const override { return {buf_.data(), last_}; }

 private:
  Status read_stream(std::size_t total, std::size_t chunk);

  Fd rfd_, wfd_;
  Kind kind_;
  std::vector<std::byte> buf_;
  std::size_t last_ = 0;  // the last message's bytes at the start of buf_ (recv, not recv_many)
};

// Raw signals: sigqueue(2) one int, sigwaitinfo(2) for the reply (the signal is blocked).
class SignalChannel final : public Channel {
 public:
  SignalChannel(pid_t peer, int signo);
  Status send(std::span<const std::byte> msg) override;
  Status recv(std::size_t size) override;
  std::span<const std::byte> received() const override { return std::as_bytes(std::span(&value_, 1)); }

 private:
  pid_t peer_;
  int signo_;
  sigset_t set_;
  std::int32_t value_ = 0;  // the last signal's value
};

}  // namespace ipcx::bench
