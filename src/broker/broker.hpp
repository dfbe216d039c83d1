// ipcxd as a library (docs/broker.md): durable queues served on the server engine. The
// program (main.cpp) only parses flags and runs it; tests run it in-process or as ipcxd.
//
// Threads: the engine's loop thread does everything but durability; one sync thread runs the
// fdatasyncs of queues that wait for them and hands the results back to the loop, so a slow
// disk never stalls the connections.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <ipcx/error.hpp>

namespace ipcx::broker {

struct BrokerOptions {
  std::string url;                   // where to listen; empty: ipcx::broker::default_url()
  std::filesystem::path state_dir;   // empty: default_state_dir()
  // Sync::group queues: how long a sync waits for more messages once one is waiting.
  std::chrono::microseconds group_window{2000};
  bool log_to_stderr = true;         // one line per notable event (recovery, denials, errors)
  // Introspection over HTTP: "ADDRESS:PORT" on loopback (port 0: the kernel picks); empty: off.
  std::string http = "127.0.0.1:0";
  // The access-control policy file (docs/broker.md#access-control); empty: only the daemon's
  // own uid (and root).
  std::filesystem::path policy;
  std::size_t max_connections = 0;                  // 0: the engine's default
  std::size_t memory_limit = std::size_t{256} << 20;  // connection buffers
  // Socket activation: a listening descriptor passed by systemd (LISTEN_FDS); -1: listen at `url`.
  int listen_fd = -1;
};

// $XDG_STATE_HOME/ipcx, else $HOME/.local/state/ipcx; /var/lib/ipcx for root.
std::filesystem::path default_state_dir();

class Broker {
 public:
  // Recovers every queue under the state directory and starts listening. Errors:
  // address_in_use (another ipcxd serves that socket), the state directory's I/O errors.
  static Result<std::unique_ptr<Broker>> create(BrokerOptions options);
  ~Broker();

  // Serves until stop() (or SIGTERM/SIGINT when handle_signals() was called). Blocks.
  Result<void> run();
  // Thread-safe and async-signal-safe.
  void stop() noexcept;
  // Makes SIGTERM and SIGINT stop the broker cleanly. They must be blocked in every thread
  // (call before create(), from main, with block_stop_signals()).
  Result<void> handle_signals();
  static void block_stop_signals() noexcept;

  const std::string& url() const noexcept;

  struct Impl;

 private:
  explicit Broker(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipcx::broker
