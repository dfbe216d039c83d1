// Request/reply and survey over any socket transport (docs/reqrep.md).
//
//   // replier: a handler per request, the reply written as soon as the handler returns
//   auto rep = ipcx::Replier::bind("unix:///run/user/1000/calc.sock",
//                                  [](ipcx::Request& r) { (void)r.reply(r.payload); }).value();
//   rep.run();                                             // until rep.stop()
//
//   // requester: a plain send + blocking receive on the caller's thread
//   auto req = ipcx::Requester::connect("unix:///run/user/1000/calc.sock").value();
//   auto answer = req.request(ipcx::as_bytes("2+2"), 1s);  // Result<Message>
//
//   // many in flight on one connection, answered in any order
//   auto a = req.send_request(ipcx::as_bytes("a"), 1s).value();
//   auto b = req.send_request(ipcx::as_bytes("b"), 1s).value();
//   auto rb = req.wait(b, 1s);  // a's reply, if it comes first, is kept for wait(a)
//
//   // survey: ask every connected respondent, gather answers until the deadline
//   auto sv = ipcx::Surveyor::bind("unix:///run/user/1000/vote.sock").value();
//   auto res = sv.survey(ipcx::as_bytes("ready?"), 200ms).value();  // res.answers, asked, answered
//
// Every endpoint counts what it sent, what was delivered and what was dropped, by reason
// (ipcx::Counters, semantics.hpp); bound endpoints (Replier, Surveyor) also answer `ipcx stat URL`.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <ipcx/connection.hpp>
#include <ipcx/error.hpp>
#include <ipcx/message.hpp>
#include <ipcx/peer.hpp>
#include <ipcx/semantics.hpp>
#include <ipcx/server.hpp>
#include <ipcx/timeout.hpp>

namespace ipcx {

// Names one request (or one survey question) on one connection; never reused by a requester.
using RequestId = std::uint64_t;

// ---- requester ----------------------------------------------------------------------------------

struct RequesterOptions {
  Options transport;  // max_message bounds a reply (larger: too_large or protocol; closed)
  // Requests sent and neither answered, timed out nor cancelled. send_request() beyond it:
  // Errc::resource_exhausted. Replies that arrive for other requests while one is waited for
  // are kept, at most one per request in flight.
  std::size_t max_in_flight = 64;
};

// The asking side of request/reply: one connection to a Replier.
//
// Threading: one thread at a time (calls are not serialised); close() excepted, which may be
// called from any thread and makes a blocked call return Errc::closed.
class Requester {
 public:
  Requester() noexcept;
  Requester(Requester&&) noexcept;
  Requester& operator=(Requester&&) noexcept;
  ~Requester();

  static Result<Requester> connect(std::string_view url, RequesterOptions options = {},
                                   Timeout timeout = std::chrono::seconds(5));

  // Sends `data` and waits for its reply, up to `timeout` (also the request's deadline, which
  // travels with it). Errors: timeout (the reply, if it still comes, is discarded), closed (the
  // replier went away or dropped this connection: at once, not at the deadline), protocol,
  // resource_exhausted (the replier was too busy to take the request), too_large.
  Result<Message> request(std::span<const std::byte> data, Timeout timeout = forever);
  // Same, into `reply`, whose buffer capacity is reused (no allocation in steady state).
  Result<void> request(std::span<const std::byte> data, Message& reply, Timeout timeout = forever);

  // Sends a request that must be answered within `deadline` and returns at once (or when the
  // kernel takes it, up to that deadline) with its id.
  Result<RequestId> send_request(std::span<const std::byte> data, Timeout deadline = forever);
  // Waits up to `timeout` for the reply to `id`. Errc::timeout when `timeout` passes first
  // while the request's deadline is still ahead (wait again later); when the request's own
  // deadline passes, Errc::timeout and the request is forgotten (a late reply is discarded,
  // counted dropped.expired). Errc::not_found for an id not in flight (never sent, already
  // answered, cancelled, expired).
  Result<Message> wait(RequestId id, Timeout timeout = forever);
  Result<void> wait(RequestId id, Message& into, Timeout timeout = forever);
  // Forgets a request in flight: its reply, if it comes, is discarded. Counted dropped.expired
  // (its deadline brought forward to now). Errc::not_found when `id` is not in flight.
  Result<void> cancel(RequestId id);

