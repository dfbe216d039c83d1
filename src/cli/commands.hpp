// The ipcx subcommands. Each returns the process exit code; failures print one line on stderr.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <ipcx/connection.hpp>

namespace ipcx::cli {

struct ListenArgs {
  std::string url;
  bool echo = false;
  bool lines = false;
  long count = 0;       // stop after this many messages (0: until a signal)
  long timeout_ms = 0;  // recv: fail when no message arrives for this long (0: wait forever)
  bool until_first_close = false;  // recv without --count: stop when the first connection ends
  // Who may connect (empty and !allow_anyone: the transport's default).
  std::vector<unsigned> allow_uids, allow_gids;
  bool allow_anyone = false;
  unsigned mode = 0600;  // files it creates
  bool quiet = false;    // do not print messages
  // The server engine's limits (0: its default).
  std::size_t max_connections = 0;
  std::size_t memory_limit_mib = 0;
  std::size_t max_queued_kib = 0;
  std::string slow_peer = "pause";
  long frame_timeout_ms = -1, idle_timeout_ms = -1, send_timeout_ms = -1;  // -1: default, 0: never
};
int cmd_listen(const ListenArgs& args, const char* name);

struct SendArgs {
  std::string url;
  std::vector<std::string> text;  // empty or {"-"}: read standard input
  bool lines = false;
  long timeout_ms = 5000;
};
int cmd_send(const SendArgs& args);

struct PingArgs {
  std::string url;
  long count = 10;
  std::size_t size = 64;
  long timeout_ms = 5000;
};
int cmd_ping(const PingArgs& args);

int cmd_signal(long pid, long value, int offset);

// The calling user's named shared-memory segments: a table, or JSON.
int cmd_shm_ls(bool json);
// Removes each named segment; exit code 1 if any could not be removed (the rest still are).
int cmd_shm_rm(const std::vector<std::string>& names);
// Removes what dead processes left (shm::collect_garbage); prints each path removed.
int cmd_shm_gc();

// Standard input as one message, refused (too_large) as soon as it passes `max` bytes.
Result<std::string> read_stdin_message(std::size_t max);

// Prints "ipcx <what>: <message>" on stderr; returns 1.
int report(const std::string& what, const Error& e);

}  // namespace ipcx::cli
