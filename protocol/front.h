#pragma once

// The client front: what a session says to a client before login (the
// greeting, the not-authenticated IMAP state and the POP3 AUTHORIZATION
// state, SASL exchanges), as pure protocol logic. A Front reads commands
// from a Buffer and talks to whatever drives it through FrontHost: the
// proxy's Session (proxy/session.h), a unit test or a fuzzer. It knows
// nothing of sockets, TLS engines, timers or backends.
//
// The driver calls ProcessOne() while it wants more commands handled; the
// front handles at most one command (or SASL response line) per call, so the
// driver can stop between two commands, for instance while the replies
// queued toward a client that does not read pass a bound (ARCHITECTURE.md,
// "Every stage is bounded"). A login is asynchronous: Login() on the host,
// later LoginSucceeded() or LoginFailed() on the front.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "protocol/buffer.h"

namespace postern {

// What a client logged in with.
struct Credentials {
  enum class Mechanism {
    kLogin,        // IMAP LOGIN, POP3 USER + PASS
    kPlain,        // SASL PLAIN (RFC 4616)
    kSaslLogin,    // SASL LOGIN (draft-murchison-sasl-login)
    kXoauth2,      // SASL XOAUTH2 (Google's): `secret` is the bearer token
    kOauthbearer,  // SASL OAUTHBEARER (RFC 7628): `secret` is the bearer token
  };
  Mechanism mechanism = Mechanism::kLogin;
  std::string authcid;  // the authentication identity: whose secret this is
  // The authorization identity (SASL PLAIN): whose mailbox to open. Empty
  // when the client asked for none (RFC 4616 section 2: act as authcid).
  std::string authzid;
  std::string secret;  // the password, or the OAuth bearer token

  bool oauth() const {
    return mechanism == Mechanism::kXoauth2 || mechanism == Mechanism::kOauthbearer;
  }
  // The identity whose mailbox is opened: authzid when given, else authcid.
  const std::string& mailbox_user() const { return authzid.empty() ? authcid : authzid; }
  // An authorization identity other than the authentication identity.
  bool proxy_authorization() const { return !authzid.empty() && authzid != authcid; }
};

// The answer to a login, as the client should hear it.
struct LoginReply {
  enum class Kind {
    kOk,
    kAuthFailed,   // wrong credentials (or the backend said NO)
    kAuthzFailed,  // the authorization identity was refused (RFC 5530 AUTHORIZATIONFAILED)
    kUnavailable,  // temporary: the backend or a directory is down (RFC 5530 UNAVAILABLE)
  };
  Kind kind = Kind::kUnavailable;
  // A response code to pass on (without brackets: "EXPIRED", "SYS/TEMP"),
  // already checked to be a plain atom; "" for the front's own.
  std::string code;
  // Text to pass on (already stripped of control characters), "" for ours.
  std::string text;
  // IMAP, on success: the capabilities after login, for the tagged OK.
  std::string capabilities;
};

struct FrontOptions {
  std::string hostname = "postern";
  // The connection is encrypted now (implicit TLS).
  bool tls = false;
  // STARTTLS / STLS may be offered (a starttls listener before TLS).
  bool starttls = false;
  // LOGIN/USER/AUTH before TLS (listeners[].allow_plaintext_auth).
  bool allow_plaintext_auth = false;
  // Bytes of one command line (IMAP: literal payloads excluded).
  size_t max_line = 64 * 1024;
  // IMAP: literal payload bytes of one command before login.
  size_t max_literal = 64 * 1024;
  // SASL response lines (AUTHENTICATE / AUTH continuations).
  size_t max_sasl_line = 64 * 1024;
  // Bad commands answered before the session is closed: the next one past
  // the budget closes it (limits.error_budget).
  uint32_t error_budget = 10;
  // Failed logins before the session is closed (limits.max_auth_attempts).
  uint32_t max_auth_attempts = 3;
  // The client is a proxy Postern trusts (listeners[].trusted_networks):
  // its IMAP ID forwarding fields (x-originating-ip/port, x-proxy-ttl) are
  // believed.
  bool trusted = false;
  // SASL mechanisms offered (AUTHENTICATE, AUTH), in this order: any of
  // PLAIN, LOGIN, XOAUTH2, OAUTHBEARER (listeners[].sasl_mechanisms).
  std::vector<Credentials::Mechanism> sasl = {Credentials::Mechanism::kPlain,
                                              Credentials::Mechanism::kSaslLogin};
};

class FrontHost {
 public:
  virtual ~FrontHost() = default;
  // Bytes for the client, in order.
  virtual void Send(absl::string_view bytes) = 0;
  // STARTTLS / STLS was answered with OK: every byte the client sent after
  // the command must be dropped (RFC 9051 section 6.2.1, RFC 2595 section
  // 3.1: never act on bytes pipelined before the handshake, CVE-2011-0411)
  // and TLS starts. False when TLS could not start: the front then ends the
  // session (nothing may go on in plaintext after "OK Begin TLS").
  virtual bool StartTls() = 0;
  // A login: answered later with LoginSucceeded() / LoginFailed(), never
  // from inside this call. The front handles no command until then.
  virtual void Login(Credentials credentials) = 0;
  // The session is over (after what was sent): LOGOUT, QUIT, too many
  // errors, a fatal protocol error. `reason` is for the log.
  virtual void End(absl::string_view reason) = 0;
};

class Front {
 public:
  enum class Step {
    kNeedMore,  // no complete command in the buffer
    kHandled,   // one command or line handled: call again
    kStopped,   // waiting for a login, logged in, or ended: do not call now
  };

