#include "transport/url.hpp"

#include <fmt/format.h>

namespace ipcx::transport {
namespace {

bool is_control(char c) noexcept {
  auto b = static_cast<unsigned char>(c);
  return b < 0x20 || b == 0x7f;
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (is_control(c)) out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    else out += c;
  }
  return out;
}

Result<Url> Url::parse(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i)
    if (is_control(text[i]))
      return fail(Errc::invalid_url, "parse URL",
                  fmt::format("control byte 0x{:02x} at offset {} in '{}'", static_cast<unsigned char>(text[i]), i,
                              printable(text)));
  auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return fail(Errc::invalid_url, "parse URL", fmt::format("'{}' has no scheme (e.g. unix:///path)", text));
  Url u;
  u.scheme = std::string(text.substr(0, colon));
  for (char c : u.scheme) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
    if (!ok) return fail(Errc::invalid_url, "parse URL", fmt::format("bad scheme '{}'", u.scheme));
  }
  auto rest = text.substr(colon + 1);
  auto q = rest.find('?');
  u.body = std::string(rest.substr(0, q));
  // "scheme:body?" (nothing after '?') is no query at all; otherwise every '&'-separated piece,
  // a trailing one included, must name a key.
  if (q != std::string_view::npos && q + 1 < rest.size()) {
    auto qs = rest.substr(q + 1);
    for (;;) {
      auto amp = qs.find('&');
      auto kv = qs.substr(0, amp);
      auto eq = kv.find('=');
      if (kv.empty() || eq == 0)
        return fail(Errc::invalid_url, "parse URL", fmt::format("empty query key in '{}'", text));
      auto key = kv.substr(0, eq);
      auto value = eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1);
      // A repeated key has no single meaning (first wins? last wins?): refuse to guess.
      if (!u.query.emplace(std::string(key), std::string(value)).second)
        return fail(Errc::invalid_url, "parse URL", fmt::format("query key '{}' given twice in '{}'", key, text));
      if (amp == std::string_view::npos) break;
      qs = qs.substr(amp + 1);
    }
  }
  return u;
}

std::string_view Url::authority_and_path() const noexcept {
  std::string_view b = body;
  if (b.starts_with("//")) b.remove_prefix(2);
  return b;
}

Result<std::string> Url::file_path() const {
  if (!body.starts_with("///") )
    return fail(Errc::invalid_url, "parse URL",
                fmt::format("'{}:{}' needs an absolute path: {}:///path", scheme, body, scheme));
  auto p = std::string(authority_and_path());
  if (p.size() < 2) return fail(Errc::invalid_url, "parse URL", "empty path");
  return p;
}

std::string Url::str() const {
  std::string s = scheme + ":" + body;
  char sep = '?';
  for (auto& [k, v] : query) {
    s += sep;
    s += k;
    if (!v.empty()) s += "=" + v;
    sep = '&';
  }
  return s;
}

}  // namespace ipcx::transport
