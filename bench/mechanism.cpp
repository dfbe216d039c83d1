#include "bench/mechanism.hpp"

namespace ipcx::bench {

std::string_view to_string(Impl impl) noexcept {
  switch (impl) {
    case Impl::raw: return "raw";
    case Impl::ipcx: return "ipcx";
    case Impl::peer: return "peer";
  }
  return "?";
}

std::string_view to_string(Group g) noexcept {
  switch (g) {
    case Group::message_passing: return "message passing";
    case Group::shared_memory: return "shared memory";
    case Group::synchronisation: return "synchronisation";
    case Group::signals: return "signals";
    case Group::rpc: return "RPC";
    case Group::brokers: return "brokers";
  }
  return "?";
}

std::optional<Impl> impl_from_string(std::string_view s) noexcept {
  for (auto i : kImpls)
    if (to_string(i) == s) return i;
  return std::nullopt;
}

MakeSetup Mechanism::setup(Impl impl) const noexcept {
  switch (impl) {
    case Impl::raw: return raw;
    case Impl::ipcx: return ipcx;
    case Impl::peer: return peer;
  }
  return nullptr;
}

const std::vector<const Mechanism*>& mechanisms() {
  // Families are listed here, not self-registered: a static library drops object files nothing
  // refers to, and their registrars with them.
  static const auto all = [] {
    std::vector<const Mechanism*> v;
    for (auto family : {pipe_rows(), socket_rows(), signal_rows(), sync_rows(), pattern_rows(), mq_rows(), sysv_rows(),
                         shm_rows(), zerocopy_rows(), rpc_rows(), broker_rows()})
      for (auto& m : family) v.push_back(&m);
    return v;
  }();
  return all;
}

const Mechanism* find_mechanism(std::string_view name, bool peer_rows) {
  for (auto* m : mechanisms())
    if (m->name == name || (peer_rows && !m->peer_row.empty() && m->peer_row == name)) return m;
  return nullptr;
}

}  // namespace ipcx::bench
