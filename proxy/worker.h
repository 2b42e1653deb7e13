#pragma once

// One worker: a thread running its own libuv loop, with its own listening
// socket per listener (SO_REUSEPORT: the kernel spreads connections over the
// workers), its own sessions and its own buffer pool. Nothing on the hot path
// is shared with other workers.

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "protocol/buffer.h"
#include "proxy/backend_health.h"
#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/connection_limiter.h"
#include "proxy/pipe_pool.h"
#include "proxy/poller.h"
#include "proxy/uv_handle.h"
#include "routing/abuse.h"
#include "routing/directory.h"
#include "routing/directory_cache.h"
#include "routing/passwd_file_directory.h"
#include "routing/redis_client.h"
#include "routing/router.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace postern {

class Session;
class ProxyAcceptor;
class HealthChecker;

// What the workers of one server share; every part is thread-safe.
struct SharedState {
  explicit SharedState(const Config& config);
  ConnectionLimiter limiter;          // connections per client IP
  BackendHealth health;               // backends up or down, sessions per backend
  std::shared_ptr<AbuseTable> abuse;  // failed logins per IP and user, this instance
  DirectoryCache cache;               // directory answers
  // passwd-file snapshots by directory name, reloaded by the server.
  absl::flat_hash_map<std::string, std::shared_ptr<PasswdFileSource>> passwd_files;
  // Client TLS contexts toward backends with tls, by backend name.
  absl::flat_hash_map<std::string, std::shared_ptr<const TlsContext>> backend_tls;
};

class Worker {
 public:
  // `shared` (per-IP counts, the answer cache, passwd-files) outlives the
  // worker.
  Worker(int id, std::shared_ptr<const Config> config, std::shared_ptr<const TlsContext> tls,
         SharedState& shared, std::function<void()> on_exit);
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
  // are told the server is going down and closed.
  void RequestShutdown(std::chrono::milliseconds grace);

  // --- loop thread only ---
  int id() const { return id_; }
  uv_loop_t* loop() { return &loop_; }
  Poller& poller() { return *poller_; }
  BufferPool& pool() { return pool_; }
  // Large slabs for relay reads: fewer, larger reads, records and writes.
  BufferPool& bulk_pool() { return bulk_pool_; }
  // Pipes for splice(2) between two plaintext sockets.
  PipePool& pipes() { return pipes_; }
  const Config& config() const { return *config_; }
  const std::shared_ptr<const Config>& config_ptr() const { return config_; }
  const TlsContext* tls() const { return tls_.get(); }
  Router& router() { return *router_; }
  // Null when abuse limits are off.
  AbuseGuard* abuse() { return abuse_.get(); }
  // The directory that checks logins on `listener` (passthrough by default).
  Directory& directory(const ListenerConfig& listener);
  DirectoryCache& directory_cache() { return shared_.cache; }
  BackendHealth& health() { return shared_.health; }
  // Toward backend `name`: its TLS context (null without TLS), and the slot
  // of the last TLS session, offered for resumption by the next login.
  const TlsContext* backend_tls(const std::string& name) const;
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
    Listener(Worker* w, const ListenerConfig* c) : worker(w), config(c) {}
    ~Listener();
    void OnReady(uint32_t) override { worker->Accept(*this); }
    Worker* worker;
    const ListenerConfig* config;
    int fd = -1;
  };

  void Accept(Listener& l);
  // A new connection, within the caps or refused with a one-line notice.
  // `peer`: the client (from a PROXY header, or the socket's peer);
  // `socket_peer`: who connected (trusted_networks are checked against it).
  void Admit(const ListenerConfig& lc, ConnectionPtr conn, const PeerAddress& peer,
             const PeerAddress& socket_peer);
  static bool Trusted(const ListenerConfig& lc, const PeerAddress& peer);
  void ReapAcceptors();
  // Counts a refusal and logs at most one line a second about them.
  void NoteRefusal(const char* what);
  // Out of file descriptors: accepts and drops one waiting connection with
  // the fd kept in reserve, so the level-triggered listener does not spin.
  // False when that was impossible too.
  bool ShedOne(Listener& l);
  void PauseAccepting();
  void Run();
  void OnAsync();
  void BeginShutdown(std::chrono::milliseconds grace);
  void MaybeFinish();
  void Sweep();
  std::vector<Session*> SessionList() const;

  int id_;
  std::shared_ptr<const Config> config_;
  std::shared_ptr<const TlsContext> tls_;
  std::function<void()> on_exit_;
  uv_loop_t loop_;
  std::unique_ptr<Poller> poller_;
  int reserve_fd_ = -1;
  uint64_t shed_ = 0;  // connections dropped since the last warning
  uint64_t last_shed_log_ms_ = 0;
  SharedState& shared_;
  ConnectionLimiter& limiter_;
  absl::flat_hash_map<std::string, std::unique_ptr<Directory>> directories_;
  size_t prelogin_ = 0;
  uint32_t rotation_ = 0;
  absl::node_hash_map<std::string, TlsSession> tls_sessions_;  // stable addresses
  size_t refusing_ = 0;   // sessions sending an over-cap notice
  uint64_t refused_ = 0;  // refusals since the last log line
  uint64_t last_refusal_log_ms_ = 0;
  BufferPool pool_;
  BufferPool bulk_pool_{64 * 1024, 4};
  PipePool pipes_;
  std::unique_ptr<RedisClient> redis_;  // before its users: destroyed after them
  std::unique_ptr<Router> router_;
  std::unique_ptr<AbuseGuard> abuse_;
  std::unique_ptr<HealthChecker> checker_;  // worker 0 only, with health.check_interval
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<ProxyAcceptor>> acceptors_;  // PROXY headers being read
  absl::flat_hash_map<Session*, std::unique_ptr<Session>> sessions_;
  // Ended sessions, destroyed two deferred passes later: every callback
  // queued before a session ended has run by then.
  std::vector<std::unique_ptr<Session>> graveyard_;
  std::vector<std::function<void()>> deferred_;
  UvHandle<uv_idle_t> idle_;
  UvHandle<uv_async_t> async_;
  Timer grace_timer_;
  Timer drain_timer_;  // after the grace: sessions not yet at a safe point are cut
  Timer sweep_timer_;  // session timeouts, once a second
  Timer accept_pause_timer_;
  bool accept_paused_ = false;
  std::thread thread_;
  bool shutting_down_ = false;
  bool finished_ = false;

  std::mutex mu_;  // guards the shutdown request from other threads
  bool shutdown_requested_ = false;
  std::chrono::milliseconds requested_grace_{0};
};

}  // namespace postern
