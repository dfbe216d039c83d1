#include "transport/sysv/watch.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "os/eventfd.hpp"
#include "transport/sysv/msg.hpp"
#include "transport/sysv/protocol.hpp"

namespace ipcx::sysv::detail {
namespace {

struct Entry {
  Fd pidfd;
  int qid;
  long type;
  bool dead = false;  // woken already (or retrying because the queue was full)
};

struct Exit {
  Fd pidfd;
  std::vector<std::pair<int, long>> types;  // (qid, type) to empty when the process exits
};

struct Watch {
  std::mutex mu;
  std::map<std::uint64_t, Entry> entries;
  std::map<pid_t, Exit> exits;
  std::uint64_t next = 1;
  os::EventFd ev;  // tells the thread the set changed
  pid_t owner = 0;   // the process whose thread this is (a forked child starts its own)

  void run() {
    const std::byte wake[] = {std::byte(proto::Kind::wake)};
    for (;;) {
      std::vector<pollfd> fds{{ev.fd(), POLLIN, 0}};
      std::vector<std::uint64_t> ids{0};
      bool retrying = false;
      {
        std::lock_guard lk(mu);
        for (auto& [id, e] : entries) {
          if (e.dead) {
            retrying = true;
            continue;
          }
          fds.push_back({e.pidfd.get(), POLLIN, 0});
          ids.push_back(id);
        }
        for (auto& [pid, x] : exits) fds.push_back({x.pidfd.get(), POLLIN, 0});
      }
      // A wake that did not fit a full queue is tried again every 10 ms.
      int n = ::poll(fds.data(), fds.size(), retrying ? 10 : -1);
      if (n < 0 && errno != EINTR) return;
      (void)ev.drain();
      std::lock_guard lk(mu);
      for (auto it = exits.begin(); it != exits.end();) {
        pollfd p{it->second.pidfd.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) {
          ++it;
          continue;
        }
        std::vector<std::byte> junk;
        for (auto [qid, type] : it->second.types)
          while (recv(qid, type, junk, os::Deadline::now(), "purge", "queue")) {
          }
        it = exits.erase(it);
      }
      for (std::size_t i = 1; i < ids.size(); ++i)
        if (fds[i].revents) {
          auto it = entries.find(ids[i]);
          if (it != entries.end()) it->second.dead = true;
        }
      for (auto it = entries.begin(); it != entries.end();) {
        if (!it->second.dead) {
          ++it;
          continue;
        }
        auto r = send(it->second.qid, it->second.type, wake, {}, os::Deadline::now(), "wake", "queue");
        if (!r && r.error().code == Errc::would_block) {
          ++it;
          continue;
        }
        it = entries.erase(it);  // sent, or the queue is gone
      }
    }
  }
};

Watch* instance() {
  static std::mutex mu;
  static Watch* w = nullptr;
  std::lock_guard lk(mu);
  if (w && w->owner == ::getpid()) return w;
  // First use in this process (or in a forked child, where the parent's thread does not run):
  // a new watch; a child's copy of the parent's is left alone.
  auto ev = os::EventFd::create();
  if (!ev) return nullptr;
  auto* fresh = new Watch;  // lives as long as the process: its thread may run until exit
  fresh->ev = std::move(*ev);
  fresh->owner = ::getpid();
  try {
    std::thread([fresh] { fresh->run(); }).detach();
  } catch (...) {
    delete fresh;
    return nullptr;
  }
  w = fresh;
  return w;
}

}  // namespace

std::uint64_t watch_peer(int pidfd, int qid, long type) noexcept {
  if (pidfd < 0) return 0;
  auto* w = instance();
  if (!w) return 0;
  Fd dup(::fcntl(pidfd, F_DUPFD_CLOEXEC, 0));
  if (!dup) return 0;
  std::uint64_t id;
  {
    std::lock_guard lk(w->mu);
    id = w->next++;
    w->entries.emplace(id, Entry{.pidfd = std::move(dup), .qid = qid, .type = type});
  }
  (void)w->ev.signal();
  return id;
}

void purge_on_exit(int pidfd, pid_t pid, int qid, std::initializer_list<long> types) noexcept {
  if (pidfd < 0) return;
  auto* w = instance();
  if (!w) return;
  try {
    std::lock_guard lk(w->mu);
    auto it = w->exits.find(pid);
    if (it == w->exits.end()) {
      Fd dup(::fcntl(pidfd, F_DUPFD_CLOEXEC, 0));
      if (!dup) return;
      it = w->exits.emplace(pid, Exit{.pidfd = std::move(dup)}).first;
    }
    for (long t : types) it->second.types.emplace_back(qid, t);
  } catch (...) {
    return;  // out of memory: those messages stay until the queue is removed
  }
  (void)w->ev.signal();
}

void unwatch_peer(std::uint64_t id) noexcept {
  if (id == 0) return;
  auto* w = instance();
  if (!w) return;
  {
    std::lock_guard lk(w->mu);
    w->entries.erase(id);
  }
  (void)w->ev.signal();
}

}  // namespace ipcx::sysv::detail
