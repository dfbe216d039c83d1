// `ipcx bench`'s broker rows end to end (bench/rows_broker*.cpp): the real binary, the real
// servers it starts (ipcxd, and RabbitMQ and NATS when this build and this machine have them),
// real signals. Figures are never asserted, only their shape, and that nothing is left: no run
// directory, no server state, no process started by the bench (each carries IPCX_BENCH_OWNER=its
// pid in its environment).
//
// The peers start in a few seconds here (RabbitMQ about 4 s per measurement);
// IPCX_TEST_BENCH_BROKER_PEERS=0 measures raw and ipcx only.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
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

bool peers_wanted() {
  const char* v = std::getenv("IPCX_TEST_BENCH_BROKER_PEERS");
  return !v || std::string(v) != "0";
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// Debian's python3-jsonschema validates `file` against docs/schema/bench.schema.json: empty
// when it is valid, else what the validator said.
std::string schema_errors(const std::string& file) {
  const std::string schema = std::string(IPCX_SOURCE_DIR) + "/docs/schema/bench.schema.json";
  auto r = ipcx::test::run_shell(
      "/usr/bin/python3 -c 'import json, sys, jsonschema\n"
      "s = json.load(open(sys.argv[2])); jsonschema.Draft202012Validator.check_schema(s)\n"
      "jsonschema.Draft202012Validator(s).validate(json.load(open(sys.argv[1])))' '" +
      file + "' '" + schema + "' 2>&1");
  return r.code == 0 ? std::string() : "exit " + std::to_string(r.code) + ": " + r.out;
}

const json* find_row(const json& doc, const std::string& mech, const std::string& impl) {
  for (auto& r : doc.at("results"))
    if (r["mechanism"] == mech && r["impl"] == impl) return &r;
  return nullptr;
}

const json* find_skipped(const json& doc, const std::string& mech) {
  for (auto& s : doc.at("skipped"))
    if (s["mechanism"] == mech && s["impl"] == "peer") return &s;
  return nullptr;
}

std::vector<pid_t> numbered(const std::filesystem::path& dir) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
    auto name = e.path().filename().string();
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) out.push_back(std::stoi(name));
  }
  return out;
}

// Processes started by bench process `bench` (its servers, and theirs), by the variable in
// their environment; with their command names, for the failure message.
std::vector<std::string> servers_of(pid_t bench) {
  const std::string mark = "IPCX_BENCH_OWNER=" + std::to_string(bench);
  std::vector<std::string> out;
  for (pid_t p : numbered("/proc")) {
    std::ifstream in("/proc/" + std::to_string(p) + "/environ");
    for (std::string e; std::getline(in, e, '\0');)
      if (e == mark) {
        std::ifstream comm("/proc/" + std::to_string(p) + "/comm");
        std::string name;
        std::getline(comm, name);
        out.push_back(std::to_string(p) + " " + name);
        break;
      }
  }
  return out;
}

std::vector<pid_t> echo_children_of(pid_t bench) {
  std::vector<pid_t> out;
  for (pid_t p : numbered("/proc")) {
    std::ifstream in("/proc/" + std::to_string(p) + "/cmdline");
    std::vector<std::string> argv;
    for (std::string a; std::getline(in, a, '\0');) argv.push_back(a);
    if (argv.size() < 2 || argv[1] != "__bench-echo") continue;
    auto at = std::find(argv.begin(), argv.end(), "--parent");
    if (at != argv.end() && at + 1 != argv.end() && *(at + 1) == std::to_string(bench)) out.push_back(p);
  }
  return out;
}

// Objects whose names hold "ipcx-bench-", as every bench run's do (the runs hold one resource
// lock: no other run's are there at the same time).
std::vector<std::string> bench_objects() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const char* d : {"/dev/shm", "/dev/mqueue", "/tmp"})
    for (auto& e : std::filesystem::directory_iterator(d, ec))
      if (e.path().filename().string().find("ipcx-bench-") != std::string::npos) out.push_back(e.path().string());
  return out;
}

