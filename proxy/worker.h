#pragma once

// One worker: a thread running its own libuv loop, with its own listening
// socket per listener (SO_REUSEPORT: the kernel spreads connections over the
// workers), its own sessions and its own buffer pool. Nothing on the hot path
// is shared with other workers.
//
// Reloads: the server posts each new snapshot (proxy/snapshot.h) to every
// worker, which builds a WorkerView of it (the parts bound to its loop) and
// makes it current. A new session takes the current view; a session keeps
// the snapshot it started with until it ends, and drops its view once it
// has logged in (views of old snapshots go away with their last pre-login
// session).

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "protocol/buffer.h"
#include "proxy/backend_health.h"
#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/connection_limiter.h"
#include "proxy/pipe_pool.h"
#include "proxy/poller.h"
#include "proxy/proxy_metrics.h"
#include "proxy/snapshot.h"
#include "proxy/uv_handle.h"
#include "routing/abuse.h"
#include "routing/directory.h"
#include "routing/directory_cache.h"
#include "routing/passwd_file_directory.h"
#include "routing/redis_client.h"
#include "routing/router.h"
#include "routing/uv_owner.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace postern {

class Session;
class ProxyAcceptor;
class HealthChecker;

// What the workers of one server share across snapshots; thread-safe.
struct SharedState {
  explicit SharedState(const Config& config) : limiter(config.limits.max_connections_per_ip) {}
  ConnectionLimiter limiter;  // connections per client IP
  // Sessions open in the whole process, and the cap on them
  // (limits.max_sessions, or what the open files limit allows).
  std::atomic<uint32_t> sessions{0};
  std::atomic<uint32_t> max_sessions{0};  // 0: none
  ProxyMetrics* metrics = nullptr;        // the process's families (the server's)
};

class Worker;

// One worker's view of one snapshot: what needs the worker's loop (the
// Redis client, the router, the directories, the abuse guard). Built on the
// worker's loop when the snapshot arrives; destroyed there when its last
// user lets go.
class WorkerView {
 public:
  // `metrics`: the process's families (null: handles that count nothing).
  WorkerView(Worker& worker, std::shared_ptr<const Snapshot> snapshot, ProxyMetrics* metrics);
  ~WorkerView();
  WorkerView(const WorkerView&) = delete;
  WorkerView& operator=(const WorkerView&) = delete;

  const Snapshot& snapshot() const { return *snapshot_; }
  const std::shared_ptr<const Snapshot>& snapshot_ptr() const { return snapshot_; }
  const Config& config() const { return *snapshot_->config; }
  Router& router() { return *router_; }
  // Null when abuse limits are off.
  AbuseGuard* abuse() { return abuse_.get(); }
  // The directory that checks logins on `listener` (passthrough by default).
  Directory& directory(const ListenerConfig& listener);
  // Its latency histogram.
  Histogram directory_histogram(const ListenerConfig& listener);
  // This snapshot's directories' and backends' metric handles.
  ViewMetrics& metrics() { return metrics_; }

 private:
  std::shared_ptr<const Snapshot> snapshot_;
  ViewMetrics metrics_;
  std::unique_ptr<RedisClient> redis_;  // before its users: destroyed after them
  std::unique_ptr<Router> router_;
  std::unique_ptr<AbuseGuard> abuse_;
  absl::flat_hash_map<std::string, std::unique_ptr<Directory>> directories_;
};

// One session as the admin API lists it.
struct SessionInfo {
  std::string id;
  std::string user;  // "" before a login was tried
  std::string client;
  std::string listener;
  std::string protocol;
  std::string stage;  // "prelogin", "login", "relay", "splice", "gateway", "ending"
  std::string backend;
  std::string tls;  // the client side's TLS version, "" without
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t age_ms = 0;
  uint64_t snapshot = 0;  // the config snapshot's serial
  int worker = 0;
};

// What the admin API selects sessions by; empty fields match everything.
struct SessionFilter {
  std::string user;
  std::string backend;
  std::string client_ip;
};

class Worker {
 public:
  // `shared` (per-IP counts, the session cap) outlives the worker.
  Worker(int id, std::shared_ptr<const Snapshot> snapshot, SharedState& shared,
         std::function<void()> on_exit);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Before Start(), from the main thread: binds a listening socket for
  // `listener` at `address` (its port may be 0: the real one is returned in
  // *bound so the other workers bind the same port).
  absl::Status Listen(const ListenerConfig& listener, const SocketAddress& address,
                      SocketAddress* bound);
  void Start();
  void Join();
  // Thread-safe. Stops accepting now; sessions get `grace` to finish, then
  // are told the server is going down (at their next safe point); those
  // still open at `deadline` (from now) are cut.
  void RequestShutdown(std::chrono::milliseconds grace, std::chrono::milliseconds deadline);
  // Thread-safe: runs `fn` on this worker's loop soon (once it runs, when
  // posted before Start()); dropped once the worker has finished.
  // False (and `fn` dropped) once the worker has finished.
  bool Post(std::function<void()> fn);

  // --- loop thread only (through Post from other threads) ---
  // Makes `snapshot` current: new sessions use it.
  void Adopt(std::shared_ptr<const Snapshot> snapshot);
  std::vector<SessionInfo> ListSessions(const SessionFilter& filter) const;
  // Tells the user's sessions to end (at their next safe point); how many.
  size_t Kick(const std::string& user);
  // Sessions relayed to `backend` end at their next safe point, each at a
  // random moment within `spread`; how many.
  size_t DrainBackend(const std::string& backend, std::chrono::milliseconds spread);

