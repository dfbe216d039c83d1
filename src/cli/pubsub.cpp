// ipcx pub / sub / stat: publish and subscribe from the shell, and read any pattern endpoint's
// counters.
#include <chrono>
#include <cstring>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ipcx/ipcx.hpp>

#include "cli/commands.hpp"

namespace ipcx::cli {
namespace {

using Ms = std::chrono::milliseconds;

struct PubArgs {
  std::string url, topic, text;
  bool text_given = false;
  std::size_t wait_subscribers = 0;
  long timeout_ms = 10000;
};

struct SubArgs {
  std::string url, prefix;
  long count = 0;
  long timeout_ms = 5000;
};

struct StatArgs {
  std::string url;
  bool json = false;
  long timeout_ms = 5000;
};

int cmd_pub(const PubArgs& a) {
  PublisherOptions o;
  // From the shell, nothing a subscriber asked for is dropped: publish waits (up to --timeout)
  // for a slow subscriber instead.
  o.queue.overflow = Overflow::block;
  auto pub = Publisher::bind(a.url, o);
  if (!pub) return report("pub", pub.error());
  const Ms timeout(a.timeout_ms);
  if (a.wait_subscribers > 0)
    if (auto r = pub->wait_subscribers(a.wait_subscribers, timeout); !r) return report("pub", r.error());
  auto one = [&](std::string_view text) -> int {
    if (auto r = pub->publish(a.topic, as_bytes(text), timeout); !r) return report("pub", r.error());
    return 0;
  };
  if (a.text_given && a.text != "-") {
    if (int rc = one(a.text)) return rc;
  } else {
    std::string line;
    while (std::getline(std::cin, line))
      if (int rc = one(line)) return rc;
  }
  if (auto r = pub->flush(timeout); !r) return report("pub", r.error());
  return 0;
}

int cmd_sub(const SubArgs& a) {
  const auto until = std::chrono::steady_clock::now() + Ms(a.timeout_ms);
  Result<Subscriber> sub = fail(Errc::connection_refused, "sub");
  // The publisher may not be bound yet: try again until --timeout.
  for (;;) {
    sub = Subscriber::connect(a.url, {a.prefix}, {}, Ms(a.timeout_ms));
    if (sub || (sub.error().code != Errc::connection_refused && sub.error().code != Errc::not_found) ||
        std::chrono::steady_clock::now() >= until)
      break;
    std::this_thread::sleep_for(Ms(20));
  }
  if (!sub) return report("sub", sub.error());
  for (long got = 0; a.count == 0 || got < a.count; ++got) {
    auto p = sub->recv();
    if (!p) {
      if (p.error().code == Errc::closed && a.count == 0) return 0;  // the publisher ended
      return report("sub", p.error());
    }
    if (p->gap > 0)
      std::fprintf(stderr, "ipcx sub: %llu publication(s) dropped by the publisher before this one\n",
                   static_cast<unsigned long long>(p->gap));
    if (!p->topic.empty()) std::fwrite(p->topic.data(), 1, p->topic.size(), stdout);
    std::fputc(' ', stdout);
    if (p->payload.size() > 0) std::fwrite(p->payload.data.data(), 1, p->payload.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  return 0;
}

// `"key":value` pairs of the counters' JSON, one per line ("dropped.oldest 3").
void print_counters(const std::string& json) {
  std::string prefix;
  for (std::size_t i = 0; i < json.size();) {
    if (json[i] != '"') {
      if (json[i] == '}' && !prefix.empty()) prefix.clear();
      ++i;
      continue;
    }
    const auto end = json.find('"', i + 1);
    if (end == std::string::npos) break;
    const auto key = json.substr(i + 1, end - i - 1);
    i = end + 1;
    if (i < json.size() && json[i] == ':') ++i;
    if (i < json.size() && json[i] == '{') {
      prefix = key + ".";
      ++i;
      continue;
    }
    const auto stop = json.find_first_of(",}", i);
    std::printf("%s%s %s\n", prefix.c_str(), key.c_str(), json.substr(i, stop - i).c_str());
    i = stop;
  }
}

int cmd_stat(const StatArgs& a) {
  auto r = query_stats(a.url, Ms(a.timeout_ms));
  if (!r) return report("stat", r.error());
  if (a.json) std::printf("%s\n", r->c_str());
  else print_counters(*r);
  return 0;
}

// ---- shm://TOPIC: zero-copy publish/subscribe (ipcx/zerocopy.hpp) -----------------------------

bool is_shm(const std::string& url) { return url.rfind("shm://", 0) == 0; }

int cmd_pub_shm(const PubArgs& a) {
  const std::string topic = a.url.substr(6);
  shm::ZeroCopyPublisherOptions o;
  o.max_payload = 1 << 20;
  auto pub = shm::ZeroCopyPublisher::create(topic, o);
  if (!pub) return report("pub", pub.error());
  const auto until = std::chrono::steady_clock::now() + Ms(a.timeout_ms);
  while (pub->subscribers() < a.wait_subscribers) {
    if (std::chrono::steady_clock::now() >= until)
      return report("pub", fail(Errc::timeout, "pub", fmt::format("{} subscriber(s) after {} ms", pub->subscribers(), a.timeout_ms)).error());
    std::this_thread::sleep_for(Ms(5));
  }
  auto one = [&](std::string_view text) -> int {
    for (;;) {
      auto l = pub->loan(text.size());
      if (l) {
        if (!text.empty()) std::memcpy(l->data().data(), text.data(), text.size());
        if (auto r = pub->publish(std::move(*l)); !r) return report("pub", r.error());
        return 0;
      }
      // Every chunk held by subscribers: wait for them to let go, up to --timeout.
      if (l.error().code != Errc::resource_exhausted || std::chrono::steady_clock::now() >= until)
        return report("pub", l.error());
      std::this_thread::sleep_for(Ms(1));
    }
  };
  if (a.text_given && a.text != "-") return one(a.text);
  std::string line;
  while (std::getline(std::cin, line))
    if (int rc = one(line)) return rc;
  return 0;
}

int cmd_sub_shm(const SubArgs& a) {
  const std::string topic = a.url.substr(6);
  auto sub = shm::ZeroCopySubscriber::open(topic, {.queue = 1024, .max_held = 1});
  if (!sub) return report("sub", sub.error());
  const auto until = std::chrono::steady_clock::now() + Ms(a.timeout_ms);
  bool seen_publisher = false;
  std::uint64_t dropped = 0;
  for (long got = 0; a.count == 0 || got < a.count;) {
    auto s = sub->take(Ms(20));
    if (!s) {
      if (s.error().code != Errc::timeout) return report("sub", s.error());
      const bool live = sub->publishers() > 0;
      seen_publisher = seen_publisher || live;
      if (seen_publisher && !live && !(s = sub->take())) return 0;  // every publisher gone, all read
      if (!seen_publisher && std::chrono::steady_clock::now() >= until)
        return report("sub", fail(Errc::timeout, "sub", fmt::format("no publisher on {} within {} ms", a.url, a.timeout_ms)).error());
      if (!s) continue;
    }
    seen_publisher = true;
    if (sub->dropped() != dropped) {
      std::fprintf(stderr, "ipcx sub: %llu sample(s) dropped before this one (this subscriber fell behind)\n",
                   static_cast<unsigned long long>(sub->dropped() - dropped));
      dropped = sub->dropped();
    }
    std::fwrite(s->data().data(), 1, s->data().size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    ++got;
  }
  return 0;
}

}  // namespace

std::function<std::optional<int>()> add_pattern_commands(CLI::App& app) {
  const CLI::Range timeout_range(1L, 1'000'000'000'000L);
  auto pa = std::make_shared<PubArgs>();
  auto* pub = app.add_subcommand("pub", "Bind a publisher at URL and publish TEXT (or each line of standard input) on TOPIC; "
                                         "shm://TOPIC: zero-copy, `ipcx pub shm://TOPIC [TEXT|-]`, samples up to 1 MiB");
  pub->add_option("url", pa->url, "Address to bind (unix:, unix+seq:, tcp:, mq:, sysv:), or shm://TOPIC")->required();
  pub->add_option("topic", pa->topic, "Topic (at most 255 bytes; none with shm://)");
  pub->add_option("text", pa->text, "Message text; '-' or nothing reads standard input, one publication per line");
  pub->add_option("--wait-subscribers", pa->wait_subscribers, "Wait for N subscribers before publishing")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));
  pub->add_option("--timeout", pa->timeout_ms,
                  "ms to wait for subscribers, for room in a slow subscriber's queue, and for them to take everything")
      ->check(timeout_range)
      ->capture_default_str();

  auto sa = std::make_shared<SubArgs>();
  auto* sub = app.add_subcommand("sub", "Subscribe to URL and print `TOPIC PAYLOAD` per publication whose topic starts with PREFIX; "
                                         "shm://TOPIC: zero-copy, prints `PAYLOAD` per sample");
  sub->add_option("url", sa->url, "Address of a publisher, or shm://TOPIC")->required();
  sub->add_option("prefix", sa->prefix, "Topic prefix ('' matches every topic; at most 255 bytes; none with shm://)");
  sub->add_option("--count", sa->count, "Exit after this many publications (default: until the publisher ends)")
      ->check(CLI::Range(1L, std::numeric_limits<long>::max()));
  sub->add_option("--timeout", sa->timeout_ms, "ms to keep trying to connect (shm://: to wait for a first publisher)")
      ->check(timeout_range)
      ->capture_default_str();

  auto ta = std::make_shared<StatArgs>();
  auto* stat = app.add_subcommand("stat", "Print the counters of the pattern endpoint bound at URL");
  stat->add_option("url", ta->url, "Address of a publisher, pusher or other pattern endpoint")->required();
  stat->add_flag("--json", ta->json, "One JSON object instead of `name value` lines");
  stat->add_option("--timeout", ta->timeout_ms, "ms to wait for the answer")->check(timeout_range)->capture_default_str();

  return [=]() -> std::optional<int> {
    if (*pub) {
      auto a = *pa;
      a.text_given = pub->count("text") > 0;
      if (is_shm(a.url)) {
        // The topic is the URL's: the first word after it is the text.
        if (a.text_given) {
          std::fprintf(stderr, "ipcx pub: shm://TOPIC takes one TEXT (the topic is in the URL) (see ipcx --help)\n");
          return 2;
        }
        a.text_given = pub->count("topic") > 0;
        a.text = a.topic;
        return cmd_pub_shm(a);
      }
      if (a.topic.empty() && pub->count("topic") == 0) {
        std::fprintf(stderr, "ipcx pub: topic is required (see ipcx --help)\n");
        return 2;
      }
      return cmd_pub(a);
    }
    if (*sub) {
      if (is_shm(sa->url)) {
        if (sub->count("prefix") > 0) {
          std::fprintf(stderr, "ipcx sub: shm://TOPIC takes no prefix (the topic is in the URL) (see ipcx --help)\n");
          return 2;
        }
        return cmd_sub_shm(*sa);
      }
      if (sub->count("prefix") == 0) {
        std::fprintf(stderr, "ipcx sub: prefix is required (see ipcx --help)\n");
        return 2;
      }
      return cmd_sub(*sa);
    }
    if (*stat) return cmd_stat(*ta);
    return std::nullopt;
  };
}

}  // namespace ipcx::cli
