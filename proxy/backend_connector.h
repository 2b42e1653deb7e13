#pragma once

// Logs a user in on a backend: TCP connect with a timeout, the greeting, the
// capabilities, optionally IMAP ID with the client's address, then LOGIN /
// AUTHENTICATE PLAIN (IMAP) or USER+PASS / AUTH PLAIN (POP3). The outcome and
// the logged-in connection go back to the session, which relays from then on.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "protocol/line_splitter.h"
#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/peer_address.h"
#include "proxy/uv_handle.h"

namespace postern {

struct LoginOutcome {
  enum class Kind { kOk, kAuthFailed, kUnavailable };
  Kind kind = Kind::kUnavailable;
  std::string code;          // the backend's response code, without brackets
  std::string text;          // the backend's human text
  std::string capabilities;  // IMAP: the post-login capability list
  std::string detail;        // why, for the session log
  // Failed before the login was sent (connect, greeting, capabilities):
  // another replica may be tried, and it counts against the backend's health.
  bool before_login = false;

  // A failure decided before or without a backend answer.
  static LoginOutcome Failure(Kind kind, std::string detail) {
    LoginOutcome o;
    o.kind = kind;
    o.detail = std::move(detail);
    return o;
  }
};

struct LoginRequest {
  enum class Mechanism {
    kConfigured,  // the backend's imap_login / pop3_login
    kPlain,       // AUTHENTICATE PLAIN / AUTH PLAIN whatever is configured (master logins)
    kXoauth2,     // the client's OAuth token, passed through (`password` is the token)
    kOauthbearer,
  };
  Mechanism mechanism = Mechanism::kConfigured;
  std::string user;
  std::string password;
  std::string authzid;       // SASL authorization identity, usually empty
  std::string imap_id_args;  // "(...)" to send as IMAP ID before login, or ""
};

// How the backend is reached, beyond its config, and who the real client is
// (for POP3 XCLIENT and the PROXY protocol v2 header).
struct BackendLink {
  const TlsContext* tls = nullptr;        // when backends[].tls is not none
  TlsSession* tls_session = nullptr;      // resumed from, and replaced by, this login
  const SocketAddress* source = nullptr;  // backends[].source_addresses, in turn
  PeerAddress client;                     // the client's address
  PeerAddress local;                      // where the client connected to
  std::string session_id;
  uint32_t ttl = 5;  // hops left (x-proxy-ttl / XCLIENT TTL)
  bool client_tls = false;
  std::string sni;
};

class BackendConnector : public ConnectionHandler {
 public:
  using Done = std::function<void(LoginOutcome, ConnectionPtr)>;

  BackendConnector(Poller& poller, BufferPool& pool, const BackendConfig& backend,
                   Protocol protocol, const TimeoutsConfig& timeouts, LoginRequest request,
                   BackendLink link, Done done);
  ~BackendConnector() override;

  // Starts connecting; `done` is called later, exactly once, unless the
  // object is destroyed first (then nothing is called).
  void Start();

  // ConnectionHandler
  void OnConnected(Connection& c, int status) override;
  void OnData(Connection& c) override;
  void OnDrained(Connection&) override {}
  void OnEnd(Connection& c, absl::string_view reason) override;
  void OnTlsReady(Connection& c) override;

 private:
  enum class State {
    kConnecting,
    kGreeting,
    kCapability,      // IMAP: waiting for CAPABILITY's tagged answer
    kStartTls,        // STARTTLS / STLS sent, waiting for its OK
    kTlsHandshake,    // TLS toward the backend being set up
    kPop3Capa,        // POP3: CAPA sent (does the backend take XCLIENT?)
    kPop3Xclient,     // POP3: XCLIENT sent (Dovecot: the real client's address)
    kLogin,           // waiting for the login answer (or a "+" continuation)
    kPostCapability,  // IMAP: logged in, asking for capabilities
    kPop3User,        // POP3: USER sent
    kPop3Pass,        // POP3: PASS or AUTH sent
    kDone,
  };

  void HandleImapLine(absl::string_view line);
  void HandlePop3Line(absl::string_view line);
  void SendImapLogin();
  // IMAP: the capabilities are known: STARTTLS if it is due, else the login.
  void AfterCapabilities();
  // POP3: greeted (and TLS up if asked): XCLIENT if offered, else the login.
  // POP3, after the greeting (and STLS): CAPA when the greeting did not
  // offer XCLIENT, then XCLIENT when offered, then the login.
  void AfterPop3Greeting();
  void SendPop3Xclient();
  void SendPop3Login();
  bool StartTls();
  void SendNextChunk();
  // Writes a command; lines already buffered cannot be its answer (stale_).
  void Send(absl::string_view command);
  void Finish(LoginOutcome outcome);
  void Unavailable(std::string detail);
  bool HasCap(absl::string_view cap) const;
  // The backend's address for our protocol.
  const SocketAddress& target() const {
    return protocol_ == Protocol::kImap ? backend_.imap : backend_.pop3;
  }

  Poller& poller_;
  BufferPool& pool_;
  const BackendConfig& backend_;
  Protocol protocol_;
  const TimeoutsConfig& timeouts_;
  LoginRequest request_;
  BackendLink link_;
  Done done_;
  ConnectionPtr conn_;
  Timer timer_;
  LineSplitter splitter_;
  State state_ = State::kConnecting;
  std::vector<std::string> caps_;    // backend capabilities (IMAP), uppercased
  std::vector<std::string> chunks_;  // login command parts split at sync literals
  size_t next_chunk_ = 0;
  std::string login_tag_;
  std::string post_caps_;
  LoginOutcome pending_;   // the login answer while post-login CAPABILITY runs
  size_t stale_ = 0;       // input bytes that arrived before our last command
  bool canceled_ = false;  // an unexpected continuation was answered (once)
  bool oauth_ = false;     // an OAuth token is passed through (RFC 7628 error flow)
  bool tls_started_ = false;
  bool xclient_ = false;       // POP3: the greeting or CAPA offered XCLIENT (Dovecot, trusted)
  bool capa_listing_ = false;  // POP3: inside CAPA's multi-line answer
  uint32_t capa_lines_ = 0;    // its lines so far (bounded)
};

}  // namespace postern
