#include "broker/queue.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include <ipcx/fd.hpp>

#include "broker/crc32c.hpp"
#include "os/sys.hpp"

namespace ipcx::broker {

namespace {

constexpr std::string_view kConfigMagic = "IPCXQCF1";

// Record bodies use the wire's field encoding.
struct MessageRecord {
  std::uint64_t published_ms = 0;
  std::string id;
  std::span<const std::byte> body;
  template <class F> void fields(F& f) { f(published_ms), f.text(id), f.blob(body); }
};
struct SeqRecord {
  std::uint64_t seq = 0;
  template <class F> void fields(F& f) { f(seq); }
};
struct AttemptsRecord {
  std::uint64_t seq = 0;
  std::uint32_t attempts = 0;
  template <class F> void fields(F& f) { f(seq), f(attempts); }
};

// Into `out`, cleared first: the queue's one buffer, so a record costs no allocation.
template <class R>
std::span<const std::byte> encode_record(R& r, std::vector<std::byte>& out) {
  out.clear();
  wire::Encoder e(out);
  r.fields(e);
  return out;
}
template <class R>
bool decode_record(std::span<const std::byte> in, R& r) {
  wire::Decoder d(in);
  r.fields(d);
  return d.ok() && d.at_end();
}


Result<void> save_config(const std::filesystem::path& dir, QueueConfig c) {
  std::vector<std::byte> out(kConfigMagic.size());
  std::memcpy(out.data(), kConfigMagic.data(), kConfigMagic.size());
  wire::Encoder e(out);
  c.fields(e);
  const std::uint32_t crc = crc32c(out);
  e(crc);
  return write_file_durably(dir / "queue.conf", out);
}

Result<QueueConfig> load_config(const std::filesystem::path& dir) {
  const auto path = dir / "queue.conf";
  auto fd = os::check("open", [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK); });
  if (!fd) return fail(fd.error().code == Errc::not_found ? Errc::not_found : Errc::protocol, "queue config",
                       fmt::format("{}: {}", path.string(), fd.error().message()));
  Fd f(*fd);
  struct stat st {};
  if (::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096)
    return fail(Errc::protocol, "queue config", fmt::format("{} is not a queue config (not a small regular file)", path.string()));
  std::vector<char> raw(static_cast<std::size_t>(st.st_size));
  for (std::size_t at = 0; at < raw.size();) {
    auto n = os::check("read", [&] { return ::read(f.get(), raw.data() + at, raw.size() - at); });
    if (!n) return std::unexpected(n.error());
    if (*n == 0) break;
    at += static_cast<std::size_t>(*n);
  }
  if (raw.size() < kConfigMagic.size() + 4) return fail(Errc::protocol, "queue config", "a queue.conf of the wrong size");
  auto bytes = std::as_bytes(std::span(raw));
  if (std::memcmp(raw.data(), kConfigMagic.data(), kConfigMagic.size()) != 0)
    return fail(Errc::type_mismatch, "queue config", "queue.conf is not a version 1 queue config");
  std::uint32_t crc = 0;
  std::memcpy(&crc, raw.data() + raw.size() - 4, 4);
  if (crc32c(bytes.first(bytes.size() - 4)) != crc) return fail(Errc::protocol, "queue config", "queue.conf fails its checksum");
  QueueConfig c;
  wire::Decoder d(bytes.subspan(kConfigMagic.size(), bytes.size() - kConfigMagic.size() - 4));
  c.fields(d);
  if (!d.ok() || !d.at_end()) return fail(Errc::protocol, "queue config", "queue.conf does not decode");
  if (auto v = wire::validate(c); !v) return std::unexpected(v.error());
  return c;
}

LogOptions log_options(const std::filesystem::path& dir, const QueueConfig& c) {
  LogOptions o;
  o.dir = dir / "log";
  o.sync = c.sync == wire::SyncPolicy::none ? Sync::none : Sync::group;  // the broker's sync thread calls sync()
  return o;
}

}  // namespace

