#include "proxy/worker.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <utility>

#include <openssl/rand.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "proxy/connection.h"
#include "proxy/health_checker.h"
#include "proxy/log_text.h"
#include "proxy/proxy_acceptor.h"
#include "proxy/session.h"
#include "routing/auth_http_directory.h"
#include "routing/redis_router.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

// During shutdown a closing connection waits at most this long for its peer.
constexpr uint32_t kShutdownLingerMs = 500;
// PROXY headers being read at once per worker (each holds an fd for at most
// ProxyAcceptor::kHeaderTimeout).
constexpr size_t kMaxPendingHeaders = 4096;

}  // namespace

WorkerView::WorkerView(Worker& worker, std::shared_ptr<const Snapshot> snapshot,
                       ProxyMetrics* metrics)
    : snapshot_(std::move(snapshot)) {
  const Config& config = *snapshot_->config;
  if (metrics != nullptr) {
    metrics_ = ViewMetrics(*metrics, static_cast<size_t>(worker.id()), config);
  }
  uv_loop_t* loop = worker.loop();
  Poster post = [&worker](std::function<void()> fn) { worker.Defer(std::move(fn)); };
  RedisOptions redis_options;
  if (config.redis.enabled) {
    redis_options.address = config.redis.address.text;
    redis_options.command_timeout = config.redis.timeout;
    auto r = RedisClient::Create(loop, redis_options);
    if (r.ok()) {
      redis_ = *std::move(r);
    } else {
      spdlog::error("redis: {}", std::string(r.status().message()));
    }
  }
  if (config.abuse.enabled) {
    abuse_ = std::make_unique<AbuseGuard>(snapshot_->abuse, redis_.get(), post);
    abuse_->set_on_fallback([c = metrics_.redis_fallback_abuse] { c.Inc(); });
  }
  std::unique_ptr<Router> base;
  if (config.ring != nullptr) {
    base = std::make_unique<RingRouter>(config.ring, config.ring_domain_only, post);
  } else {
    base = std::make_unique<StaticRouter>(config.user_backends, config.default_backend, post);
  }
  if (config.redis_overrides && redis_ != nullptr) {
    RedisOverrideRouter::Options o;
    o.prefix = config.redis.prefix;
    o.cache_ttl = config.override_cache_ttl;
    o.timeout = config.redis.timeout;
    const Config* cfg = &config;
    auto resolve = [cfg](absl::string_view value) -> std::optional<RouteResult> {
      const bool want_backend = absl::ConsumePrefix(&value, "backend:");
      const bool want_shard = !want_backend && absl::ConsumePrefix(&value, "shard:");
      if (!want_backend) {
        for (size_t i = 0; i < cfg->shards.size(); ++i) {
          if (cfg->shards[i].name == value) return RouteResult{RouteResult::Kind::kShard, i};
        }
      }
      if (!want_shard) {
        for (size_t i = 0; i < cfg->backends.size(); ++i) {
          if (cfg->backends[i].name == value) return RouteResult{RouteResult::Kind::kBackend, i};
        }
      }
      return std::nullopt;
    };
    auto overrides = std::make_unique<RedisOverrideRouter>(
        loop, redis_.get(), redis_options, o, std::move(base), std::move(resolve), post);
    overrides->set_on_fallback([c = metrics_.redis_fallback_routing] { c.Inc(); });
    router_ = std::move(overrides);
  } else {
    router_ = std::move(base);
  }
  directories_["passthrough"] = std::make_unique<PassthroughDirectory>(post);
  for (const DirectoryConfig& d : config.directories) {
    switch (d.type) {
      case DirectoryConfig::Type::kPassthrough:
        directories_[d.name] = std::make_unique<PassthroughDirectory>(post);
        break;
      case DirectoryConfig::Type::kPasswdFile:
        directories_[d.name] = std::make_unique<PasswdFileDirectory>(
            snapshot_->passwd_files.at(d.name), loop, post, d.timeout);
        break;
      case DirectoryConfig::Type::kAuthHttp: {
        AuthHttpOptions o;
        o.name = d.name;
        for (const SocketAddress& a : d.servers) o.servers.push_back(a.text);
        o.uri = d.uri;
        o.timeout = d.timeout;
        o.max_connections = d.max_connections;
        o.max_queue = d.max_queue;
        o.headers = d.headers;
        auto dir = AuthHttpDirectory::Create(loop, std::move(o));
        if (dir.ok()) {
          directories_[d.name] = *std::move(dir);
        } else {
          // The config loader checked every field: not expected.
          spdlog::error("directory {}: {}", d.name, std::string(dir.status().message()));
        }
        break;
      }
    }
  }
}

