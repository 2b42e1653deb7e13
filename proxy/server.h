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
  Server(std::shared_ptr<const Config> config, std::shared_ptr<const TlsContext> tls);
  absl::Status Bind();

  std::shared_ptr<const Config> config_;
  std::shared_ptr<const TlsContext> tls_;
  ConnectionLimiter limiter_;  // connections per client IP, all workers
  uv_loop_t loop_;
  uv_async_t worker_exit_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<int> running_{0};
  int signals_ = 0;
};

// The server TLS context the config asks for (null when no listener uses
// TLS); --check-config loads it too.
absl::StatusOr<std::shared_ptr<const TlsContext>> LoadTlsContext(const Config& config);

// Number of workers for `configured` (0 = one per core).
int WorkerCount(int configured);

}  // namespace postern
