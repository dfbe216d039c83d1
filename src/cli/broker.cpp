// `ipcx queue ...` and `ipcx broker status`: durable queues of ipcxd (docs/broker.md).
#include <signal.h>

#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ipcx/broker.hpp>

#include "cli/text.hpp"

namespace ipcx::cli {
namespace {


struct Args {
  std::string broker;
  std::string name;
  std::vector<std::string> names;
  std::vector<std::uint64_t> seqs;
  std::string text;
  bool text_given = false;
  std::string id;
  broker::QueueOptions q;
  std::string sync = "always", overflow = "reject";
  long ttl_ms = 0, ack_timeout_ms = 30'000, dedup_ms = 120'000;
  long count = 1;
  long timeout_ms = -1;
  bool no_ack = false;
  long lease_ms = 30'000;
  bool json = false;
  std::string url;
  std::vector<std::string> meta;
  std::string pattern = "*";
  long limit = 0;  // svc watch, topic sub: 0 runs until a signal
  CLI::App* create_cmd = nullptr;  // queue create: which options were given
};

int fail_line(const Error& e) {
  fmt::print(stderr, "ipcx: {}\n", e.detail.empty() ? e.message() : e.detail);
  return 1;
}

Result<broker::Client> connect(const Args& a) {
  return broker::Client::connect(a.broker, std::chrono::seconds(5));
}

std::string sync_name(broker::Sync s) {
  switch (s) {
    case broker::Sync::always: return "always";
    case broker::Sync::group: return "group";
    case broker::Sync::none: return "none";
  }
  return "?";
}

std::string_view overflow_name(broker::Overflow o) { return o == broker::Overflow::drop_oldest ? "drop-oldest" : "reject"; }

int do_create(Args& a) {
  a.q.sync = a.sync == "group" ? broker::Sync::group : a.sync == "none" ? broker::Sync::none : broker::Sync::always;
  a.q.overflow = a.overflow == overflow_name(broker::Overflow::drop_oldest) ? broker::Overflow::drop_oldest : broker::Overflow::reject;
  a.q.ttl = std::chrono::milliseconds(a.ttl_ms);
  a.q.ack_timeout = std::chrono::milliseconds(a.ack_timeout_ms);
  a.q.dedup_window = std::chrono::milliseconds(a.dedup_ms);
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  auto r = b->declare(a.name, a.q);
  if (!r) return fail_line(r.error());
  if (*r) {
    fmt::print("{} created\n", a.name);
    return 0;
  }
  // It existed: its own options stay. Say which of them differ from the ones given (an option
  // left out asks for nothing, so its default is not compared).
  std::string differ;
  auto all = b->queues();
  if (!all) {
    fmt::print("{} exists (its options kept; they could not be listed: {})\n", a.name, all.error().detail.empty() ? all.error().message() : all.error().detail);
    return 0;
  }
  for (const auto& q : *all) {
    if (q.name != a.name) continue;
    auto note = [&](const char* flag, std::string_view kept, std::string_view asked, const char* unit = "") {
      if (a.create_cmd->count(fmt::format("--{}", flag)) == 0 || kept == asked) return;
      differ += fmt::format("{}{} {}{} (not {}{})", differ.empty() ? "" : ", ", flag, kept, unit, asked, unit);
    };
    const auto& k = q.options;
    note("sync", sync_name(k.sync), a.sync);
    note("overflow", overflow_name(k.overflow), a.overflow);
    note("max-messages", std::to_string(k.max_messages), std::to_string(a.q.max_messages));
    note("max-bytes", std::to_string(k.max_bytes), std::to_string(a.q.max_bytes));
    note("max-attempts", std::to_string(k.max_attempts), std::to_string(a.q.max_attempts));
    note("ttl", std::to_string(k.ttl.count()), std::to_string(a.q.ttl.count()), " ms");
    note("ack-timeout", std::to_string(k.ack_timeout.count()), std::to_string(a.q.ack_timeout.count()), " ms");
    note("dedup-window", std::to_string(k.dedup_window.count()), std::to_string(a.q.dedup_window.count()), " ms");
  }
  if (differ.empty()) fmt::print("{} exists (its options kept)\n", a.name);
  else fmt::print("{} exists (its options kept: {})\n", a.name, differ);
  return 0;
}

int do_publish(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  auto one = [&](std::string_view text) -> int {
    auto c = b->publish(a.name, as_bytes(text), {.id = a.id});
    if (!c) return fail_line(c.error());
    fmt::print("{}{}\n", c->seq, c->duplicate ? " duplicate" : "");
    return 0;
  };
  if (a.text_given && a.text != "-") return one(a.text);
  // Each line of standard input is a message (confirmed before the next is sent).
  for (std::string line; std::getline(std::cin, line);)
    if (int rc = one(line); rc != 0) return rc;
  return 0;
}

void print_delivery(const broker::Delivery& d, bool json) {
  if (json) {
    fmt::print("{{\"queue\":{},\"seq\":{},\"attempt\":{},\"id\":{},\"published_ms\":{},\"body\":{}}}\n", json_string(d.queue), d.seq, d.attempt,
               json_string(d.id), std::chrono::duration_cast<std::chrono::milliseconds>(d.published.time_since_epoch()).count(),
               json_string(d.text()));
  } else {
    fmt::print("{}\n", escaped(d.text()));
  }
  std::fflush(stdout);
}

int do_consume(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  const Timeout each = a.timeout_ms < 0 ? forever : Timeout(std::chrono::milliseconds(a.timeout_ms));
  if (a.no_ack) {
    // Leased: each message goes back to the queue unless `ipcx queue ack NAME SEQ` comes within the lease.
    for (long i = 0; i < a.count; ++i) {
      const auto wait = a.timeout_ms < 0 ? std::chrono::milliseconds(std::numeric_limits<std::uint32_t>::max()) : std::chrono::milliseconds(a.timeout_ms);
      auto d = b->get(a.name, wait, std::chrono::milliseconds(a.lease_ms));
      if (!d) return fail_line(d.error());
      if (!a.json) fmt::print(stderr, "seq {} (attempt {}); ack within {} ms: ipcx queue ack {} {}\n", d->seq, d->attempt, a.lease_ms, a.name, d->seq);
      print_delivery(*d, a.json);
    }
    return 0;
  }
  // Prefetch 1: a message this command has not printed yet is never held back from other consumers.
  auto tag = b->consume(a.name, 1);
  if (!tag) return fail_line(tag.error());
  for (long i = 0; i < a.count; ++i) {
    auto d = b->next(each);
    if (!d) {
      if (d.error().code == Errc::timeout) fmt::print(stderr, "ipcx: no message in {} within {} ms\n", a.name, a.timeout_ms);
      else fail_line(d.error());
      return 1;
    }
    print_delivery(*d, a.json);
    // Acknowledged once printed: a crash before this line means it is delivered again.
    if (auto r = b->ack(*d); !r) return fail_line(r.error());
  }
  return 0;
}

int do_ack(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  int rc = 0;
  for (auto seq : a.seqs)
    if (auto r = b->ack(a.name, seq); !r) rc = fail_line(r.error());
  return rc;
}

int do_ls(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  auto qs = b->queues();
  if (!qs) return fail_line(qs.error());
  if (a.json) {
    fmt::print("[");
    for (std::size_t i = 0; i < qs->size(); ++i) {
      const auto& q = (*qs)[i];
      fmt::print("{}{{\"name\":{},\"ready\":{},\"unacked\":{},\"bytes\":{},\"consumers\":{},\"published\":{},\"duplicates\":{},\"delivered\":{},"
                 "\"redelivered\":{},\"acked\":{},\"dead_lettered\":{},\"expired\":{},\"rejected\":{},\"sync\":\"{}\"}}",
                 i ? "," : "", json_string(q.name), q.ready, q.unacked, q.bytes, q.consumers, q.published, q.duplicates, q.delivered,
                 q.redelivered, q.acked, q.dead_lettered, q.expired, q.rejected, sync_name(q.options.sync));
    }
    fmt::print("]\n");
    return 0;
  }
  fmt::print("{:<24} {:>9} {:>9} {:>10} {:>9} {:>7}\n", "QUEUE", "READY", "UNACKED", "BYTES", "CONSUMERS", "SYNC");
  for (const auto& q : *qs)
    fmt::print("{:<24} {:>9} {:>9} {:>10} {:>9} {:>7}\n", q.name, q.ready, q.unacked, q.bytes, q.consumers, sync_name(q.options.sync));
  return 0;
}

int do_purge(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  auto n = b->purge(a.name);
  if (!n) return fail_line(n.error());
  fmt::print("{} messages removed\n", *n);
  return 0;
}

int do_rm(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  int rc = 0;
  for (auto& n : a.names)
    if (auto r = b->remove(n); !r) rc = fail_line(r.error());
  return rc;
}

int do_status(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  auto s = b->status();
  if (!s) return fail_line(s.error());
  const auto secs = s->uptime.count() / 1000;
  fmt::print("ipcxd {} (pid {})\n", s->version, s->pid);
  fmt::print("socket:  {}\n", s->socket);
  fmt::print("http:    {}\n", s->http.empty() ? "(not serving)" : s->http);
  fmt::print("state:   {}\n", s->state_dir);
  fmt::print("uptime:  {}h {:02}m {:02}s\n", secs / 3600, secs / 60 % 60, secs % 60);
  fmt::print("queues:  {}\n", s->queues);
  fmt::print("clients: {}\n", s->connections);
  return 0;
}

// ---- services and topics ----

// SIGINT/SIGTERM end the commands that run until told to stop; blocked, then polled between reads.
bool stop_requested() {
  static bool blocked = [] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
  }();
  (void)blocked;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec zero{};
  return sigtimedwait(&set, nullptr, &zero) > 0;
}

std::string service_line(const broker::Service& s) {
  std::string meta;
  for (auto& [k, v] : s.metadata) meta += fmt::format(" {}={}", escaped(k), escaped(v));
  return fmt::format("{} {} pid={} uid={}{}", s.name, escaped(s.url), s.pid, s.uid, meta);
}

std::string service_json(const broker::Service& s) {
  std::string meta;
  for (auto& [k, v] : s.metadata) meta += fmt::format("{}{}:{}", meta.empty() ? "" : ",", json_string(k), json_string(v));
  return fmt::format("{{\"name\":{},\"url\":{},\"pid\":{},\"uid\":{},\"gid\":{},\"registered_ms\":{},\"metadata\":{{{}}}}}", json_string(s.name),
                     json_string(s.url), s.pid, s.uid, s.gid,
                     std::chrono::duration_cast<std::chrono::milliseconds>(s.registered.time_since_epoch()).count(), meta);
}

int do_svc_register(Args& a) {
  (void)stop_requested();  // block the signals before anything else
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  std::vector<std::pair<std::string, std::string>> meta;
  for (auto& kv : a.meta) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      fmt::print(stderr, "ipcx: metadata is KEY=VALUE, not {:?}\n", kv);
      return 2;
    }
    meta.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  if (auto r = b->register_service(a.name, a.url, meta); !r) return fail_line(r.error());
  fmt::print("registered {} -> {} (until SIGINT/SIGTERM or this process ends)\n", a.name, a.url);
  std::fflush(stdout);
  // Held while this connection lives; a read notices the daemon going away.
  while (!stop_requested()) {
    auto e = b->next_event(std::chrono::milliseconds(200));
    if (!e && e.error().code != Errc::timeout) {
      fmt::print(stderr, "ipcx: the broker went away: {}\n", e.error().message());
      return 1;
    }
  }
  return 0;
}

