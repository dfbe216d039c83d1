#include "transport/shm/conversation.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "os/futex.hpp"
#include "os/shm.hpp"
#include "os/socket.hpp"
#include "shm/wait.hpp"
#include "transport/out_queue.hpp"
#include "transport/shm/wake_pipes.hpp"

namespace ipcx::transport::shm {
namespace {

namespace ring = ipcx::shm::ring;

constexpr Timeout kHelloSlice = std::chrono::milliseconds(10);

// Sends one handshake record (Hello, Setup) with its descriptors, never waiting: a fresh
// socket's buffer has room for it. -1 with errno on failure, as sendmsg.
template <class Record>
ssize_t send_record(int sock, const Record& r, std::span<const int> fds) noexcept {
  iovec iov{.iov_base = const_cast<Record*>(&r), .iov_len = sizeof r};
  return os::send_with_fds(sock, &iov, 1, fds, true);
}

// Takes one handshake record, never waiting. Returns what recvmsg returned; `whole` says it is
// exactly one Record with `nfds` descriptors and nothing cut off.
template <class Record>
ssize_t recv_record(int sock, Record& r, std::vector<Fd>& fds, std::size_t nfds, bool& whole) noexcept {
  int flags = 0;
  const ssize_t n = os::recv_with_fds(sock, {reinterpret_cast<std::byte*>(&r), sizeof r}, &fds, true, &flags);
  whole = n == static_cast<ssize_t>(sizeof r) && (flags & (MSG_TRUNC | MSG_CTRUNC)) == 0 && fds.size() == nfds;
  return n;
}

class ShmConnection final : public ConnectionImpl {
 public:
  ShmConnection(Fd sock, bool listener_side, const EndpointOptions& o, WakePipe own_data, WakePipe own_space, Fd epoll)
      : sock_(std::move(sock)),
        ep_(std::move(epoll)),
        own_data_(std::move(own_data.mine)),
        own_space_(std::move(own_space.mine)),
        theirs_data_(std::move(own_data.theirs)),
        theirs_space_(std::move(own_space.theirs)),
        listener_side_(listener_side),
        wait_(o.wait),
        max_ring_(o.max_ring),
        max_message_(o.options.max_message),
        peer_(os::peer_credentials(sock_.get())) {
    own_data_no_ = own_data_.get();
    own_space_no_ = own_space_.get();
  }
  ~ShmConnection() override { release(); }

  // Maps the memory and builds the two ends (listener: at accept; client: from Setup).
  Result<void> attach(int memfd, std::size_t capacity) {
    auto m = os::Mapping::map(memfd, layout_size(capacity), true);
    if (!m) return std::unexpected(m.error());
    map_ = std::move(*m);
    auto* base = static_cast<std::byte*>(map_.data());
    std::byte* r0 = base + kHeaderBytes;
    std::byte* r1 = r0 + ring::footprint(capacity);
    // Ring 0 goes listener -> client, ring 1 client -> listener.
    std::byte* tx = listener_side_ ? r0 : r1;
    std::byte* rx = listener_side_ ? r1 : r0;
    tx_ = ring::Writer(tx, capacity, tx_wakers());
    rx_ = ring::Reader(rx, capacity, rx_wakers());
    return {};
  }
  void mark_attached() noexcept { attached_.store(true, std::memory_order_release); }

  ring::Wakers tx_wakers() noexcept {
    return {.data_fd = &peer_data_, .space_fd = &own_space_no_,
            .resolve = listener_side_ ? nullptr : &ShmConnection::resolve_setup, .ctx = this};
  }
  ring::Wakers rx_wakers() noexcept {
    return {.data_fd = &own_data_no_, .space_fd = &peer_space_,
            .resolve = listener_side_ ? nullptr : &ShmConnection::resolve_setup, .ctx = this};
  }

  Result<void> send_hello(int memfd, std::size_t capacity) {
    const int fds[] = {memfd, theirs_data_.get(), theirs_space_.get()};
    if (send_record(sock_.get(), Hello{.magic = kMagic, .version = kVersion, .capacity = capacity}, fds) !=
        static_cast<ssize_t>(sizeof(Hello)))
      return fail_errno(errno, "connect", "sending the shm:// hello");
    forget_theirs();
    return {};
  }

