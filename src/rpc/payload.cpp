// Payloads and status names.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <mutex>
#include <utility>

#include <fmt/format.h>

#include "os/shm.hpp"
#include "os/sys.hpp"
#include "rpc/oob.hpp"

namespace ipcx::rpc {

namespace {
constexpr std::array<std::string_view, kMaxCode + 1> kNames = {
    "OK",           "CANCELLED",         "UNKNOWN",      "INVALID_ARGUMENT",    "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED",     "INTERNAL",     "UNAVAILABLE",         "DATA_LOSS",         "UNAUTHENTICATED"};

constexpr unsigned kNeededSeals = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
}  // namespace

std::string code_name(Code code) {
  const auto n = static_cast<std::size_t>(code);
  return n < kNames.size() ? std::string(kNames[n]) : fmt::format("CODE_{}", n);
}

std::string Status::to_string() const {
  return message.empty() ? code_name(code) : fmt::format("{}: {}", code_name(code), message);
}

// ---- buffers ----
//
// Large message buffers are kept for the next message instead of going back to the allocator:
// glibc gives blocks of this size back to the kernel when they are freed, and a new one faults
// every page in again, which costs a call of a megabyte far more than its copies.

namespace {

constexpr std::size_t kKeepFrom = std::size_t{64} << 10;  // smaller ones the allocator reuses well
constexpr std::size_t kKeepAtMost = std::size_t{32} << 20;  // bytes kept, all buffers together

struct BufferCache {
  std::mutex m;
  std::vector<std::vector<std::byte>> free;
  std::size_t bytes = 0;
};

BufferCache& cache() {
  static BufferCache* c = new BufferCache;  // (never destroyed: payloads may outlive statics)
  return *c;
}

}  // namespace

namespace buffers {

std::vector<std::byte> take() {
  auto& c = cache();
  std::lock_guard lk(c.m);
  if (c.free.empty()) return {};
  auto v = std::move(c.free.back());
  c.free.pop_back();
  c.bytes -= v.capacity();
  return v;
}

void give(std::vector<std::byte>&& v) noexcept {
  const auto cap = v.capacity();
  if (cap < kKeepFrom || cap > kKeepAtMost) return;
  auto& c = cache();
  std::lock_guard lk(c.m);
  if (c.bytes + cap > kKeepAtMost) return;
  v.clear();
  c.bytes += cap;
  c.free.push_back(std::move(v));
}

}  // namespace buffers

Payload::Payload(Payload&& o) noexcept
    : owned_(std::move(o.owned_)),
      skip_(std::exchange(o.skip_, 0)),
      map_(std::exchange(o.map_, nullptr)),
      map_len_(std::exchange(o.map_len_, 0)) {}

Payload& Payload::operator=(Payload&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(map_, map_len_);
    buffers::give(std::move(owned_));
    owned_ = std::move(o.owned_);
    skip_ = std::exchange(o.skip_, 0);
    map_ = std::exchange(o.map_, nullptr);
    map_len_ = std::exchange(o.map_len_, 0);
  }
  return *this;
}

Payload::~Payload() {
  if (map_) ::munmap(map_, map_len_);
  buffers::give(std::move(owned_));
}

Result<Payload> Payload::map_sealed(int fd, std::size_t length) {
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) return fail(Errc::protocol, "rpc", "the out-of-band payload is not a memfd that takes seals");
  if ((static_cast<unsigned>(seals) & kNeededSeals) != kNeededSeals)
    return fail(Errc::protocol, "rpc", "the out-of-band payload is not sealed against writing, growing and shrinking");
  struct stat st{};
  if (::fstat(fd, &st) != 0) return fail_errno(errno, "fstat");
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) != length)
    return fail(Errc::protocol, "rpc", fmt::format("the out-of-band payload has {} bytes; its header says {}", st.st_size, length));
  // Every page must exist already, paid for by the sender: reading a hole of a memfd would
  // allocate it here, so a sparse file of a few bytes could make this side allocate gigabytes.
  if (static_cast<std::uint64_t>(st.st_blocks) * 512 < length)
    return fail(Errc::protocol, "rpc", fmt::format("the out-of-band payload has holes ({} of its {} bytes allocated)", static_cast<std::uint64_t>(st.st_blocks) * 512, length));
  // MAP_POPULATE: the pages are there already; mapping them in one go costs far less than a
  // fault per page as the reader walks them.
  void* at = ::mmap(nullptr, length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (at == MAP_FAILED) return fail_errno(errno, "mmap");
  Payload p;
  p.map_ = at;
  p.map_len_ = length;
  return p;
}

namespace oob {

Result<Fd> make_sealed(const Body& body) {
  Fd fd(::memfd_create("ipcx-rpc", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return fail_errno(errno, "memfd_create");
  if (body.bytes) {
    // Bytes already in memory: copied into the file by the kernel, page by page, which also
    // reports a full memory cgroup as an error (ENOSPC, ENOMEM).
    std::size_t done = 0;
    while (done < body.size) {
      const ssize_t n = ::pwrite(fd.get(), body.bytes + done, body.size - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail_errno(n < 0 ? errno : EIO, "pwrite");
      done += static_cast<std::size_t>(n);
    }
  } else {
    if (::ftruncate(fd.get(), static_cast<off_t>(body.size)) != 0) return fail_errno(errno, "ftruncate");
    // Writing the pages is where a full memory cgroup would show: allocate them first, so that
    // is an error here and not a SIGBUS in the codec.
    if (::fallocate(fd.get(), 0, 0, static_cast<off_t>(body.size)) != 0 && errno != EOPNOTSUPP)
      return fail_errno(errno, "fallocate");
    auto map = os::Mapping::map(fd.get(), body.size, true);
    if (!map) return std::unexpected(map.error());
    if (body.write) body.write(body.object, map->bytes());
  }  // (unmapped: a seal against writing needs no writable mapping left)
  if (::fcntl(fd.get(), F_ADD_SEALS, kNeededSeals | F_SEAL_SEAL) != 0) return fail_errno(errno, "fcntl(F_ADD_SEALS)");
  return fd;
}

}  // namespace oob
}  // namespace ipcx::rpc
