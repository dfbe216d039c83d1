#include "broker/log_quarantine.hpp"

#include <algorithm>
#include <cerrno>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "broker/log_reader.hpp"
#include "os/sys.hpp"

namespace ipcx::broker {
namespace {

constexpr std::size_t kMaxProblemsPerFile = 32;
constexpr const char* kQuarantine = "quarantine";

Result<Fd> create_at(int dirfd, const std::string& name, int flags, const std::string& path) {
  auto fd = os::check("openat", [&] {
    return ::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | flags, 0600);
  });
  if (!fd) {
    fd.error().detail = path;
    return std::unexpected(std::move(fd.error()));
  }
  return Fd(*fd);
}

// Filesystems without hard links get a copy instead.
bool link_unsupported(int err) {
  return err == EXDEV || err == EPERM || err == EMLINK || err == ENOTSUP || err == EOPNOTSUPP;
}

Result<void> copy_file(int from, int to, const std::string& from_name, const std::string& to_name) {
  std::vector<std::byte> buf(64 * 1024);
  for (std::uint64_t at = 0;;) {
    auto n = format::read_at(from, buf, at, from_name);
    if (!n) return std::unexpected(std::move(n.error()));
    if (*n == 0) return {};
    if (auto w = format::write_all(to, std::span(buf).first(*n), to_name); !w) return w;
    at += *n;
  }
}

}  // namespace

void SegmentFile::add_record(std::uint64_t seq) noexcept {
  if (info.records == 0 || seq < info.min_seq) info.min_seq = seq;
  if (info.records == 0 || seq > info.max_seq) info.max_seq = seq;
  ++info.records;
}

void SegmentFile::problem(RecoveryReport& report, std::uint64_t offset, std::string what) {
  if (problems.size() == kMaxProblemsPerFile) {
    ++problems_dropped;
    return;
  }
  auto line = fmt::format("{} at offset {}: {}", name, offset, what);
  if (problems.size() + 1 == kMaxProblemsPerFile) line += " (further problems in this file not listed)";
  report.problems.push_back(line);
  problems.push_back(std::move(line));
}

Result<void> Quarantine::sync_data(int fd, const std::string& what) const {
  if (options_->sync == Sync::none) return {};
  return format::sync_data(fd, what);
}

Result<void> Quarantine::sync_all(int fd, const std::string& what) const {
  if (options_->sync == Sync::none) return {};
  return format::sync_all(fd, what);
}

