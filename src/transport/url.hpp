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

  static Result<Url> parse(std::string_view text);

  // For "scheme:///path" and "scheme://host/path" forms: the part after "//" (authority+path).
  std::string_view authority_and_path() const noexcept;
  // For file-backed schemes: the absolute path ("///p" -> "/p"); error when not absolute.
  Result<std::string> file_path() const;
  std::string str() const;
};

}  // namespace ipcx::transport
