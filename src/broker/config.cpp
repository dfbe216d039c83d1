#include "broker/config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <limits>
#include <new>
#include <optional>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

// toml++ stays with its default settings (exceptions on) in every file that includes it:
// its functions are inline, so translation units built with other settings would break the
// one-definition rule. Its parse_error is caught right here, at the API boundary.
#include <toml++/toml.h>

#include "broker/toml_names.hpp"

#include <ipcx/fd.hpp>

#include "os/sys.hpp"

namespace ipcx::broker {
namespace {

constexpr const char* kParseOp = "ipcxd config";



// Why `http` is not an acceptable introspection address, or nothing when it is.
std::optional<std::string> http_problem(std::string_view http) {
  if (http.empty() || http == "off") return std::nullopt;
  std::string_view host;
  std::string_view port;
  bool loopback = false;
  if (http.front() == '[') {
    auto close = http.find(']');
    if (close == std::string_view::npos) return "missing ']' after the IPv6 address";
    host = http.substr(1, close - 1);
    auto rest = http.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return "expected ADDRESS:PORT ([::1]:PORT for IPv6)";
    port = rest.substr(1);
    in6_addr a6{};
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) return "not an IPv6 address in the brackets";
    loopback = IN6_IS_ADDR_LOOPBACK(&a6);
  } else {
    auto colon = http.rfind(':');
    if (colon == std::string_view::npos) return "expected ADDRESS:PORT";
    host = http.substr(0, colon);
    port = http.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return "an IPv6 address goes in brackets: [::1]:PORT";
    if (host == "localhost") {
      loopback = true;
    } else {
      in_addr a4{};
      if (::inet_pton(AF_INET, std::string(host).c_str(), &a4) != 1) {
        return "ADDRESS must be an IPv4 address in 127.0.0.0/8, [::1] or localhost";
      }
      // s_addr is in network order: its first byte in memory is the first octet.
      loopback = reinterpret_cast<const unsigned char*>(&a4.s_addr)[0] == 127;
    }
  }
  if (!loopback) {
    return "only loopback addresses (127.0.0.0/8, [::1], localhost) are accepted: the HTTP API has no "
           "authentication";
  }
  unsigned value = 0;
  if (port.empty() || port.size() > 5) return "PORT must be a number from 0 to 65535";
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return "PORT must be a number from 0 to 65535";
  }
  return std::nullopt;
}

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  std::unexpected<Error> error(const toml::source_region& at, std::string_view what) const {
    return fail(Errc::invalid_argument, kParseOp,
                fmt::format("{}:{}:{}: {}", source_, at.begin.line, at.begin.column, what));
  }

  Result<std::string> string(const toml::key& key, const toml::node& node) const {
    const auto* v = node.as_string();
    if (!v) return error(node.source(), fmt::format("'{}' must be a string, not {}", key.str(), type_name(node.type())));
    const std::string& s = v->get();
    // A NUL would silently cut a path short at the first system call.
    if (s.find('\0') != std::string::npos) return error(node.source(), fmt::format("'{}' holds a NUL character", key.str()));
    return s;
  }

  Result<std::uint64_t> integer(const toml::key& key, const toml::node& node, std::int64_t min,
                                std::int64_t max) const {
    const auto* v = node.as_integer();
    if (!v) return error(node.source(), fmt::format("'{}' must be an integer, not {}", key.str(), type_name(node.type())));
    std::int64_t n = v->get();
    if (n < min || n > max) {
      return error(node.source(), fmt::format("'{}' must be between {} and {} (got {})", key.str(), min, max, n));
    }
    return static_cast<std::uint64_t>(n);
  }

  Result<Config> broker(const toml::table& table) const {
    Config config;
    for (auto&& [key, node] : table) {
      std::string_view name = key.str();
      if (name == "socket" || name == "state_dir" || name == "policy") {
        auto s = string(key, node);
        if (!s) return std::unexpected(std::move(s.error()));
        (name == "socket" ? config.socket : name == "state_dir" ? config.state_dir : config.policy) = std::move(*s);
      } else if (name == "http") {
        auto s = string(key, node);
        if (!s) return std::unexpected(std::move(s.error()));
        if (auto problem = http_problem(*s)) {
          return error(node.source(), fmt::format("'http' = \"{}\": {}", printable(*s), *problem));
        }
        config.http = *s == "off" ? std::string() : std::move(*s);
      } else if (name == "group_window_us") {
        auto n = integer(key, node, 0, 1'000'000);
        if (!n) return std::unexpected(std::move(n.error()));
        config.group_window_us = static_cast<std::uint32_t>(*n);
      } else if (name == "max_connections") {
        auto n = integer(key, node, 0, std::numeric_limits<std::uint32_t>::max());
        if (!n) return std::unexpected(std::move(n.error()));
        config.max_connections = static_cast<std::uint32_t>(*n);
      } else if (name == "memory_limit") {
        auto n = integer(key, node, 1 << 20, std::numeric_limits<std::int64_t>::max());
        if (!n) return std::unexpected(std::move(n.error()));
        config.memory_limit = *n;
      } else {
        return error(key.source(), fmt::format("unknown key '{}' in [broker] (known: socket, state_dir, http, policy, "
                                               "group_window_us, max_connections, memory_limit)",
                                               printable(name)));
      }
    }
    return config;
  }

  Result<Config> document(const toml::table& doc) const {
    Config config;
    for (auto&& [key, node] : doc) {
      if (key.str() != "broker") {
        return error(key.source(), fmt::format("unknown key '{}' (only a [broker] table is allowed)", printable(key.str())));
      }
      const auto* table = node.as_table();
      if (!table) return error(node.source(), fmt::format("'broker' must be a table, not {}", type_name(node.type())));
      auto parsed = broker(*table);
      if (!parsed) return parsed;
      config = std::move(*parsed);
    }
    return config;
  }

 private:
  std::string_view source_;
};

}  // namespace

