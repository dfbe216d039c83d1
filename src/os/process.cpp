#include <ipcx/process.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "os/pidfd.hpp"
#include "os/sys.hpp"

extern char** environ;

namespace {
constexpr std::size_t kMaxFdMappings = 64;  // the child works on a fixed array (no allocation after fork)
}

namespace ipcx {

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)), reaped_(o.reaped_), status_(o.status_) {}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    this->~Process();
    new (this) Process(std::move(o));
  }
  return *this;
}

Process::~Process() {
  if (running()) {
    (void)kill(SIGKILL);
    (void)wait();
  }
}

Result<Process> Process::spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) return fail(Errc::invalid_argument, "spawn", "empty argv");
  if (options.fds.size() > kMaxFdMappings)
    return fail(Errc::invalid_argument, "spawn", fmt::format("{} fd mappings > {}", options.fds.size(), kMaxFdMappings));
  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    bool overridden = false;
    for (auto& add : options.env) {
      auto eq = add.find('=');
      if (eq != std::string::npos && kv.size() > eq && kv.substr(0, eq + 1) == std::string_view(add).substr(0, eq + 1))
        overridden = true;
    }
    if (!overridden) env_store.emplace_back(kv);
  }
  for (auto& add : options.env) env_store.push_back(add);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  // Sources are moved above every target number first, so a mapping never clobbers another's
  // source (nor the error pipe). Just above the highest target: a fixed high number would
  // fail under a low RLIMIT_NOFILE.
  int high = 3;
  for (auto& [child_fd, parent_fd] : options.fds) {
    if (child_fd < 0) return fail(Errc::invalid_argument, "spawn", fmt::format("child fd {}", child_fd));
    high = std::max(high, child_fd + 1);
  }

  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) return fail_errno(errno, "pipe2");
  Fd err_r(errpipe[0]), err_w(errpipe[1]);

  pid_t pid = ::fork();
  if (pid < 0) return fail_errno(errno, "fork");
  if (pid == 0) {
    // Child. The error pipe moves too: a mapping onto its number would swallow the exec
    // failure report.
    int errfd = ::fcntl(err_w.get(), F_DUPFD_CLOEXEC, high);
    if (errfd < 0) errfd = err_w.get();
    int moved[kMaxFdMappings];
    std::size_t n = options.fds.size();
    for (std::size_t i = 0; i < n; ++i) moved[i] = ::fcntl(options.fds[i].second, F_DUPFD_CLOEXEC, high);
    for (std::size_t i = 0; i < n; ++i) {
      if (moved[i] < 0 || ::dup2(moved[i], options.fds[i].first) < 0) {
        int e = errno;
        (void)!::write(errfd, &e, sizeof e);
        ::_exit(127);
      }
    }
    for (std::size_t i = 0; i < n; ++i) ::close(moved[i]);
    if (options.new_process_group) ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // a blocked mask is inherited across exec
    ::signal(SIGPIPE, SIG_DFL);
    ::execvpe(args[0], args.data(), envp.data());
    int e = errno;
    (void)!::write(errfd, &e, sizeof e);
    ::_exit(127);
  }
  err_w.reset();
  Process p;
  p.pid_ = pid;
  p.pidfd_ = Fd(os::pidfd_open(pid));
  int child_errno = 0;
  ssize_t got = os::retry([&] { return ::read(err_r.get(), &child_errno, sizeof child_errno); });
  if (got == static_cast<ssize_t>(sizeof child_errno)) {
    (void)p.wait();
    return fail_errno(child_errno, "spawn", argv[0]);
  }
  if (!p.pidfd_.valid()) return fail_errno(errno, "pidfd_open");
  return p;
}

Result<int> Process::wait(Timeout timeout) {
  if (pid_ <= 0) return fail(Errc::invalid_argument, "wait", "no process");
  if (!reaped_) {
    if (pidfd_.valid()) {
      auto w = os::wait_fd(pidfd_.get(), POLLIN, os::Deadline::after(timeout));
      if (!w) return std::unexpected(w.error());
    }
    int st = 0;
    if (os::retry([&] { return ::waitpid(pid_, &st, 0); }) == -1) return fail_errno(errno, "waitpid");
    reaped_ = true;
    status_ = st;
  }
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return fail(Errc::system, "wait", "unexpected wait status");
}

Result<void> Process::kill(int sig) noexcept {
  if (!running()) return fail(Errc::not_found, "kill", "process not running");
  if (pidfd_.valid()) {
    if (os::pidfd_send_signal(pidfd_.get(), sig) != 0) return fail_errno(errno, "pidfd_send_signal");
    return {};
  }
  // No pidfd (pidfd_open failed): the pid is still ours, it cannot be recycled before we reap it.
  if (::kill(pid_, sig) != 0) return fail_errno(errno, "kill");
  return {};
}

}  // namespace ipcx

namespace ipcx::os {

std::optional<std::uint64_t> process_start_time(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) is in parentheses and may hold spaces and ')': skip to the last.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  std::uint64_t start = 0;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 3 && (field == "Z" || field == "X")) return std::nullopt;  // dead, not yet reaped
    if (i == 22) start = std::strtoull(field.c_str(), nullptr, 10);
  }
  if (start == 0) return std::nullopt;
  return start;
}

}  // namespace ipcx::os
