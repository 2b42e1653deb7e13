#include "tls/tls_context.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tls/tls_engine.h"

namespace postern {
namespace {

// TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only. AES-GCM and
// ChaCha20 are equal-preference groups (BoringSSL's "[a|b]" syntax), so the
// server takes whichever of the two the client lists first: clients without
// AES hardware put ChaCha20 first. TLS 1.3 suites are not configurable in
// BoringSSL and are all AEAD.
constexpr char kCipherList[] =
    "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]:"
    "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
constexpr char kCurves[] = "X25519:P-256:P-384";

// Sessions kept by a server for TLS 1.2 session-ID resumption (clients that
// do not take tickets). A cached session is a few hundred bytes.
constexpr unsigned long kServerSessionCacheSize = 20000;
constexpr unsigned char kSessionIdContext[] = "postern";

// Drains BoringSSL's thread-local error queue into "lib: REASON; ...".
std::string TakeErrors() {
  std::string out;
  while (uint32_t e = ERR_get_error()) {
    if (!out.empty()) out += "; ";
    const char* lib = ERR_lib_error_string(e);
    const char* reason = ERR_reason_error_string(e);
    if (lib != nullptr) absl::StrAppend(&out, lib, ": ");
    if (reason != nullptr) {
      out += reason;
    } else {
      absl::StrAppend(&out, "error ", ERR_GET_REASON(e));
    }
  }
  if (out.empty()) out = "unknown error";
  return out;
}

absl::Status Failed(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": ", TakeErrors()));
}

absl::StatusOr<std::string> ReadFile(const std::string& label, const std::string& path) {
  if (path.empty()) return absl::FailedPreconditionError(absl::StrCat(label, ": no file given"));
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        label, ": ", path, ": ", std::error_code(errno, std::generic_category()).message()));
  }
  std::string data;
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0) data.append(chunk, n);
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (failed) {
    return absl::FailedPreconditionError(absl::StrCat(
        label, ": ", path, ": ", std::error_code(err, std::generic_category()).message()));
  }
  return data;
}

// Never prompts for a passphrase: encrypted keys are refused.
int NoPassword(char*, int, int, void*) { return 0; }

absl::StatusOr<uint16_t> ParseVersion(const std::string& v, absl::string_view option) {
  if (v == "1.2") return static_cast<uint16_t>(TLS1_2_VERSION);
  if (v == "1.3") return static_cast<uint16_t>(TLS1_3_VERSION);
  return absl::InvalidArgumentError(
      absl::StrCat(option, ": \"", v, "\" is not a TLS version (use 1.2 or 1.3)"));
}

// Settings shared by servers and clients.
absl::Status ConfigureCommon(SSL_CTX* ctx, uint16_t min_version) {
  if (!SSL_CTX_set_min_proto_version(ctx, min_version) ||
      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
    return Failed("tls: protocol versions");
  }
  if (!SSL_CTX_set_strict_cipher_list(ctx, kCipherList)) return Failed("tls: cipher list");
  if (!SSL_CTX_set1_curves_list(ctx, kCurves)) return Failed("tls: curves");
  // SSL_write returns only when every byte is sealed into records; the engine
  // relies on it to drain whole slices. (Off by default; stated here because
  // the engine depends on it.)
  SSL_CTX_clear_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
  // One TLS 1.3 ticket per handshake, not BoringSSL's default two: a mail
  // client resumes one connection at a time, and each ticket costs a seal
  // and a record on every login.
  SSL_CTX_set_num_tickets(ctx, 1);
  // Nothing else is needed for small idle connections: BoringSSL frees its
  // read and write record buffers as soon as they are empty
  // (SSL_MODE_RELEASE_BUFFERS is a no-op there) and frees the handshake
  // state when the handshake ends; the engine additionally sheds the
  // handshake configuration (SSL_set_shed_handshake_config).
  return absl::OkStatus();
}

// A context with the versions, ciphers and curves every context shares.
absl::StatusOr<bssl::UniquePtr<SSL_CTX>> NewContext(const std::string& min_version_text) {
  absl::StatusOr<uint16_t> min_version = ParseVersion(min_version_text, "tls.min_version");
  if (!min_version.ok()) return min_version.status();
  ERR_clear_error();
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (ctx == nullptr) return Failed("tls: SSL_CTX_new");
  if (absl::Status s = ConfigureCommon(ctx.get(), *min_version); !s.ok()) return s;
  return ctx;
}

