// Protobuf over ipcx RPC between real processes: the stubs protoc-gen-ipcx generated for
// proto/pbtest/test.proto, served by ipcx-pb-peer; the plugin's refusals; the example; and
// `ipcx call` (docs/rpc-protobuf.md) against a real server.
#include <fstream>
#include <iterator>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <google/protobuf/descriptor.pb.h>

#include <ipcx/ipcx.hpp>
#include <ipcx/rpc.hpp>
#include <ipcx/rpc_protobuf.hpp>

#include "e2e/cli_harness.hpp"
#include "pbtest/test.ipcx.h"
#include "test_util.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;
using rpc::Code;
using ipcx::pbtest::Calc;

// ipcx-pb-peer listening on a unix socket of its own.
struct PbPeer {
  ScratchDir dir;
  Child child;
  std::string url;

  explicit PbPeer(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {IPCX_PB_PEER, "unix://" + dir.file("pb.sock")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child = Child::start(argv);
    EXPECT_TRUE(child.wait_stdout("\n")) << child.err();
    const auto& out = child.out();
    EXPECT_TRUE(out.starts_with("ready ")) << out << child.err();
    url = out.substr(6, out.find('\n') - 6);
  }
  rpc::Client client() {
    rpc::ClientOptions o;
    o.transport.max_message = std::size_t{16} << 20;
    auto c = rpc::Client::connect(url, o);
    EXPECT_TRUE(c) << (c ? "" : c.error().message());
    return c ? std::move(*c) : rpc::Client();
  }
  ~PbPeer() {
    child.signal(SIGTERM);
    child.finish();
  }
};

ipcx::pbtest::AddRequest add(std::int64_t a, std::int64_t b) {
  ipcx::pbtest::AddRequest r;
  r.set_a(a);
  r.set_b(b);
  return r;
}

// ---- the generated stubs --------------------------------------------------------------------------

TEST(Protobuf, GeneratedClientCallsUnaryStartedAndOneWay) {
  Watchdog wd(60s);
  PbPeer peer;
  auto channel = peer.client();
  Calc::Client calc(channel);

  auto req = add(40, 1);
  req.mutable_at()->set_seconds(1);
  auto sum = calc.Add(req, 10s);
  ASSERT_TRUE(sum) << sum.error().to_string();
  EXPECT_EQ(sum->value(), 42);

  auto pending = calc.StartAdd(add(-5, 2), 10s);
  ASSERT_TRUE(pending) << pending.error().to_string();
  auto later = pending->get();
  ASSERT_TRUE(later) << later.error().to_string();
  EXPECT_EQ(later->value(), -3);

  ASSERT_TRUE(calc.NotifyAdd(add(1, 1), 10s));
  // Nested types keep protobuf's C++ names (Outer_Inner).
  ipcx::pbtest::Outer outer;
  outer.mutable_inner()->set_text("inside");
  auto inner = calc.Unwrap(outer, 10s);
  ASSERT_TRUE(inner) << inner.error().to_string();
  EXPECT_EQ(inner->text(), "inside");
  EXPECT_EQ(channel.stats().in_flight, 0u);
}

TEST(Protobuf, GeneratedClientReadsAStreamPastItsWindowAndItsFinalStatus) {
  Watchdog wd(60s);
  PbPeer peer;
  auto channel = peer.client();
  Calc::Client calc(channel);
  ipcx::pbtest::RangeRequest req;
  req.set_count(1000);  // the client's window is 64 items
  auto s = calc.Range(req, 30s);
  ASSERT_TRUE(s) << s.error().to_string();
  for (int i = 0; i < 1000; ++i) {
    auto item = s->next();
    ASSERT_TRUE(item) << i << ": " << item.error().to_string();
    ASSERT_TRUE(item->has_value()) << "the stream ended after " << i << " items";
    ASSERT_EQ((*item)->value(), i);
  }
  auto end = s->next();
  ASSERT_TRUE(end) << end.error().to_string();
  EXPECT_FALSE(end->has_value());

  req.set_count(2);
  req.set_fail_with("enough");
  auto failing = calc.Range(req, 10s);
  ASSERT_TRUE(failing);
  ASSERT_TRUE(failing->next().value().has_value());
  ASSERT_TRUE(failing->next().value().has_value());
  auto why = failing->next();
  ASSERT_FALSE(why);
  EXPECT_EQ(why.error().code, Code::aborted);
  EXPECT_EQ(why.error().message, "enough");

  // A second service of the same file, with only a streaming rpc.
  ipcx::pbtest::Watcher::Client watcher(channel);
  pbcommon::Num n;
  n.set_value(21);
  auto w = watcher.Watch(n, 10s);
  ASSERT_TRUE(w);
  auto first = w->next();
  ASSERT_TRUE(first && first->has_value());
  EXPECT_EQ((*first)->value(), 42);
}

TEST(Protobuf, AnRpcTheServiceDoesNotOverrideIsUnimplemented) {
  Watchdog wd(60s);
  PbPeer peer;
  auto channel = peer.client();
  auto r = Calc::Client(channel).Missing(add(1, 2), 10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::unimplemented);
  EXPECT_EQ(r.error().message, "ipcx.pbtest.Calc/Missing is not implemented");
}

TEST(Protobuf, ARequestThatDoesNotParseIsInvalidArgument) {
  Watchdog wd(60s);
  PbPeer peer;
  auto channel = peer.client();
  // Field 1, length-delimited, 5 bytes announced, none there: no AddRequest.
  const std::byte truncated[] = {std::byte{0x0a}, std::byte{0x05}};
  auto r = channel.call_raw(Calc::kAdd.name, truncated, 10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::invalid_argument) << r.error().to_string();
  // The connection is still good.
  auto ok = Calc::Client(channel).Add(add(1, 2), 10s);
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->value(), 3);
}

