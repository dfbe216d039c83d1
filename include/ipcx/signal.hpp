// Signals as a tiny transport, and clean shutdown on SIGINT/SIGTERM.
//
// signal://PID[?sig=N] sends sigqueue(2) real-time signals carrying one int (4 bytes,
// little-endian, in the message) to PID and receives the same signal through a signalfd.
// listen("signal://self") accepts whoever signals this process; replies go to the last sender.
// The signal (SIGRTMIN+N, default N=4) must be blocked in every thread of a receiving process:
// call ipcx::block_transport_signal() before starting threads. Sender identity comes from the
// siginfo, which sigqueue's caller can forge: PeerCred::verified is false.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include <sys/types.h>

#include <ipcx/error.hpp>

namespace ipcx {

inline constexpr int kDefaultSignalOffset = 4;

// The real-time signal used for offset N: SIGRTMIN+N (N in 0..SIGRTMAX-SIGRTMIN).
Result<int> transport_signal(int offset = kDefaultSignalOffset);
// Blocks the transport signal in the calling thread (threads created later inherit it).
Result<void> block_transport_signal(int offset = kDefaultSignalOffset);
// Sends one value to `pid`, as `ipcx signal PID --value N` does.
Result<void> send_signal(pid_t pid, int value, int offset = kDefaultSignalOffset);

// A signal:// message is one int, 4 bytes little-endian: these two are the only encoding.
std::array<std::byte, 4> signal_message(std::int32_t value) noexcept;
// The int a 4-byte message carries; nothing for any other size.
std::optional<std::int32_t> signal_value(std::span<const std::byte> message) noexcept;

}  // namespace ipcx
