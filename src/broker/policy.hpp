// ipcxd's access control: who may do what to which queue, topic or service.
//
// ---- Policy file (TOML) ----
//
//   # Every [[allow]] table grants rights; nothing is denied to the owner; everything else is denied.
//   [[allow]]
//   kind = "queue"                    # "queue", "topic" or "service" (one per rule; or a list ["queue", "topic"])
//   names = ["jobs", "jobs.*"]        # exact names or globs: '*' matches any run of characters, '?' one character; "*" alone: every name
//   rights = ["publish", "consume"]   # publish, consume, subscribe, register, lookup, admin, or "all"
//   uids = [1000]                     # any of: uids, gids, users, groups; or anyone = true
//   gids = [100]
//   users = ["alice"]
//   groups = ["staff"]
//   anyone = false
//
// Rules:
// - Only [[allow]] tables may appear at the top level, and only the keys above inside them.
//   kind, names and rights are required; each of kind, names, rights, uids, gids, users and
//   groups takes one value or a list of them, and a list may not be empty.
// - The owner (the daemon's effective uid) and root may do everything, whatever the file
//   says. Any other peer may exercise a right on an object only if a rule lists the object's
//   kind, the right and a name matching the object's, and names the peer: its uid is in uids
//   or is the uid of one of users, or its gid is in gids or is the gid of one of groups, or
//   the rule says anyone = true.
// - The gid compared is the one the kernel reports for the connection (SO_PEERCRED: the
//   peer's effective gid when it connected). Supplementary groups are not consulted: a
//   `groups` rule matches processes running with that group as their primary group only.
// - users and groups are resolved to ids once, when the file is loaded: a name that does not
//   exist is an error, and renaming or renumbering an account takes effect at the next load.
// - A peer whose identity the kernel did not verify is nobody: only anyone = true rules match
//   it, even if it claims the owner's or root's uid.
// - Name matching is plain character globbing over the whole name: '*' matches any run of
//   bytes, '.' included, so "sensors.*" matches "sensors.a" and "sensors.a.b" (but not
//   "sensors"); '?' matches exactly one byte (one character in ASCII names). There is no
//   escape: a pattern without '*' or '?' matches only the identical name. Names may not be
//   empty or hold control characters.
// - Rights that make no sense for a kind (register on a queue) are accepted and never asked for.
// - Errors name the place: "FILE:LINE:COL: what" (Errc::invalid_argument).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include <ipcx/error.hpp>
#include <ipcx/peer.hpp>

namespace ipcx::broker {

enum class Kind : std::uint8_t { queue, topic, service };
enum class Right : std::uint8_t { publish, consume, subscribe, register_, lookup, admin };

// "queue", "topic", "service"; "unknown" for a value outside the enum.
std::string_view to_string(Kind kind) noexcept;
// "publish", "consume", "subscribe", "register", "lookup", "admin"; "unknown" outside the enum.
std::string_view to_string(Right right) noexcept;

// Immutable once made: allows() and knows() are safe to call from any number of threads.
class Policy {
 public:
  // The default: only `owner` (the daemon's euid) and root may do anything.
  static Policy owner_only(uid_t owner);

  // Reads and parses a policy file. Blocks on the file system and, for users and groups, on
  // the name service (getpwnam_r/getgrnam_r). Errors: not_found or permission_denied for the
  // file itself; permission_denied as well when the file could let someone else write rules
  // (owned by neither `owner` nor root, or writable by its group or others); invalid_argument
  // for anything parse() refuses or a file that is not a regular file; too_large above 1 MiB.
  static Result<Policy> load(const std::filesystem::path& file, uid_t owner);
  // Parses policy text; `source` names it in errors ("SOURCE:LINE:COL: what").
  static Result<Policy> parse(std::string_view toml_text, uid_t owner, std::string_view source = "policy");

  // True when the peer may exercise `right` on the object `name` of `kind` (see the rules
  // above). Never blocks; O(rules × len(name) × len(pattern)) at worst.
  bool allows(const PeerCred& peer, Kind kind, std::string_view name, Right right) const;
  // True when the peer is the owner or root (verified), or some rule could match it (its
  // subjects name the peer, or anyone = true): such a peer may ask for the broker's status and
  // lists, which the caller filters with allows().
  bool knows(const PeerCred& peer) const;

  std::size_t rules() const noexcept { return rules_.size(); }
  uid_t owner() const noexcept { return owner_; }

  // One line per rule, in file order, for the daemon's log at start, e.g.
  // "rule 1: queue jobs,jobs.* publish,consume uids 1000 gids 100"
  // (then "users alice(1001)", "groups staff(50)", "anyone" as the rule has them; "all" when
  // a rule grants every right).
  std::vector<std::string> describe() const;

  struct Account {
    std::string name;
    std::uint32_t id = 0;
  };
  struct Rule {
    std::uint8_t kinds = 0;   // bit (1 << Kind)
    std::uint8_t rights = 0;  // bit (1 << Right)
    std::vector<std::string> names;
    std::vector<uid_t> uids;
    std::vector<gid_t> gids;
    std::vector<Account> users;   // resolved at load
    std::vector<Account> groups;  // resolved at load
    bool anyone = false;
  };

 private:
  Policy(uid_t owner, std::vector<Rule> rules) noexcept : owner_(owner), rules_(std::move(rules)) {}
  bool privileged(const PeerCred& peer) const noexcept;

  uid_t owner_;
  std::vector<Rule> rules_;
};

// Whether `name` matches the glob `pattern` ('*' any run of bytes, '?' one byte). Exposed for
// tests. Never backtracks more than once per byte of `name`: O(len(name) × len(pattern)).
bool glob_match(std::string_view pattern, std::string_view name) noexcept;

}  // namespace ipcx::broker
