#include "proxy/proxy_metrics.h"

#include <cstdio>
#include <cstdlib>

#include "proxy/version.h"

namespace postern {
namespace {

template <typename T>
T Must(absl::StatusOr<T> r) {
  if (!r.ok()) {
    // A bad name or label in this file: a programming error, caught by
    // every test run.
    std::fprintf(stderr, "metrics: %s\n", std::string(r.status().message()).c_str());
    std::abort();
  }
  return *std::move(r);
}

constexpr const char* kStages[] = {"prelogin", "relay", "gateway"};
constexpr const char* kLoginResults[] = {"ok", "auth_failed", "authz_failed", "unavailable",
                                         "blocked"};
constexpr const char* kRefusals[] = {"ip_cap",          "prelogin_cap",  "session_cap",
                                     "proxy_untrusted", "proxy_pending", "out_of_files"};

// Seconds: 1 ms to about 33 s.
std::vector<double> LatencyBounds() { return MetricsRegistry::ExponentialBounds(0.001, 2, 16); }

}  // namespace

ProxyMetrics::ProxyMetrics(MetricsRegistry& r, size_t workers)
    : registry(r),
      main_shard(workers),
      sessions_open(Must(r.AddGauge("postern_sessions_open",
                                    "Sessions open, by listener, protocol and stage.",
                                    {"listener", "protocol", "stage"}))),
      sessions_total(Must(r.AddCounter("postern_sessions_total",
                                       "Sessions that reached a stage (prelogin: every session "
                                       "accepted), by listener, protocol and stage.",
                                       {"listener", "protocol", "stage"}))),
      logins(Must(r.AddCounter("postern_logins_total", "Logins by listener and result.",
                               {"listener", "result"}))),
      directory_seconds(Must(r.AddHistogram("postern_directory_lookup_seconds",
                                            "Directory lookups (not answered from the cache).",
                                            {"directory"}, LatencyBounds()))),
      directory_cache(Must(r.AddCounter("postern_directory_cache_total",
                                        "Directory answer cache lookups by result.", {"result"}))),
      backend_login_seconds(
          Must(r.AddHistogram("postern_backend_login_seconds",
                              "Backend logins, from the connect to the login's answer, by backend.",
                              {"backend"}, LatencyBounds()))),
      backend_logins(
          Must(r.AddCounter("postern_backend_logins_total", "Backend logins by backend and result.",
                            {"backend", "result"}))),
      relayed_bytes(Must(r.AddCounter("postern_relayed_bytes_total",
                                      "Bytes between clients and Postern by listener and "
                                      "direction (TLS payload, after login and before).",
                                      {"listener", "direction"}))),
      tls_handshakes(Must(r.AddCounter("postern_tls_handshakes_total",
                                       "Client TLS handshakes done, by listener, version and "
                                       "whether the session was resumed.",
                                       {"listener", "version", "resumed"}))),
      tls_failures(
          Must(r.AddCounter("postern_tls_handshake_failures_total",
                            "Client TLS handshakes that did not complete.", {"listener"}))),
      pool_bytes(Must(r.AddGauge("postern_buffer_pool_bytes",
                                 "Bytes of buffer slabs held by the workers (in use and cached).",
                                 {"pool"}))),
      refused(Must(r.AddCounter("postern_connections_refused_total",
                                "Connections refused by a cap, by reason.", {"reason"}))),
      abuse(Must(r.AddCounter("postern_abuse_total",
                              "Failed logins answered late (delayed) or logins refused "
                              "(blocked) by the abuse limits.",
                              {"action"}))),
      redis_fallbacks(Must(r.AddCounter("postern_redis_fallbacks_total",
                                        "Times Redis was not usable: overrides (routing, the "
                                        "ring answered) or shared abuse counters (abuse, local "
                                        "counts used).",
                                        {"use"}))),
      reloads(Must(r.AddCounter("postern_config_reloads_total",
                                "Config and file reloads by result.", {"result"}))),
      snapshot(Must(r.AddGauge("postern_config_snapshot",
                               "The serial of the config snapshot new sessions use."))),
      admin_actions(Must(
          r.AddCounter("postern_admin_actions_total", "Admin API actions by action.", {"action"}))),
      build_info(Must(r.AddGauge("postern_build_info", "Postern's version.", {"version"}))) {
  build_info.Get(main_shard, {POSTERN_VERSION}).Set(1);
  for (const char* result : {"ok", "refused"}) reloads.Get(main_shard, {result});
  for (const char* action :
       {"kick", "drain", "undrain", "cache_clear", "node_drain", "node_undrain"}) {
    admin_actions.Get(main_shard, {action});
  }
}

WorkerMetrics::WorkerMetrics(ProxyMetrics& m, size_t shard, const Config& config) {
  for (const ListenerConfig& l : config.listeners) {
    PerListener p;
    const char* proto = ProtocolName(l.protocol);
    for (size_t s = 0; s < 3; ++s) {
      // A POP3 listener's sessions go to the relay or the gateway; IMAP's
      // never to the gateway.
      if (s == 2 && l.protocol == Protocol::kImap) continue;
      p.open[s] = m.sessions_open.Get(shard, {l.name, proto, kStages[s]});
      p.total[s] = m.sessions_total.Get(shard, {l.name, proto, kStages[s]});
    }
    for (size_t i = 0; i < 5; ++i) p.logins[i] = m.logins.Get(shard, {l.name, kLoginResults[i]});
    p.bytes_up = m.relayed_bytes.Get(shard, {l.name, "client_to_server"});
    p.bytes_down = m.relayed_bytes.Get(shard, {l.name, "server_to_client"});
    if (l.tls != TlsMode::kNone) {
      p.tls[0] = m.tls_handshakes.Get(shard, {l.name, "TLSv1.2", "false"});
      p.tls[1] = m.tls_handshakes.Get(shard, {l.name, "TLSv1.2", "true"});
      p.tls[2] = m.tls_handshakes.Get(shard, {l.name, "TLSv1.3", "false"});
      p.tls[3] = m.tls_handshakes.Get(shard, {l.name, "TLSv1.3", "true"});
      p.tls_failures = m.tls_failures.Get(shard, {l.name});
    }
    listeners.push_back(p);
  }
  for (size_t i = 0; i < refused.size(); ++i) refused[i] = m.refused.Get(shard, {kRefusals[i]});
  abuse_delayed = m.abuse.Get(shard, {"delayed"});
  abuse_blocked = m.abuse.Get(shard, {"blocked"});
  cache_hit = m.directory_cache.Get(shard, {"hit"});
  cache_miss = m.directory_cache.Get(shard, {"miss"});
  pool_small = m.pool_bytes.Get(shard, {"small"});
  pool_bulk = m.pool_bytes.Get(shard, {"bulk"});
}

ViewMetrics::ViewMetrics(ProxyMetrics& m, size_t shard, const Config& config) {
  directory_seconds["passthrough"] = m.directory_seconds.Get(shard, {"passthrough"});
  for (const DirectoryConfig& d : config.directories) {
    directory_seconds[d.name] = m.directory_seconds.Get(shard, {d.name});
  }
  auto per = [&](const std::string& name) {
    PerBackend b;
    b.login_seconds = m.backend_login_seconds.Get(shard, {name});
    b.ok = m.backend_logins.Get(shard, {name, "ok"});
    b.auth_failed = m.backend_logins.Get(shard, {name, "auth_failed"});
    b.unavailable = m.backend_logins.Get(shard, {name, "unavailable"});
    return b;
  };
  for (const BackendConfig& b : config.backends) backends.push_back(per(b.name));
  // A directory may name any host:port: one series for all of them (the
  // label never takes a value a peer chose).
  adhoc = per("_directory_host");
  if (config.redis.enabled) {
    redis_fallback_routing = m.redis_fallbacks.Get(shard, {"routing"});
    redis_fallback_abuse = m.redis_fallbacks.Get(shard, {"abuse"});
  }
}

}  // namespace postern
