// The pattern rows' ipcx setups over <ipcx/pubsub.hpp>: Pusher/Puller (pushpull-unix) and
// Publisher/Subscriber (pubsub-unix), over unix:// at the measurement's path.
//
// A bound endpoint (Pusher, Publisher) runs only inside its own calls, so a process that is
// about to wait for an answer calls flush() first (Link::settle()): every message goes out and
// has been taken by the other side's application before it waits. The Publisher is configured
// with Overflow::block (its default drops the oldest copy for a slow subscriber): a publish waits
// for room, so the row measures delivery, never loss (the subscribers check every number anyway).
#include <chrono>

#include <ipcx/ipcx.hpp>

#include "bench/rows_patterns.hpp"
#include "bench/session.hpp"

namespace ipcx::bench::patterns {
namespace {

using namespace std::chrono_literals;

constexpr auto kSlice = 100ms;  // the parent's waits, so that it sees an echo child die

std::string unix_url(const RunCtx& c, const char* suffix) { return "unix://" + c.path + suffix; }

// Retries `call` (which takes a timeout) in slices: forever in the echo child, until an echo
// child exited in the parent.
template <class F>
auto sliced(bool parent, const char* op, F&& call) -> decltype(call(kSlice)) {
  for (;;) {
    auto r = call(parent ? Timeout(kSlice) : forever);
    if (r || r.error().code != Errc::timeout) return r;
    if (child_exited()) return fail(Errc::closed, op, "an echo child exited");
  }
}

class PusherLink final : public Link {
 public:
  PusherLink(Pusher p, bool parent) : p_(std::move(p)), parent_(parent) {}
  ~PusherLink() override {
    if (!parent_) (void)p_.flush(1s);  // the echo child's last ack must not die with it
  }
  Status send(std::span<const std::byte> msg) override {
    return sliced(parent_, "Pusher::push", [&](Timeout t) { return p_.push(msg, t); });
  }
  Result<std::span<const std::byte>> recv() override { return fail(Errc::not_supported, "recv", "pusher"); }
  Status settle() override {
    return sliced(parent_, "Pusher::flush", [&](Timeout t) { return p_.flush(t); });
  }
  Status wait_workers() {
    return sliced(parent_, "Pusher::wait_workers", [&](Timeout t) { return p_.wait_workers(1, t); });
  }

 private:
  Pusher p_;
  bool parent_;
};

class PullerLink final : public Link {
 public:
  PullerLink(Puller p, bool parent) : p_(std::move(p)), parent_(parent) {}
  Status send(std::span<const std::byte>) override { return fail(Errc::not_supported, "send", "puller"); }
  Result<std::span<const std::byte>> recv() override {
    auto m = sliced(parent_, "Puller::pull", [&](Timeout t) { return p_.pull(t); });
    if (!m) return std::unexpected(m.error());
    msg_ = std::move(*m);
    return msg_.bytes();
  }

 private:
  Puller p_;
  bool parent_;
  Message msg_;
};

// Two pipelines, one each way: the parent's Pusher (bound at PATH.down) to the echo child's
// Puller, and the child's Pusher (bound at PATH.up) to the parent's Puller for the replies and
// acks. Each side connects while the other serves (wait_workers), whatever a connect waits for.
class PushPullSetup final : public Setup {
 public:
  explicit PushPullSetup(const RunCtx& c) : ctx_(c) {}
  Status parent_prepare(ChildWiring&) override {
    auto p = Pusher::bind(unix_url(ctx_, ".down"));
    if (!p) return std::unexpected(p.error());
    push_ = std::make_unique<PusherLink>(std::move(*p), true);
    return {};
  }
  Result<std::string> child_prepare() override {
    auto p = Pusher::bind(unix_url(ctx_, ".up"));
    if (!p) return std::unexpected(p.error());
    auto url = p->url();
    push_ = std::make_unique<PusherLink>(std::move(*p), false);
    return url;
  }
  Made<Channel> child_channel() override {
    auto pull = Puller::connect(unix_url(ctx_, ".down"));
    if (!pull) return std::unexpected(pull.error());
    if (auto r = push_->wait_workers(); !r) return std::unexpected(r.error());
    return std::make_unique<CheckedChannel>(std::move(push_), std::make_unique<PullerLink>(std::move(*pull), false),
                                            ctx_.size);
  }
  Made<Channel> parent_channel(const std::string& ready, pid_t) override {
    if (auto r = push_->wait_workers(); !r) return std::unexpected(r.error());
    auto pull = Puller::connect(ready);
    if (!pull) return std::unexpected(pull.error());
    return std::make_unique<CheckedChannel>(std::move(push_), std::make_unique<PullerLink>(std::move(*pull), true),
                                            ctx_.size);
  }

