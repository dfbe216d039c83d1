// Survey over every socket transport, with respondent processes that answer, answer late, or
// are SIGKILLed on receiving the question.
#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "reqrep/reqrep_support.hpp"

namespace ipcx::test {
namespace {

using namespace std::chrono_literals;

class Survey : public ::testing::TestWithParam<Transport> {
 protected:
  std::string url() { return GetParam().url(dir_); }
  ~Survey() override {
    for (pid_t p : children_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    for (int fd : go_)
      if (fd >= 0) ::close(fd);
  }

  enum class Style { answer, late, die };

  Survey() {
    if (::pipe(go_) != 0) ADD_FAILURE() << "pipe";
  }

  void SetUp() override {
#if defined(__SANITIZE_THREAD__)
    // A sysv:// listener runs a thread from bind on, so respondents are forked from a
    // multi-threaded process and start threads of their own, which ThreadSanitizer refuses.
    // The sysv:// threads run under it in the conformance suite. (GCC only: the tsan preset's
    // clang build runs it, with TSAN_OPTIONS=die_after_fork=0.)
    if (GetParam().name == std::string("sysv")) GTEST_SKIP() << "forked respondents over sysv:// under ThreadSanitizer";
#endif
  }

  // A respondent process (forked before any thread starts) that behaves as `style` says.
  void respondent(const std::string& where, const std::string& name, Style style) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid != 0) {
      children_.push_back(pid);
      return;
    }
    auto r = Respondent::connect(where);
    if (!r) ::_exit(3);
    for (;;) {
      auto q = r->next();
      if (!q) ::_exit(0);
      if (style == Style::die) ::raise(SIGKILL);
      if (style == Style::late) {  // answers each question only once the test says so
        char c;
        if (::read(go_[0], &c, 1) != 1) ::_exit(5);
      }
      const auto reply = name + ":" + std::string(q->payload.text());
      if (!r->answer(*q, as_bytes(reply))) ::_exit(4);
    }
  }

  // Lets the "late" respondent answer one question per byte written.
  void release_late(int n) {
    for (int i = 0; i < n; ++i) ASSERT_EQ(::write(go_[1], "g", 1), 1);
  }