  Result<void> send_setup() {
    const int fds[] = {theirs_data_.get(), theirs_space_.get()};
    const ssize_t n = send_record(sock_.get(), Setup{.magic = kMagic, .version = kVersion}, fds);
    forget_theirs();
    if (n != static_cast<ssize_t>(sizeof(Setup))) {
      // A client that closed already (after sending): what it wrote is still to be read.
      if (errno == EPIPE || errno == ECONNRESET) return {};
      return fail_errno(errno, "accept", "sending the shm:// setup");
    }
    return {};
  }

  // Listener: takes the client's Hello if it is there already (it usually is by accept time).
  Result<void> try_hello() {
    std::lock_guard lk(setup_mu_);
    if (auto r = take_hello(); !r) return std::unexpected(r.error());
    return {};
  }

  // ---- send side ------------------------------------------------------------------------------
  Result<void> send(std::span<const std::byte> data, std::span<const int> fds, const os::Deadline& deadline) override {
    // The common case: attached, no earlier failure, nothing queued, the reader there, room for
    // a single record.
    if (fds.empty() && data.size() <= max_message_ && !tx_error_ && attached_.load(std::memory_order_acquire) &&
        out_.empty() && !tx_.reader_closed() && tx_.write_whole(data)) [[likely]]
      return {};
    return send_slow(data, fds, deadline);
  }

 private:
  [[gnu::noinline]] Result<void> send_slow(std::span<const std::byte> data, std::span<const int> fds,
                                           const os::Deadline& deadline) {
    if (auto r = check_send(data, fds); !r) return r;
    // Before the client's Hello came there is no ring: wait for it within the deadline.
    if (auto r = await_setup(deadline, "send"); !r) return r;
    if (!out_.empty()) {
      if (auto r = flush(deadline); !r) return r;
    }
    std::size_t done = 0;
    bool started = false;
    for (;;) {
      if (tx_.reader_closed()) return fail(Errc::closed, "send", "the peer closed the connection");
      const auto before = done;
      auto w = tx_.write(data, &done);
      if (!w) return tx_failed(w.error());
      if (*w) return {};
      started = started || done != before;
      auto r = wait_space(deadline, "send");
      if (!r) {
        const auto code = r.error().code;
        if (started && (code == Errc::timeout || code == Errc::would_block)) {
          // Part of the message is in the ring: the rest waits in the queue, sent by flush().
          if (!out_.push(data.subspan(done), {})) return fail(Errc::resource_exhausted, "send", "memory budget");
          front_done_ = 0;
          return {};
        }
        return r;
      }
    }
  }

 public:
  Result<void> enqueue(std::span<const std::byte> data, std::span<const int> fds) override {
    if (auto r = check_send(data, fds); !r) return r;
    // Before the Hello, the queue is shared with the call that takes it (see take_hello).
    std::unique_lock lk(setup_mu_, std::defer_lock);
    if (!attached_.load(std::memory_order_acquire)) lk.lock();
    if (!out_.push(data, {})) return fail(Errc::resource_exhausted, "enqueue", "memory budget");
    return {};
  }

  Result<void> flush(const os::Deadline& deadline) override {
    if (out_.empty()) return {};
    if (auto r = await_setup(deadline, "flush"); !r) return r;
    return flush_attached(deadline);
  }

  std::size_t queued() const noexcept override { return out_.size() - front_done_; }

  Result<void> close_send(const os::Deadline& deadline) override {
    if (auto r = await_setup(deadline, "close_send"); !r) return r;
    if (auto r = flush(deadline); !r) return r;
    tx_.close();
    return {};
  }

 private:
  Result<void> flush_attached(const os::Deadline& deadline) {
    while (!out_.empty()) {
      if (tx_.reader_closed()) return fail(Errc::closed, "flush", "the peer closed the connection");
      const auto chunk = out_.next();
      auto w = tx_.write(chunk.bytes, &front_done_);
      if (!w) return tx_failed(w.error());
      if (*w) {
        out_.consume(chunk.bytes.size());
        front_done_ = 0;
        continue;
      }
      if (auto r = wait_space(deadline, "flush"); !r) return r;
    }
    return {};
  }

 public:

