// ipcx req / ipcx rep: request/reply from the shell (docs/reqrep.md).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ipcx/ipcx.hpp>

namespace ipcx::cli {

int report(const std::string& what, const Error& e);

namespace {

struct ReqArgs {
  std::string url;
  std::string text = "-";
  long timeout_ms = 5000;
};

struct RepArgs {
  std::string url;
  bool echo = false;
  std::string exec;
  long exec_timeout_ms = 5000;
  std::size_t max_output_kib = 1024;
  long count = 0;
  std::size_t max_in_flight = 16;
};

bool print_reply(const Message& m) {
  std::fwrite(m.data.data(), 1, m.data.size(), stdout);
  std::fputc('\n', stdout);
  return std::fflush(stdout) == 0 && !std::ferror(stdout);
}

int cmd_req(const ReqArgs& a) {
  const Timeout t = std::chrono::milliseconds(a.timeout_ms);
  auto req = Requester::connect(a.url, {}, t);
  if (!req) return report("req", req.error());
  Message reply;
  if (a.text != "-") {
    if (auto r = req->request(as_bytes(a.text), reply, t); !r) return report("req", r.error());
    return print_reply(reply) ? 0 : 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (auto r = req->request(as_bytes(line), reply, t); !r) return report("req", r.error());
    if (!print_reply(reply)) return 1;
  }
  return 0;
}

// Runs `sh -c cmd` with `input` on its stdin; its stdout, if it exits 0 within `timeout`
// having written at most `max_output` bytes. Otherwise the child is killed and why is returned.
Result<std::string> run_exec(const std::string& cmd, std::string input, Timeout timeout, std::size_t max_output) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return fail_errno(errno, "pipe2");
  Fd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return fail_errno(errno, "pipe2");
  Fd out_r(out[0]), out_w(out[1]);
  SpawnOptions so;
  so.fds = {{0, in_r.get()}, {1, out_w.get()}};
  // Its own process group, so whatever the command starts is killed with it.
  so.new_process_group = true;
  auto p = Process::spawn({"/bin/sh", "-c", cmd}, so);
  if (!p) return std::unexpected(p.error());
  struct GroupKiller {
    pid_t group;
    ~GroupKiller() { ::kill(-group, SIGKILL); }
  } killer{p->pid()};
  in_r.reset();
  out_w.reset();
  ::fcntl(in_w.get(), F_SETFL, O_NONBLOCK);
  std::string output;
  std::size_t written = 0;
  if (input.empty()) in_w.reset();
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (out_r.valid()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      (void)p->kill(SIGKILL);
      return fail(Errc::timeout, "exec", "the command did not finish in time (killed)");
    }
    pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {in_w.valid() ? in_w.get() : -1, POLLOUT, 0}};
    if (::poll(fds, 2, static_cast<int>(std::min<long long>(left.count() + 1, 1000))) < 0 && errno != EINTR)
      return fail_errno(errno, "poll");
    if (in_w.valid() && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = ::write(in_w.get(), input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<std::size_t>(n);
      if (n < 0 && errno != EAGAIN && errno != EINTR) in_w.reset();  // it does not read its input
      if (written == input.size()) in_w.reset();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[16384];
      ssize_t n = ::read(out_r.get(), buf, sizeof buf);
      if (n > 0) {
        if (output.size() + static_cast<std::size_t>(n) > max_output) {
          (void)p->kill(SIGKILL);
          return fail(Errc::too_large, "exec", fmt::format("the command wrote more than {} bytes (killed)", max_output));
        }
        output.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        out_r.reset();
      }
    }
  }
  in_w.reset();
  const auto left = until - std::chrono::steady_clock::now();
  auto code = p->wait(left > Timeout::zero() ? left : Timeout::zero());
  if (!code) {
    (void)p->kill(SIGKILL);
    return fail(Errc::timeout, "exec", "the command did not exit in time (killed)");
  }
  if (*code != 0) return fail(Errc::system, "exec", fmt::format("the command exited with {}", *code));
  return output;
}

std::atomic<Replier*> g_replier{nullptr};
extern "C" void on_stop_signal(int) {
  if (auto* r = g_replier.load()) r->stop();
}