WorkerView::~WorkerView() {
  // Users of the Redis client first.
  router_.reset();
  abuse_.reset();
  directories_.clear();
  redis_.reset();
}

Histogram WorkerView::directory_histogram(const ListenerConfig& listener) {
  const Config& config = *snapshot_->config;
  const std::string& name = !listener.directory.empty() ? listener.directory
                            : !config.directory.empty() ? config.directory
                                                        : std::string("passthrough");
  auto it = metrics_.directory_seconds.find(name);
  return it == metrics_.directory_seconds.end() ? Histogram() : it->second;
}

Directory& WorkerView::directory(const ListenerConfig& listener) {
  const Config& config = *snapshot_->config;
  const std::string& name = !listener.directory.empty() ? listener.directory
                            : !config.directory.empty() ? config.directory
                                                        : std::string("passthrough");
  auto it = directories_.find(name);
  return it != directories_.end() ? *it->second : *directories_.at("passthrough");
}

Worker::Worker(int id, std::shared_ptr<const Snapshot> snapshot, SharedState& shared,
               std::function<void()> on_exit)
    : id_(id), on_exit_(std::move(on_exit)), shared_(shared), limiter_(shared.limiter) {
  if (shared.metrics != nullptr) {
    metrics_ = WorkerMetrics(*shared.metrics, static_cast<size_t>(id), *snapshot->config);
  }
  uv_loop_init(&loop_);
  poller_ = std::make_unique<Poller>(&loop_);
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  uv_idle_init(&loop_, idle_.Allocate());
  idle_.get()->data = this;
  uv_async_init(&loop_, async_.Allocate(), [](uv_async_t* a) {
    if (a->data != nullptr) static_cast<Worker*>(a->data)->OnAsync();
  });
  async_.get()->data = this;
  grace_timer_.Init(&loop_);
  drain_timer_.Init(&loop_);
  sweep_timer_.Init(&loop_);
  accept_pause_timer_.Init(&loop_);
  sweep_timer_.Start(std::chrono::seconds(1), [this] { Sweep(); });
  Adopt(std::move(snapshot));
}

void Worker::Adopt(std::shared_ptr<const Snapshot> snapshot) {
  if (finished_) return;
  const Config& config = *snapshot->config;
  const bool lowat_changed = view_ != nullptr && view_->config().limits.max_pending_replies !=
                                                     config.limits.max_pending_replies;
  // The old view stays while pre-login sessions hold it.
  view_ = std::make_shared<WorkerView>(*this, std::move(snapshot), shared_.metrics);
  if (lowat_changed) {
    for (auto& l : listeners_) {
      Connection::SetNotSentLowat(l->fd, static_cast<uint32_t>(config.limits.max_pending_replies));
    }
  }
  // Active checks pick among a shard's replicas: only with shards.
  const bool checks =
      id_ == 0 && config.ring != nullptr && config.health.check_interval.count() > 0;
  if (checker_ != nullptr) {
    HealthChecker* raw = checker_.release();
    Defer([raw] { delete raw; });  // perhaps called from inside one of its probes
  }
  if (checks && !shutting_down_) {
    checker_ = std::make_unique<HealthChecker>(*this, view_->snapshot_ptr());
    if (thread_.joinable()) checker_->Start();
  }
}

