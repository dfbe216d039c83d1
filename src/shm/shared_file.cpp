#include "shm/shared_file.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "os/shm.hpp"
#include "shm/lifetime.hpp"

namespace ipcx::shm::shared_file {

Result<void> check_name(std::string_view name, std::size_t max, const char* what, std::string_view forbidden) {
  if (name.empty() || name.size() > max || name.find('\0') != std::string_view::npos ||
      name.find_first_of(forbidden) != std::string_view::npos)
    return fail(Errc::invalid_argument, what,
                fmt::format("'{}': 1 to {} bytes, no NUL{}{}", name.substr(0, 64), max, forbidden.empty() ? "" : ", no ",
                            forbidden));
  return {};
}

Result<long> group_id(const std::string& group) {
  if (group.empty()) return -1L;
  return os::resolve_group(group);
}

Result<Opened> open_or_create(std::string_view name, std::size_t size, std::uint64_t magic, const char* what, const char* op,
                              const std::function<void(void* base)>& init,
                              const std::function<Result<std::uint64_t>(int fd, std::uint64_t file_size)>& check,
                              long gid) {
  auto owned = os::owner_of(name);
  if (!owned) return std::unexpected(owned.error());
  const std::string path = "/dev/shm" + os::SharedMemory::system_name(name);
  const auto start = std::chrono::steady_clock::now();
  // Bounded: each round loses only to a process that created or removed the name meanwhile.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    Opened o;
    o.path = path;
    bool fresh = false;
    Result<os::SharedMemory> c = owned->foreign ? Result<os::SharedMemory>(fail(Errc::already_exists, op, "open only"))
                                                : os::SharedMemory::create(name, size, gid >= 0 ? 0660 : 0600, gid);
    if (c) {
      o.fd = c->take_fd();
      fresh = true;
      // Claimed before anything else: an opener that finds no magic waits while this is held.
      (void)lifetime::take_writer(o.fd.get());
    } else if (c.error().code != Errc::already_exists) {
      return std::unexpected(c.error());
    } else {
      auto e = os::SharedMemory::open(name, /*writable=*/true);
      if (!e) {
        if (e.error().code == Errc::not_found && !owned->foreign) continue;
        return std::unexpected(e.error());
      }
      o.fd = e->take_fd();
    }
    auto held = lifetime::hold(o.fd.get(), path);
    if (!held) return std::unexpected(held.error());
    if (!*held) continue;  // removed by its last user meanwhile
    std::size_t file_size = size;
    if (!fresh) {
      struct stat st {};
      if (::fstat(o.fd.get(), &st) != 0) return fail_errno(errno, "fstat", path);
      file_size = static_cast<std::size_t>(st.st_size);
      // Refusing, waiting or replacing: our descriptor is closed (dropping our hold), the name
      // is never removed here but through remove_if_unused.
      auto found = check(o.fd.get(), file_size);
      if (!found) return std::unexpected(found.error());
      if (*found == 0) {
        // Its creator is writing the header (it holds byte 0), or died before finishing it:
        // then it is replaced, but only when no other process holds the file.
        const bool replaced = !lifetime::writer_alive(o.fd.get()) && lifetime::remove_if_unused(o.fd.get(), path);
        o.fd.reset();
        if (replaced) continue;
        if (std::chrono::steady_clock::now() - start > std::chrono::seconds(1))
          return fail(Errc::timeout, op,
                      fmt::format("{}: not an initialised {} after 1 s (its creator is stuck, or it is not one)", path, what));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      if (*found != magic)
        return fail(Errc::protocol, op, fmt::format("{}: not an ipcx {} (magic {:#018x})", path, what, *found));
    }
    void* base = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, o.fd.get(), 0);
    if (base == MAP_FAILED) {
      const int e = errno;
      if (fresh) ::unlink(path.c_str());
      return fail_errno(e, "mmap", path);
    }
    o.base = base;
    o.size = file_size;
    if (fresh) {
      // The file is zero-filled: `init` writes the non-zero fields, the magic comes last.
      init(base);
      std::atomic_ref<std::uint64_t>(*static_cast<std::uint64_t*>(base)).store(magic, std::memory_order_release);
      lifetime::release_writer(o.fd.get());
    }
    return o;
  }
  return fail(Errc::resource_exhausted, op, fmt::format("{}: created and removed by others 1000 times", path));
}

}  // namespace ipcx::shm::shared_file