// PEM certificate chain (leaf first) and key into `ctx`. `cert_file` and
// `key_file` name the sources in errors.
absl::Status UseChainAndKey(SSL_CTX* ctx, const std::string& chain_pem, const std::string& key_pem,
                            const std::string& cert_file, const std::string& key_file) {
  const std::string cert_label = absl::StrCat("tls.certificate: ", cert_file);
  const std::string key_label = absl::StrCat("tls.key: ", key_file);
  ERR_clear_error();
  bssl::UniquePtr<BIO> cert_bio(BIO_new_mem_buf(chain_pem.data(), chain_pem.size()));
  if (cert_bio == nullptr) return Failed(cert_label);
  int count = 0;
  for (;;) {
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, NoPassword, nullptr));
    if (cert == nullptr) {
      uint32_t e = ERR_peek_last_error();
      if (count > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // the end of the chain
        break;
      }
      if (count == 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        return Failed(absl::StrCat(cert_label, ": no PEM certificate found"));
      }
      return Failed(cert_label);
    }
    int ok = count == 0 ? SSL_CTX_use_certificate(ctx, cert.get())
                        : SSL_CTX_add1_chain_cert(ctx, cert.get());
    if (!ok) return Failed(cert_label);
    ++count;
  }

  bssl::UniquePtr<BIO> key_bio(BIO_new_mem_buf(key_pem.data(), key_pem.size()));
  if (key_bio == nullptr) return Failed(key_label);
  bssl::UniquePtr<EVP_PKEY> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassword, nullptr));
  if (key == nullptr) {
    uint32_t e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
      return Failed(absl::StrCat(key_label, ": no PEM private key found"));
    }
    return Failed(key_label);
  }
  // BoringSSL checks here that the key belongs to the leaf certificate.
  if (!SSL_CTX_use_PrivateKey(ctx, key.get())) {
    uint32_t e = ERR_peek_last_error();
    if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
        ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH) {
      return Failed(absl::StrCat(key_label, ": does not match the certificate in ", cert_file));
    }
    return Failed(key_label);
  }
  if (!SSL_CTX_check_private_key(ctx)) {
    return Failed(absl::StrCat(key_label, ": does not match the certificate in ", cert_file));
  }
  return absl::OkStatus();
}

