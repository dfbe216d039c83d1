// `ipcx state write` and `ipcx state read`: shared state (ipcx/state.hpp) from the shell.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ipcx/state.hpp>

#include "cli/commands.hpp"

namespace ipcx::cli {
namespace {

struct StateArgs {
  std::string name;
  std::string text;
  std::size_t capacity = 4096;
  bool watch = false;
  long timeout_ms = 0;
};

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

int state_write(const StateArgs& a) {
  // Blocked first: a signal that ends us must end us through sigwait, as the writer's close.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto w = shm::StateWriter::create(a.name, {.capacity = a.capacity});
  if (!w) return report("state write", w.error());
  if (!a.text.empty() && a.text != "-") {
    if (auto r = w->store(bytes_of(a.text)); !r) return report("state write", r.error());
    std::fprintf(stderr, "ipcx state write: %s holds %zu bytes (version %llu); Ctrl-C to stop writing\n", w->path().c_str(),
                 a.text.size(), static_cast<unsigned long long>(w->version()));
    int sig = 0;
    sigwait(&set, &sig);
    return 0;
  }
  std::fprintf(stderr, "ipcx state write: %s: each line of standard input becomes the value\n", w->path().c_str());
  std::string line;
  while (std::getline(std::cin, line)) {
    if (auto r = w->store(bytes_of(line)); !r) return report("state write", r.error());
  }
  return 0;
}

void print_value(const std::vector<std::byte>& v) {
  std::fwrite(v.data(), 1, v.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int state_read(const StateArgs& a) {
  const Timeout timeout = a.timeout_ms > 0 ? Timeout(std::chrono::milliseconds(a.timeout_ms)) : forever;
  auto r = shm::StateReader::open(a.name, a.timeout_ms > 0 ? timeout : Timeout(std::chrono::seconds(1)));
  if (!r) return report("state read", r.error());
  std::vector<std::byte> v;
  std::uint64_t seen = 0;
  auto got = r->load(v);
  if (got) {
    seen = *got;
    print_value(v);
  } else if (got.error().code != Errc::not_found || !a.watch) {
    return report("state read", got.error());
  }
  if (!a.watch) return 0;
  for (;;) {
    auto c = r->wait_change(seen, timeout);
    if (!c) {
      if (c.error().code == Errc::closed) {
        std::fprintf(stderr, "ipcx state read: the writer is gone\n");
        return 0;
      }
      return report("state read", c.error());
    }
    auto l = r->load(v);
    if (!l) return report("state read", l.error());
    seen = *l;
    print_value(v);
  }
}

}  // namespace

std::function<std::optional<int>()> add_state_commands(CLI::App& app) {
  auto a = std::make_shared<StateArgs>();
  auto* cmd = app.add_subcommand("state", "Shared state: a named value one process writes and many read (write, read)");
  cmd->require_subcommand(1);
  auto* write = cmd->add_subcommand("write", "Be the state's writer: store TEXT and hold it until a signal, or store "
                                             "each line of standard input until it ends");
  write->add_option("name", a->name, "State name (1 to 200 bytes; the file is /dev/shm/ipcx-<uid>-NAME)")->required();
  write->add_option("text", a->text, "The value; '-' or nothing: each input line in turn");
  write->add_option("--capacity", a->capacity, "Largest value in bytes")
      ->check(CLI::Range(std::size_t{1}, shm::kMaxStateCapacity))
      ->capture_default_str();
  auto* read = cmd->add_subcommand("read", "Print the state's latest value; --watch: then each new one until the writer goes");
  read->add_option("name", a->name, "State name")->required();
  read->add_flag("--watch", a->watch, "Print each change (the latest value each time: a fast writer's steps may be skipped)");
  read->add_option("--timeout", a->timeout_ms, "ms to wait for the state to exist and, with --watch, for each change (0: forever)")
      ->check(CLI::Range(0L, 86'400'000L))
      ->capture_default_str();
  return [=]() -> std::optional<int> {
    if (*write) return state_write(*a);
    if (*read) return state_read(*a);
    return std::nullopt;
  };
}

}  // namespace ipcx::cli
