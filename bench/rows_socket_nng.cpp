// The unix row's peer: NNG (nanomsg-next-generation, its C API), a pair0 socket over ipc:// (a
// Unix socket at the measurement's path + ".nng"), carrying the harness's own bytes. Compiled
// only when bench/CMakeLists.txt found NNG.
//
// The echo child listens, the parent dials. The parent's sends and receives wait in 100 ms
// slices (NNG_OPT_SENDTIMEO/RECVTIMEO) and give up once the echo child exited: a pair0 socket
// redials a lost peer rather than report it.
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>

#include <nng/nng.h>
#include <nng/protocol/pair0/pair.h>

#include "bench/rows_patterns.hpp"
#include "bench/session.hpp"

namespace ipcx::bench::patterns {
namespace {

constexpr nng_duration kSliceMs = 100;

std::unexpected<Error> nng_error(const char* op, int rv) { return fail(Errc::system, op, nng_strerror(rv)); }

class NngSocket {
 public:
  NngSocket() = default;
  NngSocket(const NngSocket&) = delete;
  NngSocket& operator=(const NngSocket&) = delete;
  ~NngSocket() {
    if (msg_) nng_msg_free(msg_);
    if (open_) nng_close(s_);
  }
  Status open(bool parent) {
    if (int rv = nng_pair0_open(&s_); rv != 0) return nng_error("nng_pair0_open", rv);
    open_ = true;
    parent_ = parent;
    if (parent) {
      if (int rv = nng_socket_set_ms(s_, NNG_OPT_SENDTIMEO, kSliceMs); rv != 0) return nng_error("nng_socket_set_ms", rv);
      if (int rv = nng_socket_set_ms(s_, NNG_OPT_RECVTIMEO, kSliceMs); rv != 0) return nng_error("nng_socket_set_ms", rv);
    }
    // Messages as large as the bench sends (NNG refuses more than 1 MiB by default).
    if (int rv = nng_socket_set_size(s_, NNG_OPT_RECVMAXSZ, 0); rv != 0) return nng_error("nng_socket_set_size", rv);
    return {};
  }
  Status listen(const std::string& url) {
    if (int rv = nng_listen(s_, url.c_str(), nullptr, 0); rv != 0) return nng_error("nng_listen", rv);
    return {};
  }
  Status dial(const std::string& url) {
    if (int rv = nng_dial(s_, url.c_str(), nullptr, 0); rv != 0) return nng_error("nng_dial", rv);
    return {};
  }
  Status send(std::span<const std::byte> msg) {
    for (;;) {
      // nng_send copies the bytes (no NNG_FLAG_ALLOC): the caller's buffer stays its own.
      int rv = nng_send(s_, const_cast<std::byte*>(msg.data()), msg.size(), 0);
      if (rv == 0) return {};
      if (rv == NNG_ETIMEDOUT && parent_) {
        if (child_exited()) return fail(Errc::closed, "nng_send", "the echo child exited");
        continue;
      }
      return nng_error("nng_send", rv);
    }
  }
  Result<std::span<const std::byte>> recv() {
    if (msg_) nng_msg_free(std::exchange(msg_, nullptr));
    for (;;) {
      int rv = nng_recvmsg(s_, &msg_, 0);
      if (rv == 0)
        return std::span<const std::byte>(static_cast<const std::byte*>(nng_msg_body(msg_)), nng_msg_len(msg_));
      if (rv == NNG_ETIMEDOUT && parent_) {
        if (child_exited()) return fail(Errc::closed, "nng_recvmsg", "the echo child exited");
        continue;
      }
      return nng_error("nng_recvmsg", rv);
    }
  }

 private:
  nng_socket s_ = NNG_SOCKET_INITIALIZER;
  bool open_ = false, parent_ = false;
  nng_msg* msg_ = nullptr;  // the last message received, kept until the next recv()
};

class NngLink final : public Link {
 public:
  explicit NngLink(std::shared_ptr<NngSocket> s) : s_(std::move(s)) {}
  Status send(std::span<const std::byte> msg) override { return s_->send(msg); }
  Result<std::span<const std::byte>> recv() override { return s_->recv(); }

 private:
  std::shared_ptr<NngSocket> s_;
};

class PairSetup final : public Setup {
 public:
  explicit PairSetup(const RunCtx& c) : url_("ipc://" + c.path + ".nng"), path_(c.path + ".nng") {}
  ~PairSetup() override {
    if (parent_) ::unlink(path_.c_str());  // a killed echo child's socket file
  }
  Status parent_prepare(ChildWiring&) override {
    parent_ = true;
    return {};
  }
  Result<std::string> child_prepare() override {
    if (auto r = open(false); !r) return std::unexpected(r.error());
    if (auto r = s_->listen(url_); !r) return std::unexpected(r.error());
    return std::string();
  }
  Made<Channel> child_channel() override { return channel(); }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    if (auto r = open(true); !r) return std::unexpected(r.error());
    if (auto r = s_->dial(url_); !r) return std::unexpected(r.error());
    return channel();
  }

 private:
  Status open(bool parent) {
    s_ = std::make_shared<NngSocket>();
    return s_->open(parent);
  }
  Made<Channel> channel() { return std::make_unique<PlainChannel>(std::make_unique<NngLink>(s_), std::make_unique<NngLink>(s_)); }
  std::string url_, path_;
  bool parent_ = false;
  std::shared_ptr<NngSocket> s_;
};

}  // namespace

std::unique_ptr<Setup> nng_ipc_pair(const RunCtx& c) { return std::make_unique<PairSetup>(c); }

}  // namespace ipcx::bench::patterns
