#include "broker/log.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <optional>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/format.h>

#include <ipcx/fd.hpp>

#include "broker/log_format.hpp"
#include "broker/log_recover.hpp"
#include "os/sys.hpp"

namespace ipcx::broker {
namespace {

// The segment appends go to. Shared with sync(), which fdatasyncs it without the append
// mutex: the descriptor stays open for as long as either needs it.
struct ActiveSegment {
  Fd fd;
  std::string path;  // for error messages; set once
  SegmentInfo info;
};

}  // namespace

struct Log::Impl {
  LogOptions options;
  std::string dir;  // for messages and paths
  Fd dirfd;         // holds the flock for the Log's lifetime

  // Guards everything below except the atomics. Never held across fdatasync.
  mutable std::mutex mu;
  std::vector<SegmentInfo> sealed;  // every segment but the active one, in name order
  std::shared_ptr<ActiveSegment> active;
  std::vector<std::shared_ptr<ActiveSegment>> rolled_unsynced;  // sealed since the last sync()
  bool dir_unsynced = false;  // a segment was created since the last sync()
  std::uint64_t bytes = 0;
  std::optional<Error> broken;  // the I/O error that made the log unusable

  // One fdatasync round at a time: a caller that waited finds its records already covered.
  std::mutex sync_mu;

  std::atomic<std::uint64_t> last_seq{0};
  std::atomic<std::uint64_t> durable_seq{0};
  std::atomic<std::uint64_t> appends{0};
  std::atomic<std::uint64_t> syncs{0};

