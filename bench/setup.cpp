#include "bench/setup.hpp"

namespace ipcx::bench {

std::vector<int> ChildWiring::child_fds() const {
  std::vector<int> fds;
  for (std::size_t i = 0; i < given_.size(); ++i) fds.push_back(kFirstGivenFd + static_cast<int>(i));
  return fds;
}

SpawnOptions ChildWiring::options() const {
  SpawnOptions o;
  if (control_) o.fds.push_back({kControlFd, control_.get()});
  for (std::size_t i = 0; i < given_.size(); ++i) o.fds.push_back({kFirstGivenFd + static_cast<int>(i), given_[i].get()});
  o.env = env_;
  return o;
}

void ChildWiring::close_parent_copies() noexcept {
  // The parent must not hold the child's ends: it would never see end-of-file when the child dies.
  given_.clear();
  control_.reset();
}

namespace {

class IpcxListenSetup final : public Setup {
 public:
  IpcxListenSetup(std::string url, ConnectUrl connect_url, int wake, RemoveUrl remove)
      : url_(std::move(url)), connect_url_(connect_url), wake_(wake), remove_(remove) {}
  ~IpcxListenSetup() override {
    if (parent_ && remove_) remove_(url_);
  }

  Status parent_prepare(ChildWiring&) override {
    parent_ = true;  // only the parent prepares
    return {};
  }

  Result<std::string> child_prepare() override {
    auto l = ipcx::listen(url_);
    if (!l) return std::unexpected(std::move(l.error()));
    listener_ = std::move(*l);
    return listener_.url();
  }
  Made<Channel> child_channel() override {
    auto c = listener_.accept();
    listener_.close();  // removes the socket/FIFO files; the connection stays up
    return ipcx_channel(std::move(c));
  }
  Made<Channel> parent_channel(const std::string& ready, pid_t child) override {
    return ipcx_channel(ipcx::connect(connect_url_ ? connect_url_(ready, child) : ready));
  }
  int wake_signal() const override { return wake_; }

 private:
  std::string url_;
  ConnectUrl connect_url_;
  int wake_;
  RemoveUrl remove_;
  bool parent_ = false;
  Listener listener_;
};

}  // namespace

std::unique_ptr<Setup> ipcx_listen(std::string url, ConnectUrl connect_url, int wake_signal, RemoveUrl remove) {
  return std::make_unique<IpcxListenSetup>(std::move(url), connect_url, wake_signal, remove);
}

}  // namespace ipcx::bench