Result<int> Quarantine::qdir() {
  if (qdir_) return qdir_.get();
  if (::mkdirat(dirfd_, kQuarantine, 0700) == -1 && errno != EEXIST)
    return fail_errno(errno, "mkdir", dir_ + "/" + kQuarantine);
  auto fd = os::check("openat", [&] {
    return ::openat(dirfd_, kQuarantine, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  });
  if (!fd) {
    fd.error().detail = dir_ + "/" + kQuarantine;
    return std::unexpected(std::move(fd.error()));
  }
  qdir_ = Fd(*fd);
  // The new directory entry itself must survive a crash, or the evidence could vanish.
  if (auto r = sync_all(dirfd_, dir_); !r) return std::unexpected(std::move(r.error()));
  return qdir_.get();
}

// A hard link, not a rename: the damaged file keeps its place in the log until its
// replacement is renamed over it, so a crash in between loses nothing.
Result<std::string> Quarantine::preserve(SegmentFile& f, std::uint64_t& ms) {
  auto q = qdir();
  if (!q) return std::unexpected(std::move(q.error()));
  for (;; ++ms) {  // two quarantines of one file within a millisecond get distinct names
    auto qname = fmt::format("{}.{}", f.name, ms);
    if (::linkat(dirfd_, f.name.c_str(), *q, qname.c_str(), 0) == 0) return qname;
    int err = errno;
    if (err == EEXIST) continue;
    auto qpath = dir_ + "/" + kQuarantine + "/" + qname;
    if (!link_unsupported(err)) return fail_errno(err, "link", qpath);
    auto out = create_at(*q, qname, O_EXCL, qpath);
    if (!out) {
      if (out.error().sys_errno == EEXIST) continue;
      return std::unexpected(std::move(out.error()));
    }
    if (auto r = copy_file(f.fd.get(), out->get(), f.name, qpath); !r) return std::unexpected(std::move(r.error()));
    if (auto r = sync_data(out->get(), qpath); !r) return std::unexpected(std::move(r.error()));
    return qname;
  }
}

Result<void> Quarantine::write_note(const SegmentFile& f, const std::string& qname, std::uint64_t ms,
                                    std::uint64_t keep) {
  auto q = qdir();
  if (!q) return std::unexpected(std::move(q.error()));
  std::string text = fmt::format("ipcx broker log: segment {} quarantined\nlog directory: {}\nquarantined at: {} (unix ms)\nproblems:\n",
                                 f.name, dir_, ms);
  for (const auto& p : f.problems) text += fmt::format("  {}\n", p);
  if (f.problems_dropped > 0) text += fmt::format("  ... and {} more\n", f.problems_dropped);
  if (keep > 0)
    text += fmt::format("its {} valid records stay in the log, in a rewritten {} (same seqs and kinds)\n", keep, f.name);
  else
    text += "nothing from this file was replayed\n";
  auto name = qname + ".txt";
  auto path = dir_ + "/" + kQuarantine + "/" + name;
  auto fd = create_at(*q, name, O_TRUNC, path);
  if (!fd) return std::unexpected(std::move(fd.error()));
  if (auto r = format::write_all(fd->get(), std::as_bytes(std::span(text)), path); !r) return r;
  return sync_data(fd->get(), path);
}

Result<SegmentInfo> Quarantine::rewrite(SegmentFile& f, std::span<const std::uint64_t> excluded, const std::string& tmp) {
  auto q = qdir();
  if (!q) return std::unexpected(std::move(q.error()));
  auto tmp_path = dir_ + "/" + kQuarantine + "/" + tmp;
  // O_TRUNC: a file of this name can only be the remains of a rewrite interrupted by a crash.
  auto out = create_at(*q, tmp, O_TRUNC, tmp_path);
  if (!out) return std::unexpected(std::move(out.error()));
  auto header = format::encode_segment_header(f.header);
  if (auto r = format::write_all(out->get(), header, tmp_path); !r) return std::unexpected(std::move(r.error()));

  SegmentInfo info{.name = f.name, .first_seq = f.info.first_seq, .bytes = header.size()};
  struct stat st{};
  if (::fstat(f.fd.get(), &st) == -1) return fail_errno(errno, "fstat", dir_ + "/" + f.name);
  SegmentReader reader(f.fd.get(), f.name, static_cast<std::uint64_t>(st.st_size), options_->max_record);
  auto w = walk(
      reader, format::segment_header_size, f.info.first_seq - 1,
      [&](const RecordAt& r) -> Result<void> {
        if (std::binary_search(excluded.begin(), excluded.end(), r.offset)) return {};
        if (auto c = reader.copy_to(r, out->get(), tmp_path); !c) return c;
        if (info.records == 0) info.min_seq = r.header.seq;
        info.max_seq = r.header.seq;
        ++info.records;
        info.bytes += r.end() - r.offset;
        return {};
      },
      [](const Damage&) {});
  if (!w) return std::unexpected(std::move(w.error()));
  if (auto r = sync_data(out->get(), tmp_path); !r) return std::unexpected(std::move(r.error()));
  return info;
}

Result<void> Quarantine::move(SegmentFile& f, bool rewrite_records, std::span<const std::uint64_t> excluded,
                              RecoveryReport& report) {
  std::uint64_t ms = format::now_unix_ms();
  auto qname = preserve(f, ms);
  if (!qname) return std::unexpected(std::move(qname.error()));
  auto qpath = dir_ + "/" + kQuarantine + "/" + *qname;
  report.quarantined.push_back(qpath);

  std::uint64_t keep = rewrite_records ? f.info.records - std::min<std::uint64_t>(f.info.records, excluded.size()) : 0;
  if (auto r = write_note(f, *qname, ms, keep); !r) return r;
  report.quarantined.push_back(qpath + ".txt");

  auto q = qdir();
  if (!q) return std::unexpected(std::move(q.error()));
  // The evidence is durable before the damaged file leaves the log.
  if (auto r = sync_all(*q, dir_ + "/" + kQuarantine); !r) return r;
  auto path = dir_ + "/" + f.name;
  SegmentInfo info{.name = f.name, .first_seq = f.info.first_seq};
  if (keep > 0) {
    auto tmp = *qname + ".rewrite";
    auto rewritten = rewrite(f, excluded, tmp);
    if (!rewritten) return std::unexpected(std::move(rewritten.error()));
    info = *rewritten;
    if (info.records > 0) {
      if (::renameat(*q, tmp.c_str(), dirfd_, f.name.c_str()) == -1) return fail_errno(errno, "rename", path);
    } else if (::unlinkat(*q, tmp.c_str(), 0) == -1) {
      return fail_errno(errno, "unlink", qpath + ".rewrite");
    }
  }
  if (info.records == 0 && ::unlinkat(dirfd_, f.name.c_str(), 0) == -1) return fail_errno(errno, "unlink", path);
  f.info = info;
  if (auto r = sync_all(*q, dir_ + "/" + kQuarantine); !r) return r;
  return sync_all(dirfd_, dir_);
}

}  // namespace ipcx::broker
