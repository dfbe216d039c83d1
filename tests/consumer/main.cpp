// Uses only the installed public API: two endpoints over pipes, one message each way.
#include <cstdio>

#include <ipcx/ipcx.hpp>

int main() {
  auto pair = ipcx::pipe_pair();
  if (!pair) return std::fprintf(stderr, "%s\n", pair.error().message().c_str()), 1;
  auto& [a, b] = *pair;
  if (!a.send(ipcx::as_bytes("installed")).has_value()) return 1;
  auto m = b.recv(std::chrono::seconds(5));
  if (!m || m->text() != "installed") return 1;
  std::puts("consumer: ok");
  return 0;
}
