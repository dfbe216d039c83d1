// Rows over System V message queues.
#include <sys/ipc.h>
#include <sys/msg.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "bench/mechanism.hpp"
#include "bench/session.hpp"

namespace ipcx::bench {
namespace {

// Each measurement gets a key of its own, derived from its unique path, in the range the test
// suite's leftover check watches (0x7e500000..0x7e5fffff), so a run killed midway is noticed.
std::uint32_t key_for(const std::string& path) {
  std::uint32_t h = 2166136261u;
  for (char c : path) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return 0x7e500000u | (h & 0xfffffu);
}

// raw: one queue, bare msgsnd/msgrcv, type 1 parent -> child, type 2 child -> parent.
class SysvChannel final : public Channel {
 public:
  SysvChannel(int qid, long send_type, long recv_type, std::size_t size)
      : qid_(qid), send_type_(send_type), recv_type_(recv_type),
        buf_(1 + (size + 1 + sizeof(long) - 1) / sizeof(long)) {}

  Status send(std::span<const std::byte> msg) override {
    buf_[0] = send_type_;
    if (!msg.empty()) std::memcpy(buf_.data() + 1, msg.data(), msg.size());
    if (retry([&] { return ::msgsnd(qid_, buf_.data(), msg.size(), 0); }) != 0) return sys_error("msgsnd");
    return {};
  }
  Status recv(std::size_t size) override {
    // One byte more than expected: a longer message shows up as a wrong size, not a silent cut.
    ssize_t n = retry([&] { return ::msgrcv(qid_, buf_.data(), size + 1, recv_type_, 0); });
    if (n < 0) return sys_error("msgrcv");
    if (static_cast<std::size_t>(n) != size)
      return fail(Errc::protocol, "msgrcv", fmt::format("message of {} bytes, expected {}", n, size));
    last_ = size;
    return {};
  }
  // Until the next send, which reuses the buffer (the harness looks before it sends).
  std::span<const std::byte> received() const override {
    return {reinterpret_cast<const std::byte*>(buf_.data() + 1), last_};
  }

 private:
  int qid_;
  long send_type_, recv_type_;
  std::vector<long> buf_;
  std::size_t last_ = 0;
};

class RawSysvSetup final : public Setup {
 public:
  explicit RawSysvSetup(const RunCtx& c) : size_(c.size), key_(static_cast<key_t>(key_for(c.path + ".raw"))) {}
  ~RawSysvSetup() override {
    if (!owner_) return;
    sysv_queue_in_use(0);
    if (qid_ >= 0) ::msgctl(qid_, IPC_RMID, nullptr);
  }

  Status parent_prepare(ChildWiring&) override {
    qid_ = ::msgget(key_, IPC_CREAT | IPC_EXCL | 0600);
    if (qid_ < 0) return sys_error("msgget", fmt::format("key 0x{:08x}", static_cast<std::uint32_t>(key_)));
    owner_ = true;
    sysv_queue_in_use(key_);  // an interrupt removes it: a send blocked on it returns
    return {};
  }
  Made<Channel> child_channel() override {
    int qid = ::msgget(key_, 0);
    if (qid < 0) return sys_error("msgget", fmt::format("key 0x{:08x}", static_cast<std::uint32_t>(key_)));
    return std::make_unique<SysvChannel>(qid, 2, 1, size_);
  }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    return std::make_unique<SysvChannel>(qid_, 1, 2, size_);
  }

 private:
  std::size_t size_;
  key_t key_;
  int qid_ = -1;
  bool owner_ = false;  // the parent removes the queue, the child never does
};

// The queue of the echo child's listener ("sysv://0x7e5xxxxx"), which a killed child leaves:
// the parent removes it when the measurement is over, and an interrupt during it removes it too
// (a parent blocked on a full queue whose reader was killed would wait for ever).
void remove_queue(const std::string& url) {
  sysv_queue_in_use(0);
  const auto key = static_cast<key_t>(std::strtoul(url.c_str() + std::strlen("sysv://"), nullptr, 16));
  if (int id = ::msgget(key, 0); id >= 0) ::msgctl(id, IPC_RMID, nullptr);
}

std::unique_ptr<Setup> ipcx_sysv(const RunCtx& c) {
  const auto key = key_for(c.path);
  sysv_queue_in_use(static_cast<int>(key));  // made in the parent just before its measurement
  return ipcx_listen(fmt::format("sysv://0x{:08x}", key), nullptr, 0, remove_queue);
}

// One size: the default sizes include 64 KiB, beyond kernel.msgmax (8192 by default), which no
// System V message can carry.
const Mechanism kRows[] = {
    {.name = "sysv",
     .group = Group::message_passing,
     .purpose = "System V message queue: typed messages, the oldest kernel queue",
     .raw = [](const RunCtx& c) -> std::unique_ptr<Setup> { return std::make_unique<RawSysvSetup>(c); },
     .ipcx = ipcx_sysv,
     .fixed_size = 64},
};

}  // namespace

std::span<const Mechanism> sysv_rows() { return kRows; }

}  // namespace ipcx::bench
