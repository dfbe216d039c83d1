// Rows over POSIX message queues: raw is two queues with bare mq_send/mq_receive (blocking
// descriptors), ipcx is a Connection over mq://, peer (boost-mq) two Boost.Interprocess
// message_queues (a queue in shared memory, not the kernel's).
#include <fcntl.h>
#include <mqueue.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include <ipcx/mq.hpp>

#if IPCX_BENCH_BOOST_INTERPROCESS
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>
#endif

#include "bench/mechanism.hpp"
#include "bench/session.hpp"

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

#if IPCX_BENCH_BOOST_INTERPROCESS
namespace bip = boost::interprocess;

// boost-mq: the parent creates both queues (10 messages of the measurement's size, as raw), the
// echo child opens them; the parent's waits are 100 ms slices (timed_send/timed_receive) that
// give up once the child exited. Boost's names are /dev/shm files: "ipcx-bench-<hash>.bdown".
class BoostMqChannel final : public Channel {
 public:
  BoostMqChannel(std::unique_ptr<bip::message_queue> rx, std::unique_ptr<bip::message_queue> tx, std::size_t size,
                 bool parent)
      : rx_(std::move(rx)), tx_(std::move(tx)), buf_(std::max<std::size_t>(size, 1)), parent_(parent) {}
  Status send(std::span<const std::byte> msg) override {
    try {
      while (!tx_->timed_send(msg.data(), msg.size(), 0, deadline()))
        if (parent_ && child_exited()) return child_gone("send");
      return {};
    } catch (const bip::interprocess_exception& e) {
      return fail(Errc::system, "message_queue::send", e.what());
    }
  }
  Status recv(std::size_t size) override {
    try {
      bip::message_queue::size_type n = 0;
      unsigned priority = 0;
      while (!rx_->timed_receive(buf_.data(), buf_.size(), n, priority, deadline()))
        if (parent_ && child_exited()) return child_gone("recv");
      if (n != size) return fail(Errc::protocol, "message_queue::receive", fmt::format("{} bytes, expected {}", n, size));
      last_ = n;
      return {};
    } catch (const bip::interprocess_exception& e) {
      return fail(Errc::system, "message_queue::receive", e.what());
    }
  }
  std::span<const std::byte> received() const override { return {buf_.data(), last_}; }

 private:
  // Boost.Interprocess takes absolute UTC times.
  static boost::posix_time::ptime deadline() {
    return boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(100);
  }
  std::unique_ptr<bip::message_queue> rx_, tx_;
  std::vector<std::byte> buf_;
  std::size_t last_ = 0;
  bool parent_;
};

class BoostMqSetup final : public Setup {
 public:
  explicit BoostMqSetup(const RunCtx& c)
      : size_(static_cast<std::size_t>(message_size(c))), down_(queue_name(c, "bdown").substr(1)),
        up_(queue_name(c, "bup").substr(1)) {}
  ~BoostMqSetup() override {
    if (!made_) return;
    bip::message_queue::remove(down_.c_str());
    bip::message_queue::remove(up_.c_str());
  }
  Status parent_prepare(ChildWiring&) override {
    try {
      for (auto* name : {&down_, &up_}) {
        made_ = true;
        bip::message_queue(bip::create_only, name->c_str(), 10, size_, bip::permissions(0600));
      }
      return {};
    } catch (const bip::interprocess_exception& e) {
      return fail(Errc::system, "message_queue", e.what());
    }
  }
  Made<Channel> child_channel() override { return open(down_, up_, false); }
  Made<Channel> parent_channel(const std::string&, pid_t) override { return open(up_, down_, true); }

 private:
  Made<Channel> open(const std::string& rx, const std::string& tx, bool parent) {
    try {
      return std::make_unique<BoostMqChannel>(std::make_unique<bip::message_queue>(bip::open_only, rx.c_str()),
                                              std::make_unique<bip::message_queue>(bip::open_only, tx.c_str()), size_,
                                              parent);
    } catch (const bip::interprocess_exception& e) {
      return fail(Errc::system, "message_queue", e.what());
    }
  }
  std::size_t size_;
  std::string down_, up_;
  bool made_ = false;  // the parent removes the queues, the child never does
};

constexpr MakeSetup kBoostMq = [](const RunCtx& c) -> std::unique_ptr<Setup> { return std::make_unique<BoostMqSetup>(c); };
constexpr std::string_view kBoostSkipped{};
#else
constexpr MakeSetup kBoostMq = nullptr;
constexpr std::string_view kBoostSkipped = "Boost.Interprocess headers not found when ipcx was built";
#endif

// fs.mqueue.msgsize_max: the largest queue message a process without CAP_SYS_RESOURCE may ask
// for (8192, the kernel's default, if it cannot be read).
std::size_t largest_message() {
  const long v = ipcx::mq::limits().max_message_size;
  return v > 0 ? static_cast<std::size_t>(v) : 8192;
}

// The echo child's listener queue ("mq:///ipcx-bench-HASH.svc?...") and conversation queues
// not yet accepted ("/ipcx-bench-HASH.svc.ID.cs", ".sc"), which a killed child leaves (its
// listener unlinks them when it closes): the parent removes them when the measurement is over.
void remove_queues(const std::string& url) {
  const auto start = std::strlen("mq:///");
  const auto name = url.substr(start, url.find('?') - start);
  ::mq_unlink(("/" + name).c_str());
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/dev/mqueue", ec))
    if (e.path().filename().string().starts_with(name + ".")) ::mq_unlink(("/" + e.path().filename().string()).c_str());
}

const Mechanism kRows[] = {
    {.name = "mq",
     .group = Group::message_passing,
     .purpose = "POSIX message queue: kernel-kept messages with priorities, outlive their users",
     .raw = [](const RunCtx& c) -> std::unique_ptr<Setup> { return std::make_unique<RawMqSetup>(c); },
     .ipcx = [](const RunCtx& c) {
       return ipcx_listen(fmt::format("mq://{}?msgsize={}", queue_name(c, "svc"), message_size(c)), nullptr, 0,
                          remove_queues);
     },
     .peer = kBoostMq,
     .peer_skipped = kBoostSkipped,
     .peer_row = "boost-mq",
     .max_size = largest_message},
};

}  // namespace

std::span<const Mechanism> mq_rows() { return kRows; }

}  // namespace ipcx::bench
