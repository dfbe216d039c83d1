#include "transport/address.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ipcx::transport {
namespace {

constexpr const char* kOp = "parse URL";

bool is_control(char c) noexcept {
  auto b = static_cast<unsigned char>(c);
  return b < 0x20 || b == 0x7f;
}
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_alnum(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Every rejection ends with the URL it came from: a program juggling several addresses must be
// able to tell which one was wrong.
std::unexpected<Error> bad(const Url& u, std::string_view reason) {
  return fail(Errc::invalid_url, kOp, fmt::format("{} in '{}'", reason, printable(u.str())));
}

Result<std::uint64_t> decimal_in(const Url& u, std::string_view text, const DecimalSpec& spec,
                                 std::string_view hint = {}) {
  auto v = parse_decimal(text, spec);
  if (!v) return bad(u, fmt::format("{}{}", v.error().detail, hint));
  return v;
}

Result<void> only_keys(const Url& u, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : u.query) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    if (allowed.size() == 0)
      return bad(u, fmt::format("unknown query key '{}' ({}: takes no query parameters)", printable(key), u.scheme));
    return bad(u, fmt::format("unknown query key '{}' ({}: takes only {})", printable(key), u.scheme,
                              fmt::join(allowed, ", ")));
  }
  return {};
}

Result<void> expect_scheme(const Url& u, std::initializer_list<std::string_view> schemes) {
  if (std::find(schemes.begin(), schemes.end(), u.scheme) != schemes.end()) return {};
  return bad(u, fmt::format("scheme '{}' is not {}", printable(u.scheme), fmt::join(schemes, " or ")));
}

Result<void> no_control(const Url& u, std::string_view text, std::string_view what) {
  for (std::size_t i = 0; i < text.size(); ++i)
    if (is_control(text[i]))
      return bad(u, fmt::format("control byte 0x{:02x} at offset {} of the {}", static_cast<unsigned char>(text[i]),
                                i, what));
  return {};
}

// "scheme:///abs/path" -> "/abs/path". `form` is the shape to suggest, e.g. "unix:///path".
Result<std::string> absolute_path(const Url& u, std::string_view form) {
  std::string_view b = u.body;
  if (b.empty()) return bad(u, fmt::format("no path ({})", form));
  if (b.starts_with("//") && !b.starts_with("///")) {
    auto host = b.substr(2, b.find('/', 2) - 2);
    return bad(u, fmt::format("host part '{}' not allowed: a {}: address is local ({})", printable(host), u.scheme,
                              form));
  }
  if (!b.starts_with("///"))
    return bad(u, fmt::format("'{}' is not an absolute path ({})", printable(b), form));
  auto path = b.substr(2);
  if (path == "/") return bad(u, fmt::format("empty path ({})", form));
  if (auto r = no_control(u, path, "path"); !r) return std::unexpected(r.error());
  // A trailing '/' names a directory: bind/mkfifo would fail later with a less useful error, and
  // a FIFO's twin would become "dir/.back".
  if (path.ends_with('/')) return bad(u, fmt::format("path '{}' ends in '/' (a directory)", path));
  return std::string(path);
}

