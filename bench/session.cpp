#include "bench/session.hpp"

#include <csignal>
#include <cstring>
#include <utility>

#include <dirent.h>
#include <pthread.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

namespace ipcx::bench {
namespace {

volatile std::sig_atomic_t g_child_exited = 0;
volatile std::sig_atomic_t g_wake_signo = 0;
volatile std::sig_atomic_t g_interrupted = 0;
// The watched children's pidfds (-1: a free slot): a signal through one never hits a recycled pid.
volatile std::sig_atomic_t g_child_pidfds[WatchedChildren::kMax] = {-1, -1, -1, -1, -1, -1, -1, -1};
// The System V queue of the measurement in progress (0: none), removed on an interrupt.
volatile std::sig_atomic_t g_sysv_key = 0;

void kill_children() noexcept {
  for (auto& slot : g_child_pidfds)
    if (int fd = slot; fd >= 0) ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
}

void on_sigchld(int) {
  int saved = errno;
  g_child_exited = 1;
  if (int s = g_wake_signo) {
    sigval v{};
    v.sival_int = kWake;
    ::sigqueue(::getpid(), s, v);  // async-signal-safe
  }
  errno = saved;
}

void on_interrupt(int sig) {
  int saved = errno;
  g_interrupted = sig;
  kill_children();
  // A parent blocked in msgsnd on a full queue (or msgrcv on an empty one) has no peer to lose:
  // removing the queue wakes it (EIDRM), so that the run unwinds. msgget and msgctl are plain
  // system calls.
  if (int key = g_sysv_key; key != 0)
    if (int id = ::msgget(key, 0); id >= 0) ::msgctl(id, IPC_RMID, nullptr);
  errno = saved;
}

}  // namespace

bool child_exited() noexcept { return g_child_exited != 0; }
bool is_wake(std::int32_t value) noexcept { return g_child_exited && value == kWake; }
int interrupted() noexcept { return g_interrupted; }
void sysv_queue_in_use(int key) noexcept { g_sysv_key = key; }

Status pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) return sys_error("sched_setaffinity", fmt::format("cpu {}", cpu));
  return {};
}

Status block_signals(std::span<const int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  if (int e = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); e != 0) return fail_errno(e, "pthread_sigmask");
  return {};
}

void drain_signals(std::span<const int> signals) {
  if (signals.empty()) return;
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  timespec zero{};
  while (::sigtimedwait(&set, nullptr, &zero) > 0 || errno == EINTR) {
  }
}

// ---- Session ----------------------------------------------------------------------------------

Session::Session() {
  ::sched_getaffinity(0, sizeof affinity_, &affinity_);
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask_);
  ::sigaction(SIGCHLD, nullptr, &old_chld_);
  ::sigaction(SIGPIPE, nullptr, &old_pipe_);
  ::sigaction(SIGINT, nullptr, &old_int_);
  ::sigaction(SIGTERM, nullptr, &old_term_);
  ::sigaction(SIGHUP, nullptr, &old_hup_);
  g_interrupted = 0;
  struct sigaction sa {};
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_interrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  // A closed terminal, unless the bench was started to survive one (nohup: SIGHUP ignored).
  if (old_hup_.sa_handler != SIG_IGN) ::sigaction(SIGHUP, &sa, nullptr);
  sa.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &sa, nullptr);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  ::sigaction(SIGCHLD, &sa, nullptr);
}

Session::~Session() {
  drain_signals(blocked_);  // a queued real-time signal would kill us once unblocked
  ::pthread_sigmask(SIG_SETMASK, &mask_, nullptr);
  ::sigaction(SIGCHLD, &old_chld_, nullptr);
  ::sigaction(SIGPIPE, &old_pipe_, nullptr);
  ::sigaction(SIGINT, &old_int_, nullptr);
  ::sigaction(SIGTERM, &old_term_, nullptr);
  ::sigaction(SIGHUP, &old_hup_, nullptr);
  ::sched_setaffinity(0, sizeof affinity_, &affinity_);
}

Status Session::pin() {
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
    if (CPU_ISSET(c, &affinity_)) cpus.push_back(c);
  if (cpus.empty()) return fail(Errc::system, "sched_getaffinity", "no CPU allowed");
  parent_cpu_ = cpus[0];
  child_cpu_ = cpus.back();
  return pin_to(parent_cpu_);
}

Status Session::block(std::vector<int> signals) {
  if (auto r = block_signals(signals); !r) return r;
  blocked_ = std::move(signals);
  return {};
}

// ---- WatchedChildren --------------------------------------------------------------------------

WatchedChildren::WatchedChildren(int wake_signo) noexcept {
  g_child_exited = 0;
  g_wake_signo = wake_signo;
  processes_.reserve(kMax);  // adopt() must not allocate after a child started
}

WatchedChildren::~WatchedChildren() {
  // Forget the pidfds before the Process members close them (then kill and reap the children).
  for (auto& slot : g_child_pidfds) slot = -1;
  g_wake_signo = 0;
}

void WatchedChildren::adopt(Process p) noexcept {
  if (processes_.size() == kMax) return;  // ~Process kills and reaps it
  processes_.push_back(std::move(p));
  g_child_pidfds[processes_.size() - 1] = processes_.back().pidfd();
  if (g_interrupted) kill_children();  // the interrupt came while the children were being started
}

// ---- RunDir -----------------------------------------------------------------------------------

Result<RunDir> RunDir::create() {
  RunDir d;
  d.path_ = fmt::format("/tmp/ipcx-bench-{}", ::getpid());
  if (::mkdir(d.path_.c_str(), 0700) != 0) {
    if (errno != EEXIST) return sys_error("mkdir", d.path_);
    // Left by an earlier run with our pid: reuse it only if it is really ours.
    struct stat st {};
    if (::lstat(d.path_.c_str(), &st) != 0) return sys_error("lstat", d.path_);
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
      return fail(Errc::permission_denied, "mkdir", d.path_ + " exists and is not our directory");
    d.empty();
  }
  d.made_ = true;
  return d;
}

RunDir::RunDir(RunDir&& o) noexcept : path_(std::move(o.path_)), made_(std::exchange(o.made_, false)) {}

RunDir::~RunDir() {
  if (!made_) return;
  empty();
  ::rmdir(path_.c_str());
}

void RunDir::empty() {
  DIR* dir = ::opendir(path_.c_str());
  if (!dir) return;
  while (auto* e = ::readdir(dir))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ::unlinkat(::dirfd(dir), e->d_name, 0);
  ::closedir(dir);
}

}  // namespace ipcx::bench
