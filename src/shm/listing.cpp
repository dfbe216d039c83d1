// shm::list(): what `ipcx shm ls` shows. Reads other processes' segments without trusting
// them: read-only mappings of files this user owns, and a private copy of the header that is
// checked field by field before anything in it is used.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/sysmacros.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include <ipcx/segment.hpp>
#include <ipcx/shm_queue.hpp>

#include "os/pidfd.hpp"
#include "shm/event_layout.hpp"
#include "shm/internal.hpp"
#include "shm/lifetime.hpp"
#include "shm/queue_layout.hpp"
#include "shm/state_layout.hpp"
#include "shm/zerocopy_layout.hpp"

namespace ipcx::shm {
namespace internal {

std::optional<std::string> field_string(const char* field, std::size_t capacity) {
  const void* nul = std::memchr(field, '\0', capacity);
  if (!nul || nul == field) return std::nullopt;
  return std::string(field, static_cast<const char*>(nul));
}

bool entry_in_bounds(const layout::Entry& e, std::uint64_t total) noexcept {
  return e.offset >= layout::kHeapBegin + layout::kBlockHeader && e.offset < total && e.size > 0 &&
         e.size <= total - e.offset && e.size == e.type_size && e.type_align != 0 &&
         (e.type_align & (e.type_align - 1)) == 0 && e.offset % e.type_align == 0;
}

}  // namespace internal

namespace {

// How old a file without its magic must be before gc takes its creator for dead: creators write
// it within milliseconds of creating the file, and claim the file meanwhile (lifetime).
constexpr std::chrono::seconds kUnfinishedAge{10};

// A state file: its header's fields as state.cpp checks them (a private copy, by pread).
void describe_state(int fd, const struct stat& st, SegmentInfo& info) {
  namespace S = state_layout;
  std::byte raw[sizeof(S::Header)];
  if (::pread(fd, raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) return;
  std::uint32_t version = 0, slots = 0;
  std::uint64_t total = 0, capacity = 0;
  std::memcpy(&version, raw + offsetof(S::Header, version), 4);
  std::memcpy(&slots, raw + offsetof(S::Header, slots), 4);
  std::memcpy(&total, raw + offsetof(S::Header, total_size), 8);
  std::memcpy(&capacity, raw + offsetof(S::Header, capacity), 8);
  info.valid = version == S::kVersion && slots == S::kSlots && total == static_cast<std::uint64_t>(st.st_size) &&
               capacity > 0 && S::file_bytes(capacity) <= total;
  info.writer_alive = lifetime::writer_alive(fd);
}

// An event file: its header as event.cpp checks it, and its live listeners (slot claims held).
void describe_event(int fd, const struct stat& st, SegmentInfo& info) {
  namespace E = event_layout;
  std::byte raw[sizeof(E::Header)];
  if (::pread(fd, raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) return;
  std::uint32_t version = 0, slots = 0;
  std::uint64_t total = 0, slot_size = 0;
  std::memcpy(&version, raw + offsetof(E::Header, version), 4);
  std::memcpy(&slots, raw + offsetof(E::Header, max_listeners), 4);
  std::memcpy(&total, raw + offsetof(E::Header, total_size), 8);
  std::memcpy(&slot_size, raw + offsetof(E::Header, slot_size), 8);
  info.valid = version == E::kVersion && slot_size == sizeof(E::Slot) && slots > 0 && slots <= kMaxEventListeners &&
               total == static_cast<std::uint64_t>(st.st_size) && E::file_bytes(slots) <= total;
  if (!info.valid) return;
  for (std::uint32_t i = 0; i < slots; ++i) info.listeners += lifetime::writer_alive(fd, static_cast<off_t>(1 + i));
}

// A shared queue: its header as queue.cpp checks it, whether its reader lives, and its writers.
void describe_queue(int fd, const struct stat& st, SegmentInfo& info) {
  namespace Q = queue_layout;
  std::byte raw[sizeof(Q::Header)];
  if (::pread(fd, raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw)) return;
  std::uint32_t version = 0, slots = 0, max_message = 0, writers = 0;
  std::uint64_t total = 0;
  std::memcpy(&version, raw + offsetof(Q::Header, version), 4);
  std::memcpy(&total, raw + offsetof(Q::Header, total_size), 8);
  std::memcpy(&slots, raw + offsetof(Q::Header, slots), 4);
  std::memcpy(&max_message, raw + offsetof(Q::Header, max_message), 4);
  std::memcpy(&writers, raw + offsetof(Q::Header, max_writers), 4);
  // The bounds first: the size computed from them cannot overflow.
  info.valid = version == Q::kVersion && total == static_cast<std::uint64_t>(st.st_size) && slots >= 2 &&
               slots <= kMaxQueueSlots && (slots & (slots - 1)) == 0 && writers >= 1 && writers <= Q::kMaxWriters &&
               max_message >= 1 && max_message <= kMaxQueueMessage && Q::file_bytes(slots, max_message, writers) <= total;
  if (!info.valid) return;
  info.writer_alive = lifetime::writer_alive(fd);
  for (std::uint32_t i = 0; i < writers; ++i) info.listeners += lifetime::writer_alive(fd, static_cast<off_t>(1 + i));
}

void describe(int fd, const struct stat& st, SegmentInfo& info) {
  auto size = static_cast<std::uint64_t>(st.st_size);
  std::uint64_t magic = 0;
  if (::pread(fd, &magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic)) return;
  if (magic == state_layout::kMagic) {
    info.kind = "state";
    describe_state(fd, st, info);
    return;
  }
  if (magic == zc_layout::kTopicMagic || magic == zc_layout::kDataMagic) {
    // Checked as thoroughly as a subscriber does when it maps one: here only their kind and
    // holders matter (gc), and a header's version.
    info.kind = magic == zc_layout::kTopicMagic ? "topic" : "topic-data";
    std::uint32_t version = 0;
    std::uint64_t total = 0;
    info.valid = ::pread(fd, &version, 4, 8) == 4 && ::pread(fd, &total, 8, 16) == 8 && version == zc_layout::kVersion &&
                 total == static_cast<std::uint64_t>(st.st_size);
    if (info.valid && magic == zc_layout::kTopicMagic) {
      std::uint32_t pubs = 0;
      if (::pread(fd, &pubs, 4, 24) == 4 && pubs <= 64)
        for (std::uint32_t i = 0; i < pubs; ++i) info.listeners += lifetime::writer_alive(fd, static_cast<off_t>(1 + i));
    }
    return;
  }
  if (magic == queue_layout::kMagic) {
    info.kind = "queue";
    describe_queue(fd, st, info);
    return;
  }
  if (magic == event_layout::kMagic) {
    info.kind = "event";
    describe_event(fd, st, info);
    return;
  }
  if (magic != layout::kMagic) return;
  info.kind = "segment";
  if (size < sizeof(layout::Header)) return;
  // A private copy read with pread, not through a mapping: the owner may change the header
  // while we read it, and a file truncated meanwhile must give a short read, not SIGBUS.
  // (Raw bytes: a Header holds a Mutex, which must not be constructed or destroyed here.)
  auto copy = std::make_unique<std::byte[]>(sizeof(layout::Header));
  if (::pread(fd, copy.get(), sizeof(layout::Header), 0) != static_cast<ssize_t>(sizeof(layout::Header))) return;
  const auto* h = reinterpret_cast<const layout::Header*>(copy.get());
  std::memcpy(&magic, copy.get(), sizeof magic);
  if (magic != layout::kMagic || h->version != layout::kVersion || h->header_size != sizeof(layout::Header) ||
      h->total_size != size)
    return;
  info.valid = true;
  if (auto n = internal::field_string(h->name, sizeof h->name)) info.name = *n;
  info.creator = h->creator_pid;
  auto now = os::process_start_time(h->creator_pid);
  info.creator_alive = now && *now == h->creator_start;
  for (const auto& e : h->directory) {
    if (e.state != layout::entry_ready || !internal::entry_in_bounds(e, size)) continue;
    auto n = internal::field_string(e.name, sizeof e.name);
    if (!n) continue;
    info.objects.push_back({.name = *n, .offset = e.offset, .size = e.size});
  }
}

// Who holds each file: /proc/locks lines "N: FLOCK  ADVISORY  READ  PID MAJ:MIN:INODE ...",
// keyed by "MAJ:MIN:INODE" as the kernel prints it (hex device numbers, decimal inode).
std::map<std::string, std::vector<pid_t>> flock_holders() {
  std::map<std::string, std::vector<pid_t>> out;
  std::ifstream in("/proc/locks");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string n, kind, mode, access, pid, id;
    f >> n >> kind;
    if (kind == "->") continue;  // waiting, not holding
    f >> mode >> access >> pid >> id;
    if (kind != "FLOCK") continue;
    out[id].push_back(static_cast<pid_t>(std::strtol(pid.c_str(), nullptr, 10)));
  }
  return out;
}

std::string lock_id(const struct stat& st) {
  return fmt::format("{:02x}:{:02x}:{}", major(st.st_dev), minor(st.st_dev), st.st_ino);
}

}  // namespace

Result<std::vector<SegmentInfo>> list() {
  const auto holders = flock_holders();
  std::string prefix = fmt::format("ipcx-{}-", ::geteuid());
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir("/dev/shm"), ::closedir);
  if (!dir) return fail_errno(errno, "opendir", "/dev/shm");
  int dfd = ::dirfd(dir.get());
  std::vector<SegmentInfo> out;
  while (dirent* d = ::readdir(dir.get())) {
    std::string_view file = d->d_name;
    if (!file.starts_with(prefix) || file.size() == prefix.size()) continue;
    SegmentInfo info;
    info.path = fmt::format("/dev/shm/{}", file);
    info.name = std::string(file.substr(prefix.size()));
    // O_NONBLOCK: a FIFO planted here must not hang the listing.
    int fd = ::openat(dfd, d->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      out.push_back(std::move(info));
      continue;
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0) {
      info.size = static_cast<std::size_t>(st.st_size);
      info.mode = st.st_mode & 07777;
      if (auto h = holders.find(lock_id(st)); h != holders.end()) info.holders = h->second;
      // Only regular files this user owns are read: someone else may squat on our prefix.
      if (S_ISREG(st.st_mode) && st.st_uid == ::geteuid()) describe(fd, st, info);
    }
    ::close(fd);
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const SegmentInfo& a, const SegmentInfo& b) { return a.path < b.path; });
  return out;
}