 private:
  RunCtx ctx_;
  std::unique_ptr<PusherLink> push_;
};

class PublisherLink final : public Link {
 public:
  explicit PublisherLink(Publisher p) : p_(std::move(p)) {}
  Status send(std::span<const std::byte> msg) override {
    return sliced(true, "Publisher::publish", [&](Timeout t) { return p_.publish("", msg, t); });
  }
  Result<std::span<const std::byte>> recv() override { return fail(Errc::not_supported, "recv", "publisher"); }
  Status settle() override {
    return sliced(true, "Publisher::flush", [&](Timeout t) { return p_.flush(t); });
  }
  Status wait_subscribers(std::size_t n) {
    return sliced(true, "Publisher::wait_subscribers", [&](Timeout t) { return p_.wait_subscribers(n, t); });
  }

 private:
  Publisher p_;
};

class SubscriberLink final : public Link {
 public:
  explicit SubscriberLink(Subscriber s) : s_(std::move(s)) {}
  Status send(std::span<const std::byte>) override { return fail(Errc::not_supported, "send", "subscriber"); }
  Result<std::span<const std::byte>> recv() override {
    if (auto r = s_.recv(pub_, forever); !r) return std::unexpected(r.error());
    return pub_.payload.bytes();
  }

 private:
  Subscriber s_;
  Publication pub_;
};

// The parent's Publisher (bound at PATH) to one Subscriber per echo child, subscribed to every
// topic; the acks come back over the shared ack pipe (rows_patterns.hpp).
class PubSubSetup final : public Setup {
 public:
  explicit PubSubSetup(const RunCtx& c) : ctx_(c) {}
  Status parent_prepare(ChildWiring& wiring) override {
    if (auto r = acks_.create(wiring); !r) return r;
    PublisherOptions o;
    o.queue.overflow = Overflow::block;
    auto p = Publisher::bind(unix_url(ctx_, ""), o);
    if (!p) return std::unexpected(p.error());
    pub_ = std::make_unique<PublisherLink>(std::move(*p));
    return {};
  }
  Made<Channel> child_channel() override {
    auto acks = AckPipe::inherited(ctx_);
    if (!acks) return std::unexpected(acks.error());
    auto s = Subscriber::connect(unix_url(ctx_, ""), {""});
    if (!s) return std::unexpected(s.error());
    auto ch = std::make_unique<SubscriberChannel>(std::make_unique<SubscriberLink>(std::move(*s)), std::move(*acks),
                                                  ctx_.size);
    if (auto r = ch->join(); !r) return std::unexpected(r.error());
    return ch;
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return fail(Errc::invalid_argument, "pubsub", "a fan-out row has several echo children");
  }
  Made<Channel> parent_channel_all(const std::vector<std::string>& ready, const std::vector<pid_t>&) override {
    if (auto r = pub_->wait_subscribers(ready.size()); !r) return std::unexpected(r.error());
    auto ch = std::make_unique<FanoutChannel>(std::move(pub_), std::move(acks_.read), static_cast<int>(ready.size()),
                                              ctx_.size);
    if (auto r = ch->join(); !r) return std::unexpected(r.error());
    return ch;
  }

 private:
  RunCtx ctx_;
  AckPipe acks_;
  std::unique_ptr<PublisherLink> pub_;
};

}  // namespace

std::unique_ptr<Setup> ipcx_pushpull(const RunCtx& c) { return std::make_unique<PushPullSetup>(c); }
std::unique_ptr<Setup> ipcx_pubsub(const RunCtx& c) { return std::make_unique<PubSubSetup>(c); }

}  // namespace ipcx::bench::patterns