  // sent: requests sent; delivered: replies handed to the application; dropped.expired:
  // requests timed out or cancelled; dropped.refused: the replier refused them (busy);
  // dropped.peer_died: in flight when the connection ended; queued: in flight now.
  Counters stats() const noexcept;
  // Replies that came after their request had timed out or been cancelled (discarded).
  std::uint64_t late_replies() const noexcept;
  std::size_t in_flight() const noexcept;

  std::optional<int> native_handle() const noexcept;
  PeerCred peer() const noexcept;
  void close() noexcept;
  bool is_open() const noexcept;
  explicit operator bool() const noexcept { return is_open(); }

  struct Impl;

 private:
  explicit Requester(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

// ---- replier ------------------------------------------------------------------------------------

struct ReplierOptions {
  Options transport;
  ServerOptions server;
  // Per connection: requests handed to the handler and not yet replied to. Further requests
  // from that connection wait, in order, in a backlog of `max_backlog`; requests beyond that
  // are refused at once (the requester gets Errc::resource_exhausted).
  std::size_t max_in_flight = 16;
  std::size_t max_backlog = 256;
  std::size_t max_backlog_bytes = std::size_t{1} << 20;  // per connection
};

class ReplyHandle;
class Replier;

// One request, as the handler sees it. `payload` is valid during the handler call only.
struct Request {
  std::span<const std::byte> payload;
  PeerCred peer;
  RequestId id = 0;
  // When the requester stops waiting, measured from when this process read the request (time
  // the request spent in the kernel's socket buffer is not known here). time_point::max(): none.
  std::chrono::steady_clock::time_point deadline;

  // Replies now (copied; written when the handler returns). Once per request.
  Result<void> reply(std::span<const std::byte> data);
  // Keeps the request open past the handler: reply later through the handle.
  ReplyHandle defer();

  struct Impl;
  Impl* impl_ = nullptr;
};

// A request to answer later. Movable, valid across handler calls; loop-thread only (from other
// threads, go through Replier::post). Replying after the requester went away (or its
// connection was dropped) discards the reply safely: Errc::closed, counted dropped.peer_died.
// A handle destroyed without replying releases the request's place in flight (no reply sent;
// counted dropped.no_route, or dropped.peer_died when the requester has gone). Neither reply()
// nor the destructor calls the handler back: the next waiting request is handed over from the
// loop.
class ReplyHandle {
 public:
  ReplyHandle() noexcept = default;
  ReplyHandle(ReplyHandle&&) noexcept;
  ReplyHandle& operator=(ReplyHandle&&) noexcept;
  ~ReplyHandle();

  Result<void> reply(std::span<const std::byte> data);
  RequestId id() const noexcept { return id_; }
  std::chrono::steady_clock::time_point deadline() const noexcept { return deadline_; }
  bool valid() const noexcept { return owner_ != nullptr; }

  struct Owner;  // (opaque)

 private:
  friend struct Request;
  std::shared_ptr<Owner> owner_;
  Session::Id session_ = 0;
  RequestId id_ = 0;
  std::chrono::steady_clock::time_point deadline_{};
};

// The answering side: a server engine that calls `handler` once per request.
//
// Threading: run()/poll() on one thread (the handler runs there); stop() and post() from any.
class Replier {
 public:
  using Handler = std::function<void(Request&)>;

  Replier() noexcept;
  Replier(Replier&&) noexcept;
  Replier& operator=(Replier&&) noexcept;
  ~Replier();

  static Result<Replier> bind(std::string_view url, Handler handler, ReplierOptions options = {});

  // Serves until stop(). Blocks.
  Result<void> run();
  // Serves for at most `timeout` (one round of the loop); returns the callbacks it ran.
  Result<int> poll(Timeout timeout);
  void stop() noexcept;
  // Runs fn on the serving thread soon (where ReplyHandle::reply may be called). Thread-safe.
  void post(std::function<void()> fn);

  // The bound address (tcp port 0 resolved).
  std::string url() const;
  // Over requests: received == delivered + dropped.total() + queued. received: requests read;
  // delivered: answered (the reply queued on an open connection); sent: replies written
  // (== delivered); dropped.expired: skipped, their deadline had passed; dropped.peer_died:
  // the requester had gone; dropped.refused: backlog full, or the reply could not be queued;
  // dropped.no_route: never answered by the application; queued: with the handler or in a
  // backlog. Serving thread only (or through post()).
  Counters stats() const noexcept;
  ServerStats server_stats() const noexcept;

  struct Impl;

 private:
  explicit Replier(std::shared_ptr<Impl> impl) noexcept;
  std::shared_ptr<Impl> impl_;
};

// ---- survey -------------------------------------------------------------------------------------

struct SurveyorOptions {
  Options transport;
  ServerOptions server;
};

struct SurveyAnswer {
  PeerCred peer;
  std::vector<std::byte> payload;
};

struct SurveyResult {
  std::vector<SurveyAnswer> answers;  // in the order they arrived
  std::size_t asked = 0;              // respondents the question was sent to
  std::size_t answered = 0;           // answers.size()
};

// Asks every connected Respondent and gathers answers until a deadline. Serves on the caller's
// thread: connections are accepted and `ipcx stat` is answered during survey() and poll()
// (between surveys, call poll() or they wait in the kernel's backlog).
// Threading: one thread at a time.
class Surveyor {
 public:
  Surveyor() noexcept;
  Surveyor(Surveyor&&) noexcept;
  Surveyor& operator=(Surveyor&&) noexcept;
  ~Surveyor();

  static Result<Surveyor> bind(std::string_view url, SurveyorOptions options = {});

  // Sends `question` to every respondent connected now and returns once each has answered or
  // `deadline` has passed. Answers to an earlier survey are discarded (late_answers()).
  Result<SurveyResult> survey(std::span<const std::byte> question, Timeout deadline);
  // Accepts connections, answers stat requests, discards late answers, for up to `timeout`.
  Result<void> poll(Timeout timeout);
  std::size_t respondents() const noexcept;
  // Answers that came after their survey had ended (discarded).
  std::uint64_t late_answers() const noexcept;

  std::string url() const;
  // sent: questions sent (one per respondent); delivered: answers gathered; dropped.expired:
  // questions not answered by the deadline; dropped.peer_died: respondents that went away
  // before answering; queued: 0 between surveys.
  Counters stats() const noexcept;

  struct Impl;

 private:
  explicit Surveyor(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

struct Question {
  RequestId id = 0;
  Message payload;
  // When the surveyor stops gathering, measured from when this process read the question.
  std::chrono::steady_clock::time_point deadline;
};

struct RespondentOptions {
  Options transport;
};

// The answering side of a survey: one connection to a Surveyor. One thread at a time.
class Respondent {
 public:
  Respondent() noexcept;
  Respondent(Respondent&&) noexcept;
  Respondent& operator=(Respondent&&) noexcept;
  ~Respondent();

  static Result<Respondent> connect(std::string_view url, RespondentOptions options = {},
                                    Timeout timeout = std::chrono::seconds(5));
  // The next question. Errc::timeout, closed (the surveyor went away), protocol.
  Result<Question> next(Timeout timeout = forever);
  // Answers `q`. An answer after the question's deadline is still sent (the surveyor discards
  // and counts it).
  Result<void> answer(const Question& q, std::span<const std::byte> data, Timeout timeout = forever);

  // sent: answers sent; received: questions handed to the application.
  Counters stats() const noexcept;
  std::optional<int> native_handle() const noexcept;
  void close() noexcept;
  bool is_open() const noexcept;

  struct Impl;

 private:
  explicit Respondent(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipcx
