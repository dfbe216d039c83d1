// Peer death for sysv:// conversations. A process blocked in msgrcv (a recv without deadline,
// or a Waiter thread) sees nothing when its peer dies: one thread per process watches the
// peers' pidfds and, when one dies, sends a wake message to the conversation's receive type,
// so the receiver returns, finds the peer dead and reports Errc::closed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <initializer_list>

#include <ipcx/fd.hpp>

namespace ipcx::sysv::detail {

// Watches `pidfd` (duplicated) for conversation (qid, type). Returns an id for unwatch, or 0
// when it could not (no thread, no descriptor): the receiver then notices death only when its
// own calls time out or would block.
std::uint64_t watch_peer(int pidfd, int qid, long type) noexcept;
void unwatch_peer(std::uint64_t id) noexcept;

// After a conversation is closed, its peer may still send (a bye, a closed note, data it had
// in flight) and nobody would read it: when process `pid` (whose pidfd this is) exits, every
// message of `types` in queue `qid` is removed. One descriptor per watched process, however
// many conversations it had.
void purge_on_exit(int pidfd, pid_t pid, int qid, std::initializer_list<long> types) noexcept;

}  // namespace ipcx::sysv::detail
