#pragma once

// One client session, along the path ARCHITECTURE.md draws:
//
//   client Connection [+ TLS] -> Front (protocol/imap_front.h,
//   protocol/pop3_front.h: the pre-login dialogue, pure protocol code)
//   -> Router -> BackendConnector (connect, greeting, login)
//   -> a Stage: the byte Relay, or later the POP3-to-IMAP gateway.
//
// The session is the Front's host (it gives it bytes, sends its replies,
// starts TLS, runs its logins) and the Stage's host (idle timeout, end). It
// owns both connections, the timers and the one log line per session. What
// a client can make it hold is bounded: replies queued toward a client that
// does not read stop the parsing of its commands (limits.max_pending_replies),
// the pre-login phase has an inactivity timeout and an absolute deadline,
// and the worker caps sessions per IP and pre-login sessions (worker.h).

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "protocol/front.h"
#include "proxy/backend_connector.h"
#include "proxy/backend_health.h"
#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/peer_address.h"
#include "proxy/proxy_metrics.h"
#include "proxy/session_trace.h"
#include "proxy/snapshot.h"
#include "proxy/stage.h"
#include "proxy/uv_handle.h"
#include "routing/abuse.h"
#include "routing/directory.h"
#include "routing/directory_cache.h"
#include "routing/router.h"

namespace postern {

class Worker;
class WorkerView;
struct SessionInfo;
struct SessionFilter;

class Session final : public ConnectionHandler, public FrontHost, public StageHost {
 public:
  // `peer`: the client's address (from a PROXY header when the listener
  // takes them); `trusted`: the connecting peer is in the listener's
  // trusted_networks (a proxy in front: its IMAP ID x- fields are believed).
  // `view`: the worker's current view; `listener` is in its snapshot.
  Session(Worker& worker, std::shared_ptr<WorkerView> view, const ListenerConfig& listener,
          ConnectionPtr client, const PeerAddress& peer, bool trusted);
  ~Session() override;

  // Greets the client and starts reading.
  void Start();
  // Over a cap: sends `notice` (after the TLS handshake on an implicit-TLS
  // listener) and ends.
  // `reason` is a string literal (kept for the log line).
  void Refuse(absl::string_view notice, const char* reason);
  // Why a session is told to go.
  enum class EndKind { kServerShutdown, kKicked, kBackendDrained };
  // Tells the client (IMAP `* BYE`, POP3 `-ERR`) and ends: at once before
  // login, at the next point between two responses after it.
  void Shutdown(EndKind kind);
  // Shutdown(kBackendDrained) at `at_ms` (loop time; the sweep checks).
  void DrainAt(uint64_t at_ms) { drain_at_ms_ = at_ms == 0 ? 1 : at_ms; }
  // Ends the session when one of its deadlines has passed.
  void CheckTimeout(uint64_t now_ms);
  // Adds the client bytes since the last call to the relayed-bytes
  // counters (the worker's sweep, once a second, and the end).
  void CountBytes();
  // The admin API's views.
  bool Matches(const SessionFilter& filter) const;
  SessionInfo Info(uint64_t now_ms) const;

  const PeerAddress& peer() const { return peer_; }
  // The per-IP count this session holds (the address it was admitted with).
  const IpKey& limit_key() const { return limit_key_; }
  bool prelogin() const { return state_ == State::kFront || state_ == State::kLogin; }
  bool ended() const { return state_ == State::kEnded; }
  // 16 characters, also sent to the backend as IMAP ID x-session-id.
  absl::string_view id() const { return absl::string_view(id_.data(), id_.size()); }

  // ConnectionHandler (the client, until a stage takes it)
  void OnData(Connection& c) override;
  void OnDrained(Connection& c) override;
  void OnEnd(Connection& c, absl::string_view reason) override;
  void OnTlsReady(Connection& c) override;

  // FrontHost
  void Send(absl::string_view bytes) override;
  bool StartTls() override;
  void Login(Credentials credentials) override;
  void End(absl::string_view reason) override;

  // StageHost
  void StageActivity() override;
  void StageEnded(absl::string_view reason) override;
  void StageBackendLost(absl::string_view reason) override;

 private:
  enum class State : uint8_t {
    kFront,     // the pre-login dialogue
    kLogin,     // a login runs (router, backend): the client is not read
    kStage,     // relaying (or the gateway)
    kRefusing,  // over a cap: the notice goes out, then the end
    kEnded,
  };

