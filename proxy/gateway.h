#pragma once

// The POP3-to-IMAP gateway stage: a POP3 client on a backend that is served
// over IMAP (backends[].pop3_mode: gateway). The translation is pure code in
// protocol/pop3_gateway.h; this stage only drives it: client and backend
// bytes in, its output out, with the same bounds as the rest of Postern:
//  - client commands are read only while its replies stay under
//    limits.max_pending_replies (the translator checks ClientBacklog()), and
//    at most kMaxUnread bytes of them wait unread (then the socket is not
//    read);
//  - message bodies stream with the relay's watermarks: past
//    limits.relay_high_watermark queued toward the client the backend is not
//    read until the client drains, so a 100 MiB RETR to a slow reader holds
//    a few hundred KiB.
// A client that leaves still gets its \Seen flags stored and the backend a
// LOGOUT, within kCleanupLimit.

#include <string>
#include <vector>

#include "protocol/buffer.h"
#include "protocol/pop3_gateway.h"
#include "proxy/connection.h"
#include "proxy/session_trace.h"
#include "proxy/stage.h"
#include "proxy/uv_handle.h"

namespace postern {

class Worker;

class Gateway final : public Stage, public ConnectionHandler, private Pop3GatewayHost {
 public:
  Gateway(Worker& worker, Connection& client, Connection& backend, StageHost& host,
          Pop3GatewayOptions options, std::vector<std::string> backend_capabilities,
          size_t relay_high_watermark);

  // Stage
  void Start() override;
  void Shutdown(absl::string_view notice, const char* reason) override;
  // Before Start(): the session is traced (log.trace_users): the client's
  // side of the dialogue is written.
  void set_trace(SessionTrace* trace) { trace_ = trace; }
  // RFC 1939 section 3: the session closes without UPDATE; the \Seen flags
  // are stored and the backend logged out first, as after a disconnect.
  void IdleTimeout() override;
  void Finish() override;
  std::string Describe() const override;

  // ConnectionHandler
  void OnData(Connection& c) override;
  void OnDrained(Connection& c) override;
  void OnEnd(Connection& c, absl::string_view reason) override;

 private:
  // Pop3GatewayHost
  void ToClient(absl::string_view bytes) override;
  void ToBackend(absl::string_view bytes) override;
  size_t ClientBacklog() const override;
  void Finish(absl::string_view reason) override;

  // Runs one call into the translator, then flushes what it produced and
  // settles reading on both sides; drains that happened meanwhile resume it.
  template <typename F>
  void Step(F&& call);
  // Hands out_ to the client; true when there was something to write.
  bool Flush();
  void Settle();
  void StartCleanupTimer();

  Worker& worker_;
  Connection& client_;
  Connection& backend_;
  StageHost& host_;
  std::vector<std::string> caps_;
  Pop3Gateway gw_;
  Buffer out_;  // what the translator produced during the current step
  Timer cleanup_timer_;
  size_t high_watermark_;
  bool busy_ = false;            // inside Step
  bool resume_ = false;          // the client drained during a step
  bool backend_paused_ = false;  // the client's queue passed the high watermark
  bool client_gone_ = false;
  bool finished_ = false;
  const char* shutdown_reason_ = nullptr;  // Shutdown(): why the session ends
  SessionTrace* trace_ = nullptr;
  size_t traced_in_ = 0;  // client input bytes already traced
};

}  // namespace postern
