// The bound side of every pattern (Publisher, Pusher, Replier, Surveyor): a server engine
// listening at one URL.
#pragma once

#include <string>
#include <string_view>

#include <ipcx/connection.hpp>
#include <ipcx/server.hpp>

namespace ipcx::messaging {

struct Served {
  Server server;
  std::string url;  // the listener's real address (tcp port 0 resolved)
};

// A server engine with `handlers` and `options`, serving a listener at `url`. Nothing is
// accepted until the engine runs.
inline Result<Served> serve(std::string_view url, Server::Handlers handlers, const ServerOptions& options,
                            const Options& transport) {
  auto server = Server::create(std::move(handlers), options);
  if (!server) return std::unexpected(server.error());
  auto listener = ipcx::listen(url, transport);
  if (!listener) return std::unexpected(listener.error());
  std::string bound = listener->url();
  if (auto r = server->add_listener(std::move(*listener)); !r) return std::unexpected(r.error());
  return Served{.server = std::move(*server), .url = std::move(bound)};
}

}  // namespace ipcx::messaging
