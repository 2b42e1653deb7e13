#pragma once

// After login a session runs one stage on its two connections: the byte
// Relay (proxy/relay.h) or, for a POP3 client on an IMAP-only backend, the
// POP3-to-IMAP gateway (proxy/gateway.h). The stage takes over both
// connections' events; the session keeps the connections, the timers and
// the log line (ARCHITECTURE.md, "The way one session travels").

#include <string>

#include "absl/strings/string_view.h"

namespace postern {

// What a stage needs from its session.
class StageHost {
 public:
  virtual ~StageHost() = default;
  // Bytes moved: the idle timeout starts again.
  virtual void StageActivity() = 0;
  // The stage is over (a side closed or failed, QUIT, a broken backend):
  // the session ends. Called at most once.
  virtual void StageEnded(absl::string_view reason) = 0;
  // The backend went away under a relayed session (not the client's
  // doing): the session may let the client go later (health.
  // disconnect_spread) instead of at once. The stage is finished by then.
  virtual void StageBackendLost(absl::string_view reason) { StageEnded(reason); }
};

class Stage {
 public:
  virtual ~Stage() = default;
  // Both connections are handed over: start moving bytes.
  virtual void Start() = 0;
  // The session was idle too long (timeouts.imap_idle / pop3_idle).
  virtual void IdleTimeout() = 0;
  // The session must end (the server stops, an administrator kicked the
  // user or drained the backend): `notice` (static text) is owed to the
  // client; the stage writes it where it cannot break what the client is
  // being sent, and then ends with `reason` (a string literal).
  virtual void Shutdown(absl::string_view notice, const char* reason) = 0;
  // The session ends now (from the session, possibly from inside one of
  // this stage's own callbacks): give back what must reach a side before
  // its connection is closed, and touch the connections no more.
  virtual void Finish() = 0;
  // For the session's log line ("relay", "splice", "gateway ...").
  virtual std::string Describe() const = 0;
};

}  // namespace postern
