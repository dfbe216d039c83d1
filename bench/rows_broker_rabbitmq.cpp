// The broker rows' RabbitMQ peer (rabbitmq-durable, rabbitmq-group): a private RabbitMQ 3.10
// node for one measurement, driven through rabbitmq-c 0.11 in both processes.
//
// The node is not the system's service: its own node name (ipcxbench-PID@localhost), AMQP,
// distribution and epmd ports chosen free on 127.0.0.1, its Mnesia directory, logs, config file
// (rabbitmq.conf), empty plugin list, empty rabbitmq-env.conf and Erlang cookie ($HOME pointed at
// its directory) all under the measurement's directory in the run directory. Debian's
// /usr/sbin/rabbitmq-server would switch to the rabbitmq user when run as root; the bench runs the
// script behind it (/usr/lib/rabbitmq/bin/rabbitmq-server) with RABBITMQ_ALLOW_INPUT set, so that
// the script execs the Erlang VM (the bench's child, in its own process group) instead of
// staying as a shell that proxies signals. The bench starts the node's epmd itself, on the
// private port (ERL_EPMD_PORT), so that erl finds one running and starts none (a system epmd is
// never touched), and stops both when the measurement ends.
//
// Durability: a durable classic queue, persistent messages (delivery_mode 2), publisher confirms
// (confirm.select). RabbitMQ confirms a persistent message once its queue has written it and
// fsynced (its message store batches fsyncs over the messages waiting for one, its own group
// commit), or once a consumer has acknowledged it, whichever comes first. It has no mode that
// fsyncs each message by itself: broker-durable and broker-group run it the same way.
#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <utility>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <fmt/format.h>

#include "bench/rows_broker.hpp"

namespace ipcx::bench::broker {
namespace {

constexpr amqp_channel_t kChannel = 1;

std::string reply_text(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: return "ok";
    case AMQP_RESPONSE_NONE: return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION: return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return fmt::format("connection closed by the server: {} {}", m->reply_code,
                           std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return fmt::format("channel closed by the server: {} {}", m->reply_code,
                           std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len));
      }
      return fmt::format("server error (method 0x{:08x})", r.reply.id);
  }
  return "?";
}

// One AMQP connection to the node, with channel 1 open. RPCs give up after 10 s.
class Amqp {
 public:
  static Result<std::unique_ptr<Amqp>> open(int port) {
    auto a = std::unique_ptr<Amqp>(new Amqp(amqp_new_connection()));
    if (!a->conn_) return fail(Errc::resource_exhausted, "amqp", "amqp_new_connection");
    auto* sock = amqp_tcp_socket_new(a->conn_);
    if (!sock) return fail(Errc::resource_exhausted, "amqp", "amqp_tcp_socket_new");
    timeval connect_tv{2, 0}, rpc_tv{10, 0};
    if (int st = amqp_socket_open_noblock(sock, "127.0.0.1", port, &connect_tv); st != AMQP_STATUS_OK)
      return fail(Errc::connection_refused, "amqp connect", fmt::format("127.0.0.1:{}: {}", port, amqp_error_string2(st)));
    amqp_set_rpc_timeout(a->conn_, &rpc_tv);
    if (auto r = amqp_login(a->conn_, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
        r.reply_type != AMQP_RESPONSE_NORMAL)
      return fail(Errc::connection_refused, "amqp login", reply_text(r));
    amqp_channel_open(a->conn_, kChannel);
    if (auto s = a->rpc("amqp channel.open"); !s) return std::unexpected(s.error());
    a->open_ = true;
    return a;
  }
  Amqp(const Amqp&) = delete;
  Amqp& operator=(const Amqp&) = delete;
  ~Amqp() {
    if (!conn_) return;
    if (open_) (void)amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn_);
  }
  amqp_connection_state_t get() const noexcept { return conn_; }
  // The reply of the RPC just made.
  Status rpc(const char* op) const {
    auto r = amqp_get_rpc_reply(conn_);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return {};
    return fail(Errc::protocol, op, reply_text(r));
  }

 private:
  explicit Amqp(amqp_connection_state_t c) : conn_(c) {}
  amqp_connection_state_t conn_;
  bool open_ = false;
};