  // ---- receive side ---------------------------------------------------------------------------
  Result<void> recv(Message& into, const os::Deadline& deadline, ReadBudget* budget) override {
    // The common case: a whole message in one record is there.
    if (!rx_error_ && partial_.empty() && (!budget || budget->bytes != 0) && attached_.load(std::memory_order_acquire) &&
        !stopping_.load(std::memory_order_relaxed) && rx_.read_whole(into.data, max_message_)) [[likely]] {
      into.fds.clear();
      charge(budget, into.data.size());
      return {};
    }
    return recv_slow(into, deadline, budget);
  }

 private:
  [[gnu::noinline]] Result<void> recv_slow(Message& into, const os::Deadline& deadline, ReadBudget* budget) {
    if (rx_error_) return fail(Errc::closed, "recv", rx_error_->code == Errc::closed ? rx_error_->detail : "the connection failed");
    if (stopping_.load()) return fail(Errc::closed, "recv", "connection closed");
    if (budget && budget->bytes == 0) return fail(Errc::would_block, "recv");
    if (auto r = await_setup(deadline, "recv"); !r) return r;
    into.data.clear();
    into.fds.clear();
    if (!partial_.empty()) std::swap(into.data, partial_);
    for (;;) {
      auto got = rx_.read(into.data, max_message_);
      if (!got) return rx_failed(into, got.error());
      if (*got == ring::Reader::Got::message) {
        charge(budget, into.data.size());
        return {};
      }
      if (*got == ring::Reader::Got::eof) return fail(Errc::closed, "recv", "the peer closed the connection");
      auto w = ipcx::shm::wait_until(
          wait_, deadline, [&] { return rx_.ready(); }, [&](std::uint32_t how) { return rx_.arm(how); },
          [&] { rx_.disarm(ring::kWakeFutex); }, rx_.futex_word(), [&] { return peer_alive(); }, stopping_, "recv");
      if (w) continue;
      if (w.error().code == Errc::would_block) {
        // Polled from now on: the writer pokes our data pipe. Look once more after arming.
        if (!listener_side_) resolve_setup(this);
        (void)rx_.arm(ring::kWakeFd);
        if (rx_.ready()) continue;
        if (!peer_alive()) {
          if (rx_.ready()) continue;
          if (into.data.empty()) return rx_failed(into, fail(Errc::closed, "recv", "the peer is gone").error());
          return rx_failed(into, fail(Errc::protocol, "recv", "the peer died in the middle of a message").error());
        }
      } else if (w.error().code == Errc::closed && !into.data.empty() && !stopping_.load()) {
        return rx_failed(into, fail(Errc::protocol, "recv", "the peer died in the middle of a message").error());
      }
      if (!into.data.empty()) std::swap(into.data, partial_);  // kept for the next call
      return std::unexpected(w.error());
    }
  }

 public:
  bool buffered() const noexcept override {
    return attached_.load(std::memory_order_acquire) && rx_.pending();
  }
  bool mid_message() const noexcept override { return !partial_.empty(); }
  void trim() noexcept override {
    out_.trim();
    if (partial_.empty()) std::vector<std::byte>().swap(partial_);
  }
  void set_budget(std::shared_ptr<wire::MemoryBudget> b) noexcept override { out_.set_budget(std::move(b)); }
  void limit_message(std::size_t n) noexcept override { max_message_ = std::min(max_message_, n); }

  // ---- any thread -----------------------------------------------------------------------------
  Handles handles() const noexcept override { return {.read = ep_.get(), .write = own_space_.get()}; }
  PeerCred peer() const noexcept override { return peer_; }
  Capabilities capabilities() const noexcept override {
    return {.fd_passing = false, .records = true, .verified_peer = true, .pollable = true};
  }
  // Ends the conversation both ways (the peer learns at once: the rings say closed, the
  // socket hangs up) and wakes our own calls blocked in other threads.
  void shutdown() noexcept override {
    stopping_.store(true);
    ::shutdown(sock_.get(), SHUT_RDWR);
    if (!attached_.load(std::memory_order_acquire)) return;
    tx_.close();
    rx_.close();
    rx_.futex_word().fetch_add(1);
    (void)os::futex_wake(rx_.futex_word(), INT_MAX);
    tx_.futex_word().fetch_add(1);
    (void)os::futex_wake(tx_.futex_word(), INT_MAX);
  }
  void release() noexcept override {
    if (released_once_) return;
    released_once_ = true;
    if (attached_.load(std::memory_order_acquire)) {
      tx_.close();
      rx_.close();
    }
    // The mapping stays until the object goes: buffered() may still look at the ring from
    // another thread while close() releases.
    sock_.reset();
    ep_.reset();
  }

