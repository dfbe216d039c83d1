#include "broker/crc32c.hpp"

#include <array>
#include <bit>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ipcx::broker {
namespace {

constexpr std::uint32_t kPoly = 0x82F63B78u;

// Slicing-by-8: table[k][b] is the CRC of byte b followed by k zero bytes, so eight input
// bytes are folded with eight independent lookups instead of eight dependent ones.
constexpr auto kTables = [] {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][i] = c;
  }
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xffu];
  return t;
}();

std::uint64_t load_le64(const std::byte* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = std::byteswap(v);
  return v;
}

std::uint32_t portable(const std::byte* p, std::size_t n, std::uint32_t state) noexcept {
  const auto& t = kTables;
  while (n >= 8) {
    std::uint64_t w = load_le64(p) ^ state;
    state = t[7][w & 0xff] ^ t[6][(w >> 8) & 0xff] ^ t[5][(w >> 16) & 0xff] ^ t[4][(w >> 24) & 0xff] ^
            t[3][(w >> 32) & 0xff] ^ t[2][(w >> 40) & 0xff] ^ t[1][(w >> 48) & 0xff] ^ t[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) state = (state >> 8) ^ t[0][(state ^ std::to_integer<std::uint32_t>(*p++)) & 0xff];
  return state;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t hardware(const std::byte* p, std::size_t n,
                                                         std::uint32_t state) noexcept {
  std::uint64_t s = state;
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, sizeof w);  // x86 is little-endian and loads unaligned words cheaply
    s = _mm_crc32_u64(s, w);
    p += 8;
    n -= 8;
  }
  auto s32 = static_cast<std::uint32_t>(s);
  while (n-- > 0) s32 = _mm_crc32_u8(s32, std::to_integer<std::uint8_t>(*p++));
  return s32;
}

bool detect_hardware() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}
#else
std::uint32_t hardware(const std::byte* p, std::size_t n, std::uint32_t state) noexcept {
  return portable(p, n, state);
}
bool detect_hardware() noexcept { return false; }
#endif

using Impl = std::uint32_t (*)(const std::byte*, std::size_t, std::uint32_t) noexcept;

Impl chosen() noexcept {
  static const Impl impl = detect_hardware() ? &hardware : &portable;
  return impl;
}

}  // namespace

std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  return ~chosen()(data.data(), data.size(), ~crc);
}

namespace detail {

std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  return ~portable(data.data(), data.size(), ~crc);
}

bool crc32c_hardware_available() noexcept {
  static const bool available = detect_hardware();
  return available;
}

std::uint32_t crc32c_hardware(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  if (!crc32c_hardware_available()) return crc32c_portable(data, crc);
  return ~hardware(data.data(), data.size(), ~crc);
}

}  // namespace detail
}  // namespace ipcx::broker