class RabbitPublisher final : public Publisher {
 public:
  RabbitPublisher(std::unique_ptr<Amqp> amqp, Alive alive) : amqp_(std::move(amqp)), alive_(std::move(alive)) {}

  Status publish(std::span<const std::byte> body, ConfirmClock& clock) override {
    if (auto s = keep_going("rabbitmq publish", alive_, true); !s) return s;
    while (sent_ - confirmed_ >= kWindow)
      if (auto s = read_confirms(clock, true); !s) return s;
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    amqp_bytes_t bytes{body.size(), const_cast<std::byte*>(body.data())};
    if (int st = amqp_basic_publish(amqp_->get(), kChannel, amqp_empty_bytes, amqp_cstring_bytes(kQueue), 0, 0, &props, bytes);
        st != AMQP_STATUS_OK)
      return failed(fail(Errc::closed, "rabbitmq publish", amqp_error_string2(st)));
    ++sent_;
    acked_.push_back(0);
    return {};
  }

  Status finish(ConfirmClock& clock) override {
    while (confirmed_ < sent_)
      if (auto s = read_confirms(clock, false); !s) return s;
    return {};
  }

 private:
  // Reads one frame (waiting up to 100 ms): a basic.ack confirms its delivery tag (publishes
  // are numbered from 1 on the channel), or every tag up to it when `multiple`.
  Status read_confirms(ConfirmClock& clock, bool watch_child) {
    amqp_maybe_release_buffers(amqp_->get());
    amqp_frame_t f{};
    timeval tv{0, 100'000};
    const int st = amqp_simple_wait_frame_noblock(amqp_->get(), &f, &tv);
    if (st == AMQP_STATUS_TIMEOUT) return keep_going("rabbitmq confirms", alive_, watch_child);
    if (st != AMQP_STATUS_OK) return failed(fail(Errc::closed, "rabbitmq confirms", amqp_error_string2(st)));
    if (f.frame_type != AMQP_FRAME_METHOD) return {};
    switch (f.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        auto* a = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
        if (a->delivery_tag < 1 || a->delivery_tag > sent_)
          return fail(Errc::protocol, "rabbitmq confirms", fmt::format("basic.ack of tag {}, {} published", a->delivery_tag, sent_));
        const auto upto = a->delivery_tag;
        for (auto i = a->multiple ? lowest_ : upto - 1; i < upto; ++i)
          if (!acked_[i]) acked_[i] = 1, ++confirmed_;
        while (lowest_ < sent_ && acked_[lowest_]) ++lowest_;
        clock.saw(confirmed_);
        return {};
      }
      case AMQP_BASIC_NACK_METHOD: {
        auto* n = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
        return fail(Errc::system, "rabbitmq confirms", fmt::format("the broker refused message {} (basic.nack)", n->delivery_tag));
      }
      case AMQP_CHANNEL_CLOSE_METHOD: {
        auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
        return fail(Errc::closed, "rabbitmq confirms",
                    fmt::format("channel closed: {} {}", m->reply_code, std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len)));
      }
      case AMQP_CONNECTION_CLOSE_METHOD: return failed(fail(Errc::closed, "rabbitmq confirms", "the broker closed the connection"));
      default: return {};
    }
  }

  // The node's death explains a failed call better than the call's own error.
  Status failed(std::unexpected<Error> e) { return explain(alive_, std::move(e)); }

  std::unique_ptr<Amqp> amqp_;
  Alive alive_;
  std::uint64_t sent_ = 0, confirmed_ = 0, lowest_ = 0;  // lowest_: the first tag - 1 not yet confirmed
  std::vector<std::uint8_t> acked_;                      // by tag - 1
};

class RabbitConsumer final : public Consumer {
 public:
  explicit RabbitConsumer(std::unique_ptr<Amqp> amqp) : amqp_(std::move(amqp)) {}
  ~RabbitConsumer() override { release(); }

