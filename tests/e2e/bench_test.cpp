// `ipcx bench` end to end: the real binary, its real echo children (`ipcx __bench-echo`), real
// signals. Figures are never asserted (benchmarks are not tests), only their shape.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <nlohmann/json.hpp>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using ipcx::test::Child;
using ipcx::test::count_lines;
using ipcx::test::run_cli;
using ipcx::test::ScratchDir;
using nlohmann::json;

namespace {

// The peer libraries this build found (tests/e2e/CMakeLists.txt defines the macros).
#if IPCX_TEST_BENCH_NNG
constexpr bool kNng = true;
#else
constexpr bool kNng = false;
#endif
#if IPCX_TEST_BENCH_ZMQ
constexpr bool kZmq = true;
#else
constexpr bool kZmq = false;
#endif
#if IPCX_TEST_BENCH_PEERS
constexpr bool kBoost = true;
#else
constexpr bool kBoost = false;
#endif
#if IPCX_TEST_BENCH_GRPC
constexpr bool kGrpc = true;
#else
constexpr bool kGrpc = false;
#endif

std::vector<std::string> bench_objects();
bool sysv_queue_of(pid_t bench);

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// Debian's python3-jsonschema (scripts/install-deps.sh) validates `file` against
// docs/schema/NAME.schema.json: empty when it is valid, else what the validator said.
std::string schema_errors(const std::string& file, const std::string& name) {
  const std::string schema = std::string(IPCX_SOURCE_DIR) + "/docs/schema/" + name + ".schema.json";
  auto r = ipcx::test::run_shell(
      "/usr/bin/python3 -c 'import json, sys, jsonschema\n"
      "s = json.load(open(sys.argv[2])); jsonschema.Draft202012Validator.check_schema(s)\n"
      "jsonschema.Draft202012Validator(s).validate(json.load(open(sys.argv[1])))' '" +
      file + "' '" + schema + "' 2>&1");
  return r.code == 0 ? std::string() : "exit " + std::to_string(r.code) + ": " + r.out;
}

const json* find_row(const json& doc, const std::string& mech, const std::string& impl) {
  for (auto& r : doc.at("results"))  // at(): a missing key fails the test instead of asserting
    if (r["mechanism"] == mech && r["impl"] == impl) return &r;
  return nullptr;
}

// The echo children of bench process `bench`, found by their command line (`__bench-echo ...
// --parent PID`), so that benches run by other tests at the same time do not count.
std::vector<pid_t> echo_children_of(pid_t bench) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream in(e.path() / "cmdline");
    std::vector<std::string> argv;
    for (std::string a; std::getline(in, a, '\0');) argv.push_back(a);
    if (argv.size() < 2 || argv[1] != "__bench-echo") continue;
    auto at = std::find(argv.begin(), argv.end(), "--parent");
    if (at != argv.end() && at + 1 != argv.end() && *(at + 1) == std::to_string(bench)) out.push_back(std::stoi(name));
  }
  return out;
}

