// Who still uses a named shared-memory file, asked of the kernel (docs/shm.md, "Named objects:
// lifetime and liveness"). Every process that has a state or event file open holds a shared
// flock(2) on it for as long as it does; the kernel drops it when the process exits, however it
// exits. The last one out removes the name; `ipcx shm gc` removes a name nobody holds. A writer
// also holds an open-file-description lock on byte 0, which others can test without taking.
#pragma once

#include <string>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

namespace ipcx::shm::lifetime {

// Takes the shared hold on an opened file, then checks that `path` still names it (a last
// leaver may have removed it while we opened it). false: it was removed, open again.
Result<bool> hold(int fd, const std::string& path);
// Leaves: when no other process holds the file and `path` still names it, removes the name.
// Closes the descriptor. Returns true when it removed the name.
bool leave(Fd fd, const std::string& path) noexcept;
// The name's file is held by nobody (the caller has it open without a hold): removes it, as
// gc does. Returns true when it removed the name.
bool remove_if_unused(int fd, const std::string& path) noexcept;

// The writer's lock (F_OFD_SETLK, F_WRLCK on byte 0): false when another description holds it.
Result<bool> take_writer(int fd);
// Some description holds the writer's lock (F_OFD_GETLK: nothing is taken).
bool writer_alive(int fd) noexcept;

}  // namespace ipcx::shm::lifetime
