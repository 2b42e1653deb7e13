#include "tls/tls_context.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tls/tls_engine.h"
#include "tls/tls_internal.h"

namespace postern {
namespace tls_internal {

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

absl::StatusOr<std::string> ReadFile(absl::string_view label, const std::string& path) {
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

// One certificate of a server context, ready to hand to an SSL.
struct Credential {
  std::vector<bssl::UniquePtr<CRYPTO_BUFFER>> chain;  // DER, leaf first
  std::vector<CRYPTO_BUFFER*> chain_ptrs;             // the same, for SSL_set_chain_and_key
  bssl::UniquePtr<EVP_PKEY> key;
  int key_id = EVP_PKEY_NONE;  // EVP_PKEY_EC, EVP_PKEY_RSA or EVP_PKEY_ED25519
  // EC keys: the one TLS 1.3 signature algorithm the key's curve allows
  // (TLS 1.3 ties ECDSA algorithms to a curve), or 0 for other curves.
  uint16_t tls13_ecdsa_sigalg = 0;
};

// What a server context needs at each ClientHello. Owned by the SSL_CTX
// (ex_data) and immutable once the context is built.
struct ServerState {
  std::vector<Credential> credentials;    // credentials[0] is also the SSL_CTX's own
  std::vector<TlsCertificateInfo> infos;  // the same order
  std::unordered_map<std::string, std::vector<int>> exact;     // "mail.example.com"
  std::unordered_map<std::string, std::vector<int>> wildcard;  // "example.com" for *.example.com
  std::vector<int> defaults;  // for names no certificate lists, and no name
  // TLS 1.2 suites of the context by the key they need (protocol ids).
  std::vector<uint16_t> ecdsa_suites;
  std::vector<uint16_t> rsa_suites;
  std::shared_ptr<TlsTicketKeys> ticket_keys;  // null: BoringSSL's own keys
};

}  // namespace tls_internal

namespace {

using tls_internal::Credential;
using tls_internal::ReadFile;
using tls_internal::ServerState;
using tls_internal::TakeErrors;

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

constexpr char kPemText[] = "(PEM text)";

absl::Status Failed(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": ", TakeErrors()));
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

// --- Loading certificates ----------------------------------------------

// One certificate to load: its PEM text and what names it in errors.
struct Source {
  const std::string* chain_pem;
  const std::string* key_pem;
  std::string cert_file;  // or kPemText
  std::string key_file;
  std::string cert_label;  // "tls.certificate: /c.pem" or "tls.certificates[1].certificate: ..."
  std::string key_label;
};

// The subjectAltName DNS entries of `leaf`, lower case.
std::vector<std::string> DnsNames(X509* leaf) {
  std::vector<std::string> names;
  bssl::UniquePtr<GENERAL_NAMES> sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr)));
  ERR_clear_error();  // no extension is not an error
  if (sans == nullptr) return names;
  for (size_t i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* gen = sk_GENERAL_NAME_value(sans.get(), i);
    if (gen->type != GEN_DNS) continue;
    const ASN1_STRING* dns = gen->d.dNSName;
    names.push_back(absl::AsciiStrToLower(absl::string_view(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)), ASN1_STRING_length(dns))));
  }
  return names;
}