  Result<std::span<const std::byte>> next() override {
    release();
    amqp_maybe_release_buffers(amqp_->get());
    timeval tv{std::chrono::duration_cast<std::chrono::seconds>(kIdle).count(), 0};
    auto r = amqp_consume_message(amqp_->get(), &env_, &tv, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        return fail(Errc::timeout, "rabbitmq consume", fmt::format("no message for {} s", tv.tv_sec));
      return fail(Errc::closed, "rabbitmq consume", reply_text(r));
    }
    have_ = true;
    return std::span<const std::byte>(static_cast<const std::byte*>(env_.message.body.bytes), env_.message.body.len);
  }

  Status ack() override {
    if (int st = amqp_basic_ack(amqp_->get(), kChannel, env_.delivery_tag, 0); st != AMQP_STATUS_OK)
      return fail(Errc::closed, "rabbitmq ack", amqp_error_string2(st));
    return {};
  }

 private:
  void release() {
    if (have_) amqp_destroy_envelope(&env_);
    have_ = false;
  }
  std::unique_ptr<Amqp> amqp_;
  amqp_envelope_t env_{};
  bool have_ = false;
};

Status make_dirs(const std::vector<std::string>& dirs) {
  for (auto& d : dirs)
    if (::mkdir(d.c_str(), 0700) != 0) return sys_error("mkdir", d);
  return {};
}

// Erlang wants the cookie file readable by its owner only.
std::string cookie() {
  std::random_device rd;
  std::string c;
  for (int i = 0; i < 20; ++i) c += static_cast<char>('A' + rd() % 26);
  return c;
}

