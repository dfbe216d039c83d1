// The broker's durable log (src/broker/log.hpp): CRC-32C, round trips, rolling, dropping,
// every sync mode, and recovery from each kind of damage a crash or a bad disk leaves.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "broker/crc32c.hpp"
#include "broker/log.hpp"
#include "broker/log_format.hpp"

// The largest single allocation while `g_track` is set: recovery must never size a buffer from
// a length read off the disk beyond max_record. ThreadSanitizer's runtime (clang's, linked
// statically) defines operator new itself: that build does not track, and leaves these checks
// to the others.
#if defined(__SANITIZE_THREAD__)
#define IPCX_TRACK_NEW 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IPCX_TRACK_NEW 0
#endif
#endif
#ifndef IPCX_TRACK_NEW
#define IPCX_TRACK_NEW 1
#endif

namespace {
std::atomic<bool> g_track{false};
std::atomic<std::size_t> g_largest{0};
constexpr bool kTracksNew = IPCX_TRACK_NEW;
}  // namespace

#if IPCX_TRACK_NEW
void* operator new(std::size_t n) {
  if (g_track.load(std::memory_order_relaxed)) {
    auto cur = g_largest.load(std::memory_order_relaxed);
    while (n > cur && !g_largest.compare_exchange_weak(cur, n, std::memory_order_relaxed)) {
    }
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace ipcx::broker {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;

#ifdef IPCX_TEST_SANITIZED
constexpr int kScale = 4;  // the sanitizers make each iteration several times slower
#else
constexpr int kScale = 1;
#endif

// A directory of its own, removed with its contents. The "ipcx-test" prefix is what the
// leftovers check looks for.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fmt::format("/tmp/ipcx-test-log-{}-{}", ::getpid(), counter++);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path sub(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

Bytes bytes_of(std::string_view s) {
  auto b = std::as_bytes(std::span(s));
  return {b.begin(), b.end()};
}

Bytes body_for(std::uint64_t n, std::size_t size) {
  Bytes b(size);
  for (std::size_t i = 0; i < size; ++i) b[i] = static_cast<std::byte>((n * 131 + i * 7 + (n >> 8)) & 0xff);
  auto tag = fmt::format("#{}#", n);  // distinct even for equal sizes
  for (std::size_t i = 0; i < std::min(size, tag.size()); ++i) b[i] = static_cast<std::byte>(tag[i]);
  return b;
}

struct Expected {
  std::uint8_t kind;
  Bytes body;
};
using Model = std::map<std::uint64_t, Expected>;

struct Opened {
  Result<Log> log;
  std::vector<LogRecord> records;
  RecoveryReport report;
};

Opened open_log(LogOptions o) {
  Opened out{.log = std::unexpected(Error{})};
  out.log = Log::open(std::move(o), [&](LogRecord&& r) { out.records.push_back(std::move(r)); }, &out.report);
  return out;
}

LogOptions opts(const fs::path& dir, std::size_t segment_bytes = 64 << 20, Sync sync = Sync::none) {
  return {.dir = dir, .segment_bytes = segment_bytes, .sync = sync};
}

std::string report_text(const RecoveryReport& r) {
  std::string s = fmt::format("segments {} records {} torn {} corrupt {}", r.segments, r.records, r.torn_tail_bytes,
                              r.corrupt_records);
  for (const auto& p : r.problems) s += "\n  " + p;
  return s;
}

void expect_clean(const RecoveryReport& r) {
  EXPECT_TRUE(r.problems.empty()) << report_text(r);
  EXPECT_EQ(r.torn_tail_bytes, 0u);
  EXPECT_EQ(r.corrupt_records, 0u);
  EXPECT_TRUE(r.quarantined.empty());
}

// Every replayed record is one the writer appended under that seq, in increasing seq order.
void expect_subset(const std::vector<LogRecord>& got, const Model& model) {
  std::uint64_t prev = 0;
  for (const auto& r : got) {
    EXPECT_GT(r.seq, prev) << "replay out of order";
    prev = r.seq;
    auto it = model.find(r.seq);
    ASSERT_NE(it, model.end()) << "seq " << r.seq << " was never appended";
    EXPECT_EQ(r.kind, it->second.kind) << "seq " << r.seq;
    EXPECT_TRUE(r.body == it->second.body) << "seq " << r.seq << " replayed with another body";
  }
}

std::set<std::uint64_t> seqs_of(const std::vector<LogRecord>& got) {
  std::set<std::uint64_t> s;
  for (const auto& r : got) s.insert(r.seq);
  return s;
}

std::vector<fs::path> segment_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && format::parse_segment_name(e.path().filename().string())) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<fs::path> quarantine_files(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::exists(dir / "quarantine")) return out;
  for (const auto& e : fs::directory_iterator(dir / "quarantine")) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

Bytes read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes_of(s);
}

void write_file(const fs::path& p, std::span<const std::byte> data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << p;
}

// Where the records of a valid segment file are.
struct RecordPos {
  std::size_t offset;
  std::uint32_t length;
  std::uint64_t seq;
};
std::vector<RecordPos> records_in(const Bytes& file) {
  std::vector<RecordPos> out;
  for (std::size_t at = format::segment_header_size; at + format::record_header_size <= file.size();) {
    format::RecordHeaderBytes h;
    std::memcpy(h.data(), file.data() + at, h.size());
    auto d = format::decode_record_header(h);
    out.push_back({at, d.length, d.seq});
    at += format::record_header_size + d.length;
  }
  return out;
}

// A segment file built by hand (for layouts the Log itself never writes).
struct Rec {
  std::uint64_t seq;
  std::uint8_t kind;
  Bytes body;
};
Bytes make_segment(std::uint64_t first_seq, const std::vector<Rec>& recs) {
  auto h = format::encode_segment_header({.first_seq = first_seq, .created_ms = 1});
  Bytes out(h.begin(), h.end());
  for (const auto& r : recs) {
    auto rh = format::encode_record_header(r.kind, r.seq, r.body);
    out.insert(out.end(), rh.begin(), rh.end());
    out.insert(out.end(), r.body.begin(), r.body.end());
  }
  return out;
}

// Appends `n` records with distinct bodies of sizes in [0, max_size] and notes them in `model`.
void fill(Log& log, Model& model, int n, std::size_t max_size, std::uint64_t salt = 0) {
  for (int i = 0; i < n; ++i) {
    auto kind = static_cast<std::uint8_t>(1 + (i + salt) % 255);
    auto body = body_for(model.size() + 1000 * salt, static_cast<std::size_t>((i * 37 + salt) % (max_size + 1)));
    auto seq = log.append(kind, body);
    ASSERT_TRUE(seq) << seq.error().message();
    model[*seq] = {kind, std::move(body)};
  }
}

// ---------------------------------------------------------------------------------------
// CRC-32C

std::uint32_t crc_of(std::string_view s) { return crc32c(std::as_bytes(std::span(s))); }

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc_of("123456789"), 0xE3069283u);
  EXPECT_EQ(crc_of(""), 0u);
  Bytes zeros(32, std::byte{0}), ones(32, std::byte{0xff}), up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<std::byte>(i);
    down[i] = static_cast<std::byte>(31 - i);
  }
  // RFC 3720, appendix B.4.
  for (auto f : {&crc32c, &detail::crc32c_portable, &detail::crc32c_hardware}) {
    EXPECT_EQ(f(zeros, 0), 0x8A9136AAu);
    EXPECT_EQ(f(ones, 0), 0x62A8AB43u);
    EXPECT_EQ(f(up, 0), 0x46DD794Eu);
    EXPECT_EQ(f(down, 0), 0x113FDB5Cu);
    EXPECT_EQ(f(std::as_bytes(std::span("123456789", 9)), 0), 0xE3069283u);
  }
}

