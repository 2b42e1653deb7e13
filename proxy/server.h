#pragma once

// The process: builds the first snapshot (config, TLS contexts, passwd-files),
// binds every listener in every worker and the admin endpoint (all before
// anything runs, so a bad address fails the start cleanly), raises the open
// files limit, drops privileges, starts the workers, and then runs the main
// loop: signals (SIGTERM/SIGINT drain and stop, SIGHUP reloads), reloads
// built on the thread pool and posted to the workers, the file watch
// (passwd-files, certificates, ticket keys), and the admin endpoint.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/config.h"
#include "proxy/snapshot.h"
#include "proxy/worker.h"

namespace postern {

class Admin;
class MetricsRegistry;
struct ProxyMetrics;

class Server {
 public:
  // `config_path`: re-read on reloads.
  static absl::StatusOr<std::unique_ptr<Server>> Create(std::string config_path,
                                                        std::shared_ptr<const Config> config);
  ~Server();
  // Runs until every worker has drained after a signal; returns the exit code.
  int Run();

  // --- the main loop's thread (the admin endpoint runs there) ---
  uv_loop_t* loop() { return &loop_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return current_; }
  enum class ReloadKind {
    kConfig,  // the config file again, and everything it names
    kFiles,   // the running config's files (certificates, passwd-files)
  };
  // Builds a new snapshot on the thread pool and, when it is good, hands it
  // to the workers; `done` gets the result (the error names file, line and
  // key). Reloads run one at a time; one asked for meanwhile runs next.
  void Reload(ReloadKind kind, std::function<void(absl::Status)> done);
  // Ready: the listeners are up and the node is not draining or stopping.
  bool ready() const { return ready_ && !draining_ && !stopping_; }
  bool stopping() const { return stopping_; }
  bool draining() const { return draining_; }
  MetricsRegistry& metrics() { return *metrics_; }
  // Counts an admin action (kick, drain, undrain, cache_clear).
  void CountAdminAction(const char* action);
  // The node drains (readiness false, the listeners stay open) or not.
  void SetDraining(bool draining);
  // As SIGTERM: stop accepting, drain the sessions, exit.
  void Stop();
  // Across the workers; `done` runs on the main loop.
  void ListSessions(const SessionFilter& filter,
                    std::function<void(std::vector<SessionInfo>)> done);
  void Kick(const std::string& user, std::function<void(size_t)> done);
  // Marks backend `name` drained (no new sessions) or not; drained, its
  // sessions are closed over `spread`. NOT_FOUND for an unknown backend.
  absl::Status DrainBackend(const std::string& name, bool drain, std::chrono::milliseconds spread,
                            std::function<void(size_t)> done);
  // Forgets the directory cache's answers for `user` ("" for all).
  size_t ClearCache(const std::string& user);
  int worker_count() const { return static_cast<int>(workers_.size()); }
  // Thread-safe: runs `fn` on the main loop.
  void PostMain(std::function<void()> fn);

 private:
  Server(std::string config_path, std::shared_ptr<const Snapshot> snapshot);
  absl::Status Bind();
  // Open files: raised to what limits.max_sessions needs, or the start is
  // refused; the session cap is set from it.
  absl::Status RaiseFileLimit(const Config& config);
  uint32_t SessionCap(const Config& config) const;
  absl::Status DropPrivileges(const Config& config);
  void StartReload();
  void FinishReload(absl::StatusOr<std::shared_ptr<const Snapshot>> next, ReloadKind kind,
                    std::vector<std::pair<std::string, int64_t>> stamps);
  // The file watch: passwd-files re-read in place, ticket keys re-read,
  // certificates reloaded (kFiles), each when its file changed.
  void WatchFiles();
  template <typename T>
  void Gather(std::function<T(Worker&)> on_worker, std::function<void(std::vector<T>)> done);
  void OnSignal(int signum);
  void OnMainAsync();
  void CloseHandles();

  std::string config_path_;
  std::shared_ptr<const Snapshot> current_;
  std::unique_ptr<SharedState> shared_;
  uv_loop_t loop_;
  uv_timer_t file_watch_;
  uv_async_t worker_exit_;
  uv_async_t main_async_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_signal_t sighup_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<MetricsRegistry> metrics_;  // a shard per worker, and the main loop's last
  std::unique_ptr<ProxyMetrics> families_;
  std::unique_ptr<Admin> admin_;
  std::atomic<int> running_{0};
  int signals_ = 0;
  bool ready_ = false;
  bool draining_ = false;
  bool stopping_ = false;
  bool handles_closed_ = false;
  uint64_t file_limit_ = 0;  // RLIMIT_NOFILE after start
  // Reloads: one runs at a time.
  bool reload_running_ = false;
  bool reload_queued_ = false;
  ReloadKind queued_kind_ = ReloadKind::kFiles;
  std::vector<std::function<void(absl::Status)>> reload_waiters_;  // of the one running
  std::vector<std::function<void(absl::Status)>> queued_waiters_;  // of the next
  // Modification stamps of the watched certificate and ticket-key files:
  // as they were when the current snapshot read them, or at the last look.
  std::vector<std::pair<std::string, int64_t>> watched_;
  std::mutex main_mu_;
  std::vector<std::function<void()>> main_posted_;
};

// What --check-config loads: the snapshot of `config` (certificates, keys,
// passwd-files), errors naming file, line and key.
absl::Status CheckSnapshot(const Config& config);

// Number of workers for `configured` (0 = one per core).
int WorkerCount(int configured);

}  // namespace postern
