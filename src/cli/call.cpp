// ipcx call: calls a method of an ipcx RPC server with a JSON request (docs/rpc-protobuf.md).
//
//   ipcx call URL calc.Calc/Add '{"a": 2, "b": 3}'     prints {"sum":"5"}
//   ipcx call URL --list                                prints the server's methods
//
// The request and response types come from the server's descriptors (ipcx.Reflection/Describe)
// or from a FileDescriptorSet file; JSON travels through protobuf DynamicMessages.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>

#include <ipcx/rpc.hpp>

#include "cli/commands.hpp"

namespace ipcx::cli {
namespace {

namespace pb = google::protobuf;
using Clock = std::chrono::steady_clock;

// The longest request read from standard input.
constexpr std::size_t kMaxJson = std::size_t{256} << 20;

struct CallArgs {
  std::string url;
  std::string method;
  std::string json = "{}";
  std::string descriptor_set;
  long timeout_ms = 10000;
  bool list = false;
};

// Peers and files choose these texts: a newline or control byte in them would break the
// one-line promise of the error output.
std::string one_line(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return s;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "ipcx call: %s\n", one_line(message).c_str());
  return 2;
}
int call_failed(const rpc::Status& status) {
  std::fprintf(stderr, "ipcx call: %s\n", one_line(status.to_string()).c_str());
  return 1;
}
// The first call to a server: bytes that are not RPC mean something else listens there.
int first_call_failed(rpc::Status status) {
  if (status.code == rpc::Code::internal) status.message += " (is an ipcx::rpc::Server listening there?)";
  return call_failed(status);
}

// protobuf logs what it finds wrong with descriptors on stderr, over several lines; the
// command reports such problems itself, in one. The last message is kept for that report.
std::string g_protobuf_log;
void keep_protobuf_log(pb::LogLevel, const char*, int, const std::string& message) { g_protobuf_log = message; }

class FirstError final : public pb::DescriptorPool::ErrorCollector {
 public:
  void AddError(const std::string& filename, const std::string& element, const pb::Message*, ErrorLocation,
                const std::string& message) override {
    if (text.empty()) text = fmt::format("{}: {}: {}", filename, element, message);
  }
  std::string text;
};

// A descriptor pool over the files of a FileDescriptorSet, in any order: each file is built
// when a name it defines is looked up, after the files it imports.
struct Descriptors {
  pb::SimpleDescriptorDatabase database;
  FirstError errors;
  std::unique_ptr<pb::DescriptorPool> pool;

