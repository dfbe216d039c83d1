// The receiving end of the multi-process channel tests, in a process of its own.
//
//   ipcx-channel-worker URL WINDOW
//
// URL "pipe:" connects to the parent (spawn_connected); any other URL is listened on, the bound
// URL printed as one line on stdout, and one connection accepted. Then every message is
// received and remembered until one reads "end": the worker answers with
// "got:" + the labels received (their first 6 bytes; the rest must be 'x' padding),
// comma-separated, and waits for the peer to close.
// Exit codes: 0 done, 2 usage or setup, 3 protocol error from the peer, 4 other errors.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ipcx/channel.hpp>

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  if (argc != 3) {
    std::fprintf(stderr, "usage: ipcx-channel-worker URL WINDOW\n");
    return 2;
  }
  const std::string url = argv[1];
  const ipcx::ChannelOptions opts{.window = static_cast<std::uint32_t>(std::strtoul(argv[2], nullptr, 10))};
  ipcx::Result<ipcx::Channel> ch = std::unexpected(ipcx::Error{});
  ipcx::Listener listener;
  if (url == "pipe:") {
    ch = ipcx::Channel::connect(url, opts);
  } else {
    auto l = ipcx::listen(url, opts.transport);
    if (!l) {
      std::fprintf(stderr, "worker: %s\n", l.error().message().c_str());
      return 2;
    }
    listener = std::move(*l);
    std::printf("%s\n", listener.url().c_str());
    std::fflush(stdout);
    ch = ipcx::Channel::accept(listener, opts, 60s);
  }
  if (!ch) {
    std::fprintf(stderr, "worker: %s\n", ch.error().message().c_str());
    return 2;
  }
  std::string got;
  ipcx::Message m;
  for (;;) {
    auto r = ch->recv(m, 60s);
    if (!r) {
      std::fprintf(stderr, "worker: %s\n", r.error().message().c_str());
      return r.error().code == ipcx::Errc::protocol ? 3 : 4;
    }
    if (m.text() == "end") break;
    // Remembers the label ("m00042"); padding after it must be intact ('x' only).
    auto t = m.text();
    auto label = t.substr(0, 6);
    if (t.find_first_not_of('x', label.size()) != std::string_view::npos) label = "corrupt";
    if (!got.empty()) got += ',';
    got += label;
  }
  auto reply = "got:" + got;
  if (auto s = ch->send(ipcx::as_bytes(reply), 30s); !s) {
    std::fprintf(stderr, "worker: reply: %s\n", s.error().message().c_str());
    return 4;
  }
  // Until the peer closes (it reads the reply first).
  for (;;) {
    auto r = ch->recv(m, 60s);
    if (!r) return r.error().code == ipcx::Errc::closed ? 0 : 4;
  }
}
