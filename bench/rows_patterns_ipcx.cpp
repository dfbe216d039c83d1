// The pattern rows' ipcx setups: <ipcx/reqrep.hpp> (Requester/Replier) and <ipcx/pubsub.hpp>
// (Pusher/Puller, Publisher/Subscriber), over unix:// at the measurement's path.
#include <chrono>
#include <optional>

#include <ipcx/ipcx.hpp>

#include "bench/rows_patterns.hpp"
#include "bench/session.hpp"

namespace ipcx::bench::patterns {
namespace {

using namespace std::chrono_literals;

constexpr auto kSlice = 100ms;  // a parent's waits that would not see an echo child die

std::string unix_url(const RunCtx& c, const char* suffix = "") { return "unix://" + c.path + suffix; }

// ---- request/reply ----------------------------------------------------------------------------

// The parent's requester: send() is the whole request (write, then wait for the reply); recv()
// hands out that reply. RoundTripChannel times the two together.
class RequesterLink final : public Link {
 public:
  explicit RequesterLink(Requester r) : req_(std::move(r)) {}
  Status send(std::span<const std::byte> msg) override {
    last_ = req_.request(msg, reply_);  // forever: a replier that goes away fails it at once
    return {};
  }
  Result<std::span<const std::byte>> recv() override {
    if (!last_) return std::unexpected(last_.error());
    return reply_.bytes();
  }

 private:
  Requester req_;
  Message reply_;
  Result<void> last_;
};

// The echo child's replier: its handler checks each request and replies with the next number.
struct ReplierState {
  explicit ReplierState(std::size_t size) : stamps(size) {}
  Stamps stamps;
  std::uint64_t handled = 0;
  std::optional<Error> error;
};

class ReplierChannel final : public SelfTimedChannel {
 public:
  ReplierChannel(Replier* rep, ReplierState* st) : rep_(rep), st_(st) {}
  Result<Timing> measure(int, int) override { return fail(Errc::not_supported, "measure", "replier side"); }
  Status answer(int warmup, int rounds) override {
    const auto n = static_cast<std::uint64_t>(warmup + rounds);
    // Served until every reply was handed to the kernel: the last one must not die with us.
    while (!st_->error && (st_->handled < n || rep_->stats().delivered < n))
      if (auto r = rep_->poll(kSlice); !r) return std::unexpected(r.error());
    if (st_->error) return std::unexpected(*st_->error);
    return {};
  }

 private:
  Replier* rep_;
  ReplierState* st_;
};

class ReqRepSetup final : public Setup {
 public:
  explicit ReqRepSetup(const RunCtx& c) : ctx_(c), st_(c.size) {}
  Result<std::string> child_prepare() override {
    auto* st = &st_;
    auto rep = Replier::bind(unix_url(ctx_), [st](Request& r) {
      if (st->error) return;  // no reply: answer() fails, the requester sees the connection close
      if (auto c = st->stamps.check(r.payload); !c) {
        st->error = c.error();
        return;
      }
      if (auto w = r.reply(st->stamps.next()); !w) {
        st->error = w.error();
        return;
      }
      ++st->handled;
    });
    if (!rep) return std::unexpected(rep.error());
    rep_ = std::move(*rep);
    return rep_.url();
  }
  Made<Channel> child_channel() override { return std::make_unique<ReplierChannel>(&rep_, &st_); }
  Made<Channel> parent_channel(const std::string& ready, pid_t) override {
    auto req = Requester::connect(ready);
    if (!req) return std::unexpected(req.error());
    auto link = std::make_shared<RequesterLink>(std::move(*req));
    return std::make_unique<RoundTripChannel>(std::make_unique<Shared>(link), std::make_unique<Shared>(link),
                                              ctx_.size);
  }

 private:
  // Both directions of one requester.
  class Shared final : public Link {
   public:
    explicit Shared(std::shared_ptr<Link> l) : l_(std::move(l)) {}
    Status send(std::span<const std::byte> msg) override { return l_->send(msg); }
    Result<std::span<const std::byte>> recv() override { return l_->recv(); }

   private:
    std::shared_ptr<Link> l_;
  };
  RunCtx ctx_;
  ReplierState st_;
  Replier rep_;
};

}  // namespace

std::unique_ptr<Setup> ipcx_reqrep(const RunCtx& c) { return std::make_unique<ReqRepSetup>(c); }

}  // namespace ipcx::bench::patterns
