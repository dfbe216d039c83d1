#include "rpc/wire.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace ipcx::rpc::wire {

namespace {

template <class T>
T get(const std::byte* at) noexcept {
  T v;
  std::memcpy(&v, at, sizeof v);
  return v;
}
template <class T>
void put(std::byte* at, T v) noexcept {
  std::memcpy(at, &v, sizeof v);
}

std::unexpected<Error> bad(std::string why) { return std::unexpected(Error{Errc::protocol, 0, "rpc", std::move(why)}); }

bool carries_payload(Kind k) noexcept { return k == Kind::call || k == Kind::response || k == Kind::item; }
bool carries_status(Kind k) noexcept { return k == Kind::response || k == Kind::end || k == Kind::error; }

}  // namespace

bool valid_method(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxMethod) return false;
  if (std::count(name.begin(), name.end(), '/') != 1 || name.front() == '/' || name.back() == '/') return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

Result<Frame> decode(std::span<const std::byte> m, std::size_t fds) noexcept {
  if (m.size() < kFixed) return bad(fmt::format("RPC message of {} bytes, shorter than its {}-byte header", m.size(), kFixed));
  const auto* p = m.data();
  if (get<std::uint8_t>(p) != kMagic) return bad(fmt::format("not an RPC message (first byte {:#04x})", get<std::uint8_t>(p)));
  if (get<std::uint8_t>(p + 1) != kVersion) return bad(fmt::format("RPC version {}; this side speaks {}", get<std::uint8_t>(p + 1), kVersion));
  Frame f;
  const auto kind = get<std::uint8_t>(p + 2);
  if (kind < 1 || kind > 7) return bad(fmt::format("unknown RPC message kind {}", kind));
  f.kind = static_cast<Kind>(kind);
  f.flags = get<std::uint8_t>(p + 3);
  f.id = get<std::uint64_t>(p + 4);
  f.aux = get<std::uint32_t>(p + 12);
  if (f.flags & ~flag::known) return bad(fmt::format("unknown RPC flags {:#04x}", f.flags));
  if ((f.flags & (flag::one_way | flag::stream)) && f.kind != Kind::call) return bad("one_way/stream flags on a message that is not a call");
  if ((f.flags & flag::one_way) && (f.flags & flag::stream)) return bad("a call cannot be one-way and streaming");
  if ((f.flags & flag::out_of_band) && !carries_payload(f.kind)) return bad("out-of-band flag on a message without payload");
  if (f.kind == Kind::error ? f.id != 0 : f.id == 0) return bad(f.id == 0 ? "call id 0" : "error message with a call id");
  if (carries_status(f.kind) && f.aux > 16) return bad(fmt::format("status code {} is not one of 0..16", f.aux));
  std::size_t at = kFixed;
  const auto need = [&](std::size_t n) { return m.size() - at >= n; };
  if (f.kind == Kind::call) {
    if (!need(10)) return bad("call header truncated");
    f.remaining_us = get<std::uint64_t>(p + at);
    const auto len = get<std::uint16_t>(p + at + 8);
    at += 10;
    if (len > kMaxMethod) return bad(fmt::format("method name of {} bytes, over {}", len, kMaxMethod));
    if (!need(len)) return bad("method name truncated");
    f.method = {reinterpret_cast<const char*>(p + at), len};
    at += len;
    if (!valid_method(f.method)) return bad("method name is not \"package.Service/Method\" in printable ASCII");
  } else if (carries_status(f.kind)) {
    if (!need(2)) return bad("status message length truncated");
    const auto len = get<std::uint16_t>(p + at);
    at += 2;
    if (len > kMaxStatusMessage) return bad(fmt::format("status message of {} bytes, over {}", len, kMaxStatusMessage));
    if (!need(len)) return bad("status message truncated");
    f.message = {reinterpret_cast<const char*>(p + at), len};
    at += len;
  } else if (f.kind == Kind::credit) {
    if (f.aux == 0) return bad("credit of 0 items");
  } else if (f.kind == Kind::item) {
    if (f.aux == 0) return bad("stream item with a window of 0");
  } else if (f.aux != 0) {
    return bad("cancel with a nonzero aux field");
  }
  if (f.has(flag::out_of_band)) {
    if (!need(8)) return bad("out-of-band size truncated");
    f.oob_size = get<std::uint64_t>(p + at);
    at += 8;
    if (f.oob_size == 0) return bad("out-of-band payload of 0 bytes");
    if (fds != 1) return bad(fmt::format("out-of-band payload with {} descriptors attached, not 1", fds));
  } else if (fds != 0) {
    return bad(fmt::format("{} descriptors attached to an RPC message without an out-of-band payload", fds));
  }
  if (at != m.size()) {
    if (f.has(flag::out_of_band) || !carries_payload(f.kind)) return bad(fmt::format("{} unexpected bytes after the RPC header", m.size() - at));
    if ((f.kind == Kind::response) && f.aux != 0) return bad("a response with an error status carries a payload");
    f.payload = m.subspan(at);
  }
  if (f.kind == Kind::response && f.aux != 0 && f.has(flag::out_of_band)) return bad("a response with an error status carries a payload");
  return f;
}

std::span<std::byte> encode(std::vector<std::byte>& out, const Frame& f, std::size_t inline_size) {
  std::size_t head = kFixed;
  if (f.kind == Kind::call) head += 10 + f.method.size();
  else if (carries_status(f.kind)) head += 2 + f.message.size();
  if (f.has(flag::out_of_band)) head += 8;
  out.resize(head + inline_size);
  auto* p = out.data();
  put<std::uint8_t>(p, kMagic);
  put<std::uint8_t>(p + 1, kVersion);
  put<std::uint8_t>(p + 2, static_cast<std::uint8_t>(f.kind));
  put<std::uint8_t>(p + 3, f.flags);
  put<std::uint64_t>(p + 4, f.id);
  put<std::uint32_t>(p + 12, f.aux);
  std::size_t at = kFixed;
  if (f.kind == Kind::call) {
    put<std::uint64_t>(p + at, f.remaining_us);
    put<std::uint16_t>(p + at + 8, static_cast<std::uint16_t>(f.method.size()));
    std::memcpy(p + at + 10, f.method.data(), f.method.size());
    at += 10 + f.method.size();
  } else if (carries_status(f.kind)) {
    put<std::uint16_t>(p + at, static_cast<std::uint16_t>(f.message.size()));
    if (!f.message.empty()) std::memcpy(p + at + 2, f.message.data(), f.message.size());
    at += 2 + f.message.size();
  }
  if (f.has(flag::out_of_band)) {
    put<std::uint64_t>(p + at, f.oob_size);
    at += 8;
  }
  return {p + at, inline_size};
}

}  // namespace ipcx::rpc::wire
