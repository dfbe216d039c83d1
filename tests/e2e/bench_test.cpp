// `ipcx bench` end to end: the real binary, its real echo children (`ipcx __bench-echo`), real
// signals. Figures are never asserted (benchmarks are not tests), only their shape.
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "e2e/cli_harness.hpp"
#include "test_util.hpp"

using ipcx::test::run_cli;
using ipcx::test::ScratchDir;
using nlohmann::json;

namespace {

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in, nullptr, /*allow_exceptions=*/false);
}

const json* find_row(const json& doc, const std::string& mech, const std::string& impl) {
  for (auto& r : doc.at("results"))  // at(): a missing key fails the test instead of asserting
    if (r["mechanism"] == mech && r["impl"] == impl) return &r;
  return nullptr;
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
      for (auto metric : {"rtt_p50_ns", "rtt_p99_ns", "msgs_per_s", "bytes_per_s"})
        EXPECT_GT((*row)[metric].get<double>(), 0) << mech << " " << impl << " " << metric;
    }
  }
  EXPECT_NE(r.out.find("p50/raw"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("echo child on cpu"), std::string::npos) << r.out;
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
    for (auto metric : {"rtt_p50_ns", "rtt_p99_ns", "msgs_per_s", "bytes_per_s"}) {
      auto median = row[metric].get<double>();
      EXPECT_LE(row["min"][metric].get<double>(), median) << row.dump();
      EXPECT_LE(median, row["max"][metric].get<double>()) << row.dump();
    }
  }
}
