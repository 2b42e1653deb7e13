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

absl::StatusOr<std::unique_ptr<SharedState>> LoadSharedState(const Config& config) {
  auto shared = std::make_unique<SharedState>(config);
  for (const BackendConfig& b : config.backends) {
    if (b.tls == BackendTls::kNone) continue;
    TlsClientOptions o;
    o.verify_peer = b.tls_verify;
    o.ca_file = b.tls_ca_file;
    auto ctx = TlsContext::CreateClient(o);
    if (!ctx.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.source, ": backends: ", b.name, ": ", ctx.status().message()));
    }
    if (!b.tls_verify) {
      spdlog::warn("backend {}: TLS without certificate verification (tls_verify: false)", b.name);
    }
    shared->backend_tls[b.name] = *std::move(ctx);
  }
  for (const DirectoryConfig& d : config.directories) {
    if (d.type != DirectoryConfig::Type::kPasswdFile) continue;
    PasswdFileOptions o;
    o.case_insensitive = d.case_insensitive;
    auto source = PasswdFileSource::Open(d.name, d.path, o);
    if (!source.ok()) return source.status();
    shared->passwd_files[d.name] = *std::move(source);
  }
  return shared;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(std::shared_ptr<const Config> config) {
  absl::StatusOr<std::shared_ptr<const TlsContext>> tls = LoadTlsContext(*config);
  if (!tls.ok()) return tls.status();
  absl::StatusOr<std::unique_ptr<SharedState>> shared = LoadSharedState(*config);
  if (!shared.ok()) return shared.status();
  std::unique_ptr<Server> s(new Server(std::move(config), *std::move(tls), *std::move(shared)));
  absl::Status st = s->Bind();
  if (!st.ok()) return st;
  return s;
}

Server::Server(std::shared_ptr<const Config> config, std::shared_ptr<const TlsContext> tls,
               std::unique_ptr<SharedState> shared)
    : config_(std::move(config)), tls_(std::move(tls)), shared_(std::move(shared)) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &worker_exit_, [](uv_async_t* a) {
    auto* self = static_cast<Server*>(a->data);
    if (self->running_.load() == 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&self->worker_exit_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->sigterm_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->sigint_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->sighup_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&self->file_watch_), nullptr);
    }
  });
  worker_exit_.data = this;
  int n = WorkerCount(config_->workers);
  for (int i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, config_, tls_, *shared_, [this] {
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

namespace {

// One passwd-file re-read on the thread pool (file reads and parsing stay
// off every loop), reported back on the main loop.
struct ReloadWork {
  uv_work_t req;
  std::shared_ptr<PasswdFileSource> source;
  absl::Status status;
};

}  // namespace

void Server::ReloadFiles(bool all) {
  for (auto& [name, source] : shared_->passwd_files) {
    if (!all && !source->Changed()) continue;
    auto* w = new ReloadWork{};
    w->req.data = w;
    w->source = source;
    uv_queue_work(
        &loop_, &w->req,
        [](uv_work_t* req) {
          auto* w = static_cast<ReloadWork*>(req->data);
          w->status = w->source->Reload();
          // Logged here, as soon as the new file is in use.
          if (w->status.ok()) {
            spdlog::info("passwd-file reloaded: directory={} path={} users={}", w->source->name(),
                         w->source->path(), w->source->Current()->size());
          } else {
            spdlog::error("passwd-file not reloaded, the previous one stays: directory={} {}",
                          w->source->name(), std::string(w->status.message()));
          }
        },
        [](uv_work_t* req, int) { delete static_cast<ReloadWork*>(req->data); });
  }
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

  uv_signal_init(&loop_, &sighup_);
  sighup_.data = this;
  uv_signal_start(
      &sighup_,
      [](uv_signal_t* h, int) {
        spdlog::info("signal SIGHUP: re-reading passwd-files");
        static_cast<Server*>(h->data)->ReloadFiles(/*all=*/true);
      },
      SIGHUP);
  uv_timer_init(&loop_, &file_watch_);
  file_watch_.data = this;
  if (!shared_->passwd_files.empty()) {
    uv_timer_start(
        &file_watch_, [](uv_timer_t* t) { static_cast<Server*>(t->data)->ReloadFiles(false); },
        1000, 1000);
  }

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