TEST(Protobuf, LargeMessagesAreWrittenIntoTheMemfdAndArriveWhole) {
  Watchdog wd(60s);
  PbPeer peer;
  auto channel = peer.client();
  ipcx::pbtest::Blob blob;
  std::string data(std::size_t{3} << 20, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 % 251);
  blob.set_data(data);
  auto r = Calc::Client(channel).Echo(blob, 30s);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->data() == data);
  // The server encoded the response into a sealed memfd: it arrives as a mapping.
  std::string request;
  ASSERT_TRUE(blob.SerializeToString(&request));
  auto raw = channel.call_raw(Calc::kEcho.name, std::as_bytes(std::span(request.data(), request.size())), 30s);
  ASSERT_TRUE(raw) << raw.error().to_string();
  EXPECT_TRUE(raw->mapped());
  ipcx::pbtest::Blob back;
  ASSERT_TRUE(rpc::Codec<ipcx::pbtest::Blob>::read(raw->bytes(), back));
  EXPECT_TRUE(back.data() == data);
}

TEST(Protobuf, ServeDescribesTheServiceWithItsImportsFirst) {
  Watchdog wd(60s);
  PbPeer peer;
  auto channel = peer.client();
  const std::string name(Calc::service_name);
  auto r = channel.call_raw("ipcx.Reflection/Describe", std::as_bytes(std::span(name.data(), name.size())), 10s);
  ASSERT_TRUE(r) << r.error().to_string();
  google::protobuf::FileDescriptorSet set;
  ASSERT_TRUE(set.ParseFromArray(r->bytes().data(), static_cast<int>(r->size())));
  std::vector<std::string> files;
  for (const auto& f : set.file()) files.push_back(f.name());
  EXPECT_EQ(files, (std::vector<std::string>{"google/protobuf/timestamp.proto", "pbtest/common.proto", "pbtest/test.proto"}));
  // The helper itself, on a file with a dependency shared by two imports.
  auto again = rpc::file_descriptor_set(*ipcx::pbtest::AddRequest::descriptor()->file()->FindServiceByName("Calc"));
  EXPECT_EQ(again.size(), r->size());
}

// ---- the plugin -----------------------------------------------------------------------------------

RunResult run_protoc(const std::string& proto, const ScratchDir& out) {
  auto c = Child::start({IPCX_PROTOC, std::string("--plugin=protoc-gen-ipcx=") + IPCX_PROTOC_GEN_IPCX, "-I" IPCX_PBTEST_PROTO_DIR,
                         "--ipcx_out=" + out.path(), proto});
  int code = c.finish();
  return {code, c.out(), c.err()};
}

