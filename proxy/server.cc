#include "proxy/server.h"

#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proxy/admin.h"
#include "proxy/event_log.h"
#include "proxy/metrics.h"
#include "proxy/proxy_metrics.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

// Descriptors a worker needs besides its sessions: listeners, epoll, the
// async and timer handles, the reserve fd, splice pipes, Redis and
// directory connections.
constexpr uint64_t kFilesPerWorker = 256;
// And the process: the admin endpoint and its clients, log, thread pool.
constexpr uint64_t kFilesReserve = 256;

int64_t Stamp(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return -1;
  // Modification time, size and inode (a file replaced by a rename, as
  // Kubernetes updates a mounted Secret, has a new inode).
  const int64_t mtime =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  return mtime ^ (static_cast<int64_t>(st.st_size) << 20) ^ (static_cast<int64_t>(st.st_ino) << 40);
}

// The certificate and key files of a config (a change reloads them).
std::vector<std::string> CertificateFiles(const Config& c) {
  std::vector<std::string> files;
  if (!c.tls_needed) return files;
  if (!c.tls.certificate.empty()) files.push_back(c.tls.certificate);
  if (!c.tls.key.empty()) files.push_back(c.tls.key);
  for (const TlsCertificateConfig& t : c.tls.certificates) {
    files.push_back(t.certificate);
    files.push_back(t.key);
  }
  return files;
}

// What the file watch compares: the stamps of a config's certificate, key
// and ticket-key files.
std::vector<std::pair<std::string, int64_t>> WatchedStamps(const Config& c) {
  std::vector<std::string> files = CertificateFiles(c);
  if (!c.tls.ticket_key_file.empty()) files.push_back(c.tls.ticket_key_file);
  std::vector<std::pair<std::string, int64_t>> stamps;
  for (const std::string& f : files) stamps.emplace_back(f, Stamp(f));
  return stamps;
}

}  // namespace

int WorkerCount(int configured) {
  if (configured > 0) return configured;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

absl::Status CheckSnapshot(const Config& config) {
  auto copy = std::make_shared<const Config>(config);
  return BuildSnapshot(std::move(copy), nullptr).status();
}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(std::string config_path,
                                                       std::shared_ptr<const Config> config) {
  // Stamped before they are read: a change from now on is seen by the watch.
  std::vector<std::pair<std::string, int64_t>> stamps = WatchedStamps(*config);
  absl::StatusOr<std::shared_ptr<const Snapshot>> snapshot = BuildSnapshot(config, nullptr);
  if (!snapshot.ok()) return snapshot.status();
  std::unique_ptr<Server> s(new Server(std::move(config_path), *std::move(snapshot)));
  s->watched_ = std::move(stamps);
  absl::Status st = s->RaiseFileLimit(*config);
  if (!st.ok()) return st;
  st = s->Bind();
  if (!st.ok()) return st;
  st = s->DropPrivileges(*config);
  if (!st.ok()) return st;
  return s;
}

Server::Server(std::string config_path, std::shared_ptr<const Snapshot> snapshot)
    : config_path_(std::move(config_path)), current_(std::move(snapshot)) {
  const Config& config = current_->cfg();
  shared_ = std::make_unique<SharedState>(config);
  const int n = WorkerCount(config.workers);
  metrics_ = std::make_unique<MetricsRegistry>(
      MetricsRegistryOptions{.shards = static_cast<size_t>(n) + 1});
  families_ = std::make_unique<ProxyMetrics>(*metrics_, static_cast<size_t>(n));
  shared_->metrics = families_.get();
  families_->snapshot.Get(families_->main_shard, {}).Set(static_cast<double>(current_->serial));
  // Backends' health, read at the scrape (on the main loop, which owns
  // current_).
  auto backends = metrics_->AddCallback(
      "postern_backend_state",
      "Backends as this instance sees them: up (1/0), drained (1/0), sessions open.",
      MetricsRegistry::Type::kGauge, {"backend", "state"}, [this](CallbackSink& sink) {
        std::shared_ptr<const Snapshot> s = current_;
        s->health->ForEach([&](const BackendHealth::Slot& slot) {
          sink.Emit({slot.name, "up"}, s->health->Up(slot) ? 1 : 0);
          sink.Emit({slot.name, "drained"}, slot.drained.load() ? 1 : 0);
          sink.Emit({slot.name, "sessions"}, static_cast<double>(slot.sessions.load()));
        });
      });
  if (backends.ok()) families_->backends = *std::move(backends);
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &worker_exit_, [](uv_async_t* a) {
    auto* self = static_cast<Server*>(a->data);
    if (self->running_.load() == 0) self->CloseHandles();
  });
  worker_exit_.data = this;
  uv_async_init(&loop_, &main_async_,
                [](uv_async_t* a) { static_cast<Server*>(a->data)->OnMainAsync(); });
  main_async_.data = this;
  uv_timer_init(&loop_, &file_watch_);
  file_watch_.data = this;
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  sigterm_.data = sigint_.data = sighup_.data = this;
  for (int i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, current_, *shared_, [this] {
      running_.fetch_sub(1);
      uv_async_send(&worker_exit_);
    }));
  }
}

