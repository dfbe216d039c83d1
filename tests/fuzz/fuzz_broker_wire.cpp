// libFuzzer target: the broker protocol's decoder (src/messaging/broker_wire.hpp), every
// message type ipcxd or its clients accept.
//
// An accepted message must round-trip: encoding what was decoded gives back the very same
// bytes. A refused one carries a protocol error with a reason. Nothing may read past the
// message or allocate more than it holds.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "messaging/broker_wire.hpp"

namespace {

[[noreturn]] void check_failed(const char* what, int line) {
  std::fprintf(stderr, "fuzz_broker_wire.cpp:%d: check failed: %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond) ((cond) ? void(0) : check_failed(#cond, __LINE__))

namespace wire = ipcx::broker::wire;

template <class M>
void round_trip(std::span<const std::byte> msg, const wire::Header& h) {
  M m;
  auto r = wire::decode(msg, m);
  if (!r) {
    FUZZ_CHECK(r.error().code == ipcx::Errc::protocol);
    FUZZ_CHECK(!r.error().detail.empty());
    return;
  }
  (void)wire::validate(wire::QueueConfig{});  // the semantic checks must not crash either
  std::vector<std::byte> out;
  wire::encode(out, m, h.corr, h.flags);
  FUZZ_CHECK(out.size() == msg.size());
  FUZZ_CHECK(std::memcmp(out.data(), msg.data(), out.size()) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A copy of its own, so ASan sees any read past the message's end.
  std::vector<std::byte> msg(size);
  if (size) std::memcpy(msg.data(), data, size);
  auto h = wire::decode_header(msg);
  if (!h) {
    FUZZ_CHECK(h.error().code == ipcx::Errc::protocol);
    return 0;
  }
  switch (h->op) {
    case wire::Op::declare: {
      wire::Declare m;
      if (wire::decode(msg, m)) {
        (void)wire::valid_queue_name(m.queue);
        (void)wire::validate(m.config);
      }
      return round_trip<wire::Declare>(msg, *h), 0;
    }
    case wire::Op::publish: return round_trip<wire::Publish>(msg, *h), 0;
    case wire::Op::consume: return round_trip<wire::Consume>(msg, *h), 0;
    case wire::Op::cancel: return round_trip<wire::Cancel>(msg, *h), 0;
    case wire::Op::ack: return round_trip<wire::Ack>(msg, *h), 0;
    case wire::Op::nack: return round_trip<wire::Nack>(msg, *h), 0;
    case wire::Op::get: return round_trip<wire::Get>(msg, *h), 0;
    case wire::Op::purge: return round_trip<wire::Purge>(msg, *h), 0;
    case wire::Op::remove: return round_trip<wire::Remove>(msg, *h), 0;
    case wire::Op::list: return round_trip<wire::List>(msg, *h), 0;
    case wire::Op::status: return round_trip<wire::StatusRequest>(msg, *h), 0;
    case wire::Op::subscribe: {
      wire::Subscribe m;
      if (wire::decode(msg, m) && wire::valid_topic(m.pattern, true)) (void)wire::topic_matches(m.pattern, "a.b.c");
      return round_trip<wire::Subscribe>(msg, *h), 0;
    }
    case wire::Op::unsubscribe: return round_trip<wire::Unsubscribe>(msg, *h), 0;
    case wire::Op::topic_publish: {
      wire::TopicPublish m;
      if (wire::decode(msg, m) && wire::valid_topic(m.topic, false)) (void)wire::topic_matches("a.*.>", m.topic);
      return round_trip<wire::TopicPublish>(msg, *h), 0;
    }
    case wire::Op::register_: return round_trip<wire::Register>(msg, *h), 0;
    case wire::Op::unregister: return round_trip<wire::Unregister>(msg, *h), 0;
    case wire::Op::lookup: return round_trip<wire::Lookup>(msg, *h), 0;
    case wire::Op::services: {
      wire::ListServices m;
      if (wire::decode(msg, m)) (void)wire::service_matches(m.pattern, "svc.name/with:chars");
      return round_trip<wire::ListServices>(msg, *h), 0;
    }
    case wire::Op::watch: return round_trip<wire::Watch>(msg, *h), 0;
    case wire::Op::unwatch: return round_trip<wire::Unwatch>(msg, *h), 0;
    // Replies (what a client decodes).
    case wire::Op::ok: {
      round_trip<wire::Ok>(msg, *h);
      round_trip<wire::Queues>(msg, *h);
      return round_trip<wire::Status>(msg, *h), 0;
    }
    case wire::Op::error: return round_trip<wire::Failure>(msg, *h), 0;
    case wire::Op::confirm: return round_trip<wire::Confirm>(msg, *h), 0;
    case wire::Op::delivery: return round_trip<wire::Delivery>(msg, *h), 0;
    case wire::Op::topic_message: return round_trip<wire::TopicMessage>(msg, *h), 0;
    case wire::Op::service_event: return round_trip<wire::ServiceEvent>(msg, *h), 0;
    case wire::Op::service_info: return round_trip<wire::ServiceInfo>(msg, *h), 0;
    case wire::Op::service_list: return round_trip<wire::ServiceList>(msg, *h), 0;
    case wire::Op::ended: return round_trip<wire::Ended>(msg, *h), 0;
  }
  FUZZ_CHECK(!"decode_header accepted an op it does not know");
  return 0;
}
