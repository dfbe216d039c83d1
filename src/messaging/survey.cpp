// Survey: the surveyor is a server engine driven on the caller's thread (survey(), poll());
// a respondent is one connection read on the caller's thread.
#include <ipcx/reqrep.hpp>

#include <algorithm>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "messaging/reqrep_wire.hpp"
#include "messaging/serve.hpp"

namespace ipcx {

using messaging::Kind;
namespace rr = messaging::rr;
using rr::Clock;

namespace {

// What a surveyor keeps per respondent.
struct Asked {
  RequestId last = 0;     // the last question sent to it
  bool answered = false;  // ... and whether it answered that one
};

}  // namespace

struct Surveyor::Impl {
  SurveyorOptions opts;
  std::string url;
  Counters c;
  std::uint64_t late = 0;
  RequestId current = 0;
  bool active = false;
  std::vector<Session::Id> pending;  // asked in the survey under way, not answered yet
  SurveyResult* result = nullptr;
  std::vector<std::byte> tx;
  std::optional<Server> server;  // last: destroyed first

  bool take_pending(Session::Id id) {
    auto it = std::find(pending.begin(), pending.end(), id);
    if (it == pending.end()) return false;
    *it = pending.back();
    pending.pop_back();
    --c.queued;
    return true;
  }

  void refuse_connection(Session& s, std::string_view why) {
    rr::encode_error(tx, why);
    (void)s.send(tx);
    s.close();
    if (active && take_pending(s.id())) ++c.dropped.peer_died;
  }

  void on_message(Session& s, Message& m) {
    const auto b = m.bytes();
    const auto kind = rr::kind_of(b);
    if (kind == Kind::stat_request) {
      rr::encode_stat_reply(tx, c);
      (void)s.send(tx);
      return;
    }
    if (kind != Kind::answer)
      return refuse_connection(s, b.empty() ? std::string("empty message")
                                            : fmt::format("unexpected message kind {:#04x} (a surveyor takes answers)", int(b[0])));
    if (b.size() < rr::kAnswerHeader)
      return refuse_connection(s, fmt::format("answer of {} bytes, shorter than its {}-byte header", b.size(), rr::kAnswerHeader));
    const auto id = rr::get_u64(b.data() + 1);
    auto& asked = s.state<Asked>();
    if (id == 0 || id > asked.last) return refuse_connection(s, fmt::format("answer to question {}, never asked", id));
    if (id == asked.last) {
      if (asked.answered) return refuse_connection(s, fmt::format("second answer to question {}", id));
      asked.answered = true;
    }
    if (active && id == current && take_pending(s.id())) {
      ++c.delivered;
      ++c.received;
      result->answers.push_back({.peer = s.peer(), .payload = {b.begin() + rr::kAnswerHeader, b.end()}});
      return;
    }
    ++late;  // its survey is over (counted in dropped.expired then)
  }

  void on_close(Session& s) {
    if (active && take_pending(s.id())) ++c.dropped.peer_died;
  }

