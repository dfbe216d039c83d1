// ipcxd's access policy and configuration file (src/broker/policy.hpp, config.hpp): every
// rule of the documented semantics, attacked the way a careless or hostile user would.
#include <array>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "broker/config.hpp"
#include "broker/policy.hpp"
#include "test_util.hpp"

namespace ipcx::broker {
namespace {

constexpr uid_t kOwner = 4000;
constexpr uid_t kOther = 4242;
constexpr gid_t kOtherGid = 4343;

constexpr std::array kKinds{Kind::queue, Kind::topic, Kind::service};
constexpr std::array kRights{Right::publish, Right::consume, Right::subscribe,
                             Right::register_, Right::lookup, Right::admin};

PeerCred verified(uid_t uid, gid_t gid = kOtherGid) { return {.pid = 100, .uid = uid, .gid = gid, .verified = true}; }
PeerCred claimed(uid_t uid, gid_t gid = kOtherGid) { return {.pid = 100, .uid = uid, .gid = gid, .verified = false}; }

Policy parse_ok(std::string_view text) {
  auto p = Policy::parse(text, kOwner);
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message());
  return p ? std::move(*p) : Policy::owner_only(kOwner);
}

// Every (kind, right) pair the peer may use on `name`.
int allowed_pairs(const Policy& p, const PeerCred& peer, std::string_view name) {
  int n = 0;
  for (auto k : kKinds) {
    for (auto r : kRights) n += p.allows(peer, k, name, r) ? 1 : 0;
  }
  return n;
}

// A real account of this machine, for users/groups rules (names resolve at load).
std::optional<std::pair<std::string, uid_t>> some_user() {
  for (const char* name : {"nobody", "daemon", "bin"}) {
    if (const passwd* pw = ::getpwnam(name)) return std::pair{std::string(name), pw->pw_uid};
  }
  return std::nullopt;
}
std::optional<std::pair<std::string, gid_t>> some_group() {
  for (const char* name : {"nogroup", "daemon", "bin"}) {
    if (const group* gr = ::getgrnam(name)) return std::pair{std::string(name), gr->gr_gid};
  }
  return std::nullopt;
}

void write_file(const std::string& path, std::string_view text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

// ---------------------------------------------------------------- owner, root, nobody else

TEST(Policy, OwnerAndRootMayDoEverything) {
  auto p = Policy::owner_only(kOwner);
  EXPECT_EQ(p.rules(), 0u);
  EXPECT_EQ(p.owner(), kOwner);
  constexpr int all = static_cast<int>(kKinds.size() * kRights.size());
  EXPECT_EQ(allowed_pairs(p, verified(kOwner), "anything"), all);
  EXPECT_EQ(allowed_pairs(p, verified(0, 0), "anything.at.all"), all);
  EXPECT_TRUE(p.knows(verified(kOwner)));
  EXPECT_TRUE(p.knows(verified(0)));
}

TEST(Policy, OwnerKeepsEverythingWhateverTheRulesSay) {
  auto p = parse_ok(R"([[allow]]
kind = "queue"
names = ["jobs"]
rights = ["publish"]
uids = [1000]
)");
  constexpr int all = static_cast<int>(kKinds.size() * kRights.size());
  EXPECT_EQ(allowed_pairs(p, verified(kOwner), "other"), all);
  EXPECT_EQ(allowed_pairs(p, verified(0), "other"), all);
}

TEST(Policy, AnyoneElseIsDeniedEverythingWithoutARule) {
  auto p = Policy::owner_only(kOwner);
  EXPECT_EQ(allowed_pairs(p, verified(kOther), "jobs"), 0);
  EXPECT_EQ(allowed_pairs(p, verified(kOther, 0), "jobs"), 0);  // root's group is not root
  EXPECT_FALSE(p.knows(verified(kOther)));
}

TEST(Policy, AnUnverifiedPeerClaimingOwnerOrRootIsNobody) {
  auto p = Policy::owner_only(kOwner);
  EXPECT_EQ(allowed_pairs(p, claimed(kOwner), "jobs"), 0);
  EXPECT_EQ(allowed_pairs(p, claimed(0, 0), "jobs"), 0);
  EXPECT_FALSE(p.knows(claimed(kOwner)));
  EXPECT_FALSE(p.knows(claimed(0)));
}

TEST(Policy, OutOfRangeEnumsAreDenied) {
  auto p = parse_ok(R"([[allow]]
kind = ["queue", "topic", "service"]
names = ["*"]
rights = "all"
anyone = true
)");
  EXPECT_FALSE(p.allows(verified(kOther), static_cast<Kind>(7), "x", Right::publish));
  EXPECT_FALSE(p.allows(verified(kOther), Kind::queue, "x", static_cast<Right>(42)));
  EXPECT_EQ(to_string(static_cast<Kind>(7)), "unknown");
  EXPECT_EQ(to_string(static_cast<Right>(42)), "unknown");
}

TEST(Policy, ToStringNamesEveryKindAndRight) {
  EXPECT_EQ(to_string(Kind::queue), "queue");
  EXPECT_EQ(to_string(Kind::topic), "topic");
  EXPECT_EQ(to_string(Kind::service), "service");
  EXPECT_EQ(to_string(Right::publish), "publish");
  EXPECT_EQ(to_string(Right::consume), "consume");
  EXPECT_EQ(to_string(Right::subscribe), "subscribe");
  EXPECT_EQ(to_string(Right::register_), "register");
  EXPECT_EQ(to_string(Right::lookup), "lookup");
  EXPECT_EQ(to_string(Right::admin), "admin");
}

// ---------------------------------------------------------------- subjects

TEST(Policy, UidRuleGrantsExactlyItsKindRightsAndNames) {
  auto p = parse_ok(R"(
[[allow]]
kind = "queue"
names = ["jobs"]
rights = ["publish", "consume"]
uids = [4242]
)");
  EXPECT_EQ(p.rules(), 1u);
  auto peer = verified(kOther);
  EXPECT_TRUE(p.allows(peer, Kind::queue, "jobs", Right::publish));
  EXPECT_TRUE(p.allows(peer, Kind::queue, "jobs", Right::consume));
  EXPECT_EQ(allowed_pairs(p, peer, "jobs"), 2);       // nothing else on jobs
  EXPECT_EQ(allowed_pairs(p, peer, "jobs2"), 0);      // no other name
  EXPECT_EQ(allowed_pairs(p, peer, "job"), 0);
  EXPECT_FALSE(p.allows(peer, Kind::topic, "jobs", Right::publish));  // no other kind
  EXPECT_EQ(allowed_pairs(p, verified(kOther + 1), "jobs"), 0);      // no other uid
  EXPECT_TRUE(p.knows(peer));
  EXPECT_FALSE(p.knows(verified(kOther + 1)));
}

TEST(Policy, GidRuleMatchesThePeersGid) {
  auto p = parse_ok(R"([[allow]]
kind = "topic"
names = ["sensors.*"]
rights = ["subscribe"]
gids = [100, 4343]
)");
  EXPECT_TRUE(p.allows(verified(5000, 100), Kind::topic, "sensors.t", Right::subscribe));
  EXPECT_TRUE(p.allows(verified(5001, kOtherGid), Kind::topic, "sensors.t", Right::subscribe));
  EXPECT_FALSE(p.allows(verified(5000, 101), Kind::topic, "sensors.t", Right::subscribe));
  // gids match gids, never uids.
  EXPECT_FALSE(p.allows(verified(100, 101), Kind::topic, "sensors.t", Right::subscribe));
  EXPECT_FALSE(p.allows(verified(5000, 100), Kind::topic, "sensors.t", Right::publish));
  EXPECT_TRUE(p.knows(verified(5000, 100)));
  EXPECT_FALSE(p.knows(verified(5000, 101)));
}

TEST(Policy, UsersAreResolvedToTheirUids) {
  auto user = some_user();
  if (!user) GTEST_SKIP() << "no nobody/daemon/bin account on this machine";
  auto text = fmt::format(R"([[allow]]
kind = "service"
names = ["clock"]
rights = ["lookup"]
users = ["{}"]
)",
                          user->first);
  auto p = parse_ok(text);
  EXPECT_TRUE(p.allows(verified(user->second), Kind::service, "clock", Right::lookup));
  EXPECT_FALSE(p.allows(verified(user->second), Kind::service, "clock", Right::register_));
  EXPECT_FALSE(p.allows(verified(user->second + 1), Kind::service, "clock", Right::lookup));
  EXPECT_FALSE(p.allows(claimed(user->second), Kind::service, "clock", Right::lookup));
  ASSERT_EQ(p.describe().size(), 1u);
  EXPECT_EQ(p.describe()[0], fmt::format("rule 1: service clock lookup users {}({})", user->first, user->second));
}

TEST(Policy, GroupsAreResolvedToTheirGids) {
  auto grp = some_group();
  if (!grp) GTEST_SKIP() << "no nogroup/daemon/bin group on this machine";
  auto text = fmt::format(R"([[allow]]
kind = "service"
names = ["clock"]
rights = ["register"]
groups = ["{}"]
)",
                          grp->first);
  auto p = parse_ok(text);
  EXPECT_TRUE(p.allows(verified(kOther, grp->second), Kind::service, "clock", Right::register_));
  EXPECT_FALSE(p.allows(verified(kOther, grp->second + 1), Kind::service, "clock", Right::register_));
  EXPECT_FALSE(p.allows(claimed(kOther, grp->second), Kind::service, "clock", Right::register_));
  EXPECT_EQ(p.describe()[0], fmt::format("rule 1: service clock register groups {}({})", grp->first, grp->second));
}