void Worker::Sweep() {
  uint64_t now = uv_now(&loop_);
  for (Session* s : SessionList()) {
    s->CountBytes();  // relayed bytes reach /metrics within a second
    s->CheckTimeout(now);
  }
  bool expired = false;
  for (auto& a : acceptors_) expired = a->Expired(now) || expired;
  if (expired) ReapAcceptors();
  // Give back half of the cached slabs above a small floor each second.
  pool_.Trim(std::max<size_t>(8, pool_.free_count() / 2));
  bulk_pool_.Trim(bulk_pool_.free_count() / 2);
  metrics_.pool_small.Set(
      static_cast<double>((pool_.in_use() + pool_.free_count()) * pool_.slab_size()));
  metrics_.pool_bulk.Set(static_cast<double>((bulk_pool_.in_use() + bulk_pool_.free_count()) *
                                             bulk_pool_.slab_size()));
  if (!finished_) sweep_timer_.Restart(std::chrono::seconds(1));
}

Worker::~Worker() {
  Join();
  // Sessions, listeners and our own handles are gone; let their close
  // callbacks run, then the loop can be closed and the pool freed.
  sessions_.clear();
  graveyard_.clear();
  acceptors_.clear();
  checker_.reset();
  view_.reset();
  listeners_.clear();
  idle_.Reset();
  async_.Reset();
  grace_timer_.Reset();
  drain_timer_.Reset();
  sweep_timer_.Reset();
  accept_pause_timer_.Reset();
  uv_run(&loop_, UV_RUN_DEFAULT);  // lingering connections still use the poller
  poller_.reset();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
  if (reserve_fd_ >= 0) close(reserve_fd_);
}

Worker::Listener::~Listener() {
  if (fd < 0) return;
  if (!worker->accept_paused_) worker->poller().Remove(fd, this);
  close(fd);
}

absl::Status Worker::Listen(const ListenerConfig& lc, const SocketAddress& address,
                            SocketAddress* bound) {
  size_t index = 0;
  while (index < config().listeners.size() && &config().listeners[index] != &lc) ++index;
  auto l = std::make_unique<Listener>(this, index, lc.name);
  auto fail = [&](const char* what) {
    return absl::UnavailableError(absl::StrCat("listeners: ", lc.name, ": cannot listen on ",
                                               address.text, ": ", what, ": ",
                                               std::strerror(errno)));
  };
  l->fd = socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (l->fd < 0) return fail("socket");
  int one = 1;
  setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // One listening socket per worker on the same address (SO_REUSEPORT).
  if (setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return fail("SO_REUSEPORT");
  }
  if (bind(l->fd, reinterpret_cast<const sockaddr*>(&address.storage), address.length) != 0) {
    return fail("bind");
  }
  // Accepted sockets inherit the TCP options from the listening socket on
  // Linux (a test in tests/proxy checks it): three syscalls fewer per
  // connection.
  if (!Connection::SetTcpOptions(l->fd)) return fail("setsockopt");
  // Inherited too: before login the kernel holds at most about this much
  // unsent for a client (Session::ProcessInput; the relay lifts it).
  if (!Connection::SetNotSentLowat(l->fd,
                                   static_cast<uint32_t>(config().limits.max_pending_replies))) {
    return fail("TCP_NOTSENT_LOWAT");
  }
  if (listen(l->fd, lc.backlog) != 0) return fail("listen");
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  getsockname(l->fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (int r = poller_->Add(l->fd, EPOLLIN, l.get()); r != 0) {
    errno = -r;
    return fail("epoll");
  }
  bound->storage = ss;
  bound->length = len;
  bound->text = Connection::FormatAddress(reinterpret_cast<sockaddr*>(&ss), true);
  listeners_.push_back(std::move(l));
  return absl::OkStatus();
}

void Worker::Start() {
  if (checker_ != nullptr) checker_->Start();
  thread_ = std::thread([this] { Run(); });
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::Run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (on_exit_) on_exit_();
}

void Worker::RequestShutdown(std::chrono::milliseconds grace, std::chrono::milliseconds deadline) {
  Post([this, grace, deadline] { BeginShutdown(grace, deadline); });
}

bool Worker::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_posts_) return false;
    posted_.push_back(std::move(fn));
    // One wake-up per batch (uv_async_send coalesces anyway).
    if (posted_.size() > 1) return true;
  }
  uv_async_send(async_.get());
  return true;
}

