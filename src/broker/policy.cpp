#include "broker/policy.hpp"

#include <algorithm>
#include <cerrno>
#include <limits>
#include <new>
#include <optional>
#include <type_traits>

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <fmt/format.h>

// Default toml++ settings, as in config.cpp: every file that includes it must agree (its
// functions are inline). parse_error is caught at the API boundary below.
#include <toml++/toml.h>

#include "broker/toml_names.hpp"

#include "broker/config.hpp"

namespace ipcx::broker {
namespace {

constexpr const char* kParseOp = "ipcxd policy";
constexpr std::uint8_t kKindCount = 3;
constexpr std::uint8_t kRightCount = 6;
constexpr std::uint8_t kAllRights = (1u << kRightCount) - 1;

// (uid_t)-1 is what an unknown identity looks like (PeerCred's default): no rule may name it.
constexpr std::int64_t kMaxId = std::numeric_limits<std::uint32_t>::max() - 1;

std::uint8_t bit(unsigned index) noexcept { return static_cast<std::uint8_t>(1u << index); }

std::optional<Kind> kind_from(std::string_view s) noexcept {
  for (std::uint8_t i = 0; i < kKindCount; ++i) {
    if (to_string(static_cast<Kind>(i)) == s) return static_cast<Kind>(i);
  }
  return std::nullopt;
}

std::optional<Right> right_from(std::string_view s) noexcept {
  for (std::uint8_t i = 0; i < kRightCount; ++i) {
    if (to_string(static_cast<Right>(i)) == s) return static_cast<Right>(i);
  }
  return std::nullopt;
}


bool has_control(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}


// getpwnam_r / getgrnam_r with a buffer that grows until the entry fits.
template <class Entry, class Lookup>
Result<std::optional<std::uint32_t>> resolve(const std::string& name, Lookup lookup, long size_hint) {
  std::size_t size = size_hint > 0 ? static_cast<std::size_t>(size_hint) : 1024;
  std::vector<char> buf;
  for (;;) {
    buf.resize(size);
    Entry entry{};
    Entry* out = nullptr;
    int rc = lookup(name.c_str(), &entry, buf.data(), buf.size(), &out);
    if (rc == ERANGE && size < (std::size_t{1} << 24)) {
      size *= 2;
      continue;
    }
    if (rc == EINTR) continue;
    // getpwnam(3): these are how some name services say "no such entry".
    if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM) {
      if (rc != 0 || out == nullptr) return std::optional<std::uint32_t>{};
      if constexpr (std::is_same_v<Entry, passwd>) {
        return std::optional<std::uint32_t>{out->pw_uid};
      } else {
        return std::optional<std::uint32_t>{out->gr_gid};
      }
    }
    return fail_errno(rc, kParseOp, name);
  }
}

Result<std::optional<std::uint32_t>> user_id(const std::string& name) {
  return resolve<passwd>(name, ::getpwnam_r, ::sysconf(_SC_GETPW_R_SIZE_MAX));
}

Result<std::optional<std::uint32_t>> group_id(const std::string& name) {
  return resolve<group>(name, ::getgrnam_r, ::sysconf(_SC_GETGR_R_SIZE_MAX));
}

template <class T>
struct Item {
  T value;
  const toml::node* node;
};

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  std::unexpected<Error> error(const toml::source_region& at, std::string_view what) const {
    return fail(Errc::invalid_argument, kParseOp,
                fmt::format("{}:{}:{}: {}", source_, at.begin.line, at.begin.column, what));
  }

  // Calls `take` for a single value, or for each element of a non-empty array.
  template <class Take>
  Result<void> each(std::string_view key, const toml::node& node, Take& take) const {
    if (const auto* array = node.as_array()) {
      if (array->empty()) return error(node.source(), fmt::format("'{}' is an empty list (it would match nothing)", key));
      for (const auto& n : *array)
        if (auto r = take(n); !r) return r;
      return {};
    }
    return take(node);
  }