// Parses and checks one certificate chain and key. BoringSSL's own message
// follows ours: "tls.key: /k.pem: does not match the certificate in /c.pem:
// X.509 certificate routines: KEY_VALUES_MISMATCH".
absl::Status LoadCredential(const Source& src, int index, Credential* cred,
                            TlsCertificateInfo* info) {
  ERR_clear_error();
  bssl::UniquePtr<BIO> cert_bio(BIO_new_mem_buf(src.chain_pem->data(), src.chain_pem->size()));
  if (cert_bio == nullptr) return Failed(src.cert_label);
  bssl::UniquePtr<X509> leaf;
  for (;;) {
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, NoPassword, nullptr));
    if (cert == nullptr) {
      uint32_t e = ERR_peek_last_error();
      bool no_more = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
      if (no_more && leaf != nullptr) {
        ERR_clear_error();  // the end of the chain
        break;
      }
      if (no_more) return Failed(absl::StrCat(src.cert_label, ": no PEM certificate found"));
      return Failed(src.cert_label);
    }
    uint8_t* der = nullptr;
    int der_len = i2d_X509(cert.get(), &der);
    if (der_len <= 0) return Failed(src.cert_label);
    bssl::UniquePtr<CRYPTO_BUFFER> buffer(
        CRYPTO_BUFFER_new(der, static_cast<size_t>(der_len), nullptr));
    OPENSSL_free(der);
    if (buffer == nullptr) return Failed(src.cert_label);
    cred->chain_ptrs.push_back(buffer.get());
    cred->chain.push_back(std::move(buffer));
    if (leaf == nullptr) leaf = std::move(cert);
  }

  bssl::UniquePtr<BIO> key_bio(BIO_new_mem_buf(src.key_pem->data(), src.key_pem->size()));
  if (key_bio == nullptr) return Failed(src.key_label);
  cred->key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassword, nullptr));
  if (cred->key == nullptr) {
    uint32_t e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
      return Failed(absl::StrCat(src.key_label, ": no PEM private key found"));
    }
    return Failed(src.key_label);
  }
  if (X509_check_private_key(leaf.get(), cred->key.get()) != 1) {
    return Failed(
        absl::StrCat(src.key_label, ": does not match the certificate in ", src.cert_file));
  }

  info->index = index;
  info->certificate_file = src.cert_file;
  info->dns_names = DnsNames(leaf.get());
  info->key_bits = EVP_PKEY_bits(cred->key.get());
  cred->key_id = EVP_PKEY_id(cred->key.get());
  switch (cred->key_id) {
    case EVP_PKEY_EC: {
      info->key_type = "ECDSA";
      const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(cred->key.get());
      int curve = ec == nullptr ? NID_undef : EC_GROUP_get_curve_name(EC_KEY_get0_group(ec));
      if (curve == NID_X9_62_prime256v1) cred->tls13_ecdsa_sigalg = SSL_SIGN_ECDSA_SECP256R1_SHA256;
      if (curve == NID_secp384r1) cred->tls13_ecdsa_sigalg = SSL_SIGN_ECDSA_SECP384R1_SHA384;
      if (curve == NID_secp521r1) cred->tls13_ecdsa_sigalg = SSL_SIGN_ECDSA_SECP521R1_SHA512;
      break;
    }
    case EVP_PKEY_RSA:
      info->key_type = "RSA";
      break;
    case EVP_PKEY_ED25519:
      info->key_type = "Ed25519";
      break;
    default:
      return absl::FailedPreconditionError(
          absl::StrCat(src.key_label, ": unsupported key type (use an EC, RSA or Ed25519 key)"));
  }
  return absl::OkStatus();
}

// The names a certificate serves, as RFC 6125 section 6.4.3 matches them
// (and as BoringSSL's X509_check_host does on the client side): "*" only as
// the whole left-most label and with at least two labels after it. Other
// wildcards ("m*.example.com", "*.com", "a.*.example.com") serve nothing.
void IndexNames(ServerState* state) {
  auto add = [](std::vector<int>& list, int i) {
    if (list.empty() || list.back() != i) list.push_back(i);
  };
  for (size_t i = 0; i < state->infos.size(); ++i) {
    int index = static_cast<int>(i);
    for (std::string name : state->infos[i].dns_names) {
      if (!name.empty() && name.back() == '.') name.pop_back();
      if (name.empty()) continue;
      if (name.size() > 2 && name[0] == '*' && name[1] == '.') {
        std::string parent = name.substr(2);
        if (parent.find('*') != std::string::npos || parent.find('.') == std::string::npos ||
            parent.front() == '.') {
          continue;
        }
        add(state->wildcard[parent], index);
      } else if (name.find('*') == std::string::npos) {
        add(state->exact[name], index);
      }
    }
  }
  // The default: the first certificate, and every other that lists its
  // first name (so an RSA certificate beside a default ECDSA one serves
  // clients without ECDSA too).
  state->defaults.push_back(0);
  const std::vector<std::string>& first = state->infos[0].dns_names;
  if (first.empty()) return;
  for (size_t i = 1; i < state->infos.size(); ++i) {
    for (const std::string& name : state->infos[i].dns_names) {
      if (name == first.front()) {
        state->defaults.push_back(static_cast<int>(i));
        break;
      }
    }
  }
}