  virtual ~Front() = default;

  // Sends the greeting.
  virtual void Start() = 0;
  // Handles at most one command (or SASL response line) from the front of
  // `in`, draining what it consumed.
  virtual Step ProcessOne(Buffer& in) = 0;
  // The login asked for with FrontHost::Login succeeded: the success reply is
  // sent, and the front is done (logged_in()). Bytes the client pipelined
  // after the login command stay in the buffer for the next stage.
  virtual void LoginSucceeded(const LoginReply& reply) = 0;
  // It failed: the refusal is sent, and commands are handled again (or the
  // session ends after max_auth_attempts).
  virtual void LoginFailed(const LoginReply& reply) = 0;
  // TLS is active on the connection now (after FrontHost::StartTls, once
  // the host has pushed the engine): capabilities change.
  virtual void TlsStarted() = 0;

  bool waiting_for_login() const { return waiting_login_; }
  bool logged_in() const { return logged_in_; }
  // What a trusted proxy in front said about its client (options.trusted):
  // Dovecot's forwarding fields, lower case, as IMAP ID names them
  // (x-originating-ip, x-originating-port, x-proxy-ttl; POP3's XCLIENT
  // ADDR, PORT and TTL are given these names too).
  const std::vector<std::pair<std::string, std::string>>& trusted_id() const { return trusted_id_; }
  bool ended() const { return ended_; }
  // Commands pipelined behind the login stay in the buffer: after a
  // success they belong to the backend (RFC 5161 section 3.1 allows ENABLE
  // right after LOGIN).

 protected:
  explicit Front(FrontHost& host, FrontOptions options)
      : host_(host), options_(std::move(options)) {}

  bool AuthAllowed() const { return options_.tls || options_.allow_plaintext_auth; }
  // The mechanism named `name` if it is offered here.
  bool Offered(absl::string_view name, Credentials::Mechanism* mech) const;
  // "PLAIN LOGIN ..." as offered (`prefix` before each name: "AUTH=" for IMAP).
  std::string MechanismList(absl::string_view prefix, absl::string_view separator) const;
  bool CanStartTls() const { return options_.starttls && !options_.tls; }
  // Counts a bad command. False (the session is ended, after `bye` is sent)
  // when the error budget was already spent: error_budget errors are
  // answered, the next one closes.
  bool SpendError(absl::string_view bye);
  void EndSession(absl::string_view reason) {
    ended_ = true;
    host_.End(reason);
  }

  FrontHost& host_;
  FrontOptions options_;
  std::vector<std::pair<std::string, std::string>> trusted_id_;
  uint32_t errors_ = 0;
  uint32_t auth_failures_ = 0;
  // The login in flight is an OAuth one (its refusal takes one more round
  // trip, RFC 7628 section 3.2.2).
  bool oauth_login_ = false;
  bool waiting_login_ = false;
  bool logged_in_ = false;
  bool ended_ = false;
};

// One-line notices a driver sends before it closes a session itself.
enum class Notice {
  kTimeout,   // inactivity before login
  kDeadline,  // the whole pre-login phase took too long
  kShutdown,  // the server stops
  kIpCap,     // too many connections from the client's address
  kBusy,      // too many sessions before login on this worker
  kKicked,    // an administrator ended the user's sessions
  kDrained,   // the backend is being drained (admin API)
};
// "* BYE ...\r\n" (IMAP) or "-ERR ...\r\n" (POP3). Refusals carry the
// RFC 5530 UNAVAILABLE / RFC 3206 SYS/TEMP codes: come back later.
absl::string_view NoticeText(bool imap, Notice notice);

// Text from a backend or a directory for a client reply: control bytes
// dropped, bytes outside ASCII made '?', at most `max` bytes (RFC 2449 section 4: a POP3 first line
// is at most 512 octets; DIGEST e.21).
std::string SanitizeReplyText(absl::string_view text, size_t max = 400);
// A response code a backend gave, if it is safe to repeat: ATOM-CHARs and
// '/' only (RFC 9051 section 9 resp-text-code atoms, RFC 2449 section 8
// "SYS/TEMP"), at most 64 bytes. "" otherwise.
std::string SanitizeResponseCode(absl::string_view code);
// A backend's capability list for "[CAPABILITY ...]": only names that are
// atoms (RFC 9051 section 9 capability = atom), single spaces.
std::string SanitizeCapabilities(absl::string_view caps);

}  // namespace postern
