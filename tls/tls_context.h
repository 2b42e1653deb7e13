#pragma once

// An immutable SSL_CTX holder: certificate chains and keys from PEM, chosen
// per connection by the client's server name (SNI) and signature algorithms,
// TLS 1.2 and 1.3 only, no renegotiation, session tickets for resumption
// (with keys that may be shared by several contexts and instances). Built
// once (and again on reload, off the hot path) and shared by every worker
// through std::shared_ptr<const TlsContext>; SSL_CTX is internally
// reference-counted and thread-safe for creating SSL objects. A connection
// keeps the SSL_CTX it was made from (and what the context chose for it)
// until it ends, whatever happens to the TlsContext.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tls/tls_ticket_keys.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace postern {
namespace tls_internal {
struct ServerState;
}  // namespace tls_internal

// One certificate of a server: a PEM chain (leaf first) and its key.
struct TlsCertificateFiles {
  std::string certificate_file;
  std::string key_file;
};

// The same as PEM text (tests, benchmarks).
struct TlsCertificatePem {
  std::string chain_pem;
  std::string key_pem;
};

struct TlsServerOptions {
  // One certificate: the single-certificate form (tls.certificate, tls.key).
  std::string certificate_file;  // PEM chain, leaf first
  std::string key_file;          // PEM private key (EC or RSA)
  // Several certificates (tls.certificates), instead of the two above: each
  // serves the DNS names of its leaf's subjectAltName (exact names, and
  // "*.example.com" for one label under example.com). The first certificate
  // is the default, for a name no certificate lists and for clients that
  // send none. For one name an ECDSA and an RSA certificate may stand side
  // by side: a client that can verify ECDSA gets the ECDSA one. See
  // tls/README.md for the selection rules.
  std::vector<TlsCertificateFiles> certificates;
  std::string min_version = "1.2";  // "1.2" or "1.3"
  bool session_tickets = true;
  // Ticket keys shared with other contexts (the one being replaced on a
  // reload, and through the key file, other instances). When null and
  // ticket_key_file is set, the context reads that file into a
  // TlsTicketKeys of its own (ticket_keys() hands it out for the next
  // context). When both are empty, BoringSSL makes random keys inside this
  // context: tickets do not survive a reload.
  std::shared_ptr<TlsTicketKeys> ticket_keys;
  std::string ticket_key_file;  // tls.ticket_key_file; format in tls_ticket_keys.h
};

// A certificate loaded into a server context, for logs and tests.
struct TlsCertificateInfo {
  int index = 0;                       // in TlsServerOptions::certificates; 0 is the default
  std::string certificate_file;        // "(PEM text)" when built from PEM
  std::vector<std::string> dns_names;  // subjectAltName DNS entries, lower case
  std::string key_type;                // "ECDSA", "RSA" or "Ed25519"
  int key_bits = 0;                    // 256 for P-256, 2048 for RSA-2048
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
  // A bad pair reads "tls.key: /k.pem: does not match the certificate in /c.pem: ..."; with
  // several certificates the labels are "tls.certificates[1].certificate" and
  // "tls.certificates[1].key".
  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateServerFromPem(
      const std::string& cert_chain_pem, const std::string& key_pem,
      const TlsServerOptions& o = {});
  // Several certificates from PEM text (the first is the default); the file
  // names in `o` are ignored.
  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateServerFromPem(
      const std::vector<TlsCertificatePem>& certificates, const TlsServerOptions& o = {});
  static absl::StatusOr<std::shared_ptr<const TlsContext>> CreateClient(const TlsClientOptions& o);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  bool is_server() const { return server_; }

  // Server: the certificates, in TlsServerOptions order. Empty for clients.
  const std::vector<TlsCertificateInfo>& certificates() const;
  // Server: the ticket keys in use, to share with the context that replaces
  // this one. Null when tickets are off or BoringSSL keeps its own keys.
  const std::shared_ptr<TlsTicketKeys>& ticket_keys() const;
  // Server: re-reads the ticket key file (TlsTicketKeys::Reload); every
  // context sharing the keys sees the new ones. FAILED_PRECONDITION when
  // the context has no TlsTicketKeys.
  absl::Status ReloadTicketKeys() const;

  // The certificate a server context chose for `ssl`'s ClientHello (also on
  // resumption, where nothing is sent); the context's default before the
  // ClientHello; null for client SSLs. Valid as long as `ssl`.
  static const TlsCertificateInfo* SelectedCertificate(const SSL* ssl);

 private:
  TlsContext(SSL_CTX* ctx, bool server, const tls_internal::ServerState* state)
      : ctx_(ctx), server_(server), state_(state) {}

  SSL_CTX* ctx_;
  bool server_;
  // Servers only. Owned by ctx_ (ex_data), so it lives as long as any SSL
  // made from it, even after this TlsContext is gone.
  const tls_internal::ServerState* state_;
};

enum class TlsKeyType {
  kEcdsaP256,
  kRsa2048,
};

// Makes a self-signed certificate and key as PEM for `names`
// (subjectAltName: DNS names, and IP addresses for entries that parse as
// one). For tests, benchmarks and the demo's certificate.
absl::Status MakeSelfSignedPem(const std::vector<std::string>& names, std::string* cert_pem,
                               std::string* key_pem, TlsKeyType key_type = TlsKeyType::kEcdsaP256);

}  // namespace postern