absl::StatusOr<bssl::UniquePtr<SSL_CTX>> BuildServer(const std::string& chain_pem,
                                                     const std::string& key_pem,
                                                     const std::string& cert_file,
                                                     const std::string& key_file,
                                                     const TlsServerOptions& o) {
  absl::StatusOr<bssl::UniquePtr<SSL_CTX>> made = NewContext(o.min_version);
  if (!made.ok()) return made.status();
  bssl::UniquePtr<SSL_CTX> ctx = *std::move(made);
  if (absl::Status s = UseChainAndKey(ctx.get(), chain_pem, key_pem, cert_file, key_file);
      !s.ok()) {
    return s;
  }
  // The server picks the suite from its own order (within the groups above).
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Resumption: stateless tickets (TLS 1.2 and 1.3; BoringSSL makes and
  // rotates the ticket keys itself) and, for TLS 1.2 clients that take no
  // tickets, the server-side session cache.
  if (!o.session_tickets) SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx.get(), kServerSessionCacheSize);
  if (!SSL_CTX_set_session_id_context(ctx.get(), kSessionIdContext,
                                      sizeof(kSessionIdContext) - 1)) {
    return Failed("tls: session id context");
  }
  // Renegotiation: BoringSSL servers never renegotiate and answer a client's
  // renegotiation ClientHello with a fatal no_renegotiation alert; nothing to
  // configure.
  return ctx;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateServer(
    const TlsServerOptions& o) {
  absl::StatusOr<std::string> chain = ReadFile("tls.certificate", o.certificate_file);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<std::string> key = ReadFile("tls.key", o.key_file);
  if (!key.ok()) return key.status();
  absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx =
      BuildServer(*chain, *key, o.certificate_file, o.key_file, o);
  OPENSSL_cleanse(key->data(), key->size());  // the SSL_CTX holds the key now
  if (!ctx.ok()) return ctx.status();
  return std::shared_ptr<const TlsContext>(new TlsContext(ctx->release(), /*server=*/true));
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateServerFromPem(
    const std::string& cert_chain_pem, const std::string& key_pem, const TlsServerOptions& o) {
  absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx =
      BuildServer(cert_chain_pem, key_pem, "(PEM text)", "(PEM text)", o);
  if (!ctx.ok()) return ctx.status();
  return std::shared_ptr<const TlsContext>(new TlsContext(ctx->release(), /*server=*/true));
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateClient(
    const TlsClientOptions& o) {
  absl::StatusOr<bssl::UniquePtr<SSL_CTX>> made = NewContext(o.min_version);
  if (!made.ok()) return made.status();
  bssl::UniquePtr<SSL_CTX> ctx = *std::move(made);
  if (o.verify_peer) {
    if (!o.ca_file.empty()) {
      // Read it ourselves first for a clear "no such file" message.
      absl::StatusOr<std::string> ca = ReadFile("tls.ca_file", o.ca_file);
      if (!ca.ok()) return ca.status();
      if (!SSL_CTX_load_verify_locations(ctx.get(), o.ca_file.c_str(), nullptr)) {
        return Failed(absl::StrCat("tls.ca_file: ", o.ca_file));
      }
    } else if (!SSL_CTX_set_default_verify_paths(ctx.get())) {
      return Failed("tls: system trust store");
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  // Sessions for resumption reach the engine through this callback (TLS 1.3
  // tickets arrive after the handshake, so SSL_get1_session is not enough).
  // BoringSSL keeps no client-side cache of its own.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx.get(), &TlsEngine::OnNewClientSession);
  return std::shared_ptr<const TlsContext>(new TlsContext(ctx.release(), /*server=*/false));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

absl::Status MakeSelfSignedPem(const std::vector<std::string>& names, std::string* cert_pem,
                               std::string* key_pem) {
  ERR_clear_error();
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (ec == nullptr || !EC_KEY_generate_key(ec.get())) return Failed("self-signed: key");
  bssl::UniquePtr<EVP_PKEY> pkey(EVP_PKEY_new());
  if (pkey == nullptr || !EVP_PKEY_assign_EC_KEY(pkey.get(), ec.release())) {
    return Failed("self-signed: key");
  }

  bssl::UniquePtr<X509> x509(X509_new());
  if (x509 == nullptr) return Failed("self-signed: certificate");
  uint64_t serial;
  RAND_bytes(reinterpret_cast<uint8_t*>(&serial), sizeof(serial));
  serial &= ~(uint64_t{1} << 63);  // positive, at most 8 bytes
  if (serial == 0) serial = 1;
  const std::string cn = names.empty() ? std::string("postern") : names.front();
  X509_NAME* subject = X509_get_subject_name(x509.get());
  if (!X509_set_version(x509.get(), X509_VERSION_3) ||
      !ASN1_INTEGER_set_uint64(X509_get_serialNumber(x509.get()), serial) ||
      !X509_gmtime_adj(X509_getm_notBefore(x509.get()), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x509.get()), 10L * 365 * 24 * 3600) ||
      !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(cn.data()),
                                  static_cast<int>(cn.size()), -1, 0) ||
      !X509_set_issuer_name(x509.get(), subject) || !X509_set_pubkey(x509.get(), pkey.get())) {
    return Failed("self-signed: certificate");
  }

  if (!names.empty()) {
    bssl::UniquePtr<GENERAL_NAMES> sans(sk_GENERAL_NAME_new_null());
    if (sans == nullptr) return Failed("self-signed: subjectAltName");
    for (const std::string& name : names) {
      bssl::UniquePtr<GENERAL_NAME> gen(GENERAL_NAME_new());
      if (gen == nullptr) return Failed("self-signed: subjectAltName");
      uint8_t ip[16];
      int ip_len = 0;
      if (inet_pton(AF_INET, name.c_str(), ip) == 1) {
        ip_len = 4;
      } else if (inet_pton(AF_INET6, name.c_str(), ip) == 1) {
        ip_len = 16;
      }
      if (ip_len > 0) {
        ASN1_OCTET_STRING* os = ASN1_OCTET_STRING_new();
        if (os == nullptr || !ASN1_OCTET_STRING_set(os, ip, ip_len)) {
          ASN1_OCTET_STRING_free(os);
          return Failed("self-signed: subjectAltName");
        }
        GENERAL_NAME_set0_value(gen.get(), GEN_IPADD, os);
      } else {
        ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
        if (dns == nullptr || !ASN1_STRING_set(dns, name.data(), static_cast<int>(name.size()))) {
          ASN1_IA5STRING_free(dns);
          return Failed("self-signed: subjectAltName");
        }
        GENERAL_NAME_set0_value(gen.get(), GEN_DNS, dns);
      }
      if (!sk_GENERAL_NAME_push(sans.get(), gen.get()))
        return Failed("self-signed: subjectAltName");
      gen.release();  // owned by `sans` now
    }
    if (!X509_add1_ext_i2d(x509.get(), NID_subject_alt_name, sans.get(), /*crit=*/0,
                           X509V3_ADD_DEFAULT)) {
      return Failed("self-signed: subjectAltName");
    }
  }
  if (!X509_sign(x509.get(), pkey.get(), EVP_sha256())) return Failed("self-signed: signing");

  bssl::UniquePtr<BIO> cert_out(BIO_new(BIO_s_mem()));
  bssl::UniquePtr<BIO> key_out(BIO_new(BIO_s_mem()));
  if (cert_out == nullptr || key_out == nullptr ||
      !PEM_write_bio_X509(cert_out.get(), x509.get()) ||
      !PEM_write_bio_PrivateKey(key_out.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr)) {
    return Failed("self-signed: PEM");
  }
  const uint8_t* data;
  size_t len;
  BIO_mem_contents(cert_out.get(), &data, &len);
  cert_pem->assign(reinterpret_cast<const char*>(data), len);
  BIO_mem_contents(key_out.get(), &data, &len);
  key_pem->assign(reinterpret_cast<const char*>(data), len);
  return absl::OkStatus();
}

}  // namespace postern
