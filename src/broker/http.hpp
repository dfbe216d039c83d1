// ipcxd's HTTP introspection endpoint: Prometheus /metrics, read-only /api/* JSON and a live
// dashboard page, served on loopback only from the daemon's JSON snapshot.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <ipcx/error.hpp>

namespace ipcx::broker {

struct HttpOptions {
  // A loopback literal only (127.0.0.0/8, ::1, or "localhost"): the API has no
  // authentication, so anything else is refused with Errc::invalid_argument.
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: the kernel picks one
  // How often the sampler takes a snapshot for /api/rates, and how many rates it keeps.
  std::chrono::milliseconds sample_every{1000};
  std::size_t history = 300;
};

// Routes (GET and HEAD; any other method gets 405, an unknown path 404):
//   /metrics          Prometheus text format 0.0.4
//   /api/status       snapshot.broker (+ topic_messages)
//   /api/queues       snapshot.queues       /api/topics       snapshot.topics
//   /api/services     snapshot.services     /api/connections  snapshot.connections
//   /api/rates        per-second rates over the kept history; ?since=T (unix ms) returns only
//                     the samples after T, so a dashboard polling it does not copy the whole
//                     history (300 samples x every queue) each second
//   /                 the dashboard (self-contained HTML, polls the API)
// A request whose Host header is not a loopback name is refused with 403 (DNS rebinding
// would otherwise let any web page read the API through the user's browser).
class Http {
 public:
  // Binds, then serves on its own threads until destroyed; returns once it accepts
  // connections. `snapshot` is called from the HTTP threads and the sampler thread,
  // concurrently: it must be thread-safe, should not block for long, and may throw (the
  // request then gets 503). Missing or extra keys in what it returns are tolerated.
  // Errors: invalid_argument (non-loopback address, no snapshot, zero interval or history),
  // address_in_use, or the OS error of socket/bind/listen.
  static Result<std::unique_ptr<Http>> start(HttpOptions options, std::function<nlohmann::json()> snapshot);

  // Stops serving and joins every thread, waiting for snapshot() calls in progress: do not
  // destroy an Http on a thread that snapshot() waits for (e.g. the loop it asks). Blocks for
  // up to a few seconds: idle keep-alive connections are polled, not woken (1 s), and a
  // client stalled mid-request holds its worker until the read timeout (3 s).
  ~Http();

  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  std::string url() const;  // "http://127.0.0.1:PORT/"
  std::uint16_t port() const;

 private:
  struct Impl;
  explicit Http(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The pure parts, exposed for tests and reuse (no I/O).

// The Prometheus text exposition (format 0.0.4) of a snapshot.
std::string prometheus_text(const nlohmann::json& snapshot);

// A label value escaped for the text format (backslash, double quote, newline), with any
// invalid UTF-8 replaced by U+FFFD: Prometheus rejects a whole scrape over one bad byte.
std::string prometheus_label_value(std::string_view value);

// JSON text that never throws on invalid UTF-8 in user-chosen names (replaced by U+FFFD).
std::string json_text(const nlohmann::json& value);

// The dashboard page served at "/" (dashboard.cpp).
std::string_view dashboard_html() noexcept;

}  // namespace ipcx::broker
