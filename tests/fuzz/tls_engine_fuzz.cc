// TlsEngine as a server, on hostile ciphertext. Two modes, chosen by bit 0
// of the first byte.
//
// Raw (bit 0 clear): input [mode][slab size][seed: 4][max piece] then the
// ciphertext stream (a ClientHello and whatever follows). The stream goes
// into cipher_in() in random pieces; after each piece the server Read()s,
// and as the seed chooses it also Write()s a greeting (from the engine's
// pool or another one), Shutdown()s, or leaves cipher_out() unsent.
//
// Records (bit 0 set): a real client engine completes a handshake with the
// server first (TLS 1.2 when bit 1 is set, else 1.3; resuming a session
// from an earlier handshake when bit 2 is set); then the input is a
// program [op][length][bytes]...: the client writes plaintext, its records
// are delivered to the server in pieces, raw bytes are injected into the
// server's ciphertext, a byte in flight is flipped, the server writes to the
// client, either side shuts down.
//
// Checks: nothing crashes or leaks (LeakSanitizer, and every pool's
// in_use() is 0 once the engines are gone); after kError every call is
// kError; while nothing was tampered with the server's plaintext is exactly
// a prefix of what the client wrote, and all of it once everything is
// delivered.
//
// The server's key and certificate are fixed and made in memory at startup
// (a constant P-256 scalar, a self-signed certificate): no files.

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "tests/fuzz/fuzz_util.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace postern::fuzz {
namespace {

using Result = TlsEngine::Result;

// Any scalar between 1 and the P-256 group order minus 1 is a private key.
constexpr uint8_t kPrivateKey[32] = {
    0x70, 0x6f, 0x73, 0x74, 0x65, 0x72, 0x6e, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x6b, 0x65, 0x79,
    0x2d, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31,
};

[[noreturn]] void SetupFailed(const char* what) { CheckFailed(__FILE__, __LINE__, what); }

std::string BioText(BIO* bio) {
  const uint8_t* data;
  size_t len;
  if (!BIO_mem_contents(bio, &data, &len)) SetupFailed("BIO_mem_contents");
  return std::string(reinterpret_cast<const char*>(data), len);
}

// The fixed key and a self-signed certificate for it, as PEM.
void MakeFixedCertificate(std::string* cert_pem, std::string* key_pem) {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  bssl::UniquePtr<BIGNUM> scalar(BN_bin2bn(kPrivateKey, sizeof(kPrivateKey), nullptr));
  if (ec == nullptr || scalar == nullptr) SetupFailed("key allocation");
  const EC_GROUP* group = EC_KEY_get0_group(ec.get());
  bssl::UniquePtr<EC_POINT> point(EC_POINT_new(group));
  if (point == nullptr ||
      !EC_POINT_mul(group, point.get(), scalar.get(), nullptr, nullptr, nullptr) ||
      !EC_KEY_set_private_key(ec.get(), scalar.get()) ||
      !EC_KEY_set_public_key(ec.get(), point.get())) {
    SetupFailed("fixed key");
  }
  bssl::UniquePtr<EVP_PKEY> pkey(EVP_PKEY_new());
  if (pkey == nullptr || !EVP_PKEY_set1_EC_KEY(pkey.get(), ec.get())) SetupFailed("EVP_PKEY");

  bssl::UniquePtr<X509> x509(X509_new());
  bssl::UniquePtr<ASN1_TIME> not_before(ASN1_TIME_set(nullptr, 1577836800));  // 2020-01-01
  bssl::UniquePtr<ASN1_TIME> not_after(ASN1_TIME_set(nullptr, 2524608000));   // 2050-01-01
  if (x509 == nullptr || not_before == nullptr || not_after == nullptr) SetupFailed("X509_new");
  X509_NAME* name = X509_get_subject_name(x509.get());
  static constexpr char kCommonName[] = "postern-fuzz";
  if (!X509_set_version(x509.get(), X509_VERSION_3) ||
      !ASN1_INTEGER_set_uint64(X509_get_serialNumber(x509.get()), 1) ||
      !X509_set1_notBefore(x509.get(), not_before.get()) ||
      !X509_set1_notAfter(x509.get(), not_after.get()) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                  reinterpret_cast<const uint8_t*>(kCommonName),
                                  sizeof(kCommonName) - 1, -1, 0) ||
      !X509_set_issuer_name(x509.get(), name) || !X509_set_pubkey(x509.get(), pkey.get()) ||
      !X509_sign(x509.get(), pkey.get(), EVP_sha256())) {
    SetupFailed("self-signed certificate");
  }
  bssl::UniquePtr<BIO> cert_out(BIO_new(BIO_s_mem()));
  bssl::UniquePtr<BIO> key_out(BIO_new(BIO_s_mem()));
  if (cert_out == nullptr || key_out == nullptr ||
      !PEM_write_bio_X509(cert_out.get(), x509.get()) ||
      !PEM_write_bio_PrivateKey(key_out.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr)) {
    SetupFailed("PEM");
  }
  *cert_pem = BioText(cert_out.get());
  *key_pem = BioText(key_out.get());
}