// --- Choosing a certificate at the ClientHello ---------------------------

int StateIndex();
int SelectedIndex();

const ServerState* StateOf(const SSL_CTX* ctx) {
  return static_cast<const ServerState*>(SSL_CTX_get_ex_data(ctx, StateIndex()));
}

void FreeState(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<ServerState*>(ptr);
}

// ex_data slots: the SSL_CTX's ServerState (freed with the SSL_CTX), and the
// certificate chosen for an SSL (points into that ServerState). Allocated
// once per process.
int StateIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeState);
  return index;
}

int SelectedIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

bool Contains(const std::vector<uint16_t>& list, uint16_t value) {
  for (uint16_t v : list) {
    if (v == value) return true;
  }
  return false;
}

// What the ClientHello says about the certificates the client can take.
struct Offer {
  bool tls13 = false;  // TLS 1.3 will be negotiated (the server always allows it)
  bool has_sigalgs = false;
  CBS sigalgs;               // signature_algorithms: u16 values
  bool ecdsa_suite = false;  // TLS 1.2: offers one of our ECDHE-ECDSA suites
  bool rsa_suite = false;    // TLS 1.2: offers one of our ECDHE-RSA suites
};

Offer ReadOffer(const SSL_CLIENT_HELLO* hello, const ServerState& state) {
  Offer offer;
  CBS_init(&offer.sigalgs, nullptr, 0);
  const uint8_t* data;
  size_t len;
  if (SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_supported_versions, &data, &len)) {
    CBS ext, versions;
    CBS_init(&ext, data, len);
    uint16_t version;
    if (CBS_get_u8_length_prefixed(&ext, &versions)) {
      while (CBS_get_u16(&versions, &version)) {
        if (version == TLS1_3_VERSION) offer.tls13 = true;
      }
    }
  }
  if (SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_signature_algorithms, &data, &len)) {
    CBS ext;
    CBS_init(&ext, data, len);
    offer.has_sigalgs = CBS_get_u16_length_prefixed(&ext, &offer.sigalgs);
  }
  CBS suites;
  CBS_init(&suites, hello->cipher_suites, hello->cipher_suites_len);
  uint16_t suite;
  while (CBS_get_u16(&suites, &suite)) {
    if (Contains(state.ecdsa_suites, suite)) offer.ecdsa_suite = true;
    if (Contains(state.rsa_suites, suite)) offer.rsa_suite = true;
  }
  return offer;
}

// Whether BoringSSL can complete the handshake with `cred` for this client:
// a signature algorithm the key can make and, in TLS 1.2, a suite for the
// key's type. Mirrors ssl_private_key_supports_signature_algorithm: TLS 1.3
// signs with RSA-PSS only and ties ECDSA algorithms to the key's curve.
bool Fits(const Credential& cred, const Offer& offer) {
  if (!offer.tls13) {
    bool suite = cred.key_id == EVP_PKEY_RSA ? offer.rsa_suite : offer.ecdsa_suite;
    if (!suite) return false;
    // RFC 5246 section 7.4.1.4.1: without the extension, SHA-1 with the
    // suite's key type (no Ed25519).
    if (!offer.has_sigalgs) return cred.key_id != EVP_PKEY_ED25519;
  } else if (!offer.has_sigalgs) {
    return true;  // not a valid TLS 1.3 ClientHello: BoringSSL refuses it anyway
  }
  CBS sigalgs = offer.sigalgs;
  uint16_t sigalg;
  while (CBS_get_u16(&sigalgs, &sigalg)) {
    if (SSL_get_signature_algorithm_key_type(sigalg) != cred.key_id) continue;
    if (!offer.tls13) return true;
    if (cred.key_id == EVP_PKEY_EC && sigalg != cred.tls13_ecdsa_sigalg) continue;
    if (cred.key_id == EVP_PKEY_RSA && !SSL_is_signature_algorithm_rsa_pss(sigalg)) continue;
    return true;
  }
  return false;
}

