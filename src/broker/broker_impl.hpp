// The daemon's state and request handlers, shared by broker.cpp (lifecycle, routing,
// durability), queues.cpp (queues and their delivery) and registry.cpp (topics, services).
// Everything here runs on the engine's loop thread, except sync_loop() and snapshot_from_any_thread().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <ipcx/fd.hpp>
#include <ipcx/server.hpp>

#include "broker/broker.hpp"
#include "broker/http.hpp"
#include "broker/policy.hpp"
#include "broker/queue.hpp"
#include "messaging/broker_wire.hpp"

namespace ipcx::broker {

std::uint64_t unix_ms();

struct Consumer {
  std::uint64_t tag = 0;
  Session::Id session = 0;
  std::uint32_t prefetch = 0;
  std::uint32_t unacked = 0;
};

struct PendingConfirm {
  Session::Id session = 0;
  std::uint64_t corr = 0;
  std::uint64_t seq = 0;
};

// A get() waiting for a message.
struct Waiter {
  Session::Id session = 0;
  std::uint64_t corr = 0;
  std::uint32_t lease_ms = 0;
  Clock::time_point deadline;
};

// A queue and who is using it.
struct Slot {
  std::shared_ptr<Queue> queue;
  std::vector<Consumer> consumers;
  std::size_t next = 0;  // round-robin position
  std::deque<PendingConfirm> confirms;
  std::deque<Waiter> waiters;
  bool sync_requested = false;
};

// A topic subscription or a service watch: a pattern and where to send what matches.
struct Interest {
  Session::Id session = 0;
  std::string pattern;
};

struct Registration {
  Session::Id session = 0;
  wire::ServiceInfo info;
};

// What a connection holds, released when it closes.
struct Conn {
  std::set<std::uint64_t> consumers;  // queue subscriptions (tags)
  std::set<std::uint64_t> topics;     // topic subscriptions (tags)
  std::set<std::uint64_t> watches;
  std::set<std::string> services;     // names registered by it
};

struct Broker::Impl {
  BrokerOptions options;
  Fd state_lock;  // flock'ed: one daemon per state directory
  Policy policy = Policy::owner_only(0);
  std::string url;
  std::optional<Server> server;
  std::unique_ptr<Http> http;
  std::map<std::string, Slot, std::less<>> slots;
  std::map<std::uint64_t, std::string> consumer_queue;  // queue subscription tag → queue
  std::map<std::uint64_t, Interest> topic_subs;
  std::map<std::uint64_t, Interest> watches;
  std::map<std::string, Registration, std::less<>> services;
  std::map<Session::Id, Conn> conns;
  std::uint64_t next_tag = 1;
  std::uint64_t topic_messages = 0, topic_missed = 0;  // missed: a subscriber's connection was full
  std::uint64_t denials = 0;
  bool closing = false;  // the daemon is being destroyed: the engine's last on_close calls do nothing
  Clock::time_point started = Clock::now();
  std::vector<std::byte> out;

  // The sync thread.
  std::mutex sync_mu;
  std::condition_variable sync_cv;
  std::deque<std::shared_ptr<Queue>> sync_wanted;
  bool sync_stop = false;
  std::thread syncer;

  void log(std::string_view line) const;

  // ---- replies (broker.cpp) ----
  template <class M>
  void reply(Session& s, std::uint64_t corr, M m) {
    if (corr == 0) return;
    wire::encode(out, m, corr);
    (void)s.send(out);  // a connection that cannot take a reply is being dropped by the engine
  }
  void reply_error(Session& s, std::uint64_t corr, const Error& e);
  void reply_error(Session& s, std::uint64_t corr, Errc code, std::string text);
  // True when the peer may; otherwise replies permission_denied, logs and counts the denial.
  bool permit(Session& s, std::uint64_t corr, Kind kind, std::string_view name, Right right);
  template <class M>
  bool decode_or_reply(Session& s, const wire::Header& h, std::span<const std::byte> in, M& m) {
    if (auto r = wire::decode(in, m); !r) {
      reply_error(s, h.corr, Errc::protocol, r.error().detail);
      return false;
    }
    return true;
  }

  void on_message(Session& s, Message& msg);
  void on_close(Session& s);
  void tick();
  nlohmann::json snapshot();
  nlohmann::json snapshot_from_any_thread();

  // ---- durability (broker.cpp) ----
  void request_sync(Slot& s);
  void sync_loop();
  void on_synced(const std::string& name, Queue* qp, const Result<std::uint64_t>& durable);

  // ---- queues (queues.cpp) ----
  std::filesystem::path queue_dir(std::string_view name) const { return options.state_dir / "queues" / std::string(name); }
  Slot* slot(std::string_view name);
  Slot* existing(Session& s, std::uint64_t corr, const std::string& name);
  Result<Slot*> open_queue(const std::string& name, const wire::QueueConfig& config, bool create, bool* created);
  Result<void> recover_all();
  void copy_to_dead_letters(Slot& s, const Stored& m);
  void dead_letter(Slot& s, std::uint64_t seq, Removal why);
  void send_delivery(Session& session, std::uint64_t corr, std::uint64_t tag, Queue& q, std::uint64_t seq);
  bool front_deliverable(Slot& s);
  void dispatch(Slot& s);
  Consumer* consumer_of(Slot& s, std::uint64_t tag);
  void release(Slot& s, std::uint64_t seq);
  void end_consumer(std::uint64_t tag, Session::Id session);
  void tick_queues();
  void on_queue_request(Session& s, const wire::Header& h, std::span<const std::byte> in);

  // ---- topics and services (registry.cpp) ----
  void on_registry_request(Session& s, const wire::Header& h, std::span<const std::byte> in);
  void notify_watchers(const wire::ServiceInfo& info, bool up, std::string_view reason);
  void drop_registrations(Session::Id session);
};

}  // namespace ipcx::broker