struct Contexts {
  std::shared_ptr<const TlsContext> server;
  std::shared_ptr<const TlsContext> client;
};

const Contexts& GetContexts() {
  static const Contexts* const contexts = [] {
    std::string cert_pem;
    std::string key_pem;
    MakeFixedCertificate(&cert_pem, &key_pem);
    auto server = TlsContext::CreateServerFromPem(cert_pem, key_pem);
    auto client = TlsContext::CreateClient(TlsClientOptions{});
    if (!server.ok() || !client.ok()) SetupFailed("TLS contexts");
    return new Contexts{*std::move(server), *std::move(client)};
  }();
  return *contexts;
}

// Tracks one engine's results: once kError, always kError.
class Engine {
 public:
  explicit Engine(std::unique_ptr<TlsEngine> engine) : engine_(std::move(engine)) {
    POSTERN_FUZZ_CHECK(engine_ != nullptr);
  }
  TlsEngine& operator*() const { return *engine_; }
  TlsEngine* operator->() const { return engine_.get(); }
  bool failed() const { return failed_; }

  Result Note(Result r) {
    if (failed_) POSTERN_FUZZ_CHECK(r == Result::kError);
    if (r == Result::kError) {
      failed_ = true;
      POSTERN_FUZZ_CHECK(!engine_->error().empty());
      POSTERN_FUZZ_CHECK(!engine_->handshake_done());
    }
    return r;
  }
  Result Read(Buffer& plain) { return Note(engine_->Read(plain)); }
  Result Write(absl::string_view plain) { return Note(engine_->Write(plain)); }
  Result Write(Buffer& plain) {
    const Result r = Note(engine_->Write(plain));
    // Write takes every byte (into records or the pre-handshake queue) or fails.
    if (r != Result::kError) POSTERN_FUZZ_CHECK(plain.empty());
    return r;
  }

 private:
  std::unique_ptr<TlsEngine> engine_;
  bool failed_ = false;
};

// Moves up to n bytes from the front of `from` to the end of `to`.
void Transfer(Buffer& from, Buffer& to, size_t n) {
  n = std::min(n, from.size());
  std::string bytes(n, '\0');
  from.CopyOut(0, n, bytes.data());
  from.Drain(n);
  to.Append(bytes);
}

void RunRaw(FuzzInput& in, BufferPool& pool, BufferPool& other_pool) {
  SplitRng rng(in.U32());
  const size_t max_piece = 1 + in.Byte() * 4;
  const absl::string_view stream = in.Rest();

  Engine server(TlsEngine::CreateServer(*GetContexts().server, pool));
  Buffer plain(pool);
  for (absl::string_view piece : RandomCuts(stream, rng, max_piece)) {
    server->cipher_in().Append(piece);
    server.Read(plain);
    const uint32_t choice = rng.Next();
    if (choice % 4 == 0) {
      server.Write("* OK [CAPABILITY IMAP4rev1] ready\r\n");
    } else if (choice % 4 == 1) {
      Buffer greeting((choice & 16) != 0 ? pool : other_pool);
      greeting.Append("+OK POP3 ready\r\n");
      server.Write(greeting);
    }
    if (choice % 16 == 2) server->Shutdown();
    if ((choice & 32) != 0) server->cipher_out().Clear();  // sent
    plain.Clear();                                         // handed to the session
  }
  server->Shutdown();
  server->Shutdown();  // twice is harmless
}

// Moves every byte between the two engines until neither has anything to
// send (the handshake, then tickets).
void Pump(Engine& client, Engine& server, Buffer& client_plain, Buffer& server_plain) {
  for (int round = 0; round < 32; ++round) {
    bool moved = false;
    if (!client->cipher_out().empty()) {
      moved = true;
      server->cipher_in().MoveFrom(client->cipher_out());
      server.Read(server_plain);
    }
    if (!server->cipher_out().empty()) {
      moved = true;
      client->cipher_in().MoveFrom(server->cipher_out());
      client.Read(client_plain);
    }
    if (!moved) return;
  }
}

// A session (ticket) for each version from one full handshake made once, at
// the first use: resumed handshakes skip the certificate and (TLS 1.2) the
// key exchange, so the record inputs that ask for one run several times
// faster. Tickets are stateless, so every input resumes the same way.
SSL_SESSION* MakeResumableSession(bool tls12) {
  BufferPool pool(BufferPool::kDefaultSlabSize, 8);
  TlsSession session;
  {
    Engine server(TlsEngine::CreateServer(*GetContexts().server, pool));
    Engine client(TlsEngine::CreateClient(*GetContexts().client, pool, "postern-fuzz"));
    if (tls12) SSL_set_max_proto_version(client->ssl(), TLS1_2_VERSION);
    Buffer server_plain(pool);
    Buffer client_plain(pool);
    client.Read(client_plain);
    Pump(client, server, client_plain, server_plain);
    // A TLS 1.3 server sends its tickets with its first write.
    server.Write("* OK\r\n");
    Pump(client, server, client_plain, server_plain);
    session = client->TakeSession();
  }
  if (session == nullptr) SetupFailed("no resumable session");
  SSL_CTX_flush_sessions(GetContexts().server->get(), 0);
  return session.release();  // kept for the whole run
}