Server::~Server() {
  workers_.clear();
  admin_.reset();
  CloseHandles();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

void Server::CloseHandles() {
  if (handles_closed_) return;
  handles_closed_ = true;
  admin_.reset();  // its connections close with the loop's last turns
  for (uv_handle_t* h :
       {reinterpret_cast<uv_handle_t*>(&worker_exit_), reinterpret_cast<uv_handle_t*>(&main_async_),
        reinterpret_cast<uv_handle_t*>(&sigterm_), reinterpret_cast<uv_handle_t*>(&sigint_),
        reinterpret_cast<uv_handle_t*>(&sighup_), reinterpret_cast<uv_handle_t*>(&file_watch_)}) {
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
}

absl::Status Server::Bind() {
  const Config& config = current_->cfg();
  for (const ListenerConfig& l : config.listeners) {
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
  if (config.admin.enabled) {
    absl::StatusOr<std::unique_ptr<Admin>> admin =
        Admin::Create(*this, &loop_, config.admin, *metrics_);
    if (!admin.ok()) return admin.status();
    admin_ = *std::move(admin);
    spdlog::info("listening name=admin address={} protocol=http tls=none", admin_->address());
  }
  return absl::OkStatus();
}

uint32_t Server::SessionCap(const Config& config) const {
  if (config.limits.max_sessions != 0) return config.limits.max_sessions;
  const uint64_t overhead = kFilesPerWorker * workers_.size() + kFilesReserve;
  if (file_limit_ <= overhead + 2) return 1;
  return static_cast<uint32_t>(std::min<uint64_t>((file_limit_ - overhead) / 2, 10'000'000));
}

absl::Status Server::RaiseFileLimit(const Config& config) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const uint64_t overhead = kFilesPerWorker * workers_.size() + kFilesReserve;
  const uint64_t want = config.limits.max_sessions != 0
                            ? 2ULL * config.limits.max_sessions + overhead
                            : static_cast<uint64_t>(rl.rlim_max);
  if (rl.rlim_cur < want) {
    rlimit next = rl;
    next.rlim_cur = want;
    if (next.rlim_max < want) next.rlim_max = want;  // root may raise the hard limit
    if (setrlimit(RLIMIT_NOFILE, &next) != 0) {
      next.rlim_max = rl.rlim_max;
      next.rlim_cur = std::min<rlim_t>(want, rl.rlim_max);
      setrlimit(RLIMIT_NOFILE, &next);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  file_limit_ = rl.rlim_cur;
  if (config.limits.max_sessions != 0 && file_limit_ < want) {
    return absl::FailedPreconditionError(absl::StrCat(
        config.source, ": limits.max_sessions: ", config.limits.max_sessions, " sessions need ",
        want, " open files, and the limit (RLIMIT_NOFILE) is ", file_limit_,
        " and cannot be raised: raise it (ulimit -n, LimitNOFILE=, --ulimit nofile=) or "
        "lower limits.max_sessions"));
  }
  shared_->max_sessions.store(SessionCap(config));
  spdlog::info("open files limit {}: at most {} sessions", file_limit_, SessionCap(config));
  return absl::OkStatus();
}

absl::Status Server::DropPrivileges(const Config& config) {
  if (config.user.empty() && config.group.empty()) return absl::OkStatus();
  const uid_t uid = config.user.empty() ? getuid() : config.uid;
  const gid_t gid = config.gid;
  if (geteuid() != 0) {
    if (geteuid() == uid && getegid() == gid) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat(config.source, ": user/group: switching to ", config.user, ":", config.group,
                     " needs root (Postern runs as uid ", geteuid(), ")"));
  }
  auto fail = [&](const char* what) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.source, ": user/group: ", what, ": ", std::strerror(errno)));
  };
  // Supplementary groups first (root's would stay otherwise), then the
  // group, then the user (after it nothing else may change).
  if (setgroups(1, &gid) != 0) return fail("setgroups");
  if (setgid(gid) != 0) return fail("setgid");
  if (setuid(uid) != 0) return fail("setuid");
  if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.source, ": user: root could be regained after dropping privileges"));
  }
  spdlog::info("running as uid={} gid={}", getuid(), getgid());
  // Files a reload reads again must stay readable.
  std::vector<std::string> files = CertificateFiles(config);
  if (!config.tls.ticket_key_file.empty()) files.push_back(config.tls.ticket_key_file);
  for (const DirectoryConfig& d : config.directories) {
    if (d.type == DirectoryConfig::Type::kPasswdFile) files.push_back(d.path);
  }
  // The loader reads these again on every config reload.
  if (config.admin.enabled) files.push_back(config.admin.token_file);
  for (const BackendConfig& b : config.backends) {
    if (!b.tls_ca_file.empty()) files.push_back(b.tls_ca_file);
    if (!b.master_password_file.empty()) files.push_back(b.master_password_file);
  }
  files.push_back(config_path_);
  for (const std::string& f : files) {
    if (access(f.c_str(), R_OK) != 0) {
      spdlog::warn("{} is not readable by uid {}: a reload will fail", f, getuid());
    }
  }
  return absl::OkStatus();
}