TEST(Crc32c, HardwareMatchesTableOnRandomBuffers) {
  if (!detail::crc32c_hardware_available()) GTEST_SKIP() << "no SSE4.2 on this CPU: only the table version runs";
  std::mt19937_64 rng(12345);
  Bytes buf(8192 + 16);
  for (auto& b : buf) b = static_cast<std::byte>(rng());
  for (int i = 0; i < 2000; ++i) {
    std::size_t align = rng() % 16;
    std::size_t len = rng() % 8193;
    auto s = std::span(buf).subspan(align, len);
    auto seed = static_cast<std::uint32_t>(rng());
    ASSERT_EQ(detail::crc32c_hardware(s, seed), detail::crc32c_portable(s, seed)) << "len " << len << " align " << align;
  }
}

TEST(Crc32c, IncrementalEqualsOneShot) {
  std::mt19937_64 rng(777);
  Bytes buf(5000);
  for (auto& b : buf) b = static_cast<std::byte>(rng());
  for (int i = 0; i < 500; ++i) {
    std::size_t len = rng() % buf.size();
    std::size_t cut = len == 0 ? 0 : rng() % (len + 1);
    auto all = std::span(buf).first(len);
    auto whole = crc32c(all);
    EXPECT_EQ(crc32c(all.subspan(cut), crc32c(all.first(cut))), whole);
    EXPECT_EQ(detail::crc32c_portable(all.subspan(cut), detail::crc32c_portable(all.first(cut))), whole);
    EXPECT_EQ(detail::crc32c_hardware(all.subspan(cut), detail::crc32c_hardware(all.first(cut))), whole);
  }
}

// ---------------------------------------------------------------------------------------
// Writing and reading back

