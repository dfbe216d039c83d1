// CRC-32C (Castagnoli), the checksum of the broker's on-disk log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ipcx::broker {

// CRC-32C of `data` (reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF):
// crc32c("123456789") == 0xE3069283. `crc` is a previous result to continue from, so
// crc32c(b, crc32c(a)) == crc32c(a + b). Uses the SSE4.2 instruction when the CPU has it.
// Never blocks, never allocates; safe from any thread.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

// The two implementations behind crc32c(), exposed so tests can check one against the other.
namespace detail {
std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;
bool crc32c_hardware_available() noexcept;
// Only valid when crc32c_hardware_available(); elsewhere it is the portable version.
std::uint32_t crc32c_hardware(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;
}  // namespace detail

}  // namespace ipcx::broker
