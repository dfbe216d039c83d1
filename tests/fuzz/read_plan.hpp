// Shared by the stream-decoder fuzz targets: turns a fuzz input into a byte stream plus the
// shape of the reads that deliver it, so the same bytes arrive cut at every possible place.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "wire/frame.hpp"

namespace ipcx::fuzz {

constexpr std::size_t kBulkMegabyte = std::size_t{1} << 20;
constexpr std::size_t kMaxStream = 2 * kBulkMegabyte + 65536;

// The decoder's maximum. The default is picked for 1 value in 8 only (megabyte payloads cost
// milliseconds per run); the small ones put the size boundaries within reach of small inputs.
inline std::size_t pick_max(std::uint8_t v) {
  switch (v & 7) {
    case 0: return ipcx::wire::kDefaultMaxPayload;
    case 1:
    case 2:
    case 3: return v >> 3;  // 0..31
    case 4:
    case 5: return 4096;
    default: return 65536;
  }
}

struct Read {
  std::size_t offset, size;
  std::uint8_t how;
  std::vector<std::uint8_t> bytes;  // from the input; empty for bulk
  std::uint8_t fill;                // bulk
};

struct Plan {
  std::vector<Read> reads;
  std::vector<std::uint8_t> stream;  // all reads laid end to end
};

// Consumes the rest of `fdp`: per read, 1 byte of size and 1 byte of `how` (bit 3: bulk, one
// more byte of fill), then the read's bytes. A bulk fill equal to `avoid` becomes 'x'.
inline Plan shape_reads(FuzzedDataProvider& fdp, std::size_t max, std::optional<std::uint8_t> avoid = {}) {
  // Shape the reads first, then lay the stream out once (megabyte streams are common enough
  // in the corpus for extra copies to matter).
  Plan p;
  std::size_t total = 0;
  while (fdp.remaining_bytes() > 0) {
    const auto sz = fdp.ConsumeIntegral<std::uint8_t>();
    const auto how = fdp.ConsumeIntegral<std::uint8_t>();
    const std::size_t n = sz < 240 ? sz : std::size_t(sz - 239) * 4096;
    Read r{total, 0, how, {}, 0};
    if (how & 8) {
      const auto fill = fdp.ConsumeIntegral<std::uint8_t>();
      r.fill = avoid && fill == *avoid ? std::uint8_t{'x'} : fill;
      r.size = std::min(sz == 255 && max > kBulkMegabyte ? kBulkMegabyte : n, kMaxStream - total);
    } else {
      r.bytes = fdp.ConsumeBytes<std::uint8_t>(std::min(n, kMaxStream - total));
      r.size = r.bytes.size();
    }
    total += r.size;
    p.reads.push_back(std::move(r));
  }
  p.stream.reserve(total);
  for (const Read& r : p.reads) {
    if (r.how & 8) p.stream.insert(p.stream.end(), r.size, r.fill);
    else p.stream.insert(p.stream.end(), r.bytes.begin(), r.bytes.end());
  }
  return p;
}

}  // namespace ipcx::fuzz