TEST(Policy, UnknownUserOrGroupIsAnErrorWithItsLine) {
  for (const char* key : {"users", "groups"}) {
    auto text = fmt::format(R"([[allow]]
kind = "queue"
names = ["jobs"]
rights = ["publish"]
{} = ["ipcx-no-such-account-xq7"]
)",
                            key);
    auto p = Policy::parse(text, kOwner);
    ASSERT_FALSE(p.has_value()) << key;
    EXPECT_EQ(p.error().code, Errc::invalid_argument);
    EXPECT_NE(p.error().detail.find("policy:5:"), std::string::npos) << p.error().detail;
    EXPECT_NE(p.error().detail.find("ipcx-no-such-account-xq7"), std::string::npos) << p.error().detail;
  }
}

TEST(Policy, UnverifiedPeerMatchesOnlyAnyoneRules) {
  auto p = parse_ok(R"([[allow]]
kind = "queue"
names = ["private"]
rights = "all"
uids = [4242]
gids = [4343]

[[allow]]
kind = "topic"
names = ["public.*"]
rights = ["subscribe"]
anyone = true
)");
  auto liar = claimed(kOther, kOtherGid);
  EXPECT_EQ(allowed_pairs(p, liar, "private"), 0);
  EXPECT_TRUE(p.allows(liar, Kind::topic, "public.news", Right::subscribe));
  EXPECT_FALSE(p.allows(liar, Kind::topic, "public.news", Right::publish));
  // The same identity, verified, gets its rule.
  EXPECT_EQ(allowed_pairs(p, verified(kOther, kOtherGid), "private"), 6);
  // anyone = true names every peer, verified or not.
  EXPECT_TRUE(p.knows(liar));
  EXPECT_TRUE(p.knows(verified(9999, 9999)));
}

