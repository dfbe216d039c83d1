// libFuzzer target: ipcxd's log recovery (src/broker/log.hpp) on any bytes in a segment file.
//
// The input is a segment's contents; its first 32 bytes are replaced by a valid header half of
// the time, so the fuzzer reaches the record decoder and not only the header check. Recovery
// must never crash or fail on content (only I/O may fail), must replay records in strictly
// increasing seq order with valid kinds, and a second open must find nothing left to repair.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "broker/crc32c.hpp"
#include "broker/log.hpp"

namespace {

[[noreturn]] void check_failed(const char* what, int line) {
  std::fprintf(stderr, "fuzz_broker_log.cpp:%d: check failed: %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond) ((cond) ? void(0) : check_failed(#cond, __LINE__))

const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::path("/tmp") / ("ipcx-fuzz-log-" + std::to_string(::getpid()));
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::path("/tmp") / ("ipcx-fuzz-log-" + std::to_string(::getpid())), ec);
    });
    return d;
  }();
  return dir;
}

void valid_header(std::vector<std::byte>& seg) {
  std::memcpy(seg.data(), "IPCXSEG\0", 8);
  const std::uint16_t version = 1, reserved = 0;
  std::memcpy(seg.data() + 8, &version, 2);
  std::memcpy(seg.data() + 10, &reserved, 2);
  std::memset(seg.data() + 12, 0, 4);
  const std::uint64_t first = 1;
  std::memcpy(seg.data() + 16, &first, 8);
  const std::uint32_t crc = ipcx::broker::crc32c(std::span<const std::byte>(seg.data(), 32));
  std::memcpy(seg.data() + 12, &crc, 4);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ipcx::broker;
  if (size < 1) return 0;
  const bool fix_header = data[0] & 1;
  std::vector<std::byte> seg(size - 1);
  if (!seg.empty()) std::memcpy(seg.data(), data + 1, seg.size());
  if (fix_header && seg.size() >= 32) valid_header(seg);

  std::error_code ec;
  std::filesystem::remove_all(scratch(), ec);
  std::filesystem::create_directories(scratch(), ec);
  const auto file = scratch() / "00000000000000000001.seg";
  {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(seg.empty() || ::write(fd, seg.data(), seg.size()) == static_cast<ssize_t>(seg.size()));
    ::close(fd);
  }
  LogOptions o;
  o.dir = scratch();
  o.sync = Sync::none;
  o.max_record = 1 << 20;
  std::uint64_t last = 0;
  std::size_t replayed = 0;
  {
    RecoveryReport report;
    auto log = Log::open(o, [&](LogRecord&& r) {
      FUZZ_CHECK(r.seq > last);
      FUZZ_CHECK(r.kind != 0);
      FUZZ_CHECK(r.body.size() <= o.max_record);
      last = r.seq;
      ++replayed;
    }, &report);
    FUZZ_CHECK(log.has_value());
    FUZZ_CHECK(report.records == replayed);
  }
  std::uint64_t again_last = 0;
  std::size_t again = 0;
  RecoveryReport second;
  auto log = Log::open(o, [&](LogRecord&& r) {
    again_last = r.seq;
    ++again;
  }, &second);
  FUZZ_CHECK(log.has_value());
  FUZZ_CHECK(again == replayed && again_last == last);
  FUZZ_CHECK(second.problems.empty());
  return 0;
}
