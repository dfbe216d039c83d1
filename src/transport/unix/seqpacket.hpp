// unix+seq: SOCK_SEQPACKET keeps record boundaries; messages larger than one record are sent
// as several records flagged "more" (the socket buffer limits a record's size).
#pragma once

#include <vector>

#include "transport/transport.hpp"
#include "wire/frame.hpp"

namespace ipcx::transport {

class SeqpacketConnection final : public ConnectionImpl {
 public:
  static constexpr std::size_t kChunk = 64 * 1024;

  SeqpacketConnection(Fd fd, PeerCred peer, Options options);

  Result<void> send(std::span<const std::byte> data, std::span<const int> fds,
                    const os::Deadline& deadline) override;
  Result<void> recv(Message& into, const os::Deadline& deadline) override;
  Result<void> flush(const os::Deadline& deadline) override;
  int native_handle() const noexcept override { return fd_.get(); }
  PeerCred peer() const noexcept override { return peer_; }
  void close() noexcept override;
  bool is_open() const noexcept override { return fd_.valid(); }

 private:
  // Sends `data` as records from `offset`; on a deadline after the first record, keeps the rest.
  Result<void> send_records(std::span<const std::byte> data, std::span<const int> fds,
                            const os::Deadline& dl, bool resuming);

  Fd fd_;
  PeerCred peer_;
  Options options_;
  std::vector<std::byte> rbuf_;
  std::vector<std::byte> unsent_;  // remaining payload of a message whose first record is out
  Message partial_;                // fragments received so far of the message in progress
  bool in_message_ = false;
};

}  // namespace ipcx::transport
