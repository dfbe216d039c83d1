// `ipcx queue ...` and `ipcx broker status`: durable queues of ipcxd (docs/broker.md).
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ipcx/broker.hpp>

namespace ipcx::cli {
namespace {

// Message bodies are bytes: control bytes and '\' are printed as \xNN, one message per line.
std::string escaped(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f || c == '\\') out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += fmt::format("\\{}", static_cast<char>(c));
    else if (c < 0x20 || c >= 0x7f) out += fmt::format("\\u{:04x}", c);
    else out += static_cast<char>(c);
  }
  return out + "\"";
}

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

int do_create(Args& a) {
  a.q.sync = a.sync == "group" ? broker::Sync::group : a.sync == "none" ? broker::Sync::none : broker::Sync::always;
  a.q.overflow = a.overflow == "drop-oldest" ? broker::Overflow::drop_oldest : broker::Overflow::reject;
  a.q.ttl = std::chrono::milliseconds(a.ttl_ms);
  a.q.ack_timeout = std::chrono::milliseconds(a.ack_timeout_ms);
  a.q.dedup_window = std::chrono::milliseconds(a.dedup_ms);
  auto b = connect(a);
  if (!b) return fail_line(b.error());
  auto r = b->declare(a.name, a.q);
  if (!r) return fail_line(r.error());
  fmt::print("{} {}\n", a.name, *r ? "created" : "exists (its options kept)");
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

void broker_option(CLI::App* cmd, Args& a) {
  cmd->add_option("--broker", a.broker, "ipcxd's URL (default: $IPCX_BROKER, else $XDG_RUNTIME_DIR/ipcx/ipcxd.sock)");
}

}  // namespace

std::function<std::optional<int>()> add_broker_commands(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* queue = app.add_subcommand("queue", "Durable queues of the ipcxd broker (create, publish, consume, ack, ls, purge, rm)");
  queue->require_subcommand(1);

  auto* create = queue->add_subcommand("create", "Create a queue (or keep an existing one and its options)");
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
    return std::nullopt;
  };
}

}  // namespace ipcx::cli
