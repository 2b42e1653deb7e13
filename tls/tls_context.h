#pragma once

// An immutable SSL_CTX holder: certificate chain and key from PEM, TLS 1.2
// and 1.3 only, no renegotiation, session tickets for resumption. Built once
// (and again on reload, off the hot path) and shared by every worker through
// std::shared_ptr<const TlsContext>; SSL_CTX is internally reference-counted
// and thread-safe for creating SSL objects.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace postern {

struct TlsServerOptions {
  std::string certificate_file;     // PEM chain, leaf first
  std::string key_file;             // PEM private key (EC or RSA)
  std::string min_version = "1.2";  // "1.2" or "1.3"
  bool session_tickets = true;
};

struct TlsClientOptions {
  bool verify_peer = false;  // backends on a private network; tests use self-signed certs
  std::string ca_file;       // when verify_peer
  std::string min_version = "1.2";
};

class TlsContext {
 public:
  // Errors name the file and BoringSSL's reason: "tls.certificate: /x.pem: no such file".
  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateServer(const TlsServerOptions& o);
  // Same, from PEM text (tests, benchmarks).
  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateServerFromPem(
      const std::string& cert_chain_pem, const std::string& key_pem,
      const TlsServerOptions& o = {});
  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateClient(const TlsClientOptions& o);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  bool is_server() const { return server_; }

 private:
  TlsContext(SSL_CTX* ctx, bool server) : ctx_(ctx), server_(server) {}
  SSL_CTX* ctx_;
  bool server_;
};

// Makes a self-signed ECDSA P-256 certificate and key as PEM for `names`
// (subjectAltName: DNS names, and IP addresses for entries that parse as
// one). For tests, benchmarks and the demo's certificate.
absl::Status MakeSelfSignedPem(const std::vector<std::string>& names, std::string* cert_pem,
                               std::string* key_pem);

}  // namespace postern