 private:
  // A message of `n` bytes taken: the engine's read budget counts it with its record header.
  static void charge(ReadBudget* budget, std::size_t n) noexcept {
    if (budget) budget->bytes -= std::min(budget->bytes, n + ring::kHeader);
  }

  Result<void> check_send(std::span<const std::byte> data, std::span<const int> fds) const {
    if (!fds.empty()) return fail(Errc::not_supported, "send", "shm:// does not pass descriptors");
    if (data.size() > max_message_)
      return fail(Errc::too_large, "send", fmt::format("message of {} bytes (the limit is {})", data.size(), max_message_));
    if (tx_error_) return std::unexpected(*tx_error_);
    return {};
  }

  Result<void> tx_failed(const Error& e) {
    tx_error_ = e;
    return std::unexpected(e);
  }
  Result<void> rx_failed(Message& into, const Error& e) {
    into.data.clear();
    partial_.clear();
    rx_error_ = e.code == Errc::closed ? Error{.code = Errc::closed, .op = "recv", .detail = e.detail} : e;
    return std::unexpected(e);
  }

  Result<void> wait_space(const os::Deadline& deadline, const char* op) {
    auto w = ipcx::shm::wait_until(
        wait_, deadline, [&] { return tx_.has_space(); }, [&](std::uint32_t how) { return tx_.arm(how); },
        [&] { tx_.disarm(ring::kWakeFutex); }, tx_.futex_word(), [&] { return peer_alive(); }, stopping_, op);
    if (w || w.error().code != Errc::would_block) return w;
    // Polled for writability from now on: the reader drains our space pipe when it frees space.
    (void)tx_.arm(ring::kWakeFd);
    if (tx_.has_space()) return {};
    return w;
  }

  // The peer's end of the socket is open (it has not exited nor closed the conversation).
  // Asked of the socket's hang-up state, not of its data: a record left unread (a Setup nobody
  // needed yet, or a hostile peer's extra bytes) must not make a dead peer look alive.
  bool peer_alive() noexcept {
    pollfd p{.fd = sock_.get(), .events = POLLRDHUP, .revents = 0};
    const int n = ::poll(&p, 1, 0);
    if (n < 0) return errno == EINTR;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) == 0;
  }

  // Listener: waits for the client's Hello and attaches. Client: attached from the start.
  // Inline: after the Hello, one load.
  Result<void> await_setup(const os::Deadline& deadline, const char* op) {
    if (attached_.load(std::memory_order_acquire)) [[likely]] return {};
    return await_hello(deadline, op);
  }
  [[gnu::noinline]] Result<void> await_hello(const os::Deadline& deadline, const char* op) {
    while (!attached_.load(std::memory_order_acquire)) {
      {
        std::lock_guard lk(setup_mu_);
        if (attached_.load(std::memory_order_acquire)) break;
        if (hello_error_) return std::unexpected(*hello_error_);
        auto r = take_hello();
        if (!r) return std::unexpected(r.error());
        if (*r) break;
      }
      if (stopping_.load()) return fail(Errc::closed, op, "connection closed");
      // In slices: another call (the other side of this connection) may take the Hello while
      // we wait, and then nothing more comes on the socket to wake us. What is left is read once:
      // a deadline that ran out since the last look is a timeout (a slice of zero would be an
      // immediate deadline, which says would_block).
      const Timeout left = deadline.infinite() ? kHelloSlice : deadline.remaining();
      if (!deadline.immediate() && left <= Timeout::zero()) return fail(Errc::timeout, op, "waiting for the shm:// hello");
      const auto slice = os::Deadline::after(std::min<Timeout>(kHelloSlice, left));
      if (auto w = os::await(sock_.get(), POLLIN, deadline.immediate() ? deadline : slice, op); !w) {
        if (w.error().code == Errc::timeout && !deadline.expired()) continue;
        return w;
      }
    }
    return {};
  }