  // --- loop thread only ---
  int id() const { return id_; }
  uv_loop_t* loop() { return &loop_; }
  Poller& poller() { return *poller_; }
  BufferPool& pool() { return pool_; }
  // Large slabs for relay reads: fewer, larger reads, records and writes.
  BufferPool& bulk_pool() { return bulk_pool_; }
  // Pipes for splice(2) between two plaintext sockets.
  PipePool& pipes() { return pipes_; }
  // The current view (new sessions take it).
  const std::shared_ptr<WorkerView>& view() const { return view_; }
  const Config& config() const { return view_->config(); }
  // This worker's metric handles (per listener, per reason).
  WorkerMetrics& metrics() { return metrics_; }
  // Toward backend `name`: the slot of the last TLS session, offered for
  // resumption by the next login.
  TlsSession* backend_tls_session(const std::string& name) { return &tls_sessions_[name]; }
  // A counter for spreading ties between equally loaded replicas.
  uint32_t NextRotation() { return rotation_++; }
  bool shutting_down() const { return shutting_down_; }
  // Runs `fn` on a later loop iteration (never from inside the caller).
  void Defer(std::function<void()> fn);
  // Forgets a finished session; it is destroyed on a later iteration.
  // `refused`: it was an over-cap refusal (which holds no per-IP count).
  void Remove(Session* s, bool refused);
  size_t session_count() const { return sessions_.size(); }
  // Sessions before login on this worker (limits.max_prelogin_sessions).
  void PreloginStarted() { ++prelogin_; }
  void PreloginEnded() { --prelogin_; }
  size_t prelogin_count() const { return prelogin_; }

 private:
  // A listening socket in the worker's poller: readable means connections
  // wait to be accepted.
  struct Listener final : Poller::Watcher {
    Listener(Worker* w, size_t i, std::string n) : worker(w), index(i), name(std::move(n)) {}
    ~Listener();
    void OnReady(uint32_t) override { worker->Accept(*this); }
    Worker* worker;
    size_t index;  // in every snapshot's config.listeners (a reload keeps them)
    std::string name;
    int fd = -1;
  };

  void Accept(Listener& l);
  // A new connection, within the caps or refused with a one-line notice.
  // `peer`: the client (from a PROXY header, or the socket's peer);
  // `socket_peer`: who connected (trusted_networks are checked against it).
  void Admit(size_t listener, ConnectionPtr conn, const PeerAddress& peer,
             const PeerAddress& socket_peer);
  static bool Trusted(const ListenerConfig& lc, const PeerAddress& peer);
  void ReapAcceptors();
  // Counts a refusal and logs at most one line a second about them.
  void NoteRefusal(const char* what, Refusal reason);
  // Out of file descriptors: accepts and drops one waiting connection with
  // the fd kept in reserve, so the level-triggered listener does not spin.
  // False when that was impossible too.
  bool ShedOne(Listener& l);
  void PauseAccepting();
  void Run();
  void OnAsync();
  void BeginShutdown(std::chrono::milliseconds grace, std::chrono::milliseconds deadline);
  void MaybeFinish();
  void Sweep();
  std::vector<Session*> SessionList() const;

  int id_;
  std::function<void()> on_exit_;
  uv_loop_t loop_;
  std::unique_ptr<Poller> poller_;
  int reserve_fd_ = -1;
  uint64_t shed_ = 0;  // connections dropped since the last warning
  uint64_t last_shed_log_ms_ = 0;
  SharedState& shared_;
  ConnectionLimiter& limiter_;
  WorkerMetrics metrics_;
  size_t prelogin_ = 0;
  uint32_t rotation_ = 0;
  absl::node_hash_map<std::string, TlsSession> tls_sessions_;  // stable addresses
  size_t refusing_ = 0;   // sessions sending an over-cap notice
  uint64_t refused_ = 0;  // refusals since the last log line
  uint64_t last_refusal_log_ms_ = 0;
  BufferPool pool_;
  BufferPool bulk_pool_{64 * 1024, 4};
  PipePool pipes_;
  std::shared_ptr<WorkerView> view_;
  std::unique_ptr<HealthChecker> checker_;  // worker 0 only, with health.check_interval
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<ProxyAcceptor>> acceptors_;  // PROXY headers being read
  // Owned sessions, found by their raw pointer (absl's smart-pointer
  // lookup): 8 bytes a slot.
  absl::flat_hash_set<std::unique_ptr<Session>> sessions_;
  // Ended sessions, destroyed two deferred passes later: every callback
  // queued before a session ended has run by then.
  std::vector<std::unique_ptr<Session>> graveyard_;
  std::vector<std::function<void()>> deferred_;
  UvOwner<uv_idle_t> idle_;
  UvOwner<uv_async_t> async_;
  Timer grace_timer_;
  Timer drain_timer_;  // after the grace: sessions not yet at a safe point are cut
  Timer sweep_timer_;  // session timeouts, once a second
  Timer accept_pause_timer_;
  bool accept_paused_ = false;
  std::thread thread_;
  bool shutting_down_ = false;
  bool finished_ = false;

  std::mutex mu_;  // guards posted_ (from other threads)
  std::vector<std::function<void()>> posted_;
  bool accepting_posts_ = true;
};

}  // namespace postern