  // False: the bytes are not a FileDescriptorSet.
  bool load(std::span<const std::byte> bytes) {
    pb::FileDescriptorSet set;
    if (bytes.size() > static_cast<std::size_t>(INT_MAX) || !set.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
      return false;
    std::set<std::string> names;
    for (const auto& file : set.file())
      if (names.insert(file.name()).second) (void)database.Add(file);  // a bad file shows when it is built
    pool = std::make_unique<pb::DescriptorPool>(&database, &errors);
    return true;
  }
  // Why a lookup found nothing although the name may be there: a file that does not build.
  std::string why() const {
    if (!errors.text.empty()) return errors.text;
    return g_protobuf_log;
  }
};

// Milliseconds left until `until`, for each step of the command.
Timeout left(Clock::time_point until) {
  return std::max<Timeout>(std::chrono::duration_cast<Timeout>(until - Clock::now()), std::chrono::milliseconds(1));
}

bool print_line(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return std::fflush(stdout) == 0 && !std::ferror(stdout);
}

int stdout_failed() {
  std::fprintf(stderr, "ipcx call: cannot write to stdout\n");
  return 1;
}

// The response (or stream item) as one line of JSON on stdout.
int print_response(const pb::Message& prototype, const rpc::Payload& payload) {
  std::unique_ptr<pb::Message> response(prototype.New());
  const auto b = payload.bytes();
  if (b.size() > static_cast<std::size_t>(INT_MAX) || !response->ParseFromArray(b.data(), static_cast<int>(b.size())))
    return call_failed({rpc::Code::internal, fmt::format("the response does not parse as {}", prototype.GetDescriptor()->full_name())});
  pb::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;  // a field that is 0 or "" is shown, not left out
  std::string json;
  if (auto st = pb::util::MessageToJsonString(*response, &json, options); !st.ok())
    return call_failed({rpc::Code::internal, fmt::format("the response does not convert to JSON: {}", std::string(st.message()))});
  return print_line(json) ? 0 : stdout_failed();
}

int cmd_list(rpc::Client& client, Clock::time_point until) {
  auto r = client.call_raw("ipcx.Reflection/List", {}, left(until));
  if (!r) return first_call_failed(r.error());
  std::fwrite(r->bytes().data(), 1, r->size(), stdout);
  return std::fflush(stdout) == 0 && !std::ferror(stdout) ? 0 : stdout_failed();
}

// The service's descriptors from the server. nullopt: the error is reported, `code` set.
std::optional<std::string> fetch_descriptors(rpc::Client& client, const std::string& service, Descriptors& d,
                                             Clock::time_point until, int& code) {
  auto r = client.call_raw("ipcx.Reflection/Describe", std::as_bytes(std::span(service.data(), service.size())), left(until));
  if (!r) {
    if (r.error().code != rpc::Code::not_found) return code = first_call_failed(r.error()), std::nullopt;
    // No descriptors: say whether the service is there at all, as a call to it would.
    auto methods = client.call_raw("ipcx.Reflection/List", {}, left(until));
    if (!methods) return code = call_failed(methods.error()), std::nullopt;
    if (std::string(methods->text()).find("\n" + service + "/") == std::string::npos && !methods->text().starts_with(service + "/"))
      return code = call_failed({rpc::Code::unimplemented, fmt::format("no service {} here", service)}), std::nullopt;
    return code = call_failed({rpc::Code::not_found, fmt::format("the server has no descriptors for {} (give them with --descriptor-set FILE)", service)}),
           std::nullopt;
  }
  if (!d.load(r->bytes()))
    return code = call_failed({rpc::Code::internal, fmt::format("the server's descriptors for {} are not a FileDescriptorSet", service)}), std::nullopt;
  return std::string("the server's descriptors");
}

int cmd_call(const CallArgs& a) {
  pb::SetLogHandler(keep_protobuf_log);

  // "-": the request is standard input (a request too long for the command line, or piped).
  // It is read to its end before --timeout starts: the timeout bounds the server, not the pipe.
  std::string json = a.json;
  if (json == "-" && !a.list) {
    auto in = cli::read_stdin_message(kMaxJson);
    if (!in) return usage_error(in.error().code == Errc::too_large ? fmt::format("the JSON on standard input is over {} MiB", kMaxJson >> 20)
                                                                   : fmt::format("cannot read standard input: {}", in.error().message()));
    json = std::move(*in);
  }
  const auto until = Clock::now() + std::chrono::milliseconds(a.timeout_ms);

  std::string service, method_name;
  if (!a.list) {
    std::string m = a.method.starts_with('/') ? a.method.substr(1) : a.method;
    const auto slash = m.find('/');
    if (m.empty()) return usage_error("say which method to call: SERVICE/METHOD, like calc.Calc/Add (or --list)");
    if (slash == std::string::npos || slash == 0 || slash + 1 == m.size() || m.find('/', slash + 1) != std::string::npos)
      return usage_error(fmt::format("'{}' is not a method name: SERVICE/METHOD, like calc.Calc/Add", a.method));
    service = m.substr(0, slash);
    method_name = m.substr(slash + 1);
  }

  // Descriptors from a file first: a mistake in the file or the JSON needs no server.
  Descriptors d;
  std::string source;
  if (!a.descriptor_set.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(a.descriptor_set, ec))
      return usage_error(fmt::format("cannot read the descriptor set {}: {}", a.descriptor_set,
                                     ec ? ec.message() : std::string("not a regular file")));
    std::ifstream in(a.descriptor_set, std::ios::binary);
    if (!in) return usage_error(fmt::format("cannot read the descriptor set {}", a.descriptor_set));
    std::string bytes;
    try {
      bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } catch (const std::exception&) {
      return usage_error(fmt::format("cannot read the descriptor set {}", a.descriptor_set));
    }
    if (in.bad()) return usage_error(fmt::format("cannot read the descriptor set {}", a.descriptor_set));
    if (!d.load(std::as_bytes(std::span(bytes.data(), bytes.size()))))
      return usage_error(fmt::format("{} is not a FileDescriptorSet (protoc --include_imports --descriptor_set_out=FILE)", a.descriptor_set));
    source = a.descriptor_set;
  }

