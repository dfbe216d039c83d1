// calc_server URL: serves calc.Calc (calc.proto) at URL until SIGINT/SIGTERM.
//   calc_server unix:///tmp/calc.sock &
//   calc_client unix:///tmp/calc.sock          (or: ipcx call unix:///tmp/calc.sock calc.Calc/Add '{"a":2,"b":3}')
#include <csignal>
#include <cstdio>

#include <ipcx/rpc.hpp>

#include "calc.ipcx.h"

namespace {

class CalcService final : public calc::Calc::Service {
 public:
  ipcx::rpc::Status Add(ipcx::rpc::Context&, const calc::AddRequest& req, calc::AddReply& resp) override {
    resp.set_sum(req.a() + req.b());
    return {};
  }
  ipcx::rpc::Status Range(ipcx::rpc::Context&, const calc::RangeRequest& req, ipcx::rpc::Writer<calc::Number>& out) override {
    if (req.count() < 0) return {ipcx::rpc::Code::invalid_argument, "count is negative"};
    calc::Number n;
    for (std::int64_t i = 0; i < req.count(); ++i) {
      n.set_value(req.from() + i);
      if (!out.write(n)) return {ipcx::rpc::Code::cancelled, "the client went away"};
    }
    return {};
  }
};

ipcx::rpc::Server* g_server = nullptr;
extern "C" void on_signal(int) { g_server->stop(); }  // stop() is async-signal-safe

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s URL\n", argv[0]);
    return 2;
  }
  auto server = ipcx::rpc::Server::create();
  if (!server) return std::fprintf(stderr, "calc_server: %s\n", server.error().message().c_str()), 1;
  CalcService service;
  calc::Calc::serve(*server, service);  // the rpcs, and the descriptors `ipcx call` reads
  auto url = server->listen(argv[1]);
  if (!url) return std::fprintf(stderr, "calc_server: %s\n", url.error().message().c_str()), 1;
  g_server = &*server;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::printf("ready %s\n", url->c_str());
  std::fflush(stdout);
  auto done = server->run();
  if (!done) return std::fprintf(stderr, "calc_server: %s\n", done.error().message().c_str()), 1;
  return 0;
}