  // Listener: one non-blocking look for Hello: true once attached. The memory comes from the
  // client: it is used only if it is a file of exactly the layout's size, sealed so that it
  // can never shrink under us (a truncated mapping would fault on access).
  Result<bool> take_hello() {
    Hello h{};
    std::vector<Fd> fds;
    bool whole = false;
    const ssize_t n = recv_record(sock_.get(), h, fds, 3, whole);
    if (n < 0) {
      if (errno == EAGAIN) return false;
      return fail_errno(errno, "accept", "waiting for the shm:// hello");
    }
    if (n == 0) return fail(Errc::closed, "recv", "the client closed the connection before its hello");
    if (!whole) return bad_hello(fmt::format("a record of {} bytes with {} descriptors", n, fds.size()));
    if (h.magic != kMagic || h.version != kVersion)
      return bad_hello(fmt::format("magic 0x{:08x} version {} (expected 0x{:08x} version {})", h.magic, h.version, kMagic,
                                   kVersion));
    if (!ring::valid_capacity(h.capacity)) return bad_hello(fmt::format("ring capacity {}", h.capacity));
    if (h.capacity > max_ring_)
      return bad_hello(fmt::format("rings of {} bytes (this listener takes at most {}: its ring=)", h.capacity, max_ring_));
    struct stat st {};
    if (::fstat(fds[0].get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<std::size_t>(st.st_size) != layout_size(h.capacity))
      return bad_hello("the memory is not a file of the layout's size");
    const int seals = ::fcntl(fds[0].get(), F_GET_SEALS);
    if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_SEAL)) != (F_SEAL_SHRINK | F_SEAL_SEAL))
      return bad_hello("the memory is not sealed against shrinking");
    if (auto r = adopt_peer_wakeups(fds[1], fds[2]); !r) return bad_hello("a wake-up descriptor: " + r.error().message());
    if (auto r = attach(fds[0].get(), h.capacity); !r)
      return bad_hello(fmt::format("the memory cannot be mapped: {}", r.error().message()));
    after_handshake();
    // Writable from now on (it was made not writable so that nobody flushed before this), and
    // readable if the client wrote before we were there: its wake-up went nowhere (no Setup yet).
    ring::drain_pipe(own_space_.get());
    if (rx_.pending()) ring::poke_pipe(own_data_.get());
    // What was sent before the Hello goes into the ring now, as far as it fits (the rest by the
    // next send-side call; the server engine's, as our space pipe polls writable from now
    // on). Until attached_ is set, send-side calls touch the queue only under setup_mu_, which
    // we hold; after, only they do.
    if (!out_.empty()) (void)flush_attached(os::Deadline::now());
    mark_attached();
    return true;
  }

  std::unexpected<Error> bad_hello(std::string detail) {
    hello_error_ = fail(Errc::protocol, "recv", "shm:// hello from the client: " + std::move(detail)).error();
    return std::unexpected(*hello_error_);
  }

  // The socket now only says when the peer goes away.
  void after_handshake() noexcept {
    epoll_event ev{};
    ev.events = EPOLLRDHUP;
    ev.data.fd = sock_.get();
    (void)::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, sock_.get(), &ev);
  }

  // Client: takes the listener's Setup (its wake pipes) if it is there. Called before polling and
  // when a wake-up needs one of the listener's pipes: the listener sends Setup at accept,
  // before it can ask for such a wake-up, so it is there by then.
  static void resolve_setup(void* ctx) noexcept {
    auto* self = static_cast<ShmConnection*>(ctx);
    std::lock_guard lk(self->setup_mu_);
    if (self->setup_done_) return;
    Setup s{};
    std::vector<Fd> fds;
    bool whole = false;
    const ssize_t n = recv_record(self->sock_.get(), s, fds, 2, whole);
    if (n < 0 && errno == EAGAIN) return;
    self->setup_done_ = true;
    self->after_handshake();
    // Anything but a proper Setup: no fd wake-ups for the listener (it polls its own way or not
    // at all); the data path is unaffected.
    if (whole && s.magic == kMagic && s.version == kVersion) (void)self->adopt_peer_wakeups(fds[0], fds[1]);
  }

  // Keeps the peer's two wake pipes (what our wake-ups of it write and drain), each through a
  // description of our own; neither when one is not a pipe.
  Result<void> adopt_peer_wakeups(Fd& data, Fd& space) noexcept {
    auto d = own_peer_pipe(data.get());
    if (!d) return std::unexpected(d.error());
    auto s = own_peer_pipe(space.get());
    if (!s) return std::unexpected(s.error());
    data.reset();
    space.reset();
    peer_data_hold_ = std::move(*d);
    peer_space_hold_ = std::move(*s);
    peer_data_.store(peer_data_hold_.get(), std::memory_order_release);
    peer_space_.store(peer_space_hold_.get(), std::memory_order_release);
    return {};
  }

  // The ends sent to the peer are its business from now on.
  void forget_theirs() noexcept {
    theirs_data_.reset();
    theirs_space_.reset();
  }

  Fd sock_, ep_, own_data_, own_space_, theirs_data_, theirs_space_;
  Fd peer_data_hold_, peer_space_hold_;
  std::atomic<int> own_data_no_{-1}, own_space_no_{-1}, peer_data_{-1}, peer_space_{-1};
  os::Mapping map_;
  ring::Writer tx_;
  ring::Reader rx_;
  std::atomic<bool> attached_{false};
  std::mutex setup_mu_;
  bool setup_done_ = false;   // client: the listener's Setup was taken
  std::optional<Error> hello_error_;  // listener: the client's Hello was unusable (setup_mu_)
  bool listener_side_;
  WaitPolicy wait_;
  std::size_t max_ring_;
  std::size_t max_message_;
  PeerCred peer_;
  std::optional<Error> tx_error_;
  std::optional<Error> rx_error_;  // the receive side is over (recv lock)
  OutQueue out_{OutQueue::Mode::records};
  std::size_t front_done_ = 0;  // bytes of the queue's first message already in the ring
  std::vector<std::byte> partial_;
  std::atomic<bool> stopping_{false};
  bool released_once_ = false;
};

}  // namespace

