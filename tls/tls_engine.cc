#include "tls/tls_engine.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"

namespace postern {
namespace {

// The custom BIO under every engine. Reads take ciphertext from the front of
// cipher_in(); writes append to cipher_out(). Both are pool Buffers, so no
// per-connection BIO memory exists (a BIO pair would hold two fixed buffers
// for the whole life of the connection). BoringSSL reads records exactly
// (header, then body: no read-ahead), so it never takes more from cipher_in()
// than the next record needs.
int BioRead(BIO* bio, char* out, int len) {
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  Buffer& in = static_cast<TlsEngine*>(BIO_get_data(bio))->cipher_in();
  if (in.empty()) {
    // No more ciphertext for now: SSL_get_error reports SSL_ERROR_WANT_READ.
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = std::min(in.size(), static_cast<size_t>(len));
  in.CopyOut(0, n, out);
  in.Drain(n);
  return static_cast<int>(n);
}

// Never blocks and never fails: the owner's watermarks bound cipher_out().
int BioWrite(BIO* bio, const char* data, int len) {
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  static_cast<TlsEngine*>(BIO_get_data(bio))
      ->cipher_out()
      .Append(absl::string_view(data, static_cast<size_t>(len)));
  return len;
}

long BioCtrl(BIO*, int cmd, long, void*) {
  // BoringSSL flushes after each flight; there is nothing to flush.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

const BIO_METHOD* BufferBioMethod() {
  // Built once per process and never freed (thread-safe static init).
  static const BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index(), "postern buffer");
    if (m == nullptr) return static_cast<const BIO_METHOD*>(nullptr);
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_ctrl(m, BioCtrl);
    return static_cast<const BIO_METHOD*>(m);
  }();
  return method;
}

bool IsIpAddress(const std::string& name) {
  unsigned char addr[16];
  return inet_pton(AF_INET, name.c_str(), addr) == 1 ||
         inet_pton(AF_INET6, name.c_str(), addr) == 1;
}

}  // namespace

void TlsSessionFree::operator()(SSL_SESSION* session) const { SSL_SESSION_free(session); }

TlsEngine::TlsEngine(SSL* ssl, BufferPool& pool)
    : ssl_(ssl), cipher_in_(pool), cipher_out_(pool), pending_plain_(pool) {}

TlsEngine::~TlsEngine() { SSL_free(ssl_); }  // frees the BIO too

std::unique_ptr<TlsEngine> TlsEngine::Create(SSL* ssl, BufferPool& pool) {
  if (ssl == nullptr) return nullptr;
  const BIO_METHOD* method = BufferBioMethod();
  BIO* bio = method == nullptr ? nullptr : BIO_new(method);
  if (bio == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  std::unique_ptr<TlsEngine> engine(new TlsEngine(ssl, pool));
  BIO_set_data(bio, engine.get());
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);  // one reference serves both directions
  SSL_set_app_data(ssl, engine.get());
  // Free the handshake configuration (certificate references, cipher and
  // curve lists, ...) once the handshake is over: an established connection
  // keeps only what it needs to run.
  SSL_set_shed_handshake_config(ssl, 1);
  return engine;
}

std::unique_ptr<TlsEngine> TlsEngine::CreateServer(const TlsContext& ctx, BufferPool& pool) {
  SSL* ssl = SSL_new(ctx.get());
  if (ssl == nullptr) return nullptr;
  SSL_set_accept_state(ssl);
  return Create(ssl, pool);
}

std::unique_ptr<TlsEngine> TlsEngine::CreateClient(const TlsContext& ctx, BufferPool& pool,
                                                   const std::string& server_name) {
  SSL* ssl = SSL_new(ctx.get());
  if (ssl == nullptr) return nullptr;
  SSL_set_connect_state(ssl);
  // A server's HelloRequest ends the connection with a no_renegotiation
  // alert (this is BoringSSL's default; stated so that it stays so).
  SSL_set_renegotiate_mode(ssl, ssl_renegotiate_never);
  if (!server_name.empty()) {
    bool ok;
    if (IsIpAddress(server_name)) {
      // RFC 6066 section 3: SNI carries host names only, never literal
      // addresses; the certificate must then name the address.
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str()) == 1;
    } else {
      ok = SSL_set_tlsext_host_name(ssl, server_name.c_str()) == 1 &&
           SSL_set1_host(ssl, server_name.c_str()) == 1;
    }
    if (!ok) {
      ERR_clear_error();
      SSL_free(ssl);
      return nullptr;
    }
  }
  return Create(ssl, pool);
}

TlsEngine::Result TlsEngine::Fail(int ssl_error) {
  failed_ = true;
  error_ = std::make_unique<std::string>();
  std::string& error = *error_;
  char buf[256];
  while (uint32_t e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!error.empty()) error += "; ";
    error += buf;
  }
  if (error.empty()) {
    const char* d = SSL_error_description(ssl_error);
    error = d != nullptr ? d : absl::StrCat("SSL error ", ssl_error);
  }
  // Only a client checks a certificate here; a server's verify result says
  // nothing (BoringSSL reports "invalid certificate verification context").
  long verify = SSL_is_server(ssl_) ? X509_V_OK : SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    absl::StrAppend(&error, " (certificate: ", X509_verify_cert_error_string(verify), ")");
  }
  return Result::kError;
}

