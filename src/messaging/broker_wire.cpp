#include "messaging/broker_wire.hpp"

#include <fmt/format.h>

namespace ipcx::broker::wire {

Result<Header> decode_header(std::span<const std::byte> in) {
  if (in.size() < kHeader) return fail(Errc::protocol, "broker decode", fmt::format("a message of {} bytes, shorter than the header", in.size()));
  Header h;
  const auto version = static_cast<std::uint8_t>(in[0]);
  if (version != kVersion) return fail(Errc::protocol, "broker decode", fmt::format("protocol version {}, expected {}", version, kVersion));
  h.op = static_cast<Op>(in[1]);
  std::memcpy(&h.flags, in.data() + 2, 2);
  std::memcpy(&h.corr, in.data() + 4, 8);
  switch (h.op) {
    case Op::declare: case Op::publish: case Op::consume: case Op::cancel: case Op::ack: case Op::nack:
    case Op::get: case Op::purge: case Op::remove: case Op::list: case Op::status:
    case Op::subscribe: case Op::unsubscribe: case Op::topic_publish: case Op::register_: case Op::unregister:
    case Op::lookup: case Op::services: case Op::watch: case Op::unwatch:
    case Op::ok: case Op::error: case Op::confirm: case Op::delivery:
    case Op::topic_message: case Op::service_event: case Op::service_info: case Op::service_list: case Op::ended:
      break;
    default:
      return fail(Errc::protocol, "broker decode", fmt::format("unknown op {}", static_cast<unsigned>(in[1])));
  }
  if (h.flags != 0) return fail(Errc::protocol, "broker decode", fmt::format("unknown flags {:#x}", h.flags));
  return h;
}

bool valid_queue_name(std::string_view name) noexcept {
  // A queue is a directory of the state directory: no separators, no dot files, nothing a
  // shell or a URL would need to quote.
  if (name.empty() || name.size() > kMaxQueueName + 4 || name.front() == '.' || name.front() == '-') return false;
  // Up to kMaxQueueName for a queue one creates; 4 more for its dead-letter queue (".dlq").
  if (name.size() > kMaxQueueName && !name.ends_with(".dlq")) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

namespace {
bool token_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == ':';
}
// The next '.'-separated token of `s` from `at` (at moves past it and its dot).
std::string_view next_token(std::string_view s, std::size_t& at) noexcept {
  const auto dot = s.find('.', at);
  const auto end = dot == std::string_view::npos ? s.size() : dot;
  auto t = s.substr(at, end - at);
  at = dot == std::string_view::npos ? s.size() + 1 : dot + 1;
  return t;
}
}  // namespace

bool valid_topic(std::string_view topic, bool pattern) noexcept {
  if (topic.empty() || topic.size() > kMaxName) return false;
  std::size_t at = 0;
  while (at <= topic.size()) {
    auto t = next_token(topic, at);
    if (t.empty()) return false;
    if (pattern && (t == "*" || t == ">")) {
      if (t == ">" && at <= topic.size()) return false;  // '>' only as the last token
      continue;
    }
    for (char c : t)
      if (!token_char(c)) return false;
  }
  return true;
}

bool topic_matches(std::string_view pattern, std::string_view topic) noexcept {
  std::size_t p = 0, t = 0;
  while (p <= pattern.size()) {
    auto pt = next_token(pattern, p);
    if (t > topic.size()) return false;  // the topic ran out of tokens first
    if (pt == ">") return true;          // one or more: there is at least this one
    auto tt = next_token(topic, t);
    if (pt != "*" && pt != tt) return false;
  }
  return t > topic.size();
}

bool valid_service_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxName) return false;
  for (char c : name)
    if (!token_char(c) && c != '.' && c != '/') return false;
  return true;
}

bool service_matches(std::string_view pattern, std::string_view name) noexcept {
  // '*' globbing without backtracking blow-up: remember only the last star.
  std::size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p, ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Result<void> validate(const QueueConfig& c) {
  if (static_cast<std::uint8_t>(c.sync) > static_cast<std::uint8_t>(SyncPolicy::none))
    return fail(Errc::invalid_argument, "queue options", fmt::format("sync policy {} is not always (0), group (1) or none (2)", static_cast<unsigned>(c.sync)));
  if (static_cast<std::uint8_t>(c.overflow) > static_cast<std::uint8_t>(Overflow::drop_oldest))
    return fail(Errc::invalid_argument, "queue options", fmt::format("overflow policy {} is not reject (0) or drop-oldest (1)", static_cast<unsigned>(c.overflow)));
  if (c.max_messages == 0) return fail(Errc::invalid_argument, "queue options", "max_messages must be at least 1");
  if (c.max_bytes == 0) return fail(Errc::invalid_argument, "queue options", "max_bytes must be at least 1");
  if (c.ack_timeout_ms == 0) return fail(Errc::invalid_argument, "queue options", "ack_timeout must be at least 1 ms");
  return {};
}

}  // namespace ipcx::broker::wire
