#pragma once

// TLS over memory: BoringSSL driven through a custom BIO whose two ends are
// pool Buffers (protocol/buffer.h). The engine knows nothing of sockets: the
// owner puts ciphertext read from the network into cipher_in(), calls
// Read() to get plaintext, Write() to encrypt, and sends cipher_out().
//
// BoringSSL releases its record buffers when they are empty, and our buffers
// go back to the pool when drained, so an idle TLS connection holds only the
// SSL object itself.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "tls/tls_context.h"

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

namespace postern {

// Frees (drops one reference to) an SSL_SESSION.
struct TlsSessionFree {
  void operator()(SSL_SESSION* session) const;
};
// A session saved from one client connection to resume on the next.
// SSL_SESSION is immutable and reference-counted: it may be shared between
// threads.
using TlsSession = std::unique_ptr<SSL_SESSION, TlsSessionFree>;

class TlsEngine {
 public:
  // A server-side engine for one accepted connection.
  static std::unique_ptr<TlsEngine> CreateServer(const TlsContext& ctx, BufferPool& pool);
  // A client-side engine (toward a backend, and for tests and mailbench).
  // `server_name` is sent as SNI when not empty (and is not an IP address),
  // and is the name (or IP address) the certificate must carry when the
  // context verifies the peer.
  // The ClientHello goes out with the first Read() or Write().
  // Both factories return null only when BoringSSL cannot allocate, or for
  // a `server_name` BoringSSL refuses (longer than 255 bytes).
  static std::unique_ptr<TlsEngine> CreateClient(const TlsContext& ctx, BufferPool& pool,
                                                 const std::string& server_name);
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // Ciphertext from the peer: append here, then call Read().
  Buffer& cipher_in() { return cipher_in_; }
  // Ciphertext for the peer: send it and Drain() what was sent.
  Buffer& cipher_out() { return cipher_out_; }

  enum class Result {
    kOk,      // progress made (maybe no plaintext yet); check cipher_out()
    kClosed,  // the peer sent close_notify
    kError,   // fatal: a protocol error, bad certificate, garbage, renegotiation
              // attempt; any alert is already in cipher_out(): flush, then close
  };

  // Advances the handshake and decrypts every complete record in cipher_in()
  // into `plain` (appended). Handshake messages produce cipher_out() bytes.
  Result Read(Buffer& plain);
  // Encrypts and drains all of `plain` into cipher_out(). Before the
  // handshake completes, the bytes wait inside the engine and go out with
  // the first Read() that finishes the handshake.
  // While the handshake runs, Write() also advances it (a client's first
  // Write() sends the ClientHello).
  Result Write(Buffer& plain);
  // Same for a small protocol line.
  Result Write(absl::string_view plain);
  // Queues close_notify in cipher_out().
  void Shutdown();

  bool handshake_done() const;
  // "TLSv1.3", "TLSv1.2" once the handshake is done, else "".
  const char* version() const;
  // The session was resumed (ticket or cache).
  bool resumed() const;
  // Server: the certificate the context chose for this client's ClientHello
  // (by its server name and signature algorithms), once the ClientHello is
  // read; null before, and for client engines. On resumption it is the one
  // the full handshake would have used.
  const TlsCertificateInfo* certificate() const { return TlsContext::SelectedCertificate(ssl_); }
  // A human-readable reason for the last kError (from the BoringSSL error
  // queue), for the session log.
  const std::string& error() const {
    static const std::string kNone;
    return error_ != nullptr ? *error_ : kNone;
  }

  // Plaintext written before the handshake finished, still waiting.
  size_t pending_plain_size() const { return pending_plain_.size(); }

  // Client: offers `session` (from TakeSession() of an earlier connection to
  // the same server) for resumption. Call before the first Read()/Write().
  // Takes its own reference; a null or unusable session is ignored.
  void OfferSession(SSL_SESSION* session);
  // Client: the newest resumable session the server handed out, or null.
  // TLS 1.2: at the end of the handshake. TLS 1.3: a NewSessionTicket, which
  // arrives after the handshake, with a later Read().
  TlsSession TakeSession();

  // The underlying SSL object (peer certificate, cipher, tests).
  SSL* ssl() const { return ssl_; }

 private:
  friend class TlsContext;  // installs OnNewClientSession on client contexts

  TlsEngine(SSL* ssl, BufferPool& pool);
  static std::unique_ptr<TlsEngine> Create(SSL* ssl, BufferPool& pool);
  // SSL_CTX_sess_set_new_cb: keeps the newest session in new_session_.
  static int OnNewClientSession(SSL* ssl, SSL_SESSION* session);

  // Runs the handshake if it is not done; once done, flushes pending_plain_.
  Result Handshake();
  Result Progress(Buffer* plain);
  Result Seal(absl::string_view plain);
  // Records the error queue in error_ and makes the engine fail from now on.
  Result Fail(int ssl_error);

  SSL* ssl_;
  Buffer cipher_in_;
  Buffer cipher_out_;
  Buffer pending_plain_;  // written before the handshake finished
  // Only once failed (on the heap: an engine that works fits jemalloc's
  // 128-byte class).
  std::unique_ptr<std::string> error_;
  bool failed_ = false;  // a fatal error happened: every call returns kError
  TlsSession new_session_;
};

}  // namespace postern