void Server::PostMain(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(main_mu_);
    main_posted_.push_back(std::move(fn));
  }
  uv_async_send(&main_async_);
}

void Server::OnMainAsync() {
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard<std::mutex> lock(main_mu_);
    fns.swap(main_posted_);
  }
  for (auto& f : fns) f();
}

// --- reloads ---

namespace {

struct ReloadWork {
  uv_work_t req;
  Server* server;
  Server::ReloadKind kind;
  std::string path;
  std::shared_ptr<const Snapshot> previous;
  absl::StatusOr<std::shared_ptr<const Snapshot>> result = absl::UnknownError("not run");
  // The watched files' stamps, taken before the snapshot read them.
  std::vector<std::pair<std::string, int64_t>> stamps;
  std::function<void(ReloadWork*)> after;
};

}  // namespace

void Server::Reload(ReloadKind kind, std::function<void(absl::Status)> done) {
  if (stopping_) {
    if (done) done(absl::UnavailableError("stopping"));
    return;
  }
  if (reload_running_) {
    reload_queued_ = true;
    if (kind == ReloadKind::kConfig) queued_kind_ = kind;
    if (done) queued_waiters_.push_back(std::move(done));
    return;
  }
  queued_kind_ = kind;
  if (done) reload_waiters_.push_back(std::move(done));
  StartReload();
}

void Server::StartReload() {
  reload_running_ = true;
  auto* w = new ReloadWork{};
  w->req.data = w;
  w->server = this;
  w->kind = queued_kind_;
  queued_kind_ = ReloadKind::kFiles;
  w->path = config_path_;
  w->previous = current_;
  uv_queue_work(
      &loop_, &w->req,
      [](uv_work_t* req) {
        // Off every loop: reading and parsing files, loading keys.
        auto* w = static_cast<ReloadWork*>(req->data);
        std::shared_ptr<const Config> config = w->previous->config;
        if (w->kind == ReloadKind::kConfig) {
          absl::StatusOr<std::shared_ptr<const Config>> next = LoadConfigFile(w->path);
          if (!next.ok()) {
            w->result = next.status();
            return;
          }
          absl::Status st = CheckReloadable(*config, **next);
          if (!st.ok()) {
            w->result = st;
            return;
          }
          config = *std::move(next);
        }
        w->stamps = WatchedStamps(*config);
        w->result = BuildSnapshot(std::move(config), w->previous.get());
      },
      [](uv_work_t* req, int) {
        std::unique_ptr<ReloadWork> w(static_cast<ReloadWork*>(req->data));
        w->server->FinishReload(std::move(w->result), w->kind, std::move(w->stamps));
      });
}