TEST(Protobuf, ThePluginRefusesClientAndBidirectionalStreamingNamingTheRpc) {
  Watchdog wd(60s);
  ScratchDir out;
  auto up = run_protoc("bad/client_stream.proto", out);
  EXPECT_NE(up.code, 0);
  EXPECT_NE(up.err.find("rpc ipcx.bad.Up/Upload streams its requests (client streaming)"), std::string::npos) << up.err;
  auto chat = run_protoc("bad/bidi.proto", out);
  EXPECT_NE(chat.code, 0);
  EXPECT_NE(chat.err.find("rpc ipcx.bad.Chat/Talk streams its requests (bidirectional streaming)"), std::string::npos) << chat.err;
  EXPECT_FALSE(std::filesystem::exists(out.file("bad/client_stream.ipcx.h")));
  // Names the stubs cannot declare.
  auto named = run_protoc("bad/names.proto", out);
  EXPECT_NE(named.code, 0);
  EXPECT_NE(named.err.find("rpc ipcx.bad.Named/Client: its name is a C++ keyword or a name the stubs use"), std::string::npos) << named.err;
  auto keyword = run_protoc("bad/keyword.proto", out);
  EXPECT_NE(keyword.code, 0);
  EXPECT_NE(keyword.err.find("rpc ipcx.bad.Store/delete: its name is a C++ keyword"), std::string::npos) << keyword.err;
  auto service = run_protoc("bad/service_name.proto", out);
  EXPECT_NE(service.code, 0);
  EXPECT_NE(service.err.find("service ipcx.bad.Service: its name is a C++ keyword or a name the stubs use"), std::string::npos) << service.err;
  auto clash = run_protoc("bad/clash.proto", out);
  EXPECT_NE(clash.code, 0);
  EXPECT_NE(clash.err.find("rpc ipcx.bad.Clash/StartAdd: the stubs' member StartAdd would be declared twice"), std::string::npos) << clash.err;
  auto good = run_protoc("pbtest/common.proto", out);
  EXPECT_EQ(good.code, 0) << good.err;
  EXPECT_TRUE(std::filesystem::exists(out.file("pbtest/common.ipcx.h")));
}

TEST(Protobuf, TheExampleClientTalksToTheExampleServer) {
  Watchdog wd(60s);
  ScratchDir dir;
  auto server = Child::start({IPCX_CALC_SERVER, "unix://" + dir.file("calc.sock")});
  ASSERT_TRUE(server.wait_stdout("\n")) << server.err();
  auto client = Child::start({IPCX_CALC_CLIENT, "unix://" + dir.file("calc.sock")});
  EXPECT_EQ(client.finish(), 0) << client.err();
  EXPECT_EQ(client.out(), "2 + 3 = 5\n10\n11\n12\n");
  auto call = run_cli({"call", "unix://" + dir.file("calc.sock"), "calc.Calc/Add", R"({"a": 2, "b": 3})"});
  EXPECT_EQ(call.code, 0) << call.err;
  EXPECT_EQ(call.out, "{\"sum\":\"5\"}\n");
  server.signal(SIGTERM);
  EXPECT_EQ(server.finish(), 0) << server.err();
}

// ---- ipcx call ------------------------------------------------------------------------------------

// One line on stderr, and only that.
void expect_one_error(const RunResult& r, int code, const std::string& starts) {
  EXPECT_EQ(r.code, code) << r.out << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_TRUE(r.err.starts_with(starts)) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CallCli, CallsThroughTheServersDescriptors) {
  Watchdog wd(60s);
  PbPeer peer;
  auto r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Add", R"({"a": "40", "b": 1, "at": "1970-01-01T00:00:01Z"})"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"value\":\"42\"}\n");
  EXPECT_EQ(r.err, "");
  // Default values are printed; no JSON argument is an empty request.
  r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Add"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"value\":\"0\"}\n");
  r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Unwrap", R"({"inner": {"text": "hi"}})"});
  EXPECT_EQ(r.out, "{\"text\":\"hi\"}\n") << r.err;
}

// "-" reads the request from standard input: a request of 1 MiB (too long for one argument on
// Linux, whose limit is 128 KiB), and bad JSON there is the same usage error as on the line.
TEST(CallCli, TheRequestMayComeFromStandardInput) {
  Watchdog wd(60s);
  PbPeer peer;
  auto r = run_shell("printf '%s' '{\"a\": 40, \"b\": 2}' | " IPCX_CLI " call '" + peer.url + "' ipcx.pbtest.Calc/Add -");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"value\":\"42\"}\n");
  r = run_shell("{ printf '{\"inner\": {\"text\": \"'; head -c 1048576 /dev/zero | tr '\\0' x; printf '\"}}'; } | " IPCX_CLI " call '" +
                peer.url + "' ipcx.pbtest.Calc/Unwrap -");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"text\":\"" + std::string(1 << 20, 'x') + "\"}\n");
  r = run_shell("echo '{\"a\": \"x\"}' | " IPCX_CLI " call '" + peer.url + "' ipcx.pbtest.Calc/Add -");
  expect_one_error(r, 2, "ipcx call: bad JSON for ipcx.pbtest.AddRequest: ");
  // --timeout starts once standard input has ended: a writer slower than it is no expiry.
  // (A stream long enough to need more than a millisecond, all of it within the timeout.)
  r = run_shell("{ sleep 3; printf '{\"count\": 5000}'; } | " IPCX_CLI " call '" + peer.url + "' ipcx.pbtest.Calc/Range - --timeout 2500");
  EXPECT_EQ(r.code, 0) << r.err;
  std::string items;
  for (int i = 0; i < 5000; ++i) items += fmt::format("{{\"value\":\"{}\"}}\n", i);
  EXPECT_EQ(r.out, items) << r.err;
}

