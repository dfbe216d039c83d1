#include "broker/http.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>

namespace ipcx::broker {

using json = nlohmann::json;

namespace {

// ---- reading a snapshot that may lack any key or hold the wrong type anywhere ----

const json& member(const json& object, const char* key) {
  static const json null_value;
  if (!object.is_object()) return null_value;
  auto it = object.find(key);
  return it == object.end() ? null_value : *it;
}

const json& array_member(const json& object, const char* key) {
  static const json empty = json::array();
  const json& v = member(object, key);
  return v.is_array() ? v : empty;
}

std::optional<double> number(const json& object, const char* key) {
  const json& v = member(object, key);
  if (!v.is_number()) return std::nullopt;
  return v.get<double>();
}

std::optional<std::string> string_member(const json& object, const char* key) {
  const json& v = member(object, key);
  if (!v.is_string()) return std::nullopt;
  return v.get<std::string>();
}

// ---- Prometheus text format ----

// Integers keep every digit (a double would round counters past 2^53).
std::optional<std::string> sample_value(const json& v) {
  if (v.is_number_unsigned()) return fmt::format("{}", v.get<std::uint64_t>());
  if (v.is_number_integer()) return fmt::format("{}", v.get<std::int64_t>());
  if (!v.is_number_float()) return std::nullopt;
  const double d = v.get<double>();
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", d);
}

class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(std::string_view name, std::string_view labels, const json& value) {
    auto text = sample_value(value);
    if (!text) return;
    out_ += name;
    if (!labels.empty()) fmt::format_to(std::back_inserter(out_), "{{{}}}", labels);
    fmt::format_to(std::back_inserter(out_), " {}\n", *text);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string label(std::string_view name, std::string_view value) {
  return fmt::format("{}=\"{}\"", name, prometheus_label_value(value));
}

struct QueueMetric {
  const char* name;
  const char* key;
  const char* type;
  const char* help;
};

constexpr QueueMetric queue_metrics[] = {
    {"ipcx_queue_ready", "ready", "gauge", "Messages waiting for a consumer."},
    {"ipcx_queue_unacked", "unacked", "gauge", "Messages delivered and not yet acknowledged."},
    {"ipcx_queue_bytes", "bytes", "gauge", "Bytes of the messages the queue holds."},
    {"ipcx_queue_consumers", "consumers", "gauge", "Consumers attached to the queue."},
    {"ipcx_queue_published_total", "published", "counter", "Messages accepted into the queue."},
    {"ipcx_queue_delivered_total", "delivered", "counter", "Deliveries to consumers, redeliveries included."},
    {"ipcx_queue_redelivered_total", "redelivered", "counter", "Deliveries of a message that was delivered before."},
    {"ipcx_queue_acked_total", "acked", "counter", "Messages acknowledged by a consumer."},
    {"ipcx_queue_dead_lettered_total", "dead_lettered", "counter", "Messages moved to the dead-letter queue."},
    {"ipcx_queue_expired_total", "expired", "counter", "Messages dropped because their TTL passed."},
    {"ipcx_queue_rejected_total", "rejected", "counter", "Publishes refused (queue limits)."},
    {"ipcx_queue_duplicates_total", "duplicates", "counter", "Publishes dropped as duplicates of a recent message id."},
};

// Prometheus refuses a scrape that repeats a series: the first queue of a name wins.
std::vector<std::pair<std::string, const json*>> named_items(const json& items, const char* key) {
  std::vector<std::pair<std::string, const json*>> out;
  std::set<std::string> seen;
  for (const json& item : items) {
    auto name = string_member(item, key);
    if (name && seen.insert(*name).second) out.emplace_back(std::move(*name), &item);
  }
  return out;
}

// ---- rates: raw counters kept by the sampler, turned into per-second rates on request ----

struct QueueCounters {
  double published = 0, delivered = 0, acked = 0, ready = 0;
};

struct RawSample {
  std::int64_t wall_ms = 0;
  std::optional<std::int64_t> broker_ms;  // the daemon's clock at the snapshot, when it says
  std::chrono::steady_clock::time_point taken;
  double topic_messages = 0, connections = 0;
  std::map<std::string, QueueCounters> queues;
};

double connection_count(const json& snapshot) {
  if (auto n = number(member(snapshot, "broker"), "connections")) return *n;
  return static_cast<double>(array_member(snapshot, "connections").size());
}

RawSample raw_sample(const json& snapshot) {
  RawSample s;
  s.taken = std::chrono::steady_clock::now();
  s.wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (auto t = number(member(snapshot, "broker"), "time_ms")) s.broker_ms = static_cast<std::int64_t>(*t);
  s.topic_messages = number(snapshot, "topic_messages").value_or(0);
  s.connections = connection_count(snapshot);
  for (auto& [name, q] : named_items(array_member(snapshot, "queues"), "name")) {
    s.queues[name] = {.published = number(*q, "published").value_or(0),
                      .delivered = number(*q, "delivered").value_or(0),
                      .acked = number(*q, "acked").value_or(0),
                      .ready = number(*q, "ready").value_or(0)};
  }
  return s;
}

// Three decimals are plenty for a chart and keep /api/rates readable.
double rounded(double v) { return std::round(v * 1000.0) / 1000.0; }

// A counter that went down was reset (daemon restart, queue re-created): no negative rate.
double rate(double before, double after, double seconds) { return after >= before ? rounded((after - before) / seconds) : 0.0; }

std::optional<json> rate_between(const RawSample& a, const RawSample& b) {
  // The daemon's own timestamps measure the interval between the counters exactly (the
  // sampler's clock adds the snapshot's latency jitter), unless its clock stood still or
  // stepped back.
  double seconds = a.broker_ms && b.broker_ms ? static_cast<double>(*b.broker_ms - *a.broker_ms) / 1000.0 : 0.0;
  const bool broker_clock = seconds > 0;
  if (!broker_clock) seconds = std::chrono::duration<double>(b.taken - a.taken).count();
  if (!(seconds > 0)) return std::nullopt;
  json queues = json::object();
  double published = 0, delivered = 0, acked = 0;
  // Totals are sums of per-queue rates, so deleting a queue does not read as a reset of all.
  for (const auto& [name, now] : b.queues) {
    auto it = a.queues.find(name);
    const QueueCounters then = it == a.queues.end() ? QueueCounters{} : it->second;
    json q = {{"published", rate(then.published, now.published, seconds)},
              {"delivered", rate(then.delivered, now.delivered, seconds)},
              {"acked", rate(then.acked, now.acked, seconds)},
              {"ready", now.ready}};
    published += q["published"].get<double>();
    delivered += q["delivered"].get<double>();
    acked += q["acked"].get<double>();
    queues[name] = std::move(q);
  }
  return json{{"t", broker_clock ? *b.broker_ms : b.wall_ms},
              {"published", rounded(published)},
              {"delivered", rounded(delivered)},
              {"acked", rounded(acked)},
              {"topic_messages", rate(a.topic_messages, b.topic_messages, seconds)},
              {"connections", b.connections},
              {"queues", std::move(queues)}};
}

// ---- addresses ----

// The loopback address to bind for `address`, or nothing if it is not loopback.
std::optional<std::string> loopback_bind_address(const std::string& address) {
  if (address == "localhost") return "127.0.0.1";
  in_addr v4{};
  if (::inet_pton(AF_INET, address.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127 ? std::optional(address) : std::nullopt;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, address.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6)) return address;
  return std::nullopt;
}

// A Host header naming this machine's loopback. Anything else means a browser was pointed
// here through another name (DNS rebinding) and must not read the API.
// The header is the name and at most a port (":" and 1 to 5 digits), nothing else
// ("localhost:80@evil.com" is refused).
bool host_allowed(const std::string& host) {
  if (host.empty()) return true;  // HTTP/1.0 clients send none; browsers always do
  std::string name;
  std::string_view port;
  if (host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string::npos) return false;
    name = host.substr(1, close - 1);
    port = std::string_view(host).substr(close + 1);
  } else {
    const auto colon = host.find(':');
    name = host.substr(0, colon);
    if (colon != std::string::npos) port = std::string_view(host).substr(colon);
  }
  if (!port.empty()) {
    const auto digits = port.substr(1);
    if (port.front() != ':' || digits.empty() || digits.size() > 5 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
  }
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name == "localhost" || loopback_bind_address(name).has_value();
}

// cpp-httplib's default sets SO_REUSEPORT, which would let a second daemon bind the same port
// and silently take half the scrapes; SO_REUSEADDR alone still allows a quick restart.
// Close-on-exec keeps the listener out of children the daemon spawns.
void listener_options(int fd) {
  int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

constexpr std::size_t worker_threads = 8;

// cpp-httplib 0.11 listens with a backlog of 5 (compiled into Debian's shared library): a
// browser's parallel fetches plus a scraper overflow it, and a dropped SYN costs the client a
// one-second retransmit. The listening socket is a protected member, reached here to raise it.
class Server : public httplib::Server {
 public:
  void raise_backlog() { ::listen(svr_sock_, SOMAXCONN); }
};

}  // namespace

// ---- public pure helpers ----

std::string prometheus_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  const auto* p = reinterpret_cast<const unsigned char*>(value.data());
  const std::size_t n = value.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c == '\\') out += "\\\\";
      else if (c == '"') out += "\\\"";
      else if (c == '\n') out += "\\n";
      else out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A well-formed multi-byte sequence (no overlongs, surrogates or code points past
    // U+10FFFF) is copied; anything else becomes one U+FFFD per bad byte.
    std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    bool ok = len != 0 && c <= 0xF4 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len == 3) ok = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] >= 0xA0);
    if (ok && len == 4) ok = !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] >= 0x90);
    if (ok) {
      out.append(value.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string json_text(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string prometheus_text(const json& snapshot) {
  Exposition e;
  const json& broker = member(snapshot, "broker");
  const auto queues = named_items(array_member(snapshot, "queues"), "name");
  for (const auto& m : queue_metrics) {
    e.family(m.name, m.type, m.help);
    for (const auto& [name, q] : queues) e.sample(m.name, label("queue", name), member(*q, m.key));
  }

  e.family("ipcx_services", "gauge", "Services in the registry.");
  e.sample("ipcx_services", "", array_member(snapshot, "services").size());
  e.family("ipcx_topic_subscribers", "gauge", "Subscribers per topic pattern.");
  for (const auto& [pattern, t] : named_items(array_member(snapshot, "topics"), "pattern"))
    e.sample("ipcx_topic_subscribers", label("pattern", pattern), member(*t, "subscribers"));
  e.family("ipcx_topic_messages_total", "counter", "Messages published to topics.");
  e.sample("ipcx_topic_messages_total", "", member(snapshot, "topic_messages"));

  e.family("ipcx_connections", "gauge", "Client connections open now.");
  e.sample("ipcx_connections", "", connection_count(snapshot));
  e.family("ipcx_denials_total", "counter", "Requests refused by access control.");
  e.sample("ipcx_denials_total", "", member(broker, "denials"));
  e.family("ipcx_uptime_seconds", "gauge", "Seconds since the daemon started.");
  if (auto up = number(broker, "uptime_ms")) e.sample("ipcx_uptime_seconds", "", *up / 1000.0);
  e.family("ipcx_build_info", "gauge", "Always 1; the daemon's version as a label.");
  e.sample("ipcx_build_info", label("version", string_member(broker, "version").value_or("unknown")), 1);
  return e.take();
}

// ---- the server ----

struct Http::Impl {
  HttpOptions options;
  std::function<json()> snapshot;
  std::string bind_address;
  std::uint16_t port = 0;
  Server server;
  std::thread server_thread;
  std::atomic<bool> listen_returned{false};

  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::deque<RawSample> history;  // history + 1 raw samples make `history` rates
  std::thread sampler;

  void sample_loop();
  json rates(std::optional<std::int64_t> since);
  void route(const httplib::Request& req, httplib::Response& res);
};

void Http::Impl::sample_loop() {
  auto next = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex);
  while (!stopping) {
    lock.unlock();
    std::optional<RawSample> s;
    try {
      s = raw_sample(snapshot());
    } catch (...) {
      // A snapshot that failed leaves a gap in the chart, not a dead sampler.
    }
    lock.lock();
    if (s) {
      history.push_back(std::move(*s));
      while (history.size() > options.history + 1) history.pop_front();
    }
    // Keep the cadence, but never try to catch up after a slow snapshot.
    next = std::max(next + options.sample_every, std::chrono::steady_clock::now());
    wake.wait_until(lock, next, [this] { return stopping; });
  }
}

json Http::Impl::rates(std::optional<std::int64_t> since) {
  std::deque<RawSample> copy;
  {
    std::lock_guard lock(mutex);
    copy = history;
  }
  json samples = json::array();
  for (std::size_t i = 1; i < copy.size(); ++i)
    if (auto r = rate_between(copy[i - 1], copy[i]); r && (!since || (*r)["t"].get<std::int64_t>() > *since))
      samples.push_back(std::move(*r));
  return {{"interval_s", std::chrono::duration<double>(options.sample_every).count()},
          {"capacity", options.history},
          {"samples", std::move(samples)}};
}

namespace {
// ?since=T (unix ms): only the samples after T. False: T is not a whole number of
// milliseconds that fits in 64 bits (the request is answered 400).
bool since_param(const httplib::Request& req, std::optional<std::int64_t>& since) {
  since.reset();
  if (!req.has_param("since")) return true;
  const std::string v = req.get_param_value("since");
  std::int64_t t = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), t);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size()) return false;
  since = t;
  return true;
}
}  // namespace