void Worker::OnAsync() {
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fns.swap(posted_);
  }
  for (auto& f : fns) f();
}

void Worker::BeginShutdown(std::chrono::milliseconds grace, std::chrono::milliseconds deadline) {
  // Closed connections whose peers still read what they are owed may take
  // until the deadline, no longer (Connection::OnLingerTimeout).
  Connection::StopLingeringAt(uv_now(&loop_) + static_cast<uint64_t>(deadline.count()));
  if (!shutting_down_) {
    shutting_down_ = true;
    listeners_.clear();  // stop accepting
    acceptors_.clear();
    // Connections already closing do not hold the exit up for long either
    // (Session::End gives those closed from now on the same short linger).
    Connection::ShortenLingers(kShutdownLingerMs);
  }
  if (sessions_.empty()) {
    MaybeFinish();
    return;
  }
  // A second signal: sooner, never later.
  grace = std::min(grace, deadline);
  grace_timer_.Start(grace, [this] {
    // Each session is told at its next safe point (between two responses,
    // see Relay::Shutdown); those that find none in time are cut.
    for (Session* s : SessionList()) s->Shutdown(Session::EndKind::kServerShutdown);
  });
  drain_timer_.Start(std::max(deadline, std::chrono::milliseconds(1)), [this] {
    for (Session* s : SessionList()) s->End("server shutdown: no safe point before the deadline");
  });
}

std::vector<SessionInfo> Worker::ListSessions(const SessionFilter& filter) const {
  std::vector<SessionInfo> out;
  const uint64_t now = uv_now(const_cast<uv_loop_t*>(&loop_));
  for (const auto& s : sessions_) {
    if (!s->Matches(filter)) continue;
    out.push_back(s->Info(now));
    out.back().worker = id_;
  }
  return out;
}

size_t Worker::Kick(const std::string& user) {
  SessionFilter f;
  f.user = user;
  size_t n = 0;
  for (Session* s : SessionList()) {
    if (!s->Matches(f)) continue;
    ++n;
    s->Shutdown(Session::EndKind::kKicked);
  }
  return n;
}

size_t Worker::DrainBackend(const std::string& backend, std::chrono::milliseconds spread) {
  SessionFilter f;
  f.backend = backend;
  const uint64_t now = uv_now(&loop_);
  size_t n = 0;
  for (Session* s : SessionList()) {
    if (!s->Matches(f)) continue;
    ++n;
    uint64_t r = 0;
    RAND_bytes(reinterpret_cast<uint8_t*>(&r), sizeof(r));
    const uint64_t at = spread.count() > 0 ? now + r % static_cast<uint64_t>(spread.count()) : now;
    s->DrainAt(at);
  }
  // Sessions due now go at once; the others on the sweep (once a second).
  for (Session* s : SessionList()) s->CheckTimeout(now);
  return n;
}

std::vector<Session*> Worker::SessionList() const {
  // A copy: what the caller does to a session may Remove() it.
  std::vector<Session*> all;
  all.reserve(sessions_.size());
  for (const auto& s : sessions_) all.push_back(s.get());
  return all;
}

void Worker::MaybeFinish() {
  if (!shutting_down_ || finished_ || !sessions_.empty()) return;
  finished_ = true;
  grace_timer_.Stop();
  drain_timer_.Stop();
  // Our handles close; the loop ends when the last lingering connection is
  // closed too.
  Defer([this] {
    // Their handles would keep the loop alive: they go once no session can
    // ask them anything.
    checker_.reset();
    view_.reset();
    // What was posted before the door closed still runs (an admin request
    // waits for every worker's answer).
    std::vector<std::function<void()>> last;
    {
      std::lock_guard<std::mutex> lock(mu_);
      accepting_posts_ = false;
      last.swap(posted_);
    }
    for (auto& f : last) f();
    idle_.Reset();
    async_.Reset();
    grace_timer_.Reset();
    drain_timer_.Reset();
    sweep_timer_.Reset();
  });
}

