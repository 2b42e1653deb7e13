#include "proxy/worker.h"

#include <sys/socket.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proxy/connection.h"
#include "proxy/session.h"
#include "spdlog/spdlog.h"

namespace postern {

Worker::Worker(int id, std::shared_ptr<const Config> config, std::shared_ptr<const TlsContext> tls,
               std::function<void()> on_exit)
    : id_(id), config_(std::move(config)), tls_(std::move(tls)), on_exit_(std::move(on_exit)) {
  uv_loop_init(&loop_);
  router_ =
      std::make_unique<StaticRouter>(config_->user_backends, config_->default_backend,
                                     [this](std::function<void()> fn) { Defer(std::move(fn)); });
  uv_idle_init(&loop_, idle_.Allocate());
  idle_.get()->data = this;
  uv_async_init(&loop_, async_.Allocate(), [](uv_async_t* a) {
    if (a->data != nullptr) static_cast<Worker*>(a->data)->OnAsync();
  });
  async_.get()->data = this;
  grace_timer_.Init(&loop_);
  sweep_timer_.Init(&loop_);
  sweep_timer_.Start(std::chrono::seconds(1), [this] { Sweep(); });
}

void Worker::Sweep() {
  uint64_t now = uv_now(&loop_);
  for (Session* s : SessionList()) s->CheckTimeout(now);
  // Give back half of the cached slabs above a small floor each second.
  pool_.Trim(std::max<size_t>(8, pool_.free_count() / 2));
  bulk_pool_.Trim(bulk_pool_.free_count() / 2);
  if (!finished_) sweep_timer_.Restart(std::chrono::seconds(1));
}

Worker::~Worker() {
  Join();
  // Sessions, listeners and our own handles are gone; let their close
  // callbacks run, then the loop can be closed and the pool freed.
  sessions_.clear();
  graveyard_.clear();
  listeners_.clear();
  idle_.Reset();
  async_.Reset();
  grace_timer_ = Timer();
  sweep_timer_ = Timer();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

absl::Status Worker::Listen(const ListenerConfig& lc, const SocketAddress& address,
                            SocketAddress* bound) {
  auto l = std::make_unique<Listener>();
  l->worker = this;
  l->config = &lc;
  uv_tcp_t* t = l->tcp.Allocate();
  int r = uv_tcp_init_ex(&loop_, t, address.storage.ss_family);
  if (r != 0) return absl::InternalError(absl::StrCat("socket: ", uv_strerror(r)));
  t->data = l.get();
  uv_os_fd_t fd;
  uv_fileno(reinterpret_cast<uv_handle_t*>(t), &fd);
  int one = 1;
  // One listening socket per worker on the same address (SO_REUSEPORT).
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return absl::InternalError("setsockopt(SO_REUSEPORT) failed");
  }
  r = uv_tcp_bind(t, reinterpret_cast<const sockaddr*>(&address.storage), 0);
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(t), lc.backlog, &Worker::OnConnection);
  if (r != 0) {
    return absl::UnavailableError(absl::StrCat("listeners: ", lc.name, ": cannot listen on ",
                                               address.text, ": ", uv_strerror(r)));
  }
  sockaddr_storage ss;
  int len = sizeof(ss);
  uv_tcp_getsockname(t, reinterpret_cast<sockaddr*>(&ss), &len);
  bound->storage = ss;
  bound->length = static_cast<socklen_t>(len);
  bound->text = Connection::FormatAddress(reinterpret_cast<sockaddr*>(&ss), true);
  listeners_.push_back(std::move(l));
  return absl::OkStatus();
}

void Worker::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::Run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (on_exit_) on_exit_();
}

void Worker::RequestShutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_requested_ = true;
    requested_grace_ = grace;
  }
  uv_async_send(async_.get());
}

void Worker::OnAsync() {
  bool requested;
  std::chrono::milliseconds grace;
  {
    std::lock_guard<std::mutex> lock(mu_);
    requested = shutdown_requested_;
    grace = requested_grace_;
  }
  if (requested) BeginShutdown(grace);
}

void Worker::BeginShutdown(std::chrono::milliseconds grace) {
  if (!shutting_down_) {
    shutting_down_ = true;
    listeners_.clear();  // stop accepting
  }
  if (sessions_.empty()) {
    MaybeFinish();
    return;
  }
  grace_timer_.Start(grace, [this] {
    for (Session* s : SessionList()) s->Shutdown();
  });
}

std::vector<Session*> Worker::SessionList() const {
  // A copy: what the caller does to a session may Remove() it.
  std::vector<Session*> all;
  all.reserve(sessions_.size());
  for (const auto& [s, owner] : sessions_) all.push_back(s);
  return all;
}

void Worker::MaybeFinish() {
  if (!shutting_down_ || finished_ || !sessions_.empty()) return;
  finished_ = true;
  grace_timer_.Stop();
  // Our handles close; the loop ends when the last lingering connection is
  // closed too.
  Defer([this] {
    idle_.Reset();
    async_.Reset();
    grace_timer_ = Timer();
    sweep_timer_ = Timer();
  });
}

void Worker::OnConnection(uv_stream_t* server, int status) {
  auto* l = static_cast<Listener*>(server->data);
  if (l == nullptr || status < 0) return;
  l->worker->Accept(*l);
}

void Worker::Accept(Listener& l) {
  ConnectionPtr conn = Connection::Create(&loop_, pool_, nullptr);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(l.tcp.get()),
                reinterpret_cast<uv_stream_t*>(conn->tcp())) != 0) {
    return;  // conn closes itself
  }
  conn->SetSocketOptions();
  std::unique_ptr<Session> s = Session::Create(*this, *l.config, std::move(conn));
  Session* raw = s.get();
  sessions_.emplace(raw, std::move(s));
  raw->Start();
}

void Worker::Defer(std::function<void()> fn) {
  deferred_.push_back(std::move(fn));
  if (deferred_.size() == 1 && idle_) {
    uv_idle_start(idle_.get(), [](uv_idle_t* h) {
      auto* w = static_cast<Worker*>(h->data);
      if (w == nullptr) return;
      std::vector<std::function<void()>> fns;
      fns.swap(w->deferred_);
      for (auto& f : fns) f();
      // Only now: a callback queued above (a route answer) may still look at
      // a session that ended earlier in this loop turn.
      w->graveyard_.clear();
      if (w->deferred_.empty() && w->idle_) uv_idle_stop(w->idle_.get());
    });
  }
}

void Worker::Remove(Session* s) {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return;
  graveyard_.push_back(std::move(it->second));
  sessions_.erase(it);
  Defer([] {});  // the idle pass empties the graveyard
  MaybeFinish();
}

}  // namespace postern