TEST(Log, RoundTripAcrossReopen) {
  TempDir t;
  auto dir = t.sub("q");  // created by open, with its missing parent
  Model model;
  {
    auto o = open_log(opts(dir, 64 << 20, Sync::group));
    ASSERT_TRUE(o.log) << o.log.error().message();
    expect_clean(o.report);
    EXPECT_EQ(o.report.records, 0u);
    EXPECT_EQ(o.log->last_seq(), 0u);
    struct stat st{};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    for (int k = 1; k <= 255; ++k) {
      auto body = body_for(static_cast<std::uint64_t>(k), static_cast<std::size_t>(k % 40));
      auto seq = o.log->append(static_cast<std::uint8_t>(k), body);
      ASSERT_TRUE(seq);
      EXPECT_EQ(*seq, static_cast<std::uint64_t>(k));
      model[*seq] = {static_cast<std::uint8_t>(k), body};
    }
    auto empty = o.log->append(9, {});
    ASSERT_TRUE(empty);
    model[*empty] = {9, {}};
    auto big = body_for(4242, 1 << 20);
    auto bseq = o.log->append(200, big);
    ASSERT_TRUE(bseq);
    model[*bseq] = {200, big};
    ASSERT_TRUE(o.log->sync());
    EXPECT_EQ(o.log->stats().appends, 257u);
    for (const auto& f : segment_files(dir)) {
      ASSERT_EQ(::stat(f.c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
    }
  }
  auto o = open_log(opts(dir));
  ASSERT_TRUE(o.log) << o.log.error().message();
  expect_clean(o.report);
  EXPECT_EQ(o.report.records, model.size());
  ASSERT_EQ(o.records.size(), model.size());
  expect_subset(o.records, model);
  EXPECT_EQ(o.log->last_seq(), 257u);
  auto next = o.log->append(1, bytes_of("after reopen"));
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, 258u);
}

TEST(Log, RefusesBadAppends) {
  TempDir t;
  auto o = open_log({.dir = t.path(), .max_record = 1000, .sync = Sync::none});
  ASSERT_TRUE(o.log);
  Bytes ok(1000), big(1001);
  auto r = o.log->append(1, big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::too_large);
  auto zero = o.log->append(0, ok);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, Errc::invalid_argument);
  auto fine = o.log->append(1, ok);
  ASSERT_TRUE(fine);
  EXPECT_EQ(*fine, 1u);  // refused appends use no seq

  auto bad = Log::open({.dir = t.sub("x"), .max_record = std::size_t{1} << 33}, {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
}

TEST(Log, OneWriterPerDirectory) {
  TempDir t;
  auto a = Log::open(opts(t.path()), {});
  ASSERT_TRUE(a);
  auto b = Log::open(opts(t.path()), {});
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, Errc::address_in_use);
  { auto gone = std::move(*a); }  // closes the first
  EXPECT_TRUE(Log::open(opts(t.path()), {}));
}

TEST(Log, RollsSegmentsAndReplaysThemInOrder) {
  TempDir t;
  Model model;
  {
    auto o = open_log(opts(t.path(), 4096));
    ASSERT_TRUE(o.log);
    fill(*o.log, model, 600, 200);
    auto st = o.log->stats();
    EXPECT_GT(st.segments, 10u);
    EXPECT_EQ(st.segments, segment_files(t.path()).size());
    std::uint64_t total = 0;
    for (const auto& f : segment_files(t.path())) {
      auto size = fs::file_size(f);
      total += size;
      // A segment only passes segment_bytes by the record that reached it.
      EXPECT_LT(size, 4096u + format::record_header_size + 200) << f;
      auto data = read_file(f);
      auto recs = records_in(data);
      ASSERT_FALSE(recs.empty());
      EXPECT_EQ(f.filename().string(), format::segment_name(recs.front().seq));
    }
    EXPECT_EQ(st.bytes, total);
  }
  auto o = open_log(opts(t.path(), 4096));
  ASSERT_TRUE(o.log);
  expect_clean(o.report);
  EXPECT_EQ(o.report.segments, segment_files(t.path()).size());
  ASSERT_EQ(o.records.size(), model.size());
  expect_subset(o.records, model);
  fill(*o.log, model, 50, 200, 1);
  EXPECT_EQ(o.log->last_seq(), 650u);
}

TEST(Log, DropBeforeDeletesOnlyWholeOldSegments) {
  TempDir t;
  Model model;
  auto o = open_log(opts(t.path(), 2048));
  ASSERT_TRUE(o.log);
  fill(*o.log, model, 300, 100);
  auto before = segment_files(t.path());
  ASSERT_GT(before.size(), 5u);
  std::map<fs::path, std::uint64_t> max_seq;
  for (const auto& f : before) max_seq[f] = records_in(read_file(f)).back().seq;

  const std::uint64_t cut = 150;
  auto dropped = o.log->drop_before(cut);
  ASSERT_TRUE(dropped) << dropped.error().message();
  auto after = segment_files(t.path());
  EXPECT_EQ(*dropped, before.size() - after.size());
  EXPECT_GT(*dropped, 0u);
  for (const auto& f : before) {
    bool gone = std::find(after.begin(), after.end(), f) == after.end();
    EXPECT_EQ(gone, max_seq[f] < cut) << f;
  }
  EXPECT_EQ(o.log->stats().segments, after.size());

  // Never the active segment, even when every record is below the bound.
  auto all = o.log->drop_before(UINT64_MAX);
  ASSERT_TRUE(all);
  auto last = segment_files(t.path());
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last.front(), after.back());
  auto seq = o.log->append(1, bytes_of("still appending"));
  ASSERT_TRUE(seq);
  model[*seq] = {1, bytes_of("still appending")};
  o.log = std::unexpected(Error{});

  auto again = open_log(opts(t.path(), 2048));
  ASSERT_TRUE(again.log);
  expect_clean(again.report);
  auto first_kept = *format::parse_segment_name(last.front().filename().string());
  Model rest(model.lower_bound(first_kept), model.end());
  ASSERT_EQ(again.records.size(), rest.size());
  expect_subset(again.records, rest);
}

TEST(Log, DropBeforeKeepsRecordsOfPartlyNewerSegments) {
  TempDir t;
  Model model;
  auto o = open_log(opts(t.path(), 2048));
  ASSERT_TRUE(o.log);
  fill(*o.log, model, 200, 100);
  ASSERT_TRUE(o.log->drop_before(77));
  o.log = std::unexpected(Error{});
  auto again = open_log(opts(t.path(), 2048));
  ASSERT_TRUE(again.log);
  auto got = seqs_of(again.records);
  for (std::uint64_t s = 77; s <= 200; ++s) EXPECT_TRUE(got.count(s)) << "seq " << s << " was dropped";
}

TEST(Log, EverySyncModeMakesAppendsDurable) {
  for (auto mode : {Sync::always, Sync::group, Sync::none}) {
    SCOPED_TRACE(static_cast<int>(mode));
    TempDir t;
    auto o = open_log(opts(t.path(), 1024, mode));
    ASSERT_TRUE(o.log);
    for (int i = 0; i < 20; ++i) {
      auto seq = o.log->append(3, body_for(static_cast<std::uint64_t>(i), 100));
      ASSERT_TRUE(seq);
      if (mode != Sync::group) {
        EXPECT_EQ(o.log->durable_seq(), *seq);
      }
    }
    if (mode == Sync::group) {
      EXPECT_LT(o.log->durable_seq(), o.log->last_seq());
    }
    auto s = o.log->sync();
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(*s, o.log->last_seq());
    EXPECT_EQ(o.log->durable_seq(), o.log->last_seq());
    EXPECT_EQ(o.log->last_seq(), 20u);
    if (mode == Sync::none) {
      EXPECT_EQ(o.log->stats().syncs, 0u);
    } else {
      EXPECT_GT(o.log->stats().syncs, 0u);
    }
  }
}

