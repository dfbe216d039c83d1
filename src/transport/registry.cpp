#include <map>
#include <mutex>

#include <fmt/format.h>

#include <ipcx/connection.hpp>

#include "transport/transport.hpp"

namespace ipcx {
namespace transport {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<const Scheme>, std::less<>> schemes;

  Registry() {
    // Explicit list rather than static self-registration: a static library would drop
    // transports nobody references.
    for (auto s : {pipe_scheme(), fifo_scheme(), unix_scheme(), unix_seq_scheme(), tcp_scheme(),
                   signal_scheme(), mq_scheme(), sysv_scheme(), shm_scheme()}) {
      auto name = s.name;
      schemes[name] = std::make_shared<const Scheme>(std::move(s));
    }
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_scheme(Scheme scheme) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  auto name = scheme.name;
  r.schemes[name] = std::make_shared<const Scheme>(std::move(scheme));
}

std::shared_ptr<const Scheme> find_scheme(std::string_view name) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.schemes.find(name);
  return it == r.schemes.end() ? nullptr : it->second;
}

}  // namespace transport

namespace {
Result<std::shared_ptr<const transport::Scheme>> scheme_for(const transport::Url& u) {
  auto s = transport::find_scheme(u.scheme);
  if (!s) return fail(Errc::unknown_scheme, "resolve URL", fmt::format("no transport for '{}:'", u.scheme));
  return s;
}
}  // namespace

Result<Listener> listen(std::string_view url, const Options& options) {
  auto u = transport::Url::parse(url);
  if (!u) return std::unexpected(u.error());
  auto s = scheme_for(*u);
  if (!s) return std::unexpected(s.error());
  if (!(*s)->listen) return fail(Errc::not_supported, "listen", fmt::format("'{}:' cannot listen", u->scheme));
  auto impl = (*s)->listen(*u, options);
  if (!impl) return std::unexpected(impl.error());
  return detail::Access::wrap(std::move(*impl));
}

Result<Connection> connect(std::string_view url, const Options& options, Timeout timeout) {
  auto u = transport::Url::parse(url);
  if (!u) return std::unexpected(u.error());
  auto s = scheme_for(*u);
  if (!s) return std::unexpected(s.error());
  if (!(*s)->connect) return fail(Errc::not_supported, "connect", fmt::format("'{}:' cannot connect", u->scheme));
  auto impl = (*s)->connect(*u, options, os::Deadline::after(timeout));
  if (!impl) return std::unexpected(impl.error());
  return detail::Access::wrap(std::move(*impl));
}

}  // namespace ipcx