SSL_SESSION* ResumableSession(bool tls12) {
  static SSL_SESSION* sessions[2] = {nullptr, nullptr};
  SSL_SESSION*& s = sessions[tls12 ? 1 : 0];
  if (s == nullptr) s = MakeResumableSession(tls12);
  return s;
}

void RunRecords(FuzzInput& in, BufferPool& pool, bool tls12, bool resume) {
  const Contexts& ctx = GetContexts();
  SSL_SESSION* offered = resume ? ResumableSession(tls12) : nullptr;
  Engine server(TlsEngine::CreateServer(*ctx.server, pool));
  Engine client(TlsEngine::CreateClient(*ctx.client, pool, "postern-fuzz"));
  if (tls12) SSL_set_max_proto_version(client->ssl(), TLS1_2_VERSION);
  if (offered != nullptr) client->OfferSession(offered);
  Buffer server_plain(pool);
  Buffer client_plain(pool);
  client.Read(client_plain);  // the ClientHello
  Pump(client, server, client_plain, server_plain);
  POSTERN_FUZZ_CHECK(client->handshake_done() && server->handshake_done());
  POSTERN_FUZZ_CHECK(std::string(server->version()) == (tls12 ? "TLSv1.2" : "TLSv1.3"));
  POSTERN_FUZZ_CHECK(server->resumed() == resume);

  std::string written;  // plaintext the client wrote
  bool tampered = false;
  bool client_closed = false;
  bool server_closed = false;  // nothing is written after Shutdown (the proxy never does)
  for (size_t ops = 0; !in.empty() && ops < 256; ++ops) {
    const uint8_t op = in.Byte();
    const absl::string_view bytes = in.Bytes(in.Byte());
    switch (op % 7) {
      case 0:  // the client writes
        if (!client_closed && client.Write(bytes) == Result::kOk)
          written.append(bytes.data(), bytes.size());
        break;
      case 1:  // some of the client's records reach the server
        Transfer(client->cipher_out(), server->cipher_in(), 1 + op / 7 * 16);
        server.Read(server_plain);
        break;
      case 2:  // raw bytes injected into the server's ciphertext
        tampered = tampered || !bytes.empty();
        server->cipher_in().Append(bytes);
        server.Read(server_plain);
        break;
      case 3:  // one byte of the client's records is changed in flight
        if (!client->cipher_out().empty() && !bytes.empty()) {
          Buffer& out = client->cipher_out();
          const size_t at = static_cast<uint8_t>(bytes[0]) % out.size();
          const uint8_t mask = bytes.size() > 1 ? static_cast<uint8_t>(bytes[1] | 1) : 0x55;
          std::string all = out.ToString();
          all[at] = static_cast<char>(all[at] ^ mask);
          out.Clear();
          out.Append(all);
          tampered = true;
        }
        break;
      case 4:  // the server writes; the client reads it
        if (!server_closed) server.Write(bytes);
        client->cipher_in().MoveFrom(server->cipher_out());
        client.Read(client_plain);
        break;
      case 5:  // the server shuts down
        server->Shutdown();
        server_closed = true;
        break;
      case 6:  // the client shuts down
        client->Shutdown();
        client_closed = true;
        break;
    }
    if (!tampered) {
      // Records arrive in order, whole or not at all: the server has a
      // prefix of what the client wrote.
      const std::string got = server_plain.ToString();
      POSTERN_FUZZ_CHECK(absl::string_view(written).substr(0, got.size()) == got);
    }
  }
  server->cipher_in().MoveFrom(client->cipher_out());
  const Result last = server.Read(server_plain);
  if (!tampered) {
    POSTERN_FUZZ_CHECK(server_plain.ToString() == written);
    POSTERN_FUZZ_CHECK(last != Result::kError);
    if (client_closed) POSTERN_FUZZ_CHECK(last == Result::kClosed);
  }
}

void Run(const uint8_t* bytes, size_t size) {
  FuzzInput in(bytes, size);
  const uint8_t mode = in.Byte();
  const uint8_t slab_choice = in.Byte();
  // Small slabs make records straddle slabs; the default size is the real one.
  const size_t slab_size = slab_choice < 128 ? 1 + slab_choice * 4 : BufferPool::kDefaultSlabSize;
  BufferPool pool(slab_size, 8);
  BufferPool other_pool(BufferPool::kDefaultSlabSize, 8);
  if ((mode & 1) == 0) {
    RunRaw(in, pool, other_pool);
  } else {
    RunRecords(in, pool, (mode & 2) != 0, (mode & 4) != 0);
  }
  POSTERN_FUZZ_CHECK(pool.in_use() == 0);
  POSTERN_FUZZ_CHECK(other_pool.in_use() == 0);
  // TLS 1.2 sessions go into the server's cache: forget them, so that each
  // run starts from the same state.
  SSL_CTX_flush_sessions(GetContexts().server->get(), 0);
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::Run(data, size);
  return 0;
}