void Worker::Accept(Listener& l) {
  // A bounded batch: the other sockets of this poller turn get theirs.
  for (int i = 0; i < 64 && !shutting_down_; ++i) {
    sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    int fd =
        accept4(l.fd, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && ShedOne(l)) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        // Out of fds with no reserve (another worker took the slot), or the
        // kernel is short of memory: the listener stays readable, so stop
        // watching it for a moment instead of spinning.
        spdlog::warn("listener {}: accept: {}", l.name, std::strerror(errno));
        PauseAccepting();
      }
      return;
    }
    const PeerAddress socket_peer = PeerAddress::From(reinterpret_cast<sockaddr*>(&peer));
    ConnectionPtr conn = Connection::Create(*poller_, pool_, nullptr);
    conn->Adopt(fd);  // TCP options: inherited from the listener (Listen)
    const ListenerConfig& lc = config().listeners[l.index];
    if (!lc.proxy_protocol) {
      Admit(l.index, std::move(conn), socket_peer, socket_peer);
      continue;
    }
    // Behind a load balancer: the PROXY header first, and only from a
    // trusted peer (never guessed, never from anyone: DIGEST d.5).
    if (!Trusted(lc, socket_peer) || acceptors_.size() >= kMaxPendingHeaders) {
      if (Trusted(lc, socket_peer)) {
        NoteRefusal("too many PROXY headers pending", Refusal::kProxyPending);
      } else {
        NoteRefusal("a PROXY listener's peer is not trusted", Refusal::kProxyUntrusted);
      }
      conn->Close(/*abort=*/true);
      conn.release();
      continue;
    }
    auto a = std::make_unique<ProxyAcceptor>(
        std::move(conn), socket_peer,
        uv_now(&loop_) + static_cast<uint64_t>(ProxyAcceptor::kHeaderTimeout.count()),
        [this, index = l.index, socket_peer](ConnectionPtr c, const PeerAddress& client,
                                             const ProxyHeader*, absl::string_view error) {
          if (c == nullptr) {
            spdlog::info("PROXY header refused: listener={} peer={} detail=\"{}\"",
                         config().listeners[index].name, socket_peer.Text(), LogQuoted(error));
          } else if (!shutting_down_) {
            Admit(index, std::move(c), client, socket_peer);
          }
          Defer([this] { ReapAcceptors(); });
        });
    ProxyAcceptor* raw = a.get();
    acceptors_.push_back(std::move(a));
    raw->Start();
  }
}

bool Worker::Trusted(const ListenerConfig& lc, const PeerAddress& peer) {
  for (const Cidr& c : lc.trusted_networks) {
    if (c.Contains(peer.ip)) return true;
  }
  return false;
}

void Worker::ReapAcceptors() {
  acceptors_.erase(std::remove_if(acceptors_.begin(), acceptors_.end(),
                                  [](const auto& a) { return a->finished(); }),
                   acceptors_.end());
}

// Over-cap connections still get their one line; over TLS that costs a
// handshake, so at most this many refusals run at once per worker (past it
// a connection is closed without a word).
constexpr size_t kMaxRefusing = 64;