  // A string or a non-empty array of strings, none holding NUL (names go to C APIs).
  Result<std::vector<Item<std::string>>> strings(std::string_view key, const toml::node& node) const {
    std::vector<Item<std::string>> out;
    auto take = [&](const toml::node& n) -> Result<void> {
      const auto* s = n.as_string();
      if (!s) {
        return error(n.source(), fmt::format("'{}' takes strings, not {}", key, type_name(n.type())));
      }
      if (s->get().find('\0') != std::string::npos) {
        return error(n.source(), fmt::format("'{}': a value holds a NUL character", key));
      }
      out.push_back({s->get(), &n});
      return {};
    };
    if (auto r = each(key, node, take); !r) return std::unexpected(std::move(r.error()));
    return out;
  }

  // An integer or a non-empty array of integers, each a valid uid/gid.
  Result<std::vector<std::uint32_t>> ids(std::string_view key, const toml::node& node) const {
    std::vector<std::uint32_t> out;
    auto take = [&](const toml::node& n) -> Result<void> {
      const auto* i = n.as_integer();
      if (!i) return error(n.source(), fmt::format("'{}' takes integers, not {}", key, type_name(n.type())));
      if (i->get() < 0 || i->get() > kMaxId) {
        return error(n.source(), fmt::format("'{}': {} is not an id (0 to {})", key, i->get(), kMaxId));
      }
      out.push_back(static_cast<std::uint32_t>(i->get()));
      return {};
    };
    if (auto r = each(key, node, take); !r) return std::unexpected(std::move(r.error()));
    return out;
  }

  Result<std::vector<Policy::Account>> accounts(std::string_view key, const toml::node& node, bool users) const {
    auto names = strings(key, node);
    if (!names) return std::unexpected(std::move(names.error()));
    std::vector<Policy::Account> out;
    for (auto& item : *names) {
      if (item.value.empty()) return error(item.node->source(), fmt::format("'{}': an empty name", key));
      auto id = users ? user_id(item.value) : group_id(item.value);
      if (!id) {
        id.error().detail = fmt::format("{}:{}:{}: looking up {} '{}'", source_, item.node->source().begin.line,
                                        item.node->source().begin.column, users ? "user" : "group",
                                        printable(item.value));
        return std::unexpected(std::move(id.error()));
      }
      if (!*id) {
        return error(item.node->source(),
                     fmt::format("no {} named '{}' on this system", users ? "user" : "group", printable(item.value)));
      }
      out.push_back({std::move(item.value), **id});
    }
    return out;
  }

  Result<Policy::Rule> rule(const toml::table& table) const {
    Policy::Rule rule;
    bool have_names = false;
    for (auto&& [key, node] : table) {
      std::string_view k = key.str();
      if (k == "kind") {
        auto kinds = strings(k, node);
        if (!kinds) return std::unexpected(std::move(kinds.error()));
        for (const auto& item : *kinds) {
          auto kind = kind_from(item.value);
          if (!kind) {
            return error(item.node->source(),
                         fmt::format("unknown kind '{}' (queue, topic or service)", printable(item.value)));
          }
          rule.kinds |= bit(static_cast<unsigned>(*kind));
        }
      } else if (k == "names") {
        auto names = strings(k, node);
        if (!names) return std::unexpected(std::move(names.error()));
        for (auto& item : *names) {
          if (item.value.empty()) return error(item.node->source(), "'names': an empty name");
          if (has_control(item.value)) {
            return error(item.node->source(),
                         fmt::format("'names': '{}' holds a control character", printable(item.value)));
          }
          rule.names.push_back(std::move(item.value));
        }
        have_names = true;
      } else if (k == "rights") {
        auto rights = strings(k, node);
        if (!rights) return std::unexpected(std::move(rights.error()));
        for (const auto& item : *rights) {
          if (item.value == "all") {
            rule.rights = kAllRights;
            continue;
          }
          auto right = right_from(item.value);
          if (!right) {
            return error(item.node->source(),
                         fmt::format("unknown right '{}' (publish, consume, subscribe, register, lookup, admin or all)",
                                     printable(item.value)));
          }
          rule.rights |= bit(static_cast<unsigned>(*right));
        }
      } else if (k == "uids" || k == "gids") {
        auto list = ids(k, node);
        if (!list) return std::unexpected(std::move(list.error()));
        auto& into = k == "uids" ? rule.uids : rule.gids;
        into.insert(into.end(), list->begin(), list->end());
      } else if (k == "users" || k == "groups") {
        auto found = accounts(k, node, k == "users");
        if (!found) return std::unexpected(std::move(found.error()));
        (k == "users" ? rule.users : rule.groups) = std::move(*found);
      } else if (k == "anyone") {
        const auto* b = node.as_boolean();
        if (!b) return error(node.source(), fmt::format("'anyone' must be true or false, not {}", type_name(node.type())));
        rule.anyone = b->get();
      } else {
        return error(key.source(), fmt::format("unknown key '{}' in [[allow]] (known: kind, names, rights, uids, gids, "
                                               "users, groups, anyone)",
                                               printable(k)));
      }
    }
    const auto& at = table.source();
    if (rule.kinds == 0) return error(at, "rule without 'kind' (queue, topic or service)");
    if (!have_names) return error(at, "rule without 'names' (use names = [\"*\"] for every name)");
    if (rule.rights == 0) return error(at, "rule without 'rights'");
    if (!rule.anyone && rule.uids.empty() && rule.gids.empty() && rule.users.empty() && rule.groups.empty()) {
      return error(at, "rule without any subject: give uids, gids, users, groups or anyone = true");
    }
    return rule;
  }

