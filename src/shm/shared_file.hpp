// The named files that every participant may create (events, zero-copy topics): opened, or
// created and initialised, safely against others doing the same at the same time and against
// files left half-made by a killed creator (docs/shm.md, "Named objects: lifetime, liveness").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <ipcx/error.hpp>
#include <ipcx/fd.hpp>

namespace ipcx::shm::shared_file {

// A name of a state, event or topic: 1 to `max` bytes, no NUL, none of `forbidden`.
Result<void> check_name(std::string_view name, std::size_t max, const char* what, std::string_view forbidden = {});

struct Opened {
  Fd fd;  // held (lifetime::hold): leave with lifetime::leave
  void* base = nullptr;  // the whole file, mapped read-write
  std::size_t size = 0;
  std::string path;
};

// Opens /dev/shm's file for `name`, or creates it with `size` bytes: `init` writes the header
// but its first field, the u64 magic at offset 0, which is written last (release), while the
// creator claims byte 0 (lifetime::take_writer) so that openers wait instead of judging a
// half-written header. For an existing file, `check(fd, file_size)` reads its header (a private
// copy, by pread), keeps what it needs, and returns the magic it found (0: not initialised yet),
// or an error for a header that does not add up. A file that stays uninitialised with nobody
// creating it is replaced only when nobody else holds it; a refused file is never removed.
// A file this call creates has mode 0600, or 0660 and group `gid` when gid >= 0. A name in
// another user's namespace (~OWNER/NAME) is only opened, never created (not_found).
// Errors (named `op`): those of `check`, protocol (another magic: `what` names what was
// expected), timeout, not_found, and those of shm_open and mmap.
Result<Opened> open_or_create(std::string_view name, std::size_t size, std::uint64_t magic, const char* what, const char* op,
                              const std::function<void(void* base)>& init,
                              const std::function<Result<std::uint64_t>(int fd, std::uint64_t file_size)>& check,
                              long gid = -1);
// The gid for `group` (empty: -1, the caller's own 0600 file).
Result<long> group_id(const std::string& group);

}  // namespace ipcx::shm::shared_file