  Result<SurveyResult> survey(std::span<const std::byte> question, Timeout deadline) {
    const auto dl = detail::deadline_after(deadline);
    // Respondents that connected since the last call are accepted first.
    for (int i = 0; i < 2; ++i)
      if (auto r = server->run_once(Timeout::zero()); !r) return std::unexpected(r.error());
    SurveyResult res;
    result = &res;
    active = true;
    current += 1;
    pending.clear();
    rr::encode_ask(tx, Kind::question, current, rr::remaining_us(dl, Clock::now()), question);
    server->for_each([&](Session& s) {
      if (!s.open() || !s.send(tx)) return;
      auto& asked = s.state<Asked>();
      asked = Asked{.last = current, .answered = false};
      pending.push_back(s.id());
      ++c.sent;
      ++c.queued;
      ++res.asked;
    });
    Result<void> outcome;
    for (;;) {
      const auto now = Clock::now();
      if (pending.empty() || now >= dl) break;
      if (auto r = server->run_once(detail::timeout_until(dl, now)); !r) {
        outcome = std::unexpected(r.error());
        break;
      }
    }
    c.dropped.expired += pending.size();
    c.queued -= pending.size();
    pending.clear();
    active = false;
    result = nullptr;
    if (!outcome) return std::unexpected(outcome.error());
    res.answered = res.answers.size();
    return res;
  }
};

Surveyor::Surveyor() noexcept = default;
Surveyor::Surveyor(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Surveyor::Surveyor(Surveyor&&) noexcept = default;
Surveyor& Surveyor::operator=(Surveyor&&) noexcept = default;
Surveyor::~Surveyor() = default;

Result<Surveyor> Surveyor::bind(std::string_view url, SurveyorOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  Impl* self = impl.get();
  Server::Handlers h;
  h.on_message = [self](Session& s, Message& m) { self->on_message(s, m); };
  h.on_close = [self](Session& s, const Error&) { self->on_close(s); };
  auto served = messaging::serve(url, std::move(h), options.server, options.transport);
  if (!served) return std::unexpected(served.error());
  impl->server.emplace(std::move(served->server));
  impl->url = std::move(served->url);
  return Surveyor(std::move(impl));
}

Result<SurveyResult> Surveyor::survey(std::span<const std::byte> question, Timeout deadline) {
  if (!impl_) return fail(Errc::closed, "survey", "no surveyor (default-constructed or moved from)");
  return impl_->survey(question, deadline);
}

Result<void> Surveyor::poll(Timeout timeout) {
  if (!impl_) return fail(Errc::closed, "poll", "no surveyor (default-constructed or moved from)");
  if (auto r = impl_->server->run_once(timeout); !r) return std::unexpected(r.error());
  return {};
}

std::size_t Surveyor::respondents() const noexcept { return impl_ ? impl_->server->connections() : 0; }
std::uint64_t Surveyor::late_answers() const noexcept { return impl_ ? impl_->late : 0; }
std::string Surveyor::url() const { return impl_ ? impl_->url : std::string(); }
Counters Surveyor::stats() const noexcept { return impl_ ? impl_->c : Counters{}; }

// ---- Respondent ---------------------------------------------------------------------------------

struct Respondent::Impl {
  Connection conn;
  Counters c;
  std::vector<std::byte> tx;

  Error lost(Error e) {
    conn.close();
    return e;
  }
};

Respondent::Respondent() noexcept = default;
Respondent::Respondent(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Respondent::Respondent(Respondent&&) noexcept = default;
Respondent& Respondent::operator=(Respondent&&) noexcept = default;
Respondent::~Respondent() = default;

Result<Respondent> Respondent::connect(std::string_view url, RespondentOptions options, Timeout timeout) {
  auto conn = ipcx::connect(url, options.transport, timeout);
  if (!conn) return std::unexpected(conn.error());
  auto impl = std::make_unique<Impl>();
  impl->conn = std::move(*conn);
  return Respondent(std::move(impl));
}

Result<Question> Respondent::next(Timeout timeout) {
  if (!impl_) return fail(Errc::closed, "next", "no respondent (default-constructed or moved from)");
  Question q;
  auto r = impl_->conn.recv(q.payload, timeout);
  if (!r) {
    if (r.error().code == Errc::timeout || r.error().code == Errc::would_block) return std::unexpected(r.error());
    return std::unexpected(impl_->lost(std::move(r.error())));
  }
  const auto b = q.payload.bytes();
  const auto kind = rr::kind_of(b);
  if (kind == Kind::error)
    return std::unexpected(impl_->lost(Error{Errc::protocol, 0, "next", fmt::format("the surveyor refused this connection: {}", rr::text_after_kind(b))}));
  if (kind != Kind::question || b.size() < rr::kAskHeader)
    return std::unexpected(impl_->lost(Error{Errc::protocol, 0, "next",
                                             kind == Kind::question ? std::string("question shorter than its header")
                                                                    : fmt::format("unexpected message kind {:#04x}", b.empty() ? 0 : int(b[0]))}));
  q.id = rr::get_u64(b.data() + 1);
  q.deadline = rr::local_deadline(rr::get_u64(b.data() + 9), Clock::now());
  auto& d = q.payload.data;
  d.erase(d.begin(), d.begin() + rr::kAskHeader);
  ++impl_->c.received;
  return q;
}

Result<void> Respondent::answer(const Question& q, std::span<const std::byte> data, Timeout timeout) {
  if (!impl_) return fail(Errc::closed, "answer", "no respondent (default-constructed or moved from)");
  rr::encode_answer(impl_->tx, q.id, data);
  if (auto r = impl_->conn.send(impl_->tx, timeout); !r) {
    if (r.error().code == Errc::timeout || r.error().code == Errc::too_large) return r;
    return std::unexpected(impl_->lost(std::move(r.error())));
  }
  ++impl_->c.sent;
  ++impl_->c.delivered;  // written: what the surveyor kept, it counts on its side
  return {};
}

Counters Respondent::stats() const noexcept { return impl_ ? impl_->c : Counters{}; }
std::optional<int> Respondent::native_handle() const noexcept { return impl_ ? impl_->conn.native_handle() : std::nullopt; }
void Respondent::close() noexcept {
  if (impl_) impl_->conn.close();
}
bool Respondent::is_open() const noexcept { return impl_ && impl_->conn.is_open(); }

}  // namespace ipcx
