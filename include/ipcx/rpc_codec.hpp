// How values travel in a typed remote procedure call (docs/rpc.md): the status a call ends with,
// the bytes of a request or response as they arrived (Payload), the codecs that turn values into
// bytes and back (Codec<T>: raw bytes, trivially copyable types; protobuf messages in
// <ipcx/rpc_protobuf.hpp>), and a method's name with its two types. The servers and clients
// that carry them are in <ipcx/rpc.hpp>, which includes this header.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <ipcx/error.hpp>

namespace ipcx::rpc {

// ---- status ---------------------------------------------------------------------------------------

// The outcome of a call. The numbers are gRPC's, so a status means the same thing in both.
enum class Code : std::uint16_t {
  ok = 0,
  cancelled = 1,            // the client cancelled the call
  unknown = 2,
  invalid_argument = 3,     // the request could not be decoded, or the handler refused it
  deadline_exceeded = 4,    // the call's deadline passed before its response
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,   // too many calls in flight on the connection, or a size limit
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,       // no such service or method on the server
  internal = 13,            // a malformed frame, a handler that threw
  unavailable = 14,         // the connection failed or the server went away
  data_loss = 15,
  unauthenticated = 16,
};
inline constexpr std::uint16_t kMaxCode = 16;

// "OK", "DEADLINE_EXCEEDED"… (gRPC's spelling); "CODE_<n>" for a number outside the table.
std::string code_name(Code code);

struct Status {
  Code code = Code::ok;
  std::string message;

  bool ok() const noexcept { return code == Code::ok; }
  // "DEADLINE_EXCEEDED: no response within 100 ms"
  std::string to_string() const;
};

// The result of a call: the response, or the status that says why there is none.
template <class T>
using Reply = std::expected<T, Status>;

// Names one call on one connection; never reused by a client.
using CallId = std::uint64_t;

// ---- payloads and codecs ------------------------------------------------------------------------

// The bytes of a request or response as they arrived: in a buffer of their own, or (out of
// band) a read-only mapping of the sender's sealed memfd, which nobody can change any more.
// Move-only; the mapping is released on destruction.
class Payload {
 public:
  Payload() noexcept = default;
  explicit Payload(std::vector<std::byte> bytes) noexcept : owned_(std::move(bytes)) {}
  // The bytes of `bytes` from `offset` on (a received message without its header, not moved).
  Payload(std::vector<std::byte> bytes, std::size_t offset) noexcept
      : owned_(std::move(bytes)), skip_(offset <= owned_.size() ? offset : owned_.size()) {}
  Payload(Payload&& o) noexcept;
  Payload& operator=(Payload&& o) noexcept;
  Payload(const Payload&) = delete;
  Payload& operator=(const Payload&) = delete;
  ~Payload();