TEST(CallCli, CallsWithADescriptorSetFileWhenTheServerHasNone) {
  Watchdog wd(60s);
  PbPeer peer({"--no-describe"});
  auto r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Add", R"({"a": 2, "b": 3})"});
  expect_one_error(r, 1, "ipcx call: NOT_FOUND: the server has no descriptors for ipcx.pbtest.Calc (give them with --descriptor-set FILE)");
  r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Add", R"({"a": 2, "b": 3})", "--descriptor-set", IPCX_PBTEST_DESC});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"value\":\"5\"}\n");
  r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Range", R"({"count": 2})", "--descriptor-set", IPCX_PBTEST_DESC});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"value\":\"0\"}\n{\"value\":\"1\"}\n");
  // In the file but not served: the server's answer.
  r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Echo", "{}", "--descriptor-set", IPCX_PBTEST_DESC});
  expect_one_error(r, 1, "ipcx call: UNIMPLEMENTED: service ipcx.pbtest.Calc has no method Echo");
}

TEST(CallCli, StreamsPrintOneLinePerItemThenTheFinalStatus) {
  Watchdog wd(60s);
  PbPeer peer;
  auto r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Range", R"({"count": 3})"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"value\":\"0\"}\n{\"value\":\"1\"}\n{\"value\":\"2\"}\n");
  r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Range", R"({"count": 2, "failWith": "two is enough"})"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "{\"value\":\"0\"}\n{\"value\":\"1\"}\n");
  EXPECT_EQ(r.err, "ipcx call: ABORTED: two is enough\n");
  // Field names as written in the .proto work too.
  r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Range", R"({"count": 2, "fail_with": "two is enough"})"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "{\"value\":\"0\"}\n{\"value\":\"1\"}\n");
  EXPECT_EQ(r.err, "ipcx call: ABORTED: two is enough\n");
}