Result<std::vector<std::string>> collect_garbage() {
  auto all = list();
  if (!all) return std::unexpected(all.error());
  std::vector<std::string> removed;
  std::set<std::string> held;
  for (const auto& info : *all)
    if (!info.holders.empty()) held.insert(info.path);
  for (const auto& info : *all) {
    // A file whose creator died before writing its magic (empty, or zeros where the magic goes)
    // is removed once it is old enough that no creator can still be working on it.
    const bool unfinished = info.kind.empty() && info.holders.empty();
    if ((!info.valid && !unfinished) || (info.kind == "segment" && info.creator_alive)) continue;
    // A publisher's data file is kept while its topic has users: a closed publisher leaves it
    // for subscribers that have not read it yet.
    if (info.kind == "topic-data" && held.contains(info.path.substr(0, info.path.rfind('@')))) continue;
    const int fd = ::open(info.path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st {};
    // The same checks as the listing, on the file we opened (the name may have changed hands).
    bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid();
    if (ok && info.kind == "queue") {
      // A queue that holds messages is a mailbox waiting for its reader, not garbage.
      std::uint64_t tail = 0, head = 0;
      ok = ::pread(fd, &tail, 8, offsetof(queue_layout::Header, tail)) == 8 &&
           ::pread(fd, &head, 8, offsetof(queue_layout::Header, head)) == 8 && tail == head;
    }
    if (ok && unfinished) {
      std::uint64_t magic = 0;
      const ssize_t n = ::pread(fd, &magic, sizeof magic, 0);
      const bool blank = (n == 0 && st.st_size == 0) || (n == static_cast<ssize_t>(sizeof magic) && magic == 0);
      const auto age = std::chrono::system_clock::now() -
                       std::chrono::system_clock::time_point(std::chrono::seconds(st.st_mtim.tv_sec));
      ok = blank && age > kUnfinishedAge && !lifetime::writer_alive(fd);
    }
    if (ok && lifetime::remove_if_unused(fd, info.path)) removed.push_back(info.path);
    ::close(fd);
  }
  return removed;
}

}  // namespace ipcx::shm