// The certificates for the client's server name: an exact name first, then a
// wildcard one label up, then the default.
const std::vector<int>& Candidates(const SSL* ssl, const ServerState& state) {
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (sni == nullptr || *sni == '\0') return state.defaults;
  std::string name = absl::AsciiStrToLower(sni);
  if (name.back() == '.') name.pop_back();
  auto exact = state.exact.find(name);
  if (exact != state.exact.end()) return exact->second;
  size_t dot = name.find('.');
  if (dot != std::string::npos && dot > 0) {
    auto wildcard = state.wildcard.find(name.substr(dot + 1));
    if (wildcard != state.wildcard.end()) return wildcard->second;
  }
  return state.defaults;
}

// SSL_CTX_set_select_certificate_cb: runs before anything else reads the
// certificate (cipher choice, resumption). Among the candidates: the first
// ECDSA certificate the client can take, else the first certificate of any
// type it can take, else the first (and the handshake fails as it would
// have with that one alone).
ssl_select_cert_result_t SelectCertificate(const SSL_CLIENT_HELLO* hello) {
  SSL* ssl = hello->ssl;
  const ServerState* state = StateOf(SSL_get_SSL_CTX(ssl));
  if (state == nullptr) return ssl_select_cert_success;
  int chosen = 0;
  if (state->credentials.size() > 1) {
    const std::vector<int>& candidates = Candidates(ssl, *state);
    chosen = candidates.front();
    Offer offer = ReadOffer(hello, *state);
    bool found = false;
    for (int i : candidates) {
      if (state->credentials[i].key_id == EVP_PKEY_EC && Fits(state->credentials[i], offer)) {
        chosen = i;
        found = true;
        break;
      }
    }
    for (size_t k = 0; !found && k < candidates.size(); ++k) {
      if (Fits(state->credentials[candidates[k]], offer)) {
        chosen = candidates[k];
        found = true;
      }
    }
  }
  if (chosen != 0) {
    // The SSL starts with the context's certificate (credentials[0]).
    const Credential& cred = state->credentials[chosen];
    if (!SSL_set_chain_and_key(ssl, cred.chain_ptrs.data(), cred.chain_ptrs.size(), cred.key.get(),
                               nullptr)) {
      return ssl_select_cert_error;
    }
    // Only when it is not the default: the first ex_data of an SSL
    // allocates a stack (about 80 bytes a connection, kept while it lives).
    SSL_set_ex_data(ssl, SelectedIndex(), const_cast<TlsCertificateInfo*>(&state->infos[chosen]));
  }
  return ssl_select_cert_success;
}

// SSL_CTX_set_tlsext_ticket_key_cb, for contexts with a TlsTicketKeys.
int TicketKeyCallback(SSL* ssl, uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher,
                      HMAC_CTX* hmac, int encrypt) {
  const ServerState* state = StateOf(SSL_get_SSL_CTX(ssl));
  if (state == nullptr || state->ticket_keys == nullptr) return encrypt ? -1 : 0;
  return state->ticket_keys->HandleTicket(key_name, iv, cipher, hmac, encrypt != 0);
}

// --- Building a server context -------------------------------------------

struct Built {
  bssl::UniquePtr<SSL_CTX> ctx;
  const ServerState* state;
};