// Nothing of bench `bench` is left: run directory, servers, echo children.
void expect_nothing_left(pid_t bench) {
  const auto run_dir = "/tmp/ipcx-bench-" + std::to_string(bench);
  EXPECT_FALSE(std::filesystem::exists(run_dir)) << run_dir << " left behind";
  std::error_code ec;
  std::filesystem::remove_all(run_dir, ec);  // a later leftovers check would blame another test
  EXPECT_EQ(servers_of(bench), std::vector<std::string>{}) << "servers left running";
  EXPECT_EQ(echo_children_of(bench), std::vector<pid_t>{});
}

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
  for (auto until = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < until;) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

std::string signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP"; }

}  // namespace

// Both rows and their NATS twins: raw and ipcx always (ipcxd is built with ipcx), each peer
// measured or listed as skipped with its reason, every message checked by the consumer
// ("content"), rates and per-message times positive, the peers' ratios against their row's raw.
TEST(BenchBroker, RowsMeasureRawIpcxAndPeersAndLeaveNothing) {
  ScratchDir dir;
  auto file = dir.file("bench.json");
  std::vector<std::string> args{"bench", "--quick", "--rounds", "2000", "--only",
                                "broker-durable,broker-group,nats-js-durable,nats-js-group", "--json", file};
  if (!peers_wanted()) args.insert(args.end(), {"--impls", "raw,ipcx"});
  auto bench = Child::cli(args);
  ASSERT_EQ(bench.finish(110s), 0) << bench.err();
  auto doc = read_json(file);
  ASSERT_TRUE(doc.is_object()) << "not JSON: " << file;
  EXPECT_EQ(doc["args"]["mechanisms"], json::array({"broker-durable", "broker-group", "broker-durable-nats", "broker-group-nats"}))
      << doc.dump(1);

  std::size_t expected = 0;
  for (auto row : {"broker-durable", "broker-group", "broker-durable-nats", "broker-group-nats"}) {
    SCOPED_TRACE(row);
    ASSERT_NE(find_row(doc, row, "raw"), nullptr) << doc.dump(1);
    ++expected;
    const bool twin = std::string(row).ends_with("-nats");
    if (!twin) {
      ASSERT_NE(find_row(doc, row, "ipcx"), nullptr) << doc.dump(1);
      ++expected;
    } else {
      EXPECT_EQ(find_row(doc, row, "ipcx"), nullptr) << "the NATS rows measure raw and the peer only";
    }
  }
  if (peers_wanted()) {
    const std::pair<const char*, const char*> peers[] = {{"rabbitmq-durable", "broker-durable"},
                                                         {"rabbitmq-group", "broker-group"},
                                                         {"nats-js-durable", "broker-durable-nats"},
                                                         {"nats-js-group", "broker-group-nats"}};
    for (auto [peer, baseline] : peers) {
      SCOPED_TRACE(peer);
      const auto* row = find_row(doc, peer, "peer");
      const auto* skipped = find_skipped(doc, peer);
      EXPECT_NE(row == nullptr, skipped == nullptr) << "measured, or listed as skipped: " << doc.dump(1);
      if (row) {
        EXPECT_EQ((*row)["baseline"], baseline);
        ++expected;
      }
      if (skipped) {
        EXPECT_FALSE((*skipped)["reason"].get<std::string>().empty());
      }
    }
  }
  EXPECT_EQ(doc["results"].size(), expected) << doc.dump(1);
  for (auto& row : doc["results"]) {
    SCOPED_TRACE(row.dump());
    EXPECT_EQ(row["size"], 1024);  // fixed: --sizes does not apply
    EXPECT_EQ(row["verified"], "content");
    EXPECT_GT(row["msgs_per_s"].get<double>(), 0);
    EXPECT_GT(row["rtt_p50_ns"].get<double>(), 0);
    EXPECT_LE(row["rtt_p50_ns"].get<double>(), row["rtt_p99_ns"].get<double>());
    EXPECT_TRUE(row["oneway_p50_ns"].is_null());  // confirms time themselves: no one-way figure
  }
  EXPECT_NE(bench.out().find("broker-durable      ipcx     1024"), std::string::npos) << bench.out();
  EXPECT_EQ(schema_errors(file), "");
  expect_nothing_left(bench.pid());
  EXPECT_EQ(bench_objects(), std::vector<std::string>{});
}

// Interrupted while a server starts (RabbitMQ's boot takes seconds) or while messages flow
// (ipcx): the run ends at once with its one line and 128+signal, the servers are stopped, their
// state and the run directory removed.
class BenchBrokerInterrupt : public ::testing::TestWithParam<std::tuple<std::string, std::string, int, bool>> {};