int do_svc_ls(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  auto list = b->services(a.pattern);
  if (!list) return fail_line(list.error());
  if (a.json) {
    fmt::print("[");
    for (std::size_t i = 0; i < list->size(); ++i) fmt::print("{}{}", i ? "," : "", service_json((*list)[i]));
    fmt::print("]\n");
  } else {
    for (auto& s : *list) fmt::print("{}\n", service_line(s));
  }
  return 0;
}

int do_svc_watch(Args& a) {
  (void)stop_requested();
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  if (auto w = b->watch(a.pattern); !w) return fail_line(w.error());
  long seen = 0;
  while (!stop_requested() && (a.limit <= 0 || seen < a.limit)) {
    auto e = b->next_event(std::chrono::milliseconds(200));
    if (!e) {
      if (e.error().code == Errc::timeout) continue;
      return fail_line(e.error());
    }
    ++seen;
    if (a.json) fmt::print("{{\"event\":\"{}\",\"reason\":{},\"service\":{}}}\n", e->up ? "up" : "down", json_string(e->reason), service_json(e->service));
    else fmt::print("{} {}{}\n", e->up ? "up" : "down", service_line(e->service), e->up ? "" : " (" + e->reason + ")");
    std::fflush(stdout);
  }
  return 0;
}

int do_topic_pub(Args& a) {
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  auto one = [&](std::string_view text) -> int {
    auto n = b->publish_topic(a.name, as_bytes(text));
    if (!n) return fail_line(n.error());
    fmt::print("{}\n", *n);
    return 0;
  };
  if (a.text_given && a.text != "-") return one(a.text);
  for (std::string line; std::getline(std::cin, line);)
    if (int rc = one(line); rc != 0) return rc;
  return 0;
}