TEST(Log, ConcurrentAppendersAndSyncer) {
  for (auto mode : {Sync::group, Sync::always}) {
    SCOPED_TRACE(static_cast<int>(mode));
    TempDir t;
    const int per_thread = (mode == Sync::always ? 300 : 3000) / kScale;
    std::vector<std::vector<std::pair<std::uint64_t, Bytes>>> done(2);
    {
      auto o = open_log(opts(t.path(), 16 * 1024, mode));
      ASSERT_TRUE(o.log);
      Log& log = *o.log;
      std::atomic<bool> stop{false};
      std::atomic<int> sync_errors{0};
      std::thread syncer([&] {
        std::uint64_t prev = 0;
        while (!stop.load()) {
          auto s = log.sync();
          if (!s || *s < prev) sync_errors++;
          if (s) prev = *s;
          (void)log.stats();
        }
      });
      std::vector<std::thread> writers;
      for (int w = 0; w < 2; ++w)
        writers.emplace_back([&, w] {
          for (int i = 0; i < per_thread; ++i) {
            auto body = bytes_of(fmt::format("writer {} record {}", w, i));
            auto seq = log.append(static_cast<std::uint8_t>(w + 1), body);
            if (!seq) return;
            if (mode == Sync::always && log.durable_seq() < *seq) return;
            done[w].emplace_back(*seq, std::move(body));
          }
        });
      for (auto& w : writers) w.join();
      stop = true;
      syncer.join();
      EXPECT_EQ(sync_errors.load(), 0);
      ASSERT_EQ(done[0].size() + done[1].size(), 2u * per_thread);
      ASSERT_TRUE(log.sync());
      EXPECT_EQ(log.durable_seq(), 2u * per_thread);
    }
    Model model;
    for (int w = 0; w < 2; ++w)
      for (auto& [seq, body] : done[w]) {
        EXPECT_TRUE(model.emplace(seq, Expected{static_cast<std::uint8_t>(w + 1), body}).second) << "seq " << seq << " twice";
      }
    auto o = open_log(opts(t.path(), 16 * 1024));
    ASSERT_TRUE(o.log);
    expect_clean(o.report);
    ASSERT_EQ(o.records.size(), model.size());
    expect_subset(o.records, model);
  }
}

TEST(Log, DropBeforeWhileAppending) {
  TempDir t;
  const int n = 3000 / kScale;
  std::atomic<std::uint64_t> bound{0};
  {
    auto o = open_log(opts(t.path(), 1024, Sync::group));
    ASSERT_TRUE(o.log);
    Log& log = *o.log;
    std::atomic<bool> stop{false};
    std::thread dropper([&] {
      while (!stop.load()) {
        auto last = log.last_seq();
        if (last > 200) {
          // bound only grows: a later drop never removes what an earlier one kept
          auto b = std::max(bound.load(), last - 200);
          if (log.drop_before(b)) bound = b;
        }
        (void)log.sync();
        (void)log.stats();
      }
    });
    for (int i = 0; i < n; ++i) ASSERT_TRUE(log.append(1, body_for(static_cast<std::uint64_t>(i + 1), 40)));
    stop = true;
    dropper.join();
    EXPECT_EQ(log.stats().segments, segment_files(t.path()).size());
  }
  auto o = open_log(opts(t.path(), 1024));
  ASSERT_TRUE(o.log);
  expect_clean(o.report);
  auto got = seqs_of(o.records);
  for (std::uint64_t s = std::max<std::uint64_t>(bound.load(), 1); s <= static_cast<std::uint64_t>(n); ++s)
    ASSERT_TRUE(got.count(s)) << "seq " << s << " lost (drop bound " << bound.load() << ")";
  for (const auto& r : o.records) EXPECT_TRUE(r.body == body_for(r.seq, 40));
}

// ---------------------------------------------------------------------------------------
// Recovery: crashes

TEST(LogRecovery, TornTailIsCutOff) {
  TempDir t;
  auto base = t.sub("base");
  Model model;
  {
    auto o = open_log(opts(base, 4096));
    ASSERT_TRUE(o.log);
    fill(*o.log, model, 60, 150);
    // The last record, the one the "crash" interrupts, has a body big enough to cut inside.
    auto seq = o.log->append(7, body_for(999, 300));
    ASSERT_TRUE(seq);
    model[*seq] = {7, body_for(999, 300)};
  }
  auto last_file = segment_files(base).back();
  auto data = read_file(last_file);
  auto recs = records_in(data);
  ASSERT_GE(recs.size(), 2u);
  const auto torn = recs.back();
  const std::size_t cuts[] = {1, 4, 10, 23, 24, 25, 24 + 150, 24 + 299};
  int n = 0;
  for (std::size_t cut : cuts) {
    SCOPED_TRACE(cut);
    auto dir = t.sub(fmt::format("cut{}", n++));
    fs::copy(base, dir, fs::copy_options::recursive);
    fs::resize_file(dir / last_file.filename(), torn.offset + cut);
    Model expect = model;
    expect.erase(torn.seq);
    {
      auto o = open_log(opts(dir, 4096, Sync::group));
      ASSERT_TRUE(o.log) << o.log.error().message();
      EXPECT_EQ(o.report.torn_tail_bytes, cut);
      EXPECT_EQ(o.report.problems.size(), 1u) << report_text(o.report);
      EXPECT_EQ(o.report.corrupt_records, 0u);
      EXPECT_TRUE(o.report.quarantined.empty());
      ASSERT_EQ(o.records.size(), expect.size());
      expect_subset(o.records, expect);
      EXPECT_EQ(fs::file_size(dir / last_file.filename()), torn.offset);
      auto seq = o.log->append(5, bytes_of("after the crash"));
      ASSERT_TRUE(seq);
      EXPECT_EQ(*seq, torn.seq);  // the torn record never was: its seq is free
      expect[*seq] = {5, bytes_of("after the crash")};
    }
    auto o = open_log(opts(dir, 4096, Sync::group));
    ASSERT_TRUE(o.log);
    expect_clean(o.report);
    ASSERT_EQ(o.records.size(), expect.size());
    expect_subset(o.records, expect);
  }
}

