#include <ipcx/semantics.hpp>

#include <fmt/format.h>

namespace ipcx {

std::string_view to_string(Overflow o) noexcept {
  switch (o) {
    case Overflow::block: return "block";
    case Overflow::fail: return "fail";
    case Overflow::drop_oldest: return "drop-oldest";
    case Overflow::drop_newest: return "drop-newest";
  }
  return "?";
}

std::string_view to_string(Delivery d) noexcept { return d == Delivery::async ? "async" : "confirmed"; }

std::optional<Overflow> parse_overflow(std::string_view s) noexcept {
  if (s == "block") return Overflow::block;
  if (s == "fail") return Overflow::fail;
  if (s == "drop-oldest" || s == "drop_oldest") return Overflow::drop_oldest;
  if (s == "drop-newest" || s == "drop_newest") return Overflow::drop_newest;
  return std::nullopt;
}

std::optional<Delivery> parse_delivery(std::string_view s) noexcept {
  if (s == "async") return Delivery::async;
  if (s == "confirmed") return Delivery::confirmed;
  return std::nullopt;
}

std::string to_json(const Counters& c) {
  return fmt::format(
      R"({{"sent":{},"delivered":{},"received":{},"queued":{},"queued_bytes":{},"dropped":{{"total":{},"oldest":{},"newest":{},"refused":{},"peer_died":{},"no_route":{},"expired":{}}}}})",
      c.sent, c.delivered, c.received, c.queued, c.queued_bytes, c.dropped.total(), c.dropped.oldest,
      c.dropped.newest, c.dropped.refused, c.dropped.peer_died, c.dropped.no_route, c.dropped.expired);
}

}  // namespace ipcx
