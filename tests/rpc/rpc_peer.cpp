// The RPC test peer: an rpc::Server with the methods of rpc_peer.hpp, in a process of its own.
//
//   ipcx-rpc-peer URL [MAX_IN_FLIGHT [MAX_BACKLOG [loop|threads]]]
//
// Listens at URL and prints "ready BOUND-URL" on stdout; with URL "pipe:" it serves the pipe
// to its parent (spawn_connected) instead. "loop" (the default) serves every connection on the
// server engine's loop; "threads" accepts them itself and serves each with Server::serve() on a
// thread of its own. Runs until SIGTERM, or the pipe's end.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <ipcx/ipcx.hpp>
#include <ipcx/rpc.hpp>

#include "rpc/rpc_peer.hpp"

using namespace ipcx::test::rpc_peer;
using ipcx::rpc::Code;
using ipcx::rpc::Context;
using ipcx::rpc::Status;

namespace {
ipcx::rpc::Server* g_server = nullptr;
std::atomic<std::uint64_t> g_notes{0}, g_saw_cancel{0}, g_sleeping{0};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s URL [MAX_IN_FLIGHT [MAX_BACKLOG [loop|threads]]]\n", argv[0]);
    return 2;
  }
  const std::string url = argv[1];
  ipcx::rpc::ServerOptions opts;
  if (argc > 2) opts.max_in_flight = std::strtoul(argv[2], nullptr, 10);
  if (argc > 3) opts.max_backlog = std::strtoul(argv[3], nullptr, 10);
  opts.transport.max_message = std::size_t{16} << 20;
  auto server = ipcx::rpc::Server::create(opts);
  if (!server) {
    std::fprintf(stderr, "rpc-peer: %s\n", server.error().message().c_str());
    return 1;
  }
  auto echo = [](Context&, const ipcx::rpc::Payload& in, std::vector<std::byte>& out) {
    out.assign(in.bytes().begin(), in.bytes().end());
    return Status{};
  };
  server->unary(kEcho, echo);
  server->unary(kEchoLoop, echo, ipcx::rpc::Run::loop);
  server->unary(kAdd, [](Context&, const Add& q, std::int64_t& r) {
    r = q.a + q.b;
    return Status{};
  });
  server->unary(kChecksum, [](Context&, const ipcx::rpc::Payload& in, Sum& s) {
    s = Sum{.checksum = checksum(in.bytes()), .size = in.size(), .mapped = in.mapped()};
    return Status{};
  });
  server->unary(kFill, [](Context&, const Fill& f, ipcx::rpc::Payload& out) {
    std::vector<std::byte> b(f.size);
    fill(b, f.seed);
    out = ipcx::rpc::Payload(std::move(b));
    return Status{};
  });
  server->unary(kSleep, [](Context& ctx, const std::uint32_t& ms, ipcx::rpc::Empty&) {
    ++g_sleeping;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until) {
      if (ctx.cancelled()) {
        ++g_saw_cancel;
        --g_sleeping;
        return Status{Code::cancelled, "gave up"};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    --g_sleeping;
    return Status{};
  });
  server->server_stream(kCount, [](Context&, const std::uint32_t& n, ipcx::rpc::Writer<std::uint32_t>& w) {
    for (std::uint32_t i = 0; i < n; ++i)
      if (!w.write(i)) return Status{Code::cancelled, "the client went away"};
    return Status{};
  });
  server->unary(kWho, [](Context& ctx, const ipcx::rpc::Empty&, Who& w) {
    const auto& p = ctx.peer();
    w = Who{.pid = p.pid, .uid = static_cast<std::int64_t>(p.uid), .gid = static_cast<std::int64_t>(p.gid), .verified = p.verified};
    return Status{};
  });
  server->unary(kNote, [](Context&, const std::uint64_t& v, ipcx::rpc::Empty&) {
    g_notes += v;
    return Status{};
  });
  server->unary(kCounts, [](Context&, const ipcx::rpc::Empty&, Counts& c) {
    c = Counts{.notes = g_notes, .saw_cancel = g_saw_cancel, .sleeping = g_sleeping};
    return Status{};
  }, ipcx::rpc::Run::loop);
  server->unary(kFail, [](Context&, const std::string& why, ipcx::rpc::Empty&) { return Status{Code::permission_denied, why}; });

  g_server = &*server;
  std::signal(SIGTERM, [](int) { g_server->stop(); });
  if (url == "pipe:") {
    auto conn = ipcx::connect("pipe:");
    if (!conn) {
      std::fprintf(stderr, "rpc-peer: %s\n", conn.error().message().c_str());
      return 1;
    }
    if (auto r = server->adopt(std::move(*conn)); !r) return 1;
    // The parent closing its end ends the connection, and the peer with it.
    while (server->engine_stats().connections > 0) {
      if (auto r = server->run_once(std::chrono::milliseconds(100)); !r) return 1;
    }
    return 0;
  }
  if (argc > 4 && std::string(argv[4]) == "threads") {
    auto listener = ipcx::listen(url, opts.transport);
    if (!listener) {
      std::fprintf(stderr, "rpc-peer: %s\n", listener.error().message().c_str());
      return 1;
    }
    std::printf("ready %s\n", listener->url().c_str());
    std::fflush(stdout);
    static std::atomic<bool> g_term{false};
    std::signal(SIGTERM, [](int) { g_term = true; });
    std::vector<std::thread> threads;
    while (!g_term) {
      auto conn = listener->accept(std::chrono::milliseconds(50));
      if (!conn) continue;
      threads.emplace_back([&server, c = std::move(*conn)]() mutable { (void)server->serve(std::move(c)); });
    }
    server->stop();
    for (auto& t : threads) t.join();
    return 0;
  }
  auto bound = server->listen(url);
  if (!bound) {
    std::fprintf(stderr, "rpc-peer: %s\n", bound.error().message().c_str());
    return 1;
  }
  std::printf("ready %s\n", bound->c_str());
  std::fflush(stdout);
  return server->run() ? 0 : 1;
}
