// ipcxd's configuration file.
//
// ---- ipcxd.toml ----
//
//   [broker]
//   socket = "unix:///run/ipcx/ipcxd.sock"
//   state_dir = "/var/lib/ipcx"
//   http = "127.0.0.1:8321"
//   policy = "/etc/ipcx/policy.toml"
//   group_window_us = 2000
//   max_connections = 1024
//   memory_limit = 268435456
//
// Rules:
// - Every key is optional (a missing one keeps the default in Config below; an empty file or
//   one without [broker] gives the defaults). Keys outside this list, tables other than
//   [broker], values of the wrong type (a string for a number, a float for an integer) and
//   numbers outside a key's range are errors: "FILE:LINE:COL: what", naming the key
//   (Errc::invalid_argument).
// - socket, state_dir, policy: strings without NUL bytes; empty means the default.
// - http: "ADDRESS:PORT" where ADDRESS is loopback: an IPv4 address in 127.0.0.0/8,
//   "[::1]" (IPv6 in brackets) or "localhost"; PORT is 0..65535 (0: any free port). Any other
//   address is refused because the HTTP API has no authentication. "" or "off": no HTTP.
// - group_window_us: 0..1000000. max_connections: 0..4294967295 (0: the default).
//   memory_limit: 1048576 (1 MiB) or more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <sys/types.h>

#include <ipcx/error.hpp>

namespace ipcx::broker {

struct Config {
  std::string socket;                     // URL; empty: default
  std::string state_dir;                  // empty: default
  // "ADDRESS:PORT" for introspection, loopback only (checked by parse_config); "": none
  // ("off" in the file is stored as "").
  std::string http = "127.0.0.1:0";
  std::string policy;                     // path of the policy file; empty: owner only
  std::uint32_t group_window_us = 2000;   // 0..1'000'000
  std::uint32_t max_connections = 0;      // 0: default
  std::uint64_t memory_limit = 256 << 20; // bytes for connection buffers, at least 1 MiB
};

// Loads ipcxd.toml. Blocks on the file system. Errors: not_found or permission_denied for the
// file itself (permission_denied too when it is owned by neither the daemon's euid nor root,
// or is writable by its group or others: whoever can write it chooses the policy file);
// invalid_argument for anything parse_config refuses or a file that is not a regular file;
// too_large above 1 MiB.
Result<Config> load_config(const std::filesystem::path& file);
// Parses configuration text; `source` names it in errors ("SOURCE:LINE:COL: what").
Result<Config> parse_config(std::string_view toml_text, std::string_view source = "ipcxd.toml");

// Whether `http` is an acceptable value of Config::http (see the rules above); the error says
// why not. "off" is accepted here (parse_config turns it into "").
Result<void> check_http_address(std::string_view http);

// Reads a file the daemon takes orders from (its configuration, its policy): a regular file of
// at most `max_bytes`, owned by `trusted` or root and writable by nobody else (no group or
// other write bit), checked on the open descriptor. `op` names the operation in errors.
Result<std::string> read_trusted_file(const std::filesystem::path& file, uid_t trusted, const char* op,
                                      std::size_t max_bytes = 1 << 20);

}  // namespace ipcx::broker
