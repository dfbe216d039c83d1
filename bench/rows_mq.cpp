// Rows over POSIX message queues: raw is two queues with bare mq_send/mq_receive (blocking
// descriptors), ipcx is a Connection over mq://.
#include <fcntl.h>
#include <mqueue.h>

#include <functional>
#include <string>

#include <fmt/format.h>

#include <ipcx/mq.hpp>

#include "bench/mechanism.hpp"

namespace ipcx::bench {
namespace {

// Queue names are one path component: derived from the measurement's unique path, which the
// parent and the echo child both know.
std::string queue_name(const RunCtx& c, std::string_view dir) {
  return fmt::format("/ipcx-bench-{:016x}.{}", std::hash<std::string>{}(c.path), dir);
}

long message_size(const RunCtx& c) { return static_cast<long>(std::max<std::size_t>(c.size, 1)); }

class MqChannel final : public Channel {
 public:
  MqChannel(mqd_t rx, mqd_t tx, long msgsize) : rx_(rx), tx_(tx), buf_(static_cast<std::size_t>(msgsize)) {}
  ~MqChannel() override {
    ::mq_close(rx_);
    ::mq_close(tx_);
  }
  Status send(std::span<const std::byte> msg) override {
    if (retry([&] { return ::mq_send(tx_, reinterpret_cast<const char*>(msg.data()), msg.size(), 0); }) != 0)
      return sys_error("mq_send");
    return {};
  }
  Status recv(std::size_t size) override {
    auto n = retry([&] { return ::mq_receive(rx_, reinterpret_cast<char*>(buf_.data()), buf_.size(), nullptr); });
    if (n < 0) return sys_error("mq_receive");
    if (static_cast<std::size_t>(n) != size)
      return fail(Errc::protocol, "mq_receive", fmt::format("{} bytes, expected {}", n, size));
    last_ = size;
    return {};
  }
  std::span<const std::byte> received() const override { return {buf_.data(), last_}; }

 private:
  mqd_t rx_, tx_;
  std::vector<std::byte> buf_;
  std::size_t last_ = 0;
};

class RawMqSetup final : public Setup {
 public:
  explicit RawMqSetup(const RunCtx& c) : ctx_(c), down_(queue_name(c, "down")), up_(queue_name(c, "up")) {}
  ~RawMqSetup() override {
    if (!made_) return;
    ::mq_unlink(down_.c_str());
    ::mq_unlink(up_.c_str());
  }
  Status parent_prepare(ChildWiring&) override {
    mq_attr a{};
    a.mq_maxmsg = 10;
    a.mq_msgsize = message_size(ctx_);
    for (auto* name : {&down_, &up_}) {
      mqd_t q = ::mq_open(name->c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
      if (q == static_cast<mqd_t>(-1)) return sys_error("mq_open", *name);
      made_ = true;
      ::mq_close(q);
    }
    return {};
  }
  Made<Channel> child_channel() override { return open(down_, up_); }
  Made<Channel> parent_channel(const std::string&, pid_t) override { return open(up_, down_); }

 private:
  Made<Channel> open(const std::string& rx_name, const std::string& tx_name) {
    mqd_t rx = ::mq_open(rx_name.c_str(), O_RDONLY | O_CLOEXEC);
    if (rx == static_cast<mqd_t>(-1)) return sys_error("mq_open", rx_name);
    mqd_t tx = ::mq_open(tx_name.c_str(), O_WRONLY | O_CLOEXEC);
    if (tx == static_cast<mqd_t>(-1)) {
      ::mq_close(rx);
      return sys_error("mq_open", tx_name);
    }
    return std::make_unique<MqChannel>(rx, tx, message_size(ctx_));
  }

  RunCtx ctx_;
  std::string down_, up_;
  bool made_ = false;  // by this process: the parent removes the queues, the child never does
};

// fs.mqueue.msgsize_max: the largest queue message a process without CAP_SYS_RESOURCE may ask
// for (8192, the kernel's default, if it cannot be read).
std::size_t largest_message() {
  const long v = ipcx::mq::limits().max_message_size;
  return v > 0 ? static_cast<std::size_t>(v) : 8192;
}

const Mechanism kRows[] = {
    {.name = "mq",
     .group = Group::message_passing,
     .purpose = "POSIX message queue: kernel-kept messages with priorities, outlive their users",
     .raw = [](const RunCtx& c) -> std::unique_ptr<Setup> { return std::make_unique<RawMqSetup>(c); },
     .ipcx = [](const RunCtx& c) {
       return ipcx_listen(fmt::format("mq://{}?msgsize={}", queue_name(c, "svc"), message_size(c)));
     },
     .max_size = largest_message},
};

}  // namespace

std::span<const Mechanism> mq_rows() { return kRows; }

}  // namespace ipcx::bench