  // Feeds the front while the client's replies stay under the bound.
  void ProcessInput();
  // Counts a failed login (abuse limits): how long its answer waits.
  std::chrono::milliseconds CountFailure();
  // The client fields a trusted proxy in front sent (IMAP ID).
  void AdoptTrustedId();
  DirectoryRequest MakeDirectoryRequest() const;
  // The login's first step: the directory (or the answer cache).
  void AskDirectory();
  void OnDirectoryAnswer(DirectoryAnswer answer);
  // The backend at host:port, configured or not.
  const BackendConfig* BackendAt(const std::string& host, uint16_t port);
  // The client hears the refusal after `wait`.
  void RefuseAfter(std::chrono::milliseconds wait, LoginReply reply, std::string detail);
  // Candidates for a routed target (a backend, or a shard's healthy
  // replicas by load, or its fallback's), then the first attempt.
  void StartAttempts(const RouteResult& target);
  void ConnectNext();
  void OnRouted(const BackendConfig& backend);
  // Destroys a handle on a later turn (we may be inside its own callback).
  template <typename T>
  void DropLater(std::unique_ptr<T> p);
  // Drops what a login attempt held (the secret wiped).
  void ForgetLogin();
  void OnBackendLogin(LoginOutcome outcome, ConnectionPtr backend);
  // The login failed (or was refused before reaching a backend): log it and
  // let the front answer.
  void LoginFailed(LoginReply reply, absl::string_view detail);
  void StartStage(std::string backend_capabilities);
  // IMAP ID arguments for the backend: the client's RFC 2971 fields, then
  // Postern's own x- fields (Dovecot's forwarding keys).
  std::string BackendIdArgs(const PeerAddress& local) const;
  // The address the client connected to: the listener's own when it names
  // one (no syscall), else the socket's (getsockname).
  PeerAddress LocalAddress() const;
  // Leaves the pre-login count (login done or session over).
  void LeavePrelogin();
  void ArmIdle();
  void LogEnd(absl::string_view reason);
  // This session's listener's metric handles (on its worker).
  WorkerMetrics::PerListener& metrics();
  // Counts the session in `stage` (sessions open and total).
  void EnterStage(StageLabel stage);
  void CountLogin(LoginResult result);
  const std::string& backend_name() const;

  Worker& worker_;
  // The snapshot this session started with, for its whole life; the view
  // (router, directories) only until the login is done.
  std::shared_ptr<const Snapshot> snapshot_;
  std::shared_ptr<WorkerView> view_;
  const ListenerConfig& listener_;  // in snapshot_
  const Config* config_;            // snapshot_'s (which keeps it alive)
  ConnectionPtr client_;
  ConnectionPtr backend_;
  std::unique_ptr<Front> front_;  // until a stage starts
  std::unique_ptr<BackendConnector> connector_;
  // The login in progress (only while one runs).
  std::unique_ptr<Credentials> credentials_;
  std::unique_ptr<Directory::Lookup> lookup_;
  std::unique_ptr<Pending> route_pending_;
  std::unique_ptr<AbuseGuard::Pending> abuse_pending_;
  std::unique_ptr<DirectoryAnswer> answer_;
  // While a lookup's answer may be cached (on the heap: 32 bytes an idle
  // session should not carry).
  std::unique_ptr<DirectoryCache::Key> cache_key_;
  std::unique_ptr<Timer> wait_timer_;
  std::unique_ptr<BackendConfig> adhoc_backend_;  // a directory's host:port
  std::string directory_name_;
  uint32_t login_attempts_ = 0;
  // Proxy hops this login may still take (proxy_ttl, or less when a trusted
  // proxy in front said so in its IMAP ID x-proxy-ttl); sent on minus one.
  uint32_t hops_ = 5;
  // The backends to try for the login in progress, in order (only while a
  // routed login runs: an idle session does not carry them).
  struct Attempts {
    std::vector<size_t> candidates;
    size_t next = 0;  // the next candidate
    std::string last_failure;
  };
  std::unique_ptr<Attempts> attempts_;
  BackendHealth::Slot* health_slot_ = nullptr;  // counted in its sessions while relaying
  std::unique_ptr<Stage> stage_;
  // log.trace_users is set: the dialogue is kept (masked) until a login
  // names a traced user, then written (proxy/session_trace.h).
  std::unique_ptr<SessionTrace> trace_;
  uint32_t traced_in_ = 0;   // client input bytes already given to trace_ (pre-login: bounded)
  uint32_t generation_ = 0;  // invalidates callbacks of an abandoned login
  // Metrics: the listener's index, the sessions-open gauge this session
  // counts in (while open_counted_), what was counted of its bytes, when
  // the directory and the backend were asked.
  Gauge open_;
  uint64_t counted_in_ = 0;
  uint64_t counted_out_ = 0;
  uint64_t directory_started_ns_ = 0;
  uint64_t backend_started_ns_ = 0;
  int backend_index_ = -1;                     // in config_->backends; -1: a directory's host:port
  uint32_t listener_index_ = 0;                // in config_->listeners
  std::string user_;                           // the mailbox user, once a login was tried
  const char* refuse_reason_ = "";             // kRefusing: why, for the log
  const std::string* backend_name_ = nullptr;  // in config_
  // Deadlines in loop time (0: none), checked by the worker's sweep once a
  // second: no timer per session, no timer-heap update per read.
  uint64_t idle_deadline_ms_ = 0;   // inactivity (login, idle)
  uint64_t login_deadline_ms_ = 0;  // the whole pre-login phase
  uint64_t drain_at_ms_ = 0;        // DrainAt()
  std::chrono::steady_clock::time_point started_;
  PeerAddress peer_;
  IpKey limit_key_;
  std::array<char, 16> id_;
  State state_ = State::kFront;
  bool blocked_ = false;           // the front waits for the client's replies to drain
  bool processing_ = false;        // inside ProcessInput
  bool again_ = false;             // drained while processing: go on
  bool continue_pending_ = false;  // the rest of a pipeline waits for the next turn
  bool counted_prelogin_ = false;
  bool gateway_ = false;  // POP3 served over the backend's IMAP (protocol/pop3_gateway.h)
  bool trusted_ = false;  // a proxy in front, from trusted_networks
  bool open_counted_ = false;
  bool tls_started_ = false;
  bool tls_ready_ = false;
  bool login_blocked_ = false;  // the abuse limits refused this login
  // (Ordered and sized so that an idle session fits jemalloc's 448-byte size
  // class: bench/compare's memory per idle connection; state used only while
  // logging in lives on the heap until then.)
};

}  // namespace postern