Result<void> check_http_address(std::string_view http) {
  if (auto problem = http_problem(http)) {
    return fail(Errc::invalid_argument, "ipcxd http", fmt::format("\"{}\": {}", printable(http), *problem));
  }
  return {};
}

Result<Config> parse_config(std::string_view toml_text, std::string_view source) {
  Parser parser(source);
  try {
    auto doc = toml::parse(toml_text, source);
    return parser.document(doc);
  } catch (const toml::parse_error& e) {
    return parser.error(e.source(), e.description());
  } catch (const std::bad_alloc&) {
    return fail(Errc::resource_exhausted, kParseOp, std::string(source));
  }
}

Result<Config> load_config(const std::filesystem::path& file) {
  auto text = read_trusted_file(file, ::geteuid(), "ipcxd config");
  if (!text) return std::unexpected(std::move(text.error()));
  return parse_config(*text, file.string());
}

Result<std::string> read_trusted_file(const std::filesystem::path& file, uid_t trusted, const char* op,
                                      std::size_t max_bytes) {
  const std::string name = file.string();
  // O_NONBLOCK: a FIFO planted at the path must not hang the daemon in open(); regular files
  // ignore the flag.
  auto fd = os::check(op, [&] { return ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK); });
  if (!fd) {
    fd.error().detail = name;
    return std::unexpected(std::move(fd.error()));
  }
  Fd owned(*fd);
  struct stat st {};
  if (::fstat(owned.get(), &st) == -1) return fail_errno(errno, op, name);
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, op, fmt::format("{}: not a regular file", name));
  if (st.st_uid != trusted && st.st_uid != 0) {
    return fail(Errc::permission_denied, op,
                fmt::format("{}: owned by uid {}, not by uid {} or root (its owner could rewrite it)", name,
                            st.st_uid, trusted));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return fail(Errc::permission_denied, op,
                fmt::format("{}: writable by its group or others (mode {:04o}; chmod go-w)", name, st.st_mode & 07777));
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    return fail(Errc::too_large, op, fmt::format("{}: {} bytes, at most {}", name, st.st_size, max_bytes));
  }
  std::string text;
  std::size_t used = 0;
  // One byte of slack: a file that grew since fstat shows as more bytes than st_size.
  text.resize(static_cast<std::size_t>(st.st_size) + 1);
  for (;;) {
    if (used == text.size()) text.resize(std::min(text.size() * 2, max_bytes + 1));
    auto n = os::check(op, [&] { return ::read(owned.get(), text.data() + used, text.size() - used); });
    if (!n) {
      n.error().detail = name;
      return std::unexpected(std::move(n.error()));
    }
    if (*n == 0) break;
    used += static_cast<std::size_t>(*n);
    if (used > max_bytes) {
      return fail(Errc::too_large, op, fmt::format("{}: more than {} bytes", name, max_bytes));
    }
  }
  text.resize(used);
  return text;
}

}  // namespace ipcx::broker
