// ipcxd's HTTP endpoint on its own (src/broker/http.hpp), against a snapshot the test controls:
// /metrics through the real Prometheus parser, the JSON API and its rates, hostile requests,
// the loopback-only promise, and the dashboard rendered by a real headless Chromium.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ipcx/process.hpp>

#include "broker/http.hpp"
#include "broker/broker_harness.hpp"
#include "test_util.hpp"
#include "unit/support.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using broker::Http;
using broker::HttpOptions;

// Names a local user may choose, aimed at the label escaping and at the page's DOM.
const std::string kQuoteName = "quo\"te\\back\\\\slash\nnew line";
const std::string kHtmlName = "<img src=x onerror=alert(1)>";
const std::string kServiceHtml = "<script>alert(2)</script>";

json sample_snapshot() {
  return {
      {"broker",
       {{"pid", 4242}, {"version", "0.1"}, {"uptime_ms", 5500}, {"socket", "unix:///run/ipcx-test.sock"},
        {"state_dir", "/var/lib/ipcx"}, {"http", "http://127.0.0.1:1/"}, {"connections", 2}, {"denials", 3},
        {"time_ms", 1764300000000}}},
      {"queues",
       {{{"name", "jobs"}, {"ready", 3}, {"unacked", 1}, {"bytes", 120}, {"consumers", 1}, {"published", 10},
         {"duplicates", 0}, {"delivered", 7}, {"redelivered", 1}, {"acked", 6}, {"dead_lettered", 2},
         {"expired", 0}, {"rejected", 4}, {"sync", "always"}},
        {{"name", kQuoteName}, {"ready", 0}, {"unacked", 0}, {"bytes", 0}, {"consumers", 0},
         {"published", 18446744073709551615ull}, {"acked", 5}, {"sync", "none"}},
        {{"name", kHtmlName}, {"ready", 9}, {"published", 9}, {"sync", "group"}, {"extra", {{"ignored", true}}}}}},
      {"topics", {{{"pattern", "sensors.*"}, {"subscribers", 2}}, {{"pattern", "a\"b"}, {"subscribers", 1}}}},
      {"topic_messages", 42},
      {"services",
       {{{"name", "camera"}, {"url", "unix:///run/cam.sock"}, {"pid", 77}, {"uid", 1000},
         {"registered_ms", 1764300000000}, {"metadata", {{"k", "v"}}}},
        {{"name", kServiceHtml}, {"url", "tcp://127.0.0.1:9"}, {"pid", 78}, {"uid", 1001}, {"registered_ms", 1764300001000}}}},
      {"connections", {{{"id", 4}, {"pid", 77}, {"uid", 1000}, {"gid", 1000}, {"subscriptions", 1}, {"services", 1}}}},
  };
}

std::unique_ptr<Http> start_http(std::function<json()> snapshot, HttpOptions options = {}) {
  auto h = Http::start(std::move(options), std::move(snapshot));
  EXPECT_TRUE(h) << why(h);
  return h ? std::move(*h) : nullptr;
}

// ---- a raw HTTP/1.1 client: sends exactly the bytes a test wants, hostile ones included ----

struct Reply {
  int status = 0;  // 0: no parsable answer (the server closed the connection)
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

Fd connect_to(std::uint16_t port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Fd();
  return fd;
}

Reply parse_reply(const std::string& raw) {
  Reply r;
  auto end = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || end == std::string::npos) return r;
  std::istringstream head(raw.substr(0, end));
  std::string line;
  std::getline(head, line);
  r.status = std::atoi(line.substr(line.find(' ') + 1).c_str());
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  r.body = raw.substr(end + 4);
  return r;
}