class RabbitSetup final : public BrokerSetup {
 public:
  explicit RabbitSetup(const RunCtx& c) : BrokerSetup(c), dir_(c.path + ".rabbitmq") {}
  ~RabbitSetup() override {
    if (!parent_) return;
    if (rabbit_) rabbit_->stop();
    if (epmd_) epmd_->stop(2s);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Status start(ChildWiring& wiring) override {
    parent_ = true;
    if (auto s = make_dirs({dir_, dir_ + "/home", dir_ + "/mnesia", dir_ + "/log"}); !s) return s;
    auto amqp_port = free_port(), dist_port = free_port(), epmd_port = free_port();
    if (!amqp_port || !dist_port || !epmd_port) return sys_error("bind", "127.0.0.1:0");
    if (*amqp_port == *dist_port || *dist_port == *epmd_port || *amqp_port == *epmd_port)
      return fail(Errc::address_in_use, "rabbitmq", "no three free ports");
    port_ = *amqp_port;
    const std::string conf = dir_ + "/rabbitmq.conf";
    if (auto s = write_file(conf, fmt::format("listeners.tcp.1 = 127.0.0.1:{}\nlog.console = false\nlog.file.level = warning\n", port_)); !s)
      return s;
    if (auto s = write_file(dir_ + "/enabled_plugins", "[].\n"); !s) return s;
    if (auto s = write_file(dir_ + "/rabbitmq-env.conf", ""); !s) return s;
    if (auto s = write_file(dir_ + "/home/.erlang.cookie", cookie(), 0400); !s) return s;

    const auto epmd_env = fmt::format("ERL_EPMD_PORT={}", *epmd_port);
    auto e = Daemon::start("epmd", {IPCX_BENCH_EPMD, "-port", std::to_string(*epmd_port)}, {epmd_env, "HOME=" + dir_ + "/home"},
                           dir_ + "/epmd.log", {"ERL_", "RABBITMQ_"});
    if (!e) return std::unexpected(e.error());
    epmd_ = std::move(*e);
    if (auto s = wait_ready(*epmd_, 10s, [&] { return tcp_open(*epmd_port); }); !s) return s;

    auto r = Daemon::start("rabbitmq-server", {IPCX_BENCH_RABBITMQ_SERVER},
                           {"HOME=" + dir_ + "/home", epmd_env,
                            fmt::format("RABBITMQ_NODENAME=ipcxbench-{}@localhost", ::getpid()),
                            "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
                            fmt::format("RABBITMQ_NODE_PORT={}", port_),
                            fmt::format("RABBITMQ_DIST_PORT={}", *dist_port),
                            "RABBITMQ_MNESIA_BASE=" + dir_ + "/mnesia",
                            "RABBITMQ_LOG_BASE=" + dir_ + "/log",
                            "RABBITMQ_CONFIG_FILE=" + conf,
                            "RABBITMQ_ADVANCED_CONFIG_FILE=" + dir_ + "/advanced.config",  // absent: none
                            "RABBITMQ_ENABLED_PLUGINS_FILE=" + dir_ + "/enabled_plugins",
                            "RABBITMQ_CONF_ENV_FILE=" + dir_ + "/rabbitmq-env.conf",
                            "RABBITMQ_PID_FILE=" + dir_ + "/rabbitmq.pid",
                            // The script execs the VM rather than waiting on it as a shell;
                            // -noinput: no Erlang shell on the VM's standard input.
                            "RABBITMQ_ALLOW_INPUT=1",
                            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noinput"},
                           dir_ + "/rabbitmq.log", {"ERL_", "RABBITMQ_"});
    if (!r) return std::unexpected(r.error());
    rabbit_ = std::move(*r);
    // Booting takes seconds: ready once it takes an AMQP login.
    std::unique_ptr<Amqp> admin;
    if (auto s = wait_ready(*rabbit_, 60s, [&]() -> Status {
          auto a = Amqp::open(port_);
          if (!a) return std::unexpected(a.error());
          admin = std::move(*a);
          return {};
        });
        !s)
      return s;
    amqp_queue_declare(admin->get(), kChannel, amqp_cstring_bytes(kQueue), /*passive*/ 0, /*durable*/ 1, /*exclusive*/ 0,
                       /*auto_delete*/ 0, amqp_empty_table);
    if (auto s = admin->rpc("rabbitmq queue.declare"); !s) return s;
    wiring.env(fmt::format("{}={}", kServerVar, port_));
    return {};
  }

  Made<Consumer> consumer() override {
    auto port = server_from_env();
    if (!port) return std::unexpected(port.error());
    auto a = Amqp::open(std::atoi(port->c_str()));
    if (!a) return std::unexpected(a.error());
    amqp_basic_qos((*a)->get(), kChannel, 0, static_cast<std::uint16_t>(kPrefetch), 0);
    if (auto s = (*a)->rpc("rabbitmq basic.qos"); !s) return std::unexpected(s.error());
    amqp_basic_consume((*a)->get(), kChannel, amqp_cstring_bytes(kQueue), amqp_empty_bytes, /*no_local*/ 0, /*no_ack*/ 0,
                       /*exclusive*/ 0, amqp_empty_table);
    if (auto s = (*a)->rpc("rabbitmq basic.consume"); !s) return std::unexpected(s.error());
    return std::make_unique<RabbitConsumer>(std::move(*a));
  }

  Made<Publisher> publisher() override {
    auto a = Amqp::open(port_);
    if (!a) return std::unexpected(a.error());
    amqp_confirm_select((*a)->get(), kChannel);
    if (auto s = (*a)->rpc("rabbitmq confirm.select"); !s) return std::unexpected(s.error());
    return std::make_unique<RabbitPublisher>(std::move(*a), alive_while(*rabbit_, "broker"));
  }

 private:
  static Status tcp_open(int port) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) return sys_error("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return sys_error("connect", fmt::format("127.0.0.1:{}", port));
    return {};
  }

  std::string dir_;
  int port_ = 0;
  bool parent_ = false;
  std::unique_ptr<Daemon> epmd_, rabbit_;
};

}  // namespace

std::string rabbitmq_missing() {
  if (::access(IPCX_BENCH_RABBITMQ_SERVER, X_OK) != 0)
    return fmt::format("{} not found (scripts/install-deps.sh --peers installs rabbitmq-server)", IPCX_BENCH_RABBITMQ_SERVER);
  if (::access(IPCX_BENCH_EPMD, X_OK) != 0) return fmt::format("{} (Erlang's epmd) not found", IPCX_BENCH_EPMD);
  return {};
}

std::unique_ptr<Setup> rabbitmq_setup(const RunCtx& c, Durability) { return std::make_unique<RabbitSetup>(c); }

}  // namespace ipcx::bench::broker