void Server::FinishReload(absl::StatusOr<std::shared_ptr<const Snapshot>> next, ReloadKind kind,
                          std::vector<std::pair<std::string, int64_t>> stamps) {
  absl::Status status = next.status();
  const char* what = kind == ReloadKind::kConfig ? "config" : "files";
  if (status.ok() && stopping_) status = absl::UnavailableError("stopping");
  if (status.ok()) {
    const Config& c = (*next)->cfg();
    if (c.limits.max_sessions != 0 &&
        2ULL * c.limits.max_sessions + kFilesPerWorker * workers_.size() + kFilesReserve >
            file_limit_) {
      status = absl::FailedPreconditionError(
          absl::StrCat(c.source, ": limits.max_sessions: ", c.limits.max_sessions,
                       " sessions need more open files than the limit (", file_limit_,
                       ") set at start: restart Postern"));
    }
  }
  families_->reloads.Get(families_->main_shard, {status.ok() ? "ok" : "refused"}).Inc();
  if (status.ok()) {
    current_ = *std::move(next);
    families_->snapshot.Get(families_->main_shard, {}).Set(static_cast<double>(current_->serial));
    const Config& c = current_->cfg();
    shared_->limiter.set_max_per_ip(c.limits.max_connections_per_ip);
    shared_->max_sessions.store(SessionCap(c));
    if (c.log.json != LogIsJson()) InstallLogger(c.log.json);
    spdlog::set_level(spdlog::level::from_str(c.log.level));
    for (auto& w : workers_) {
      Worker* raw = w.get();
      raw->Post([raw, s = current_] { raw->Adopt(s); });
    }
    // The files as they were before this snapshot read them: a change
    // made since (even while it was built) is seen by the next watch.
    watched_ = std::move(stamps);
    LogEvent("reload")
        .Str("result", "ok")
        .Str("kind", what)
        .Num("snapshot", current_->serial)
        .Str("source", c.source)
        .Emit();
  } else {
    LogEvent("reload", spdlog::level::err)
        .Str("result", "refused")
        .Str("kind", what)
        .Num("snapshot", current_->serial)
        .Quoted("detail", status.message())
        .Emit();
  }
  std::vector<std::function<void(absl::Status)>> waiters;
  waiters.swap(reload_waiters_);
  reload_running_ = false;
  if (reload_queued_ && !stopping_) {
    reload_queued_ = false;
    reload_waiters_.swap(queued_waiters_);
    StartReload();
  }
  for (auto& done : waiters) done(status);
}

void Server::WatchFiles() {
  if (stopping_) return;
  const Config& c = current_->cfg();
  // passwd-files: re-read in place (their sources keep versions).
  for (auto& [name, source] : current_->passwd_files) {
    if (!source->Changed()) continue;
    auto* w = new uv_work_t{};
    auto* keep = new std::shared_ptr<PasswdFileSource>(source);
    w->data = keep;
    uv_queue_work(
        &loop_, w,
        [](uv_work_t* req) {
          auto& source = *static_cast<std::shared_ptr<PasswdFileSource>*>(req->data);
          absl::Status st = source->Reload();
          if (st.ok()) {
            LogEvent("reload")
                .Str("result", "ok")
                .Str("kind", "passwd-file")
                .Str("directory", source->name())
                .Str("path", source->path())
                .Num("users", static_cast<uint64_t>(source->Current()->size()))
                .Emit();
          } else {
            LogEvent("reload", spdlog::level::err)
                .Str("result", "refused")
                .Str("kind", "passwd-file")
                .Str("directory", source->name())
                .Quoted("detail", st.message())
                .Emit();
          }
        },
        [](uv_work_t* req, int) {
          delete static_cast<std::shared_ptr<PasswdFileSource>*>(req->data);
          delete req;
        });
  }
  // Certificates and ticket keys: compared with the stamps of the last
  // look; a change reloads the files (a new snapshot, new contexts).
  std::vector<std::pair<std::string, int64_t>> now = WatchedStamps(c);
  const bool changed = now != watched_;
  // A change seen while a reload runs waits for the next look (that
  // reload's stamps replace ours when it succeeds).
  if (changed && reload_running_) return;
  watched_ = std::move(now);
  if (changed) {
    spdlog::info("certificate or ticket key files changed: reloading them");
    Reload(ReloadKind::kFiles, nullptr);
  }
}

// --- admin operations ---

void Server::SetDraining(bool draining) {
  if (draining_ == draining) return;
  draining_ = draining;
  LogEvent("node_drain").Flag("draining", draining).Emit();
  CountAdminAction(draining ? "node_drain" : "node_undrain");
}

void Server::Stop() { OnSignal(SIGTERM); }

// Runs `on_worker` on every worker's loop and `done` on the main loop with
// their answers (a worker that has already finished answers T{}).
template <typename T>
void Server::Gather(std::function<T(Worker&)> on_worker, std::function<void(std::vector<T>)> done) {
  struct State {
    size_t left;
    std::vector<T> parts;
    std::function<void(std::vector<T>)> done;
  };
  auto g = std::make_shared<State>();
  g->left = workers_.size();
  g->done = std::move(done);
  auto add = [g](T part) {
    g->parts.push_back(std::move(part));
    if (--g->left == 0) g->done(std::move(g->parts));
  };
  for (auto& w : workers_) {
    Worker* raw = w.get();
    const bool posted = raw->Post([this, raw, on_worker, add] {
      T part = on_worker(*raw);
      PostMain([add, part = std::move(part)]() mutable { add(std::move(part)); });
    });
    if (!posted) add(T{});
  }
}

