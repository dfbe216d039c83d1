// Uses only the installed public API: two endpoints over pipes, one message each way, then the
// server engine echoing over another pair.
#include <cstdio>

#include <ipcx/ipcx.hpp>

int main() {
  auto pair = ipcx::pipe_pair();
  if (!pair) return std::fprintf(stderr, "%s\n", pair.error().message().c_str()), 1;
  auto& [a, b] = *pair;
  if (!a.send(ipcx::as_bytes("installed")).has_value()) return 1;
  auto m = b.recv(std::chrono::seconds(5));
  if (!m || m->text() != "installed") return 1;

  ipcx::Server::Handlers h;
  h.on_message = [](ipcx::Session& s, ipcx::Message& msg) { (void)s.send(msg.bytes()); };
  auto srv = ipcx::Server::create(std::move(h), {.max_connections = 10});
  auto echo = ipcx::pipe_pair();
  if (!srv || !echo || !srv->adopt(std::move(echo->second))) return 1;
  if (!echo->first.send(ipcx::as_bytes("served")).has_value()) return 1;
  for (int i = 0; i < 500; ++i) {
    if (!srv->run_once(std::chrono::milliseconds(10))) return 1;
    if (auto r = echo->first.try_recv()) {
      if (r->text() != "served") return 1;
      std::puts("consumer: ok");
      return 0;
    }
  }
  return 1;
}
