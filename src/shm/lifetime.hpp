// Who still uses a named shared-memory file, asked of the kernel (docs/shm.md, "Named objects:
// lifetime and liveness"). Every process that has a state or event file open holds a shared
// flock(2) on it for as long as it does; the kernel drops it when the process exits, however it
// exits. The last one out removes the name; `ipcx shm gc` removes a name nobody holds. A writer
// also holds an open-file-description lock on byte 0, which others can test without taking.
#pragma once

#include <sys/types.h>

#include <string>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

namespace ipcx::shm::lifetime {

// Takes the shared hold on an opened file, then checks that `path` still names it (a last
// leaver may have removed it while we opened it). false: it was removed, open again.
// Errc::timeout when another process keeps it locked exclusively for a second.
Result<bool> hold(int fd, const std::string& path);
// Leaves: when no other process holds the file and `path` still names it, removes the name.
// Closes the descriptor. Returns true when it removed the name.
// `last`, when given, runs just before the name is removed (still holding it exclusively); when
// it returns false, the name stays (a queue that still holds messages for its next reader).
bool leave(Fd fd, const std::string& path, bool (*last)(void*) noexcept = nullptr, void* ctx = nullptr) noexcept;
// The name's file is held by nobody (the caller has it open without a hold): removes it, as
// gc does. Returns true when it removed the name.
bool remove_if_unused(int fd, const std::string& path) noexcept;

// A claim on byte `byte` of the file (F_OFD_SETLK, F_WRLCK): false when another description
// holds it. Byte 0 is a state's writer (or an object's creator while it initialises it); an
// event's listener slot i is byte 1 + i. The kernel releases it when the holder's last
// descriptor of that description closes, and so when its process dies.
Result<bool> take_writer(int fd, off_t byte = 0);
void release_writer(int fd, off_t byte = 0) noexcept;
// Some other description holds the claim (F_OFD_GETLK: nothing is taken).
bool writer_alive(int fd, off_t byte = 0) noexcept;

}  // namespace ipcx::shm::lifetime
