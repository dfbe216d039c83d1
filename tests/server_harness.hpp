// Runs an ipcx::Server's loop on a thread of its own, so a test can play clients (which block)
// on its main thread. Everything the test reads from the server goes through post(): the
// server's members are loop-thread only.
#pragma once

#include <chrono>
#include <future>
#include <thread>
#include <type_traits>
#include <utility>

#include <sys/resource.h>

#include <ipcx/server.hpp>

namespace ipcx::test {

class ServerThread {
 public:
  explicit ServerThread(Server server) : server_(std::move(server)), thread_([this] { (void)server_.run(); }) {}
  ~ServerThread() { stop(); }
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;

  // Stops the loop and waits for it; the server is destroyed with this object.
  void stop() {
    if (thread_.joinable()) {
      server_.stop();
      thread_.join();
    }
  }
  // Waits for the loop to return by itself (a handler called stop()).
  void join() {
    if (thread_.joinable()) thread_.join();
  }

  // Runs f(server) on the loop thread and returns its result.
  template <class F>
  auto call(F&& f) {
    using R = std::invoke_result_t<F&, Server&>;
    std::promise<R> done;
    auto fut = done.get_future();
    server_.post([&] {
      if constexpr (std::is_void_v<R>) {
        f(server_);
        done.set_value();
      } else {
        done.set_value(f(server_));
      }
    });
    return fut.get();
  }
  ServerStats stats() {
    return call([](Server& s) { return s.stats(); });
  }
  // Polls the stats until `pred` holds; false if it still does not after `timeout`.
  template <class Pred>
  bool wait_stats(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (pred(stats())) return true;
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  // Thread-safe members only (post, stop).
  Server& server() noexcept { return server_; }

 private:
  Server server_;
  std::thread thread_;
};

// Raises the soft RLIMIT_NOFILE to the hard limit (children inherit it); returns the new soft
// limit.
inline rlim_t raise_fd_limit() {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  ::getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

}  // namespace ipcx::test
