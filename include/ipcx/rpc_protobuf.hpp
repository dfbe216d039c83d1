// Protobuf messages as RPC requests and responses (docs/rpc-protobuf.md).
//
//   #include <ipcx/rpc_protobuf.hpp>
//   inline constexpr ipcx::rpc::Method<calc::AddRequest, calc::AddReply> kAdd{"calc.Calc/Add"};
//   server.unary(kAdd, ...);  client.call(kAdd, request, 1s);   // Reply<calc::AddReply>
//
// protoc-gen-ipcx generates such constants, a Service base class and a typed Client for every
// `service` of a .proto. Header-only: the program links libprotobuf itself (CMake:
// ipcx_protobuf_generate() does it).
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/message_lite.h>

#include <ipcx/rpc.hpp>

namespace ipcx::rpc {

// Any protobuf message (full or lite runtime) travels as its protobuf encoding.
//
// Limit: protobuf cannot encode a message of more than INT_MAX bytes (2 GiB - 1; its sizes are
// `int`). max_size says so: a call with a larger request fails with RESOURCE_EXHAUSTED before
// anything is sent, and a handler's larger response is answered so. read() refuses a longer
// input.
template <class T>
struct Codec<T, std::enable_if_t<std::is_base_of_v<google::protobuf::MessageLite, T>>> {
  static constexpr std::size_t max_size = static_cast<std::size_t>(INT_MAX);
  // Also caches the sizes of the nested messages, which write() relies on.
  static std::size_t size(const T& v) { return v.ByteSizeLong(); }
  // `out` is exactly size(v) bytes, possibly a memfd mapping: the message is encoded in place,
  // without an intermediate buffer. Call it right after size(v), the message unchanged.
  static void write(const T& v, std::span<std::byte> out) {
    v.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(out.data()));
  }
  // False when the bytes are not a valid encoding of T (or missing a proto2 required field).
  static bool read(std::span<const std::byte> in, T& v) {
    if (in.size() > static_cast<std::size_t>(INT_MAX)) return false;
    return v.ParseFromArray(in.data(), static_cast<int>(in.size()));
  }
};

namespace detail {
inline void add_with_dependencies(const google::protobuf::FileDescriptor& file,
                                  std::unordered_set<const google::protobuf::FileDescriptor*>& seen,
                                  google::protobuf::FileDescriptorSet& out) {
  if (!seen.insert(&file).second) return;
  for (int i = 0; i < file.dependency_count(); ++i) add_with_dependencies(*file.dependency(i), seen, out);
  file.CopyTo(out.add_file());
}
}  // namespace detail

// The serialized FileDescriptorSet that describes `file`: the file and its transitive
// dependencies, each once, every dependency before the files that import it (the order
// `protoc --include_imports --descriptor_set_out` writes). For Server::describe.
inline std::vector<std::byte> file_descriptor_set(const google::protobuf::FileDescriptor& file) {
  google::protobuf::FileDescriptorSet set;
  std::unordered_set<const google::protobuf::FileDescriptor*> seen;
  detail::add_with_dependencies(file, seen, set);
  std::vector<std::byte> bytes(set.ByteSizeLong());
  set.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(bytes.data()));
  return bytes;
}

// The same for the file that declares `service`:
//   server.describe(service.full_name(), ipcx::rpc::file_descriptor_set(service));
inline std::vector<std::byte> file_descriptor_set(const google::protobuf::ServiceDescriptor& service) {
  return file_descriptor_set(*service.file());
}

}  // namespace ipcx::rpc
