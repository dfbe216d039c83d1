// Helpers shared by segment.cpp and listing.cpp.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shm/layout.hpp"

namespace ipcx::shm::internal {

// The NUL-terminated string in a fixed field; nullopt when it has no NUL or is empty.
std::optional<std::string> field_string(const char* field, std::size_t capacity);
// A ready entry's offset and size lie in the heap of a `total`-byte segment.
bool entry_in_bounds(const layout::Entry& e, std::uint64_t total) noexcept;

}  // namespace ipcx::shm::internal
