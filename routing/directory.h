#pragma once

// Who the user is, and what to tell the backend: the directory answers a
// login before any backend sees it (ARCHITECTURE.md: Directory::Lookup,
// asynchronous and cancellable). Implementations: passthrough (the backend
// decides, today's behaviour), passwd-file (Dovecot's format, hashes checked
// on the libuv thread pool), auth-http (nginx's auth_http protocol over
// keep-alive HTTP/1.1).
//
// Threads: a Directory belongs to one worker loop (auth-http holds that
// worker's connections); what it shares with other workers (a passwd-file
// snapshot) is immutable or locked. Every answer runs on the worker's loop,
// never inside Start(), at most once, and never after the Lookup handle was
// destroyed: a session that ends (client gone, timeout, shutdown) drops its
// handle and no answer can reach it, whatever thread or I/O callback the
// directory was waiting on.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace postern {

struct DirectoryRequest {
  enum class Mechanism {
    kPlain,        // IMAP LOGIN, POP3 USER/PASS, SASL PLAIN (nginx Auth-Method: plain)
    kLogin,        // SASL LOGIN (nginx: login)
    kXoauth2,      // SASL XOAUTH2: `secret` is the bearer token
    kOauthbearer,  // SASL OAUTHBEARER (RFC 7628): `secret` is the bearer token
  };
  Mechanism mechanism = Mechanism::kPlain;
  std::string user;      // the authentication identity, as the client sent it
  std::string authzid;   // another identity to act as (SASL), or ""
  std::string secret;    // the password or the token
  std::string protocol;  // "imap" | "pop3"
  std::string client_ip;
  uint16_t client_port = 0;
  std::string local_ip;
  uint16_t local_port = 0;
  bool tls = false;
  std::string tls_version;  // "TLSv1.3", "" without TLS
  std::string tls_cipher;
  std::string sni;  // the server name the client asked for, "" if none
  // The client's IMAP ID fields (RFC 2971 section 3.3 names only).
  std::vector<std::pair<std::string, std::string>> client_id;
  uint32_t attempt = 1;  // 1 for the session's first login
  std::string session_id;

  static const char* MechanismName(Mechanism m);  // nginx's Auth-Method values
};

struct DirectoryAnswer {
  enum class Verdict {
    kAccept,       // log in to the backend
    kRefuse,       // wrong credentials, nologin, blocked: the client is refused
    kUnavailable,  // the directory could not decide (down, timed out): try later
  };
  Verdict verdict = Verdict::kUnavailable;
  // For the client (sanitized by the session before it is sent): a response
  // code (IMAP "AUTHENTICATIONFAILED", POP3 "AUTH"; nginx Auth-Error-Code)
  // and a text (nginx Auth-Status), "" for the session's own.
  std::string code;
  std::string text;
  // How long to wait before the client hears a refusal (nginx Auth-Wait,
  // brute-force delays).
  std::chrono::milliseconds wait{0};
  // Whether the directory checked the secret itself. False: pass-through,
  // the backend decides with the client's own credentials.
  bool checked = false;
  // Toward the backend. Empty backend_user: the mailbox user the client
  // named. Empty backend_password with !master: the client's own secret.
  std::string backend_user;
  std::string backend_password;
  // Log in with the backend's configured master user, acting as
  // backend_user (AUTHENTICATE PLAIN authzid=user authcid=master, as Dovecot
  // master users work).
  bool master = false;
  // Where the mailbox lives, when the directory says so (it wins over the
  // router): a configured backend's name, or an address (nginx Auth-Server
  // and Auth-Port; passwd-file host= and port=), or a shard name. Names, not
  // indexes: they stay meaningful across a config reload.
  std::string backend;
  std::string host;
  uint16_t port = 0;
  std::string shard;
  // For the log line: why (never a secret).
  std::string detail;
  // May this answer be cached (and for how long, 0: the cache's default)?
  bool cacheable = true;
  std::chrono::milliseconds ttl{0};

  // "Try later", with `detail` for the log; never cached.
  static DirectoryAnswer Unavailable(std::string detail) {
    DirectoryAnswer a;
    a.verdict = Verdict::kUnavailable;
    a.cacheable = false;
    a.detail = std::move(detail);
    return a;
  }
};

class Directory {
 public:
  // A lookup in progress. Destroying it cancels: the answer is never
  // delivered afterwards.
  class Lookup {
   public:
    virtual ~Lookup() = default;
  };
  using Done = std::function<void(DirectoryAnswer)>;

  virtual ~Directory() = default;
  // Starts a lookup; `done` runs later on this worker's loop (see the file
  // comment). The directory bounds it with its own timeout (then the answer
  // is kUnavailable).
  virtual std::unique_ptr<Lookup> Start(const DirectoryRequest& request, Done done) = 0;
  // The directory checks secrets itself: then the session may offer SASL
  // mechanisms no backend knows (XOAUTH2, OAUTHBEARER).
  virtual bool ChecksSecrets() const = 0;
  // For logs and metrics: "passthrough", "passwd-file:users", "auth-http:nginx".
  virtual std::string Name() const = 0;
  // Changes whenever the data behind the answers changes (a reloaded
  // passwd-file): the answer cache keys on it. 0 when there is no such data.
  virtual uint64_t Generation() const { return 0; }
};

}  // namespace postern
