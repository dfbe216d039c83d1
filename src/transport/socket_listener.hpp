// A listening socket shared by the unix, unix+seq and tcp transports.
#pragma once

#include <functional>
#include <string>

#include <sys/stat.h>

#include "os/socket.hpp"
#include "transport/transport.hpp"

namespace ipcx::transport {

class SocketListener final : public ListenerImpl {
 public:
  using MakeConnection = std::function<std::unique_ptr<ConnectionImpl>(Fd accepted)>;

  // `fd` is bound and listening. `owned_path` (may be empty) is removed on close, but only
  // while it is still the socket this listener bound (same inode).
  SocketListener(Fd fd, std::string url, std::string owned_path, MakeConnection make);
  ~SocketListener() override { close(); }

  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline& deadline) override;
  int native_handle() const noexcept override { return fd_.get(); }
  std::string url() const override { return url_; }
  void close() noexcept override;
  bool is_open() const noexcept override { return fd_.valid(); }

 private:
  Fd fd_;
  std::string url_;
  std::string owned_path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  MakeConnection make_;
};

// Binds a Unix socket of `type` at `where` ("/path" or "@abstract") with `mode` permissions,
// replacing a stale socket file but never a live server's. Returns the listening fd.
Result<Fd> bind_unix(std::string_view where, int type, const Options& options);

}  // namespace ipcx::transport