void Http::Impl::route(const httplib::Request& req, httplib::Response& res) {
  if (!host_allowed(req.get_header_value("Host"))) {
    res.status = 403;
    res.set_content("forbidden: the Host header must name the loopback interface\n", "text/plain; charset=utf-8");
    return;
  }
  if (req.method != "GET" && req.method != "HEAD") {
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_content("method not allowed: the API is read-only\n", "text/plain; charset=utf-8");
    return;
  }
  const std::string& path = req.path;
  if (path == "/") {
    // Defence in depth for the page: nothing may load from anywhere but this origin, and no
    // other site may frame it.
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res.set_content(std::string(dashboard_html()), "text/html; charset=utf-8");
    return;
  }
  if (path == "/api/rates") {
    std::optional<std::int64_t> since;
    if (!since_param(req, since)) {
      res.status = 400;
      res.set_content("bad request: since must be a time in unix milliseconds (an integer)\n", "text/plain; charset=utf-8");
      return;
    }
    res.set_content(json_text(rates(since)), "application/json");
    return;
  }
  static const std::map<std::string, const char*, std::less<>> parts = {
      {"/api/queues", "queues"}, {"/api/topics", "topics"}, {"/api/services", "services"}, {"/api/connections", "connections"}};
  auto part = parts.find(path);
  if (path != "/metrics" && path != "/api/status" && part == parts.end()) {
    res.status = 404;
    res.set_content("not found\n", "text/plain; charset=utf-8");
    return;
  }
  json snap;
  try {
    snap = snapshot();
  } catch (...) {
    res.status = 503;
    res.set_content(R"({"error":"the daemon did not answer the snapshot"})", "application/json");
    return;
  }
  if (path == "/metrics") {
    res.set_content(prometheus_text(snap), "text/plain; version=0.0.4; charset=utf-8");
  } else if (path == "/api/status") {
    json status = member(snap, "broker").is_object() ? member(snap, "broker") : json::object();
    if (const json& tm = member(snap, "topic_messages"); !tm.is_null()) status["topic_messages"] = tm;
    res.set_content(json_text(status), "application/json");
  } else {
    res.set_content(json_text(array_member(snap, part->second)), "application/json");
  }
}