void Worker::Admit(size_t listener, ConnectionPtr conn, const PeerAddress& peer,
                   const PeerAddress& socket_peer) {
  // The session's snapshot: the current one, whatever was current when the
  // connection was accepted (a PROXY header may take a while).
  std::shared_ptr<WorkerView> view = view_;
  const ListenerConfig& lc = view->config().listeners[listener];
  const LimitsConfig& limits = view->config().limits;
  const bool imap = lc.protocol == Protocol::kImap;
  const char* refusal = nullptr;
  Refusal reason = Refusal::kIpCap;
  Notice notice = Notice::kBusy;
  const uint32_t cap = shared_.max_sessions.load(std::memory_order_relaxed);
  if (!limiter_.Acquire(KeyOf(peer))) {
    refusal = "too many connections from this address";
    notice = Notice::kIpCap;
  } else if (limits.max_prelogin_sessions != 0 && prelogin_ >= limits.max_prelogin_sessions) {
    limiter_.Release(KeyOf(peer));
    refusal = "too many sessions before login";
    reason = Refusal::kPreloginCap;
  } else if (cap != 0 && shared_.sessions.load(std::memory_order_relaxed) >= cap) {
    limiter_.Release(KeyOf(peer));
    refusal = "too many sessions (limits.max_sessions)";
    reason = Refusal::kSessionCap;
  }
  if (refusal != nullptr) {
    NoteRefusal(refusal, reason);
    if (refusing_ >= kMaxRefusing) {
      conn->Close(/*abort=*/true);
      conn.release();
      return;
    }
  }
  auto s = std::make_unique<Session>(*this, std::move(view), lc, std::move(conn), peer,
                                     Trusted(lc, socket_peer));
  Session* raw = s.get();
  sessions_.insert(std::move(s));
  shared_.sessions.fetch_add(1, std::memory_order_relaxed);
  if (refusal != nullptr) {
    ++refusing_;
    raw->Refuse(NoticeText(imap, notice), refusal);
  } else {
    raw->Start();
  }
}

void Worker::NoteRefusal(const char* what, Refusal reason) {
  metrics_.refused[static_cast<size_t>(reason)].Inc();
  ++refused_;
  uint64_t now = uv_now(&loop_);
  if (last_refusal_log_ms_ == 0 || now - last_refusal_log_ms_ >= 1000) {
    // At most one line a second, however many are refused.
    spdlog::warn("refused {} connection(s) in the last second, the latest: {}", refused_, what);
    refused_ = 0;
    last_refusal_log_ms_ = now;
  }
}

void Worker::PauseAccepting() {
  if (accept_paused_) return;
  accept_paused_ = true;
  for (auto& l : listeners_) poller_->Remove(l->fd, l.get());
  accept_pause_timer_.Start(std::chrono::milliseconds(100), [this] {
    accept_paused_ = false;
    for (auto& l : listeners_) poller_->Add(l->fd, EPOLLIN, l.get());
  });
}

bool Worker::ShedOne(Listener& l) {
  metrics_.refused[static_cast<size_t>(Refusal::kOutOfFiles)].Inc();
  ++shed_;
  uint64_t now = uv_now(&loop_);
  if (now - last_shed_log_ms_ >= 1000 || last_shed_log_ms_ == 0) {  // at most one line a second
    spdlog::warn("listener {}: out of file descriptors, dropped {} connection(s)", l.name, shed_);
    shed_ = 0;
    last_shed_log_ms_ = now;
  }
  if (reserve_fd_ < 0) reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) return false;
  close(reserve_fd_);
  int fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) close(fd);
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return fd >= 0;
}

void Worker::Defer(std::function<void()> fn) {
  deferred_.push_back(std::move(fn));
  if (deferred_.size() == 1 && idle_) {
    uv_idle_start(idle_.get(), [](uv_idle_t* h) {
      auto* w = static_cast<Worker*>(h->data);
      if (w == nullptr) return;
      std::vector<std::function<void()>> fns;
      fns.swap(w->deferred_);
      // Sessions that ended before this pass: every callback queued before
      // they ended is in `fns` (or ran in an earlier pass), so they go once
      // `fns` has run. Sessions ending during this pass wait for the next:
      // what `fns` queues for them runs first.
      std::vector<std::unique_ptr<Session>> dead;
      dead.swap(w->graveyard_);
      for (auto& f : fns) f();
      dead.clear();
      if (w->deferred_.empty() && w->graveyard_.empty() && w->idle_) {
        uv_idle_stop(w->idle_.get());
      }
    });
  }
}

void Worker::Remove(Session* s, bool refused) {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return;
  if (refused) {
    --refusing_;
  } else {
    limiter_.Release(s->limit_key());
  }
  graveyard_.push_back(std::move(sessions_.extract(it).value()));
  shared_.sessions.fetch_sub(1, std::memory_order_relaxed);
  Defer([] {});  // the idle passes empty the graveyard
  MaybeFinish();
}

}  // namespace postern
