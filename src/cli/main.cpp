// ipcx: send, receive, listen, ping, signal and benchmark over any ipcx transport.
#include <csignal>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <ipcx/signal.hpp>

#include "bench/bench.hpp"
#include "cli/commands.hpp"

namespace ipcx::cli {
std::function<std::optional<int>()> add_reqrep_commands(CLI::App& app);  // reqrep.cpp
std::function<std::optional<int>()> add_pattern_commands(CLI::App& app);  // pubsub.cpp
std::function<std::optional<int>()> add_call_command(CLI::App& app);  // call.cpp
std::function<std::optional<int>()> add_broker_commands(CLI::App& app);  // broker.cpp
}

// Milliseconds that still fit the library's nanosecond timeouts (about 31 years).
const CLI::Range kTimeoutRange(0L, 1'000'000'000'000L);
// Where 0 would mean "do not wait at all" (send, ping): at least 1 ms.
const CLI::Range kWaitRange(1L, 1'000'000'000'000L);
// Messages: 1 byte (ping) up to the default maximum a receiver accepts.
const CLI::Range kSizeRange(std::size_t{1}, std::size_t{64} << 20);

// "0600", "660", "0o644": a file mode in octal.
std::string parse_mode(const std::string& text, unsigned& mode) {
  std::string t = text.starts_with("0o") ? text.substr(2) : text;
  if (t.empty() || t.size() > 4 || t.find_first_not_of("01234567") != std::string::npos)
    return "a mode is octal, like 0600 or 0660, not '" + text + "'";
  mode = static_cast<unsigned>(std::stoul(t, nullptr, 8));
  if (mode > 07777) return "mode " + text + " is above 07777";
  return {};
}

namespace ipcx::cli {
std::function<std::optional<int>()> add_mq_commands(CLI::App& app);  // cli/mq.cpp
std::function<std::optional<int>()> add_state_commands(CLI::App& app);  // cli/state.cpp
std::function<std::optional<int>()> add_queue_commands(CLI::App& shm_cmd);  // cli/state.cpp
}

