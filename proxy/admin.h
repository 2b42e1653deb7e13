#pragma once

// The admin endpoint's routes (the HTTP server itself is proxy/admin_http.h),
// on the server's main loop, never on a worker's:
//
//   GET  /healthz                      200 while the process runs (no token)
//   GET  /readyz                       200 when ready, 503 while starting,
//                                      draining or stopping (no token)
//   GET  /metrics                      Prometheus text (proxy/metrics.h)
//   GET  /admin/sessions?user=&backend=&client_ip=
//                                      {"count":N,"sessions":[{id, user, client,
//                                      listener, protocol, stage, backend, tls,
//                                      bytes_in, bytes_out, age_ms, snapshot,
//                                      worker}...]}
//   POST /admin/kick?user=U            the user's sessions end at their next
//                                      safe point: {"kicked":N}
//   GET  /admin/backends               [{name, up, drained, sessions}...]
//   POST /admin/backends/drain?backend=B[&spread=30s]
//                                      no new sessions go to B; its sessions
//                                      end at safe points over `spread`
//                                      (admin.drain_spread): {"draining":N}
//   POST /admin/backends/undrain?backend=B
//   POST /admin/reload                 waits for the result: 200 {"result":
//                                      "ok","snapshot":N}, 422 {"error":...}
//   POST /admin/cache/clear[?user=U]   {"cleared":N}
//   POST /admin/drain, /admin/undrain  readiness false / true again (the
//                                      listeners stay open: a load balancer
//                                      takes the node out first)
//
// Every route but /healthz and /readyz needs "Authorization: Bearer" with
// the token of admin.token_file.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "protocol/buffer.h"
#include "proxy/admin_http.h"
#include "proxy/config.h"
#include "proxy/poller.h"

namespace postern {

class Server;
class MetricsRegistry;

class Admin {
 public:
  // Binds (before privileges are dropped) and registers the routes.
  // `metrics` outlives the admin endpoint.
  static absl::StatusOr<std::unique_ptr<Admin>> Create(Server& server, uv_loop_t* loop,
                                                       const AdminConfig& config,
                                                       MetricsRegistry& metrics);
  ~Admin();
  // The bound address ("127.0.0.1:9199").
  const std::string& address() const { return address_; }

 private:
  Admin(Server& server, uv_loop_t* loop, MetricsRegistry& metrics);
  absl::Status Routes();

  Server& server_;
  MetricsRegistry& metrics_;
  std::unique_ptr<Poller> poller_;
  BufferPool pool_{16 * 1024, 16};
  std::unique_ptr<AdminServer> http_;
  std::string address_;
};

}  // namespace postern
