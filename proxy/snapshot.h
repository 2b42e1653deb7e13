#pragma once

// What a session uses, as one immutable snapshot: the config, the TLS
// contexts (server and toward backends), the passwd-files, the backends'
// health slots, the abuse table and the directory answer cache. The server
// builds a snapshot off the workers' loops (at start, and on every reload:
// SIGHUP, the admin API, a changed certificate or ticket-key file) and posts
// it to each worker, which builds its own view of it (proxy/worker.h:
// WorkerView, the loop-bound parts: Redis client, router, directories,
// abuse guard) and swaps it in. A session takes the worker's current view
// when it is accepted and keeps the snapshot until it ends; nothing in a
// snapshot is freed while a session holds it, and a reload never changes a
// snapshot (it makes a new one).
//
// What a reload cannot change (listening addresses, workers, the user and
// group): CheckReloadable refuses the new config whole, with its reason.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "proxy/backend_health.h"
#include "proxy/config.h"
#include "routing/abuse.h"
#include "routing/directory_cache.h"
#include "routing/passwd_file_directory.h"
#include "tls/tls_context.h"

namespace postern {

struct Snapshot {
  // 1 for the start-up config, one more per reload (logs, /admin/sessions).
  uint64_t serial = 1;
  std::shared_ptr<const Config> config;
  // Server side; null when no listener uses TLS.
  std::shared_ptr<const TlsContext> tls;
  // Client contexts toward backends with tls, by backend name.
  absl::flat_hash_map<std::string, std::shared_ptr<const TlsContext>> backend_tls;
  // passwd-file sources by directory name (each re-read in place when its
  // file changes: PasswdFileSource keeps its own immutable versions).
  absl::flat_hash_map<std::string, std::shared_ptr<PasswdFileSource>> passwd_files;
  // Slots shared by name with the previous snapshot's (health, load, drain).
  std::shared_ptr<BackendHealth> health;
  // Failed logins; kept across reloads while the abuse policy is the same.
  std::shared_ptr<AbuseTable> abuse;
  // Directory answers: a new, empty cache per snapshot (a reloaded
  // directory is never answered for by the old one's cache).
  std::shared_ptr<DirectoryCache> cache;

  const Config& cfg() const { return *config; }
  const TlsContext* backend_tls_for(const std::string& name) const {
    auto it = backend_tls.find(name);
    return it == backend_tls.end() ? nullptr : it->second.get();
  }
};

// Builds everything a snapshot holds from `config` (certificates, keys,
// passwd-files read now: blocking, call it off the workers' loops).
// `previous`: the snapshot this one replaces (null at start), whose health
// slots, abuse table and TLS ticket keys carry over. Errors name the file,
// the key and, where there is one, the line.
absl::StatusOr<std::shared_ptr<const Snapshot>> BuildSnapshot(std::shared_ptr<const Config> config,
                                                              const Snapshot* previous);

// Whether `next` may replace `running` without a restart: the same workers,
// the same listeners (name, address, protocol, backlog) and the same user
// and group. Everything else reloads. The error says what differs.
absl::Status CheckReloadable(const Config& running, const Config& next);

}  // namespace postern
