// ipcxd's topics (many-to-many publish/subscribe, nothing stored) and service registry (names
// leased to the registering connection; watchers told when they come and go).
//
// A provider's death is its connection's end: the kernel closes a killed process's socket, the
// loop sees it in the same round and the watchers' events are queued at once. A stopped
// (SIGSTOP) or busy provider keeps its connection, so it is never reported dead.
#include <fmt/format.h>

#include "broker/broker_impl.hpp"

namespace ipcx::broker {

using Impl = Broker::Impl;

void Impl::notify_watchers(const wire::ServiceInfo& info, bool up, std::string_view reason) {
  for (auto& [tag, w] : watches) {
    if (!wire::service_matches(w.pattern, info.name)) continue;
    auto* session = server->find(w.session);
    if (!session || !session->open()) continue;
    if (!policy.allows(session->peer(), Kind::service, info.name, Right::lookup)) continue;
    wire::ServiceEvent e{.tag = tag, .up = static_cast<std::uint8_t>(up ? 1 : 0), .reason = std::string(reason), .service = info};
    wire::encode(out, e, 0);
    (void)session->send(out);  // a watcher that cannot take it is being dropped (send_timeout) or paused
  }
}

void Impl::drop_registrations(Session::Id session) {
  auto it = conns.find(session);
  if (it == conns.end()) return;
  for (auto& name : it->second.services) {
    auto reg = services.find(name);
    if (reg == services.end() || reg->second.session != session) continue;
    auto info = std::move(reg->second.info);
    services.erase(reg);
    notify_watchers(info, false, "provider disconnected");
  }
}

void Impl::on_registry_request(Session& s, const wire::Header& h, std::span<const std::byte> in) {
  switch (h.op) {
    case wire::Op::subscribe: {
      wire::Subscribe m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!wire::valid_topic(m.pattern, true))
        return reply_error(s, h.corr, Errc::invalid_argument, fmt::format("{:?} is not a topic pattern (tokens of A-Z a-z 0-9 _ - : separated by '.', '*' for a token, '>' last for the rest)", m.pattern));
      if (!permit(s, h.corr, Kind::topic, m.pattern, Right::subscribe)) return;
      const auto tag = next_tag++;
      topic_subs[tag] = {.session = s.id(), .pattern = m.pattern};
      conns[s.id()].topics.insert(tag);
      return reply(s, h.corr, wire::Ok{.value = tag});
    }
    case wire::Op::unsubscribe: {
      wire::Unsubscribe m;
      if (!decode_or_reply(s, h, in, m)) return;
      auto& mine = conns[s.id()].topics;
      if (!mine.erase(m.tag)) return reply_error(s, h.corr, Errc::not_found, fmt::format("no topic subscription {} on this connection", m.tag));
      topic_subs.erase(m.tag);
      return reply(s, h.corr, wire::Ok{});
    }
    case wire::Op::topic_publish: {
      wire::TopicPublish m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!wire::valid_topic(m.topic, false))
        return reply_error(s, h.corr, Errc::invalid_argument, fmt::format("{:?} is not a topic (tokens of A-Z a-z 0-9 _ - : separated by '.')", m.topic));
      if (!permit(s, h.corr, Kind::topic, m.topic, Right::publish)) return;
      ++topic_messages;
      std::uint64_t reached = 0;
      const std::size_t limit = server->options().max_queued;
      wire::TopicMessage t{.tag = 0, .topic = m.topic, .published_ms = unix_ms(), .body = m.body};
      std::vector<std::byte> frame;
      for (auto& [tag, sub] : topic_subs) {
        if (!wire::topic_matches(sub.pattern, m.topic)) continue;
        auto* session = server->find(sub.session);
        if (!session || !session->open()) continue;
        // A subscriber that does not keep up misses messages; the publisher never waits for it.
        if (session->queued() >= limit) {
          ++topic_missed;
          continue;
        }
        t.tag = tag;
        wire::encode(frame, t, 0);
        if (session->send(frame)) ++reached;
        else ++topic_missed;
      }
      return reply(s, h.corr, wire::Ok{.value = reached});
    }
    case wire::Op::register_: {
      wire::Register m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!wire::valid_service_name(m.name))
        return reply_error(s, h.corr, Errc::invalid_argument, fmt::format("{:?} is not a service name (1-200 of A-Z a-z 0-9 . _ - : /)", m.name));
      if (!permit(s, h.corr, Kind::service, m.name, Right::register_)) return;
      if (m.metadata.size() > 64) return reply_error(s, h.corr, Errc::invalid_argument, "more than 64 metadata entries");
      for (std::size_t i = 0; i < m.metadata.size(); ++i) {
        const auto& key = m.metadata[i].key;
        if (!wire::valid_service_name(key))
          return reply_error(s, h.corr, Errc::invalid_argument, fmt::format("{:?} is not a metadata key (1-200 of A-Z a-z 0-9 . _ - : /)", key));
        for (std::size_t j = 0; j < i; ++j)
          if (m.metadata[j].key == key) return reply_error(s, h.corr, Errc::invalid_argument, fmt::format("metadata key {} given twice", key));
      }
      if (auto it = services.find(m.name); it != services.end() && it->second.session != s.id())
        return reply_error(s, h.corr, Errc::already_exists,
                           fmt::format("service {} is registered by pid {} (uid {})", m.name, it->second.info.pid, it->second.info.uid));
      const auto peer = s.peer();
      wire::ServiceInfo info{.name = m.name, .url = m.url, .metadata = std::move(m.metadata), .pid = static_cast<std::uint32_t>(peer.pid),
                             .uid = static_cast<std::uint32_t>(peer.uid), .gid = static_cast<std::uint32_t>(peer.gid), .registered_ms = unix_ms()};
      services[m.name] = {.session = s.id(), .info = info};
      conns[s.id()].services.insert(m.name);
      reply(s, h.corr, wire::Ok{});
      return notify_watchers(info, true, "");
    }
    case wire::Op::unregister: {
      wire::Unregister m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!permit(s, h.corr, Kind::service, m.name, Right::register_)) return;
      auto it = services.find(m.name);
      if (it == services.end() || it->second.session != s.id())
        return reply_error(s, h.corr, Errc::not_found, fmt::format("service {} is not registered by this connection", m.name));
      auto info = std::move(it->second.info);
      services.erase(it);
      conns[s.id()].services.erase(m.name);
      reply(s, h.corr, wire::Ok{});
      return notify_watchers(info, false, "unregistered");
    }
    case wire::Op::lookup: {
      wire::Lookup m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!permit(s, h.corr, Kind::service, m.name, Right::lookup)) return;
      auto it = services.find(m.name);
      if (it == services.end()) return reply_error(s, h.corr, Errc::not_found, fmt::format("no service named {:?}", m.name));
      return reply(s, h.corr, it->second.info);
    }
    case wire::Op::services: {
      wire::ListServices m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!policy.knows(s.peer())) return (void)permit(s, h.corr, Kind::service, m.pattern, Right::lookup);
      wire::ServiceList r;
      const auto peer = s.peer();
      for (auto& [name, reg] : services)
        if (wire::service_matches(m.pattern, name) && policy.allows(peer, Kind::service, name, Right::lookup)) r.services.push_back(reg.info);
      return reply(s, h.corr, std::move(r));
    }
    case wire::Op::watch: {
      wire::Watch m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!policy.knows(s.peer())) return (void)permit(s, h.corr, Kind::service, m.pattern, Right::lookup);
      const auto tag = next_tag++;
      watches[tag] = {.session = s.id(), .pattern = m.pattern};
      conns[s.id()].watches.insert(tag);
      reply(s, h.corr, wire::Ok{.value = tag});
      // The current ones first, so a watcher never misses a service that came before it.
      const auto peer = s.peer();
      for (auto& [name, reg] : services) {
        if (!wire::service_matches(m.pattern, name) || !policy.allows(peer, Kind::service, name, Right::lookup)) continue;
        wire::ServiceEvent e{.tag = tag, .up = 1, .reason = "", .service = reg.info};
        wire::encode(out, e, 0);
        (void)s.send(out);
      }
      return;
    }
    case wire::Op::unwatch: {
      wire::Unwatch m;
      if (!decode_or_reply(s, h, in, m)) return;
      if (!conns[s.id()].watches.erase(m.tag)) return reply_error(s, h.corr, Errc::not_found, fmt::format("no watch {} on this connection", m.tag));
      watches.erase(m.tag);
      return reply(s, h.corr, wire::Ok{});
    }
    default:
      return reply_error(s, h.corr, Errc::protocol, fmt::format("op {} is not a registry request", static_cast<unsigned>(h.op)));
  }
}

}  // namespace ipcx::broker