  ScratchDir dir_;
  std::vector<pid_t> children_;
  int go_[2] = {-1, -1};
};

std::vector<std::string> texts(const SurveyResult& r) {
  std::vector<std::string> out;
  for (const auto& a : r.answers) out.push_back(text(a.payload));
  std::sort(out.begin(), out.end());
  return out;
}

TEST_P(Survey, GathersAnswersUntilTheDeadline) {
  auto sv = Surveyor::bind(url());
  IPCX_ASSERT_OK(sv);
  const auto where = sv->url();
  respondent(where, "a", Style::answer);
  respondent(where, "b", Style::answer);
  respondent(where, "late", Style::late);
  respondent(where, "dies", Style::die);
  Watchdog wd(60s);
  ASSERT_TRUE(eventually([&] { return sv->poll(5ms) && sv->respondents() == 4; }, 20s));

  // (A deadline generous enough for slow machines and sanitizers: "late" answers only after.)
  auto r = sv->survey(as_bytes("ready?"), 5s);
  IPCX_ASSERT_OK(r);
  EXPECT_EQ(r->asked, 4u);
  EXPECT_EQ(r->answered, 2u);
  EXPECT_EQ(texts(*r), (std::vector<std::string>{"a:ready?", "b:ready?"}));
  for (const auto& a : r->answers) EXPECT_EQ(a.peer.verified, GetParam().verified_peer);
  auto c = sv->stats();
  EXPECT_EQ(c.sent, 4u);
  EXPECT_EQ(c.delivered, 2u);
  EXPECT_EQ(c.dropped.peer_died, 1u);
  EXPECT_EQ(c.dropped.expired, 1u);
  expect_balanced(c);

  // The slow one's answer comes after its survey ended: discarded, counted. (It may answer
  // the next question at once.)
  release_late(2);
  ASSERT_TRUE(eventually([&] { return sv->poll(5ms) && sv->late_answers() == 1; }, 20s));

  // With a deadline long enough, the survey ends as soon as everyone has answered.
  auto r2 = sv->survey(as_bytes("again?"), 60s);
  IPCX_ASSERT_OK(r2);
  EXPECT_EQ(r2->asked, 3u);
  EXPECT_EQ(texts(*r2), (std::vector<std::string>{"a:again?", "b:again?", "late:again?"}));
  expect_balanced(sv->stats());
}

TEST_P(Survey, NobodyToAskReturnsAtOnce) {
  Watchdog wd(60s);
  auto sv = Surveyor::bind(url());
  IPCX_ASSERT_OK(sv);
  auto r = sv->survey(as_bytes("anyone?"), 60s);  // would hang the test if it waited
  IPCX_ASSERT_OK(r);
  EXPECT_EQ(r->asked, 0u);
  EXPECT_EQ(r->answered, 0u);
}

TEST_P(Survey, BadAnswersDropOnlyTheirConnection) {
  auto sv = Surveyor::bind(url());
  IPCX_ASSERT_OK(sv);
  const auto where = sv->url();
  respondent(where, "good", Style::answer);
  Watchdog wd(60s);
  auto raw = connect(where);
  IPCX_ASSERT_OK(raw);
  ASSERT_TRUE(eventually([&] { return sv->poll(5ms) && sv->respondents() == 2; }, 20s));
  // An answer to a question never asked.
  std::vector<std::byte> bad;
  messaging::rr::encode_answer(bad, 42, as_bytes("unasked"));
  IPCX_ASSERT_OK(raw->send(bad, 10s));
  auto r = sv->survey(as_bytes("q"), 60s);
  IPCX_ASSERT_OK(r);
  EXPECT_EQ(texts(*r), (std::vector<std::string>{"good:q"}));
  // The bad one was told why, then closed.
  bool told = false;
  for (;;) {
    auto m = raw->recv(10s);
    if (!m) {
      EXPECT_EQ(m.error().code, Errc::closed) << m.error().message();
      break;
    }
    if (!m->data.empty() && m->data[0] == std::byte{static_cast<unsigned char>(messaging::Kind::error)}) {
      told = true;
      EXPECT_NE(text(m->bytes()).find("never asked"), std::string::npos) << text(m->bytes());
    }
  }
  EXPECT_TRUE(told);
}

TEST_P(Survey, AnswersStatRequestsWhilePolled) {
  Watchdog wd(60s);
  auto sv = Surveyor::bind(url());
  IPCX_ASSERT_OK(sv);
  auto raw = connect(sv->url());
  IPCX_ASSERT_OK(raw);
  const std::byte ask{static_cast<unsigned char>(messaging::Kind::stat_request)};
  IPCX_ASSERT_OK(raw->send({&ask, 1}, 10s));
  Result<Message> m = fail(Errc::timeout, "test");
  ASSERT_TRUE(eventually([&] {
    (void)sv->poll(5ms);
    m = raw->recv(Timeout::zero());
    return m.has_value();
  }, 20s));
  ASSERT_GE(m->size(), 2u);
  EXPECT_EQ(m->data[0], std::byte{static_cast<unsigned char>(messaging::Kind::stat_reply)});
  EXPECT_NE(text(m->bytes()).find("\"sent\":0"), std::string::npos) << text(m->bytes());
}

TEST_P(Survey, EachKindOfBadInputIsRefused) {
  Watchdog wd(60s);
  namespace rr = messaging::rr;
  auto answer = [](RequestId id) {
    std::vector<std::byte> m;
    rr::encode_answer(m, id, as_bytes("a"));
    return m;
  };
  struct Bad {
    const char* name;
    bool after_question;  // sent once the question came
    std::vector<std::vector<std::byte>> messages;
    const char* reason;
  };
  const std::vector<Bad> bad = {
      {"a request", false, {raw_request(1, "x")}, "unexpected message kind 0x20"},
      {"short answer", true, {{std::byte{0x29}, std::byte{1}}}, "shorter than its 9-byte header"},
      {"second answer", true, {answer(1), answer(1)}, "second answer to question 1"},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.name);
    ScratchDir d;
    auto sv = Surveyor::bind(GetParam().url(d));
    IPCX_ASSERT_OK(sv);
    auto raw = connect(sv->url());
    IPCX_ASSERT_OK(raw);
    ASSERT_TRUE(eventually([&] { return sv->poll(5ms) && sv->respondents() == 1; }, 20s));
    if (!b.after_question)
      for (const auto& m : b.messages) IPCX_ASSERT_OK(raw->send(m, 10s));
    std::thread t([&] {
      if (!b.after_question) return;
      auto q = raw->recv(10s);  // the question (id 1)
      if (q)
        for (const auto& m : b.messages) (void)raw->send(m, 10s);
    });
    auto r = sv->survey(as_bytes("q"), 10s);
    t.join();
    IPCX_ASSERT_OK(r);
    std::string reason;
    for (;;) {
      (void)sv->poll(1ms);
      auto m = raw->recv(10ms);
      if (!m) {
        if (m.error().code == Errc::timeout) continue;
        EXPECT_EQ(m.error().code, Errc::closed) << m.error().message();
        break;
      }
      if (!m->data.empty() && m->data[0] == std::byte{0x7f}) reason = text(m->bytes().subspan(1));
    }
    EXPECT_NE(reason.find(b.reason), std::string::npos) << reason;
  }
}

TEST_P(Survey, RespondentRefusesWhatIsNotAQuestion) {
  Watchdog wd(60s);
  auto l = listen(url());
  IPCX_ASSERT_OK(l);
  auto r = Respondent::connect(l->url());
  IPCX_ASSERT_OK(r);
  auto srv = l->accept(10s);
  IPCX_ASSERT_OK(srv);
  IPCX_ASSERT_OK(srv->send(raw_request(1, "not a question"), 10s));
  IPCX_EXPECT_ERRC(r->next(10s), Errc::protocol);
  EXPECT_FALSE(r->is_open());
}

INSTANTIATE_TEST_SUITE_P(Transports, Survey, ::testing::ValuesIn(transports()), transport_name);

}  // namespace
}  // namespace ipcx::test
