// ipcxd: the broker daemon (docs/broker.md). Everything is in the library (broker.hpp);
// this reads the configuration file and flags, takes a socket from systemd when it passes one,
// and runs until SIGTERM or SIGINT.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "broker/broker.hpp"
#include "broker/config.hpp"

namespace {

// systemd socket activation (sd_listen_fds(3)): LISTEN_PID names us, LISTEN_FDS counts the
// descriptors from 3 on. One is used: the broker's socket.
int activated_fd() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds) return -1;
  if (std::strtol(pid, nullptr, 10) != ::getpid() || std::strtol(fds, nullptr, 10) < 1) return -1;
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::string config_file, socket, state_dir, http, policy;
  long group_us = -1;
  bool quiet = false;
  CLI::App app{"ipcxd — the ipcx broker: durable queues, topics, a service registry (docs/broker.md)"};
  app.add_option("--config", config_file, "A TOML configuration file (docs/broker.md#configuration); flags override it");
  app.add_option("--socket", socket,
                 "URL to listen at (default: $IPCX_BROKER, else unix://$XDG_RUNTIME_DIR/ipcx/ipcxd.sock, else "
                 "unix:///run/ipcx/ipcxd.sock for root and unix:///tmp/ipcx-UID/ipcxd.sock for others)");
  app.add_option("--state-dir", state_dir,
                 "Where queues live (default: /var/lib/ipcx for root; else $XDG_STATE_HOME/ipcx, else ~/.local/state/ipcx, else /tmp/ipcx-UID/state)");
  app.add_option("--http", http, "Introspection at ADDRESS:PORT on loopback (default 127.0.0.1:0: a free port), or 'off'");
  app.add_option("--policy", policy, "Access-control policy file (default: only this uid and root)");
  app.add_option("--group-window", group_us, "µs a group-commit sync waits for more messages (default 2000)")->check(CLI::Range(0L, 1'000'000L));
  app.add_flag("--quiet", quiet, "No log lines on standard error");
  CLI11_PARSE(app, argc, argv);

  ipcx::broker::BrokerOptions options;
  if (!config_file.empty()) {
    auto c = ipcx::broker::load_config(config_file);
    if (!c) {
      fmt::print(stderr, "ipcxd: {}\n", c.error().message());
      return 2;
    }
    options.url = c->socket;
    options.state_dir = c->state_dir;
    options.http = c->http == "off" ? "" : c->http;
    options.policy = c->policy;
    options.group_window = std::chrono::microseconds(c->group_window_us);
    options.max_connections = c->max_connections;
    options.memory_limit = c->memory_limit;
  }
  if (!socket.empty()) options.url = socket;
  if (!state_dir.empty()) options.state_dir = state_dir;
  if (!http.empty()) options.http = http == "off" ? "" : http;
  if (!policy.empty()) options.policy = policy;
  // The HTTP API has no authentication and shows every queue and service to every local user:
  // where a policy shares the broker with other users, it is off unless a port is named
  // (--http, or an http key other than the default).
  if (!options.policy.empty() && http.empty() && options.http == ipcx::broker::BrokerOptions{}.http) options.http.clear();
  if (group_us >= 0) options.group_window = std::chrono::microseconds(group_us);
  options.log_to_stderr = !quiet;
  options.listen_fd = activated_fd();

  // Blocked before any thread starts, so only the loop's signalfd sees them.
  ipcx::broker::Broker::block_stop_signals();
  auto broker = ipcx::broker::Broker::create(options);
  if (!broker) {
    fmt::print(stderr, "ipcxd: {}\n", broker.error().message());
    return 1;
  }
  if (auto r = (*broker)->handle_signals(); !r) {
    fmt::print(stderr, "ipcxd: {}\n", r.error().message());
    return 1;
  }
  if (auto r = (*broker)->run(); !r) {
    fmt::print(stderr, "ipcxd: {}\n", r.error().message());
    return 1;
  }
  return 0;
}
