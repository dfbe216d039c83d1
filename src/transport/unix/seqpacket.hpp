// unix+seq: SOCK_SEQPACKET keeps record boundaries; messages larger than one record are sent
// as several records flagged "more" (the socket buffer limits a record's size).
#pragma once

#include <vector>

#include <sys/socket.h>

#include "transport/out_queue.hpp"
#include "transport/transport.hpp"
#include "wire/frame.hpp"

namespace ipcx::transport {

class SeqpacketConnection final : public ConnectionImpl {
 public:
  static constexpr std::size_t kChunk = 64 * 1024;

  SeqpacketConnection(Fd fd, PeerCred peer, Options options);
  ~SeqpacketConnection() override { release(); }

  Result<void> send(std::span<const std::byte> data, std::span<const int> fds,
                    const os::Deadline& deadline) override;
  Result<void> enqueue(std::span<const std::byte> data, std::span<const int> fds) override;
  Result<void> flush(const os::Deadline& deadline) override;
  std::size_t queued() const noexcept override { return out_.size(); }
  Result<void> close_send(const os::Deadline& deadline) override {
    if (auto r = flush(deadline); !r) return r;
    if (::shutdown(fd_.get(), SHUT_WR) != 0) return fail_errno(errno, "close_send");
    return {};
  }
  void goodbye(wire::Goodbye code, std::string_view text) noexcept override;

  Result<void> recv(Message& into, const os::Deadline& deadline, ReadBudget* budget) override;
  bool mid_message() const noexcept override { return in_message_; }
  void trim() noexcept override;
  void set_budget(std::shared_ptr<wire::MemoryBudget> budget) noexcept override;
  void limit_message(std::size_t max) noexcept override { rx_max_ = std::min(rx_max_, max); }

  Handles handles() const noexcept override;
  PeerCred peer() const noexcept override { return peer_; }
  Capabilities capabilities() const noexcept override;
  void shutdown() noexcept override;
  void release() noexcept override;

 private:
  Result<void> validate(std::span<const std::byte> data, std::span<const int> fds) const;
  // Queues the records of `data` from byte `from` on; `fds` ride with the first one queued.
  bool queue_records(std::span<const std::byte> data, std::size_t from, std::vector<Fd> fds);
  std::unexpected<Error> rx_fail(Error e);

  Fd fd_;
  PeerCred peer_;
  Options options_;

  // Send side.
  OutQueue out_{OutQueue::Mode::records};

  // Receive side.
  std::size_t rx_max_;           // the largest message accepted from the peer
  Message partial_;              // fragments received so far of the message in progress
  wire::Charge partial_charge_;  // what partial_ may grow to, against the memory budget
  bool in_message_ = false;
  std::optional<Error> rx_after_;
};

}  // namespace ipcx::transport
