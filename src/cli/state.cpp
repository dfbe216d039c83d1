// `ipcx state write|read` (ipcx/state.hpp), `ipcx event notify|listen` (ipcx/event.hpp) and
// `ipcx shm push|pop` (ipcx/shm_queue.hpp) from the shell.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ipcx/event.hpp>
#include <ipcx/shm_queue.hpp>
#include <ipcx/state.hpp>

#include "cli/commands.hpp"

namespace ipcx::cli {
namespace {

struct StateArgs {
  std::string name;
  std::string text;
  std::string group;
  std::size_t capacity = 4096;
  bool watch = false;
  long timeout_ms = 0;
};

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

volatile std::sig_atomic_t queue_stop = 0;
extern "C" void on_queue_signal(int) { queue_stop = 1; }

// SIGINT, SIGTERM and SIGHUP end a push, pop or listen loop (no SA_RESTART: a read of standard
// input returns), so that the object is closed: its last user removes it.
void stop_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_queue_signal;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

// Lines of standard input, read in 100 ms slices so that a stop request is seen even when the
// signal's handler runs only after an interrupted read has returned. A last line without a
// newline is a line; nullopt at the end of input, on a read error, or once a stop is requested.
class StdinLines {
 public:
  std::optional<std::string> next() {
    for (;;) {
      if (queue_stop) return std::nullopt;
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (eof_) {
        if (buf_.empty()) return std::nullopt;
        return std::exchange(buf_, {});
      }
      pollfd p{.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
      const int n = ::poll(&p, 1, 100);
      if (n == 0 || (n < 0 && errno == EINTR)) continue;
      char chunk[4096];
      const ssize_t got = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) eof_ = true;  // the end, or an error (reported as the end, as getline does)
      else buf_.append(chunk, static_cast<std::size_t>(got));
    }
  }

 private:
  std::string buf_;
  bool eof_ = false;
};

// Calls `attempt(slice)` with 100 ms slices while it times out, so that a signal is noticed: until
// it returns anything else, a stop is requested (Errc::closed, "interrupted"), or `timeout_ms`
// (0: none) has passed (its last timeout).
template <class Attempt>
auto in_slices(long timeout_ms, Attempt&& attempt) -> decltype(attempt(Timeout{})) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    auto r = attempt(std::chrono::milliseconds(100));
    if (r || r.error().code != Errc::timeout) return r;
    if (queue_stop) return fail(Errc::closed, "wait", "interrupted");
    if (timeout_ms > 0 && std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(timeout_ms)) return r;
  }
}