absl::StatusOr<Built> BuildServer(const std::vector<Source>& sources, const TlsServerOptions& o) {
  if (sources.empty()) {
    return absl::FailedPreconditionError("tls.certificates: no certificate given");
  }
  absl::StatusOr<bssl::UniquePtr<SSL_CTX>> made = NewContext(o.min_version);
  if (!made.ok()) return made.status();
  bssl::UniquePtr<SSL_CTX> ctx = *std::move(made);

  auto state = std::make_unique<ServerState>();
  state->credentials.resize(sources.size());
  state->infos.resize(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    if (absl::Status s = LoadCredential(sources[i], static_cast<int>(i), &state->credentials[i],
                                        &state->infos[i]);
        !s.ok()) {
      return s;
    }
  }
  IndexNames(state.get());
  const Credential& first = state->credentials[0];
  ERR_clear_error();
  if (!SSL_CTX_set_chain_and_key(ctx.get(), first.chain_ptrs.data(), first.chain_ptrs.size(),
                                 first.key.get(), nullptr)) {
    return Failed(sources[0].cert_label);
  }
  const STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(ctx.get());
  for (size_t i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(ciphers, i);
    int auth = SSL_CIPHER_get_auth_nid(c);
    if (auth == NID_auth_ecdsa) state->ecdsa_suites.push_back(SSL_CIPHER_get_protocol_id(c));
    if (auth == NID_auth_rsa) state->rsa_suites.push_back(SSL_CIPHER_get_protocol_id(c));
  }

  // The server picks the suite from its own order (within the groups above).
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Resumption: stateless tickets (TLS 1.2 and 1.3) and, for TLS 1.2 clients
  // that take no tickets, the server-side session cache. Ticket keys come
  // from TlsTicketKeys when given (shared with other contexts and
  // instances); otherwise BoringSSL makes and rotates keys of its own.
  if (!o.session_tickets) {
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  } else if (o.ticket_keys != nullptr) {
    state->ticket_keys = o.ticket_keys;
  } else if (!o.ticket_key_file.empty()) {
    absl::StatusOr<std::shared_ptr<TlsTicketKeys>> keys =
        TlsTicketKeys::FromFile(o.ticket_key_file);
    if (!keys.ok()) return keys.status();
    state->ticket_keys = *std::move(keys);
  }
  if (state->ticket_keys != nullptr) {
    SSL_CTX_set_tlsext_ticket_key_cb(ctx.get(), TicketKeyCallback);
  }
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx.get(), kServerSessionCacheSize);
  if (!SSL_CTX_set_session_id_context(ctx.get(), kSessionIdContext,
                                      sizeof(kSessionIdContext) - 1)) {
    return Failed("tls: session id context");
  }
  SSL_CTX_set_select_certificate_cb(ctx.get(), SelectCertificate);
  // Renegotiation: BoringSSL servers never renegotiate and answer a client's
  // renegotiation ClientHello with a fatal no_renegotiation alert; nothing to
  // configure.

  // From here the SSL_CTX owns the state and frees it with itself.
  if (StateIndex() < 0 || !SSL_CTX_set_ex_data(ctx.get(), StateIndex(), state.get())) {
    return Failed("tls: ex_data");
  }
  Built built{std::move(ctx), state.release()};
  return built;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateServer(
    const TlsServerOptions& o) {
  const bool single = o.certificates.empty();
  if (!single && (!o.certificate_file.empty() || !o.key_file.empty())) {
    return absl::FailedPreconditionError(
        "tls: give either tls.certificate and tls.key, or tls.certificates, not both");
  }
  std::vector<TlsCertificateFiles> files =
      single ? std::vector<TlsCertificateFiles>{{o.certificate_file, o.key_file}} : o.certificates;
  std::vector<std::string> chains(files.size());
  std::vector<std::string> keys(files.size());
  std::vector<Source> sources(files.size());
  absl::Status status;
  for (size_t i = 0; i < files.size() && status.ok(); ++i) {
    std::string cert_option = single ? std::string("tls.certificate")
                                     : absl::StrCat("tls.certificates[", i, "].certificate");
    std::string key_option =
        single ? std::string("tls.key") : absl::StrCat("tls.certificates[", i, "].key");
    absl::StatusOr<std::string> chain = ReadFile(cert_option, files[i].certificate_file);
    if (!chain.ok()) {
      status = chain.status();
      break;
    }
    absl::StatusOr<std::string> key = ReadFile(key_option, files[i].key_file);
    if (!key.ok()) {
      status = key.status();
      break;
    }
    chains[i] = *std::move(chain);
    keys[i] = *std::move(key);
    sources[i] = Source{&chains[i],
                        &keys[i],
                        files[i].certificate_file,
                        files[i].key_file,
                        absl::StrCat(cert_option, ": ", files[i].certificate_file),
                        absl::StrCat(key_option, ": ", files[i].key_file)};
  }
  absl::StatusOr<Built> built = status.ok() ? BuildServer(sources, o) : status;
  for (std::string& key : keys) OPENSSL_cleanse(key.data(), key.size());  // the SSL_CTX has them
  if (!built.ok()) return built.status();
  return std::shared_ptr<const TlsContext>(
      new TlsContext(built->ctx.release(), /*server=*/true, built->state));
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateServerFromPem(
    const std::string& cert_chain_pem, const std::string& key_pem, const TlsServerOptions& o) {
  std::vector<Source> sources = {Source{&cert_chain_pem, &key_pem, kPemText, kPemText,
                                        absl::StrCat("tls.certificate: ", kPemText),
                                        absl::StrCat("tls.key: ", kPemText)}};
  absl::StatusOr<Built> built = BuildServer(sources, o);
  if (!built.ok()) return built.status();
  return std::shared_ptr<const TlsContext>(
      new TlsContext(built->ctx.release(), /*server=*/true, built->state));
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::CreateServerFromPem(
    const std::vector<TlsCertificatePem>& certificates, const TlsServerOptions& o) {
  std::vector<Source> sources;
  for (size_t i = 0; i < certificates.size(); ++i) {
    sources.push_back(Source{&certificates[i].chain_pem, &certificates[i].key_pem, kPemText,
                             kPemText,
                             absl::StrCat("tls.certificates[", i, "].certificate: ", kPemText),
                             absl::StrCat("tls.certificates[", i, "].key: ", kPemText)});
  }
  absl::StatusOr<Built> built = BuildServer(sources, o);
  if (!built.ok()) return built.status();
  return std::shared_ptr<const TlsContext>(
      new TlsContext(built->ctx.release(), /*server=*/true, built->state));
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
  return std::shared_ptr<const TlsContext>(
      new TlsContext(ctx.release(), /*server=*/false, /*state=*/nullptr));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

const std::vector<TlsCertificateInfo>& TlsContext::certificates() const {
  static const auto* const kNone = new std::vector<TlsCertificateInfo>();
  return state_ != nullptr ? state_->infos : *kNone;
}

const std::shared_ptr<TlsTicketKeys>& TlsContext::ticket_keys() const {
  static const auto* const kNone = new std::shared_ptr<TlsTicketKeys>();
  return state_ != nullptr ? state_->ticket_keys : *kNone;
}

absl::Status TlsContext::ReloadTicketKeys() const {
  if (state_ == nullptr || state_->ticket_keys == nullptr) {
    return absl::FailedPreconditionError("tls: this context has no ticket key file");
  }
  return state_->ticket_keys->Reload();
}

const TlsCertificateInfo* TlsContext::SelectedCertificate(const SSL* ssl) {
  if (const void* chosen = SSL_get_ex_data(ssl, SelectedIndex()); chosen != nullptr) {
    return static_cast<const TlsCertificateInfo*>(chosen);
  }
  // Nothing recorded: the context's default (credentials[0]), for a server
  // SSL of one of our contexts.
  if (!SSL_is_server(ssl)) return nullptr;
  const ServerState* state = StateOf(SSL_get_SSL_CTX(ssl));
  return state == nullptr || state->infos.empty() ? nullptr : &state->infos[0];
}

absl::Status MakeSelfSignedPem(const std::vector<std::string>& names, std::string* cert_pem,
                               std::string* key_pem, TlsKeyType key_type) {
  ERR_clear_error();
  bssl::UniquePtr<EVP_PKEY> pkey(EVP_PKEY_new());
  if (pkey == nullptr) return Failed("self-signed: key");
  if (key_type == TlsKeyType::kRsa2048) {
    bssl::UniquePtr<RSA> rsa(RSA_new());
    bssl::UniquePtr<BIGNUM> e(BN_new());
    if (rsa == nullptr || e == nullptr || !BN_set_word(e.get(), RSA_F4) ||
        !RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr) ||
        !EVP_PKEY_assign_RSA(pkey.get(), rsa.release())) {
      return Failed("self-signed: key");
    }
  } else {
    bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
    if (ec == nullptr || !EC_KEY_generate_key(ec.get()) ||
        !EVP_PKEY_assign_EC_KEY(pkey.get(), ec.release())) {
      return Failed("self-signed: key");
    }
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
