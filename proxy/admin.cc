#include "proxy/admin.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "proxy/metrics.h"
#include "proxy/server.h"

namespace postern {
namespace {

// "30s", "500ms", "2m", or milliseconds; false when it is none of them.
bool ParseSpread(absl::string_view text, std::chrono::milliseconds* out) {
  uint64_t unit = 1;
  if (absl::ConsumeSuffix(&text, "ms")) {
    unit = 1;
  } else if (absl::ConsumeSuffix(&text, "s")) {
    unit = 1000;
  } else if (absl::ConsumeSuffix(&text, "m")) {
    unit = 60'000;
  }
  uint64_t n = 0;
  if (text.empty() || !absl::SimpleAtoi(text, &n) || n > 24ull * 3600 * 1000 / unit) return false;
  *out = std::chrono::milliseconds(n * unit);
  return true;
}

std::string Param(const AdminRequest& r, absl::string_view name) {
  const std::string* v = r.Param(name);
  return v == nullptr ? std::string() : *v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Admin>> Admin::Create(Server& server, uv_loop_t* loop,
                                                     const AdminConfig& config,
                                                     MetricsRegistry& metrics) {
  std::unique_ptr<Admin> a(new Admin(server, loop, metrics));
  AdminServerOptions o;
  o.address = config.address.text;
  o.token_file = config.token_file;
  auto http = AdminServer::Create(*a->poller_, a->pool_, std::move(o));
  if (!http.ok()) {
    return absl::Status(http.status().code(),
                        absl::StrCat("admin.address: ", http.status().message()));
  }
  a->http_ = *std::move(http);
  // The bound address (the port may have been 0).
  const std::string& text = config.address.text;
  a->address_ = absl::StrCat(text.substr(0, text.rfind(':')), ":", a->http_->port());
  absl::Status st = a->Routes();
  if (!st.ok()) return st;
  return a;
}

Admin::Admin(Server& server, uv_loop_t* loop, MetricsRegistry& metrics)
    : server_(server), metrics_(metrics), poller_(std::make_unique<Poller>(loop)) {}

Admin::~Admin() {
  http_.reset();
  poller_.reset();
}

absl::Status Admin::Routes() {
  Server& s = server_;
  auto add = [&](absl::string_view method, absl::string_view path, AdminServer::Handler h) {
    return http_->Handle(method, path, std::move(h));
  };
  absl::Status st;
  auto check = [&](absl::Status next) {
    if (st.ok()) st = std::move(next);
  };

  check(add("GET", "/healthz", [](const AdminRequest&, AdminResponder r) {
    r.Respond(AdminResponse::Text(200, "ok\n"));
  }));
  check(add("GET", "/readyz", [&s](const AdminRequest&, AdminResponder r) {
    if (s.ready()) {
      r.Respond(AdminResponse::Text(200, "ready\n"));
    } else {
      r.Respond(AdminResponse::Text(
          503, s.stopping() ? "stopping\n" : (s.draining() ? "draining\n" : "starting\n")));
    }
  }));
  check(add("GET", "/metrics", [this](const AdminRequest&, AdminResponder r) {
    AdminResponse resp;
    resp.status = 200;
    resp.content_type = std::string(kPrometheusContentType);
    resp.body = metrics_.Scrape();
    r.Respond(std::move(resp));
  }));
  check(add("GET", "/admin/sessions", [&s](const AdminRequest& req, AdminResponder r) {
    SessionFilter f;
    f.user = Param(req, "user");
    f.backend = Param(req, "backend");
    f.client_ip = Param(req, "client_ip");
    auto shared = std::make_shared<AdminResponder>(std::move(r));
    s.ListSessions(f, [shared](std::vector<SessionInfo> all) {
      JsonWriter j;
      j.BeginObject().Key("count").Uint(all.size()).Key("sessions").BeginArray();
      for (const SessionInfo& i : all) {
        j.BeginObject()
            .Key("id")
            .String(i.id)
            .Key("user")
            .String(i.user)
            .Key("client")
            .String(i.client)
            .Key("listener")
            .String(i.listener)
            .Key("protocol")
            .String(i.protocol)
            .Key("stage")
            .String(i.stage)
            .Key("backend")
            .String(i.backend)
            .Key("tls")
            .String(i.tls)
            .Key("bytes_in")
            .Uint(i.bytes_in)
            .Key("bytes_out")
            .Uint(i.bytes_out)
            .Key("age_ms")
            .Uint(i.age_ms)
            .Key("snapshot")
            .Uint(i.snapshot)
            .Key("worker")
            .Int(i.worker)
            .EndObject();
      }
      j.EndArray().EndObject();
      shared->Respond(AdminResponse::Json(200, std::move(j).Take()));
    });
  }));
  check(add("POST", "/admin/kick", [&s](const AdminRequest& req, AdminResponder r) {
    const std::string user = Param(req, "user");
    if (user.empty()) {
      r.Respond(AdminResponse::Error(400, "user= is required"));
      return;
    }
    auto shared = std::make_shared<AdminResponder>(std::move(r));
    s.Kick(user, [shared](size_t n) {
      JsonWriter j;
      j.BeginObject().Key("kicked").Uint(n).EndObject();
      shared->Respond(AdminResponse::Json(200, std::move(j).Take()));
    });
  }));
  check(add("GET", "/admin/backends", [&s](const AdminRequest&, AdminResponder r) {
    JsonWriter j;
    j.BeginObject().Key("backends").BeginArray();
    const Snapshot& snap = *s.snapshot();
    for (const BackendConfig& b : snap.cfg().backends) {
      const BackendHealth::Slot* slot = snap.health->Find(b.name);
      if (slot == nullptr) continue;
      j.BeginObject()
          .Key("name")
          .String(b.name)
          .Key("up")
          .Bool(snap.health->Up(*slot))
          .Key("drained")
          .Bool(slot->drained.load())
          .Key("sessions")
          .Int(slot->sessions.load())
          .EndObject();
    }
    j.EndArray().EndObject();
    r.Respond(AdminResponse::Json(200, std::move(j).Take()));
  }));
  for (bool drain : {true, false}) {
    check(add("POST", drain ? "/admin/backends/drain" : "/admin/backends/undrain",
              [&s, drain](const AdminRequest& req, AdminResponder r) {
                const std::string name = Param(req, "backend");
                if (name.empty()) {
                  r.Respond(AdminResponse::Error(400, "backend= is required"));
                  return;
                }
                std::chrono::milliseconds spread = s.snapshot()->cfg().admin.drain_spread;
                if (const std::string* sp = req.Param("spread");
                    sp != nullptr && !ParseSpread(*sp, &spread)) {
                  r.Respond(AdminResponse::Error(400, "spread= must be like 30s, 500ms or 2m"));
                  return;
                }
                auto shared = std::make_shared<AdminResponder>(std::move(r));
                absl::Status st = s.DrainBackend(name, drain, spread, [shared, drain](size_t n) {
                  JsonWriter j;
                  j.BeginObject().Key(drain ? "draining" : "undrained").Uint(n).EndObject();
                  shared->Respond(AdminResponse::Json(200, std::move(j).Take()));
                });
                if (!st.ok()) shared->Respond(AdminResponse::Error(404, st.message()));
              }));
  }
  check(add("POST", "/admin/reload", [&s](const AdminRequest&, AdminResponder r) {
    auto shared = std::make_shared<AdminResponder>(std::move(r));
    s.Reload(Server::ReloadKind::kConfig, [shared, &s](absl::Status st) {
      if (!st.ok()) {
        shared->Respond(AdminResponse::Error(422, st.message()));
        return;
      }
      JsonWriter j;
      j.BeginObject().Key("result").String("ok").Key("snapshot").Uint(s.snapshot()->serial);
      j.EndObject();
      shared->Respond(AdminResponse::Json(200, std::move(j).Take()));
    });
  }));
  check(add("POST", "/admin/cache/clear", [&s](const AdminRequest& req, AdminResponder r) {
    JsonWriter j;
    j.BeginObject().Key("cleared").Uint(s.ClearCache(Param(req, "user"))).EndObject();
    r.Respond(AdminResponse::Json(200, std::move(j).Take()));
  }));
  for (bool drain : {true, false}) {
    check(add("POST", drain ? "/admin/drain" : "/admin/undrain",
              [&s, drain](const AdminRequest&, AdminResponder r) {
                s.SetDraining(drain);
                JsonWriter j;
                j.BeginObject().Key("ready").Bool(s.ready()).EndObject();
                r.Respond(AdminResponse::Json(200, std::move(j).Take()));
              }));
  }
  return st;
}

}  // namespace postern