// Sends `request` (the server may stop reading it: write errors are expected then) and reads
// until the server closes; every wait is bounded.
Reply send_raw(std::uint16_t port, const std::string& request) {
  Fd fd = connect_to(port);
  if (!fd) return {};
  for (std::size_t off = 0; off < request.size();) {
    pollfd p{fd.get(), POLLOUT, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    ssize_t n = ::send(fd.get(), request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 20000) <= 0) break;
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  return parse_reply(raw);
}

Reply request(std::uint16_t port, const std::string& method, const std::string& target, const std::string& extra = "") {
  return send_raw(port, method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                            "\r\nConnection: close\r\n" + extra + "\r\n");
}

Reply get(std::uint16_t port, const std::string& target) { return request(port, "GET", target); }

json get_json(std::uint16_t port, const std::string& target) {
  Reply r = get(port, target);
  EXPECT_EQ(r.status, 200) << target;
  EXPECT_EQ(r.header("content-type"), "application/json") << target;
  json j = json::parse(r.body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << target << ": " << r.body;
  return j;
}

// ---- child processes (the Prometheus checker, Chromium), each killed past its time limit ----

struct Ran {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Ran run(const std::vector<std::string>& argv, const ScratchDir& dir, std::chrono::seconds limit,
        std::vector<std::string> env = {}) {
  static std::atomic<int> counter{0};
  const int n = counter++;
  const std::string out_path = dir.file(fmt::format("out-{}", n)), err_path = dir.file(fmt::format("err-{}", n));
  Fd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  Fd err(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  Fd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  Ran r;
  SpawnOptions so;
  so.fds = {{0, in.get()}, {1, out.get()}, {2, err.get()}};
  so.env = std::move(env);
  auto p = Process::spawn(argv, so);
  if (!p) {
    r.err = "spawn: " + p.error().message();
    return r;
  }
  auto code = p->wait(limit);
  if (!code) {
    (void)p->kill(SIGKILL);
    (void)p->wait(10s);
    r.err = fmt::format("<killed: still running after {}s>\n", limit.count());
  } else {
    r.code = *code;
  }
  r.out = slurp(out_path);
  r.err += slurp(err_path);
  return r;
}

std::string checker() { return std::string(IPCX_SOURCE_DIR) + "/tests/broker/check_metrics.py"; }

// A sample expectation for check_metrics.py, as JSON so any label value survives argv.
std::string expect(const std::string& name, json labels, double value, const std::string& type = "") {
  json e = {{"name", name}, {"labels", std::move(labels)}, {"value", value}};
  if (!type.empty()) e["type"] = type;
  return e.dump();
}

Ran check_metrics(const Http& h, const ScratchDir& dir, const std::vector<std::string>& expectations) {
  std::vector<std::string> argv = {"python3", checker(), h.url() + "metrics"};
  argv.insert(argv.end(), expectations.begin(), expectations.end());
  return run(argv, dir, 60s);
}

// ---- /metrics ----

TEST(HttpMetrics, ParsedByThePrometheusParserWithHostileLabels) {
  Watchdog wd(120s);
  ScratchDir dir;
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  Reply r = get(h->port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type").rfind("text/plain; version=0.0.4", 0), 0u) << r.header("content-type");

  const json jobs = {{"queue", "jobs"}};
  auto res = check_metrics(*h, dir, {
      expect("ipcx_queue_ready", jobs, 3, "gauge"),
      expect("ipcx_queue_unacked", jobs, 1, "gauge"),
      expect("ipcx_queue_bytes", jobs, 120, "gauge"),
      expect("ipcx_queue_consumers", jobs, 1, "gauge"),
      expect("ipcx_queue_published_total", jobs, 10, "counter"),
      expect("ipcx_queue_delivered_total", jobs, 7, "counter"),
      expect("ipcx_queue_redelivered_total", jobs, 1, "counter"),
      expect("ipcx_queue_acked_total", jobs, 6, "counter"),
      expect("ipcx_queue_dead_lettered_total", jobs, 2, "counter"),
      expect("ipcx_queue_expired_total", jobs, 0, "counter"),
      expect("ipcx_queue_rejected_total", jobs, 4, "counter"),
      expect("ipcx_queue_duplicates_total", jobs, 0, "counter"),
      // Parsed back exactly: quotes, backslashes and a newline in the label value.
      expect("ipcx_queue_acked_total", {{"queue", kQuoteName}}, 5),
      expect("ipcx_queue_published_total", {{"queue", kQuoteName}}, 18446744073709551615.0),
      expect("ipcx_queue_ready", {{"queue", kHtmlName}}, 9),
      expect("ipcx_topic_subscribers", {{"pattern", "sensors.*"}}, 2, "gauge"),
      expect("ipcx_topic_subscribers", {{"pattern", "a\"b"}}, 1),
      "ipcx_services=2",
      "ipcx_topic_messages_total=42",
      "ipcx_connections=2",
      "ipcx_denials_total=3",
      "ipcx_uptime_seconds=5.5",
      expect("ipcx_build_info", {{"version", "0.1"}}, 1, "gauge"),
      // A key the queue lacks gives no sample rather than a made-up zero.
      json{{"name", "ipcx_queue_bytes"}, {"labels", {{"queue", kHtmlName}}}, {"absent", true}}.dump(),
  });
  EXPECT_EQ(res.code, 0) << res.err << res.out;
  // Every digit of a 64-bit counter survives (a double would print 1.8446744073709552e+19).
  EXPECT_NE(r.body.find("} 18446744073709551615\n"), std::string::npos);
}

TEST(HttpMetrics, CheckerFailsOnAWrongExpectation) {
  Watchdog wd(120s);
  ScratchDir dir;
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  auto wrong = check_metrics(*h, dir, {expect("ipcx_queue_ready", {{"queue", "jobs"}}, 4)});
  EXPECT_EQ(wrong.code, 1) << wrong.err;
  EXPECT_NE(wrong.err.find("expected 4"), std::string::npos) << wrong.err;
  auto missing = check_metrics(*h, dir, {expect("ipcx_queue_ready", {{"queue", "nope"}}, 0)});
  EXPECT_EQ(missing.code, 1) << missing.err;
  // An exposition the parser refuses fails the check (the checker is not vacuous).
  ScratchDir bad_dir;
  auto bad = run({"sh", "-c", "printf 'ipcx_x{queue=\"unterminated} 1\\n' | python3 \"$0\" -", checker()}, bad_dir, 60s);
  EXPECT_NE(bad.code, 0) << bad.err;
}

TEST(HttpMetrics, LabelValuesAreEscapedAndValidUtf8) {
  EXPECT_EQ(broker::prometheus_label_value("plain"), "plain");
  EXPECT_EQ(broker::prometheus_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(broker::prometheus_label_value("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  // Stray continuation, overlong, surrogate, truncated sequence: one U+FFFD per bad byte.
  EXPECT_EQ(broker::prometheus_label_value("a\x80z"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(broker::prometheus_label_value("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(broker::prometheus_label_value("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(broker::prometheus_label_value("x\xE2\x82"), "x\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(broker::prometheus_label_value(std::string_view("n\0ul", 4)), std::string("n\0ul", 4));
}

TEST(HttpMetrics, InvalidUtf8NamesStillMakeAParsableScrape) {
  Watchdog wd(120s);
  ScratchDir dir;
  auto h = start_http([] { return json{{"queues", {{{"name", "bad\xFF\xFEname"}, {"ready", 1}}}}}; });
  ASSERT_TRUE(h);
  auto res = check_metrics(*h, dir, {expect("ipcx_queue_ready", {{"queue", "bad\xEF\xBF\xBD\xEF\xBF\xBDname"}}, 1)});
  EXPECT_EQ(res.code, 0) << res.err;
  // The JSON API does not throw on it either.
  json q = get_json(h->port(), "/api/queues");
  ASSERT_TRUE(q.is_array());
  ASSERT_EQ(q.size(), 1u);
}

TEST(HttpMetrics, MissingAndMistypedKeysAreTolerated) {
  Watchdog wd(120s);
  ScratchDir dir;
  for (const json& snap : {json(nullptr), json::array({1, 2}), json(7), json::object(),
                           json{{"broker", "x"}, {"queues", {{{"name", 5}}, 7, nullptr, {{"name", "ok"}, {"ready", "three"}}}},
                                {"topics", {{"pattern", 1}}}, {"services", "none"}, {"topic_messages", "many"},
                                {"connections", {1, 2, 3}}}}) {
    SCOPED_TRACE(snap.dump());
    auto h = start_http([snap] { return snap; });
    ASSERT_TRUE(h);
    auto res = check_metrics(*h, dir, {"ipcx_services=0", expect("ipcx_build_info", {{"version", "unknown"}}, 1)});
    EXPECT_EQ(res.code, 0) << res.err;
    for (const char* path : {"/api/queues", "/api/topics", "/api/services", "/api/connections"})
      EXPECT_TRUE(get_json(h->port(), path).is_array()) << path;
    EXPECT_TRUE(get_json(h->port(), "/api/status").is_object());
    EXPECT_TRUE(get_json(h->port(), "/api/rates")["samples"].is_array());
  }
}

// ---- /api ----

TEST(HttpApi, EndpointsServeTheirPartOfTheSnapshot) {
  Watchdog wd(60s);
  const json snap = sample_snapshot();
  auto h = start_http([snap] { return snap; });
  ASSERT_TRUE(h);
  const auto port = h->port();
  json status = get_json(port, "/api/status");
  EXPECT_EQ(status["pid"], 4242);
  EXPECT_EQ(status["version"], "0.1");
  EXPECT_EQ(status["socket"], "unix:///run/ipcx-test.sock");
  EXPECT_EQ(status["topic_messages"], 42);
  EXPECT_EQ(get_json(port, "/api/queues"), snap["queues"]);
  EXPECT_EQ(get_json(port, "/api/topics"), snap["topics"]);
  EXPECT_EQ(get_json(port, "/api/services"), snap["services"]);
  EXPECT_EQ(get_json(port, "/api/connections"), snap["connections"]);
  // A query string does not change the answer.
  EXPECT_EQ(get_json(port, "/api/queues?x=1&y"), snap["queues"]);
  EXPECT_EQ(h->url(), fmt::format("http://127.0.0.1:{}/", port));
}

TEST(HttpApi, ASnapshotThatThrowsGives503AndTheServerGoesOn) {
  Watchdog wd(60s);
  std::atomic<bool> broken{true};
  auto h = start_http([&broken] {
    if (broken) throw std::runtime_error("loop is gone");
    return sample_snapshot();
  });
  ASSERT_TRUE(h);
  EXPECT_EQ(get(h->port(), "/metrics").status, 503);
  EXPECT_EQ(get(h->port(), "/api/queues").status, 503);
  EXPECT_EQ(get(h->port(), "/api/rates").status, 200);  // history, no snapshot needed
  EXPECT_EQ(get(h->port(), "/").status, 200);
  broken = false;
  EXPECT_EQ(get_json(h->port(), "/api/status")["pid"], 4242);
}

// A snapshot whose clock and counters advance by fixed steps on every call, so rates are exact.
struct SteppedDaemon {
  std::atomic<int> calls{0};
  json operator()() {
    const std::int64_t k = calls++;
    json queues = {{{"name", "jobs"}, {"published", 10 * k}, {"delivered", 5 * k}, {"acked", 4 * k}, {"ready", k}},
                   {{"name", "idle"}, {"published", 100}, {"delivered", 100}, {"acked", 100}, {"ready", 0}}};
    return {{"broker", {{"time_ms", 1'000'000 + 2000 * k}, {"connections", 3}}},
            {"queues", std::move(queues)},
            {"topic_messages", 6 * k}};
  }
};

TEST(HttpApi, RatesArePerSecondFromConsecutiveSamples) {
  Watchdog wd(60s);
  auto daemon = std::make_shared<SteppedDaemon>();
  auto h = start_http([daemon] { return (*daemon)(); }, {.sample_every = 20ms});
  ASSERT_TRUE(h);
  json rates;
  ASSERT_TRUE(eventually([&] {
    rates = get_json(h->port(), "/api/rates");
    return rates["samples"].size() >= 2;
  }, 30s));
  EXPECT_DOUBLE_EQ(rates["interval_s"].get<double>(), 0.02);
  std::int64_t previous_t = 0;
  for (const json& s : rates["samples"]) {
    SCOPED_TRACE(s.dump());
    // Each step is 2 s of the daemon's clock: 10 published per step is 5 per second.
    EXPECT_DOUBLE_EQ(s["published"].get<double>(), 5.0);
    EXPECT_DOUBLE_EQ(s["delivered"].get<double>(), 2.5);
    EXPECT_DOUBLE_EQ(s["acked"].get<double>(), 2.0);
    EXPECT_DOUBLE_EQ(s["topic_messages"].get<double>(), 3.0);
    EXPECT_EQ(s["connections"], 3);
    EXPECT_DOUBLE_EQ(s["queues"]["jobs"]["published"].get<double>(), 5.0);
    EXPECT_DOUBLE_EQ(s["queues"]["idle"]["published"].get<double>(), 0.0);
    EXPECT_GE(s["queues"]["jobs"]["ready"].get<int>(), 1);
    EXPECT_GT(s["t"].get<std::int64_t>(), previous_t);
    previous_t = s["t"].get<std::int64_t>();
  }
  EXPECT_EQ(rates["capacity"], 300);
  // ?since=T: only what came after T (what the dashboard asks for after its first poll).
  const std::int64_t first_t = rates["samples"][0]["t"];
  json later = get_json(h->port(), fmt::format("/api/rates?since={}", first_t))["samples"];
  ASSERT_FALSE(later.empty());
  for (const json& s : later) EXPECT_GT(s["t"].get<std::int64_t>(), first_t);
  EXPECT_TRUE(get_json(h->port(), "/api/rates?since=99999999999999")["samples"].empty());
  for (const char* junk : {"abc", "", "1e3", "-", "99999999999999999999999", "12abc"}) {
    auto r = send_raw(h->port(), std::string("GET /api/rates?since=") + junk + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(r.status, 400) << junk;
    EXPECT_NE(r.body.find("since must be a time in unix milliseconds"), std::string::npos) << junk << ": " << r.body;
  }
  EXPECT_FALSE(get_json(h->port(), "/api/rates?since=-1")["samples"].empty());  // before everything
}

TEST(HttpApi, RatesKeepABoundedHistoryAndNeverGoNegative) {
  Watchdog wd(60s);
  std::atomic<int> calls{0};
  auto h = start_http([&calls] {
    const int k = calls++;
    // The counter resets at call 3 (a restart); a queue appears at call 4.
    json queues = {{{"name", "jobs"}, {"published", k < 3 ? 100 * k : k - 3}}};
    if (k >= 4) queues.push_back({{"name", "new"}, {"published", 50}});
    return json{{"broker", {{"time_ms", 1000 * k}}}, {"queues", queues}, {"connections", json::array()}};
  }, {.sample_every = 5ms, .history = 4});
  ASSERT_TRUE(h);
  ASSERT_TRUE(eventually([&] { return calls >= 12; }, 30s));
  json samples = get_json(h->port(), "/api/rates")["samples"];
  EXPECT_EQ(samples.size(), 4u);
  for (const json& s : samples) {
    EXPECT_GE(s["published"].get<double>(), 0.0) << s.dump();
    EXPECT_EQ(s["connections"], 0);
  }
  h.reset();
  // The reset and the queue's first appearance, seen from a long history.
  calls = 0;
  h = start_http([&calls] {
    const int k = calls++;
    json queues = {{{"name", "jobs"}, {"published", k < 3 ? 100 * k : k - 3}}};
    if (k >= 4) queues.push_back({{"name", "new"}, {"published", 50}});
    return json{{"broker", {{"time_ms", 1000 * k}}}, {"queues", queues}};
  }, {.sample_every = 20ms});
  ASSERT_TRUE(h);
  ASSERT_TRUE(eventually([&] {
    samples = get_json(h->port(), "/api/rates")["samples"];
    return samples.size() >= 5;
  }, 30s));
  ASSERT_EQ(samples[0]["t"], 1000);
  EXPECT_DOUBLE_EQ(samples[1]["published"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(samples[2]["published"].get<double>(), 0.0);  // 200 -> 0: a reset, not -200/s
  EXPECT_DOUBLE_EQ(samples[3]["queues"]["new"]["published"].get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(samples[3]["published"].get<double>(), 51.0);
}

// ---- the server under bad requests ----

bool still_serves(std::uint16_t port) { return get(port, "/api/status").status == 200; }

TEST(HttpServer, UnknownPathsAre404AndOtherMethods405) {
  Watchdog wd(60s);
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  const auto port = h->port();
  for (const char* path : {"/nope", "/api", "/api/", "/api/queues/jobs", "/metrics/", "//metrics", "/index.html", "/../etc/passwd"})
    EXPECT_EQ(get(port, path).status, 404) << path;
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    Reply r = request(port, method, "/api/queues", "Content-Length: 0\r\n");
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_EQ(r.header("allow"), "GET, HEAD") << method;
  }
  Reply post = request(port, "POST", "/metrics", "Content-Length: 5\r\n");
  EXPECT_EQ(post.status, 405);
  Reply head = request(port, "HEAD", "/metrics");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
  EXPECT_TRUE(still_serves(port));
}

TEST(HttpServer, HostileRequestsDoNotStopIt) {
  Watchdog wd(120s);
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  const auto port = h->port();
  std::mt19937 rng(7);
  auto random_path = [&rng](std::size_t n) {
    const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-._~%/?&=+*()[]";
    std::string p = "/";
    for (std::size_t i = 0; i < n; ++i) p += alphabet[rng() % alphabet.size()];
    return p;
  };
  for (std::size_t n : {100u, 8000u, 100000u, 1000000u}) {
    Reply r = get(port, random_path(n));
    EXPECT_TRUE(r.status == 0 || (r.status >= 400 && r.status < 500)) << n << ": " << r.status;
    EXPECT_TRUE(still_serves(port)) << n;
  }
  // Regex-hungry paths: one long run of a single character, and of a repeated pattern.
  EXPECT_EQ(get(port, "/" + std::string(8000, 'a')).status, 404);
  EXPECT_EQ(get(port, "/api/" + std::string(4000, '/')).status, 404);

  const std::string huge_header = "X-Huge: " + std::string(1 << 20, 'h') + "\r\n";
  Reply r = request(port, "GET", "/api/status", huge_header);
  EXPECT_NE(r.status, 200);
  EXPECT_TRUE(still_serves(port));
  std::string many;
  for (int i = 0; i < 20000; ++i) many += fmt::format("X-H{}: v\r\n", i);
  request(port, "GET", "/api/status", many);
  EXPECT_TRUE(still_serves(port));

  for (const std::string& raw : {
           std::string("GARBAGE\r\n\r\n"),
           std::string("GET\r\n\r\n"),
           std::string("GET /metrics HTTP/9.9\r\n\r\n"),
           std::string("GET /%00%ff%zz%%/metrics?%zz=%&&&=== HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
           std::string("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n"),
           std::string("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
           std::string("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=99999999-1,-0,a-b\r\n\r\n"),
           std::string("GET /met"),  // truncated, then closed
           std::string("\0\1\2\3\xff\xfe\r\n\r\n", 10),
       }) {
    send_raw(port, raw);
    EXPECT_TRUE(still_serves(port)) << raw;
  }
  // A client that connects and says nothing holds one worker until the read timeout, no more.
  std::vector<Fd> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(connect_to(port));
  EXPECT_TRUE(still_serves(port));
}

TEST(HttpServer, ResponsesCarrySecurityHeaders) {
  Watchdog wd(60s);
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  for (const char* path : {"/", "/metrics", "/api/status", "/api/rates", "/missing"}) {
    Reply r = get(h->port(), path);
    EXPECT_EQ(r.header("cache-control"), "no-store") << path;
    EXPECT_EQ(r.header("x-content-type-options"), "nosniff") << path;
    EXPECT_EQ(r.header("access-control-allow-origin"), "") << path;
  }
  Reply page = get(h->port(), "/");
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.header("content-security-policy").find("default-src 'none'"), std::string::npos);
}

TEST(HttpServer, RefusesRequestsForOtherHostNames) {
  Watchdog wd(60s);
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  const auto port = h->port();
  auto with_host = [port](const std::string& host) {
    return send_raw(port, "GET /api/status HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n").status;
  };
  // DNS rebinding: a page of attacker.example whose name now resolves to 127.0.0.1.
  EXPECT_EQ(with_host("attacker.example"), 403);
  EXPECT_EQ(with_host("attacker.example:" + std::to_string(port)), 403);
  EXPECT_EQ(with_host("127.0.0.1.attacker.example"), 403);
  EXPECT_EQ(with_host("[::2]:1"), 403);
  // A loopback name followed by anything but a port.
  EXPECT_EQ(with_host("localhost:80@evil.com"), 403);
  EXPECT_EQ(with_host("127.0.0.1:80:81"), 403);
  EXPECT_EQ(with_host("127.0.0.1:"), 403);
  EXPECT_EQ(with_host("127.0.0.1:123456"), 403);
  EXPECT_EQ(with_host("[::1]evil"), 403);
  EXPECT_EQ(with_host("[::1]:8o"), 403);
  EXPECT_EQ(with_host("127.0.0.1:" + std::to_string(port)), 200);
  EXPECT_EQ(with_host("LOCALHOST:" + std::to_string(port)), 200);
  EXPECT_EQ(with_host("[::1]:" + std::to_string(port)), 200);
  EXPECT_EQ(with_host("127.1.2.3"), 200);
}

TEST(HttpServer, RefusesNonLoopbackAddresses) {
  for (const char* address : {"0.0.0.0", "192.168.1.10", "10.0.0.1", "::", "::ffff:127.0.0.1", "fe80::1",
                              "example.com", "", "127.0.0.1 ", "127.0.0.1:80", "localhost.example"}) {
    auto h = Http::start({.address = address}, sample_snapshot);
    ASSERT_FALSE(h) << address;
    EXPECT_EQ(h.error().code, Errc::invalid_argument) << address;
  }
  auto no_snapshot = Http::start({}, nullptr);
  ASSERT_FALSE(no_snapshot);
  EXPECT_EQ(no_snapshot.error().code, Errc::invalid_argument);
  auto no_interval = Http::start({.sample_every = 0ms}, sample_snapshot);
  ASSERT_FALSE(no_interval);
  EXPECT_EQ(no_interval.error().code, Errc::invalid_argument);
}

TEST(HttpServer, ServesOnEveryLoopbackForm) {
  Watchdog wd(60s);
  for (const char* address : {"127.0.0.1", "localhost", "127.0.0.2"}) {
    auto h = start_http(sample_snapshot, {.address = address});
    ASSERT_TRUE(h) << address;
    EXPECT_EQ(h->url().rfind("http://127.0.0.", 0), 0u) << h->url();
  }
  auto v6 = Http::start({.address = "::1"}, sample_snapshot);
  if (!v6) GTEST_SKIP() << "no IPv6 loopback here: " << v6.error().message();
  EXPECT_EQ((*v6)->url(), fmt::format("http://[::1]:{}/", (*v6)->port()));
}

TEST(HttpServer, APortInUseIsAddressInUse) {
  Watchdog wd(60s);
  auto first = start_http(sample_snapshot);
  ASSERT_TRUE(first);
  auto second = Http::start({.port = first->port()}, sample_snapshot);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::address_in_use) << second.error().message();
  EXPECT_TRUE(still_serves(first->port()));
  // The port is free again once the first is gone, though the connection just served lingers
  // in TIME_WAIT (a daemon restarted on a fixed port).
  const auto port = first->port();
  ASSERT_EQ(get(port, "/api/status").status, 200);
  first.reset();
  auto again = start_http(sample_snapshot, {.port = port});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->port(), port);
}

TEST(HttpServer, ListenerIsNotInheritedByChildren) {
  Watchdog wd(60s);
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  ScratchDir dir;
  // A child the daemon spawns must not keep the port open after the daemon is gone.
  auto r = run({"sh", "-c", "ls -l /proc/self/fd"}, dir, 30s);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("socket:"), std::string::npos) << r.out;
}

TEST(HttpServer, ConcurrentClientsWhileSampling) {
  Watchdog wd(120s);
  std::atomic<int> calls{0};
  auto h = start_http([&calls] {
    ++calls;
    return sample_snapshot();
  }, {.sample_every = 2ms});
  ASSERT_TRUE(h);
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 6; ++t)
    clients.emplace_back([&, t] {
      const char* paths[] = {"/metrics", "/api/rates", "/api/queues", "/", "/api/status", "/nope"};
      for (int i = 0; i < 30; ++i) {
        Reply r = get(h->port(), paths[(t + i) % 6]);
        if (r.status == 200 || r.status == 404) ++ok;
      }
    });
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok, 6 * 30);
  EXPECT_GT(calls, 1);
}

TEST(HttpServer, StopsWithClientsConnected) {
  Watchdog wd(60s);
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  // One keep-alive connection after a request, one that never sent a byte.
  Fd kept = connect_to(h->port());
  const std::string req = "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_EQ(::send(kept.get(), req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  pollfd p{kept.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  Fd silent = connect_to(h->port());
  h.reset();  // returns: the watchdog catches a hang
  // Start-then-stop at once: the accept loop is running before start() returns.
  for (int i = 0; i < 20; ++i) start_http(sample_snapshot).reset();
}

// ---- the dashboard ----

TEST(HttpDashboard, PageIsSelfContained) {
  Watchdog wd(60s);
  auto h = start_http(sample_snapshot);
  ASSERT_TRUE(h);
  Reply r = get(h->port(), "/");
  ASSERT_EQ(r.status, 200);
  const std::string& page = r.body;
  EXPECT_NE(page.find("id=\"live-status\""), std::string::npos);
  EXPECT_NE(page.find("id=\"updated\""), std::string::npos);
  // Offline: nothing fetched from elsewhere, no markup built from data.
  for (const char* external : {"src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url(", "<link", "<script src"})
    EXPECT_EQ(page.find(external), std::string::npos) << external;
  EXPECT_EQ(page.find("innerHTML"), std::string::npos);
  EXPECT_EQ(page.find("insertAdjacentHTML"), std::string::npos);
  EXPECT_EQ(page.find("document.write"), std::string::npos);
}

std::string find_chromium() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  std::string d;
  while (std::getline(dirs, d, ':'))
    for (const char* name : {"chromium", "chromium-browser", "google-chrome"})
      if (::access((d + "/" + name).c_str(), X_OK) == 0) return d + "/" + name;
  return "";
}

Ran chromium(const std::string& binary, const ScratchDir& dir, const std::vector<std::string>& extra, const std::string& url) {
  std::vector<std::string> argv = {binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                   "--user-data-dir=" + dir.file("profile"), "--no-first-run", "--disable-extensions",
                                   "--virtual-time-budget=8000"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  // Chromium's temporary files, caches and NSS database land in the scratch directory.
  return run(argv, dir, 60s,
             {"TMPDIR=" + dir.path(), "HOME=" + dir.path(), "XDG_CONFIG_HOME=" + dir.file("config"),
              "XDG_CACHE_HOME=" + dir.file("cache")});
}

// The DOM serialiser's escaping of text and attribute values.
std::string html_escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

// The text of the element whose opening tag contains `id="ID"`.
std::string element_text(const std::string& dom, const std::string& id) {
  auto at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "<no element #" + id + ">";
  auto open_end = dom.find('>', at);
  auto close = dom.find('<', open_end);
  return dom.substr(open_end + 1, close - open_end - 1);
}

TEST(HttpDashboard, HeadlessChromiumShowsLiveData) {
  Watchdog wd(150s);
  const std::string binary = find_chromium();
  if (binary.empty()) GTEST_SKIP() << "no chromium binary on PATH";
  ScratchDir dir;
  const json snap = sample_snapshot();
  auto h = start_http([snap] { return snap; }, {.sample_every = 100ms});
  ASSERT_TRUE(h);
  Ran r = chromium(binary, dir, {"--dump-dom"}, h->url());
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string& dom = r.out;
  ASSERT_NE(dom.find("</html>"), std::string::npos) << r.err;
  EXPECT_EQ(element_text(dom, "live-status"), "live") << dom;
  EXPECT_NE(element_text(dom, "updated"), "-");
  EXPECT_EQ(element_text(dom, "pid"), "4242");
  EXPECT_EQ(element_text(dom, "version"), "0.1");
  EXPECT_EQ(element_text(dom, "socket"), "unix:///run/ipcx-test.sock");
  EXPECT_EQ(element_text(dom, "uptime"), "5s");
  for (const json& q : snap["queues"]) {
    const std::string name = q["name"];
    EXPECT_NE(dom.find("data-queue=\"" + html_escaped(name) + "\""), std::string::npos) << name;
  }
  for (const json& s : snap["services"]) {
    const std::string name = s["name"];
    EXPECT_NE(dom.find("data-service=\"" + html_escaped(name) + "\""), std::string::npos) << name;
  }
  EXPECT_NE(dom.find("unix:///run/cam.sock"), std::string::npos);
  // Hostile names are text: escaped in the serialised DOM, never an element.
  EXPECT_NE(dom.find(">" + html_escaped(kHtmlName) + "<"), std::string::npos);
  EXPECT_NE(dom.find(">" + html_escaped(kServiceHtml) + "<"), std::string::npos);
  EXPECT_EQ(dom.find("<img"), std::string::npos);
  EXPECT_EQ(dom.find("<script>alert"), std::string::npos);
}

TEST(HttpDashboard, HeadlessChromiumTakesAScreenshot) {
  Watchdog wd(150s);
  const std::string binary = find_chromium();
  if (binary.empty()) GTEST_SKIP() << "no chromium binary on PATH";
  ScratchDir dir;
  auto h = start_http(sample_snapshot, {.sample_every = 100ms});
  ASSERT_TRUE(h);
  const std::string png = dir.file("dash.png");
  Ran r = chromium(binary, dir, {"--screenshot=" + png, "--window-size=1280,900", "--hide-scrollbars"}, h->url());
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string bytes = slurp(png);
  ASSERT_GT(bytes.size(), 1000u) << r.err;
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

// ---- the real daemon ----

// ipcxd with its HTTP side on: queues with traffic, a registered service, a watcher.
struct LiveDaemon {
  Daemon d;
  broker::Client owner;
  std::string url;  // http://127.0.0.1:PORT/
  bool start() {
    if (!d.start({"--http", "127.0.0.1:0"})) return false;
    owner = d.client();
    if (!owner.declare("jobs") || !owner.declare("audit", {.sync = broker::Sync::group})) return false;
    for (int i = 0; i < 5; ++i)
      if (!owner.publish("jobs", as_bytes("job"))) return false;
    if (!owner.consume("jobs", 2)) return false;
    auto m = owner.next(5s);
    if (!m || !owner.ack(*m)) return false;
    if (!owner.register_service("camera", "unix:///run/cam.sock", {{"model", "x1"}})) return false;
    auto st = owner.status();
    if (!st) return false;
    url = st->http;
    return url.starts_with("http://127.0.0.1:");
  }
};

TEST(DaemonHttp, MetricsOfTheRealDaemonParseWithPrometheus) {
  LiveDaemon live;
  ASSERT_TRUE(live.start()) << live.d.log();
  ScratchDir dir;
  // jobs: 5 published, 3 ready, 2 out (prefetch 2, one acked then one more delivered).
  Ran r = run({"python3", checker(), live.url + "metrics", expect("ipcx_queue_published_total", {{"queue", "jobs"}}, 5, "counter"),
               expect("ipcx_queue_acked_total", {{"queue", "jobs"}}, 1, "counter"),
               expect("ipcx_queue_ready", {{"queue", "jobs"}}, 2, "gauge"), expect("ipcx_queue_unacked", {{"queue", "jobs"}}, 2, "gauge"),
               expect("ipcx_queue_consumers", {{"queue", "jobs"}}, 1, "gauge"), "ipcx_services=1", "ipcx_denials_total=0"},
              dir, 60s);
  EXPECT_EQ(r.code, 0) << r.err << r.out;
}

TEST(DaemonHttp, TheRealDaemonsDashboardInChromium) {
  Watchdog wd(150s);
  const std::string binary = find_chromium();
  if (binary.empty()) GTEST_SKIP() << "no chromium binary on PATH";
  LiveDaemon live;
  ASSERT_TRUE(live.start()) << live.d.log();
  ScratchDir dir;
  Ran r = chromium(binary, dir, {"--dump-dom"}, live.url);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string& dom = r.out;
  EXPECT_EQ(element_text(dom, "live-status"), "live") << dom;
  EXPECT_EQ(element_text(dom, "pid"), std::to_string(live.d.pid()));
  EXPECT_NE(dom.find("data-queue=\"jobs\""), std::string::npos);
  EXPECT_NE(dom.find("data-queue=\"audit\""), std::string::npos);
  EXPECT_NE(dom.find("data-service=\"camera\""), std::string::npos);
  EXPECT_NE(dom.find("unix:///run/cam.sock"), std::string::npos);
  const std::string png = dir.file("ipcxd.png");
  r = chromium(binary, dir, {"--screenshot=" + png, "--window-size=1280,900", "--hide-scrollbars"}, live.url);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(png).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

}  // namespace
}  // namespace ipcx::test
