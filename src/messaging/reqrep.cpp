// The requester: a send and a blocking receive on the caller's thread, no thread of its own.
// Requests in flight live in a small table of slots whose reply buffers are reused, so a
// request/reply in steady state allocates nothing.
#include <ipcx/reqrep.hpp>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "messaging/reqrep_wire.hpp"

namespace ipcx {

using messaging::Kind;
namespace rr = messaging::rr;
using rr::Clock;

namespace {

enum class SlotState : std::uint8_t { free, waiting, replied, refused };

struct Slot {
  RequestId id = 0;
  Clock::time_point deadline{};
  SlotState state = SlotState::free;
  Message reply;  // the payload of a reply that came while another request was waited for
};

}  // namespace

struct Requester::Impl {
  Connection conn;
  RequesterOptions opts;
  std::vector<Slot> slots;
  std::size_t active = 0;
  RequestId next_id = 1;
  std::vector<std::byte> tx;
  Message rx;
  Counters c;
  std::uint64_t late = 0;

  Slot* find(RequestId id) noexcept {
    for (auto& s : slots)
      if (s.state != SlotState::free && s.id == id) return &s;
    return nullptr;
  }

  void release(Slot& s, std::uint64_t DropCounts::*reason) noexcept {
    if (reason) ++(c.dropped.*reason);
    else ++c.delivered;
    s.state = SlotState::free;
    --active;
  }

  // The connection is gone: every request in flight died with it.
  Error lost(Error e) {
    conn.close();
    for (auto& s : slots)
      if (s.state == SlotState::waiting) release(s, &DropCounts::peer_died);
    return e;
  }

  // Requests whose deadline passed while nobody waited for them.
  void sweep(Clock::time_point now, RequestId except = 0) noexcept {
    for (auto& s : slots)
      if (s.state == SlotState::waiting && s.id != except && now >= s.deadline) release(s, &DropCounts::expired);
  }

  Result<RequestId> send(std::span<const std::byte> data, Timeout deadline) {
    if (!conn.is_open()) return fail(Errc::closed, "request", "connection closed");
    const auto now = Clock::now();
    sweep(now);
    if (active >= opts.max_in_flight)
      return fail(Errc::resource_exhausted, "request", fmt::format("{} requests already in flight", active));
    const auto dl = detail::deadline_after(deadline);
    const auto id = next_id++;
    rr::encode_ask(tx, Kind::request, id, rr::remaining_us(dl, now), data);
    if (auto r = conn.send(tx, detail::timeout_until(dl, now)); !r) {
      if (r.error().code == Errc::timeout || r.error().code == Errc::too_large) return std::unexpected(r.error());
      return std::unexpected(lost(std::move(r.error())));
    }
    Slot* slot = nullptr;
    for (auto& s : slots)
      if (s.state == SlotState::free) {
        slot = &s;
        break;
      }
    if (!slot) slot = &slots.emplace_back();
    *slot = Slot{.id = id, .deadline = dl, .state = SlotState::waiting, .reply = std::move(slot->reply)};
    ++active;
    ++c.sent;
    return id;
  }

  // Handles the message in `rx`: a reply for `target` goes into `into` (true); one for another
  // request goes into its slot; anything else closes the connection.
  Result<bool> take(RequestId target, Message& into) {
    const auto m = rx.bytes();
    const auto kind = rr::kind_of(m);
    if (kind == Kind::error)
      return std::unexpected(lost(Error{Errc::protocol, 0, "request", fmt::format("the replier refused this connection: {}", rr::text_after_kind(m))}));
    if (kind != Kind::reply || m.size() < rr::kReplyHeader)
      return std::unexpected(lost(Error{Errc::protocol, 0, "request",
                                        kind == Kind::reply ? std::string("reply shorter than its header")
                                                            : fmt::format("unexpected message kind {:#04x}", m.empty() ? 0 : int(m[0]))}));
    const auto id = rr::get_u64(m.data() + 1);
    const auto status = static_cast<rr::Status>(m[9]);
    Slot* s = find(id);
    if (!s) {
      // An id this requester issued and no longer waits for: it timed out or was cancelled.
      if (id != 0 && id < next_id) {
        ++late;
        return false;
      }
      return std::unexpected(lost(Error{Errc::protocol, 0, "request", fmt::format("reply for request {}, never sent", id)}));
    }
    if (s->state != SlotState::waiting)
      return std::unexpected(lost(Error{Errc::protocol, 0, "request", fmt::format("second reply for request {}", id)}));
    if (status == rr::Status::refused) {
      s->state = SlotState::refused;
      return false;
    }
    if (status != rr::Status::ok)
      return std::unexpected(lost(Error{Errc::protocol, 0, "request", fmt::format("unknown reply status {}", int(status))}));
    if (id == target) {
      // In place: the header is dropped and the buffers swapped, so both keep their capacity.
      auto& d = rx.data;
      std::memmove(d.data(), d.data() + rr::kReplyHeader, d.size() - rr::kReplyHeader);
      d.resize(d.size() - rr::kReplyHeader);
      std::swap(into.data, rx.data);
      into.fds.clear();
      release(*s, nullptr);
      return true;
    }
    s->reply.data.assign(m.begin() + rr::kReplyHeader, m.end());
    s->state = SlotState::replied;
    return false;
  }

