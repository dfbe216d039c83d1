// The server processes the broker rows start and stop (ipcxd, RabbitMQ, nats-server): a process
// group of their own, a log file, readiness, and a stop that leaves nothing behind.
#include <cstring>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "bench/rows_broker.hpp"
#include "bench/session.hpp"

extern char** environ;

namespace ipcx::bench::broker {

// ---- server processes -----------------------------------------------------------------------

namespace {

std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  return last;
}

// The child's exit, without reaping it; nullopt while it runs.
std::optional<siginfo_t> exited(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return std::nullopt;
  return info;
}

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::start(std::string name, const std::vector<std::string>& argv,
                                              const std::vector<std::string>& env, const std::string& log,
                                              const std::vector<std::string>& drop_prefixes) {
  // Everything the child needs is made before fork: the parent may run threads (a client
  // library's), so only async-signal-safe calls happen between fork and exec.
  const std::string owner = fmt::format("{}={}", kOwnerVar, ::getpid());
  std::vector<std::string> envs;
  auto replaced = [&](std::string_view entry) {
    const auto name_eq = entry.substr(0, entry.find('=') + 1);
    if (owner.starts_with(name_eq)) return true;
    for (auto& e : env)
      if (e.starts_with(name_eq)) return true;
    for (auto& p : drop_prefixes)
      if (entry.starts_with(p)) return true;
    return false;
  };
  for (char** e = environ; e && *e; ++e)
    if (!replaced(*e)) envs.emplace_back(*e);
  envs.insert(envs.end(), env.begin(), env.end());
  envs.push_back(owner);
  std::vector<char*> av, ev;
  for (auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (auto& e : envs) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);

  Fd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out) return sys_error("open", log);
  Fd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null) return sys_error("open", "/dev/null");
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);  // the kernel keeps the CPUs the bench may use
  sigset_t none;
  sigemptyset(&none);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) return sys_error("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    ::dup2(null.get(), 0);
    ::dup2(out.get(), 1);
    ::dup2(out.get(), 2);
    ::sched_setaffinity(0, sizeof all, &all);  // not the parent's pinned CPU: the server runs where it can
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD}) ::sigaction(s, &dfl, nullptr);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(av[0], av.data(), ev.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // from both sides: a stop() right away finds the group
  return std::unique_ptr<Daemon>(new Daemon(std::move(name), pid, log));
}

bool Daemon::running() const { return pid_ > 0 && !exited(pid_); }

bool Daemon::exits_within(std::chrono::milliseconds grace) const {
  for (auto until = std::chrono::steady_clock::now() + grace;; std::this_thread::sleep_for(5ms)) {
    if (!running()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
  }
}

std::unexpected<Error> Daemon::died(const char* op) const {
  std::string how = "exited";
  if (auto info = pid_ > 0 ? exited(pid_) : std::nullopt) {
    if (info->si_code == CLD_EXITED) how = fmt::format("exited with status {}", info->si_status);
    else how = fmt::format("was killed by signal {}", info->si_status);
  }
  auto said = last_line(log_);
  return fail(Errc::closed, op, fmt::format("{} {}{}{}", name_, how, said.empty() ? "" : ": ", said));
}

void Daemon::stop(std::chrono::milliseconds grace) noexcept {
  if (pid_ <= 0) return;
  if (running()) {
    ::kill(-pid_, interrupted() ? SIGKILL : SIGTERM);
    for (auto until = std::chrono::steady_clock::now() + grace; running() && std::chrono::steady_clock::now() < until;) {
      if (interrupted()) break;
      std::this_thread::sleep_for(10ms);
    }
  }
  // The leader is a zombie now (or still running after the grace): nothing of its group outlives
  // it, helpers included. Its pid, hence the group's id, stays taken until it is reaped below.
  ::kill(-pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = 0;
}

Status wait_ready(const Daemon& daemon, std::chrono::milliseconds timeout, const std::function<Status()>& ready) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto r = ready();
    if (r) return r;
    if (interrupted()) return fail(Errc::closed, "start", "interrupted");
    if (!daemon.running()) return daemon.died("start");
    if (std::chrono::steady_clock::now() >= until)
      return fail(Errc::timeout, "start", fmt::format("not ready after {} s: {}", timeout.count() / 1000, describe(r.error())));
    std::this_thread::sleep_for(50ms);
  }
}

Result<int> free_port() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return sys_error("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return sys_error("bind", "127.0.0.1:0");
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return sys_error("getsockname");
  return ntohs(a.sin_port);
}

Status write_file(const std::string& path, const std::string& text, mode_t mode) {
  Fd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!f) return sys_error("open", path);
  for (std::size_t off = 0; off < text.size();) {
    auto n = retry([&] { return ::write(f.get(), text.data() + off, text.size() - off); });
    if (n < 0) return sys_error("write", path);
    off += static_cast<std::size_t>(n);
  }
  return {};
}

Result<std::string> server_from_env() {
  const char* v = std::getenv(kServerVar);
  if (!v || !*v) return fail(Errc::invalid_argument, "echo child", fmt::format("{} not set", kServerVar));
  return std::string(v);
}

}  // namespace ipcx::bench::broker