int cmd_rep(const RepArgs& a) {
  std::atomic<long> served{0};
  // One detached thread per --exec request under way (bounded by the in-flight limits); the
  // count lets the exit wait for them.
  std::mutex workers_mu;
  std::condition_variable workers_done;
  std::size_t workers = 0;
  Replier* self = nullptr;
  const Timeout exec_timeout = std::chrono::milliseconds(a.exec_timeout_ms);
  const std::size_t max_output = a.max_output_kib << 10;
  auto handler = [&](Request& r) {
    if (a.echo) {
      (void)r.reply(r.payload);
      if (a.count && ++served >= a.count) self->stop();
      return;
    }
    // The command runs in a thread so a slow one holds up only its own requester.
    auto handle = std::make_shared<ReplyHandle>(r.defer());
    std::string input(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
    {
      std::lock_guard lock(workers_mu);
      ++workers;
    }
    std::thread([&, handle, input = std::move(input)]() mutable {
      auto out = run_exec(a.exec, std::move(input), exec_timeout, max_output);
      if (!out) std::fprintf(stderr, "ipcx rep: request %llu not answered: %s\n",
                             static_cast<unsigned long long>(handle->id()), out.error().message().c_str());
      self->post([&, handle, out = std::move(out)]() {
        if (out) (void)handle->reply(as_bytes(*out));
        else *handle = ReplyHandle();  // no reply: the requester reaches its deadline
        if (a.count && ++served >= a.count) self->stop();
      });
      std::lock_guard lock(workers_mu);
      if (--workers == 0) workers_done.notify_all();
    }).detach();
  };
  ReplierOptions opts;
  opts.max_in_flight = a.max_in_flight;
  auto rep = Replier::bind(a.url, handler, opts);
  if (!rep) return report("rep", rep.error());
  self = &*rep;
  g_replier = self;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  std::fprintf(stderr, "ipcx rep: replying on %s\n", rep->url().c_str());
  auto r = rep->run();
  g_replier = nullptr;
  {
    std::unique_lock lock(workers_mu);
    workers_done.wait(lock, [&] { return workers == 0; });
  }
  // Replies posted by the last workers go out before the replier closes.
  for (int i = 0; i < 3; ++i) (void)rep->poll(Timeout::zero());
  if (!r) return report("rep", r.error());
  return 0;
}

}  // namespace

std::function<std::optional<int>()> add_reqrep_commands(CLI::App& app) {
  auto req = std::make_shared<ReqArgs>();
  auto* req_cmd = app.add_subcommand("req", "Send TEXT (or each stdin line) as a request to a replier at URL; print each reply");
  req_cmd->add_option("url", req->url, "Address of a replier (ipcx rep, or an ipcx::Replier)")->required();
  req_cmd->add_option("text", req->text, "Request text; '-' or nothing: one request per standard input line");
  req_cmd->add_option("--timeout", req->timeout_ms, "Connect timeout, and each request's deadline, in milliseconds")
      ->check(CLI::Range(1L, 1'000'000'000'000L))
      ->capture_default_str();

  auto rep = std::make_shared<RepArgs>();
  auto* rep_cmd = app.add_subcommand("rep", "Answer requests at URL: --echo, or --exec CMD (until SIGINT/SIGTERM)");
  rep_cmd->add_option("url", rep->url, "Address to bind")->required();
  auto* echo = rep_cmd->add_flag("--echo", rep->echo, "Reply with the request itself");
  auto* exec = rep_cmd->add_option("--exec", rep->exec,
                                   "Run `sh -c CMD` per request, the request on its stdin; reply with its stdout. A "
                                   "command that fails, times out or writes too much is killed and the request gets "
                                   "no reply (its requester reaches its deadline)");
  echo->excludes(exec);
  rep_cmd->add_option("--exec-timeout", rep->exec_timeout_ms, "Milliseconds one --exec command may run")
      ->check(CLI::Range(1L, 1'000'000'000'000L))
      ->capture_default_str();
  rep_cmd->add_option("--max-output", rep->max_output_kib, "KiB of output one --exec command may write")
      ->check(CLI::Range(std::size_t{1}, std::size_t{64} << 10))
      ->capture_default_str();
  rep_cmd->add_option("--max-in-flight", rep->max_in_flight, "Requests handled at once per connection; more wait")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  rep_cmd->add_option("--count", rep->count, "Exit after answering this many requests")
      ->check(CLI::Range(1L, std::numeric_limits<long>::max()));

  return [req, req_cmd, rep, rep_cmd]() -> std::optional<int> {
    if (*req_cmd) return cmd_req(*req);
    if (*rep_cmd) {
      if (!rep->echo && rep->exec.empty()) {
        std::fprintf(stderr, "ipcx rep: say what to reply: --echo or --exec CMD (see ipcx rep --help)\n");
        return 2;
      }
      return cmd_rep(*rep);
    }
    return std::nullopt;
  };
}

}  // namespace ipcx::cli