Http::Http(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Http>> Http::start(HttpOptions options, std::function<json()> snapshot) {
  auto bind_address = loopback_bind_address(options.address);
  if (!bind_address)
    return fail(Errc::invalid_argument, "http start", "not a loopback address: '" + options.address + "' (the API has no authentication)");
  if (!snapshot) return fail(Errc::invalid_argument, "http start", "no snapshot callback");
  if (options.sample_every <= std::chrono::milliseconds::zero() || options.history == 0)
    return fail(Errc::invalid_argument, "http start", "sample_every and history must be positive");

  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->snapshot = std::move(snapshot);
  impl->bind_address = *bind_address;
  Impl* self = impl.get();

  auto& server = impl->server;
  server.new_task_queue = [] { return new httplib::ThreadPool(worker_threads); };
  server.set_socket_options(listener_options);
  server.set_default_headers({{"Cache-Control", "no-store"},
                              {"X-Content-Type-Options", "nosniff"},
                              {"Referrer-Policy", "no-referrer"},
                              {"X-Frame-Options", "DENY"}});
  // Short timeouts bound how long the destructor waits for idle or stalled connections.
  server.set_keep_alive_timeout(1);
  server.set_read_timeout(3, 0);
  server.set_write_timeout(5, 0);
  server.set_payload_max_length(64 * 1024);
  // Routing by exact path in one handler: cpp-httplib's regex routes run std::regex over the
  // whole path, which recurses per character and can overflow the stack on a long one.
  server.set_pre_routing_handler([self](const httplib::Request& req, httplib::Response& res) {
    try {
      self->route(req, res);
    } catch (...) {
      res.status = 500;
      res.set_content("internal error\n", "text/plain; charset=utf-8");
    }
    return httplib::Server::HandlerResponse::Handled;
  });

  errno = 0;
  int port = impl->options.port;
  if (port == 0) {
    port = server.bind_to_any_port(impl->bind_address);
  } else if (!server.bind_to_port(impl->bind_address, port)) {
    port = -1;
  }
  if (port <= 0) {
    // cpp-httplib reports only failure; the errno of its last bind() says why.
    const int err = errno;
    const auto where = fmt::format("{}:{}", impl->bind_address, impl->options.port);
    if (err == EADDRINUSE) return fail(Errc::address_in_use, "http bind", where);
    if (err != 0) return fail_errno(err, "http bind", where);
    return fail(Errc::system, "http bind", where);
  }
  impl->port = static_cast<std::uint16_t>(port);
  server.raise_backlog();

  try {
    impl->server_thread = std::thread([self] {
      try {
        self->server.listen_after_bind();
      } catch (...) {
        // Its worker threads could not be created: start() reports it.
      }
      self->listen_returned = true;
    });
  } catch (const std::system_error& e) {
    return fail_errno(e.code().value(), "http thread");
  }
  // stop() is a no-op until the accept loop runs, so a destructor racing a fresh start would
  // otherwise leave the loop running forever.
  while (!server.is_running() && !impl->listen_returned) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!server.is_running()) {
    impl->server_thread.join();
    return fail(Errc::system, "http listen", fmt::format("{}:{}", impl->bind_address, impl->port));
  }
  try {
    impl->sampler = std::thread([self] { self->sample_loop(); });
  } catch (const std::system_error& e) {
    server.stop();
    impl->server_thread.join();
    return fail_errno(e.code().value(), "http thread");
  }
  return std::unique_ptr<Http>(new Http(std::move(impl)));
}

Http::~Http() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->sampler.join();
  impl_->server.stop();
  impl_->server_thread.join();
}

std::string Http::url() const {
  const bool v6 = impl_->bind_address.find(':') != std::string::npos;
  return v6 ? fmt::format("http://[{}]:{}/", impl_->bind_address, impl_->port)
            : fmt::format("http://{}:{}/", impl_->bind_address, impl_->port);
}

std::uint16_t Http::port() const { return impl_->port; }

}  // namespace ipcx::broker