TlsEngine::Result TlsEngine::Seal(absl::string_view plain) {
  while (!plain.empty()) {
    int n = static_cast<int>(std::min(plain.size(), static_cast<size_t>(INT_MAX)));
    ERR_clear_error();
    int r = SSL_write(ssl_, plain.data(), n);
    // Without SSL_MODE_ENABLE_PARTIAL_WRITE a successful SSL_write took all n
    // bytes. It cannot want to read (no renegotiation, no post-handshake
    // authentication in BoringSSL) nor to write (the BIO never refuses), so
    // anything else is fatal.
    if (r != n) return Fail(SSL_get_error(ssl_, r));
    plain.remove_prefix(static_cast<size_t>(n));
  }
  return Result::kOk;
}

TlsEngine::Result TlsEngine::Handshake() {
  if (SSL_in_init(ssl_)) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_WANT_READ) return Result::kOk;
      if (err == SSL_ERROR_ZERO_RETURN) return Result::kClosed;
      return Fail(err);
    }
  }
  // Done: what was written during the handshake goes out first.
  while (!pending_plain_.empty()) {
    absl::string_view front = pending_plain_.Front();
    Result r = Seal(front);
    if (r != Result::kOk) return r;
    pending_plain_.Drain(front.size());
  }
  return Result::kOk;
}

TlsEngine::Result TlsEngine::Progress(Buffer* plain) {
  if (failed_) return Result::kError;
  Result r = Handshake();
  if (r != Result::kOk || SSL_in_init(ssl_) || plain == nullptr) return r;
  for (;;) {
    // Decrypt straight into the consumer's buffer.
    absl::Span<char> space = plain->Reserve();
    int want = static_cast<int>(std::min(space.size(), static_cast<size_t>(INT_MAX)));
    ERR_clear_error();
    int n = SSL_read(ssl_, space.data(), want);
    if (n > 0) {
      plain->Commit(static_cast<size_t>(n));
      continue;
    }
    plain->Commit(0);  // gives back a slab that received nothing
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ) return Result::kOk;
    if (err == SSL_ERROR_ZERO_RETURN) return Result::kClosed;  // close_notify
    return Fail(err);
  }
}

TlsEngine::Result TlsEngine::Read(Buffer& plain) { return Progress(&plain); }

TlsEngine::Result TlsEngine::Write(Buffer& plain) {
  if (failed_) return Result::kError;
  if (SSL_in_init(ssl_)) {
    if (&plain.pool() == &pending_plain_.pool()) {
      pending_plain_.MoveFrom(plain);
    } else {
      plain.ForEachSlice([this](absl::string_view s) { pending_plain_.Append(s); });
      plain.Clear();
    }
    return Handshake();
  }
  while (!plain.empty()) {
    absl::string_view front = plain.Front();
    Result r = Seal(front);
    if (r != Result::kOk) return r;
    plain.Drain(front.size());
  }
  return Result::kOk;
}

TlsEngine::Result TlsEngine::Write(absl::string_view plain) {
  if (failed_) return Result::kError;
  if (SSL_in_init(ssl_)) {
    pending_plain_.Append(plain);
    return Handshake();
  }
  return Seal(plain);
}

void TlsEngine::Shutdown() {
  // Before the handshake ends there are no keys to protect a close_notify;
  // after a fatal error the alert has been sent already. A second call must
  // not run SSL_shutdown again: that would read (and discard) cipher_in().
  if (failed_ || SSL_in_init(ssl_) || (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) != 0) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // 0: close_notify sent, the peer's not seen yet
  ERR_clear_error();
}

bool TlsEngine::handshake_done() const { return !failed_ && SSL_is_init_finished(ssl_) == 1; }

const char* TlsEngine::version() const { return handshake_done() ? SSL_get_version(ssl_) : ""; }

bool TlsEngine::resumed() const { return handshake_done() && SSL_session_reused(ssl_) == 1; }

void TlsEngine::OfferSession(SSL_SESSION* session) {
  if (session == nullptr || SSL_is_server(ssl_) || !SSL_in_init(ssl_)) return;
  if (SSL_SESSION_is_resumable(session) != 1) return;
  SSL_set_session(ssl_, session);  // takes its own reference
  ERR_clear_error();
}

TlsSession TlsEngine::TakeSession() { return std::move(new_session_); }

int TlsEngine::OnNewClientSession(SSL* ssl, SSL_SESSION* session) {
  auto* engine = static_cast<TlsEngine*>(SSL_get_app_data(ssl));
  if (engine == nullptr) return 0;  // not ours: BoringSSL keeps ownership
  engine->new_session_.reset(session);
  return 1;  // we took the reference
}

}  // namespace postern
