// The protobuf RPC test peer: serves ipcx.pbtest.Calc and ipcx.pbtest.Watcher (proto/pbtest/
// test.proto) through the stubs protoc-gen-ipcx generated, in a process of its own.
//
//   ipcx-pb-peer URL [--no-describe]
//
// Prints "ready BOUND-URL" on stdout and serves until SIGTERM. --no-describe registers the
// rpcs without the descriptors (ipcx call then needs --descriptor-set).
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include <ipcx/rpc.hpp>

#include "pbtest/test.ipcx.h"

namespace {

using ipcx::rpc::Code;
using ipcx::rpc::Context;
using ipcx::rpc::Status;

class CalcImpl final : public ipcx::pbtest::Calc::Service {
 public:
  Status Add(Context&, const ipcx::pbtest::AddRequest& req, pbcommon::Num& resp) override {
    resp.set_value(req.a() + req.b() + req.at().seconds());
    return {};
  }
  Status Range(Context&, const ipcx::pbtest::RangeRequest& req, ipcx::rpc::Writer<pbcommon::Num>& out) override {
    pbcommon::Num n;
    for (int i = 0; i < req.count(); ++i) {
      n.set_value(i);
      if (!out.write(n)) return {Code::cancelled, "the client went away"};
    }
    if (!req.fail_with().empty()) return {Code::aborted, req.fail_with()};
    return {};
  }
  Status Echo(Context&, const ipcx::pbtest::Blob& req, ipcx::pbtest::Blob& resp) override {
    resp = req;
    return {};
  }
  Status Unwrap(Context&, const ipcx::pbtest::Outer& req, ipcx::pbtest::Outer::Inner& resp) override {
    resp = req.inner();
    return {};
  }
};

class WatcherImpl final : public ipcx::pbtest::Watcher::Service {
 public:
  Status Watch(Context&, const pbcommon::Num& req, ipcx::rpc::Writer<pbcommon::Num>& out) override {
    pbcommon::Num n;
    n.set_value(req.value() * 2);
    out.write(n);
    return {};
  }
};

ipcx::rpc::Server* g_server = nullptr;
extern "C" void on_term(int) { g_server->stop(); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s URL [--no-describe]\n", argv[0]);
    return 2;
  }
  const bool describe = !(argc > 2 && std::strcmp(argv[2], "--no-describe") == 0);
  ipcx::rpc::ServerOptions opts;
  opts.transport.max_message = std::size_t{16} << 20;
  auto server = ipcx::rpc::Server::create(opts);
  if (!server) return std::fprintf(stderr, "pb-peer: %s\n", server.error().message().c_str()), 1;
  CalcImpl calc;
  WatcherImpl watcher;
  if (describe) {
    ipcx::pbtest::Calc::serve(*server, calc);
    ipcx::pbtest::Watcher::serve(*server, watcher);
  } else {
    // Two of the rpcs without their descriptors, as a server written without serve() has them.
    using ipcx::pbtest::Calc;
    server->unary(Calc::kAdd, [&calc](Context& c, const ipcx::pbtest::AddRequest& q, pbcommon::Num& r) { return calc.Add(c, q, r); });
    server->server_stream(Calc::kRange, [&calc](Context& c, const ipcx::pbtest::RangeRequest& q, ipcx::rpc::Writer<pbcommon::Num>& w) {
      return calc.Range(c, q, w);
    });
  }
  // Descriptors a careless or hostile server might serve: not a FileDescriptorSet, and one
  // that does not define the service it is served for.
  server->describe("hostile.Garbage", {std::byte{0xff}, std::byte{0xff}, std::byte{0x01}});
  server->describe("hostile.Absent", ipcx::rpc::file_descriptor_set(*pbcommon::Num::descriptor()->file()));
  auto url = server->listen(argv[1]);
  if (!url) return std::fprintf(stderr, "pb-peer: %s\n", url.error().message().c_str()), 1;
  g_server = &*server;
  std::signal(SIGTERM, on_term);
  std::printf("ready %s\n", url->c_str());
  std::fflush(stdout);
  auto done = server->run();
  return done ? 0 : 1;
}