void Server::ListSessions(const SessionFilter& filter,
                          std::function<void(std::vector<SessionInfo>)> done) {
  Gather<std::vector<SessionInfo>>(
      [filter](Worker& w) { return w.ListSessions(filter); },
      [done = std::move(done)](std::vector<std::vector<SessionInfo>> parts) {
        std::vector<SessionInfo> all;
        for (auto& p : parts) {
          for (SessionInfo& i : p) all.push_back(std::move(i));
        }
        done(std::move(all));
      });
}

namespace {

size_t Sum(const std::vector<size_t>& parts) {
  size_t n = 0;
  for (size_t p : parts) n += p;
  return n;
}

}  // namespace

void Server::Kick(const std::string& user, std::function<void(size_t)> done) {
  LogEvent("kick").Safe("user", user).Emit();
  CountAdminAction("kick");
  Gather<size_t>([user](Worker& w) { return w.Kick(user); },
                 [done = std::move(done)](std::vector<size_t> parts) { done(Sum(parts)); });
}

absl::Status Server::DrainBackend(const std::string& name, bool drain,
                                  std::chrono::milliseconds spread,
                                  std::function<void(size_t)> done) {
  BackendHealth::Slot* slot = current_->health->Find(name);
  if (slot == nullptr) return absl::NotFoundError(absl::StrCat("no backend named ", name));
  slot->drained.store(drain);
  CountAdminAction(drain ? "drain" : "undrain");
  LogEvent("backend_drain")
      .Str("backend", name)
      .Flag("drained", drain)
      .Num("spread_ms", static_cast<int64_t>(spread.count()))
      .Emit();
  if (!drain) {
    done(0);
    return absl::OkStatus();
  }
  Gather<size_t>([name, spread](Worker& w) { return w.DrainBackend(name, spread); },
                 [done = std::move(done)](std::vector<size_t> parts) { done(Sum(parts)); });
  return absl::OkStatus();
}

void Server::CountAdminAction(const char* action) {
  families_->admin_actions.Get(families_->main_shard, {action}).Inc();
}

size_t Server::ClearCache(const std::string& user) {
  CountAdminAction("cache_clear");
  if (user.empty()) return current_->cache->Clear();
  return current_->cache->ClearUser(user);
}

// --- running ---

void Server::OnSignal(int signum) {
  ++signals_;
  if (signals_ == 1) stopping_ = true;
  const TimeoutsConfig& t = current_->cfg().timeouts;
  // A second signal cuts the grace period short.
  auto grace = signals_ == 1 ? t.shutdown_grace : std::chrono::milliseconds(0);
  auto deadline = signals_ == 1 ? t.shutdown_deadline : std::chrono::milliseconds(0);
  LogEvent("shutdown")
      .Num("signal", signum)
      .Num("grace_ms", static_cast<int64_t>(grace.count()))
      .Num("deadline_ms", static_cast<int64_t>(deadline.count()))
      .Emit();
  uv_timer_stop(&file_watch_);
  for (auto& w : workers_) w->RequestShutdown(grace, deadline);
}

int Server::Run() {
  signal(SIGPIPE, SIG_IGN);
  uv_signal_start(
      &sigterm_,
      [](uv_signal_t* h, int signum) { static_cast<Server*>(h->data)->OnSignal(signum); }, SIGTERM);
  uv_signal_start(
      &sigint_, [](uv_signal_t* h, int signum) { static_cast<Server*>(h->data)->OnSignal(signum); },
      SIGINT);
  uv_signal_start(
      &sighup_,
      [](uv_signal_t* h, int) {
        spdlog::info("signal SIGHUP: reloading the config");
        static_cast<Server*>(h->data)->Reload(ReloadKind::kConfig, nullptr);
      },
      SIGHUP);
  uv_timer_start(
      &file_watch_, [](uv_timer_t* t) { static_cast<Server*>(t->data)->WatchFiles(); }, 0, 1000);

  running_.store(static_cast<int>(workers_.size()));
  for (auto& w : workers_) w->Start();
  ready_ = true;
  spdlog::info("ready: {} worker(s), {} listener(s)", workers_.size(),
               current_->cfg().listeners.size());
  spdlog::set_level(spdlog::level::from_str(current_->cfg().log.level));
  uv_run(&loop_, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->Join();
  spdlog::info("stopped");
  return 0;
}

}  // namespace postern