// glibc's getaddrinfo also takes inet_aton's forms ("127.1", "0x7f.1", "2130706433"), which read
// as something else to a human: a host that ends in a number must be a plain dotted quad.
bool ends_in_number(std::string_view host) {
  if (host.ends_with('.')) host.remove_suffix(1);
  auto last = host.substr(host.rfind('.') + 1);  // npos + 1 == 0: the whole host
  if (last.empty()) return false;
  if (std::all_of(last.begin(), last.end(), is_digit)) return true;
  if (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X'))
    return std::all_of(last.begin() + 2, last.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  return false;
}

// Host names as resolvers take them. '_' is allowed although RFC 952 forbids it: /etc/hosts and
// container DNS (Docker Compose's "project_service_1") hand out such names.
Result<void> check_host_name(const Url& u, std::string_view host) {
  constexpr std::size_t kMaxHost = 253;
  std::string_view name = host.ends_with('.') ? host.substr(0, host.size() - 1) : host;  // FQDN dot
  for (char c : host) {
    if (c == '*') return bad(u, "host '*' is not an address (all interfaces: 0.0.0.0 or [::])");
    if (!is_alnum(c) && c != '-' && c != '.' && c != '_')
      return bad(u, fmt::format("character '{}' not allowed in host '{}' (letters, digits, '-', '_', '.'; "
                                "IPv6 in brackets)",
                                printable(std::string_view(&c, 1)), printable(host)));
  }
  if (name.size() > kMaxHost)
    return bad(u, fmt::format("host name of {} bytes is longer than {}", name.size(), kMaxHost));
  for (std::size_t start = 0; start <= name.size();) {
    auto dot = std::min(name.find('.', start), name.size());
    auto label = name.substr(start, dot - start);
    if (label.empty()) return bad(u, fmt::format("empty label in host '{}'", host));
    if (label.size() > 63)
      return bad(u, fmt::format("label '{}' of host is {} bytes, longer than 63", label, label.size()));
    start = dot + 1;
  }
  return {};
}

// The IPv6 literal between brackets, optionally with a zone ("fe80::1%eth0"). True for the
// unspecified address, however it is spelled ("::", "0::0").
Result<bool> ipv6_is_any(const Url& u, std::string_view literal) {
  if (literal.empty()) return bad(u, "empty IPv6 address '[]'");
  auto pct = literal.find('%');
  std::string addr(literal.substr(0, pct));
  in6_addr a{};
  if (::inet_pton(AF_INET6, addr.c_str(), &a) != 1)
    return bad(u, fmt::format("'{}' is not an IPv6 address", printable(addr)));
  if (pct != std::string_view::npos) {
    auto zone = literal.substr(pct + 1);
    bool ok = !zone.empty() && zone.size() < IF_NAMESIZE &&
              std::all_of(zone.begin(), zone.end(), [](char c) { return is_alnum(c) || c == '-' || c == '_' || c == '.'; });
    if (!ok)
      return bad(u, fmt::format("bad zone '{}' in IPv6 address (an interface name of 1..{} characters)",
                                printable(zone), IF_NAMESIZE - 1));
  }
  return std::memcmp(&a, &in6addr_any, sizeof a) == 0;
}

// The kernel's limit, when it can be read: pid_max is one above the largest pid it hands out.
std::optional<std::uint64_t> kernel_pid_max() {
  int fd = ::open("/proc/sys/kernel/pid_max", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[32];
  ssize_t n;
  do n = ::read(fd, buf, sizeof buf); while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  std::string_view s(buf, static_cast<std::size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  auto v = parse_decimal(s, {.what = "kernel.pid_max", .min = 2, .max = std::numeric_limits<pid_t>::max()});
  if (!v) return std::nullopt;
  return *v;
}

}  // namespace

Result<std::uint64_t> parse_decimal(std::string_view text, const DecimalSpec& spec) {
  if (text.empty()) return fail(Errc::invalid_url, kOp, fmt::format("{} is empty (expected {}..{})", spec.what, spec.min, spec.max));
  std::uint64_t v = 0;
  bool over = false;
  // Keeps scanning after an overflow so that "99999x" is reported as not a number.
  for (char c : text) {
    if (!is_digit(c))
      return fail(Errc::invalid_url, kOp,
                  fmt::format("{} '{}' is not a decimal number in {}..{} (digits only: no sign, space or prefix)",
                              spec.what, printable(text), spec.min, spec.max));
    auto d = static_cast<std::uint64_t>(c - '0');
    if (over) continue;
    if (v > spec.max / 10 || (v == spec.max / 10 && d > spec.max % 10)) over = true;
    else v = v * 10 + d;
  }
  if (over || v < spec.min)
    return fail(Errc::invalid_url, kOp, fmt::format("{} {} outside {}..{}", spec.what, text, spec.min, spec.max));
  return v;
}

Result<UnixAddress> unix_address(const Url& u) {
  if (auto r = expect_scheme(u, {"unix", "unix+seq"}); !r) return std::unexpected(r.error());
  std::string_view b = u.body;
  if (b.starts_with('@')) {
    auto name = b.substr(1);
    if (name.empty()) return bad(u, fmt::format("empty abstract socket name ({}:@name)", u.scheme));
    if (auto r = no_control(u, name, "abstract socket name"); !r) return std::unexpected(r.error());
    if (name.size() > kMaxAbstractName)
      return bad(u, fmt::format("abstract socket name of {} bytes is longer than {}", name.size(), kMaxAbstractName));
    if (auto r = only_keys(u, {}); !r) return std::unexpected(r.error());
    return UnixAddress{.where = std::string(b), .abstract = true};
  }
  auto path = absolute_path(u, fmt::format("{0}:///path or {0}:@name", u.scheme));
  if (!path) return std::unexpected(path.error());
  if (path->size() > kMaxUnixPath)
    return bad(u, fmt::format("path of {} bytes is longer than {} (sun_path)", path->size(), kMaxUnixPath));
  if (auto r = only_keys(u, {}); !r) return std::unexpected(r.error());
  return UnixAddress{.where = std::move(*path)};
}

Result<TcpAddress> tcp_address(const Url& u, Role role) {
  if (auto r = expect_scheme(u, {"tcp"}); !r) return std::unexpected(r.error());
  std::string_view b = u.body;
  if (!b.starts_with("//")) return bad(u, "expected tcp://host:port");
  if (auto r = no_control(u, b, "address"); !r) return std::unexpected(r.error());
  auto hp = b.substr(2);
  if (hp.ends_with('/')) hp.remove_suffix(1);
  if (auto slash = hp.find('/'); slash != std::string_view::npos)
    return bad(u, fmt::format("path '{}' not allowed (tcp://host:port)", hp.substr(slash)));

  std::string_view host, port;
  bool bracketed = false;
  if (hp.starts_with('[')) {
    auto close = hp.find(']');
    if (close == std::string_view::npos) return bad(u, "'[' without ']' (tcp://[v6]:port)");
    host = hp.substr(1, close - 1);
    auto after = hp.substr(close + 1);
    if (after.empty()) return bad(u, "no port (tcp://[v6]:port)");
    if (after.front() != ':') return bad(u, fmt::format("'{}' after ']' (tcp://[v6]:port)", after));
    port = after.substr(1);
    bracketed = true;
  } else {
    auto colon = hp.find(':');
    if (colon == std::string_view::npos) return bad(u, "no port (tcp://host:port)");
    if (hp.find(':', colon + 1) != std::string_view::npos) {
      // "::1:80" is itself a valid IPv6 address, so the hint guesses: a trailing number after
      // an address is a port, else the whole is the address.
      auto is_v6 = [](std::string_view text) {
        in6_addr a{};
        return ::inet_pton(AF_INET6, std::string(text).c_str(), &a) == 1;
      };
      auto last = hp.rfind(':');
      auto tail = hp.substr(last + 1);
      std::string hint = "tcp://[v6]:port";
      if (!tail.empty() && std::all_of(tail.begin(), tail.end(), is_digit) && is_v6(hp.substr(0, last)))
        hint = fmt::format("tcp://[{}]:{}", hp.substr(0, last), tail);
      else if (is_v6(hp))
        hint = fmt::format("tcp://[{}]:PORT", hp);
      return bad(u, fmt::format("an IPv6 address needs brackets: {}", hint));
    }
    host = hp.substr(0, colon);
    port = hp.substr(colon + 1);
  }
  if (port.empty()) return bad(u, "no port (tcp://host:port)");
  auto p = decimal_in(u, port, {.what = "port", .max = 65535});
  if (!p) return std::unexpected(p.error());
  if (*p == 0 && role == Role::connect) return bad(u, "port 0 picks a free port when listening; connect needs a port");

  TcpAddress a{.port = static_cast<std::uint16_t>(*p)};
  if (bracketed) {
    auto any = ipv6_is_any(u, host);
    if (!any) return std::unexpected(any.error());
    a.all_interfaces = *any;
    a.host = std::string(host);
  } else if (host.empty()) {
    a.host = "127.0.0.1";
  } else {
    if (auto r = check_host_name(u, host); !r) return std::unexpected(r.error());
    if (ends_in_number(host)) {
      std::string h(host);
      in_addr v4{};
      if (::inet_pton(AF_INET, h.c_str(), &v4) != 1)
        return bad(u, fmt::format("host '{}' is not an IPv4 address (a.b.c.d, each 0..255, no leading zeros)", host));
      a.all_interfaces = v4.s_addr == htonl(INADDR_ANY);
    }
    a.host = std::string(host);
  }
  if (auto r = only_keys(u, {}); !r) return std::unexpected(r.error());
  return a;
}

Result<SignalTarget> signal_target(const Url& u, Role role) {
  if (auto r = expect_scheme(u, {"signal"}); !r) return std::unexpected(r.error());
  if (auto r = only_keys(u, {"sig"}); !r) return std::unexpected(r.error());
  SignalTarget t;
  if (auto it = u.query.find("sig"); it != u.query.end()) {
    auto max = static_cast<std::uint64_t>(SIGRTMAX - SIGRTMIN);
    auto off = decimal_in(u, it->second, {.what = "sig", .max = max}, " (sig is an offset from SIGRTMIN)");
    if (!off) return std::unexpected(off.error());
    t.offset = static_cast<int>(*off);
  }
  auto who = u.authority_and_path();
  if (who == "self" || (who.empty() && role == Role::listen)) {
    t.self = true;
    t.pid = ::getpid();
    return t;
  }
  if (role == Role::listen)
    return bad(u, fmt::format("signal: listens as signal://self, not '{}'", printable(who)));
  if (who.empty()) return bad(u, "no target (signal://PID or signal://self)");
  auto pid = decimal_in(u, who, {.what = "pid", .min = 1, .max = std::numeric_limits<pid_t>::max()});
  if (!pid) return std::unexpected(pid.error());
  // A pid the kernel can never hand out is a typo, not a process that has exited.
  if (auto pid_max = kernel_pid_max(); pid_max && *pid >= *pid_max)
    return bad(u, fmt::format("pid {} outside 1..{} (kernel.pid_max is {})", *pid, *pid_max - 1, *pid_max));
  t.pid = static_cast<pid_t>(*pid);
  return t;
}

Result<PipeFds> pipe_fds(const Url& u, const char* env_value) {
  if (auto r = expect_scheme(u, {"pipe"}); !r) return std::unexpected(r.error());
  if (!u.body.empty() && u.body != "//") return bad(u, "pipe: takes no path (pipe: or pipe:?rfd=R&wfd=W)");
  if (auto r = only_keys(u, {"rfd", "wfd"}); !r) return std::unexpected(r.error());
  constexpr std::uint64_t kMaxFd = std::numeric_limits<int>::max();
  PipeFds fds;
  auto rfd = u.query.find("rfd");
  auto wfd = u.query.find("wfd");
  if (env_value && (rfd == u.query.end() || wfd == u.query.end())) {
    std::string_view env(env_value);
    auto env_bad = [&](std::string_view why) {
      return bad(u, fmt::format("IPCX_PIPE_FDS='{}' is not R,W: {}", printable(env), why));
    };
    auto comma = env.find(',');
    if (comma == std::string_view::npos) return env_bad(fmt::format("no ',' (two descriptors, each 0..{})", kMaxFd));
    auto r = parse_decimal(env.substr(0, comma), {.what = "read fd", .max = kMaxFd});
    if (!r) return env_bad(r.error().detail);
    auto w = parse_decimal(env.substr(comma + 1), {.what = "write fd", .max = kMaxFd});
    if (!w) return env_bad(w.error().detail);
    fds = {.read_fd = static_cast<int>(*r), .write_fd = static_cast<int>(*w)};
  }
  if (rfd != u.query.end()) {
    auto v = decimal_in(u, rfd->second, {.what = "rfd", .max = kMaxFd});
    if (!v) return std::unexpected(v.error());
    fds.read_fd = static_cast<int>(*v);
  }
  if (wfd != u.query.end()) {
    auto v = decimal_in(u, wfd->second, {.what = "wfd", .max = kMaxFd});
    if (!v) return std::unexpected(v.error());
    fds.write_fd = static_cast<int>(*v);
  }
  return fds;
}

Result<std::string> fifo_path(const Url& u) {
  if (auto r = expect_scheme(u, {"fifo"}); !r) return std::unexpected(r.error());
  auto path = absolute_path(u, "fifo:///path");
  if (!path) return std::unexpected(path.error());
  // PATH_MAX counts the terminating NUL.
  constexpr std::size_t kMaxPath = PATH_MAX - 1 - kFifoBackSuffix.size();
  if (path->size() > kMaxPath)
    return bad(u, fmt::format("path of {} bytes is longer than {} (PATH{} must fit in PATH_MAX {} with its NUL)",
                              path->size(), kMaxPath, kFifoBackSuffix, PATH_MAX));
  auto last = std::string_view(*path).substr(path->rfind('/') + 1);
  if (last.size() + kFifoBackSuffix.size() > NAME_MAX)
    return bad(u, fmt::format("file name of {} bytes is longer than {} (NAME{} must fit in NAME_MAX {})", last.size(),
                              NAME_MAX - kFifoBackSuffix.size(), kFifoBackSuffix, NAME_MAX));
  if (auto r = only_keys(u, {}); !r) return std::unexpected(r.error());
  return path;
}

}  // namespace ipcx::transport
