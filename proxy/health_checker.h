#pragma once

// Active health checks (health.check_interval): every backend's IMAP port is
// connected to and must greet (`* OK`, over TLS for an implicit-TLS
// backend, after a PROXY v2 LOCAL header for a send_proxy one) within
// health.check_timeout; a failure counts like a login's
// connect failure (BackendHealth::Failed), a success brings a backend back
// at once. Runs on one worker's loop; probes never touch sessions.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/snapshot.h"
#include "proxy/uv_handle.h"

namespace postern {

class BackendHealth;
class Worker;

class HealthChecker {
 public:
  // Checks the backends of `snapshot` (a reload replaces the checker).
  HealthChecker(Worker& worker, std::shared_ptr<const Snapshot> snapshot);
  ~HealthChecker();
  void Start();

 private:
  class Probe;
  void Round();
  void Done(Probe* probe, bool ok, const std::string& why);

  Worker& worker_;
  std::shared_ptr<const Snapshot> snapshot_;
  const Config& config_;
  BackendHealth& health_;
  Timer timer_;
  std::vector<std::unique_ptr<Probe>> probes_;  // one per backend at most
  uint32_t rounds_ = 0;                         // checks go from each source address in turn
};

}  // namespace postern
