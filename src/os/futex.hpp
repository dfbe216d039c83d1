// futex(2) on a 32-bit word, private to a process or shared through a mapping.
#pragma once

#include <atomic>
#include <cstdint>

#include <ipcx/timeout.hpp>
#include <ipcx/error.hpp>

namespace ipcx::os {

// Sleeps while *word == expected, up to `timeout`. Returns normally on wake-up, value change
// (EAGAIN) or spurious wake; Errc::timeout when the time ran out. `shared` for words in
// memory mapped by several processes.
Result<void> futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                        Timeout timeout = forever, bool shared = true) noexcept;
// Wakes up to `count` waiters; returns how many were woken.
Result<int> futex_wake(std::atomic<std::uint32_t>& word, int count = 1, bool shared = true) noexcept;
// The same on a futex word that is not a std::atomic (e.g. the lock word inside a glibc mutex).
Result<int> futex_wake(void* word, int count = 1, bool shared = true) noexcept;

}  // namespace ipcx::os
