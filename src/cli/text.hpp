// How the CLI prints bytes another process chose: never as terminal control or forged lines.
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

namespace ipcx::cli {

// One message per line: control bytes, DEL and the backslash become \xNN, so a newline cannot
// split a message and an escape sequence never reaches the terminal.
inline std::string escaped(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f || c == '\\') out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

// A JSON string literal that stays ASCII (bytes outside printable ASCII as \u00NN).
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += fmt::format("\\{}", static_cast<char>(c));
    else if (c < 0x20 || c >= 0x7f) out += fmt::format("\\u{:04x}", c);
    else out += static_cast<char>(c);
  }
  return out + "\"";
}

}  // namespace ipcx::cli