  Result<void> wait(RequestId id, Message& into, Timeout timeout) {
    Slot* s = find(id);
    if (!s) return fail(Errc::not_found, "wait", fmt::format("request {} is not in flight", id));
    sweep(Clock::now(), id);  // (the waited one's own deadline is reported below)
    const auto give_up = detail::deadline_after(timeout);
    for (;;) {
      s = find(id);  // (slots may have moved: emplace_back in a send between calls)
      if (s->state == SlotState::replied) {
        std::swap(into.data, s->reply.data);
        into.fds.clear();
        release(*s, nullptr);
        return {};
      }
      if (s->state == SlotState::refused) {
        release(*s, &DropCounts::refused);
        return fail(Errc::resource_exhausted, "request", "the replier is too busy to take this request");
      }
      const auto now = Clock::now();
      if (now >= s->deadline) {
        release(*s, &DropCounts::expired);
        return fail(Errc::timeout, "request", fmt::format("no reply to request {} within its deadline", id));
      }
      if (!conn.is_open()) return std::unexpected(lost(Error{Errc::closed, 0, "request", "connection closed"}));
      auto r = conn.recv(rx, detail::timeout_until(std::min(s->deadline, give_up), now));
      if (!r) {
        const auto code = r.error().code;
        if (code != Errc::timeout && code != Errc::would_block) return std::unexpected(lost(std::move(r.error())));
        const auto later = Clock::now();
        if (later >= give_up && later < s->deadline)
          return fail(Errc::timeout, "wait", fmt::format("no reply to request {} yet (still in flight)", id));
        continue;  // the checks above say which deadline passed
      }
      auto got = take(id, into);
      if (!got) return std::unexpected(got.error());
      if (*got) return {};
    }
  }
};

Requester::Requester() noexcept = default;
Requester::Requester(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Requester::Requester(Requester&&) noexcept = default;
Requester& Requester::operator=(Requester&&) noexcept = default;
Requester::~Requester() = default;

Result<Requester> Requester::connect(std::string_view url, RequesterOptions options, Timeout timeout) {
  if (options.max_in_flight == 0) return fail(Errc::invalid_argument, "connect", "max_in_flight must be at least 1");
  auto conn = ipcx::connect(url, options.transport, timeout);
  if (!conn) return std::unexpected(conn.error());
  auto impl = std::make_unique<Impl>();
  impl->conn = std::move(*conn);
  impl->opts = options;
  impl->slots.reserve(std::min<std::size_t>(options.max_in_flight, 1024));
  return Requester(std::move(impl));
}

namespace {
Error no_requester(const char* op) { return Error{Errc::closed, 0, op, "no connection (default-constructed or moved from)"}; }
}  // namespace

Result<Message> Requester::request(std::span<const std::byte> data, Timeout timeout) {
  Message m;
  if (auto r = request(data, m, timeout); !r) return std::unexpected(r.error());
  return m;
}

Result<void> Requester::request(std::span<const std::byte> data, Message& reply, Timeout timeout) {
  if (!impl_) return std::unexpected(no_requester("request"));
  auto id = impl_->send(data, timeout);
  if (!id) return std::unexpected(id.error());
  return impl_->wait(*id, reply, forever);  // the request's own deadline bounds the wait
}

Result<RequestId> Requester::send_request(std::span<const std::byte> data, Timeout deadline) {
  if (!impl_) return std::unexpected(no_requester("send_request"));
  return impl_->send(data, deadline);
}

Result<Message> Requester::wait(RequestId id, Timeout timeout) {
  Message m;
  if (auto r = wait(id, m, timeout); !r) return std::unexpected(r.error());
  return m;
}

Result<void> Requester::wait(RequestId id, Message& into, Timeout timeout) {
  if (!impl_) return std::unexpected(no_requester("wait"));
  return impl_->wait(id, into, timeout);
}

Result<void> Requester::cancel(RequestId id) {
  if (!impl_) return std::unexpected(no_requester("cancel"));
  auto* s = impl_->find(id);
  if (!s) return fail(Errc::not_found, "cancel", fmt::format("request {} is not in flight", id));
  impl_->release(*s, &DropCounts::expired);
  return {};
}

Counters Requester::stats() const noexcept {
  if (!impl_) return {};
  impl_->sweep(Clock::now());
  Counters c = impl_->c;
  c.queued = impl_->active;
  for (const auto& s : impl_->slots)
    if (s.state == SlotState::replied) c.queued_bytes += s.reply.data.size();
  return c;
}

std::uint64_t Requester::late_replies() const noexcept { return impl_ ? impl_->late : 0; }
std::size_t Requester::in_flight() const noexcept { return impl_ ? impl_->active : 0; }
std::optional<int> Requester::native_handle() const noexcept {
  return impl_ ? impl_->conn.native_handle() : std::nullopt;
}
PeerCred Requester::peer() const noexcept { return impl_ ? impl_->conn.peer() : PeerCred{}; }
void Requester::close() noexcept {
  if (impl_) impl_->conn.close();
}
bool Requester::is_open() const noexcept { return impl_ && impl_->conn.is_open(); }

}  // namespace ipcx