bool wait_for_echo_child(pid_t bench, std::chrono::milliseconds timeout = 20s) {
  for (auto until = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < until;) {
    if (!echo_children_of(bench).empty()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

bool run_dir_exists(pid_t bench) { return std::filesystem::exists("/tmp/ipcx-bench-" + std::to_string(bench)); }

// Fails the test if the bench left its run directory behind, and removes it then (a later
// tests/check-leftovers.sh would blame some other test).
void expect_no_run_dir(pid_t bench) {
  EXPECT_FALSE(run_dir_exists(bench)) << "/tmp/ipcx-bench-" << bench << " left behind";
  std::error_code ec;
  std::filesystem::remove_all("/tmp/ipcx-bench-" + std::to_string(bench), ec);
}

std::string signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP"; }

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST(Bench, QuickRunWritesRawAndIpcxRows) {
  ScratchDir dir;
  auto file = dir.file("bench.json");
  auto r = run_cli({"bench", "--quick", "--rounds", "200", "--only", "pipe,unix,signal", "--sizes", "64", "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object()) << "not JSON: " << file;
  EXPECT_EQ(doc["schema"], 1);
  auto& machine = doc["machine"];
  EXPECT_TRUE(machine["cpu_model"].is_string());
  EXPECT_GE(machine["cpus"].get<int>(), 1);
  EXPECT_TRUE(machine["kernel"].is_string());
  EXPECT_EQ(machine["pinned"].size(), 2u);
  EXPECT_TRUE(machine["smt_siblings"].is_boolean());
  for (std::string mech : {"pipe", "unix", "signal"}) {
    for (std::string impl : {"raw", "ipcx"}) {
      auto* row = find_row(doc, mech, impl);
      ASSERT_NE(row, nullptr) << mech << " " << impl << "\n" << doc.dump(1);
      EXPECT_EQ((*row)["size"], mech == "signal" ? 4 : 64) << mech;  // signals carry one int
      EXPECT_EQ((*row)["repeat"], 1);
      // Every byte of the verify rounds was compared, both ways (a signal's value too).
      EXPECT_EQ((*row)["verified"], "content") << row->dump();
      for (auto metric : {"rtt_p50_ns", "rtt_p99_ns", "oneway_p50_ns", "oneway_p99_ns", "msgs_per_s", "bytes_per_s"})
        EXPECT_GT((*row)[metric].get<double>(), 0) << mech << " " << impl << " " << metric;
      // Each round's one way ends inside its round trip: so do their percentiles.
      EXPECT_LE((*row)["oneway_p50_ns"].get<double>(), (*row)["rtt_p50_ns"].get<double>()) << row->dump();
      EXPECT_LE((*row)["oneway_p99_ns"].get<double>(), (*row)["rtt_p99_ns"].get<double>()) << row->dump();
    }
  }
  EXPECT_NE(r.out.find("p50/raw"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1-way p50"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("echo child on cpu"), std::string::npos) << r.out;
  EXPECT_EQ(schema_errors(file, "bench"), "");
}

// The process-shared synchronisation rows: no payload (size 0), self-timed (mutex rows) or a
// semaphore ping-pong; the peer (Boost.Interprocess) is measured when the build found it, and
// otherwise listed as skipped, never left out silently.
TEST(Bench, SyncRowsWriteEveryImplOfThisBuild) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer sees one process: a mutex the other process locked looks unlocked to it";
#endif
  ScratchDir dir;
  auto file = dir.file("bench.json");
  const std::vector<std::string> mechs = {"mutex-uncontended", "mutex-handoff", "mutex-handoff-block", "semaphore",
                                          "semaphore-block"};
  std::string only;
  for (auto& m : mechs) only += (only.empty() ? "" : ",") + m;
  auto r = run_cli({"bench", "--quick", "--rounds", "200", "--only", only, "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object()) << "not JSON: " << file;
  ASSERT_TRUE(doc["skipped"].is_array()) << doc.dump(1);
  for (auto& mech : mechs) {
    const bool has_peer = mech.find("-block") == std::string::npos;  // -block rows compare ipcx's spin only
    for (std::string impl : {"raw", "ipcx", "peer"}) {
      auto* row = find_row(doc, mech, impl);
      if (impl == "peer") {
        bool skipped = false;
        for (auto& s : doc["skipped"]) skipped |= s["mechanism"] == mech && s["impl"] == "peer";
#if IPCX_TEST_BENCH_PEERS
        EXPECT_TRUE(has_peer ? row != nullptr : row == nullptr) << mech << "\n" << doc.dump(1);
        EXPECT_FALSE(skipped) << mech;
#else
        EXPECT_EQ(row, nullptr) << mech;
        EXPECT_EQ(skipped, has_peer) << mech << "\n" << doc.dump(1);
        if (has_peer) {
          EXPECT_NE(r.out.find("skipped: "), std::string::npos) << r.out;
        }
#endif
        if (!row) continue;
      }
      ASSERT_NE(row, nullptr) << mech << " " << impl << "\n" << doc.dump(1);
      EXPECT_EQ((*row)["size"], 0) << mech;  // locks and semaphores carry no payload
      EXPECT_EQ((*row)["repeat"], 1);
      EXPECT_EQ((*row)["verified"], "no payload") << row->dump();
      auto p50 = (*row)["rtt_p50_ns"].get<double>(), p99 = (*row)["rtt_p99_ns"].get<double>();
      EXPECT_GT(p50, 0) << mech << " " << impl;
      EXPECT_LE(p50, p99) << mech << " " << impl;
      EXPECT_GT((*row)["msgs_per_s"].get<double>(), 0) << mech << " " << impl;
      EXPECT_EQ((*row)["bytes_per_s"].get<double>(), 0) << mech << " " << impl;
      // The mutex rows time themselves: no one-way figure; the semaphore rows are ping-pongs.
      if (mech.starts_with("mutex")) EXPECT_TRUE((*row)["oneway_p50_ns"].is_null()) << row->dump();
      else EXPECT_GT((*row)["oneway_p50_ns"].get<double>(), 0) << row->dump();
    }
    EXPECT_NE(r.out.find(mech + " "), std::string::npos) << r.out;
  }
}

// A lock or a semaphore has no descriptor to report the echo child's death: the parent waits in
// slices and gives up once the child is gone, with one line.
TEST(Bench, SyncEchoChildDeathIsOneLineError) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer sees one process: a mutex the other process locked looks unlocked to it";
#endif
  for (std::string mech : {"semaphore", "mutex-handoff"}) {
    auto bench = Child::cli({"bench", "--only", mech, "--rounds", "10000000"});
    ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
    ASSERT_TRUE(wait_for_echo_child(bench.pid())) << bench.out() << bench.err();
    std::this_thread::sleep_for(100ms);
    for (pid_t child : echo_children_of(bench.pid())) ::kill(child, SIGKILL);
    EXPECT_EQ(bench.finish(), 1) << mech << ": " << bench.err();
    EXPECT_EQ(count_lines(bench.err()), 1) << bench.err();
    EXPECT_NE(bench.err().find(mech + " raw 0 B: "), std::string::npos) << bench.err();
    expect_no_run_dir(bench.pid());
  }
}

// The messaging-pattern rows: raw and ipcx under the row's own name; the ZeroMQ peer under its
// own row name (zmq-ipc, ...) with "impl":"peer" and the row it is compared with, or listed as
// skipped when the build has no libzmq. The fan-out row says how many receivers got every message.
TEST(Bench, PatternRowsWriteEveryImplOfThisBuild) {
  ScratchDir dir;
  auto file = dir.file("bench.json");
  auto r = run_cli({"bench", "--quick", "--rounds", "200", "--only", "reqrep-unix,pushpull-unix,pubsub-unix", "--sizes",
                    "64", "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object()) << "not JSON: " << file;
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"reqrep-unix", "zmq-ipc"}, {"pushpull-unix", "zmq-pushpull-ipc"}, {"pubsub-unix", "zmq-pubsub-ipc"}};
  for (auto& [mech, peer] : rows) {
    std::vector<const json*> found;
    for (std::string impl : {"raw", "ipcx"}) {  // every build measures these
      auto* row = find_row(doc, mech, impl);
      ASSERT_NE(row, nullptr) << mech << " " << impl << "\n" << doc.dump(1);
      EXPECT_FALSE(row->contains("baseline")) << row->dump();
      found.push_back(row);
    }
    auto* peer_row = find_row(doc, peer, "peer");
    bool skipped = false;
    for (auto& s : doc["skipped"]) skipped |= s["mechanism"] == peer && s["impl"] == "peer";
#if IPCX_TEST_BENCH_ZMQ
    ASSERT_NE(peer_row, nullptr) << peer << "\n" << doc.dump(1);
    EXPECT_FALSE(skipped) << peer;
    EXPECT_EQ((*peer_row)["baseline"], mech) << peer_row->dump();
    EXPECT_NE(r.out.find(peer + " "), std::string::npos) << r.out;
    found.push_back(peer_row);
#else
    EXPECT_EQ(peer_row, nullptr) << peer;
    EXPECT_TRUE(skipped) << peer << "\n" << doc.dump(1);
    EXPECT_NE(r.out.find("skipped: "), std::string::npos) << r.out;
#endif
    EXPECT_EQ(find_row(doc, mech, "peer"), nullptr) << "the peer is reported as " << peer;
    for (auto* row : found) {
      EXPECT_EQ((*row)["size"], 64) << row->dump();
      EXPECT_EQ((*row)["verified"], "stamps") << row->dump();  // each message stamped and checked
      auto p50 = (*row)["rtt_p50_ns"].get<double>(), p99 = (*row)["rtt_p99_ns"].get<double>();
      EXPECT_GT(p50, 0) << row->dump();
      EXPECT_LE(p50, p99) << row->dump();
      EXPECT_GT((*row)["msgs_per_s"].get<double>(), 0) << row->dump();
      if (mech == "pubsub-unix") {
        EXPECT_EQ((*row)["receivers"], 4) << row->dump();
        EXPECT_NEAR((*row)["delivered_msgs_per_s"].get<double>(), 4 * (*row)["msgs_per_s"].get<double>(), 1.0)
            << row->dump();
      } else {
        EXPECT_FALSE(row->contains("receivers")) << row->dump();
      }
    }
  }
  EXPECT_NE(r.out.find("4 receivers:"), std::string::npos) << r.out;
  EXPECT_EQ(schema_errors(file, "bench"), "");  // peers' baselines, the fan-out's receivers, skipped
}

// The plain transport rows' peers: NNG's pair0 over ipc:// beside unix, ZeroMQ's PAIR over TCP
// beside tcp, Boost.Interprocess's message_queue beside mq. Each is measured, its bytes checked
// by the verify rounds and its ratios taken to its row's raw measurement when this build has the
// library, and listed as skipped otherwise.
TEST(Bench, TransportPeersAreMeasuredOrListedAsSkipped) {
  ScratchDir dir;
  auto file = dir.file("bench.json");
  auto r = run_cli({"bench", "--quick", "--rounds", "200", "--only", "unix,tcp,mq", "--sizes", "64", "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object()) << "not JSON: " << file;
  const std::tuple<std::string, std::string, bool> peers[] = {
      {"nng-ipc", "unix", kNng}, {"zmq-tcp", "tcp", kZmq}, {"boost-mq", "mq", kBoost}};
  for (auto& [peer, baseline, built] : peers) {
    SCOPED_TRACE(peer);
    bool skipped = false;
    for (auto& s : doc["skipped"]) skipped |= s["mechanism"] == peer && s["impl"] == "peer";
    const auto* row = find_row(doc, peer, "peer");
    EXPECT_EQ(skipped, !built) << doc.dump(1);
    if (!built) {
      EXPECT_EQ(row, nullptr) << doc.dump(1);
      continue;
    }
    ASSERT_NE(row, nullptr) << doc.dump(1);
    EXPECT_EQ((*row)["baseline"], baseline);
    EXPECT_EQ((*row)["size"], 64);
    EXPECT_EQ((*row)["verified"], "content") << row->dump();
    for (auto metric : {"rtt_p50_ns", "rtt_p99_ns", "oneway_p50_ns", "msgs_per_s"})
      EXPECT_GT((*row)[metric].get<double>(), 0) << metric;
  }
  EXPECT_EQ(bench_objects(), std::vector<std::string>{});
  EXPECT_EQ(schema_errors(file, "bench"), "");
}

// The RPC rows: the raw round trip (request and response of the same size, one in flight, every
// byte of the verify rounds compared), ipcx's unary call (a connection served on its own thread
// over unix:// and shm://, or by the event loop), and gRPC's unary call beside rpc-unix, its
// responses compared too, or listed as skipped when this build has no gRPC. Calls time
// themselves: no one-way figures.
TEST(Bench, RpcRowsMeasureIpcxAndGrpcBesideTheRawRoundTrip) {
  ScratchDir dir;
  auto file = dir.file("bench.json");
  auto r = run_cli({"bench", "--quick", "--rounds", "200", "--only", "rpc-unix,rpc-unix-loop,rpc-shm", "--sizes", "64,65536", "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object()) << "not JSON: " << file;
  bool skipped = false;
  for (auto& s : doc["skipped"]) skipped |= s["mechanism"] == "grpc-unix" && s["impl"] == "peer";
  EXPECT_EQ(skipped, !kGrpc) << doc.dump(1);
  std::size_t rows = 0;
  for (auto& row : doc["results"]) {
    SCOPED_TRACE(row.dump());
    ++rows;
    const bool peer = row["impl"] == "peer";
    const std::set<std::string> ours{"rpc-unix", "rpc-unix-loop", "rpc-shm"};
    if (peer) {
      EXPECT_EQ(row["mechanism"], "grpc-unix");
      EXPECT_EQ(row["baseline"], "rpc-unix");
    } else {
      EXPECT_TRUE(ours.contains(row["mechanism"].get<std::string>()));
      EXPECT_TRUE(row["impl"] == "raw" || row["impl"] == "ipcx");
    }
    EXPECT_EQ(row["verified"], "content");
    EXPECT_GT(row["rtt_p50_ns"].get<double>(), 0);
    EXPECT_LE(row["rtt_p50_ns"].get<double>(), row["rtt_p99_ns"].get<double>());
    EXPECT_GT(row["msgs_per_s"].get<double>(), 0);
    EXPECT_TRUE(row["oneway_p50_ns"].is_null());
  }
  EXPECT_EQ(rows, kGrpc ? 14u : 12u) << doc.dump(1);  // 3 rows x raw, ipcx x 2 sizes (+ gRPC at 2 sizes)
  EXPECT_NE(r.out.find("rpc-shm       ipcx"), std::string::npos) << r.out;
  if (kGrpc) {
    EXPECT_NE(r.out.find("grpc-unix     peer"), std::string::npos) << r.out;
  }
  EXPECT_EQ(bench_objects(), std::vector<std::string>{});
  EXPECT_EQ(schema_errors(file, "bench"), "");
}

// --only takes a peer row's name too: it selects the row the peer belongs to (raw included, for
// the ratios); sizes below 8 bytes (a sequence number) are measured at 8.
TEST(Bench, PeerRowNameSelectsItsRow) {
  ScratchDir dir;
  auto file = dir.file("bench.json");
  auto r = run_cli({"bench", "--quick", "--rounds", "100", "--only", "zmq-pushpull-ipc", "--sizes", "1", "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["args"]["mechanisms"], json::array({"pushpull-unix"})) << doc.dump(1);
  auto* raw = find_row(doc, "pushpull-unix", "raw");
  ASSERT_NE(raw, nullptr) << doc.dump(1);
  EXPECT_EQ((*raw)["size"], 8);
}

// --impls measures only the ways named, in the usual order (raw, ipcx, peer); without raw there
// are no ratios.
TEST(Bench, ImplsSelectsTheWaysMeasured) {
  ScratchDir dir;
  auto file = dir.file("bench.json");
  auto r = run_cli({"bench", "--quick", "--rounds", "100", "--only", "unix,reqrep-unix", "--sizes", "64", "--impls",
                    "ipcx", "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["args"]["impls"], json::array({"ipcx"})) << doc.dump(1);
  ASSERT_EQ(doc["results"].size(), 2u) << doc.dump(1);
  for (auto& row : doc["results"]) EXPECT_EQ(row["impl"], "ipcx") << row.dump();
  EXPECT_TRUE(doc["skipped"].empty()) << doc.dump(1);  // no peer asked for: none skipped
}

TEST(Bench, RepeatReportsMedianWithinMinAndMax) {
  ScratchDir dir;
  auto file = dir.file("bench.json");
  auto r = run_cli({"bench", "--quick", "--rounds", "200", "--repeat", "2", "--only", "pipe,unix-seq", "--sizes", "64",
                    "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("median of 2 runs"), std::string::npos) << r.out;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["args"]["repeat"], 2);
  ASSERT_EQ(doc["results"].size(), 4u) << doc.dump(1);  // one summary per (mechanism, impl, size)
  for (auto& row : doc["results"]) {
    EXPECT_EQ(row["repeat"], 2) << row.dump();
    for (auto metric : {"rtt_p50_ns", "rtt_p99_ns", "oneway_p50_ns", "oneway_p99_ns", "msgs_per_s", "bytes_per_s"}) {
      auto median = row[metric].get<double>();
      EXPECT_LE(row["min"][metric].get<double>(), median) << row.dump();
      EXPECT_LE(median, row["max"][metric].get<double>()) << row.dump();
    }
  }
  EXPECT_EQ(schema_errors(file, "bench"), "");  // min and max of every figure
}

// Interrupted while the parent blocks on a socket (unix) or in a signal wait (signal): the echo
// child is killed, the run directory removed, and the exit code says which signal.
class BenchInterrupt : public ::testing::TestWithParam<std::pair<std::string, int>> {};

TEST_P(BenchInterrupt, LeavesNoChildAndNoRunDirectory) {
  auto [mech, sig] = GetParam();
  // Far more round trips than the test waits for: the signal lands mid-measurement.
  auto bench = Child::cli({"bench", "--only", mech, "--rounds", "1000000"});
  ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
  ASSERT_TRUE(wait_for_echo_child(bench.pid())) << bench.out() << bench.err();
  EXPECT_TRUE(run_dir_exists(bench.pid()));
  std::this_thread::sleep_for(100ms);  // into the ping-pong
  bench.signal(sig);
  EXPECT_EQ(bench.finish(), 128 + sig) << bench.err();
  EXPECT_EQ(count_lines(bench.err()), 1) << bench.err();
  EXPECT_NE(bench.err().find(signal_name(sig)), std::string::npos) << bench.err();
  expect_no_run_dir(bench.pid());
  EXPECT_TRUE(echo_children_of(bench.pid()).empty());
}

INSTANTIATE_TEST_SUITE_P(Bench, BenchInterrupt,
                         ::testing::Values(std::pair{std::string("unix"), SIGINT},
                                           std::pair{std::string("signal"), SIGINT},
                                           std::pair{std::string("pipe"), SIGTERM},
                                           // What closing the terminal sends.
                                           std::pair{std::string("fifo"), SIGHUP},
                                           // Four echo children: all of them killed.
                                           std::pair{std::string("pubsub-unix"), SIGINT}),
                         [](const auto& test) {
                           auto name = signal_name(test.param.second);
                           std::transform(name.begin(), name.end(), name.begin(), ::tolower);
                           auto mech = test.param.first;
                           std::replace(mech.begin(), mech.end(), '-', '_');
                           return mech + "_" + name;
                         });

// A parent blocked in msgsnd on a full System V queue, or msgrcv on an empty one, has no peer to
// lose when the echo child is killed: the interrupt also removes the queue, so the run unwinds
// at whatever moment it comes (it used to wait for ever, in the bursts most often).
TEST(Bench, SysvInterruptedAtAnyMomentUnwinds) {
  for (std::string impl : {"raw", "ipcx"}) {
    for (int delay_ms : {150, 250, 350, 450, 550}) {
      SCOPED_TRACE(impl + ", SIGINT after " + std::to_string(delay_ms) + " ms");
      auto bench = Child::cli({"bench", "--only", "sysv", "--sizes", "64", "--impls", impl});
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      bench.signal(SIGINT);
      const int code = bench.finish(20s);
      EXPECT_TRUE(code == 128 + SIGINT || code == 0) << code << "\n" << bench.err();  // 0: it was over
      expect_no_run_dir(bench.pid());
      EXPECT_FALSE(sysv_queue_of(bench.pid())) << "the ipcx measurement's queue";
    }
  }
}

// Started to survive a closed terminal (nohup: SIGHUP ignored), the bench keeps it ignored, and
// so does its echo child: only the SIGTERM that follows ends the run.
TEST(Bench, IgnoredSighupStaysIgnored) {
  auto bench = Child::shell(std::string("trap '' HUP; exec ") + IPCX_CLI + " bench --only pipe --rounds 1000000");
  ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
  ASSERT_TRUE(wait_for_echo_child(bench.pid())) << bench.out() << bench.err();
  bench.signal(SIGHUP);
  for (pid_t child : echo_children_of(bench.pid())) ::kill(child, SIGHUP);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(echo_children_of(bench.pid()).empty());
  bench.signal(SIGTERM);
  EXPECT_EQ(bench.finish(), 128 + SIGTERM) << bench.err();  // 129 had SIGHUP ended it
  EXPECT_NE(bench.err().find("SIGTERM"), std::string::npos) << bench.err();
  expect_no_run_dir(bench.pid());
}

// An echo child that dies mid-measurement fails the run with one line, even when the parent
// waits in a signal wait, which no descriptor would wake.
TEST(Bench, EchoChildDeathIsOneLineError) {
  auto bench = Child::cli({"bench", "--only", "signal", "--rounds", "1000000"});
  ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
  ASSERT_TRUE(wait_for_echo_child(bench.pid())) << bench.out() << bench.err();
  std::this_thread::sleep_for(100ms);
  for (pid_t child : echo_children_of(bench.pid())) ::kill(child, SIGKILL);
  EXPECT_EQ(bench.finish(), 1) << bench.err();
  EXPECT_EQ(count_lines(bench.err()), 1) << bench.err();
  EXPECT_NE(bench.err().find("signal raw 4 B: "), std::string::npos) << bench.err();
  expect_no_run_dir(bench.pid());
}

// A fan-out row's subscriber that dies mid-measurement fails the run with one line; the other
// subscribers are killed and reaped too.
TEST(Bench, FanoutSubscriberDeathIsOneLineError) {
  auto bench = Child::cli({"bench", "--only", "pubsub-unix", "--sizes", "64", "--rounds", "1000000"});
  ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
  std::vector<pid_t> children;
  for (auto until = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < until;) {
    children = echo_children_of(bench.pid());
    if (children.size() == 4) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(children.size(), 4u) << bench.out() << bench.err();
  std::this_thread::sleep_for(200ms);  // into the ping-pong
  ::kill(children[2], SIGKILL);
  EXPECT_EQ(bench.finish(), 1) << bench.err();
  EXPECT_EQ(count_lines(bench.err()), 1) << bench.err();
  EXPECT_NE(bench.err().find("pubsub-unix raw 64 B: "), std::string::npos) << bench.err();
  expect_no_run_dir(bench.pid());
  EXPECT_TRUE(echo_children_of(bench.pid()).empty());
}

// The echo children of `bench` measuring `impl` (their --impl argument).
std::vector<pid_t> echo_children_measuring(pid_t bench, const std::string& impl) {
  std::vector<pid_t> out;
  for (pid_t child : echo_children_of(bench)) {
    std::ifstream in("/proc/" + std::to_string(child) + "/cmdline");
    std::vector<std::string> argv;
    for (std::string a; std::getline(in, a, '\0');) argv.push_back(a);
    auto at = std::find(argv.begin(), argv.end(), "--impl");
    if (at != argv.end() && at + 1 != argv.end() && *(at + 1) == impl) out.push_back(child);
  }
  return out;
}

// An echo child killed while ipcx or ZeroMQ is measured (endpoints that do not all see a peer
// die by themselves: the parent waits in slices) fails the run with one line naming the row.
class BenchPatternDeath : public ::testing::TestWithParam<std::tuple<std::string, std::string, std::string>> {};

TEST_P(BenchPatternDeath, IsOneLineError) {
  auto [mech, impl, row] = GetParam();
  if (!kZmq && row.starts_with("zmq-")) GTEST_SKIP() << "this build has no ZeroMQ";
  if (!kGrpc && row == "grpc-unix") GTEST_SKIP() << "this build has no gRPC";
  // Enough round trips that the measurement is still running 50 ms after the child is found
  // on a fast host: a socket round trip takes 5 µs or more, busy-polling shared memory about
  // 1 µs. --impls: only the measurement under test.
  std::string rounds = mech.find("shm") != std::string::npos ? "5000000" : "200000";
  auto bench = Child::cli({"bench", "--only", mech, "--sizes", "64", "--impls", impl, "--rounds", rounds});
  ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
  std::vector<pid_t> children;
  for (auto until = std::chrono::steady_clock::now() + 60s; children.empty() && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(2ms);
    children = echo_children_measuring(bench.pid(), impl);
  }
  ASSERT_FALSE(children.empty()) << bench.out() << bench.err();
  std::this_thread::sleep_for(50ms);
  ::kill(children.back(), SIGKILL);
  EXPECT_EQ(bench.finish(), 1) << bench.err();
  EXPECT_EQ(count_lines(bench.err()), 1) << bench.err();
  EXPECT_NE(bench.err().find(row + " " + impl + " 64 B: "), std::string::npos) << bench.err();
  expect_no_run_dir(bench.pid());
  EXPECT_TRUE(echo_children_of(bench.pid()).empty());
}

INSTANTIATE_TEST_SUITE_P(Bench, BenchPatternDeath,
                         ::testing::Values(std::tuple{std::string("reqrep-unix"), std::string("ipcx"), std::string("reqrep-unix")},
                                           std::tuple{std::string("pushpull-unix"), std::string("ipcx"), std::string("pushpull-unix")},
                                           std::tuple{std::string("pubsub-unix"), std::string("ipcx"), std::string("pubsub-unix")},
                                           std::tuple{std::string("reqrep-unix"), std::string("peer"), std::string("zmq-ipc")},
                                           std::tuple{std::string("pushpull-unix"), std::string("peer"), std::string("zmq-pushpull-ipc")},
                                           std::tuple{std::string("pubsub-unix"), std::string("peer"), std::string("zmq-pubsub-ipc")},
                                           std::tuple{std::string("rpc-unix"), std::string("peer"), std::string("grpc-unix")},
                                           std::tuple{std::string("rpc-unix"), std::string("ipcx"), std::string("rpc-unix")},
                                           std::tuple{std::string("rpc-unix-loop"), std::string("ipcx"), std::string("rpc-unix-loop")},
                                           std::tuple{std::string("rpc-shm"), std::string("ipcx"), std::string("rpc-shm")}),
                         [](const auto& test) {
                           auto name = std::get<2>(test.param) + "_" + std::get<1>(test.param);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(Bench, UsageErrorsAreOneLineAndExitTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"--only", "carrier-pigeon"}, {"--repeat", "0"},     {"--repeat", "101"}, {"--repeat", "two"},
      {"--rounds", "0"},            {"--rounds", "-5"},    {"--sizes", "0"},    {"--sizes", "64,lots"},
      {"--sizes", "67108865"},      {"--impls", "zmq"},    {"--impls", "raw,fast"},
  };
  for (auto& c : cases) {
    std::vector<std::string> args{"bench"};
    args.insert(args.end(), c.begin(), c.end());
    auto r = run_cli(args);
    EXPECT_EQ(r.code, 2) << c[0] << " " << c[1] << ": " << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  // An empty list is no list: it does not mean the default. Nothing is measured (no header on
  // stdout); with the flag ignored, the short run would measure and exit 0.
  const std::vector<std::vector<std::string>> empty = {
      {"--only", ""}, {"--only", ","}, {"--sizes", ""}, {"--sizes", ","}, {"--sizes", ",,"}, {"--json", ""},
      {"--impls", ""}, {"--impls", ","},
  };
  for (auto& c : empty) {
    std::vector<std::string> args{"bench", c[0], c[1], "--quick", "--rounds", "100"};
    if (c[0] != "--only") args.insert(args.end(), {"--only", "pipe"});
    if (c[0] != "--sizes") args.insert(args.end(), {"--sizes", "64"});
    auto r = run_cli(args);
    EXPECT_EQ(r.code, 2) << c[0] << " '" << c[1] << "': " << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(c[0]), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  auto unknown = run_cli({"bench", "--only", "pipe,carrier-pigeon"});
  EXPECT_NE(unknown.err.find("known: pipe,fifo,unix"), std::string::npos) << unknown.err;
  // The echo children's entry point is internal.
  auto help = run_cli({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_EQ(help.out.find("__bench-echo"), std::string::npos) << help.out;
}

// A --json FILE that cannot be written is a usage error found before anything is measured (a
// long run would be lost at the end). A run that does not finish leaves no file behind and an
// existing file as it was.
TEST(Bench, JsonFileIsCheckedBeforeMeasuring) {
  ScratchDir dir;
  for (auto& file : {dir.file("missing/bench.json"), dir.path()}) {
    auto r = run_cli({"bench", "--quick", "--rounds", "100", "--only", "pipe", "--sizes", "64", "--json", file});
    EXPECT_EQ(r.code, 2) << file << ": " << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("--json " + file), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("missing")));

  auto fresh = dir.file("fresh.json"), kept = dir.file("kept.json");
  { std::ofstream(kept) << "earlier results\n"; }
  for (auto& file : {fresh, kept}) {
    auto bench = Child::cli({"bench", "--only", "pipe", "--rounds", "1000000", "--json", file});
    ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
    ASSERT_TRUE(wait_for_echo_child(bench.pid())) << bench.out() << bench.err();
    bench.signal(SIGTERM);
    EXPECT_EQ(bench.finish(), 128 + SIGTERM) << bench.err();
  }
  EXPECT_FALSE(std::filesystem::exists(fresh));
  EXPECT_EQ(read_file(kept), "earlier results\n");
}

// Too few descriptors (RLIMIT_NOFILE) is said as such, whichever call runs out first: a pipe, or
// ipcx's spawn, which needs a few descriptors above those it hands the echo child.
TEST(Bench, TooFewDescriptorsSaySo) {
#ifdef IPCX_TEST_SANITIZED
  // UBSan's own checks need spare descriptors (it probes memory through a pipe): out of them,
  // it reports false errors instead of letting the program say what it would say.
  GTEST_SKIP() << "sanitized build: the sanitizer runtime itself runs out of descriptors";
#endif
  for (std::string limit : {"10", "12"}) {
    auto r = ipcx::test::run_shell("ulimit -n " + limit + " && exec " + IPCX_CLI +
                                   " bench --quick --rounds 100 --only pipe --sizes 64");
    EXPECT_EQ(r.code, 1) << limit << ": " << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find("out of file descriptors (RLIMIT_NOFILE " + limit + "): raise ulimit -n"), std::string::npos)
        << r.err;
  }
}

// The zero-copy row (loan/publish/take) and the shared-queue row: raw (the shm spin ring) and
// ipcx at a small and a large size, and nothing left in /dev/shm by their topics and queues.
// (The iceoryx peer needs its RouDi daemon, which the bench starts: it is measured by
// `ipcx bench`, not here.)
class BenchShmRows : public ::testing::TestWithParam<std::string> {};
TEST_P(BenchShmRows, WriteRawAndIpcx) {
  const std::string mechanism = GetParam();
  ScratchDir dir;
  auto file = dir.file("bench.json");
  auto r = run_cli({"bench", "--quick", "--rounds", "200", "--only", mechanism, "--impls", "raw,ipcx", "--sizes",
                    "64,65536", "--json", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object()) << "not JSON: " << file;
  for (int size : {64, 65536}) {
    for (std::string impl : {"raw", "ipcx"}) {
      const nlohmann::json* row = nullptr;
      for (auto& x : doc.at("results"))
        if (x["mechanism"] == mechanism && x["impl"] == impl && x["size"] == size) row = &x;
      ASSERT_NE(row, nullptr) << impl << " " << size << "\n" << doc.dump(1);
      for (auto metric : {"rtt_p50_ns", "rtt_p99_ns", "msgs_per_s", "bytes_per_s"})
        EXPECT_GT((*row)[metric].get<double>(), 0) << impl << " " << size << " " << metric;
      EXPECT_EQ((*row)["verified"], "content") << row->dump();
    }
  }
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const auto f = e.path().filename().string();
    const bool ours = f.find(mechanism == "shm-zerocopy" ? "ipcx-bench-zc-" : "ipcx-bench-q-") != std::string::npos;
    EXPECT_FALSE(ours) << e.path();
  }
}
INSTANTIATE_TEST_SUITE_P(Bench, BenchShmRows, ::testing::Values("shm-zerocopy", "shm-queue"),
                         [](const auto& p) { return p.param == "shm-queue" ? std::string("queue") : std::string("zerocopy"); });

// ---- the chart and the tour ----------------------------------------------------------------

namespace {

// xmllint (libxml2-utils, scripts/install-deps.sh) parses the file: empty when it is well-formed
// XML, else what it said.
std::string xml_errors(const std::string& file) {
  auto r = ipcx::test::run_shell("xmllint --noout '" + file + "' 2>&1");
  return r.code == 0 ? std::string() : "xmllint exit " + std::to_string(r.code) + ": " + r.out;
}

// Every mechanism of `ipcx bench`, or of `ipcx tour` (those with an ipcx side), as the command's
// --help lists them (its --only option).
std::vector<std::string> bench_mechanisms(const std::string& command = "bench") {
  auto help = run_cli({command, "--help"}).out;
  const std::string key = "comma-separated: ";
  auto at = help.find(key);
  if (at == std::string::npos) return {};
  at += key.size();
  std::vector<std::string> names;
  std::string name;
  for (; at < help.size() && !std::isspace(static_cast<unsigned char>(help[at])); ++at) {
    if (help[at] == ',') names.push_back(std::exchange(name, {}));
    else name += help[at];
  }
  if (!name.empty()) names.push_back(name);
  return names;
}

// Objects whose names hold "ipcx-bench-", as every bench and tour run's do (the test runs that
// start them hold one resource lock: no other run's are there at the same time).
std::vector<std::string> bench_objects() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const char* d : {"/dev/shm", "/dev/mqueue", "/tmp"})
    for (auto& e : std::filesystem::directory_iterator(d, ec))
      if (e.path().filename().string().find("ipcx-bench-") != std::string::npos) out.push_back(e.path().string());
  return out;
}

// Whether the System V queue the bench's sysv row makes for run `bench` (its ipcx measurement of
// 64 B) exists. The key is the row's (bench/rows_sysv.cpp: FNV-1a of the measurement's path, in
// 0x7e500000..0x7e5fffff): kernel queues have no name to look for.
bool sysv_queue_of(pid_t bench) {
  std::uint32_t h = 2166136261u;
  for (char c : fmt::format("/tmp/ipcx-bench-{}/sysv-ipcx-64", bench)) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return ::msgget(static_cast<key_t>(0x7e500000u | (h & 0xfffffu)), 0) >= 0;
}

}  // namespace

TEST(Bench, PlotWritesAWellFormedChart) {
  ScratchDir dir;
  auto svg = dir.file("bench.svg");
  auto r = run_cli({"bench", "--quick", "--rounds", "200", "--only", "pipe,shm", "--sizes", "64", "--plot", svg});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("chart: " + svg), std::string::npos) << r.out;
  EXPECT_EQ(xml_errors(svg), "");
  const auto text = read_file(svg);
  for (auto label : {"pipe raw 64 B", "pipe ipcx 64 B", "shm raw 64 B", "shm ipcx 64 B"})
    EXPECT_NE(text.find(std::string(">") + label + "</text>"), std::string::npos) << label;
  for (auto group : {">message passing</text>", ">shared memory</text>"})
    EXPECT_NE(text.find(group), std::string::npos) << group;
  auto bad = run_cli({"bench", "--quick", "--only", "pipe", "--plot", dir.file("no/such/dir/x.svg")});
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_EQ(count_lines(bad.err), 1) << bad.err;
  EXPECT_NE(bad.err.find("--plot"), std::string::npos) << bad.err;
}

// Every mechanism of the bench is in the tour: measured between two processes, its messages
// checked, in the table under its group, in the chart; progress is one line per measurement
// when stderr is not a terminal.
TEST(Tour, EveryMechanismIsMeasuredCheckedTabledAndCharted) {
  ScratchDir dir;
  auto svg = dir.file("tour.svg"), js = dir.file("tour.json");
  auto tour = Child::cli({"tour", "--quick", "--svg", svg, "--json", js});
  ASSERT_EQ(tour.finish(180s), 0) << tour.err();
  const auto out = tour.out(), err = tour.err();
  auto doc = read_json(js);
  ASSERT_TRUE(doc.is_object()) << "not JSON: " << js;
  EXPECT_EQ(doc["schema"], 1);
  EXPECT_TRUE(doc["machine"]["smt_siblings"].is_boolean());
  const auto names = bench_mechanisms("tour");
  ASSERT_GE(names.size(), 20u) << "the tour lists its mechanisms in `ipcx tour --help`";
  // The bench's rows without an ipcx side (e.g. rpc-unix: raw and gRPC) are named, not measured.
  for (auto& name : bench_mechanisms()) {
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    const auto line = out.find("measured without ipcx by `ipcx bench --only ");
    ASSERT_NE(line, std::string::npos) << name << ":\n" << out;
    EXPECT_NE(out.substr(line, out.find('\n', line) - line).find(name), std::string::npos) << name << ":\n" << out;
  }
  const std::set<std::string> groups{"message passing", "shared memory", "synchronisation", "signals", "RPC", "brokers"};
  std::size_t measurements = 0;
  for (auto& name : names) {
    SCOPED_TRACE(name);
    const json* row = nullptr;
    for (auto& r : doc.at("rows"))
      if (r["mechanism"] == name) row = &r;
    ASSERT_NE(row, nullptr) << doc.dump(1);
    EXPECT_FALSE(row->contains("failed")) << row->dump();
    EXPECT_TRUE(groups.contains((*row)["group"].get<std::string>())) << row->dump();
    EXPECT_FALSE((*row)["purpose"].get<std::string>().empty());
    const auto size = (*row)["size"].get<int>();
    const auto verified = (*row)["verified"].get<std::string>();
    // Every message with a payload was checked: its bytes compared, or its stamps.
    if (size > 0) EXPECT_TRUE(verified == "content" || verified == "stamps") << row->dump();
    else EXPECT_EQ(verified, "no payload") << row->dump();
    EXPECT_GT((*row)["rtt_p50_ns"].get<double>(), 0);
    EXPECT_LE((*row)["rtt_p50_ns"].get<double>(), (*row)["rtt_p99_ns"].get<double>());
    EXPECT_GT((*row)["msgs_per_s"].get<double>(), 0);
    measurements += (*row)["large_size"] != size ? 2 : 1;
    EXPECT_NE(out.find("  " + name + " "), std::string::npos) << "not in the table:\n" << out;
    EXPECT_NE(read_file(svg).find(">" + name + "</text>"), std::string::npos) << "not in the chart";
  }
  EXPECT_EQ(doc["rows"].size(), names.size()) << doc.dump(1);
  EXPECT_EQ(schema_errors(js, "tour"), "");
  for (auto heading : {"\nmessage passing\n", "\nshared memory\n", "\nsynchronisation\n", "\nsignals\n", "\nRPC\n", "\nbrokers\n"})
    EXPECT_NE(out.find(heading), std::string::npos) << out;
  EXPECT_EQ(out.find("not in ipcx yet"), std::string::npos) << out;
  EXPECT_NE(out.find("chart: " + svg), std::string::npos) << out;
  EXPECT_EQ(xml_errors(svg), "");
  // Piped: a plain line per measurement, numbered, the last one [N/N].
  std::size_t progress = 0;
  for (std::size_t at = 0; (at = err.find("ipcx tour: [", at)) != std::string::npos; ++at) ++progress;
  EXPECT_EQ(progress, measurements) << err;
  EXPECT_NE(err.find(fmt::format("[{}/{}]", measurements, measurements)), std::string::npos) << err;
  EXPECT_EQ(err.find('\r'), std::string::npos) << "no bar redrawn in place when stderr is not a terminal";
  expect_no_run_dir(tour.pid());
}

// Ctrl-C (or SIGTERM, SIGHUP) in the middle of a measurement: the echo child is stopped first
// (SIGSTOP), so that the measurement cannot end before the signal lands, whatever its speed. The
// child is killed, and no process, run directory, socket, FIFO, queue or segment of the tour is
// left; the exit code says which signal, and no chart is written.
class TourInterrupt : public ::testing::TestWithParam<std::pair<std::string, int>> {};
TEST_P(TourInterrupt, LeavesNothingBehind) {
  auto [only, sig] = GetParam();
  ScratchDir dir;
  auto tour = Child::cli({"tour", "--only", only, "--svg", dir.file("tour.svg")});
  ASSERT_TRUE(wait_for_echo_child(tour.pid())) << tour.err();
  std::this_thread::sleep_for(100ms);  // the child's listener, queue or segment made
  const auto children = echo_children_of(tour.pid());
  for (pid_t child : children) ::kill(child, SIGSTOP);
  tour.signal(sig);
  // Under ThreadSanitizer a handler runs only once the call it interrupted returns: the child
  // goes on after a while (a killed one stays dead), so that the parent's wait ends.
  std::this_thread::sleep_for(200ms);
  for (pid_t child : children) ::kill(child, SIGCONT);
  EXPECT_EQ(tour.finish(30s), 128 + sig) << tour.err();
  EXPECT_NE(tour.err().find("interrupted by " + signal_name(sig)), std::string::npos) << tour.err();
  EXPECT_TRUE(echo_children_of(tour.pid()).empty());
  expect_no_run_dir(tour.pid());
  EXPECT_EQ(bench_objects(), std::vector<std::string>{});
  EXPECT_FALSE(sysv_queue_of(tour.pid())) << "the System V queue of the echo child's listener";
  EXPECT_FALSE(std::filesystem::exists(dir.file("tour.svg"))) << "no chart of an interrupted tour";
}
INSTANTIATE_TEST_SUITE_P(Tour, TourInterrupt,
                         // A socket and its file, both kernel queues, a shared-memory ring, the shared
                         // queue's and the zero-copy topic's files.
                         ::testing::Values(std::pair{std::string("unix"), SIGINT}, std::pair{std::string("mq"), SIGINT},
                                           std::pair{std::string("sysv"), SIGTERM}, std::pair{std::string("shm"), SIGINT},
                                           std::pair{std::string("shm-queue"), SIGHUP},
                                           std::pair{std::string("shm-zerocopy"), SIGINT}),
                         [](const auto& p) {
                           auto name = p.param.first;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// A chart sent to standard output goes through it: /dev/stdout stays what it was.
TEST(Tour, AChartToStandardOutputIsWrittenThroughIt) {
  auto r = run_cli({"tour", "--quick", "--only", "pipe", "--svg", "/dev/stdout"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("<svg xmlns"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(">pipe</text>"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::is_symlink("/dev/stdout"));
}

// The chart is written in place: an existing file keeps its permissions; a FIFO that nobody reads
// is an error at the end (exit 1), not a wait that no signal could end.
TEST(Tour, TheChartIsWrittenInPlaceAndAFifoWithoutReaderFails) {
  ScratchDir dir;
  const auto kept = dir.file("kept.svg");
  { std::ofstream(kept) << "old\n"; }
  ASSERT_EQ(::chmod(kept.c_str(), 0600), 0);
  auto r = run_cli({"tour", "--quick", "--only", "pipe", "--svg", kept});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::filesystem::status(kept).permissions(),
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(xml_errors(kept), "");
  const auto fifo = dir.file("fifo.svg");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto tour = Child::cli({"tour", "--quick", "--only", "pipe", "--svg", fifo});
  EXPECT_EQ(tour.finish(60s), 1) << tour.err();
  EXPECT_NE(tour.err().find("FIFO that nobody reads"), std::string::npos) << tour.err();
  expect_no_run_dir(tour.pid());
}

// Standard output redirected to a file: the chart sent to /dev/stdout follows the table in it
// (opening /dev/stdout anew would truncate the file and write over the table).
TEST(Tour, AChartToARedirectedStandardOutputFollowsTheTable) {
  ScratchDir dir;
  const auto out = dir.file("out.txt");
  auto r = ipcx::test::run_shell(std::string(IPCX_CLI) + " tour --quick --only pipe --svg /dev/stdout > '" + out + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto text = read_file(out);
  EXPECT_TRUE(text.starts_with("ipcx tour: every mechanism")) << text.substr(0, 300);
  const auto table = text.find("\nmessage passing\n"), svg = text.find("<svg xmlns"), end = text.find("</svg>");
  ASSERT_NE(table, std::string::npos) << text;
  ASSERT_NE(svg, std::string::npos) << text;
  ASSERT_NE(end, std::string::npos) << text;
  EXPECT_LT(table, svg);
  EXPECT_GT(text.find("chart: /dev/stdout"), end) << text;
}

// A closed standard output loses the table: exit 1 with a line that says so, not 0.
TEST(Tour, AClosedStandardOutputIsAnError) {
  ScratchDir dir;
  auto r = ipcx::test::run_shell(std::string(IPCX_CLI) + " tour --quick --only pipe --svg '" + dir.file("t.svg") + "' >&-");
  EXPECT_EQ(r.code, 1) << r.err;
  // After the progress lines (stderr is not a terminal): the one error.
  EXPECT_TRUE(r.err.ends_with("ipcx tour: cannot write to stdout: Bad file descriptor\n")) << r.err;
}

// A symlink whose target does not exist yet: the chart is written at the target when its
// directory exists, and a target in a missing directory is refused before anything is measured.
TEST(Tour, ADanglingSymlinkIsFollowedOrRefusedUpFront) {
  ScratchDir dir;
  const auto link = dir.file("link.svg"), target = dir.file("target.svg");
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  auto r = run_cli({"tour", "--quick", "--only", "pipe", "--svg", link});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_EQ(xml_errors(target), "");
  const auto nowhere = dir.file("nowhere.svg");
  ASSERT_EQ(::symlink(dir.file("no/such/dir/x.svg").c_str(), nowhere.c_str()), 0);
  auto bad = run_cli({"tour", "--svg", nowhere});
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_EQ(count_lines(bad.err), 1) << bad.err;
  EXPECT_NE(bad.err.find("--svg " + nowhere), std::string::npos) << bad.err;
  EXPECT_EQ(bad.out, "");
}

// A bench out of descriptors leaves no queue behind: the echo child's listener removes its
// service queue without a new descriptor, and the parent removes what a failed child left.
TEST(Bench, FewDescriptorsLeaveNoMessageQueue) {
#ifdef IPCX_TEST_SANITIZED
  GTEST_SKIP() << "sanitized build: the sanitizer runtime itself runs out of descriptors (TooFewDescriptorsSaySo)";
#endif
  for (int n : {9, 10, 11, 12}) {
    SCOPED_TRACE(n);
    auto r = ipcx::test::run_shell("ulimit -n " + std::to_string(n) + "; exec " + std::string(IPCX_CLI) +
                       " bench --quick --rounds 50 --only mq --impls ipcx --sizes 64");
    EXPECT_TRUE(r.code == 0 || r.code == 1) << r.err;
    if (r.code == 1) {
      EXPECT_NE(r.err.find("out of file descriptors"), std::string::npos) << r.err;
    }
    EXPECT_EQ(bench_objects(), std::vector<std::string>{});
  }
}

TEST(Tour, AnUnwritableChartIsAUsageErrorBeforeMeasuring) {
  ScratchDir dir;
  auto r = run_cli({"tour", "--svg", dir.file("no/such/dir/tour.svg")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--svg"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  auto empty = run_cli({"tour", "--json", ""});
  EXPECT_EQ(empty.code, 2) << empty.err;
  auto same = run_cli({"tour", "--svg", dir.file("out"), "--json", dir.file("./out")});
  EXPECT_EQ(same.code, 2) << same.err;
  EXPECT_NE(same.err.find("same file"), std::string::npos) << same.err;
  auto same_bench = run_cli({"bench", "--only", "pipe", "--plot", dir.file("b"), "--json", dir.file("b")});
  EXPECT_EQ(same_bench.code, 2) << same_bench.err;
  auto unknown = run_cli({"tour", "--only", "pipe,carrier-pigeon"});
  EXPECT_EQ(unknown.code, 2) << unknown.err;
  EXPECT_EQ(count_lines(unknown.err), 1) << unknown.err;
  EXPECT_NE(unknown.err.find("carrier-pigeon"), std::string::npos) << unknown.err;
}
