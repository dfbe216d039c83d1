#include "transport/url.hpp"

#include <fmt/format.h>

namespace ipcx::transport {

Result<Url> Url::parse(std::string_view text) {
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
  if (q != std::string_view::npos) {
    auto qs = rest.substr(q + 1);
    while (!qs.empty()) {
      auto amp = qs.find('&');
      auto kv = qs.substr(0, amp);
      auto eq = kv.find('=');
      if (kv.empty() || eq == 0)
        return fail(Errc::invalid_url, "parse URL", fmt::format("bad query in '{}'", text));
      u.query.emplace(std::string(kv.substr(0, eq)),
                      eq == std::string_view::npos ? std::string() : std::string(kv.substr(eq + 1)));
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
