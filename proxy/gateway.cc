#include "proxy/gateway.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "proxy/worker.h"

namespace postern {
namespace {

// Client bytes that may wait unread while the translator is busy (a command
// waiting for the backend, replies not yet drained): past it the client's
// socket is not read. POP3 command lines are at most a few hundred bytes.
constexpr size_t kMaxUnread = 16 * 1024;
// A client that left: the backend gets this long to store the \Seen flags
// and answer LOGOUT.
constexpr std::chrono::milliseconds kCleanupLimit{10'000};

}  // namespace

Gateway::Gateway(Worker& worker, Connection& client, Connection& backend, StageHost& host,
                 Pop3GatewayOptions options, std::vector<std::string> backend_capabilities,
                 size_t relay_high_watermark)
    : worker_(worker),
      client_(client),
      backend_(backend),
      host_(host),
      caps_(std::move(backend_capabilities)),
      gw_(*this, std::move(options)),
      out_(worker.bulk_pool()),
      high_watermark_(relay_high_watermark) {}

void Gateway::Start() {
  client_.set_handler(this);
  backend_.set_handler(this);
  backend_.input().set_pool(worker_.bulk_pool());
  cleanup_timer_.Init(worker_.loop());
  backend_.StartReading();
  traced_in_ = client_.input().size();  // traced before login
  // Commands the client pipelined behind PASS wait in its buffer: the
  // translator reads them once the maildrop is open.
  Step([this] {
    gw_.Start(caps_);
    caps_.clear();
    caps_.shrink_to_fit();
    gw_.OnClientData(client_.input());
  });
}

template <typename F>
void Gateway::Step(F&& call) {
  if (finished_) return;
  busy_ = true;
  call();
  bool wrote = Flush();
  // The translator goes on when the client drained while we were busy
  // (OnDrained came from inside the flush), and also when what this step
  // wrote went to the connection without passing its high watermark: the
  // translator stops once ClientBacklog() passes max_reply_backlog, and
  // ClientBacklog() counts out_, which the connection does not see; no
  // OnDrained would ever come for those bytes (pipelined commands behind a
  // RETR of more than 4 KiB then waited forever).
  while (!finished_ && !client_gone_ && (resume_ || (wrote && !client_.above_high_watermark()))) {
    resume_ = false;
    gw_.Resume(client_.input());
    wrote = Flush();
  }
  busy_ = false;
  if (!finished_) traced_in_ = client_.input().size();
  Settle();
}

bool Gateway::Flush() {
  if (out_.empty()) return false;
  if (client_gone_ || finished_) {
    out_.Clear();
    return false;
  }
  if (trace_ != nullptr) trace_->Relayed(false, out_);
  client_.Write(out_);
  return true;
}

void Gateway::Settle() {
  if (finished_) return;
  // Bodies stream with the relay's watermarks.
  if (client_.pending() > high_watermark_) {
    if (!backend_paused_) {
      backend_paused_ = true;
      backend_.StopReading();
    }
  } else if (backend_paused_) {
    backend_paused_ = false;
    backend_.StartReading();
  }
  if (client_gone_) return;
  // Unread commands stay bounded.
  if (client_.input().size() >= kMaxUnread) {
    client_.StopReading();
  } else {
    client_.StartReading();
  }
}

void Gateway::OnData(Connection& c) {
  if (finished_) return;
  host_.StageActivity();
  if (&c == &client_) {
    if (trace_ != nullptr) trace_->RelayedFrom(true, client_.input(), traced_in_);
    Step([this] { gw_.OnClientData(client_.input()); });
    return;
  }
  Step([this] {
    backend_.input().ForEachSlice([this](absl::string_view s) { gw_.OnBackendData(s); });
    backend_.input().Clear();
  });
}

void Gateway::OnDrained(Connection& c) {
  if (finished_ || &c != &client_) return;
  if (busy_) {
    resume_ = true;
    return;
  }
  Step([this] { gw_.Resume(client_.input()); });
}

void Gateway::OnEnd(Connection& c, absl::string_view reason) {
  if (finished_) return;
  if (&c == &backend_) {
    Step([this] { gw_.BackendGone(); });
    if (!finished_) host_.StageEnded(absl::StrCat("backend: ", reason));
    return;
  }
  // The client left: RFC 1939 section 6, nothing is deleted; the translator
  // stores the \Seen flags and logs out, bounded by the cleanup timer.
  client_gone_ = true;
  client_.StopReading();
  StartCleanupTimer();
  Step([this] { gw_.ClientGone(); });
}

void Gateway::IdleTimeout() {
  if (finished_ || client_gone_) return;
  client_gone_ = true;
  client_.StopReading();
  StartCleanupTimer();
  Step([this] { gw_.ClientGone("idle timeout"); });
}

void Gateway::StartCleanupTimer() {
  cleanup_timer_.Start(kCleanupLimit, [this] {
    if (!finished_) host_.StageEnded("gateway: backend cleanup timed out");
  });
}

void Gateway::Shutdown(absl::string_view notice, const char* reason) {
  if (finished_) return;
  shutdown_reason_ = reason;
  // POP3 sessions end after their current answer (the translator finishes
  // it, then sends the notice); the backend work after it is bounded.
  StartCleanupTimer();
  Step([this, notice] { gw_.Shutdown(notice); });
}

void Gateway::Finish() {
  finished_ = true;
  cleanup_timer_.Stop();
}

std::string Gateway::Describe() const {
  const Pop3Gateway::Counters& c = gw_.counters();
  return absl::StrCat("gateway messages=", c.messages, " retrieved=", c.retrieved,
                      " deleted=", c.deleted);
}

// Pop3GatewayHost

void Gateway::ToClient(absl::string_view bytes) {
  if (!client_gone_) out_.Append(bytes);
}

void Gateway::ToBackend(absl::string_view bytes) { backend_.Write(bytes); }

size_t Gateway::ClientBacklog() const { return client_.pending() + out_.size(); }

void Gateway::Finish(absl::string_view reason) {
  // From inside the translator: flush its last words first.
  Flush();
  if (finished_) return;
  // The translator ends a shut-down session with "server shutdown"; the
  // session says why it was shut down.
  host_.StageEnded(shutdown_reason_ != nullptr && reason == "server shutdown" ? shutdown_reason_
                                                                              : reason);
}

}  // namespace postern