  std::span<const std::byte> bytes() const noexcept {
    return map_ ? std::span<const std::byte>(static_cast<const std::byte*>(map_), map_len_)
                : std::span<const std::byte>(owned_).subspan(skip_);
  }
  std::size_t size() const noexcept { return map_ ? map_len_ : owned_.size() - skip_; }
  std::string_view text() const noexcept {
    const auto b = bytes();
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  // True when the bytes are a mapping of the sender's memfd (they were not copied through the socket).
  bool mapped() const noexcept { return map_ != nullptr; }

  // Internal: takes a received sealed memfd of `length` bytes, checks its seals and size, and
  // maps it read-only. Errors: protocol (not sealed against writing, growing and shrinking,
  // or not `length` bytes), and mmap's.
  static Result<Payload> map_sealed(int fd, std::size_t length);

 private:
  std::vector<std::byte> owned_;
  std::size_t skip_ = 0;  // owned_'s first bytes are not the payload's
  void* map_ = nullptr;
  std::size_t map_len_ = 0;
};

// How a type travels. A codec has `size(v)` (the exact encoded size), `write(v, out)` (fills
// exactly that many bytes; `out` may be a memfd mapping) and `read(bytes, v)` (false: the
// bytes are not a valid T); optionally `contiguous(v)`, the encoding as bytes already in memory
// (copied out with one write instead of through `write`), and `max_size`, the largest size it
// can encode (a larger message is refused before anything is written: the call fails with
// RESOURCE_EXHAUSTED on the client, or is answered so when a handler returns one). Specialise it
// for your own types.
template <class T, class Enable = void>
struct Codec;

// Raw bytes.
template <>
struct Codec<std::vector<std::byte>> {
  static std::span<const std::byte> contiguous(const std::vector<std::byte>& v) noexcept { return v; }
  static std::size_t size(const std::vector<std::byte>& v) noexcept { return v.size(); }
  static void write(const std::vector<std::byte>& v, std::span<std::byte> out) noexcept {
    if (!v.empty()) std::memcpy(out.data(), v.data(), v.size());
  }
  static bool read(std::span<const std::byte> in, std::vector<std::byte>& v) {
    v.assign(in.begin(), in.end());
    return true;
  }
};

template <>
struct Codec<std::string> {
  static std::span<const std::byte> contiguous(const std::string& v) noexcept { return std::as_bytes(std::span(v)); }
  static std::size_t size(const std::string& v) noexcept { return v.size(); }
  static void write(const std::string& v, std::span<std::byte> out) noexcept {
    if (!v.empty()) std::memcpy(out.data(), v.data(), v.size());
  }
  static bool read(std::span<const std::byte> in, std::string& v) {
    v.assign(reinterpret_cast<const char*>(in.data()), in.size());
    return true;
  }
};

// A view of bytes the caller keeps (requests and responses to send; never received into).
template <>
struct Codec<std::span<const std::byte>> {
  static std::span<const std::byte> contiguous(std::span<const std::byte> v) noexcept { return v; }
  static std::size_t size(std::span<const std::byte> v) noexcept { return v.size(); }
  static void write(std::span<const std::byte> v, std::span<std::byte> out) noexcept {
    if (!v.empty()) std::memcpy(out.data(), v.data(), v.size());
  }
};

// Received bytes as they came (no copy: a mapping stays a mapping). Sending a Payload sends its bytes.
template <>
struct Codec<Payload> {
  static std::span<const std::byte> contiguous(const Payload& v) noexcept { return v.bytes(); }
  static std::size_t size(const Payload& v) noexcept { return v.size(); }
  static void write(const Payload& v, std::span<std::byte> out) noexcept {
    if (v.size()) std::memcpy(out.data(), v.bytes().data(), v.size());
  }
};

// Nothing: a request or response without content.
struct Empty {};
template <>
struct Codec<Empty> {
  static std::size_t size(const Empty&) noexcept { return 0; }
  static void write(const Empty&, std::span<std::byte>) noexcept {}
  static bool read(std::span<const std::byte> in, Empty&) noexcept { return in.empty(); }
};

template <class T>
inline constexpr bool is_pod_message_v =
    std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> && !std::is_empty_v<T> && std::is_default_constructible_v<T>;

// Trivially copyable types travel as their bytes (same machine, same layout on both sides):
// a message of any other size is refused.
template <class T>
struct Codec<T, std::enable_if_t<is_pod_message_v<T>>> {
  static std::size_t size(const T&) noexcept { return sizeof(T); }
  static void write(const T& v, std::span<std::byte> out) noexcept { std::memcpy(out.data(), &v, sizeof(T)); }
  static bool read(std::span<const std::byte> in, T& v) noexcept {
    if (in.size() != sizeof(T)) return false;
    std::memcpy(&v, in.data(), sizeof(T));
    return true;
  }
};

template <class T>
concept Sendable = requires(const T& v, std::span<std::byte> out) {
  { Codec<T>::size(v) } -> std::convertible_to<std::size_t>;
  Codec<T>::write(v, out);
};
template <class T>
concept Receivable = std::same_as<T, Payload> || requires(std::span<const std::byte> in, T& v) {
  { Codec<T>::read(in, v) } -> std::same_as<bool>;
};

// Raw bytes in any of their forms: a method taking one accepts the others too.
template <class T>
inline constexpr bool is_bytes_v = std::is_same_v<T, Payload> || std::is_same_v<T, std::vector<std::byte>> ||
                                   std::is_same_v<T, std::span<const std::byte>> || std::is_same_v<T, std::string>;

// What a call of a method taking Req may be given: a Req, or for a raw-bytes Req any raw bytes.
template <class A, class Req>
concept ArgumentFor = Sendable<A> && (std::is_same_v<A, Req> || (is_bytes_v<Req> && is_bytes_v<A>));

// A message to send, type-erased: its size and how to write it (the object outlives the Body).
struct Body {
  std::size_t size = 0;
  void (*write)(const void* object, std::span<std::byte> out) = nullptr;
  const void* object = nullptr;
  const std::byte* bytes = nullptr;  // set: the encoding is these `size` bytes in memory
  std::size_t limit = SIZE_MAX;      // the most bytes the codec can encode (Codec<T>::max_size)
};

template <Sendable T>
Body body_of(const T& v) {
  Body b{.size = Codec<T>::size(v),
         .write = [](const void* o, std::span<std::byte> out) { Codec<T>::write(*static_cast<const T*>(o), out); },
         .object = &v};
  if constexpr (requires { Codec<T>::contiguous(v); }) b.bytes = Codec<T>::contiguous(v).data();
  if constexpr (requires { Codec<T>::max_size; }) b.limit = Codec<T>::max_size;
  return b;
}

// Decodes a received payload into T (moves it when T is Payload).
template <Receivable T>
bool decode(Payload& in, T& out) {
  if constexpr (std::is_same_v<T, Payload>) {
    out = std::move(in);
    return true;
  } else {
    return Codec<T>::read(in.bytes(), out);
  }
}

// A method: its full name ("package.Service/Method") and its request and response types.
template <class Req, class Resp>
struct Method {
  std::string_view name;
};

}  // namespace ipcx::rpc
