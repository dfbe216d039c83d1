// Typed, validated addresses for each transport's URL. Every field is checked here against what
// the kernel or libc will actually do with it, so a value never wraps (a pid cast from a long, a
// port taken modulo 65536 or as a service name), is cut short (a NUL inside a path) or is
// silently ignored (an unknown query key). Every rejection is Errc::invalid_url, op "parse URL",
// with a detail naming the offending value, the allowed range or form, and the URL.
//
// None of these functions blocks; signal_target reads /proc/sys/kernel/pid_max.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <ipcx/error.hpp>
#include <ipcx/signal.hpp>

#include "transport/url.hpp"

namespace ipcx::transport {

// Which end an address is for: some values mean something to one side only (tcp port 0 picks a
// free port, signal://self is the only thing to listen on).
enum class Role { listen, connect };

// ---- shared number parsing ----

struct DecimalSpec {
  std::string_view what;  // names the value in errors: "port", "pid", "sig", "rfd"
  std::uint64_t min = 0;
  std::uint64_t max;  // inclusive
};

// Plain decimal digits only (leading zeros allowed; no sign, space, hex or suffix), in
// spec.min..spec.max, with no wrap-around however many digits there are.
Result<std::uint64_t> parse_decimal(std::string_view text, const DecimalSpec& spec);

// ---- unix:///path, unix:@name, unix+seq:///path, unix+seq:@name ----

struct UnixAddress {
  std::string where;      // "/abs/path" or "@name": the form os::unix_address and bind_unix take
  bool abstract = false;  // where starts with '@': no file, gone with its last descriptor

  // The abstract name without its '@', or the path.
  std::string_view name() const noexcept { return abstract ? std::string_view(where).substr(1) : where; }
};

// sun_path holds 108 bytes: a path needs its terminating NUL, an abstract name its leading one.
inline constexpr std::size_t kMaxUnixPath = 107;
inline constexpr std::size_t kMaxAbstractName = 107;

// No query keys are accepted.
Result<UnixAddress> unix_address(const Url& url);

// ---- tcp://host:port, tcp://[v6]:port, tcp://:port ----

struct TcpAddress {
  std::string host;             // a name, dotted quad, or IPv6 literal without brackets
  std::uint16_t port = 0;       // 0 only for Role::listen
  bool all_interfaces = false;  // host was 0.0.0.0 or [::]
};

// An empty host is 127.0.0.1: listening on every interface is only ever asked for by name.
// No query keys are accepted.
Result<TcpAddress> tcp_address(const Url& url, Role role);

// ---- signal://PID, signal://self ----

struct SignalTarget {
  bool self = false;                   // signal://self (or, when listening, signal: / signal://)
  pid_t pid = 0;                       // the target; for self, this process at the time of the call
  int offset = kDefaultSignalOffset;   // the signal is SIGRTMIN + offset (?sig=N)
};

// Listening accepts only self. Accepts only the query key sig.
Result<SignalTarget> signal_target(const Url& url, Role role);

// ---- pipe:, pipe:?rfd=R&wfd=W ----

struct PipeFds {
  int read_fd = 0;
  int write_fd = 1;
};

// `env_value` is IPCX_PIPE_FDS ("R,W") or nullptr when unset; rfd/wfd in the URL override it one
// by one, and it is only read (and so only rejected) when the URL does not give both.
Result<PipeFds> pipe_fds(const Url& url, const char* env_value);

// ---- fifo:///path ----

// FIFO replies travel on PATH + this suffix (the reply channel).
inline constexpr std::string_view kFifoBackSuffix = ".back";
// The FIFO's path; PATH.back is derived from it, so it must fit too. No query keys are accepted.
Result<std::string> fifo_path(const Url& url);

}  // namespace ipcx::transport
