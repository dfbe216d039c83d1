// A listening socket shared by the unix, unix+seq and tcp transports.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <sys/stat.h>

#include "os/socket.hpp"
#include "transport/transport.hpp"

namespace ipcx::transport {

// A Unix socket bound at a path or an abstract name, with what the listener must clean up.
struct BoundUnix {
  Fd fd;                  // bound and listening
  std::string path;       // the socket file ("" for abstract names)
  Fd lock;                // exclusive flock on lock_path, held while listening
  std::string lock_path;  // PATH.lock beside the socket file
};

class SocketListener final : public ListenerImpl {
 public:
  // Errors are accept()'s (the accepted peer is then closed).
  using MakeConnection = std::function<Result<std::unique_ptr<ConnectionImpl>>(Fd accepted)>;
  struct Params {
    BoundUnix bound;  // tcp: only `fd` is set
    std::string url;
    Capabilities caps;
    std::optional<AccessRule> access;  // checked at accept; unset: everyone
    bool goodbye = true;               // refusals are explained with a goodbye frame (frames framing)
    MakeConnection make;
  };
  explicit SocketListener(Params p);
  ~SocketListener() override { close(); }

  Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline& deadline) override;
  std::optional<int> native_handle() const noexcept override;
  std::string url() const override { return url_; }
  Capabilities capabilities() const noexcept override { return caps_; }
  ListenerStats stats() const noexcept override { return stats_; }
  void close() noexcept override;
  bool is_open() const noexcept override { return bound_.fd.valid(); }

 private:
  BoundUnix bound_;
  std::string url_;
  Capabilities caps_;
  std::optional<AccessRule> access_;
  bool goodbye_;
  MakeConnection make_;
  dev_t dev_ = 0, lock_dev_ = 0;
  ino_t ino_ = 0, lock_ino_ = 0;
  ListenerStats stats_;
};

// Binds a Unix socket of `type` at `where` ("/path" or "@abstract") with `mode` permissions.
// Path sockets: a lock file beside the socket (PATH.lock, flock) makes the check-and-replace
// of a stale socket atomic across concurrent listeners; a live server's socket is never taken.
Result<BoundUnix> bind_unix(std::string_view where, int type, const Options& options);

}  // namespace ipcx::transport
