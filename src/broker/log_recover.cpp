// Recovery, file by file in name order: check every record (deciding what to do before
// changing anything), then put the file right (truncate a torn tail, remove a half-created
// segment, quarantine and rewrite a damaged one). Then replay the valid records in seq
// order, merging segments whose seq ranges overlap. Copies of one seq that disagree are found
// only while merging; the segment holding the losing copy is rewritten after the replay.
#include "broker/log_recover.hpp"

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <ipcx/fd.hpp>

#include "broker/log_quarantine.hpp"
#include "broker/log_reader.hpp"
#include "os/sys.hpp"

namespace ipcx::broker {
namespace {

enum class Action { keep, truncate, remove, quarantine_whole, repair };

struct Scan {
  SegmentFile file;
  Action action = Action::keep;
  std::uint64_t valid_end = format::segment_header_size;
};

struct Ctx {
  int dirfd;
  const std::string& dir;
  const LogOptions& options;
  RecoveryReport& report;
  Quarantine quarantine;
  std::uint64_t max_seen = 0;
};

Result<std::vector<std::pair<std::uint64_t, std::string>>> list_segments(int dirfd, const std::string& dir) {
  // fdopendir takes its descriptor: give it a fresh one so the caller's (locked) fd stays.
  auto fd = os::check("openat", [&] { return ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (!fd) return std::unexpected(std::move(fd.error()));
  std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(*fd), &::closedir);
  if (!d) {
    int err = errno;
    ::close(*fd);
    return fail_errno(err, "fdopendir", dir);
  }
  std::vector<std::pair<std::uint64_t, std::string>> out;
  for (;;) {
    errno = 0;
    dirent* e = ::readdir(d.get());
    if (!e) {
      if (errno != 0) return fail_errno(errno, "readdir", dir);
      break;
    }
    auto seq = format::parse_segment_name(e->d_name);
    if (!seq) continue;
    // Anything that is not a plain file (a symlink, a directory) is not ours: leave it alone.
    struct stat st{};
    if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
      if (errno == ENOENT) continue;
      return fail_errno(errno, "fstatat", dir + "/" + e->d_name);
    }
    if (S_ISREG(st.st_mode)) out.emplace_back(*seq, e->d_name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string_view header_problem(const format::DecodedSegmentHeader& h, std::uint64_t name_seq, std::string& buf) {
  switch (h.fault) {
    case format::HeaderFault::none:  // intact, but not what its name says
      if (h.header.first_seq == 0) return "bad header (first_seq 0)";
      buf = fmt::format("bad header (first_seq {} does not match the file name's {})", h.header.first_seq, name_seq);
      return buf;
    case format::HeaderFault::incomplete: return "bad header (incomplete)";
    case format::HeaderFault::all_zero: return "bad header (all zero)";
    case format::HeaderFault::magic: return "bad header (magic)";
    case format::HeaderFault::checksum: return "bad header (checksum)";
    case format::HeaderFault::unknown_version:
      buf = h.reserved == 0 ? fmt::format("unknown version {}", h.version)
                            : fmt::format("unknown version {} (reserved field {})", h.version, h.reserved);
      return buf;
  }
  return "bad header";
}

// Decides what to do with one file; changes nothing on disk.
Result<void> scan(Ctx& ctx, Scan& s, bool is_last) {
  auto& f = s.file;
  struct stat st{};
  if (::fstat(f.fd.get(), &st) == -1) return fail_errno(errno, "fstat", ctx.dir + "/" + f.name);
  auto size = static_cast<std::uint64_t>(st.st_size);
  f.info.bytes = size;

  format::SegmentHeaderBytes raw{};
  auto got = format::read_at(f.fd.get(), raw, 0, f.name);
  if (!got) return std::unexpected(std::move(got.error()));
  auto h = format::decode_segment_header(std::span(raw).first(*got));
  f.header = h.header;
  SegmentReader reader(f.fd.get(), f.name, size, ctx.options.max_record);

  bool header_ok = h.fault == format::HeaderFault::none && h.header.first_seq == f.info.first_seq &&
                   h.header.first_seq != 0;
  if (!header_ok) {
    // Nothing here is replayed, but the seqs of any intact record in it count as used.
    std::size_t found = 0;
    auto w = walk(
        reader, 0, 0,
        [&](const RecordAt& r) -> Result<void> {
          ++found;
          ctx.max_seen = std::max(ctx.max_seen, r.header.seq);
          return {};
        },
        [](const Damage&) {});
    if (!w) return w;
    bool half_created = h.fault == format::HeaderFault::incomplete || h.fault == format::HeaderFault::all_zero;
    if (is_last && half_created && found == 0) {
      s.action = Action::remove;
      ctx.report.torn_tail_bytes += size;
      auto what = h.fault == format::HeaderFault::incomplete ? "incomplete header" : "all-zero header";
      f.problem(ctx.report, 0, fmt::format("{} of {} bytes (created just before a crash): removed", what, size));
      return {};
    }
    s.action = Action::quarantine_whole;
    ++ctx.report.corrupt_records;
    std::string buf;
    f.problem(ctx.report, 0,
              fmt::format("{}: whole segment quarantined, nothing replayed", header_problem(h, f.info.first_seq, buf)));
    return {};
  }

  ctx.max_seen = std::max(ctx.max_seen, f.info.first_seq - 1);
  bool mid_damage = false;
  std::optional<Damage> tail;
  auto w = walk(
      reader, format::segment_header_size, f.info.first_seq - 1,
      [&](const RecordAt& r) -> Result<void> {
        f.add_record(r.header.seq);
        ctx.max_seen = std::max(ctx.max_seen, r.header.seq);
        s.valid_end = r.end();
        return {};
      },
      [&](const Damage& d) {
        if (d.reaches_end) {
          tail = d;
          return;
        }
        mid_damage = true;
        ++ctx.report.corrupt_records;
        f.problem(ctx.report, d.from, fmt::format("{} damaged bytes ({}): skipped to the next valid record",
                                                  d.to - d.from, describe(d.fault)));
      });
  if (!w) return w;

  if (is_last && f.info.records == 0) {
    s.action = Action::remove;
    ctx.report.torn_tail_bytes += size;
    if (tail) {
      f.problem(ctx.report, tail->from,
                fmt::format("torn tail of {} bytes ({}; an interrupted append) and no record before it: segment removed",
                            tail->to - tail->from, describe(tail->fault)));
    } else {
      f.problem(ctx.report, 0,
                fmt::format("segment of {} bytes holds no record (created just before a crash): removed", size));
    }
    return {};
  }
  if (tail && is_last) {
    ctx.report.torn_tail_bytes += tail->to - tail->from;
    f.problem(ctx.report, tail->from, fmt::format("torn tail of {} bytes ({}; an interrupted append): cut off",
                                                  tail->to - tail->from, describe(tail->fault)));
  } else if (tail) {
    mid_damage = true;
    ++ctx.report.corrupt_records;
    f.problem(ctx.report, tail->from, fmt::format("{} damaged bytes up to the end of the file ({})",
                                                  tail->to - tail->from, describe(tail->fault)));
  }
  if (mid_damage) s.action = Action::repair;
  else if (tail) s.action = Action::truncate;
  return {};
}

// Carries out scan()'s decision.
Result<void> apply(Ctx& ctx, Scan& s) {
  auto& f = s.file;
  switch (s.action) {
    case Action::keep: return {};
    case Action::truncate: {
      auto path = ctx.dir + "/" + f.name;
      if (auto r = os::check("ftruncate", [&] { return ::ftruncate(f.fd.get(), static_cast<off_t>(s.valid_end)); }); !r) {
        r.error().detail = path;
        return std::unexpected(std::move(r.error()));
      }
      f.info.bytes = s.valid_end;
      if (ctx.options.sync == Sync::none) return {};
      return format::sync_all(f.fd.get(), path);
    }
    case Action::remove:
      if (::unlinkat(ctx.dirfd, f.name.c_str(), 0) == -1) return fail_errno(errno, "unlink", ctx.dir + "/" + f.name);
      return {};
    case Action::quarantine_whole: return ctx.quarantine.move(f, /*rewrite=*/false, {}, ctx.report);
    case Action::repair: return ctx.quarantine.move(f, /*rewrite=*/true, {}, ctx.report);
  }
  return {};
}

bool live(const Scan& s) {
  if (s.action == Action::remove || s.action == Action::quarantine_whole) return false;
  return s.action != Action::repair || s.file.info.records > 0;
}

// One segment of an overlapping group during the replay's merge.
struct Cursor {
  Scan* scan = nullptr;
  Fd fd;
  std::unique_ptr<SegmentReader> reader;
  std::uint64_t pos = format::segment_header_size;
  std::uint64_t after_seq = 0;
  std::optional<RecordAt> head;
};

Error changed(const std::string& name) {
  return Error{Errc::system, 0, "log recovery", name + " changed while being recovered (another writer?)"};
}

Result<void> load_head(Cursor& c) {
  c.head.reset();
  if (c.pos >= c.reader->size()) return {};
  format::RecordHeaderBytes raw;
  auto n = format::read_at(c.fd.get(), raw, c.pos, c.scan->file.name);
  if (!n) return std::unexpected(std::move(n.error()));
  if (*n != raw.size()) return std::unexpected(changed(c.scan->file.name));
  auto h = format::decode_record_header(raw);
  c.head = RecordAt{.offset = c.pos, .header = h};
  return {};
}

Result<void> advance(Cursor& c) {
  c.after_seq = c.head->header.seq;
  c.pos = c.head->end();
  return load_head(c);
}

// Replays one group of segments whose seq ranges overlap (usually a group of one).
Result<void> replay_group(Ctx& ctx, std::vector<Scan*> group, const std::function<void(LogRecord&&)>& replay) {
  // Name order breaks ties: of two copies of a seq, the one in the older-named file wins.
  std::sort(group.begin(), group.end(), [](Scan* a, Scan* b) { return a->file.name < b->file.name; });
  std::vector<Cursor> cursors(group.size());
  for (std::size_t i = 0; i < group.size(); ++i) {
    auto& c = cursors[i];
    c.scan = group[i];
    const auto& name = c.scan->file.name;
    auto fd = os::check("openat", [&] { return ::openat(ctx.dirfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW); });
    if (!fd) {
      fd.error().detail = ctx.dir + "/" + name;
      return std::unexpected(std::move(fd.error()));
    }
    c.fd = Fd(*fd);
    struct stat st{};
    if (::fstat(c.fd.get(), &st) == -1) return fail_errno(errno, "fstat", ctx.dir + "/" + name);
    c.reader = std::make_unique<SegmentReader>(c.fd.get(), name, static_cast<std::uint64_t>(st.st_size),
                                               ctx.options.max_record);
    c.after_seq = c.scan->file.info.first_seq - 1;
    if (auto r = load_head(c); !r) return r;
  }

  std::vector<std::byte> body;
  for (;;) {
    Cursor* best = nullptr;
    for (auto& c : cursors)
      if (c.head && (!best || c.head->header.seq < best->head->header.seq)) best = &c;
    if (!best) return {};
    // scan() checked this record already; checking again as it is read guards against a
    // file changed since then, at no extra I/O.
    auto full = best->reader->check(best->head->offset, best->after_seq, &body);
    if (!full) return std::unexpected(std::move(full.error()));
    if (full->fault != RecordFault::none) return std::unexpected(changed(best->scan->file.name));
    const auto& h = full->record.header;
    for (auto& other : cursors) {
      if (&other == best || !other.head || other.head->header.seq != h.seq) continue;
      const auto& oh = other.head->header;
      bool same = oh.kind == h.kind && oh.crc == h.crc && oh.length == h.length;
      if (same) {
        auto eq = other.reader->body_equals(*other.head, body);
        if (!eq) return std::unexpected(std::move(eq.error()));
        same = *eq;
      }
      // An identical copy (a segment copied by hand, an interrupted copy by some tool) loses
      // nothing: replayed once, not reported.
      if (!same) {
        ++ctx.report.corrupt_records;
        other.scan->file.excluded.push_back(other.head->offset);
        other.scan->file.problem(ctx.report, other.head->offset,
                                 fmt::format("seq {} differs from its copy in {}, which was kept", h.seq,
                                             best->scan->file.name));
      }
      if (auto r = advance(other); !r) return r;
    }
    if (replay) replay(LogRecord{.seq = h.seq, .kind = h.kind, .body = std::move(body)});
    body = {};
    ++ctx.report.records;
    if (auto r = advance(*best); !r) return r;
  }
}

Result<void> replay_all(Ctx& ctx, std::vector<Scan>& scans, const std::function<void(LogRecord&&)>& replay) {
  std::vector<Scan*> order;
  for (auto& s : scans)
    if (live(s) && s.file.info.records > 0) order.push_back(&s);
  std::sort(order.begin(), order.end(), [](Scan* a, Scan* b) {
    return a->file.info.min_seq != b->file.info.min_seq ? a->file.info.min_seq < b->file.info.min_seq
                                                        : a->file.name < b->file.name;
  });
  for (std::size_t i = 0; i < order.size();) {
    std::vector<Scan*> group{order[i]};
    std::uint64_t group_max = order[i]->file.info.max_seq;
    for (++i; i < order.size() && order[i]->file.info.min_seq <= group_max; ++i) {
      group.push_back(order[i]);
      group_max = std::max(group_max, order[i]->file.info.max_seq);
    }
    if (auto r = replay_group(ctx, std::move(group), replay); !r) return r;
  }
  return {};
}

}  // namespace

Result<Recovered> recover(int dirfd, const std::string& dir, const LogOptions& options,
                          const std::function<void(LogRecord&&)>& replay, RecoveryReport& report) {
  Ctx ctx{.dirfd = dirfd, .dir = dir, .options = options, .report = report, .quarantine = Quarantine(dirfd, dir, options)};

  auto names = list_segments(dirfd, dir);
  if (!names) return std::unexpected(std::move(names.error()));
  // One file at a time, start to finish, so a big log never holds a descriptor per segment.
  std::vector<Scan> scans;
  scans.reserve(names->size());
  for (std::size_t i = 0; i < names->size(); ++i) {
    const auto& [seq, name] = (*names)[i];
    auto path = dir + "/" + name;
    auto fd = os::check("openat", [&] { return ::openat(dirfd, name.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW); });
    if (!fd) {
      if (fd.error().sys_errno == ENOENT) continue;
      fd.error().detail = path;
      return std::unexpected(std::move(fd.error()));
    }
    Scan& s = scans.emplace_back();
    s.file.fd = Fd(*fd);
    s.file.name = name;
    s.file.info.name = name;
    s.file.info.first_seq = seq;
    if (auto r = scan(ctx, s, i + 1 == names->size()); !r) return std::unexpected(std::move(r.error()));
    if (auto r = apply(ctx, s); !r) return std::unexpected(std::move(r.error()));
    // Replayed records must be durable even if the crash that preceded this open left them
    // only in the page cache: a consumer acting on them must not see them vanish later.
    if (s.action == Action::keep && options.sync != Sync::none)
      if (auto r = format::sync_data(s.file.fd.get(), path); !r) return std::unexpected(std::move(r.error()));
    s.file.fd.reset();
  }
  if (options.sync != Sync::none)
    if (auto r = format::sync_all(dirfd, dir); !r) return std::unexpected(std::move(r.error()));

  if (auto r = replay_all(ctx, scans, replay); !r) return std::unexpected(std::move(r.error()));

  for (auto& s : scans) {
    if (s.file.excluded.empty()) continue;
    auto path = dir + "/" + s.file.name;
    auto fd = os::check("openat", [&] { return ::openat(dirfd, s.file.name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW); });
    if (!fd) {
      fd.error().detail = path;
      return std::unexpected(std::move(fd.error()));
    }
    s.file.fd = Fd(*fd);
    std::sort(s.file.excluded.begin(), s.file.excluded.end());
    if (auto r = ctx.quarantine.move(s.file, /*rewrite=*/true, s.file.excluded, report); !r)
      return std::unexpected(std::move(r.error()));
    s.file.fd.reset();
    if (s.file.info.records == 0) s.action = Action::quarantine_whole;
  }

  Recovered out;
  out.max_seq = ctx.max_seen;
  for (auto& s : scans)
    if (live(s)) out.segments.push_back(s.file.info);
  report.segments = out.segments.size();
  return out;
}

}  // namespace ipcx::broker
