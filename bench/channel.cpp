#include "bench/channel.hpp"

#include <algorithm>
#include <cstring>

#include <sched.h>
#include <unistd.h>

#include <fmt/format.h>

#include "bench/session.hpp"

namespace ipcx::bench {
namespace {

constexpr std::size_t kBulkRead = 64 * 1024;  // raw stream receivers read this much at once

}  // namespace

Status Channel::recv_many(std::size_t count, std::size_t size) {
  for (std::size_t i = 0; i < count; ++i)
    if (auto r = recv(size); !r) return r;
  return {};
}

Status IpcxChannel::recv(std::size_t size) {
  if (auto r = conn_.recv(msg_); !r) return r;
  if (msg_.size() == size) {
    if (size == sizeof kWake && child_exited()) {
      std::int32_t v;
      std::memcpy(&v, msg_.data.data(), sizeof v);
      if (is_wake(v)) return child_gone("recv");
    }
    return {};
  }
  return fail(Errc::protocol, "recv", fmt::format("expected {} bytes, got {}", size, msg_.size()));
}

Made<Channel> ipcx_channel(Result<Connection> c) {
  if (!c) return std::unexpected(std::move(c.error()));
  return std::make_unique<IpcxChannel>(std::move(*c));
}

FdChannel::FdChannel(Fd rfd, Fd wfd, Kind kind, std::size_t size)
    : rfd_(std::move(rfd)), wfd_(std::move(wfd)), kind_(kind), buf_(std::max(size + 1, kBulkRead)) {}

Status FdChannel::send(std::span<const std::byte> msg) {
  int fd = wfd_.valid() ? wfd_.get() : rfd_.get();
  for (std::size_t off = 0; off < msg.size();) {
    ssize_t n = retry([&] { return ::write(fd, msg.data() + off, msg.size() - off); });
    if (n < 0) return sys_error("write");
    off += static_cast<std::size_t>(n);
  }
  return {};
}

Status FdChannel::recv(std::size_t size) {
  if (kind_ == Kind::records) {
    // One byte more than expected: a longer record shows up as a wrong size, not a silent cut.
    ssize_t n = retry([&] { return ::read(rfd_.get(), buf_.data(), size + 1); });
    if (n < 0) return sys_error("read");
    if (n == 0) return fail(Errc::closed, "read", "peer closed");
    if (static_cast<std::size_t>(n) != size)
      return fail(Errc::protocol, "read", fmt::format("record of {} bytes, expected {}", n, size));
    last_ = size;
    return {};
  }
  last_ = 0;
  if (auto r = read_stream(size, size); !r) return r;
  last_ = size;
  return {};
}

Status FdChannel::recv_many(std::size_t count, std::size_t size) {
  if (kind_ == Kind::records) return Channel::recv_many(count, size);
  last_ = 0;
  return read_stream(count * size, buf_.size());
}

// One message (total <= the buffer) is assembled in the buffer; a burst is read and dropped.
Status FdChannel::read_stream(std::size_t total, std::size_t chunk) {
  const bool keep = total <= buf_.size();
  for (std::size_t got = 0; got < total;) {
    std::size_t want = std::min(chunk, total - got);
    ssize_t n = retry([&] { return ::read(rfd_.get(), buf_.data() + (keep ? got : 0), want); });
    if (n < 0) return sys_error("read");
    if (n == 0) return fail(Errc::closed, "read", "peer closed");
    got += static_cast<std::size_t>(n);
  }
  return {};
}

SignalChannel::SignalChannel(pid_t peer, int signo) : peer_(peer), signo_(signo) {
  sigemptyset(&set_);
  sigaddset(&set_, signo);
}

Status SignalChannel::send(std::span<const std::byte> msg) {
  sigval v{};
  std::memcpy(&v.sival_int, msg.data(), sizeof v.sival_int);
  while (::sigqueue(peer_, signo_, v) != 0) {
    if (errno == EAGAIN) ::sched_yield();  // the peer's queue of pending signals is full
    else if (errno != EINTR) return sys_error("sigqueue");
  }
  return {};
}

Status SignalChannel::recv(std::size_t) {
  siginfo_t si{};
  if (retry([&] { return ::sigwaitinfo(&set_, &si); }) < 0) return sys_error("sigwaitinfo");
  if (is_wake(si.si_value.sival_int)) return child_gone("recv");
  value_ = si.si_value.sival_int;
  return {};
}

}  // namespace ipcx::bench
