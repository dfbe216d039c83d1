// 64-byte round trips, two processes pinned to different CPUs, in one run:
//   raw       blocking write + read on a Unix stream socket, an echo loop on the other side
//   engine    ipcx::Connection send + recv against the server engine echoing (Session::send)
//   reqrep    ipcx::Requester::request against an ipcx::Replier echoing
// Prints the median round trip of each (ns) and the ratios to raw. Not a test: a measurement.
//   ipcx-reqrep-pingpong [round trips per pass, default 20000] [passes, default 5]
#include <algorithm>
#include <atomic>
#include <new>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ipcx/ipcx.hpp>

#ifdef IPCX_PINGPONG_ZMQ
#include <zmq.h>
#endif

// Allocations made by this process (operator new), to show the requester's steady state.
static std::atomic<long> g_allocs{0};
void* operator new(std::size_t n) {
  ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

long g_reqrep_allocs = 0;  // during the timed loop of the last reqrep pass

using Clock = std::chrono::steady_clock;
constexpr std::size_t kSize = 64;

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)), &set);
  ::sched_setaffinity(0, sizeof set, &set);
}

bool full(int fd, char* p, std::size_t n, bool write) {
  while (n) {
    ssize_t k = write ? ::write(fd, p, n) : ::read(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

double raw_pass(long n) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) std::abort();
  pid_t pid = ::fork();
  if (pid == 0) {
    pin(1);
    ::close(sv[0]);
    char buf[kSize];
    while (full(sv[1], buf, kSize, false) && full(sv[1], buf, kSize, true)) {
    }
    ::_exit(0);
  }
  ::close(sv[1]);
  pin(0);
  char buf[kSize] = {};
  for (int i = 0; i < 1000; ++i) full(sv[0], buf, kSize, true), full(sv[0], buf, kSize, false);
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    full(sv[0], buf, kSize, true);
    full(sv[0], buf, kSize, false);
  }
  auto ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(n);
  ::close(sv[0]);
  ::waitpid(pid, nullptr, 0);
  return ns;
}

// Forks a server process on CPU 1 bound at `url`; `serve` never returns.
template <class Serve>
pid_t serve_in_child(Serve serve) {
  pid_t pid = ::fork();
  if (pid == 0) {
    pin(1);
    serve();
    ::_exit(0);
  }
  return pid;
}

ipcx::Connection connect_retry(const std::string& url) {
  for (int i = 0; i < 5000; ++i) {
    if (auto c = ipcx::connect(url, {}, std::chrono::seconds(1))) return std::move(*c);
    ::usleep(1000);
  }
  std::fprintf(stderr, "cannot connect to %s\n", url.c_str());
  std::exit(1);
}

double engine_pass(long n, const std::string& url) {
  pid_t pid = serve_in_child([&] {
    ipcx::Server::Handlers h;
    h.on_message = [](ipcx::Session& s, ipcx::Message& m) { (void)s.send(m.bytes()); };
    auto srv = ipcx::Server::create(std::move(h)).value();
    srv.add_listener(ipcx::listen(url).value()).value();
    (void)srv.run();
  });
  pin(0);
  auto c = connect_retry(url);
  std::vector<std::byte> out(kSize);
  ipcx::Message in;
  for (int i = 0; i < 1000; ++i) (void)c.send(out), (void)c.recv(in);
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) {
    if (!c.send(out) || !c.recv(in)) std::abort();
  }
  auto ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(n);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return ns;
}

double reqrep_pass(long n, const std::string& url) {
  pid_t pid = serve_in_child([&] {
    auto rep = ipcx::Replier::bind(url, [](ipcx::Request& r) { (void)r.reply(r.payload); }).value();
    (void)rep.run();
  });
  pin(0);
  ipcx::Result<ipcx::Requester> req = std::unexpected(ipcx::Error{});
  for (int i = 0; i < 5000 && !req; ++i) {
    req = ipcx::Requester::connect(url);
    if (!req) ::usleep(1000);
  }
  if (!req) std::abort();
  std::vector<std::byte> out(kSize);
  ipcx::Message in;
  for (int i = 0; i < 1000; ++i) (void)req->request(out, in);
  const long allocs_before = g_allocs.load();
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i)
    if (!req->request(out, in)) std::abort();
  g_reqrep_allocs = g_allocs.load() - allocs_before;
  auto ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(n);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return ns;
}

#ifdef IPCX_PINGPONG_ZMQ
// ZeroMQ REQ/REP over ipc:// (a Unix socket), for comparison.
double zmq_pass(long n, const std::string& endpoint) {
  pid_t pid = serve_in_child([&] {
    void* ctx = zmq_ctx_new();
    void* rep = zmq_socket(ctx, ZMQ_REP);
    if (zmq_bind(rep, endpoint.c_str()) != 0) std::abort();
    char buf[kSize];
    for (;;) {
      int k = zmq_recv(rep, buf, sizeof buf, 0);
      if (k < 0 || zmq_send(rep, buf, static_cast<std::size_t>(k), 0) < 0) break;
    }
  });
  pin(0);
  void* ctx = zmq_ctx_new();
  void* req = zmq_socket(ctx, ZMQ_REQ);
  if (zmq_connect(req, endpoint.c_str()) != 0) std::abort();
  char buf[kSize] = {};
  for (int i = 0; i < 1000; ++i) zmq_send(req, buf, kSize, 0), zmq_recv(req, buf, kSize, 0);
  auto t0 = Clock::now();
  for (long i = 0; i < n; ++i)
    if (zmq_send(req, buf, kSize, 0) < 0 || zmq_recv(req, buf, kSize, 0) < 0) std::abort();
  auto ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(n);
  int zero = 0;
  zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero);
  zmq_close(req);
  zmq_ctx_term(ctx);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return ns;
}
#endif

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 20000;
  const int passes = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string dir = "/tmp/ipcx-test-pingpong-" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0700);
  std::vector<double> raw, engine, reqrep, zmq;
  for (int p = 0; p < passes; ++p) {  // interleaved, so drift on a busy machine hits all three
    raw.push_back(raw_pass(n));
    engine.push_back(engine_pass(n, "unix://" + dir + "/e" + std::to_string(p) + ".sock"));
    reqrep.push_back(reqrep_pass(n, "unix://" + dir + "/r" + std::to_string(p) + ".sock"));
#ifdef IPCX_PINGPONG_ZMQ
    zmq.push_back(zmq_pass(n, "ipc://" + dir + "/z" + std::to_string(p) + ".sock"));
#endif
  }
  const double r = median(raw), e = median(engine), q = median(reqrep);
  std::printf("64 B round trip, median of %d passes x %ld (ns): raw %.0f  engine-echo %.0f  reqrep %.0f\n", passes, n, r, e, q);
  std::printf("ratios to raw: engine-echo %.3f  reqrep %.3f\n", e / r, q / r);
  if (!zmq.empty()) {
    const double z = median(zmq);
    std::printf("zeromq REQ/REP (ipc://) %.0f ns: %.3f x raw; reqrep / zeromq %.3f\n", z, z / r, q / z);
  }
  std::printf("requester allocations during the last timed loop: %ld for %ld requests\n", g_reqrep_allocs, n);
  for (int p = 0; p < passes; ++p)
    std::printf("  pass %d: raw %.0f engine %.0f reqrep %.0f\n", p, raw[p], engine[p], reqrep[p]);
  std::string rm = "rm -rf " + dir;
  return std::system(rm.c_str()) == 0 ? 0 : 1;
}