int main(int argc, char** argv) {
  using namespace ipcx::cli;
  std::signal(SIGPIPE, SIG_IGN);  // a vanished peer is an error to report, not a reason to die

  CLI::App app{"ipcx — inter-process communication over pipes, FIFOs, Unix and TCP sockets, signals, POSIX and System V message queues, shared memory"};
  app.require_subcommand(1);
  app.footer(
      "URLs: pipe:  fifo:///path  unix:///path  unix:@name  unix+seq:///path  tcp://host:port  signal://PID  mq:///name  sysv://KEY  shm://name\n"
      "tcp://:PORT listens on 127.0.0.1; other machines reach only tcp://0.0.0.0:PORT or tcp://[::]:PORT.\n"
      "Example: ipcx listen unix:///tmp/demo.sock --echo &  ipcx ping unix:///tmp/demo.sock");

  ListenArgs listen_args;
  auto* listen_cmd = app.add_subcommand("listen", "Listen at URL and print every message received (until SIGINT/SIGTERM)");
  listen_cmd->add_option("url", listen_args.url, "Address to listen at")->required();
  listen_cmd->add_flag("--echo", listen_args.echo, "Send every message back to its sender");
  listen_cmd->add_flag("--lines", listen_args.lines, "Newline-delimited text instead of ipcx frames");
  listen_cmd->add_option("--count", listen_args.count, "Exit after this many messages (their echoes written first)")
      ->check(CLI::Range(1L, std::numeric_limits<long>::max()));

  ListenArgs recv_args;
  recv_args.until_first_close = true;
  auto* recv_cmd = app.add_subcommand("recv", "Receive messages at URL and print them");
  recv_cmd->add_option("url", recv_args.url, "Address to receive at (listens; pipe: reads stdin)")->required();
  recv_cmd->add_option("--count", recv_args.count, "Messages to receive (default: until the first sender closes)")
      ->check(CLI::Range(1L, std::numeric_limits<long>::max()));
  recv_cmd->add_option("--timeout", recv_args.timeout_ms, "Fail if no message arrives within MS milliseconds")
      ->check(kTimeoutRange);
  recv_cmd->add_flag("--lines", recv_args.lines, "Newline-delimited text instead of ipcx frames");
  for (auto [cmd, a] : {std::pair{listen_cmd, &listen_args}, std::pair{recv_cmd, &recv_args}}) {
    auto* uid = cmd->add_option("--allow-uid", a->allow_uids,
                                "Admit peers running as this uid (repeatable; unix: only). Replaces the default rule: "
                                "list your own uid too if it should connect. A path socket also needs --mode to let "
                                "them open it")
                    ->check(CLI::Range(0u, 4294967294u));
    auto* gid = cmd->add_option("--allow-gid", a->allow_gids, "Admit peers in this group (repeatable; unix: only)")
                    ->check(CLI::Range(0u, 4294967294u));
    cmd->add_flag("--allow-anyone", a->allow_anyone,
                  "Admit anyone who can reach the address (unix:@name admits only your uid by default)")
        ->excludes(uid)
        ->excludes(gid);
    cmd->add_option_function<std::string>(
           "--mode",
           [a](const std::string& text) {
             if (auto why = parse_mode(text, a->mode); !why.empty()) throw CLI::ValidationError("--mode", why);
           },
           "Permissions of the socket or FIFO files it creates, octal (default 0600: only you)");
    cmd->add_flag("--quiet", a->quiet, "Do not print the messages (with pipe:, stdout is the connection itself)");
    cmd->add_option("--max-connections", a->max_connections, "Concurrent connections; more are refused (default: RLIMIT_NOFILE - 64)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
    cmd->add_option("--memory-limit", a->memory_limit_mib, "MiB buffered across all connections (default 256)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
    cmd->add_option("--max-queued", a->max_queued_kib, "KiB queued for one slow reader before --slow-peer applies (default 4096)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
    cmd->add_option("--slow-peer", a->slow_peer, "pause (stop reading a client whose replies pile up) or drop it")
        ->check(CLI::IsMember({"pause", "drop"}))
        ->capture_default_str();
    cmd->add_option("--frame-timeout", a->frame_timeout_ms, "ms a started frame may take to complete (default 10000; 0: never)")
        ->check(kTimeoutRange);
    cmd->add_option("--idle-timeout", a->idle_timeout_ms, "ms without traffic before a client is closed (default: never)")
        ->check(kTimeoutRange);
    cmd->add_option("--send-timeout", a->send_timeout_ms, "ms queued replies may wait for the client to read (default 30000; 0: never)")
        ->check(kTimeoutRange);
  }

  SendArgs send_args;
  auto* send_cmd = app.add_subcommand("send", "Connect to URL and send TEXT (or standard input) as a message");
  send_cmd->add_option("url", send_args.url, "Address to send to (pipe: writes stdout)")->required();
  send_cmd->add_option("text", send_args.text, "Message text; '-' or nothing reads standard input");
  send_cmd->add_flag("--lines", send_args.lines, "Send each input line as a message, as newline-delimited text");
  send_cmd->add_option("--timeout", send_args.timeout_ms, "Connect/send timeout in milliseconds")
      ->check(kWaitRange)
      ->capture_default_str();

  PingArgs ping_args;
  auto* ping_cmd = app.add_subcommand("ping", "Round trips against `ipcx listen URL --echo`; prints p50/p99");
  ping_cmd->add_option("url", ping_args.url, "Address of an echoing listener")->required();
  ping_cmd->add_option("--count", ping_args.count, "Round trips")
      ->check(CLI::Range(1L, std::numeric_limits<long>::max()))
      ->capture_default_str();
  ping_cmd->add_option("--size", ping_args.size, "Payload bytes (1 B to 64 MiB)")->check(kSizeRange)->capture_default_str();
  ping_cmd->add_option("--timeout", ping_args.timeout_ms, "Per-operation timeout in milliseconds")
      ->check(kWaitRange)
      ->capture_default_str();

  long sig_pid = 0, sig_value = 0;
  int sig_offset = ipcx::kDefaultSignalOffset;
  auto* signal_cmd = app.add_subcommand("signal", "Send a real-time signal carrying an int to PID (signal:// transport)");
  signal_cmd->add_option("pid", sig_pid, "Target process")->required();
  signal_cmd->add_option("--value", sig_value, "The int to carry")->required();
  signal_cmd->add_option("--sig", sig_offset, "Signal number as an offset from SIGRTMIN")->capture_default_str();

  auto* shm_cmd = app.add_subcommand("shm", "Named shared-memory objects of the calling user (ls, gc, rm; push, pop: a shared queue)");
  shm_cmd->require_subcommand(1);
  bool shm_json = false;
  auto* shm_ls = shm_cmd->add_subcommand("ls", "List this user's named objects (segments, queues, states, events, topics): kind, size, mode, holders, liveness");
  shm_ls->add_flag("--json", shm_json, "One JSON array instead of a table");
  std::vector<std::string> shm_names;
  auto* shm_rm = shm_cmd->add_subcommand("rm", "Remove objects by name (processes that map one keep it until they unmap)");
  shm_rm->add_option("name", shm_names, "Names, as `ipcx shm ls` shows them")->required();
  auto* shm_gc = shm_cmd->add_subcommand("gc", "Remove what dead processes left: objects no process holds (and whose creator is dead)");

  auto shm_queue = add_queue_commands(*shm_cmd);
  auto mq = add_mq_commands(app);
  auto state = add_state_commands(app);
  auto bench = ipcx::bench::add_commands(app);
  auto reqrep = add_reqrep_commands(app);
  auto patterns = ipcx::cli::add_pattern_commands(app);
  auto call = add_call_command(app);
  auto broker = add_broker_commands(app);

  // An unknown command is named as such (CLI11 would say "a subcommand is required").
  if (argc > 1 && argv[1][0] != '-') {
    std::string first = argv[1];
    bool known = false;
    for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) known = known || sub->check_name(first);
    if (!known) {
      std::fprintf(stderr, "ipcx: unknown command '%s' (see ipcx --help)\n", first.c_str());
      return 2;
    }
  }
  // Every usage error is one line and exit code 2; --help prints and exits 0.
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "ipcx: %s (see ipcx --help)\n", e.what());
    return 2;
  }

  if (*listen_cmd) return cmd_listen(listen_args, "listen");
  if (*recv_cmd) return cmd_listen(recv_args, "recv");
  if (*send_cmd) return cmd_send(send_args);
  if (*ping_cmd) return cmd_ping(ping_args);
  if (*signal_cmd) return cmd_signal(sig_pid, sig_value, sig_offset);
  if (*shm_ls) return cmd_shm_ls(shm_json);
  if (*shm_rm) return cmd_shm_rm(shm_names);
  if (*shm_gc) return cmd_shm_gc();
  if (auto code = state()) return *code;
  if (auto code = shm_queue()) return *code;
  if (auto code = mq()) return *code;
  if (auto code = bench()) return *code;
  if (auto code = reqrep()) return *code;
  if (auto code = patterns()) return *code;
  if (auto code = call()) return *code;
  if (auto code = broker()) return *code;
  return 2;
}