Result<void> write_file_durably(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  const auto tmp = path.string() + ".tmp";
  auto fd = os::check("open", [&] { return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600); });
  if (!fd) return std::unexpected(fd.error());
  Fd f(*fd);
  for (std::size_t at = 0; at < bytes.size();) {
    auto n = os::check("write", [&] { return ::write(f.get(), bytes.data() + at, bytes.size() - at); });
    if (!n) return std::unexpected(n.error());
    at += static_cast<std::size_t>(*n);
  }
  if (auto r = os::check("fsync", [&] { return ::fsync(f.get()); }); !r) return std::unexpected(r.error());
  if (auto r = os::check("rename", [&] { return ::rename(tmp.c_str(), path.c_str()); }); !r) return std::unexpected(r.error());
  auto dfd = os::check("open", [&] { return ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (!dfd) return std::unexpected(dfd.error());
  Fd d(*dfd);
  if (auto r = os::check("fsync", [&] { return ::fsync(d.get()); }); !r) return std::unexpected(r.error());
  return {};
}

Queue::Queue(std::filesystem::path dir, std::string name, QueueConfig config, Log log) noexcept
    : dir_(std::move(dir)), name_(std::move(name)), config_(config), log_(std::move(log)) {}

Result<std::unique_ptr<Queue>> Queue::open(const std::filesystem::path& dir, std::string name, const QueueConfig& config, bool create,
                                           RecoveryReport* report, std::uint64_t first_seq) {
  QueueConfig use = config;
  if (auto existing = load_config(dir)) {
    use = *existing;
  } else if (existing.error().code != Errc::not_found || !create) {
    return std::unexpected(existing.error());
  } else {
    if (auto v = wire::validate(config); !v) return std::unexpected(v.error());
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail_errno(ec.value(), "mkdir", dir.string());
    ::chmod(dir.c_str(), 0700);
    if (auto r = save_config(dir, config); !r) return std::unexpected(r.error());
  }
  std::vector<LogRecord> records;
  auto options = log_options(dir, use);
  options.first_seq = first_seq;
  auto log = Log::open(options, [&](LogRecord&& r) { records.push_back(std::move(r)); }, report);
  if (!log) return std::unexpected(log.error());
  std::unique_ptr<Queue> q(new Queue(dir, std::move(name), use, std::move(*log)));
  for (auto& r : records) q->replay(std::move(r));
  for (auto& [seq, m] : q->live_) q->ready_.insert(seq);
  return q;
}

void Queue::replay(LogRecord&& r) {
  switch (r.kind) {
    case record::message: {
      MessageRecord m;
      if (!decode_record(r.body, m)) return;  // a valid checksum over a body we cannot read: skip it
      Stored s{.id = m.id, .published_ms = m.published_ms, .body = {m.body.begin(), m.body.end()}, .attempts = 0};
      bytes_ += s.body.size();
      if (!s.id.empty() && config_.dedup_window_ms != 0) {
        ids_[s.id] = r.seq;
        id_order_.emplace_back(s.published_ms, s.id, r.seq);
      }
      live_.emplace(r.seq, std::move(s));
      break;
    }
    case record::ack: {
      SeqRecord a;
      if (decode_record(r.body, a)) forget(a.seq);
      break;
    }
    case record::attempts: {
      AttemptsRecord a;
      if (decode_record(r.body, a))
        if (auto it = live_.find(a.seq); it != live_.end()) it->second.attempts = std::max(it->second.attempts, a.attempts);
      break;
    }
    default:
      break;  // a kind from a newer version: not ours to interpret
  }
}

void Queue::forget(std::uint64_t seq) {
  auto it = live_.find(seq);
  if (it == live_.end()) return;
  bytes_ -= it->second.body.size();
  live_.erase(it);
  ready_.erase(seq);
  out_.erase(seq);
}

Result<Published> Queue::publish(std::string id, std::span<const std::byte> body, std::uint64_t now_ms,
                                 std::vector<std::pair<std::uint64_t, Stored>>& evicted, bool dead_letter) {
  const bool dedup = !id.empty() && config_.dedup_window_ms != 0;
  if (dedup) {
    if (auto it = ids_.find(id); it != ids_.end()) {
      ++counters.duplicates;
      return Published{.seq = it->second, .duplicate = true};
    }
  }
  if (body.size() > config_.max_bytes && !dead_letter) {
    ++counters.rejected;
    return fail(Errc::resource_exhausted, "publish", fmt::format("a message of {} bytes, over the queue's max_bytes {}", body.size(), config_.max_bytes));
  }
  auto over = [&] { return live_.size() + 1 > config_.max_messages || bytes_ + body.size() > config_.max_bytes; };
  if (over() && !dead_letter) {
    if (config_.overflow == wire::Overflow::reject) {
      ++counters.rejected;
      return fail(Errc::resource_exhausted, "publish",
                  fmt::format("queue {} is full ({} messages, {} bytes; limits {} and {})", name_, live_.size(), bytes_, config_.max_messages, config_.max_bytes));
    }
    while (over() && !ready_.empty()) {
      const auto seq = *ready_.begin();
      evicted.emplace_back(seq, live_.at(seq));
      remove(seq, Removal::dropped);
    }
    if (over()) {
      ++counters.rejected;
      return fail(Errc::resource_exhausted, "publish", fmt::format("queue {} is full of unacknowledged messages", name_));
    }
  }
  MessageRecord m{.published_ms = now_ms, .id = id, .body = body};
  auto seq = log_.append(record::message, encode_record(m, record_));
  if (!seq) return std::unexpected(seq.error());
  Stored s{.id = std::move(id), .published_ms = now_ms, .body = {body.begin(), body.end()}, .attempts = 0};
  bytes_ += s.body.size();
  if (dedup) {
    ids_[s.id] = *seq;
    id_order_.emplace_back(now_ms, s.id, *seq);
  }
  live_.emplace(*seq, std::move(s));
  ready_.insert(*seq);
  ++counters.published;
  return Published{.seq = *seq, .duplicate = false};
}

std::optional<std::uint64_t> Queue::take(const Holder& holder) {
  if (ready_.empty()) return std::nullopt;
  const auto seq = *ready_.begin();
  ready_.erase(ready_.begin());
  auto& m = live_.at(seq);
  ++m.attempts;
  ++counters.delivered;
  if (m.attempts > 1) ++counters.redelivered;
  out_[seq] = holder;
  return seq;
}

const Stored* Queue::find(std::uint64_t seq) const {
  auto it = live_.find(seq);
  return it == live_.end() ? nullptr : &it->second;
}

const Holder* Queue::holder(std::uint64_t seq) const {
  auto it = out_.find(seq);
  return it == out_.end() ? nullptr : &it->second;
}

bool Queue::over_attempts(std::uint64_t seq) const {
  auto it = live_.find(seq);
  return it != live_.end() && config_.max_attempts != 0 && it->second.attempts >= config_.max_attempts;
}

Result<void> Queue::append_ack(std::uint64_t seq) {
  SeqRecord a{.seq = seq};
  auto r = log_.append(record::ack, encode_record(a, record_));
  if (!r) return std::unexpected(r.error());
  return {};
}

bool Queue::remove(std::uint64_t seq, Removal why) {
  if (!live_.contains(seq)) return false;
  // If the ack record is lost (a crash before it reaches the disk), the message is delivered
  // again: at least once. An I/O error here leaves the same outcome.
  (void)append_ack(seq);
  forget(seq);
  switch (why) {
    case Removal::acked: ++counters.acked; break;
    case Removal::expired: ++counters.expired; break;
    case Removal::dead_lettered: ++counters.dead_lettered; break;
    case Removal::purged: case Removal::dropped: break;
  }
  ++acks_since_tidy_;
  return true;
}

bool Queue::give_back(std::uint64_t seq) {
  auto it = out_.find(seq);
  if (it == out_.end()) return false;
  out_.erase(it);
  ready_.insert(seq);
  AttemptsRecord a{.seq = seq, .attempts = live_.at(seq).attempts};
  (void)log_.append(record::attempts, encode_record(a, record_));  // lost: the attempt is not counted, no more
  return true;
}

std::vector<std::uint64_t> Queue::held_by(std::uint64_t session, std::uint64_t tag) const {
  std::vector<std::uint64_t> out;
  for (const auto& [seq, h] : out_)
    if (h.session == session && (tag == 0 || h.tag == tag)) out.push_back(seq);
  return out;
}

std::vector<std::uint64_t> Queue::overdue(Clock::time_point now) const {
  std::vector<std::uint64_t> out;
  for (const auto& [seq, h] : out_)
    if (h.deadline <= now) out.push_back(seq);
  return out;
}

std::vector<std::uint64_t> Queue::expired(std::uint64_t now_ms, std::size_t max) const {
  std::vector<std::uint64_t> out;
  if (config_.ttl_ms == 0) return out;
  // Ready messages are in seq order, which is publish order: the first one still fresh ends it.
  for (auto seq : ready_) {
    if (out.size() >= max) break;
    const auto& m = live_.at(seq);
    // (Written so that a TTL near 2^64 cannot wrap around.)
    if (now_ms < m.published_ms || now_ms - m.published_ms < config_.ttl_ms) break;
    out.push_back(seq);
  }
  return out;
}

std::uint64_t Queue::purge() {
  std::vector<std::uint64_t> seqs(ready_.begin(), ready_.end());
  for (auto seq : seqs) remove(seq, Removal::purged);
  return seqs.size();
}

void Queue::tidy(std::uint64_t now_ms) {
  while (!id_order_.empty()) {
    auto& [at, id, seq] = id_order_.front();
    if (at + config_.dedup_window_ms > now_ms) break;
    if (auto it = ids_.find(id); it != ids_.end() && it->second == seq) ids_.erase(it);
    id_order_.pop_front();
  }
  if (acks_since_tidy_ == 0) return;
  acks_since_tidy_ = 0;
  // Segments wholly below both the oldest live message and the oldest id still in the window
  // hold nothing anyone needs.
  std::uint64_t keep = log_.last_seq() + 1;
  if (!live_.empty()) keep = std::min(keep, live_.begin()->first);
  if (!id_order_.empty()) keep = std::min(keep, std::get<2>(id_order_.front()));
  (void)log_.drop_before(keep);
}

Result<void> Queue::destroy() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (ec) return fail_errno(ec.value(), "remove queue", dir_.string());
  return {};
}

wire::QueueInfo Queue::info() const {
  return {.name = name_,
          .config = config_,
          .ready = ready_.size(),
          .unacked = out_.size(),
          .bytes = bytes_,
          .consumers = consumers,
          .published = counters.published,
          .duplicates = counters.duplicates,
          .delivered = counters.delivered,
          .redelivered = counters.redelivered,
          .acked = counters.acked,
          .dead_lettered = counters.dead_lettered,
          .expired = counters.expired,
          .rejected = counters.rejected};
}

}  // namespace ipcx::broker
