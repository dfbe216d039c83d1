// ipcx::mq::Queue, mq::list and ipcx::Mailbox (include/ipcx/mq.hpp).
#include <ipcx/mq.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "transport/mq/mqueue.hpp"

namespace ipcx::mq {
namespace {

std::string prefix_for(uid_t uid) { return fmt::format("ipcx-{}-", uid); }

Result<void> check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxName)
    return fail(Errc::invalid_argument, "queue name", fmt::format("'{}': 1 to {} bytes", name.substr(0, 64), kMaxName));
  for (char c : name) {
    if (c == '/')
      return fail(Errc::invalid_argument, "queue name",
                  fmt::format("'{}' contains '/': a queue name is one word (it becomes /ipcx-<uid>-NAME)",
                              name.substr(0, 64)));
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return fail(Errc::invalid_argument, "queue name", "control bytes (NUL included) are not allowed");
  }
  if (name == "." || name == "..") return fail(Errc::invalid_argument, "queue name", "'.' and '..' are not names");
  return {};
}

// One receive buffer per thread, as large as the largest queue it has read (mq_receive needs
// room for the queue's message size whatever the message's).
std::span<std::byte> scratch(std::size_t size) {
  thread_local std::unique_ptr<std::byte[]> buf;
  thread_local std::size_t have = 0;
  if (have < size) {
    buf = std::make_unique_for_overwrite<std::byte[]>(size);
    have = size;
  }
  return {buf.get(), size};
}

// A queue in our namespace made by another user is a squatter's trap (anyone may create any
// name in /dev/mqueue): refuse it.
Result<void> check_owner(int fd, uid_t expected, const std::string& kernel) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return fail_errno(errno, "fstat", kernel);
  if (st.st_uid != expected)
    return fail(Errc::permission_denied, "open queue",
                fmt::format("{} belongs to uid {}, not uid {}: refusing a queue someone else put in that name", kernel,
                            st.st_uid, expected));
  return {};
}

}  // namespace

Queue::Queue(Queue&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), msgsize_(o.msgsize_), name_(std::move(o.name_)), kernel_(std::move(o.kernel_)) {}

Queue& Queue::operator=(Queue&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    msgsize_ = o.msgsize_;
    name_ = std::move(o.name_);
    kernel_ = std::move(o.kernel_);
  }
  return *this;
}

Queue::~Queue() { close(); }

void Queue::close() noexcept {
  if (fd_ >= 0) ::mq_close(std::exchange(fd_, -1));
}

Result<std::string> Queue::kernel_name(std::string_view name, std::optional<uid_t> owner) {
  if (auto ok = check_name(name); !ok) return std::unexpected(ok.error());
  return fmt::format("/{}{}", prefix_for(owner.value_or(::geteuid())), name);
}

Result<Queue> Queue::create(std::string_view name, const CreateOptions& options) {
  auto kernel = kernel_name(name);
  if (!kernel) return std::unexpected(kernel.error());
  auto o = transport::mqueue::create(*kernel,
                                     {.capacity = options.capacity, .message_size = options.message_size,
                                      .mode = options.mode, .exclusive = options.exclusive},
                                     "create queue");
  if (!o) return std::unexpected(o.error());
  if (!o->created)
    if (auto ok = check_owner(o->fd.get(), ::geteuid(), *kernel); !ok) return std::unexpected(ok.error());
  auto a = transport::mqueue::attributes(o->fd.get());
  if (!a) return std::unexpected(a.error());
  Queue q;
  q.fd_ = o->fd.release();
  q.msgsize_ = a->mq_msgsize;
  q.name_ = std::string(name);
  q.kernel_ = std::move(*kernel);
  return q;
}

Result<Queue> Queue::open(std::string_view name, const OpenOptions& options) {
  auto kernel = kernel_name(name, options.owner);
  if (!kernel) return std::unexpected(kernel.error());
  if (!options.read && !options.write)
    return fail(Errc::invalid_argument, "open queue", "open for reading, writing or both");
  int flags = options.read && options.write ? O_RDWR : options.read ? O_RDONLY : O_WRONLY;
  auto fd = transport::mqueue::open(*kernel, flags, "open queue");
  if (!fd) {
    auto e = fd.error();
    if (e.code == Errc::permission_denied) {
      // Say whose queue it is and what its mode allows: the usual question after EACCES.
      e.detail += fmt::format("; you are uid {}", ::geteuid());
    }
    return std::unexpected(std::move(e));
  }
  if (auto ok = check_owner(fd->get(), options.owner.value_or(::geteuid()), *kernel); !ok)
    return std::unexpected(ok.error());
  auto a = transport::mqueue::attributes(fd->get());
  if (!a) return std::unexpected(a.error());
  Queue q;
  q.fd_ = fd->release();
  q.msgsize_ = a->mq_msgsize;
  q.name_ = std::string(name);
  q.kernel_ = std::move(*kernel);
  return q;
}

Result<void> Queue::remove(std::string_view name) {
  auto kernel = kernel_name(name);
  if (!kernel) return std::unexpected(kernel.error());
  if (::mq_unlink(kernel->c_str()) != 0) return transport::mqueue::open_error(errno, *kernel, nullptr, "remove queue");
  return {};
}