  auto client = rpc::Client::connect(a.url, {}, left(until));
  if (!client) {
    const auto& e = client.error();
    if (e.code == Errc::invalid_url || e.code == Errc::unknown_scheme) return usage_error(e.message());
    return call_failed({rpc::Code::unavailable, e.message()});
  }
  if (a.list) return cmd_list(*client, until);

  if (source.empty()) {
    int code = 0;
    auto from = fetch_descriptors(*client, service, d, until, code);
    if (!from) return code;
    source = *from;
  }
  const pb::ServiceDescriptor* sd = d.pool->FindServiceByName(service);
  if (!sd) {
    const std::string why = d.why().empty() ? "" : " (" + d.why() + ")";
    if (a.descriptor_set.empty())  // the server said it has them: its fault, not the command line's
      return call_failed({rpc::Code::internal, fmt::format("the server's descriptors for {} do not define it{}", service, why)});
    return usage_error(fmt::format("no service {} in {}{}", service, source, why));
  }
  const pb::MethodDescriptor* md = sd->FindMethodByName(method_name);
  if (!md) {
    std::string known;
    for (int i = 0; i < sd->method_count(); ++i) known += (i ? ", " : "") + sd->method(i)->name();
    return usage_error(fmt::format("service {} has no method {} (it has: {})", service, method_name, known.empty() ? "none" : known));
  }
  if (md->client_streaming())
    return usage_error(fmt::format("{}/{} streams its requests, which ipcx RPC does not support", service, method_name));

  pb::DynamicMessageFactory factory(d.pool.get());
  const pb::Message* request_type = factory.GetPrototype(md->input_type());
  const pb::Message* response_type = factory.GetPrototype(md->output_type());
  if (!request_type || !response_type) return usage_error(fmt::format("the types of {}/{} do not build ({})", service, method_name, d.why()));
  std::unique_ptr<pb::Message> request(request_type->New());
  if (auto st = pb::util::JsonStringToMessage(json, request.get()); !st.ok())
    return usage_error(fmt::format("bad JSON for {}: {}", md->input_type()->full_name(), std::string(st.message())));
  std::string bytes;
  if (!request->SerializeToString(&bytes)) return usage_error(fmt::format("the request does not encode as {}", md->input_type()->full_name()));
  const auto body = std::as_bytes(std::span(bytes.data(), bytes.size()));
  const std::string full = fmt::format("{}/{}", service, method_name);

  if (!md->server_streaming()) {
    auto r = client->call_raw(full, body, left(until));
    if (!r) return call_failed(r.error());
    return print_response(*response_type, *r);
  }
  auto call = client->start_raw(full, rpc::body_of(body), left(until), true);
  if (!call) return call_failed(call.error());
  while (true) {
    auto item = call->next();  // bounded by the call's deadline
    if (!item) return call_failed(item.error());
    if (!*item) return 0;
    if (int code = print_response(*response_type, **item)) {
      call->cancel();
      return code;
    }
  }
}

}  // namespace

std::function<std::optional<int>()> add_call_command(CLI::App& app) {
  auto args = std::make_shared<CallArgs>();
  auto* cmd = app.add_subcommand("call", "Call METHOD of an ipcx RPC server at URL with a JSON request; print the response as JSON");
  cmd->add_option("url", args->url, "Address of an ipcx::rpc::Server")->required();
  cmd->add_option("method", args->method, "SERVICE/METHOD, like calc.Calc/Add");
  cmd->add_option("json", args->json, "The request as JSON (default {}; - reads it from standard input)");
  cmd->add_option("--descriptor-set", args->descriptor_set,
                  "Types from this FileDescriptorSet (protoc --include_imports --descriptor_set_out=FILE) instead of the server's");
  cmd->add_option("--timeout", args->timeout_ms, "Milliseconds for the whole command: connect, descriptors, the call or stream")
      ->check(CLI::Range(1L, 1'000'000'000'000L))
      ->capture_default_str();
  cmd->add_flag("--list", args->list, "Print the server's methods (\" stream\" after server-streaming ones)");
  return [args, cmd]() -> std::optional<int> {
    if (!*cmd) return std::nullopt;
    if (args->list && !args->method.empty()) return usage_error("--list takes no METHOD");
    return cmd_call(*args);
  };
}

}  // namespace ipcx::cli
