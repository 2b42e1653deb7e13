#pragma once

// What Postern exports on /metrics (proxy/metrics.h is the registry). The
// families are registered once per process (ProxyMetrics); each worker
// resolves its handles once (WorkerMetrics: per listener, per reason) and
// each worker view those of its snapshot's directories and backends
// (ViewMetrics), so the hot path only adds to cells of its own worker.
//
// Label values are config names (listener, directory, backend) or fixed
// words of the code (protocol, stage, result, reason, direction, version):
// never anything a client or a peer chose.
//
//   postern_sessions_open{listener,protocol,stage}          gauge
//   postern_sessions_total{listener,protocol,stage}         counter: sessions that reached the
//   stage postern_logins_total{listener,result} ok|auth_failed|authz_failed|unavailable|blocked
//   postern_directory_lookup_seconds{directory}             histogram (cache hits not counted)
//   postern_directory_cache_total{result}                   hit|miss
//   postern_backend_login_seconds{backend}                  histogram: connect to login answer
//   postern_backend_logins_total{backend,result}            ok|auth_failed|unavailable
//   postern_backend_state{backend,state}                    up/drained (1/0), sessions (at scrape)
//   postern_relayed_bytes_total{listener,direction}         client_to_server|server_to_client
//   postern_tls_handshakes_total{listener,version,resumed}  counter
//   postern_tls_handshake_failures_total{listener}          counter
//   postern_buffer_pool_bytes{pool}                         gauge: slabs held (small|bulk)
//   postern_connections_refused_total{reason}               caps hit (see Refusal)
//   postern_abuse_total{action}                             delayed|blocked
//   postern_redis_fallbacks_total{use}                      routing|abuse: Redis not usable
//   postern_config_reloads_total{result}                    ok|refused
//   postern_config_snapshot                                 gauge: the serial in use
//   postern_admin_actions_total{action} kick|drain|undrain|cache_clear|node_drain|node_undrain
//   postern_build_info{version}                             1

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "proxy/config.h"
#include "proxy/metrics.h"

namespace postern {

class BackendHealth;
struct Snapshot;

enum class StageLabel : uint8_t { kPrelogin, kRelay, kGateway };
enum class LoginResult : uint8_t { kOk, kAuthFailed, kAuthzFailed, kUnavailable, kBlocked };
enum class Refusal : uint8_t {
  kIpCap,           // limits.max_connections_per_ip
  kPreloginCap,     // limits.max_prelogin_sessions
  kSessionCap,      // limits.max_sessions
  kProxyUntrusted,  // a PROXY listener's peer not in trusted_networks
  kProxyPending,    // too many PROXY headers being read
  kOutOfFiles,      // accept failed for want of descriptors
};

struct ProxyMetrics {
  // Registers every family (the names are fixed: registration cannot fail).
  ProxyMetrics(MetricsRegistry& registry, size_t workers);
  MetricsRegistry& registry;
  size_t main_shard;  // the main loop's (admin, reloads)
  GaugeFamily sessions_open;
  CounterFamily sessions_total;
  CounterFamily logins;
  HistogramFamily directory_seconds;
  CounterFamily directory_cache;
  HistogramFamily backend_login_seconds;
  CounterFamily backend_logins;
  CounterFamily relayed_bytes;
  CounterFamily tls_handshakes;
  CounterFamily tls_failures;
  GaugeFamily pool_bytes;
  CounterFamily refused;
  CounterFamily abuse;
  CounterFamily redis_fallbacks;
  CounterFamily reloads;
  GaugeFamily snapshot;
  CounterFamily admin_actions;
  GaugeFamily build_info;
  CallbackRegistration backends;  // up / drained / sessions, read from the current snapshot
};

// One worker's handles.
struct WorkerMetrics {
  WorkerMetrics() = default;
  WorkerMetrics(ProxyMetrics& m, size_t shard, const Config& config);
  struct PerListener {
    std::array<Gauge, 3> open;      // by StageLabel
    std::array<Counter, 3> total;   // by StageLabel
    std::array<Counter, 5> logins;  // by LoginResult
    Counter bytes_up;               // client -> server
    Counter bytes_down;             // server -> client
    std::array<Counter, 4> tls;     // [TLSv1.3?][resumed?]
    Counter tls_failures;
  };
  std::vector<PerListener> listeners;  // by listener index (a reload keeps them)
  std::array<Counter, 6> refused;      // by Refusal
  Counter abuse_delayed;
  Counter abuse_blocked;
  Counter cache_hit;
  Counter cache_miss;
  Gauge pool_small;
  Gauge pool_bulk;
};

// The handles of one snapshot's directories and backends, on one worker.
struct ViewMetrics {
  ViewMetrics() = default;
  ViewMetrics(ProxyMetrics& m, size_t shard, const Config& config);
  absl::flat_hash_map<std::string, Histogram> directory_seconds;  // by directory name
  struct PerBackend {
    Histogram login_seconds;
    Counter ok;
    Counter auth_failed;
    Counter unavailable;
  };
  std::vector<PerBackend> backends;  // by index in config.backends
  PerBackend adhoc;                  // a directory's host:port, not a configured backend
  Counter redis_fallback_routing;    // the ring answered for want of Redis
  Counter redis_fallback_abuse;      // failed logins counted locally for want of Redis
};

}  // namespace postern