  Result<std::vector<Policy::Rule>> document(const toml::table& doc) const {
    std::vector<Policy::Rule> rules;
    for (auto&& [key, node] : doc) {
      if (key.str() != "allow") {
        return error(key.source(),
                     fmt::format("unknown key '{}' (only [[allow]] tables are allowed)", printable(key.str())));
      }
      const auto* array = node.as_array();
      if (!array || !array->is_array_of_tables()) {
        return error(node.source(), "'allow' must be a list of tables: write each rule as [[allow]]");
      }
      for (const auto& element : *array) {
        auto parsed = rule(*element.as_table());
        if (!parsed) return std::unexpected(std::move(parsed.error()));
        rules.push_back(std::move(*parsed));
      }
    }
    return rules;
  }

 private:
  std::string_view source_;
};

template <class T>
bool contains(const std::vector<T>& v, T x) noexcept {
  return std::find(v.begin(), v.end(), x) != v.end();
}

bool names_peer(const Policy::Rule& rule, const PeerCred& peer) noexcept {
  if (rule.anyone) return true;
  // A claimed identity is worth nothing: only the kernel's counts.
  if (!peer.verified) return false;
  if (contains(rule.uids, peer.uid) || contains(rule.gids, peer.gid)) return true;
  return std::any_of(rule.users.begin(), rule.users.end(), [&](const auto& a) { return a.id == peer.uid; }) ||
         std::any_of(rule.groups.begin(), rule.groups.end(), [&](const auto& a) { return a.id == peer.gid; });
}

template <class T, class F>
std::string join(const std::vector<T>& v, F&& f) {
  std::string out;
  for (const auto& x : v) {
    if (!out.empty()) out += ',';
    out += f(x);
  }
  return out;
}

}  // namespace

std::string_view to_string(Kind kind) noexcept {
  switch (kind) {
    case Kind::queue: return "queue";
    case Kind::topic: return "topic";
    case Kind::service: return "service";
  }
  return "unknown";
}

std::string_view to_string(Right right) noexcept {
  switch (right) {
    case Right::publish: return "publish";
    case Right::consume: return "consume";
    case Right::subscribe: return "subscribe";
    case Right::register_: return "register";
    case Right::lookup: return "lookup";
    case Right::admin: return "admin";
  }
  return "unknown";
}

