// `ipcx mq ...`: the calling user's POSIX message queues (create, send, recv, stat, rm, ls).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ipcx/mq.hpp>

#include "cli/commands.hpp"
#include "cli/text.hpp"

namespace ipcx::cli {
namespace {



Timeout ms(long v) { return v < 0 ? forever : std::chrono::milliseconds(v); }

struct MqArgs {
  std::string name;                // every command but rm
  std::vector<std::string> names;  // rm
  long capacity = 10;
  long msgsize = 8192;
  unsigned mode = 0600;
  bool exclusive = false;
  std::string text;
  bool text_given = false;
  unsigned priority = 0;
  long count = 1;
  long timeout_ms = -1;
  bool json = false;
};

int do_create(const MqArgs& a) {
  auto q = mq::Queue::create(a.name, {.capacity = a.capacity, .message_size = a.msgsize, .mode = a.mode,
                                               .exclusive = a.exclusive});
  if (!q) return report("mq create", q.error());
  return 0;
}

int do_send(const MqArgs& a) {
  std::string data = a.text;
  if (!a.text_given || a.text == "-") {
    data.assign(std::istreambuf_iterator<char>(std::cin), {});
    if (data.ends_with('\n')) data.pop_back();  // `echo text |` means the text
  }
  auto q = mq::Queue::open(a.name, {.read = false});
  if (!q) return report("mq send", q.error());
  auto r = q->send(as_bytes(data), a.priority, a.timeout_ms < 0 ? std::chrono::milliseconds(5000) : ms(a.timeout_ms));
  if (!r) return report("mq send", r.error());
  return 0;
}

int do_recv(const MqArgs& a) {
  auto q = mq::Queue::open(a.name, {.write = false});
  if (!q) return report("mq recv", q.error());
  Message m;
  for (long i = 0; i < a.count; ++i) {
    auto r = q->recv(m, ms(a.timeout_ms));
    if (!r) return report("mq recv", r.error());
    std::string line = escaped(m.text()) + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
  }
  return 0;
}

int do_stat(const MqArgs& a) {
  const auto& name = a.name;
  auto q = mq::Queue::open(name, {.write = false});
  if (!q) return report("mq stat", q.error());
  auto at = q->attributes();
  if (!at) return report("mq stat", at.error());
  struct stat st{};
  if (::fstat(q->native_handle(), &st) != 0) return report("mq stat", fail_errno(errno, "fstat").error());
  if (a.json) {
    std::printf("{\"name\":%s,\"kernel_name\":%s,\"capacity\":%ld,\"message_size\":%ld,\"messages\":%ld,"
                "\"mode\":\"%04o\",\"uid\":%u}\n",
                json_string(name).c_str(), json_string(q->kernel_name()).c_str(), at->capacity, at->message_size,
                at->messages, st.st_mode & 07777, st.st_uid);
  } else {
    std::printf("name          %s\nkernel name   %s\ncapacity      %ld\nmessage size  %ld\nmessages      %ld\n"
                "mode          %04o\nuid           %u\n",
                escaped(name).c_str(), escaped(q->kernel_name()).c_str(), at->capacity, at->message_size,
                at->messages, st.st_mode & 07777, st.st_uid);
  }
  return 0;
}

int do_rm(const MqArgs& a) {
  int code = 0;
  for (const auto& n : a.names)
    if (auto r = mq::Queue::remove(n); !r) code = report("mq rm", r.error());
  return code;
}

int do_ls() {
  auto all = mq::list();
  if (!all) return report("mq ls", all.error());
  for (const auto& n : *all) {
    auto q = mq::Queue::open(n, {.write = false});
    auto at = q ? q->attributes() : Result<mq::Attributes>(std::unexpected(q.error()));
    if (at)
      std::printf("%s\t%ld/%ld messages\t%ld bytes max\n", escaped(n).c_str(), at->messages, at->capacity,
                  at->message_size);
    else
      std::printf("%s\t(%s)\n", escaped(n).c_str(), at.error().message().c_str());
  }
  return 0;
}

}  // namespace

std::function<std::optional<int>()> add_mq_commands(CLI::App& app) {
  auto a = std::make_shared<MqArgs>();
  auto* mq = app.add_subcommand("mq", "POSIX message queues of the calling user (create, send, recv, stat, rm, ls)");
  mq->require_subcommand(1);
  auto* create = mq->add_subcommand("create", "Create a queue (or keep an existing one: see --exclusive)");
  create->add_option("name", a->name, "Queue name (one word; the kernel name is /ipcx-<uid>-NAME)")->required();
  create->add_option("--capacity", a->capacity, "Messages held (limit: /proc/sys/fs/mqueue/msg_max)")
      ->check(CLI::Range(1L, 65536L))
      ->capture_default_str();
  create->add_option("--msgsize", a->msgsize, "Largest message in bytes (limit: /proc/sys/fs/mqueue/msgsize_max)")
      ->check(CLI::Range(1L, 16L << 20))
      ->capture_default_str();
  create->add_option_function<std::string>(
      "--mode",
      [a](const std::string& text) {
        std::string t = text.starts_with("0o") ? text.substr(2) : text;
        if (t.empty() || t.size() > 4 || t.find_first_not_of("01234567") != std::string::npos)
          throw CLI::ValidationError("--mode", "a mode is octal, like 0600 or 0660, not '" + text + "'");
        a->mode = static_cast<unsigned>(std::stoul(t, nullptr, 8));
        if (a->mode > 0777) throw CLI::ValidationError("--mode", "mode " + text + " is above 0777");
      },
      "Permissions, octal (default 0600: only you), whatever the umask");
  create->add_flag("--exclusive", a->exclusive, "Fail if the queue exists");

  auto* send = mq->add_subcommand("send", "Send TEXT (or standard input, whole) as one message");
  send->add_option("name", a->name, "Queue name")->required();
  send->add_option("text", a->text, "Message text; '-' or nothing reads standard input")
      ->each([a](const std::string&) { a->text_given = true; });
  send->add_option("--priority", a->priority, "0 to 32767; higher is received first")
      ->check(CLI::Range(0u, 32767u))
      ->capture_default_str();
  send->add_option("--timeout", a->timeout_ms, "ms to wait for room in a full queue (default 5000; 0: do not wait)")
      ->check(CLI::Range(0L, 1'000'000'000'000L));

  auto* recv = mq->add_subcommand("recv", "Receive messages, one per line (control bytes and '\\' as \\xNN)");
  recv->add_option("name", a->name, "Queue name")->required();
  recv->add_option("--count", a->count, "Messages to receive")
      ->check(CLI::Range(1L, std::numeric_limits<long>::max()))
      ->capture_default_str();
  recv->add_option("--timeout", a->timeout_ms, "ms to wait for each message (default: forever; 0: do not wait)")
      ->check(CLI::Range(0L, 1'000'000'000'000L));

  auto* stat = mq->add_subcommand("stat", "Capacity, message size, messages queued, mode and owner");
  stat->add_option("name", a->name, "Queue name")->required();
  stat->add_flag("--json", a->json, "One JSON object");

  auto* rm = mq->add_subcommand("rm", "Remove queues (open descriptors keep working until closed)");
  rm->add_option("name", a->names, "Queue names")->required();

  auto* ls = mq->add_subcommand("ls", "List your queues (needs /dev/mqueue mounted)");

  return [=]() -> std::optional<int> {
    if (*create) return do_create(*a);
    if (*send) return do_send(*a);
    if (*recv) return do_recv(*a);
    if (*stat) return do_stat(*a);
    if (*rm) return do_rm(*a);
    if (*ls) return do_ls();
    return std::nullopt;
  };
}

}  // namespace ipcx::cli
