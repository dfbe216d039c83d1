// The interface every transport implements, and the scheme registry.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <ipcx/connection.hpp>

#include "os/sys.hpp"
#include "transport/url.hpp"

namespace ipcx {

class ConnectionImpl {
 public:
  virtual ~ConnectionImpl() = default;
  virtual Result<void> send(std::span<const std::byte> data, std::span<const int> fds,
                            const os::Deadline& deadline) = 0;
  virtual Result<void> recv(Message& into, const os::Deadline& deadline) = 0;
  virtual Result<void> flush(const os::Deadline&) { return {}; }
  virtual int native_handle() const noexcept = 0;
  virtual bool buffered() const noexcept { return false; }
  virtual PeerCred peer() const noexcept { return {}; }
  virtual void close() noexcept = 0;
  virtual bool is_open() const noexcept = 0;
};

class ListenerImpl {
 public:
  virtual ~ListenerImpl() = default;
  virtual Result<std::unique_ptr<ConnectionImpl>> accept(const os::Deadline& deadline) = 0;
  virtual int native_handle() const noexcept = 0;
  virtual std::string url() const = 0;
  virtual void close() noexcept = 0;
  virtual bool is_open() const noexcept = 0;
};

namespace transport {

struct Scheme {
  std::string name;  // "unix", "tcp", ...
  std::function<Result<std::unique_ptr<ListenerImpl>>(const Url&, const Options&)> listen;
  std::function<Result<std::unique_ptr<ConnectionImpl>>(const Url&, const Options&,
                                                        const os::Deadline&)>
      connect;
};

// Adds or replaces the transport for a scheme (thread-safe).
void register_scheme(Scheme scheme);
// nullptr when nothing is registered under that name.
const Scheme* find_scheme(std::string_view name);

// Built-in transports (each defined in its own folder).
Scheme pipe_scheme();
Scheme fifo_scheme();
Scheme unix_scheme();
Scheme unix_seq_scheme();
Scheme tcp_scheme();
Scheme signal_scheme();

}  // namespace transport
}  // namespace ipcx