bool glob_match(std::string_view pattern, std::string_view name) noexcept {
  // Greedy matching that remembers only the last '*': when the rest fails to match, that star
  // takes one more byte and the rest is tried again. Earlier stars never need to be revisited
  // (a later star can absorb whatever they would have), so the work is bounded by
  // len(name) × len(pattern) whatever the pattern.
  constexpr auto npos = std::string_view::npos;
  std::size_t p = 0;
  std::size_t n = 0;
  std::size_t star = npos;
  std::size_t resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (p < pattern.size() && ((pattern[p] == '?' && name[n] != '*' && name[n] != '>') || pattern[p] == name[n])) {
      // '?' stands for one character of a name, never for a subscription's wildcard ('*' one
      // token, '>' the rest): "room.?" must not cover "room.>". Only a '*' in a rule covers a
      // subscription's wildcard, as it covers every name below it.
      ++p;
      ++n;
    } else if (star != npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Policy Policy::owner_only(uid_t owner) { return Policy(owner, {}); }

Result<Policy> Policy::parse(std::string_view toml_text, uid_t owner, std::string_view source) {
  Parser parser(source);
  try {
    auto doc = toml::parse(toml_text, source);
    auto rules = parser.document(doc);
    if (!rules) return std::unexpected(std::move(rules.error()));
    return Policy(owner, std::move(*rules));
  } catch (const toml::parse_error& e) {
    return parser.error(e.source(), e.description());
  } catch (const std::bad_alloc&) {
    return fail(Errc::resource_exhausted, kParseOp, std::string(source));
  }
}

Result<Policy> Policy::load(const std::filesystem::path& file, uid_t owner) {
  auto text = read_trusted_file(file, owner, kParseOp);
  if (!text) return std::unexpected(std::move(text.error()));
  return parse(*text, owner, file.string());
}

bool Policy::privileged(const PeerCred& peer) const noexcept {
  return peer.verified && (peer.uid == owner_ || peer.uid == 0);
}

bool Policy::allows(const PeerCred& peer, Kind kind, std::string_view name, Right right) const {
  if (privileged(peer)) return true;
  auto k = static_cast<unsigned>(kind);
  auto r = static_cast<unsigned>(right);
  if (k >= kKindCount || r >= kRightCount) return false;
  for (const auto& rule : rules_) {
    if ((rule.kinds & bit(k)) == 0 || (rule.rights & bit(r)) == 0 || !names_peer(rule, peer)) continue;
    if (std::any_of(rule.names.begin(), rule.names.end(), [&](const auto& p) { return glob_match(p, name); })) {
      return true;
    }
  }
  return false;
}

bool Policy::knows(const PeerCred& peer) const {
  if (privileged(peer)) return true;
  return std::any_of(rules_.begin(), rules_.end(), [&](const auto& rule) { return names_peer(rule, peer); });
}

std::vector<std::string> Policy::describe() const {
  std::vector<std::string> lines;
  lines.reserve(rules_.size());
  std::vector<unsigned> kinds;
  std::vector<unsigned> rights;
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const auto& rule = rules_[i];
    kinds.clear();
    rights.clear();
    for (unsigned k = 0; k < kKindCount; ++k) {
      if (rule.kinds & bit(k)) kinds.push_back(k);
    }
    for (unsigned r = 0; r < kRightCount; ++r) {
      if (rule.rights & bit(r)) rights.push_back(r);
    }
    auto line = fmt::format("rule {}: {} {} {}", i + 1, join(kinds, [](unsigned k) { return std::string(to_string(static_cast<Kind>(k))); }),
                            join(rule.names, [](const std::string& s) { return s; }),
                            rule.rights == kAllRights
                                ? std::string("all")
                                : join(rights, [](unsigned r) { return std::string(to_string(static_cast<Right>(r))); }));
    auto number = [](auto id) { return fmt::format("{}", id); };
    auto account = [](const Account& a) { return fmt::format("{}({})", printable(a.name), a.id); };
    if (!rule.uids.empty()) line += " uids " + join(rule.uids, number);
    if (!rule.gids.empty()) line += " gids " + join(rule.gids, number);
    if (!rule.users.empty()) line += " users " + join(rule.users, account);
    if (!rule.groups.empty()) line += " groups " + join(rule.groups, account);
    if (rule.anyone) line += " anyone";
    lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace ipcx::broker