int state_write(const StateArgs& a) {
  // Blocked first: a signal that ends us must end us through sigwait, as the writer's close.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto w = shm::StateWriter::create(a.name, {.capacity = a.capacity, .group = a.group});
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
  // A signal ends the reading too (exit 0, as in the TEXT case): taken by the handler now.
  stop_on_signals();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  StdinLines lines;
  while (auto line = lines.next()) {
    if (auto r = w->store(bytes_of(*line)); !r) return report("state write", r.error());
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

struct EventArgs {
  std::string name;
  std::string group;
  std::vector<std::uint32_t> ids;
  long count = 0;
  long timeout_ms = 0;
  std::size_t max_listeners = 256;
};

int event_notify(const EventArgs& a) {
  auto n = shm::EventNotifier::open(a.name, {.max_listeners = a.max_listeners, .group = a.group});
  if (!n) return report("event notify", n.error());
  const std::vector<std::uint32_t> ids = a.ids.empty() ? std::vector<std::uint32_t>{0} : a.ids;
  for (auto id : ids)
    if (auto r = n->notify(id); !r) return report("event notify", r.error());
  return 0;
}

int event_listen(const EventArgs& a) {
  stop_on_signals();
  auto l = shm::EventListener::open(a.name, {.max_listeners = a.max_listeners, .group = a.group});
  if (!l) return report("event listen", l.error());
  std::fprintf(stderr, "ipcx event listen: listening on %s\n", l->path().c_str());
  long seen = 0;
  while (a.count == 0 || seen < a.count) {
    auto ids = in_slices(a.timeout_ms, [&](Timeout slice) { return l->wait(slice); });
    if (queue_stop) return 130;
    if (!ids) return report("event listen", ids.error());
    for (auto id : *ids) std::printf("%u\n", id);
    std::fflush(stdout);
    seen += static_cast<long>(ids->size());
  }
  return 0;
}

struct QueueArgs {
  std::string name;
  std::string text;
  bool text_given = false;  // an empty TEXT is an empty message, not "read standard input"
  shm::QueueOptions options;
  long count = 0;
  long timeout_ms = 0;
};

// Sends within --timeout (0: for ever); a signal ends the wait.
Result<void> push_one(shm::QueueWriter& w, const std::string& text, long timeout_ms) {
  auto r = in_slices(timeout_ms, [&](Timeout slice) { return w.send(bytes_of(text), slice); });
  if (!r && r.error().code == Errc::timeout)
    return fail(Errc::timeout, "shm push", fmt::format("the queue stayed full for {} ms", timeout_ms));
  return r;
}

int queue_push(const QueueArgs& a) {
  stop_on_signals();
  auto w = shm::QueueWriter::open(a.name, a.options);
  if (!w) return report("shm push", w.error());
  if (a.text_given && a.text != "-") {
    if (auto r = push_one(*w, a.text, a.timeout_ms); !r) return report("shm push", r.error());
    return 0;
  }
  StdinLines lines;
  while (auto line = lines.next()) {
    if (auto r = push_one(*w, *line, a.timeout_ms); !r) return queue_stop ? 130 : report("shm push", r.error());
  }
  return queue_stop ? 130 : 0;
}

int queue_pop(const QueueArgs& a) {
  stop_on_signals();
  auto r = shm::QueueReader::create(a.name, a.options);
  if (!r) return report("shm pop", r.error());
  std::fprintf(stderr, "ipcx shm pop: reading %s\n", r->path().c_str());
  std::vector<std::byte> msg;
  for (long seen = 0; (a.count == 0 || seen < a.count) && !queue_stop; ++seen) {
    auto got = in_slices(a.timeout_ms, [&](Timeout slice) { return r->recv(msg, slice); });
    if (queue_stop) return 130;
    if (!got && got.error().code == Errc::timeout)
      return report("shm pop", fail(Errc::timeout, "shm pop", fmt::format("no message within {} ms", a.timeout_ms)).error());
    if (!got) return report("shm pop", got.error());
    print_value(msg);
  }
  if (r->abandoned() != 0)
    std::fprintf(stderr, "ipcx shm pop: %llu messages skipped: their writers died half-way\n",
                 static_cast<unsigned long long>(r->abandoned()));
  return queue_stop ? 130 : 0;
}

}  // namespace

std::function<std::optional<int>()> add_queue_commands(CLI::App& shm_cmd) {
  auto a = std::make_shared<QueueArgs>();
  auto* push = shm_cmd.add_subcommand("push", "Put TEXT (or each line of standard input) into a shared queue, created "
                                               "if absent");
  push->add_option("name", a->name, "Queue name (1 to 200 bytes; the file is /dev/shm/ipcx-<uid>-NAME; ~OWNER/NAME: "
                                    "another user's, shared with a group of ours)")
      ->required();
  push->add_option("text", a->text, "The message ('' is an empty one); '-' or nothing: each input line in turn");
  push->add_option("--timeout", a->timeout_ms, "ms to wait for room in a full queue (0: forever)")
      ->check(CLI::Range(0L, 86'400'000L))
      ->capture_default_str();
  auto* pop = shm_cmd.add_subcommand("pop", "Be the shared queue's reader: print each message on a line");
  pop->add_option("name", a->name, "Queue name")->required();
  pop->add_option("--count", a->count, "Exit after this many messages (0: never)")
      ->check(CLI::Range(0L, std::numeric_limits<long>::max()))
      ->capture_default_str();
  pop->add_option("--timeout", a->timeout_ms, "ms to wait for each message (0: forever)")
      ->check(CLI::Range(0L, 86'400'000L))
      ->capture_default_str();
  for (auto* c : {push, pop}) {
    c->add_option("--slots", a->options.slots, "Messages it holds, a power of two, if this call creates it")
        ->check(CLI::Range(std::size_t{2}, shm::kMaxQueueSlots))
        ->capture_default_str();
    c->add_option("--max-message", a->options.max_message, "Largest message in bytes, if this call creates it")
        ->check(CLI::Range(std::size_t{1}, shm::kMaxQueueMessage))
        ->capture_default_str();
    c->add_option("--max-writers", a->options.max_writers, "Writers at once, if this call creates it")
        ->check(CLI::Range(std::size_t{1}, shm::kMaxQueueWriters))
        ->capture_default_str();
    c->add_option("--group", a->options.group, "If this call creates it: mode 0660 for this group (name or gid)");
  }
  return [=]() -> std::optional<int> {
    a->text_given = push->get_option("text")->count() > 0;
    if (*push) return queue_push(*a);
    if (*pop) return queue_pop(*a);
    return std::nullopt;
  };
}

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
  write->add_option("--group", a->group, "Create it mode 0660 for this group (name or gid), whose members read it as ~OWNER/NAME");
  auto* read = cmd->add_subcommand("read", "Print the state's latest value; --watch: then each new one until the writer goes");
  read->add_option("name", a->name, "State name (~OWNER/NAME: another user's, shared with a group of ours)")->required();
  read->add_flag("--watch", a->watch, "Print each change (the latest value each time: a fast writer's steps may be skipped)");
  read->add_option("--timeout", a->timeout_ms, "ms to wait for the state to exist and, with --watch, for each change (0: forever)")
      ->check(CLI::Range(0L, 86'400'000L))
      ->capture_default_str();
  auto e = std::make_shared<EventArgs>();
  auto* ev = app.add_subcommand("event", "Events: named, pollable notifications with an id, no payload (notify, listen)");
  ev->require_subcommand(1);
  auto* notify = ev->add_subcommand("notify", "Notify every listener of the event (created if absent) of each ID");
  notify->add_option("name", e->name, "Event name (1 to 200 bytes; the file is /dev/shm/ipcx-<uid>-NAME)")->required();
  notify->add_option("id", e->ids, "Event ids, 0 to 4095 (default: 0)")->check(CLI::Range(0u, shm::kMaxEventId));
  auto* listen = ev->add_subcommand("listen", "Print the ids notified, one per line (repeats of an id not yet taken merge)");
  listen->add_option("name", e->name, "Event name (~OWNER/NAME: another user's, shared with a group of ours)")->required();
  listen->add_option("--count", e->count, "Exit after this many ids (0: never)")
      ->check(CLI::Range(0L, std::numeric_limits<long>::max()))
      ->capture_default_str();
  listen->add_option("--timeout", e->timeout_ms, "ms to wait for each notification (0: forever)")
      ->check(CLI::Range(0L, 86'400'000L))
      ->capture_default_str();
  for (auto* c : {notify, listen}) {
    c->add_option("--max-listeners", e->max_listeners, "Listener slots, if this call creates the event")
        ->check(CLI::Range(std::size_t{1}, shm::kMaxEventListeners))
        ->capture_default_str();
    c->add_option("--group", e->group, "If this call creates the event: mode 0660 for this group (name or gid)");
  }
  return [=]() -> std::optional<int> {
    if (*write) return state_write(*a);
    if (*read) return state_read(*a);
    if (*notify) return event_notify(*e);
    if (*listen) return event_listen(*e);
    return std::nullopt;
  };
}

}  // namespace ipcx::cli