  std::string path(const std::string& name) const { return dir + "/" + name; }
  Result<void> roll(std::uint64_t first_seq);
  Result<void> write_record(ActiveSegment& seg, std::uint8_t kind, std::uint64_t seq, std::span<const std::byte> body);
  std::unexpected<Error> fail_broken(Error e) {
    broken = e;
    return std::unexpected(std::move(e));
  }
};

// Called with mu held.
Result<void> Log::Impl::roll(std::uint64_t first_seq) {
  auto name = format::segment_name(first_seq);
  auto fd = os::check("openat", [&] {
    return ::openat(dirfd.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  });
  if (!fd) {
    fd.error().detail = path(name);
    return std::unexpected(std::move(fd.error()));
  }
  auto seg = std::make_shared<ActiveSegment>();
  seg->fd = Fd(*fd);
  seg->path = path(name);
  auto header = format::encode_segment_header({.first_seq = first_seq, .created_ms = format::now_unix_ms()});
  if (auto w = format::write_all(seg->fd.get(), header, path(name)); !w) {
    // A segment without its header must not stay: the next open would count it as damage.
    if (::unlinkat(dirfd.get(), name.c_str(), 0) == -1) return fail_broken(std::move(w.error()));
    return w;
  }
  seg->info = {.name = name, .first_seq = first_seq, .bytes = header.size()};
  bytes += header.size();
  if (active) {
    sealed.push_back(active->info);
    if (options.sync != Sync::none) rolled_unsynced.push_back(std::move(active));
  }
  active = std::move(seg);
  dir_unsynced = options.sync != Sync::none;
  return {};
}

// Called with mu held.
Result<void> Log::Impl::write_record(ActiveSegment& seg, std::uint8_t kind, std::uint64_t seq,
                                     std::span<const std::byte> body) {
  auto header = format::encode_record_header(kind, seq, body);
  iovec iov[2] = {{header.data(), header.size()}, {const_cast<std::byte*>(body.data()), body.size()}};
  std::size_t total = header.size() + body.size();
  std::size_t done = 0;
  while (done < total) {
    // Resume after a short write: drop what is already written from the front.
    iovec rest[2];
    int count = 0;
    std::size_t skip = done;
    for (auto& v : iov) {
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      rest[count++] = {static_cast<std::byte*>(v.iov_base) + skip, v.iov_len - skip};
      skip = 0;
    }
    auto n = os::check("writev", [&] { return ::writev(seg.fd.get(), rest, count); });
    if (!n) {
      n.error().detail = seg.path;
      if (done == 0) return std::unexpected(std::move(n.error()));
      // A half-written record followed by later ones would read as damage: cut it off.
      if (::ftruncate(seg.fd.get(), static_cast<off_t>(seg.info.bytes)) == -1) return fail_broken(std::move(n.error()));
      return std::unexpected(std::move(n.error()));
    }
    done += static_cast<std::size_t>(*n);
  }
  seg.info.bytes += total;
  if (seg.info.records == 0) seg.info.min_seq = seq;
  seg.info.max_seq = seq;
  ++seg.info.records;
  bytes += total;
  return {};
}

Log::Log(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Log::Log(Log&&) noexcept = default;
Log& Log::operator=(Log&&) noexcept = default;
Log::~Log() = default;

Result<Log> Log::open(LogOptions options, const std::function<void(LogRecord&&)>& replay, RecoveryReport* report) {
  if (options.dir.empty()) return fail(Errc::invalid_argument, "log open", "no directory");
  if (options.max_record > UINT32_MAX)
    return fail(Errc::invalid_argument, "log open", fmt::format("max_record {} above the format's 4 GiB - 1", options.max_record));
  if (options.segment_bytes == 0) return fail(Errc::invalid_argument, "log open", "segment_bytes is 0");

  auto impl = std::make_unique<Impl>();
  impl->dir = options.dir.string();
  impl->options = std::move(options);
  if (auto r = format::make_dirs(impl->dir); !r) return std::unexpected(std::move(r.error()));
  auto dirfd = os::check("open", [&] { return ::open(impl->dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (!dirfd) {
    dirfd.error().detail = impl->dir;
    return std::unexpected(std::move(dirfd.error()));
  }
  impl->dirfd = Fd(*dirfd);
  // Two writers would interleave records and each "repair" the other's appends as damage.
  if (os::retry([&] { return ::flock(impl->dirfd.get(), LOCK_EX | LOCK_NB); }) == -1) {
    if (errno == EWOULDBLOCK)
      return fail(Errc::address_in_use, "log open", impl->dir + " is open in another Log (this or another process)");
    return fail_errno(errno, "flock", impl->dir);
  }

  RecoveryReport local;
  RecoveryReport& rep = report ? *report : local;
  rep = {};
  auto recovered = recover(impl->dirfd.get(), impl->dir, impl->options, replay, rep);
  if (!recovered) return std::unexpected(std::move(recovered.error()));

  auto& segs = recovered->segments;
  for (const auto& s : segs) impl->bytes += s.bytes;
  // Keep appending to the last segment when it has room; otherwise the first append rolls.
  if (!segs.empty() && segs.back().bytes < impl->options.segment_bytes) {
    const auto& last = segs.back();
    auto fd = os::check("openat", [&] {
      return ::openat(impl->dirfd.get(), last.name.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    });
    if (!fd) {
      fd.error().detail = impl->path(last.name);
      return std::unexpected(std::move(fd.error()));
    }
    impl->active = std::make_shared<ActiveSegment>();
    impl->active->fd = Fd(*fd);
    impl->active->path = impl->path(last.name);
    impl->active->info = last;
    segs.pop_back();
  }
  impl->sealed = std::move(segs);
  impl->last_seq = std::max(recovered->max_seq, impl->options.first_seq == 0 ? 0 : impl->options.first_seq - 1);
  // recover() synced what it replayed (unless Sync::none, where durable follows last anyway).
  impl->durable_seq = impl->last_seq.load();
  return Log(std::move(impl));
}

Result<std::uint64_t> Log::append(std::uint8_t kind, std::span<const std::byte> body) {
  auto& d = *impl_;
  if (kind == 0) return fail(Errc::invalid_argument, "log append", "kind 0");
  if (body.size() > d.options.max_record)
    return fail(Errc::too_large, "log append", fmt::format("{} bytes > max_record {}", body.size(), d.options.max_record));
  std::uint64_t seq;
  {
    std::lock_guard lock(d.mu);
    if (d.broken) return std::unexpected(*d.broken);
    seq = d.last_seq.load(std::memory_order_relaxed);
    if (seq == UINT64_MAX) return fail(Errc::resource_exhausted, "log append", "seq space exhausted");
    ++seq;
    if (!d.active || d.active->info.bytes >= d.options.segment_bytes)
      if (auto r = d.roll(seq); !r) return std::unexpected(std::move(r.error()));
    if (auto r = d.write_record(*d.active, kind, seq, body); !r) return std::unexpected(std::move(r.error()));
    d.last_seq.store(seq, std::memory_order_release);
    d.appends.fetch_add(1, std::memory_order_relaxed);
    if (d.options.sync == Sync::none) d.durable_seq.store(seq, std::memory_order_release);
  }
  if (d.options.sync == Sync::always)
    if (auto r = sync(); !r) return std::unexpected(std::move(r.error()));
  return seq;
}

Result<std::uint64_t> Log::sync() {
  auto& d = *impl_;
  if (d.options.sync == Sync::none) return d.last_seq.load(std::memory_order_acquire);
  std::lock_guard sync_lock(d.sync_mu);
  std::uint64_t target;
  std::vector<std::shared_ptr<ActiveSegment>> files;
  bool dir;
  {
    std::lock_guard lock(d.mu);
    if (d.broken) return std::unexpected(*d.broken);
    target = d.last_seq.load(std::memory_order_relaxed);
    if (d.durable_seq.load(std::memory_order_relaxed) >= target) return target;
    files = std::exchange(d.rolled_unsynced, {});
    if (d.active) files.push_back(d.active);
    dir = std::exchange(d.dir_unsynced, false);
  }
  for (const auto& f : files) {
    if (auto r = format::sync_data(f->fd.get(), f->path); !r) {
      std::lock_guard lock(d.mu);
      return d.fail_broken(std::move(r.error()));
    }
  }
  if (dir) {
    if (auto r = format::sync_all(d.dirfd.get(), d.dir); !r) {
      std::lock_guard lock(d.mu);
      return d.fail_broken(std::move(r.error()));
    }
  }
  d.durable_seq.store(target, std::memory_order_release);
  d.syncs.fetch_add(1, std::memory_order_relaxed);
  return target;
}

std::uint64_t Log::last_seq() const noexcept { return impl_->last_seq.load(std::memory_order_acquire); }
std::uint64_t Log::durable_seq() const noexcept { return impl_->durable_seq.load(std::memory_order_acquire); }

Result<std::size_t> Log::drop_before(std::uint64_t seq) {
  auto& d = *impl_;
  std::size_t dropped = 0;
  {
    std::lock_guard lock(d.mu);
    if (d.broken) return std::unexpected(*d.broken);
    for (auto it = d.sealed.begin(); it != d.sealed.end();) {
      if (it->records > 0 && it->max_seq >= seq) {
        ++it;
        continue;
      }
      if (::unlinkat(d.dirfd.get(), it->name.c_str(), 0) == -1 && errno != ENOENT)
        return fail_errno(errno, "unlink", d.path(it->name));
      d.bytes -= std::min(d.bytes, it->bytes);
      it = d.sealed.erase(it);
      ++dropped;
    }
  }
  // Without this a crash could bring dropped segments back (replayed again: harmless but
  // wasteful). Outside the mutex: appends need not wait for it.
  if (dropped > 0 && d.options.sync != Sync::none)
    if (auto r = format::sync_all(d.dirfd.get(), d.dir); !r) return std::unexpected(std::move(r.error()));
  return dropped;
}

Log::Stats Log::stats() const noexcept {
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  return {.segments = d.sealed.size() + (d.active ? 1 : 0),
          .bytes = d.bytes,
          .appends = d.appends.load(std::memory_order_relaxed),
          .syncs = d.syncs.load(std::memory_order_relaxed)};
}

const std::filesystem::path& Log::dir() const noexcept { return impl_->options.dir; }

}  // namespace ipcx::broker