TEST(LogRecovery, DamageAndTornTailInTheLastSegment) {
  TempDir t;
  Model model;
  {
    auto o = open_log(opts(t.path()));
    ASSERT_TRUE(o.log);
    fill(*o.log, model, 10, 100);
  }
  auto file = segment_files(t.path()).back();
  auto data = read_file(file);
  auto recs = records_in(data);
  data[recs[2].offset + 24 + 5] ^= std::byte{1};
  data.resize(recs[9].offset + 30);
  write_file(file, data);
  model.erase(recs[2].seq);
  model.erase(recs[9].seq);
  {
    auto o = open_log(opts(t.path(), 64 << 20, Sync::group));
    ASSERT_TRUE(o.log);
    EXPECT_EQ(o.report.corrupt_records, 1u);
    EXPECT_EQ(o.report.torn_tail_bytes, 30u);
    EXPECT_EQ(o.report.problems.size(), 2u) << report_text(o.report);
    EXPECT_EQ(o.report.quarantined.size(), 2u);
    ASSERT_EQ(o.records.size(), model.size());
    expect_subset(o.records, model);
    EXPECT_EQ(*o.log->append(1, {}), 10u);  // seq 10 was torn: never handed out
  }
  auto o = open_log(opts(t.path()));
  ASSERT_TRUE(o.log);
  expect_clean(o.report);
  EXPECT_EQ(o.records.size(), model.size() + 1);
}

TEST(LogRecovery, HalfCreatedLastSegmentIsRemoved) {
  TempDir t;
  auto base = t.sub("base");
  Model model;
  {
    auto o = open_log(opts(base));
    ASSERT_TRUE(o.log);
    fill(*o.log, model, 10, 50);
  }
  auto header = format::encode_segment_header({.first_seq = 11, .created_ms = 5});
  struct Case {
    const char* what;
    Bytes content;
  };
  std::vector<Case> cases = {
      {"empty file", {}},
      {"cut header", Bytes(header.begin(), header.begin() + 13)},
      {"zero header", Bytes(32, std::byte{0})},
      {"zero header and zero tail", Bytes(4096, std::byte{0})},
      {"header only", Bytes(header.begin(), header.end())},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto dir = t.sub(fmt::format("c{}", n++));
    fs::copy(base, dir, fs::copy_options::recursive);
    write_file(dir / format::segment_name(11), c.content);
    {
      auto o = open_log(opts(dir));
      ASSERT_TRUE(o.log) << o.log.error().message();
      EXPECT_EQ(o.report.problems.size(), 1u) << report_text(o.report);
      EXPECT_EQ(o.report.torn_tail_bytes, c.content.size());
      EXPECT_FALSE(fs::exists(dir / format::segment_name(11)));
      ASSERT_EQ(o.records.size(), model.size());
      expect_subset(o.records, model);
      EXPECT_EQ(*o.log->append(1, bytes_of("x")), 11u);
    }
    auto o = open_log(opts(dir));
    ASSERT_TRUE(o.log);
    expect_clean(o.report);
    EXPECT_EQ(o.records.size(), model.size() + 1);
  }
}

// ---------------------------------------------------------------------------------------
// Recovery: damage

enum class Hit { body, length, seq, magic, non_last_segment_body, non_last_segment_tail };

struct DamageCase {
  const char* name;
  Hit hit;
};

class LogDamage : public ::testing::TestWithParam<DamageCase> {};

TEST_P(LogDamage, DamagedRecordIsQuarantinedAndNeverReplayed) {
  TempDir t;
  auto dir = t.path() / "log";
  Model model;
  bool multi = GetParam().hit == Hit::non_last_segment_body || GetParam().hit == Hit::non_last_segment_tail;
  std::size_t seg_bytes = multi ? 2048 : 1 << 20;
  {
    auto o = open_log(opts(dir, seg_bytes, Sync::group));
    ASSERT_TRUE(o.log);
    fill(*o.log, model, 80, 120);
  }
  auto files = segment_files(dir);
  ASSERT_EQ(files.size() > 2, multi);
  auto victim_file = multi ? files[1] : files[0];
  auto data = read_file(victim_file);
  auto recs = records_in(data);
  ASSERT_GE(recs.size(), 3u);
  std::size_t victim_index = GetParam().hit == Hit::non_last_segment_tail ? recs.size() - 1 : recs.size() / 2;
  auto victim = recs[victim_index];
  switch (GetParam().hit) {
    case Hit::body:
    case Hit::non_last_segment_body:
    case Hit::non_last_segment_tail:
      ASSERT_GT(victim.length, 0u);
      data[victim.offset + 24 + victim.length / 2] ^= std::byte{0x10};
      break;
    case Hit::length: data[victim.offset + 8 + 3] ^= std::byte{0x01}; break;  // 16 MiB more: past the end
    case Hit::seq: data[victim.offset + 16] ^= std::byte{0x01}; break;
    case Hit::magic: data[victim.offset + 1] ^= std::byte{0x40}; break;
  }
  write_file(victim_file, data);

  Model expect = model;
  expect.erase(victim.seq);
  std::set<std::uint64_t> first_set;
  {
    auto o = open_log(opts(dir, seg_bytes, Sync::group));
    ASSERT_TRUE(o.log) << o.log.error().message();
    EXPECT_GE(o.report.corrupt_records, 1u) << report_text(o.report);
    EXPECT_EQ(o.report.torn_tail_bytes, 0u);
    ASSERT_FALSE(o.report.problems.empty());
    EXPECT_NE(o.report.problems[0].find(victim_file.filename().string() + " at offset " + std::to_string(victim.offset)),
              std::string::npos)
        << o.report.problems[0];
    ASSERT_EQ(o.records.size(), expect.size()) << report_text(o.report);
    expect_subset(o.records, expect);
    first_set = seqs_of(o.records);
    EXPECT_FALSE(first_set.count(victim.seq));

    // The damaged file went to quarantine/ with a note; the log holds a clean copy.
    auto q = quarantine_files(dir);
    ASSERT_EQ(q.size(), 2u);
    EXPECT_EQ(q[0].filename().string().rfind(victim_file.filename().string() + ".", 0), 0u) << q[0];
    EXPECT_EQ(q[1].extension(), ".txt");
    EXPECT_TRUE(read_file(q[0]) == data) << "the quarantined copy is the damaged file as found";
    auto note = read_file(q[1]);
    std::string note_text(reinterpret_cast<const char*>(note.data()), note.size());
    EXPECT_NE(note_text.find(o.report.problems[0]), std::string::npos) << note_text;
    EXPECT_EQ(o.report.quarantined.size(), 2u);
    EXPECT_TRUE(fs::exists(victim_file)) << "the valid records are back under the same name";
    EXPECT_EQ(*o.log->append(1, bytes_of("next")), model.rbegin()->first + 1);
  }
  auto o = open_log(opts(dir, seg_bytes, Sync::group));
  ASSERT_TRUE(o.log);
  expect_clean(o.report);
  auto again = seqs_of(o.records);
  again.erase(model.rbegin()->first + 1);
  EXPECT_EQ(again, first_set);
}