TEST(Policy, AnyoneFalseIsNoSubject) {
  auto p = Policy::parse(R"([[allow]]
kind = "queue"
names = ["jobs"]
rights = ["publish"]
anyone = false
)",
                         kOwner);
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().detail.find("policy:1:"), std::string::npos) << p.error().detail;
  EXPECT_NE(p.error().detail.find("subject"), std::string::npos) << p.error().detail;
}

TEST(Policy, KindListAllRightsAndSingleValues) {
  auto p = parse_ok(R"([[allow]]
kind = ["queue", "topic"]
names = "*"
rights = "all"
uids = 4242
)");
  EXPECT_EQ(allowed_pairs(p, verified(kOther), "x"), 12);
  for (auto r : kRights) EXPECT_FALSE(p.allows(verified(kOther), Kind::service, "x", r));
  EXPECT_EQ(p.describe()[0], "rule 1: queue,topic * all uids 4242");
}

TEST(Policy, RulesAddUp) {
  auto p = parse_ok(R"([[allow]]
kind = "queue"
names = ["a"]
rights = ["publish"]
uids = [4242]

[[allow]]
kind = "queue"
names = ["a"]
rights = ["consume"]
gids = [4343]
)");
  EXPECT_EQ(p.rules(), 2u);
  auto peer = verified(kOther, kOtherGid);
  EXPECT_TRUE(p.allows(peer, Kind::queue, "a", Right::publish));
  EXPECT_TRUE(p.allows(peer, Kind::queue, "a", Right::consume));
  EXPECT_FALSE(p.allows(verified(kOther, 1), Kind::queue, "a", Right::consume));
}