Result<void> Queue::send(std::span<const std::byte> data, unsigned priority, Timeout timeout) {
  if (fd_ < 0) return fail(Errc::closed, "queue send", "queue closed");
  return transport::mqueue::send(fd_, data, priority, msgsize_, os::Deadline::after(timeout), "queue send");
}

Result<unsigned> Queue::recv(Message& into, Timeout timeout) {
  if (fd_ < 0) return fail(Errc::closed, "queue recv", "queue closed");
  auto buf = scratch(static_cast<std::size_t>(msgsize_));
  unsigned prio = 0;
  auto n = transport::mqueue::receive(fd_, buf, &prio, os::Deadline::after(timeout), "queue recv");
  if (!n) return std::unexpected(n.error());
  into.fds.clear();
  into.data.assign(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  return prio;
}

Result<Received> Queue::recv(Timeout timeout) {
  Received r;
  auto p = recv(r.message, timeout);
  if (!p) return std::unexpected(p.error());
  r.priority = *p;
  return r;
}

Result<Attributes> Queue::attributes() const {
  if (fd_ < 0) return fail(Errc::closed, "queue attributes", "queue closed");
  auto a = transport::mqueue::attributes(fd_);
  if (!a) return std::unexpected(a.error());
  return Attributes{.capacity = a->mq_maxmsg, .message_size = a->mq_msgsize, .messages = a->mq_curmsgs};
}

Limits limits() noexcept {
  return {.max_capacity = transport::mqueue::proc_limit("msg_max"),
          .max_message_size = transport::mqueue::proc_limit("msgsize_max")};
}

Result<std::vector<std::string>> list() {
  // An empty directory is not an empty list: only the mqueue filesystem knows the queues.
  constexpr long kMqueueMagic = 0x19800202;
  struct statfs fs{};
  if (::statfs("/dev/mqueue", &fs) != 0 || fs.f_type != kMqueueMagic)
    return fail(Errc::not_supported, "list queues",
                "/dev/mqueue is not mounted (as root: mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue)");
  DIR* d = ::opendir("/dev/mqueue");
  if (!d) return fail_errno(errno, "list queues", "/dev/mqueue");
  std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
  const std::string prefix = prefix_for(::geteuid());
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n.starts_with(prefix) && n.size() > prefix.size()) out.emplace_back(n.substr(prefix.size()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace ipcx::mq

namespace ipcx {

Result<Mailbox> Mailbox::open(std::string_view name, const MailboxOptions& options) {
  auto q = mq::Queue::create(
      name, {.capacity = options.capacity, .message_size = options.message_size, .mode = options.mode});
  if (!q) return std::unexpected(q.error());
  return Mailbox(std::move(*q), options.overflow);
}

Result<void> Mailbox::post(std::span<const std::byte> data, Timeout timeout) {
  auto counted = [this](std::uint64_t Counters::*field) {
    std::lock_guard lk(*mu_);
    ++(counters_.*field);
  };
  auto dropped = [this](std::uint64_t DropCounts::*field) {
    std::lock_guard lk(*mu_);
    ++(counters_.dropped.*field);
  };
  switch (overflow_) {
    case Overflow::block: {
      auto r = queue_.send(data, 0, timeout);
      if (r) counted(&Counters::sent);
      return r;
    }
    case Overflow::fail: {
      auto r = queue_.try_send(data);
      if (r) counted(&Counters::sent);
      else if (r.error().code == Errc::would_block) dropped(&DropCounts::refused);
      return r;
    }
    case Overflow::drop_newest: {
      auto r = queue_.try_send(data);
      if (r) {
        counted(&Counters::sent);
        return r;
      }
      if (r.error().code != Errc::would_block) return r;
      counted(&Counters::sent);
      dropped(&DropCounts::newest);
      return {};
    }
    case Overflow::drop_oldest: {
      // Take the oldest and try again. Bounded: a round fails only when other posters filled the
      // freed slot first; after that many rounds, wait like Overflow::block.
      Message discard;
      for (int round = 0; round < 64; ++round) {
        auto r = queue_.try_send(data);
        if (r) {
          counted(&Counters::sent);
          return r;
        }
        if (r.error().code != Errc::would_block) return r;
        auto old = queue_.recv(discard, Timeout::zero());
        if (old) dropped(&DropCounts::oldest);
        else if (old.error().code != Errc::would_block) return std::unexpected(old.error());
      }
      auto r = queue_.send(data, 0, timeout);
      if (r) counted(&Counters::sent);
      return r;
    }
  }
  return fail(Errc::invalid_argument, "post", "unknown overflow policy");
}

Result<Message> Mailbox::take(Timeout timeout) {
  Message m;
  auto r = queue_.recv(m, timeout);
  if (!r) return std::unexpected(r.error());
  std::lock_guard lk(*mu_);
  ++counters_.received;
  return m;
}

Counters Mailbox::stats() const {
  Counters c;
  {
    std::lock_guard lk(*mu_);
    c = counters_;
  }
  if (auto a = queue_.attributes()) c.queued = static_cast<std::uint64_t>(a->messages);
  return c;
}

}  // namespace ipcx
