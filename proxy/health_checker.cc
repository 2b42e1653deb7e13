#include "proxy/health_checker.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/line_splitter.h"
#include "protocol/proxy_header.h"
#include "proxy/backend_health.h"
#include "proxy/worker.h"

namespace postern {

class HealthChecker::Probe final : public ConnectionHandler {
 public:
  Probe(HealthChecker& owner, const BackendConfig& b) : owner_(owner), backend_(b), lines_(1024) {}

  // `turn`: which of the backend's source addresses to connect from.
  bool Start(Worker& w, const Snapshot& snapshot, std::chrono::milliseconds timeout,
             uint32_t turn) {
    conn_ = Connection::Create(w.poller(), w.pool(), this);
    const SocketAddress* source =
        backend_.source_addresses.empty()
            ? nullptr
            : &backend_.source_addresses[turn % backend_.source_addresses.size()];
    int r = conn_->Connect(reinterpret_cast<const sockaddr*>(&backend_.imap.storage), source);
    if (r != 0) {
      why_ = absl::StrCat("connect: ", uv_strerror(r));
      return false;
    }
    tls_ =
        backend_.tls == BackendTls::kImplicit ? snapshot.backend_tls_for(backend_.name) : nullptr;
    timer_.Init(w.loop());
    timer_.Start(timeout, [this] { Finish(false, "no greeting in time"); });
    return true;
  }
  const BackendConfig& backend() const { return backend_; }
  const std::string& why() const { return why_; }

  // ConnectionHandler
  void OnConnected(Connection& c, int status) override {
    if (status != 0) {
      Finish(false, absl::StrCat("connect: ", uv_strerror(status)));
      return;
    }
    // A backend that expects a PROXY header (Dovecot's `haproxy = yes`
    // listeners) greets nobody without one: a v2 LOCAL header says this
    // connection is the proxy's own (PP 2.2), as HAProxy's checks do.
    if (backend_.send_proxy_v2) c.Write(BuildProxyV2Local());
    if (tls_ != nullptr) {
      const std::string& name = backend_.tls_name.empty() ? backend_.host : backend_.tls_name;
      if (!c.StartClientTls(*tls_, name, nullptr)) {
        Finish(false, "TLS could not start");
        return;
      }
    }
    c.StartReading();
  }
  void OnData(Connection& c) override {
    absl::string_view line;
    size_t consumed = 0;
    LineSplitter::Status st = lines_.Next(c.input(), &line, &consumed);
    if (st == LineSplitter::Status::kNeedMore) {
      c.input().Drain(consumed);
      return;
    }
    const bool ok = st == LineSplitter::Status::kLine && absl::StartsWith(line, "* OK");
    Finish(ok, ok ? "" : "bad greeting");
  }
  void OnDrained(Connection&) override {}
  void OnEnd(Connection&, absl::string_view reason) override {
    Finish(false, absl::StrCat("closed: ", reason));
  }

 private:
  void Finish(bool ok, std::string why) {
    if (finished_) return;
    finished_ = true;
    timer_.Stop();
    conn_.reset();  // a clean close; the backend sees a client that left
    owner_.Done(this, ok, why);
  }

  HealthChecker& owner_;
  const BackendConfig& backend_;
  const TlsContext* tls_ = nullptr;
  ConnectionPtr conn_;
  Timer timer_;
  LineSplitter lines_;
  std::string why_;
  bool finished_ = false;
};

HealthChecker::HealthChecker(Worker& worker, std::shared_ptr<const Snapshot> snapshot)
    : worker_(worker),
      snapshot_(std::move(snapshot)),
      config_(*snapshot_->config),
      health_(*snapshot_->health) {}

HealthChecker::~HealthChecker() = default;

void HealthChecker::Start() {
  timer_.Init(worker_.loop());
  timer_.Start(config_.health.check_interval, [this] { Round(); });
}

void HealthChecker::Round() {
  for (const BackendConfig& b : config_.backends) {
    bool busy = false;
    for (const auto& p : probes_) busy = busy || &p->backend() == &b;
    if (busy) continue;  // the last check of it is still running
    auto p = std::make_unique<Probe>(*this, b);
    Probe* raw = p.get();
    probes_.push_back(std::move(p));
    if (!raw->Start(worker_, *snapshot_, config_.health.check_timeout, rounds_)) {
      Done(raw, false, raw->why());
    }
  }
  ++rounds_;
  timer_.Restart(config_.health.check_interval);
}

void HealthChecker::Done(Probe* probe, bool ok, const std::string& why) {
  if (BackendHealth::Slot* slot = health_.Find(probe->backend().name)) {
    if (ok) {
      health_.Succeeded(*slot);
    } else {
      health_.Failed(*slot, config_.health, absl::StrCat("health check: ", why));
    }
  }
  // We may be inside the probe's callbacks: it goes on a later turn.
  for (auto it = probes_.begin(); it != probes_.end(); ++it) {
    if (it->get() == probe) {
      Probe* raw = it->release();
      probes_.erase(it);
      worker_.Defer([raw] { delete raw; });
      break;
    }
  }
}

}  // namespace postern