int do_topic_sub(Args& a) {
  (void)stop_requested();
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  if (auto s = b->subscribe(a.pattern); !s) return fail_line(s.error());
  fmt::print(stderr, "subscribed to {}\n", a.pattern);
  long seen = 0;
  while (!stop_requested() && (a.limit <= 0 || seen < a.limit)) {
    auto m = b->next_message(std::chrono::milliseconds(200));
    if (!m) {
      if (m.error().code == Errc::timeout) continue;
      return fail_line(m.error());
    }
    ++seen;
    fmt::print("{} {}\n", m->topic, escaped(m->text()));
    std::fflush(stdout);
  }
  return 0;
}

void broker_option(CLI::App* cmd, Args& a) {
  cmd->add_option("--broker", a.broker, "ipcxd's URL (default: $IPCX_BROKER, else $XDG_RUNTIME_DIR/ipcx/ipcxd.sock)");
}

}  // namespace

std::function<std::optional<int>()> add_broker_commands(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* queue = app.add_subcommand("queue", "Durable queues of the ipcxd broker (create, publish, consume, ack, ls, purge, rm)");
  queue->require_subcommand(1);

  auto* create = queue->add_subcommand("create", "Create a queue (or keep an existing one and its options)");
  a->create_cmd = create;
  create->add_option("name", a->name, "Queue name: 1-128 of A-Z a-z 0-9 . _ -")->required();
  create->add_option("--sync", a->sync, "always: fsync before each confirm; group: fsyncs shared by a window; none: no fsync")
      ->check(CLI::IsMember({"always", "group", "none"}))
      ->capture_default_str();
  create->add_option("--ttl", a->ttl_ms, "ms a message may wait before it is dead-lettered (0: forever)")->check(CLI::Range(0L, 1'000'000'000'000L));
  create->add_option("--max-messages", a->q.max_messages, "Ready + unacknowledged messages held")->check(CLI::Range(std::uint64_t{1}, std::numeric_limits<std::uint64_t>::max()))->capture_default_str();
  create->add_option("--max-bytes", a->q.max_bytes, "Bytes of message bodies held")->check(CLI::Range(std::uint64_t{1}, std::numeric_limits<std::uint64_t>::max()))->capture_default_str();
  create->add_option("--max-attempts", a->q.max_attempts, "Deliveries before a message is dead-lettered (0: unlimited)")->capture_default_str();
  create->add_option("--ack-timeout", a->ack_timeout_ms, "ms before an unacknowledged delivery is redelivered")->check(CLI::Range(1L, 4'000'000'000L))->capture_default_str();
  create->add_option("--dedup-window", a->dedup_ms, "ms during which a repeated --id is a duplicate")->check(CLI::Range(0L, 4'000'000'000L))->capture_default_str();
  create->add_option("--overflow", a->overflow, "When full: reject the publish, or drop (dead-letter) the oldest")
      ->check(CLI::IsMember({"reject", "drop-oldest"}))
      ->capture_default_str();
  broker_option(create, *a);

  auto* publish = queue->add_subcommand("publish", "Publish TEXT (or each line of standard input); prints each confirmed seq");
  publish->add_option("name", a->name, "Queue name")->required();
  publish->add_option("text", a->text, "Message text; '-' or nothing reads standard input")->each([a](const std::string&) { a->text_given = true; });
  publish->add_option("--id", a->id, "Message id: a repeat within the queue's window is confirmed as a duplicate, not stored");
  broker_option(publish, *a);

  auto* consume = queue->add_subcommand("consume", "Print messages, one per line, acknowledging each once printed");
  consume->add_option("name", a->name, "Queue name")->required();
  consume->add_option("--count", a->count, "Messages to take")->check(CLI::Range(1L, std::numeric_limits<long>::max()))->capture_default_str();
  consume->add_option("--timeout", a->timeout_ms, "ms to wait for each message (default: forever)")->check(CLI::Range(0L, 4'000'000'000L));
  consume->add_flag("--no-ack", a->no_ack, "Lease instead: the message returns to the queue unless `ipcx queue ack` comes within --lease");
  consume->add_option("--lease", a->lease_ms, "ms a --no-ack message stays leased")->check(CLI::Range(1L, 4'000'000'000L))->capture_default_str();
  consume->add_flag("--json", a->json, "One JSON object per message (queue, seq, attempt, id, published_ms, body)");
  broker_option(consume, *a);

  auto* ack = queue->add_subcommand("ack", "Acknowledge leased messages (from consume --no-ack) by seq");
  ack->add_option("name", a->name, "Queue name")->required();
  ack->add_option("seq", a->seqs, "Sequence numbers")->required();
  broker_option(ack, *a);

  auto* ls = queue->add_subcommand("ls", "List queues: ready, unacknowledged, bytes, consumers, sync policy");
  ls->add_flag("--json", a->json, "One JSON array with every counter");
  broker_option(ls, *a);

  auto* purge = queue->add_subcommand("purge", "Remove every ready message (unacknowledged ones stay)");
  purge->add_option("name", a->name, "Queue name")->required();
  broker_option(purge, *a);

  auto* rm = queue->add_subcommand("rm", "Delete queues and their files");
  rm->add_option("name", a->names, "Queue names")->required();
  broker_option(rm, *a);

  auto* svc = app.add_subcommand("svc", "The ipcxd service registry (register, ls, watch)");
  svc->require_subcommand(1);
  auto* reg = svc->add_subcommand("register", "Register NAME -> URL and hold it until SIGINT/SIGTERM (watchers see it go when this ends)");
  reg->add_option("name", a->name, "Service name: 1-200 of A-Z a-z 0-9 . _ - : /")->required();
  reg->add_option("url", a->url, "Where clients reach the service")->required();
  reg->add_option("--meta", a->meta, "KEY=VALUE metadata (repeatable)");
  broker_option(reg, *a);
  auto* svc_ls = svc->add_subcommand("ls", "List services: NAME URL pid= uid= and metadata");
  svc_ls->add_option("pattern", a->pattern, "Names to list ('*' matches any run of characters)")->capture_default_str();
  svc_ls->add_flag("--json", a->json, "One JSON array");
  broker_option(svc_ls, *a);
  auto* watch = svc->add_subcommand("watch", "Print 'up' and 'down' events (current services first) until SIGINT/SIGTERM");
  watch->add_option("pattern", a->pattern, "Names to watch ('*' matches any run of characters)")->capture_default_str();
  watch->add_option("--count", a->limit, "Exit after this many events")->check(CLI::Range(1L, std::numeric_limits<long>::max()));
  watch->add_flag("--json", a->json, "One JSON object per event");
  broker_option(watch, *a);

  auto* topic = app.add_subcommand("topic", "Topics through ipcxd: many-to-many publish/subscribe, nothing stored (pub, sub)");
  topic->require_subcommand(1);
  auto* tpub = topic->add_subcommand("pub", "Publish TEXT (or each line of standard input) to TOPIC; prints how many subscribers it reached");
  tpub->add_option("topic", a->name, "Topic: tokens of A-Z a-z 0-9 _ - : separated by '.'")->required();
  tpub->add_option("text", a->text, "Message text; '-' or nothing reads standard input")->each([a](const std::string&) { a->text_given = true; });
  broker_option(tpub, *a);
  auto* tsub = topic->add_subcommand("sub", "Print `TOPIC TEXT` for each message on topics matching PATTERN ('*' one token, '>' the rest)");
  tsub->add_option("pattern", a->pattern, "Topic pattern")->required();
  tsub->add_option("--count", a->limit, "Exit after this many messages")->check(CLI::Range(1L, std::numeric_limits<long>::max()));
  broker_option(tsub, *a);

  auto* broker_cmd = app.add_subcommand("broker", "The ipcxd broker daemon");
  broker_cmd->require_subcommand(1);
  auto* status = broker_cmd->add_subcommand("status", "Socket, HTTP address, uptime and queue count; exit 1 when no daemon answers");
  broker_option(status, *a);

  return [=]() -> std::optional<int> {
    if (*create) return do_create(*a);
    if (*publish) return do_publish(*a);
    if (*consume) return do_consume(*a);
    if (*ack) return do_ack(*a);
    if (*ls) return do_ls(*a);
    if (*purge) return do_purge(*a);
    if (*rm) return do_rm(*a);
    if (*status) return do_status(*a);
    if (*reg) return do_svc_register(*a);
    if (*svc_ls) return do_svc_ls(*a);
    if (*watch) return do_svc_watch(*a);
    if (*tpub) return do_topic_pub(*a);
    if (*tsub) return do_topic_sub(*a);
    return std::nullopt;
  };
}

}  // namespace ipcx::cli