TEST(Policy, DescribeGivesOneLinePerRule) {
  auto p = parse_ok(R"([[allow]]
kind = "queue"
names = ["jobs", "jobs.*"]
rights = ["publish", "consume"]
uids = [1000]
gids = [100]

[[allow]]
kind = "topic"
names = ["public.*"]
rights = ["subscribe"]
anyone = true
)");
  auto lines = p.describe();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "rule 1: queue jobs,jobs.* publish,consume uids 1000 gids 100");
  EXPECT_EQ(lines[1], "rule 2: topic public.* subscribe anyone");
  EXPECT_TRUE(Policy::owner_only(kOwner).describe().empty());
}

TEST(Policy, EmptyFileIsOwnerOnly) {
  auto p = parse_ok("# nothing granted\n");
  EXPECT_EQ(p.rules(), 0u);
  EXPECT_EQ(allowed_pairs(p, verified(kOther), "x"), 0);
}

// ---------------------------------------------------------------- names and globs

TEST(Policy, GlobsInRules) {
  auto p = parse_ok(R"([[allow]]
kind = ["queue", "topic"]
names = ["jobs.*", "exact", "log-??", "*.audit"]
rights = ["publish"]
uids = [4242]
)");
  auto can = [&](std::string_view name) { return p.allows(verified(kOther), Kind::topic, name, Right::publish); };
  EXPECT_TRUE(can("jobs.a"));
  EXPECT_TRUE(can("jobs.a.b"));  // '*' crosses '.': plain character globbing
  EXPECT_TRUE(can("jobs."));
  EXPECT_FALSE(can("jobs"));
  EXPECT_FALSE(can("jobsx"));
  EXPECT_FALSE(can("xjobs.a"));
  EXPECT_TRUE(can("exact"));
  EXPECT_FALSE(can("exactly"));
  EXPECT_FALSE(can("exac"));
  EXPECT_TRUE(can("log-01"));
  EXPECT_FALSE(can("log-1"));
  EXPECT_FALSE(can("log-001"));
  EXPECT_TRUE(can("x.y.audit"));
  EXPECT_FALSE(can("x.audit.y"));
}

TEST(Policy, StarAloneMatchesEveryName) {
  auto p = parse_ok(R"([[allow]]
kind = "queue"
names = ["*"]
rights = ["consume"]
uids = [4242]
)");
  for (const char* name : {"a", "jobs", "a.b.c", "*", "weird name?"}) {
    EXPECT_TRUE(p.allows(verified(kOther), Kind::queue, name, Right::consume)) << name;
  }
}

