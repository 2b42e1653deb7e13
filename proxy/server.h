#pragma once

// The process: builds the TLS context, binds every listener in every worker
// (all before anything runs, so a bad address fails the start cleanly),
// starts the workers, and turns SIGTERM/SIGINT into a graceful drain.

#include <atomic>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/config.h"
#include "proxy/worker.h"
#include "tls/tls_context.h"

namespace postern {

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(std::shared_ptr<const Config> config);
  ~Server();
  // Runs until every worker has drained after a signal; returns the exit code.
  int Run();

 private:
  Server(std::shared_ptr<const Config> config, std::shared_ptr<const TlsContext> tls,
         std::unique_ptr<SharedState> shared);
  absl::Status Bind();
  // Re-reads the passwd-files that changed (or all, on SIGHUP) on the
  // thread pool; a broken file keeps the old snapshot, the log says why.
  void ReloadFiles(bool all);

  std::shared_ptr<const Config> config_;
  std::shared_ptr<const TlsContext> tls_;
  std::unique_ptr<SharedState> shared_;  // per-IP counts, answer cache, passwd-files
  uv_timer_t file_watch_;                // passwd-files re-read when they change
  uv_loop_t loop_;
  uv_async_t worker_exit_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_signal_t sighup_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<int> running_{0};
  int signals_ = 0;
};

// The server TLS context the config asks for (null when no listener uses
// TLS); --check-config loads it too.
absl::StatusOr<std::shared_ptr<const TlsContext>> LoadTlsContext(const Config& config);

// What the workers share, with the passwd-files loaded (errors name the file
// and line); --check-config loads it too.
absl::StatusOr<std::unique_ptr<SharedState>> LoadSharedState(const Config& config);

// Number of workers for `configured` (0 = one per core).
int WorkerCount(int configured);

}  // namespace postern
