// The raw side of the broker rows: 1 KiB records appended to a file and fdatasynced, the disk's
// own floor under any broker (rows_broker.hpp says what is measured).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "bench/rows_broker.hpp"
#include "bench/session.hpp"

namespace ipcx::bench::broker {

// ---- raw: the disk without a broker ---------------------------------------------------------
//
// The parent appends 1 KiB records (write(2), O_APPEND) to a file of its own in the run
// directory, the file system the servers keep their state on. broker-durable: fdatasync after
// each record, a record confirmed when its fdatasync returns. broker-group: the writer writes
// as fast as the window lets it and wakes a syncer thread, which waits the group window (2 ms),
// then fdatasyncs: the records written before the fdatasync began are confirmed when it returns
// (and a record written meanwhile wakes it again), as ipcxd's group commit does. After the
// timed part the file is read back and every record compared. No consumer: the echo child only
// starts and exits.

namespace {

class RawLogChannel final : public SelfTimedChannel {
 public:
  RawLogChannel() = default;  // the echo child's: nothing to do
  RawLogChannel(std::string path, Fd fd, Durability d) : path_(std::move(path)), fd_(std::move(fd)), d_(d) {}

  Result<Timing> measure(int warmup, int rounds) override {
    ConfirmClock clock(warmup, rounds);
    auto r = d_ == Durability::each ? each(clock) : group(clock);
    if (!r) return std::unexpected(r.error());
    auto t = clock.timing();
    if (!t) return t;
    if (auto v = read_back(clock.total()); !v) return std::unexpected(v.error());
    t->compared = true;
    return t;
  }
  Status answer(int, int) override { return {}; }

 private:
  Status write_record(std::span<const std::byte> body) {
    for (std::size_t off = 0; off < body.size();) {
      auto n = retry([&] { return ::write(fd_.get(), body.data() + off, body.size() - off); });
      if (n < 0) return sys_error("write", path_);
      off += static_cast<std::size_t>(n);
    }
    return {};
  }

  Status each(ConfirmClock& clock) {
    std::vector<std::byte> body(kSize);
    for (std::uint64_t n = 0; n < clock.total(); ++n) {
      if (interrupted()) return fail(Errc::closed, "raw log", "interrupted");
      stamp(body, n);
      if (auto s = write_record(body); !s) return s;
      if (::fdatasync(fd_.get()) != 0) return sys_error("fdatasync", path_);
      clock.saw(n + 1);
    }
    return {};
  }

  Status group(ConfirmClock& clock) {
    std::mutex m;
    std::condition_variable wake_syncer, wake_writer;
    std::uint64_t written = 0, durable = 0;
    bool requested = false, stop = false;
    std::optional<Error> failed;
    std::thread syncer([&] {
      std::unique_lock lk(m);
      for (;;) {
        wake_syncer.wait(lk, [&] { return stop || requested; });
        if (stop) return;
        lk.unlock();
        std::this_thread::sleep_for(kGroupWindow);  // more records share the fdatasync
        lk.lock();
        const auto upto = written;
        lk.unlock();
        std::optional<Error> bad;
        if (::fdatasync(fd_.get()) != 0) bad = sys_error("fdatasync", path_).error();
        lk.lock();
        if (bad) {
          failed = std::move(bad);
          stop = true;
          wake_writer.notify_all();
          return;
        }
        durable = std::max(durable, upto);
        requested = written > durable;  // written during the fdatasync: the next one
        wake_writer.notify_all();
      }
    });
    auto finish = [&](Status s) {
      {
        std::lock_guard lk(m);
        stop = true;
      }
      wake_syncer.notify_all();
      syncer.join();
      if (s && failed) return Status(std::unexpected(*failed));
      return s;
    };
    std::vector<std::byte> body(kSize);
    for (std::uint64_t n = 0; n <= clock.total(); ++n) {
      {
        std::unique_lock lk(m);
        // The window (as every impl's), and at the end every record confirmed.
        const auto limit = n < clock.total() ? n + 1 - std::min<std::uint64_t>(n + 1, kWindow) : clock.total();
        while (durable < limit && !failed) {
          wake_writer.wait_for(lk, 100ms);
          clock.saw(durable);
          if (interrupted()) {
            lk.unlock();
            return finish(fail(Errc::closed, "raw log", "interrupted"));
          }
        }
        if (failed) break;
        clock.saw(durable);
      }
      if (n == clock.total()) break;
      stamp(body, n);
      if (auto s = write_record(body); !s) return finish(s);
      std::lock_guard lk(m);
      written = n + 1;
      if (!requested) {
        requested = true;
        wake_syncer.notify_one();
      }
    }
    return finish({});
  }

  Status read_back(std::uint64_t total) const {
    Fd in(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return sys_error("open", path_);
    std::vector<std::byte> buf(kSize * 64);
    std::uint64_t n = 0;
    std::size_t have = 0;
    for (;;) {
      auto r = retry([&] { return ::read(in.get(), buf.data() + have, buf.size() - have); });
      if (r < 0) return sys_error("read", path_);
      have += static_cast<std::size_t>(r);
      std::size_t at = 0;
      for (; have - at >= kSize; at += kSize, ++n)
        if (auto s = check(std::span(buf).subspan(at, kSize), n); !s) return s;
      std::memmove(buf.data(), buf.data() + at, have - at);
      have -= at;
      if (r == 0) break;
    }
    if (n != total || have != 0)
      return fail(Errc::protocol, "verify", fmt::format("{} records read back from {}, {} written", n, path_, total));
    return {};
  }

  std::string path_;
  Fd fd_;
  Durability d_ = Durability::each;
};

class RawLogSetup final : public Setup {
 public:
  RawLogSetup(const RunCtx& c, Durability d) : path_(c.path + ".log"), d_(d) {}
  ~RawLogSetup() override {
    if (made_) ::unlink(path_.c_str());
  }
  Made<Channel> child_channel() override { return std::make_unique<RawLogChannel>(); }
  Made<Channel> parent_channel(const std::string&, pid_t) override {
    Fd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return sys_error("open", path_);
    made_ = true;
    return std::make_unique<RawLogChannel>(path_, std::move(fd), d_);
  }

 private:
  std::string path_;
  Durability d_;
  bool made_ = false;
};

}  // namespace

std::unique_ptr<Setup> raw_log_setup(const RunCtx& c, Durability d) { return std::make_unique<RawLogSetup>(c, d); }

}  // namespace ipcx::bench::broker
