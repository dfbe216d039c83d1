// URL parsing for transport addresses: scheme:body?key=value&key=value
#pragma once

#include <map>
#include <string>
#include <string_view>

#include <ipcx/error.hpp>

namespace ipcx::transport {

struct Url {
  std::string scheme;  // "unix", "unix+seq", "tcp", ...
  std::string body;    // everything between ':' and '?', e.g. "///run/app.sock" or "@name"
  std::map<std::string, std::string, std::less<>> query;

  // Rejects control bytes (NUL included) anywhere, empty query keys and repeated keys: each would
  // otherwise reach a system call or a lookup in a form the writer of the URL did not see.
  static Result<Url> parse(std::string_view text);

  // For "scheme:///path" and "scheme://host/path" forms: the part after "//" (authority+path).
  std::string_view authority_and_path() const noexcept;
  // For file-backed schemes: the absolute path ("///p" -> "/p"); error when not absolute.
  Result<std::string> file_path() const;
  std::string str() const;
};

// `text` with control bytes shown as \xNN, for error messages (a NUL would end them early).
std::string printable(std::string_view text);

}  // namespace ipcx::transport