INSTANTIATE_TEST_SUITE_P(Hits, LogDamage,
                         ::testing::Values(DamageCase{"body", Hit::body}, DamageCase{"length", Hit::length},
                                           DamageCase{"seq", Hit::seq}, DamageCase{"magic", Hit::magic},
                                           DamageCase{"non_last_segment", Hit::non_last_segment_body},
                                           DamageCase{"non_last_segment_tail", Hit::non_last_segment_tail}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// Rule: a record whose seq is not above the previous one in its segment is damage.
TEST(LogRecovery, SeqGoingBackwardsIsDamage) {
  TempDir t;
  auto seg = make_segment(1, {{1, 1, bytes_of("one")}, {3, 1, bytes_of("three")}, {2, 1, bytes_of("two")},
                              {4, 1, bytes_of("four")}, {4, 1, bytes_of("four again")}, {5, 1, bytes_of("five")}});
  write_file(t.path() / format::segment_name(1), seg);
  auto o = open_log(opts(t.path()));
  ASSERT_TRUE(o.log);
  EXPECT_EQ(seqs_of(o.records), (std::set<std::uint64_t>{1, 3, 4, 5}));
  EXPECT_EQ(o.report.corrupt_records, 2u) << report_text(o.report);
  for (const auto& r : o.records)
    if (r.seq == 4) {
      EXPECT_TRUE(r.body == bytes_of("four"));
    }
  EXPECT_EQ(*o.log->append(1, {}), 6u);
  o.log = std::unexpected(Error{});
  auto again = open_log(opts(t.path()));
  expect_clean(again.report);
  EXPECT_EQ(again.records.size(), 5u);
}

TEST(LogRecovery, BadSegmentHeadersAreQuarantinedWhole) {
  struct Case {
    const char* what;
    std::size_t offset;
    std::byte value;
    bool fix_crc;
    const char* expect;
  };
  const Case cases[] = {
      {"unknown version", 8, std::byte{7}, true, "unknown version 7"},
      {"bad magic", 0, std::byte{'J'}, false, "bad header"},
      {"bad magic with a valid crc", 3, std::byte{'Y'}, true, "bad header"},
      {"bad header crc", 24, std::byte{0x55}, false, "bad header"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir t;
    Model model;
    {
      auto o = open_log(opts(t.path(), 2048, Sync::group));
      ASSERT_TRUE(o.log);
      fill(*o.log, model, 100, 100);
    }
    auto files = segment_files(t.path());
    ASSERT_GT(files.size(), 3u);
    // The middle one, and separately the last one (whose seqs must not be reused).
    for (auto victim : {files[files.size() / 2], files.back()}) {
      auto data = read_file(victim);
      data[c.offset] = c.value;
      if (c.fix_crc) {
        std::memset(data.data() + 12, 0, 4);
        auto crc = crc32c(std::span(data).first(32));
        for (int i = 0; i < 4; ++i) data[12 + i] = static_cast<std::byte>((crc >> (8 * i)) & 0xff);
      }
      write_file(victim, data);
      std::set<std::uint64_t> lost;
      for (const auto& r : records_in(data)) lost.insert(r.seq);
      for (auto s : lost) model.erase(s);
    }
    std::uint64_t highest = 100;
    {
      auto o = open_log(opts(t.path(), 2048, Sync::group));
      ASSERT_TRUE(o.log) << o.log.error().message();
      ASSERT_EQ(o.report.problems.size(), 2u) << report_text(o.report);
      for (const auto& p : o.report.problems) EXPECT_NE(p.find(c.expect), std::string::npos) << p;
      EXPECT_EQ(o.report.corrupt_records, 2u);
      EXPECT_EQ(o.report.quarantined.size(), 4u);
      EXPECT_EQ(quarantine_files(t.path()).size(), 4u);
      EXPECT_EQ(segment_files(t.path()).size(), files.size() - 2);
      ASSERT_EQ(o.records.size(), model.size());
      expect_subset(o.records, model);
      // Appends continue after the quarantined records: a seq is never handed out twice.
      EXPECT_EQ(*o.log->append(1, bytes_of("new")), highest + 1);
    }
    auto o = open_log(opts(t.path(), 2048, Sync::group));
    ASSERT_TRUE(o.log);
    expect_clean(o.report);
    EXPECT_EQ(o.records.size(), model.size() + 1);
  }
}

TEST(LogRecovery, LengthAboveMaxRecordIsDamageNotAnAllocation) {
  TempDir t;
  // Written by a log allowing big records, read by one that allows 64 KiB.
  Model model;
  {
    auto o = open_log({.dir = t.path(), .max_record = 1 << 20, .sync = Sync::none});
    ASSERT_TRUE(o.log);
    fill(*o.log, model, 5, 100);
    auto seq = o.log->append(2, Bytes(200 * 1024, std::byte{1}));
    ASSERT_TRUE(seq);
    fill(*o.log, model, 5, 100, 2);
  }
  // And a header claiming 4 GiB - 1 with nothing behind it.
  auto file = segment_files(t.path()).back();
  auto data = read_file(file);
  auto huge = format::encode_record_header(3, 11, {});
  huge[8] = huge[9] = huge[10] = huge[11] = std::byte{0xff};
  data.insert(data.end(), huge.begin(), huge.end());
  write_file(file, data);

  g_largest = 0;
  g_track = true;
  auto o = open_log({.dir = t.path(), .max_record = 64 * 1024, .sync = Sync::none});
  g_track = false;
  ASSERT_TRUE(o.log) << o.log.error().message();
  if (kTracksNew) {
    EXPECT_LT(g_largest.load(), std::size_t{1} << 20) << "recovery allocated from a length on disk";
  }
  ASSERT_EQ(o.records.size(), model.size()) << report_text(o.report);
  expect_subset(o.records, model);
  EXPECT_EQ(o.report.corrupt_records, 1u);
  ASSERT_FALSE(o.report.problems.empty());
  EXPECT_NE(o.report.problems[0].find("above max_record"), std::string::npos) << o.report.problems[0];
  EXPECT_GT(o.report.torn_tail_bytes, 0u);
}

TEST(LogRecovery, OverlappingSegmentsReplayInSeqOrderOnce) {
  TempDir t;
  // 1: seqs 1..6; 3: a second copy of 3..4 (identical) and 7..8, as an interrupted rewrite
  // could leave; replayed once each, in seq order, nothing reported.
  std::vector<Rec> a, b;
  for (std::uint64_t s = 1; s <= 6; ++s) a.push_back({s, 1, bytes_of(fmt::format("r{}", s))});
  for (std::uint64_t s : {3, 4, 7, 8}) b.push_back({s, 1, bytes_of(fmt::format("r{}", s))});
  write_file(t.path() / format::segment_name(1), make_segment(1, a));
  write_file(t.path() / format::segment_name(3), make_segment(3, b));
  {
    auto o = open_log(opts(t.path()));
    ASSERT_TRUE(o.log);
    expect_clean(o.report);
    std::vector<std::uint64_t> order;
    for (const auto& r : o.records) order.push_back(r.seq);
    EXPECT_EQ(order, (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
    EXPECT_EQ(*o.log->append(1, {}), 9u);
  }
  // A copy that disagrees (this also drops seq 9, appended above to file 3): the
  // older-named file's copy wins, the other is damage.
  b[1].body = bytes_of("not r4");
  write_file(t.path() / format::segment_name(3), make_segment(3, b));
  {
    auto o = open_log(opts(t.path()));
    ASSERT_TRUE(o.log);
    ASSERT_EQ(o.report.problems.size(), 1u) << report_text(o.report);
    EXPECT_NE(o.report.problems[0].find("seq 4"), std::string::npos);
    EXPECT_EQ(o.report.corrupt_records, 1u);
    EXPECT_EQ(o.report.quarantined.size(), 2u);
    EXPECT_EQ(o.records.size(), 8u);
    for (const auto& r : o.records)
      if (r.seq == 4) {
        EXPECT_TRUE(r.body == bytes_of("r4"));
      }
  }
  auto o = open_log(opts(t.path()));
  ASSERT_TRUE(o.log);
  expect_clean(o.report);
  std::vector<std::uint64_t> order;
  for (const auto& r : o.records) order.push_back(r.seq);
  EXPECT_EQ(order, (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(LogRecovery, ForeignFilesAreLeftAlone) {
  TempDir t;
  {
    auto o = open_log(opts(t.path()));
    ASSERT_TRUE(o.log);
    ASSERT_TRUE(o.log->append(1, bytes_of("a")));
  }
  const char* names[] = {"notes.txt", "123.seg", "0000000000000000000a.seg", "00000000000000000001.seg.bak",
                         "99999999999999999999.seg" /* beyond 64 bits */};
  for (auto n : names) write_file(t.path() / n, bytes_of("not a segment"));
  fs::create_directory(t.path() / format::segment_name(50));
  fs::create_symlink("/nonexistent", t.path() / format::segment_name(60));
  auto o = open_log(opts(t.path()));
  ASSERT_TRUE(o.log);
  expect_clean(o.report);
  EXPECT_EQ(o.records.size(), 1u);
  for (auto n : names) EXPECT_TRUE(fs::exists(t.path() / n)) << n;
  EXPECT_TRUE(fs::is_directory(t.path() / format::segment_name(50)));
  EXPECT_TRUE(fs::is_symlink(t.path() / format::segment_name(60)));
}

// Random damage of every kind to copies of one log: open copes, never replays a record
// that differs from what was appended under its seq, and leaves a log the next open finds
// clean.
TEST(LogRecovery, RandomCorruptionFuzz) {
  TempDir t;
  auto base = t.sub("base");
  // A small max_record makes "recovery allocates at most max_record and a little" checkable.
  const LogOptions fuzz_opts{.segment_bytes = 2048, .max_record = 1024, .sync = Sync::none};
  auto fuzz_at = [&](const fs::path& dir) {
    auto o = fuzz_opts;
    o.dir = dir;
    return o;
  };
  Model model;
  {
    auto o = open_log(fuzz_at(base));
    ASSERT_TRUE(o.log);
    fill(*o.log, model, 150, 300);
  }
  auto files = segment_files(base);
  ASSERT_GT(files.size(), 5u);
  // IPCX_LOG_FUZZ_SEED explores other seeds by hand; the suite always runs the same one.
  const char* env_seed = std::getenv("IPCX_LOG_FUZZ_SEED");
  const std::uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 10) : 20240611;
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937_64 rng(seed);
  const int iterations = 200 / kScale;
  int damaged = 0, quarantined = 0, merged = 0;  // the loop reaches every recovery path
  for (int it = 0; it < iterations; ++it) {
    SCOPED_TRACE(it);
    auto dir = t.sub(fmt::format("it{}", it));
    fs::copy(base, dir, fs::copy_options::recursive);
    int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations; ++m) {
      auto segs = segment_files(dir);
      if (segs.empty()) break;
      auto file = segs[rng() % segs.size()];
      auto data = read_file(file);
      switch (rng() % 8) {
        case 0:  // flip bits
        case 1:
          if (!data.empty()) data[rng() % data.size()] ^= static_cast<std::byte>(1 + rng() % 255);
          break;
        case 2:  // truncate
          data.resize(data.empty() ? 0 : rng() % data.size());
          break;
        case 3: {  // overwrite a range with garbage
          if (data.empty()) break;
          std::size_t at = rng() % data.size();
          std::size_t len = std::min<std::size_t>(data.size() - at, 1 + rng() % 64);
          for (std::size_t i = 0; i < len; ++i) data[at + i] = static_cast<std::byte>(rng());
          break;
        }
        case 4: {  // a garbage file with a segment's name
          Bytes junk(rng() % 3000);
          for (auto& b : junk) b = static_cast<std::byte>(rng());
          if (rng() % 2 && junk.size() >= 32) {  // with a valid header, to reach the record checks
            std::uint64_t first_seq = 1 + rng() % 300;
            auto h = format::encode_segment_header({.first_seq = first_seq, .created_ms = 0});
            std::memcpy(junk.data(), h.data(), h.size());
            write_file(dir / format::segment_name(first_seq), junk);
          } else {
            write_file(dir / format::segment_name(1 + rng() % 400), junk);
          }
          continue;
        }
        case 5:  // zero a tail (what a crash after a size update but before the data leaves)
          if (!data.empty()) std::fill(data.begin() + static_cast<std::ptrdiff_t>(rng() % data.size()), data.end(), std::byte{0});
          break;
        case 6: {  // the records of a segment again under another (valid) name: overlapping seqs
          auto recs = records_in(data);
          if (recs.empty() || recs.front().seq < 2) break;
          std::uint64_t first_seq = 1 + rng() % recs.front().seq;
          auto h = format::encode_segment_header({.first_seq = first_seq, .created_ms = 0});
          Bytes copy = data;
          std::memcpy(copy.data(), h.data(), h.size());
          write_file(dir / format::segment_name(first_seq), copy);
          continue;
        }
        case 7: {  // a valid record copied into another place (out of order, or a duplicate)
          auto recs = records_in(data);
          if (recs.empty()) break;
          auto r = recs[rng() % recs.size()];
          auto n = format::record_header_size + r.length;
          if (r.offset + n > data.size()) break;
          Bytes rec(data.begin() + static_cast<std::ptrdiff_t>(r.offset),
                    data.begin() + static_cast<std::ptrdiff_t>(r.offset + n));
          auto other = segs[rng() % segs.size()];
          auto target = other == file ? data : read_file(other);
          auto where = records_in(target);
          std::size_t pos = where.empty() ? target.size() : where[rng() % where.size()].offset;
          target.insert(target.begin() + static_cast<std::ptrdiff_t>(pos), rec.begin(), rec.end());
          write_file(other, target);
          continue;
        }
      }
      write_file(file, data);
    }
    std::set<std::uint64_t> first;
    std::uint64_t appended = 0;
    {
      g_largest = 0;
      g_track = true;
      auto o = open_log(fuzz_at(dir));
      g_track = false;
      ASSERT_TRUE(o.log) << o.log.error().message();
      if (kTracksNew) {
        EXPECT_LE(g_largest.load(), std::size_t{128} << 10);
      }
      expect_subset(o.records, model);
      damaged += !o.report.problems.empty();
      quarantined += !o.report.quarantined.empty();
      merged += std::any_of(o.report.problems.begin(), o.report.problems.end(),
                            [](const std::string& p) { return p.find("differs from its copy") != std::string::npos; }) ||
                (o.report.problems.empty() && segment_files(dir).size() > segment_files(base).size());
      first = seqs_of(o.records);
      auto seq = o.log->append(1, bytes_of("after"));
      ASSERT_TRUE(seq);
      appended = *seq;
      EXPECT_GT(appended, first.empty() ? 0 : *first.rbegin());
    }
    auto o = open_log(fuzz_at(dir));
    ASSERT_TRUE(o.log);
    expect_clean(o.report);
    auto second = seqs_of(o.records);
    EXPECT_TRUE(second.count(appended));
    second.erase(appended);
    EXPECT_EQ(second, first);
    o.log = std::unexpected(Error{});
    fs::remove_all(dir);
  }
  RecordProperty("damaged", damaged);
  RecordProperty("quarantined", quarantined);
  RecordProperty("merged", merged);
  EXPECT_GT(damaged, iterations / 2);
  EXPECT_GT(quarantined, iterations / 4);
  EXPECT_GT(merged, 0);
}

}  // namespace
}  // namespace ipcx::broker
