#include "bench/control.hpp"

#include <algorithm>

#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>

#include "bench/util.hpp"

namespace ipcx::bench {

void write_control(int fd, std::string_view kind, std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  auto line = fmt::format("{} {}\n", kind, text);
  for (std::size_t off = 0; off < line.size();) {
    ssize_t n = retry([&] { return ::write(fd, line.data() + off, line.size() - off); });
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

Result<std::string> Control::line(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = text_.find('\n'); nl != std::string::npos) {
      auto l = text_.substr(0, nl);
      text_.erase(0, nl + 1);
      return l;
    }
    auto r = read_some(until);
    if (!r) return std::unexpected(r.error());
    if (*r == 0) return fail(Errc::closed, "echo child", "exited without a word");
  }
}

bool Control::wait_eof(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto r = read_some(until);
    if (!r) return false;
    if (*r == 0) return true;
  }
}

std::string Control::child_error() const { return reported("error"); }

std::string Control::reported(std::string_view kind) const {
  const auto key = fmt::format("{} ", kind);
  auto at = text_.rfind(key);
  while (at != std::string::npos && at > 0 && text_[at - 1] != '\n') at = at ? text_.rfind(key, at - 1) : std::string::npos;
  if (at == std::string::npos) return {};
  auto end = text_.find('\n', at);
  return text_.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
}

Result<std::size_t> Control::read_some(std::chrono::steady_clock::time_point until) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
  pollfd p{fd_.get(), POLLIN, 0};
  int r = retry([&] { return ::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0))); });
  if (r < 0) return sys_error("poll");
  if (r == 0) return fail(Errc::timeout, "echo child", "no answer");
  char buf[512];
  ssize_t n = retry([&] { return ::read(fd_.get(), buf, sizeof buf); });
  if (n < 0) return sys_error("read");
  text_.append(buf, static_cast<std::size_t>(n));
  return static_cast<std::size_t>(n);
}

}  // namespace ipcx::bench
