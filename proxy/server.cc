#include "proxy/server.h"

#include <csignal>
#include <thread>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace postern {

int WorkerCount(int configured) {
  if (configured > 0) return configured;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

absl::StatusOr<std::shared_ptr<const TlsContext>> LoadTlsContext(const Config& config) {
  if (!config.tls_needed) return std::shared_ptr<const TlsContext>();
  TlsServerOptions o;
  o.certificate_file = config.tls.certificate;
  o.key_file = config.tls.key;
  o.min_version = config.tls.min_version;
  o.session_tickets = config.tls.session_tickets;
  return TlsContext::CreateServer(o);
}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(std::shared_ptr<const Config> config) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> tls = LoadTlsContext(*config);
  if (!tls.ok()) return tls.status();
  std::unique_ptr<Server> s(new Server(std::move(config), *std::move(tls)));
  absl::Status st = s->Bind();
  if (!st.ok()) return st;
  return s;
}

Server::Server(std::shared_ptr<const Config> config, std::shared_ptr<const TlsContext> tls)
    : config_(std::move(config)),
      tls_(std::move(tls)),
      limiter_(config_->limits.max_connections_per_ip) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &worker_exit_, [](uv_async_t* a) {
    auto* self = static_cast<Server*>(a->data);
    if (self->running_.load() == 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&self->worker_exit_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->sigterm_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->sigint_), nullptr);
    }
  });
  worker_exit_.data = this;
  int n = WorkerCount(config_->workers);
  for (int i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, config_, tls_, limiter_, [this] {
      running_.fetch_sub(1);
      uv_async_send(&worker_exit_);
    }));
  }
}

Server::~Server() {
  workers_.clear();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

absl::Status Server::Bind() {
  for (const ListenerConfig& l : config_->listeners) {
    // The first worker binds the configured address (port 0 picks a free
    // port); the others bind the port it got, so they share it.
    SocketAddress target = l.address;
    for (auto& w : workers_) {
      SocketAddress bound;
      absl::Status st = w->Listen(l, target, &bound);
      if (!st.ok()) return st;
      target = bound;
    }
    spdlog::info("listening name={} address={} protocol={} tls={}", l.name, target.text,
                 ProtocolName(l.protocol), TlsModeName(l.tls));
  }
  return absl::OkStatus();
}

int Server::Run() {
  signal(SIGPIPE, SIG_IGN);
  auto on_signal = [](uv_signal_t* h, int signum) {
    auto* self = static_cast<Server*>(h->data);
    ++self->signals_;
    // A second signal cuts the grace period short.
    auto grace =
        self->signals_ == 1 ? self->config_->timeouts.shutdown_grace : std::chrono::milliseconds(0);
    spdlog::info("signal {}: stopping (grace {} ms)", signum, grace.count());
    for (auto& w : self->workers_) w->RequestShutdown(grace);
  };
  uv_signal_init(&loop_, &sigterm_);
  sigterm_.data = this;
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_init(&loop_, &sigint_);
  sigint_.data = this;
  uv_signal_start(&sigint_, on_signal, SIGINT);

  running_.store(static_cast<int>(workers_.size()));
  for (auto& w : workers_) w->Start();
  spdlog::info("ready: {} worker(s), {} listener(s)", workers_.size(), config_->listeners.size());
  spdlog::set_level(spdlog::level::from_str(config_->log.level));
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->Join();
  spdlog::info("stopped");
  return 0;
}

}  // namespace postern
