// The rpc-unix row's peer, grpc-unix: gRPC's generated Echo service (bench/grpc_echo.proto) over a
// Unix socket at the measurement's path, the way its users write it: a synchronous server in the
// echo child (gRPC's own threads run the handler), the synchronous stub in the parent, one
// ClientContext with a deadline per call, message size limits lifted for the large sizes.
//
// The handler answers with the request's bytes. The parent first makes kVerifyRounds calls with
// a different pattern each and compares every byte of each response ("content"), then times its
// warm-up and timed calls, each checked for its size. The child counts the calls it served and
// shuts its server down after the last (a shutdown finishes the calls in progress).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <grpcpp/grpcpp.h>

#include <fmt/format.h>

#include "bench/grpc_echo.grpc.pb.h"
#include "bench/harness.hpp"
#include "bench/rows_rpc.hpp"

namespace ipcx::bench::rpc {
namespace {

using namespace std::chrono_literals;

constexpr auto kCallDeadline = 10s;  // an echo child stopped mid-call fails the measurement, not hangs it
constexpr auto kShutdownGrace = 5s;  // the last response's way out

std::unexpected<Error> grpc_error(const ::grpc::Status& st) {
  return fail(Errc::system, "gRPC call",
              fmt::format("status {}: {}", static_cast<int>(st.error_code()), st.error_message()));
}

// The echo child's service: answers each request with its bytes, and counts them. The server
// takes calls from the moment it starts; the count to wait for comes later (wait_for()).
class EchoService final : public echo::Echo::Service {
 public:
  ::grpc::Status Call(::grpc::ServerContext*, const echo::Payload* request, echo::Payload* response) override {
    response->set_data(request->data());
    if (served_.fetch_add(1) + 1 >= expected_.load()) {
      std::lock_guard lock(m_);
      cv_.notify_all();
    }
    return ::grpc::Status::OK;
  }
  // Returns once `calls` were served.
  void wait_for(long calls) {
    std::unique_lock lock(m_);
    expected_.store(calls);
    cv_.wait(lock, [&] { return served_.load() >= calls; });
  }

 private:
  std::atomic<long> served_{0}, expected_{LONG_MAX};
  std::mutex m_;
  std::condition_variable cv_;
};

class GrpcChannel final : public SelfTimedChannel {
 public:
  // Parent.
  GrpcChannel(std::unique_ptr<echo::Echo::Stub> stub, std::size_t size) : stub_(std::move(stub)), size_(size) {}
  // Echo child.
  GrpcChannel(::grpc::Server& server, EchoService& service) : server_(&server), service_(&service) {}

  Result<Timing> measure(int warmup, int rounds) override {
    echo::Payload request, response;
    auto& data = *request.mutable_data();
    data.resize(size_);
    for (int r = 0; r < kVerifyRounds; ++r) {
      for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(verify_byte(r, i));
      if (auto s = call(request, response); !s) return std::unexpected(s.error());
      const auto& got = response.data();
      if (got != data) {
        const auto at = std::mismatch(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(std::min(got.size(), data.size())),
                                      data.begin()).first - got.begin();
        return fail(Errc::protocol, "verify",
                    fmt::format("call {}: {} bytes answered {} sent, first difference at byte {}", r, got.size(),
                                data.size(), at));
      }
    }
    std::fill(data.begin(), data.end(), '\xa5');
    auto t = time_calls(warmup, rounds, [&]() -> Status {
      if (auto s = call(request, response); !s) return s;
      if (response.data().size() != size_)
        return fail(Errc::protocol, "gRPC call", fmt::format("{} bytes answered {}", response.data().size(), size_));
      return {};
    });
    if (t) t->compared = true;
    return t;
  }

  Status answer(int warmup, int rounds) override {
    service_->wait_for(long{kVerifyRounds} + warmup + rounds);
    server_->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    return {};
  }

 private:
  Status call(const echo::Payload& request, echo::Payload& response) {
    ::grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
    if (auto st = stub_->Call(&ctx, request, &response); !st.ok()) return grpc_error(st);
    return {};
  }

  std::unique_ptr<echo::Echo::Stub> stub_;
  std::size_t size_ = 0;
  ::grpc::Server* server_ = nullptr;
  EchoService* service_ = nullptr;
};

class GrpcSetup final : public Setup {
 public:
  explicit GrpcSetup(const RunCtx& c) : size_(c.size), address_("unix:" + c.path) {}

  Result<std::string> child_prepare() override {
    service_ = std::make_unique<EchoService>();
    ::grpc::ServerBuilder builder;
    builder.AddListeningPort(address_, ::grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(-1);
    builder.SetMaxSendMessageSize(-1);
    server_ = builder.BuildAndStart();
    if (!server_) return fail(Errc::system, "gRPC server", "could not listen at " + address_);
    return std::string();
  }
  Made<Channel> child_channel() override { return std::make_unique<GrpcChannel>(*server_, *service_); }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    ::grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    auto channel = ::grpc::CreateCustomChannel(address_, ::grpc::InsecureChannelCredentials(), args);
    return std::make_unique<GrpcChannel>(echo::Echo::NewStub(channel), size_);
  }

 private:
  std::size_t size_;
  std::string address_;
  std::unique_ptr<EchoService> service_;
  std::unique_ptr<::grpc::Server> server_;
};

}  // namespace

std::unique_ptr<Setup> grpc_unix(const RunCtx& c) { return std::make_unique<GrpcSetup>(c); }

}  // namespace ipcx::bench::rpc