TEST(Glob, Basics) {
  EXPECT_TRUE(glob_match("", ""));
  EXPECT_FALSE(glob_match("", "a"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("**", "abc"));
  EXPECT_TRUE(glob_match("a*c", "abbbc"));
  EXPECT_TRUE(glob_match("a*c", "ac"));
  EXPECT_FALSE(glob_match("a*c", "abcd"));
  EXPECT_TRUE(glob_match("a*b*c", "axbxbxc"));
  EXPECT_TRUE(glob_match("?", "x"));
  EXPECT_FALSE(glob_match("?", ""));
  EXPECT_FALSE(glob_match("?", "xy"));
  EXPECT_TRUE(glob_match("*?", "x"));
  EXPECT_FALSE(glob_match("*?", ""));
  EXPECT_TRUE(glob_match("a*", "a*"));   // a '*' in a name is an ordinary byte
  EXPECT_FALSE(glob_match("a\\*", "ab"));  // no escapes: '\' is a literal
  EXPECT_TRUE(glob_match("*ab", "aab"));   // needs a retry after a partial match
  EXPECT_TRUE(glob_match("*aab", "aaab"));
  EXPECT_TRUE(glob_match("s.*.t", "s.a.b.t"));
}

// A backtracking matcher takes exponential time on these; the bound is len(name)*len(pattern).
// No time is asserted: the test's timeout catches a regression.
TEST(Glob, PathologicalPatternsDoNotBacktrackExponentially) {
  std::string name(200'000, 'a');
  EXPECT_FALSE(glob_match("a*a*a*a*a*a*a*a*a*a*b", name));
  EXPECT_TRUE(glob_match("a*a*a*a*a*a*a*a*a*a*", name));
  EXPECT_TRUE(glob_match("a*a*a*a*a*a*a*a*a*a*b", name + "b"));

  std::string many;
  for (int i = 0; i < 500; ++i) many += "*a";
  many += "*b";
  std::string shorter(20'000, 'a');
  EXPECT_FALSE(glob_match(many, shorter));
  EXPECT_TRUE(glob_match(many, shorter + "b"));

  // Through the policy too.
  auto p = parse_ok(fmt::format(R"([[allow]]
kind = "topic"
names = ["{}"]
rights = ["subscribe"]
uids = [4242]
)",
                                many));
  EXPECT_FALSE(p.allows(verified(kOther), Kind::topic, shorter, Right::subscribe));
  EXPECT_TRUE(p.allows(verified(kOther), Kind::topic, shorter + "b", Right::subscribe));
}

// ---------------------------------------------------------------- malformed files

struct Malformed {
  const char* what;
  const char* text;
  int line;
};

TEST(Policy, EveryMalformedFileIsAnErrorNamingItsLine) {
  const Malformed cases[] = {
      {"syntax", "[[allow]]\nkind = \"queue\nnames = [\"a\"]\n", 2},
      {"syntax: bad table header", "\n\n[[allow]\n", 3},
      {"duplicate key", "[[allow]]\nkind = \"queue\"\nkind = \"topic\"\n", 3},
      {"unknown top-level key", "\nversion = 1\n", 2},
      {"unknown table", "\n[deny]\nkind = \"queue\"\n", 2},
      {"allow not a list of tables", "allow = 5\n", 1},
      {"allow as a plain table", "\n\n[allow]\nkind = \"queue\"\n", 3},
      {"unknown key in a rule",
       "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [1]\nuser = [\"x\"]\n", 6},
      {"unknown kind", "[[allow]]\nkind = [\"queue\", \"mailbox\"]\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [1]\n", 2},
      {"kind of the wrong type", "[[allow]]\nkind = 1\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [1]\n", 2},
      {"empty kind list", "[[allow]]\nkind = []\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [1]\n", 2},
      {"unknown right", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\", \"write\"]\nuids = [1]\n", 4},
      {"right of the wrong case", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"Publish\"]\nuids = [1]\n", 4},
      {"empty rights list", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = []\nuids = [1]\n", 4},
      {"empty names list", "[[allow]]\nkind = \"queue\"\nnames = []\nrights = [\"publish\"]\nuids = [1]\n", 3},
      {"empty name", "[[allow]]\nkind = \"queue\"\nnames = [\"\"]\nrights = [\"publish\"]\nuids = [1]\n", 3},
      {"name with a control character", "[[allow]]\nkind = \"queue\"\nnames = [\"a\\nb\"]\nrights = [\"publish\"]\nuids = [1]\n", 3},
      {"names of the wrong type", "[[allow]]\nkind = \"queue\"\nnames = [1, 2]\nrights = [\"publish\"]\nuids = [1]\n", 3},
      {"no subject", "\n[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\n", 2},
      {"no kind", "\n\n[[allow]]\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [1]\n", 3},
      {"no names", "[[allow]]\nkind = \"queue\"\nrights = [\"publish\"]\nuids = [1]\n", 1},
      {"no rights", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nuids = [1]\n", 1},
      {"empty rule", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [1]\n\n[[allow]]\n", 7},
      {"negative uid", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [-1]\n", 5},
      {"uid too large", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [4294967296]\n", 5},
      {"the unknown uid", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [4294967295]\n", 5},
      {"uid as a string", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [\"1000\"]\n", 5},
      {"gid as a float", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\ngids = [1.0]\n", 5},
      {"empty uids list", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = []\ngids = [1]\n", 5},
      {"empty users list", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nusers = []\n", 5},
      {"empty user name", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nusers = [\"\"]\n", 5},
      {"user name with NUL", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nusers = [\"root\\u0000x\"]\n", 5},
      {"anyone as a string", "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nanyone = \"yes\"\n", 5},
  };
  for (const auto& c : cases) {
    auto p = Policy::parse(c.text, kOwner, "test.toml");
    ASSERT_FALSE(p.has_value()) << c.what;
    EXPECT_EQ(p.error().code, Errc::invalid_argument) << c.what;
    auto want = fmt::format("test.toml:{}:", c.line);
    EXPECT_EQ(p.error().detail.rfind(want, 0), 0u) << c.what << ": " << p.error().detail;
  }
}

// ---------------------------------------------------------------- policy files

TEST(PolicyFile, LoadsAndNamesTheFileInErrors) {
  test::ScratchDir dir;
  auto path = dir.file("policy.toml");
  write_file(path, "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"publish\"]\nuids = [4242]\n");
  auto p = Policy::load(path, ::geteuid());
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_EQ(p->rules(), 1u);
  EXPECT_EQ(p->owner(), ::geteuid());

  write_file(path, "[[allow]]\nkind = \"queue\"\nnames = [\"a\"]\nrights = [\"steal\"]\nuids = [4242]\n");
  auto bad = Policy::load(path, ::geteuid());
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_EQ(bad.error().detail.rfind(path + ":4:", 0), 0u) << bad.error().detail;
}

TEST(PolicyFile, MissingFileIsNotFound) {
  test::ScratchDir dir;
  auto p = Policy::load(dir.file("absent.toml"), ::geteuid());
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::not_found);
}

TEST(PolicyFile, UnreadableFileIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  test::ScratchDir dir;
  auto path = dir.file("policy.toml");
  write_file(path, "", 0000);
  auto p = Policy::load(path, ::geteuid());
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::permission_denied);
}

// Whoever can write the policy can grant themselves anything.
TEST(PolicyFile, FileOthersCanWriteIsRefused) {
  test::ScratchDir dir;
  auto path = dir.file("policy.toml");
  for (mode_t mode : {0620, 0602, 0666}) {
    write_file(path, "", mode);
    auto p = Policy::load(path, ::geteuid());
    ASSERT_FALSE(p.has_value()) << std::oct << mode;
    EXPECT_EQ(p.error().code, Errc::permission_denied) << std::oct << mode;
  }
  write_file(path, "", 0644);
  EXPECT_TRUE(Policy::load(path, ::geteuid()).has_value());
}

TEST(PolicyFile, FileOwnedBySomeoneElseIsRefused) {
  test::ScratchDir dir;
  auto path = dir.file("policy.toml");
  write_file(path, "");
  if (::geteuid() == 0) {
    // Root owns it: root is trusted whoever the owner is. Hand it to a stranger.
    EXPECT_TRUE(Policy::load(path, kOwner).has_value());
    ASSERT_EQ(::chown(path.c_str(), kOther, kOtherGid), 0);
    auto p = Policy::load(path, kOwner);
    ASSERT_FALSE(p.has_value());
    EXPECT_EQ(p.error().code, Errc::permission_denied);
    EXPECT_TRUE(Policy::load(path, kOther).has_value());
  } else {
    auto p = Policy::load(path, ::geteuid() + 1);
    ASSERT_FALSE(p.has_value());
    EXPECT_EQ(p.error().code, Errc::permission_denied);
  }
}

TEST(PolicyFile, DirectoryIsRefused) {
  test::ScratchDir dir;
  auto p = Policy::load(dir.path(), ::geteuid());
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::invalid_argument);
}

// A FIFO planted at the path must not hang the daemon at start.
TEST(PolicyFile, FifoIsRefusedWithoutBlocking) {
  test::ScratchDir dir;
  auto path = dir.file("policy.toml");
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto p = Policy::load(path, ::geteuid());
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::invalid_argument);
}

TEST(PolicyFile, HugeFileIsRefused) {
  test::ScratchDir dir;
  auto path = dir.file("policy.toml");
  write_file(path, std::string((1 << 20) + 1, '#'));
  auto p = Policy::load(path, ::geteuid());
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code, Errc::too_large);
}

// ---------------------------------------------------------------- ipcxd.toml

TEST(Config, EmptyFileGivesTheDefaults) {
  for (const char* text : {"", "# nothing\n", "[broker]\n"}) {
    auto c = parse_config(text);
    ASSERT_TRUE(c.has_value()) << c.error().message();
    EXPECT_EQ(c->socket, "");
    EXPECT_EQ(c->state_dir, "");
    EXPECT_EQ(c->http, "127.0.0.1:0");
    EXPECT_EQ(c->policy, "");
    EXPECT_EQ(c->group_window_us, 2000u);
    EXPECT_EQ(c->max_connections, 0u);
    EXPECT_EQ(c->memory_limit, 256u << 20);
  }
}

TEST(Config, EveryKey) {
  auto c = parse_config(R"([broker]
socket = "unix:///run/ipcx/ipcxd.sock"
state_dir = "/var/lib/ipcx"
http = "127.0.0.1:8321"
policy = "/etc/ipcx/policy.toml"
group_window_us = 0
max_connections = 4294967295
memory_limit = 1048576
)");
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_EQ(c->socket, "unix:///run/ipcx/ipcxd.sock");
  EXPECT_EQ(c->state_dir, "/var/lib/ipcx");
  EXPECT_EQ(c->http, "127.0.0.1:8321");
  EXPECT_EQ(c->policy, "/etc/ipcx/policy.toml");
  EXPECT_EQ(c->group_window_us, 0u);
  EXPECT_EQ(c->max_connections, 4294967295u);
  EXPECT_EQ(c->memory_limit, 1048576u);

  auto big = parse_config("[broker]\ngroup_window_us = 1000000\nmemory_limit = 68719476736\n");
  ASSERT_TRUE(big.has_value()) << big.error().message();
  EXPECT_EQ(big->group_window_us, 1'000'000u);
  EXPECT_EQ(big->memory_limit, std::uint64_t{1} << 36);
}

TEST(Config, LoopbackHttpAddressesAreAccepted) {
  const std::pair<const char*, const char*> ok[] = {
      {"127.0.0.1:8321", "127.0.0.1:8321"}, {"127.1.2.3:0", "127.1.2.3:0"}, {"127.255.255.255:65535", "127.255.255.255:65535"},
      {"[::1]:80", "[::1]:80"},             {"localhost:8080", "localhost:8080"}, {"off", ""},
      {"", ""},
  };
  for (auto [value, stored] : ok) {
    auto c = parse_config(fmt::format("[broker]\nhttp = \"{}\"\n", value));
    ASSERT_TRUE(c.has_value()) << value << ": " << c.error().message();
    EXPECT_EQ(c->http, stored);
    EXPECT_TRUE(check_http_address(value).has_value()) << value;
  }
}

// The HTTP API has no authentication: anything reachable from another host is refused.
TEST(Config, NonLoopbackHttpIsRefused) {
  for (const char* value : {"0.0.0.0:8321", "192.168.1.10:80", "10.0.0.1:80", "128.0.0.1:80", "[::]:80",
                            "[fe80::1]:80", "[::ffff:127.0.0.1]:80", "example.com:80", "localhost.evil.com:80",
                            ":8321", "127.0.0.1", "localhost", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                            "127.0.0.1:80x", "::1:80", "[::1]", "[::1]80", "[::1:80", "127.0.0.01:80", "127.1:80",
                            "ON"}) {
    auto c = parse_config(fmt::format("[broker]\n\nhttp = \"{}\"\n", value));
    ASSERT_FALSE(c.has_value()) << value;
    EXPECT_EQ(c.error().code, Errc::invalid_argument) << value;
    EXPECT_EQ(c.error().detail.rfind("ipcxd.toml:3:", 0), 0u) << value << ": " << c.error().detail;
    EXPECT_NE(c.error().detail.find("http"), std::string::npos) << c.error().detail;
    EXPECT_FALSE(check_http_address(value).has_value()) << value;
  }
}

TEST(Config, OutOfRangeAndWrongTypesAreErrorsNamingTheKey) {
  const std::pair<const char*, const char*> bad[] = {
      {"group_window_us", "-1"},
      {"group_window_us", "1000001"},
      {"group_window_us", "\"2000\""},
      {"group_window_us", "2.0"},
      {"max_connections", "-1"},
      {"max_connections", "4294967296"},
      {"max_connections", "true"},
      {"memory_limit", "1048575"},
      {"memory_limit", "0"},
      {"memory_limit", "-268435456"},
      {"memory_limit", "2.5e9"},
      {"memory_limit", "\"256M\""},
      {"socket", "5"},
      {"socket", "[\"unix:///a\"]"},
      {"state_dir", "false"},
      {"state_dir", "\"/var/lib/ipcx\\u0000/tmp\""},
      {"policy", "1979-05-27"},
      {"http", "8321"},
  };
  for (auto [key, value] : bad) {
    auto c = parse_config(fmt::format("# ipcxd\n[broker]\n{} = {}\n", key, value), "etc/ipcxd.toml");
    ASSERT_FALSE(c.has_value()) << key << " = " << value;
    EXPECT_EQ(c.error().code, Errc::invalid_argument);
    EXPECT_EQ(c.error().detail.rfind("etc/ipcxd.toml:3:", 0), 0u) << c.error().detail;
    EXPECT_NE(c.error().detail.find(key), std::string::npos) << c.error().detail;
  }
}

TEST(Config, UnknownKeysTablesAndSyntaxErrorsNameTheirLine) {
  const Malformed cases[] = {
      {"unknown key", "[broker]\nsocket = \"x\"\nsokcet = \"y\"\n", 3},
      {"unknown table", "[broker]\n\n[http]\nport = 1\n", 3},
      {"top-level key", "\nsocket = \"x\"\n", 2},
      {"broker not a table", "broker = 1\n", 1},
      {"syntax", "[broker]\nsocket = \"x\n", 2},
      {"duplicate key", "[broker]\nsocket = \"x\"\nsocket = \"y\"\n", 3},
      {"integer overflow", "[broker]\nmemory_limit = 99999999999999999999\n", 2},
  };
  for (const auto& c : cases) {
    auto r = parse_config(c.text);
    ASSERT_FALSE(r.has_value()) << c.what;
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << c.what;
    auto want = fmt::format("ipcxd.toml:{}:", c.line);
    EXPECT_EQ(r.error().detail.rfind(want, 0), 0u) << c.what << ": " << r.error().detail;
  }
}

TEST(ConfigFile, LoadsNamesTheFileAndRefusesUnsafeFiles) {
  test::ScratchDir dir;
  auto path = dir.file("ipcxd.toml");
  write_file(path, "[broker]\nmax_connections = 1024\n", 0644);
  auto c = load_config(path);
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_EQ(c->max_connections, 1024u);

  write_file(path, "[broker]\nmax_connections = -3\n", 0600);
  auto bad = load_config(path);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().detail.rfind(path + ":2:", 0), 0u) << bad.error().detail;

  write_file(path, "[broker]\n", 0666);
  auto open = load_config(path);
  ASSERT_FALSE(open.has_value());
  EXPECT_EQ(open.error().code, Errc::permission_denied);

  auto missing = load_config(dir.file("absent.toml"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

}  // namespace
// A '?' in a rule stands for one character of a name, never for a subscription's wildcard:
// "room.?" must not cover "room.>" (every topic below room) or "room.*".
TEST(PolicyGlob, AQuestionMarkNeverCoversATopicWildcard) {
  EXPECT_TRUE(glob_match("room.?", "room.a"));
  EXPECT_FALSE(glob_match("room.?", "room.>"));
  EXPECT_FALSE(glob_match("room.?", "room.*"));
  EXPECT_TRUE(glob_match("room.*", "room.>"));
  auto p = Policy::parse("[[allow]]\nkind = \"topic\"\nnames = [\"room.?\"]\nrights = [\"subscribe\"]\nuids = [4242]\n", 0).value();
  const PeerCred peer{.pid = 1, .uid = 4242, .gid = 4242, .verified = true};
  EXPECT_TRUE(p.allows(peer, Kind::topic, "room.a", Right::subscribe));
  EXPECT_FALSE(p.allows(peer, Kind::topic, "room.>", Right::subscribe));
}

}  // namespace ipcx::broker