TEST_P(BenchBrokerInterrupt, StopsServersAndRemovesState) {
  auto [row, impl, sig, at_start] = GetParam();
  if (impl == "peer" && !peers_wanted()) GTEST_SKIP() << "IPCX_TEST_BENCH_BROKER_PEERS=0";
  auto bench = Child::cli({"bench", "--only", row, "--impls", impl, "--rounds", "10000000"});
  ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
  if (bench.out().find("skipped: ") != std::string::npos) {  // printed before the table's header
    EXPECT_EQ(bench.finish(), 0) << bench.err();
    GTEST_SKIP() << "this build or machine has no such peer: " << bench.out();
  }
  const auto pid = bench.pid();
  // The moment: a server of the bench's running (at_start), or the echo child consuming.
  ASSERT_TRUE(wait_until([&] { return at_start ? !servers_of(pid).empty() : !echo_children_of(pid).empty(); }, 90s))
      << bench.out() << bench.err();
  if (!at_start) std::this_thread::sleep_for(200ms);  // into the publishing
  bench.signal(sig);
  EXPECT_EQ(bench.finish(30s), 128 + sig) << bench.err();
  EXPECT_EQ(count_lines(bench.err()), 1) << bench.err();
  EXPECT_NE(bench.err().find("interrupted by " + signal_name(sig)), std::string::npos) << bench.err();
  expect_nothing_left(pid);
  EXPECT_EQ(bench_objects(), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(BenchBroker, BenchBrokerInterrupt,
                         ::testing::Values(std::tuple{std::string("broker-durable"), std::string("ipcx"), SIGINT, false},
                                           std::tuple{std::string("broker-group"), std::string("ipcx"), SIGTERM, true},
                                           std::tuple{std::string("broker-durable"), std::string("peer"), SIGINT, true},
                                           std::tuple{std::string("broker-group"), std::string("peer"), SIGHUP, false},
                                           std::tuple{std::string("nats-js-durable"), std::string("peer"), SIGTERM, false}),
                         [](const auto& p) {
                           auto name = std::get<0>(p.param) + "_" + std::get<1>(p.param) + "_" + signal_name(std::get<2>(p.param)) +
                                       (std::get<3>(p.param) ? "_at_start" : "");
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// The consumer (the echo child) or the server killed mid-measurement: one line naming the
// measurement, exit code 1, and nothing left.
class BenchBrokerDeath : public ::testing::TestWithParam<std::tuple<std::string, std::string, std::string>> {};

TEST_P(BenchBrokerDeath, IsOneLineErrorAndLeavesNothing) {
  auto [row, impl, victim] = GetParam();
  auto bench = Child::cli({"bench", "--only", row, "--impls", impl, "--rounds", "10000000"});
  ASSERT_TRUE(bench.wait_stdout("mechanism")) << bench.err();
  const auto pid = bench.pid();
  ASSERT_TRUE(wait_until([&] { return !echo_children_of(pid).empty(); }, 30s)) << bench.out() << bench.err();
  std::this_thread::sleep_for(200ms);  // into the publishing
  if (victim == "echo child") {
    for (pid_t child : echo_children_of(pid)) ::kill(child, SIGKILL);
  } else {
    for (auto& s : servers_of(pid))
      if (s.ends_with(" " + victim)) ::kill(std::stoi(s), SIGKILL);
  }
  EXPECT_EQ(bench.finish(30s), 1) << bench.err();
  EXPECT_EQ(count_lines(bench.err()), 1) << bench.err();
  EXPECT_NE(bench.err().find(row + " " + impl + " 1024 B: "), std::string::npos) << bench.err();
  expect_nothing_left(pid);
}

INSTANTIATE_TEST_SUITE_P(BenchBroker, BenchBrokerDeath,
                         ::testing::Values(std::tuple{std::string("broker-durable"), std::string("ipcx"), std::string("echo child")},
                                           std::tuple{std::string("broker-group"), std::string("ipcx"), std::string("ipcxd")}),
                         [](const auto& p) {
                           auto name = std::get<0>(p.param) + "_" + (std::get<2>(p.param) == "ipcxd" ? "server" : "consumer");
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });
