// `ipcx shm ls`, `ipcx shm gc` and `ipcx shm rm`: the calling user's named shared-memory objects.
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include <ipcx/segment.hpp>

#include "cli/commands.hpp"
#include "cli/text.hpp"

namespace ipcx::cli {
namespace {


// Names are bytes another process chose: a newline or an escape sequence must not forge lines
// or colours in a terminal, so anything outside printable ASCII (and the backslash) is \xNN.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f || c == '\\') out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

std::string size_text(std::size_t n) {
  if (n >= (1u << 20) && n % (1u << 20) == 0) return fmt::format("{}M", n >> 20);
  if (n >= 1024 && n % 1024 == 0) return fmt::format("{}K", n >> 10);
  return fmt::format("{}", n);
}

}  // namespace

int cmd_shm_ls(bool json) {
  auto all = shm::list();
  if (!all) return report("shm ls", all.error());
  if (json) {
    std::string out = "[";
    for (std::size_t i = 0; i < all->size(); ++i) {
      const auto& s = (*all)[i];
      std::string objects;
      for (const auto& o : s.objects)
        objects += fmt::format("{}{{\"name\":{},\"offset\":{},\"size\":{}}}", objects.empty() ? "" : ",",
                               json_string(o.name), o.offset, o.size);
      std::string holders;
      for (pid_t p : s.holders) holders += fmt::format("{}{}", holders.empty() ? "" : ",", p);
      out += fmt::format(
          "{}\n  {{\"name\":{},\"path\":{},\"kind\":{},\"size\":{},\"mode\":\"{:04o}\",\"valid\":{},\"creator\":{},"
          "\"creator_alive\":{},\"writer_alive\":{},\"listeners\":{},\"holders\":[{}],\"objects\":[{}]}}",
          i ? "," : "", json_string(s.name), json_string(s.path), json_string(s.kind), s.size, s.mode, s.valid,
          s.creator, s.creator_alive, s.writer_alive, s.listeners, holders, objects);
    }
    out += all->empty() ? "]\n" : "\n]\n";
    std::fputs(out.c_str(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  std::size_t width = 4;
  for (const auto& s : *all) width = std::max(width, printable(s.name).size());
  // ALIVE: a segment's creator, a state's writer, a queue's reader.
  std::string out = fmt::format("{:<{}}  {:<7}  {:>8}  {:>4}  {:>7}  {:>8}  {:<5}  {}\n", "NAME", width, "KIND", "SIZE",
                                "MODE", "HOLDERS", "CREATOR", "ALIVE", "OBJECTS");
  for (const auto& s : *all) {
    std::string objects, creator = "-", alive = "-";
    if (!s.valid) {
      objects = s.kind.empty() ? "(not a valid ipcx object)" : fmt::format("(not a valid ipcx {})", s.kind);
    } else if (s.kind == "segment") {
      objects = fmt::format("{}", s.objects.size());
      for (std::size_t i = 0; i < s.objects.size(); ++i) objects += (i ? "," : " ") + printable(s.objects[i].name);
      creator = std::to_string(s.creator);
      alive = s.creator_alive ? "yes" : "no";
    } else if (s.kind == "state") {
      alive = s.writer_alive ? "yes" : "no";
    } else if (s.kind == "queue") {
      alive = s.writer_alive ? "yes" : "no";
      objects = fmt::format("{} writers", s.listeners);
    } else if (s.kind == "event") {
      objects = fmt::format("{} listeners", s.listeners);
    } else if (s.kind == "topic") {
      objects = fmt::format("{} publishers", s.listeners);
    }
    out += fmt::format("{:<{}}  {:<7}  {:>8}  {:04o}  {:>7}  {:>8}  {:<5}  {}\n", printable(s.name), width,
                       s.kind.empty() ? "?" : s.kind, size_text(s.size), s.mode, s.holders.size(), creator, alive, objects);
  }
  std::fputs(out.c_str(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

int cmd_shm_gc() {
  auto removed = shm::collect_garbage();
  if (!removed) return report("shm gc", removed.error());
  for (const auto& p : *removed) std::printf("removed %s\n", printable(p).c_str());
  if (removed->empty()) std::printf("nothing to remove\n");
  return std::fflush(stdout) == 0 ? 0 : 1;
}

int cmd_shm_rm(const std::vector<std::string>& names) {
  int code = 0;
  for (const auto& name : names) {
    auto r = shm::Segment::remove(name);
    if (r) continue;
    if (r.error().code == Errc::not_found)
      std::fprintf(stderr, "ipcx shm rm: no object named '%s' (see ipcx shm ls)\n", printable(name).c_str());
    else
      report("shm rm", r.error());
    code = 1;
  }
  return code;
}

}  // namespace ipcx::cli