Result<std::unique_ptr<ConnectionImpl>> accept_conversation(Fd sock, const EndpointOptions& o) {
  auto data = make_wake_pipe(false);
  if (!data) return std::unexpected(data.error());
  auto space = make_wake_pipe(true);
  if (!space) return std::unexpected(space.error());
  ring::block_pipe(space->mine.get());  // not writable until the rings are there (Hello)
  auto ep = make_epoll(data->mine.get(), sock.get());
  if (!ep) return std::unexpected(ep.error());
  auto c = std::make_unique<ShmConnection>(std::move(sock), true, o, std::move(*data), std::move(*space), std::move(*ep));
  if (auto r = c->send_setup(); !r) return std::unexpected(r.error());
  // A bad Hello is this conversation's error: the first recv reports it.
  (void)c->try_hello();
  return c;
}

Result<std::unique_ptr<ConnectionImpl>> start_conversation(Fd sock, const EndpointOptions& o) {
  const std::size_t size = layout_size(o.ring);
  int m = ::memfd_create("ipcx-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (m < 0) return fail_errno(errno, "memfd_create");
  Fd memfd(m);
  if (::ftruncate(m, static_cast<off_t>(size)) != 0) return fail_errno(errno, "ftruncate", fmt::format("{} bytes", size));
  if (::fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) return fail_errno(errno, "F_ADD_SEALS");
  auto data = make_wake_pipe(false);
  if (!data) return std::unexpected(data.error());
  auto space = make_wake_pipe(true);
  if (!space) return std::unexpected(space.error());
  auto ep = make_epoll(data->mine.get(), sock.get());
  if (!ep) return std::unexpected(ep.error());
  auto c = std::make_unique<ShmConnection>(std::move(sock), false, o, std::move(*data), std::move(*space), std::move(*ep));
  {
    // The layout's header, and each reader polled until it says otherwise, so that a side that
    // only polls its descriptor sees the first message.
    auto map = os::Mapping::map(memfd.get(), size, true);
    if (!map) return std::unexpected(map.error());
    auto* h = static_cast<LayoutHeader*>(map->data());
    h->magic = kMagic;
    h->version = kVersion;
    h->capacity = o.ring;
    h->ring_offset[0] = kHeaderBytes;
    h->ring_offset[1] = kHeaderBytes + ring::footprint(o.ring);
    for (auto off : h->ring_offset) {
      auto* ctl = reinterpret_cast<ring::Control*>(static_cast<std::byte*>(map->data()) + off);
      ctl->reader_wait.store(ring::kWakeFd, std::memory_order_relaxed);
    }
  }
  if (auto r = c->attach(memfd.get(), o.ring); !r) return std::unexpected(r.error());
  c->mark_attached();
  if (auto r = c->send_hello(memfd.get(), o.ring); !r) return std::unexpected(r.error());
  return c;
}

}  // namespace ipcx::transport::shm