TEST(CallCli, ListPrintsTheServersMethods) {
  Watchdog wd(60s);
  PbPeer peer;
  auto r = run_cli({"call", peer.url, "--list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ipcx.pbtest.Calc/Add\nipcx.pbtest.Calc/Echo\nipcx.pbtest.Calc/Missing\nipcx.pbtest.Calc/Range stream\n"
            "ipcx.pbtest.Calc/Unwrap\nipcx.pbtest.Watcher/Watch stream\n");
  expect_one_error(run_cli({"call", peer.url, "ipcx.pbtest.Calc/Add", "--list"}), 2, "ipcx call: --list takes no METHOD");
}

TEST(CallCli, BadJsonIsAUsageError) {
  Watchdog wd(60s);
  PbPeer peer;
  for (const char* json : {"{", R"({"a": "x"})", R"({"a": 1e400})", R"({"a": 99999999999999999999999})", R"({"a": [1]})",
                           R"({"nope": 1})", R"({"at": "yesterday"})", "[]", "7"}) {
    auto r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Add", json});
    expect_one_error(r, 2, "ipcx call: bad JSON for ipcx.pbtest.AddRequest: ");
  }
  // Deep nesting is refused too, without a crash.
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += R"({"inner":)";
  auto r = run_cli({"call", peer.url, "ipcx.pbtest.Calc/Unwrap", deep});
  expect_one_error(r, 2, "ipcx call: bad JSON for ipcx.pbtest.Outer: ");
}

TEST(CallCli, UnknownMethodsAndServices) {
  Watchdog wd(60s);
  PbPeer peer;
  expect_one_error(run_cli({"call", peer.url, "ipcx.pbtest.Calc/Nope", "{}"}), 2,
                   "ipcx call: service ipcx.pbtest.Calc has no method Nope (it has: Add, Range, Echo, Unwrap, Missing)");
  expect_one_error(run_cli({"call", peer.url, "x.Y/Z", "{}"}), 1, "ipcx call: UNIMPLEMENTED: no service x.Y here");
  expect_one_error(run_cli({"call", peer.url, "x.Y/Z", "{}", "--descriptor-set", IPCX_PBTEST_DESC}), 2,
                   "ipcx call: no service x.Y in " IPCX_PBTEST_DESC);
  expect_one_error(run_cli({"call", peer.url, "ipcx.pbtest.Calc/Missing", "{}"}), 1,
                   "ipcx call: UNIMPLEMENTED: ipcx.pbtest.Calc/Missing is not implemented");
  // Descriptors the server should not have served.
  expect_one_error(run_cli({"call", peer.url, "hostile.Garbage/X", "{}"}), 1,
                   "ipcx call: INTERNAL: the server's descriptors for hostile.Garbage are not a FileDescriptorSet");
  expect_one_error(run_cli({"call", peer.url, "hostile.Absent/X", "{}"}), 1,
                   "ipcx call: INTERNAL: the server's descriptors for hostile.Absent do not define it");
  for (const char* m : {"Add", "ipcx.pbtest.Calc/", "/Add", "a/b/c"})
    expect_one_error(run_cli({"call", peer.url, m, "{}"}), 2, "ipcx call: '");
}

TEST(CallCli, BadUrlsAndFilesAreUsageErrors) {
  Watchdog wd(60s);
  ScratchDir dir;
  expect_one_error(run_cli({"call", "bogus://x", "a.B/C", "{}"}), 2, "ipcx call: ");
  expect_one_error(run_cli({"call", "tcp://127.0.0.1:99999", "a.B/C", "{}"}), 2, "ipcx call: ");
  expect_one_error(run_cli({"call", "unix://" + dir.file("s"), "a.B/C", "{}", "--descriptor-set", dir.file("none")}), 2,
                   "ipcx call: cannot read the descriptor set ");
  // A directory: one line and exit 2 (reading it threw out of the command, which aborted).
  expect_one_error(run_cli({"call", "unix://" + dir.file("s"), "a.B/C", "{}", "--descriptor-set", dir.path()}), 2,
                   "ipcx call: cannot read the descriptor set ");
  std::ofstream(dir.file("junk")) << "\xff\xff\xff not a descriptor set";
  expect_one_error(run_cli({"call", "unix://" + dir.file("s"), "a.B/C", "{}", "--descriptor-set", dir.file("junk")}), 2,
                   "ipcx call: " + dir.file("junk") + " is not a FileDescriptorSet");
  expect_one_error(run_cli({"call", "unix://" + dir.file("s"), "a.B/C", "{}", "--timeout", "0"}), 2, "ipcx: ");
  expect_one_error(run_cli({"call", "unix://" + dir.file("s")}), 2, "ipcx call: say which method to call");
}

TEST(CallCli, ADeadServerIsUnavailable) {
  Watchdog wd(60s);
  std::string url;
  {
    PbPeer peer;
    url = peer.url;
    peer.child.signal(SIGKILL);
  }
  expect_one_error(run_cli({"call", url, "ipcx.pbtest.Calc/Add", "{}"}), 1, "ipcx call: UNAVAILABLE: ");
  expect_one_error(run_cli({"call", url, "--list"}), 1, "ipcx call: UNAVAILABLE: ");
}

TEST(CallCli, AServerThatIsNotAnRpcServerGivesOneLineNotAHang) {
  Watchdog wd(60s);
  ScratchDir dir;
  const std::string url = "unix://" + dir.file("echo.sock");
  auto echo = Child::cli({"listen", url, "--echo", "--quiet"});
  ASSERT_TRUE(echo.wait_stderr("listening")) << echo.err();
  auto r = run_cli({"call", url, "ipcx.pbtest.Calc/Add", "{}", "--timeout", "5000"});
  expect_one_error(r, 1, "ipcx call: INTERNAL: ");
  EXPECT_NE(r.err.find("(is an ipcx::rpc::Server listening there?)"), std::string::npos) << r.err;
  echo.signal(SIGTERM);
  echo.finish();
  // One that reads and never answers: the deadline.
  auto silent = Child::cli({"listen", url, "--quiet"});
  ASSERT_TRUE(silent.wait_stderr("listening")) << silent.err();
  expect_one_error(run_cli({"call", url, "ipcx.pbtest.Calc/Add", "{}", "--timeout", "300"}), 1, "ipcx call: DEADLINE_EXCEEDED: ");
  silent.signal(SIGTERM);
  silent.finish();
}

}  // namespace
}  // namespace ipcx::test
