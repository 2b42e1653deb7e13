// Certificate selection: by the client's server name (exact, wildcard,
// default), ECDSA or RSA by the client's signature algorithms and suites,
// errors for bad certificate lists, and contexts rebuilt from the same files.

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tls/tls_test_util.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace postern {
namespace {

using ::postern::testing_tls::ClientContext;
using ::postern::testing_tls::Pair;
using ::postern::testing_tls::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint16_t kTls12 = TLS1_2_VERSION;
constexpr uint16_t kTls13 = TLS1_3_VERSION;

// The certificates of the tests, made once per binary (RSA key generation
// is slow). Index = position in the server's certificate list.
enum : int { kMailEc = 0, kMailRsa = 1, kWildEc = 2, kPopEc = 3, kCount = 4 };

const std::vector<TlsCertificatePem>& Certs() {
  static const auto* const certs = [] {
    auto* c = new std::vector<TlsCertificatePem>(kCount);
    struct Spec {
      std::vector<std::string> names;
      TlsKeyType type;
    };
    const Spec specs[kCount] = {
        {{"mail.example.com", "imap.example.com"}, TlsKeyType::kEcdsaP256},
        {{"mail.example.com", "imap.example.com"}, TlsKeyType::kRsa2048},
        {{"*.example.org"}, TlsKeyType::kEcdsaP256},
        {{"Pop.Example.NET"}, TlsKeyType::kEcdsaP256},  // upper case in the certificate
    };
    for (int i = 0; i < kCount; ++i) {
      absl::Status s =
          MakeSelfSignedPem(specs[i].names, &(*c)[i].chain_pem, &(*c)[i].key_pem, specs[i].type);
      if (!s.ok()) ADD_FAILURE() << s;
    }
    return c;
  }();
  return *certs;
}

std::string PemToDer(const std::string& pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), pem.size()));
  bssl::UniquePtr<X509> x509(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (x509 == nullptr) return "";
  uint8_t* der = nullptr;
  int len = i2d_X509(x509.get(), &der);
  std::string out(reinterpret_cast<const char*>(der), len > 0 ? len : 0);
  OPENSSL_free(der);
  return out;
}

// The leaf the client received.
std::string PeerLeaf(const TlsEngine& client) {
  const STACK_OF(CRYPTO_BUFFER)* chain = SSL_get0_peer_certificates(client.ssl());
  if (chain == nullptr || sk_CRYPTO_BUFFER_num(chain) == 0) return "";
  const CRYPTO_BUFFER* leaf = sk_CRYPTO_BUFFER_value(chain, 0);
  return std::string(reinterpret_cast<const char*>(CRYPTO_BUFFER_data(leaf)),
                     CRYPTO_BUFFER_len(leaf));
}

class SniTest : public ::testing::TestWithParam<uint16_t> {
 protected:
  void SetUp() override {
    auto server = TlsContext::CreateServerFromPem(Certs());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *server;
    client_ = ClientContext();
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<Pair> Connect(const std::string& server_name,
                                const TlsContext* server = nullptr) {
    auto p = std::make_unique<Pair>(server != nullptr ? *server : *server_, *client_, pool_,
                                    server_name);
    EXPECT_NE(p->client, nullptr);
    SSL_set_max_proto_version(p->client->ssl(), GetParam());
    return p;
  }

  // Handshakes with `server_name` and returns the index of the certificate
  // the server chose, after checking that the client received that one.
  int Chosen(std::unique_ptr<Pair> p) {
    if (!p->Handshake()) {
      ADD_FAILURE() << p->client->error() << " / " << p->server->error();
      return -1;
    }
    const TlsCertificateInfo* info = p->server->certificate();
    if (info == nullptr) {
      ADD_FAILURE() << "no certificate recorded";
      return -1;
    }
    EXPECT_EQ(PeerLeaf(*p->client), PemToDer(Certs()[info->index].chain_pem));
    EXPECT_EQ(p->client->certificate(), nullptr);  // client engines choose nothing
    return info->index;
  }
  int Chosen(const std::string& server_name) { return Chosen(Connect(server_name)); }

  // A client that can verify RSA signatures only.
  std::unique_ptr<Pair> ConnectRsaOnly(const std::string& server_name) {
    auto p = Connect(server_name);
    static const uint16_t kRsaOnly[] = {SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256};
    EXPECT_TRUE(SSL_set_verify_algorithm_prefs(p->client->ssl(), kRsaOnly, 2));
    return p;
  }

  BufferPool pool_{4096};
  std::shared_ptr<const TlsContext> server_;
  std::shared_ptr<const TlsContext> client_;
};

INSTANTIATE_TEST_SUITE_P(Versions, SniTest, ::testing::Values(kTls12, kTls13),
                         [](const ::testing::TestParamInfo<uint16_t>& info) {
                           return info.param == kTls13 ? std::string("Tls13")
                                                       : std::string("Tls12");
                         });

TEST_P(SniTest, DescribesItsCertificates) {
  const std::vector<TlsCertificateInfo>& certs = server_->certificates();
  ASSERT_EQ(certs.size(), 4u);
  EXPECT_EQ(certs[kMailEc].index, 0);
  EXPECT_EQ(certs[kMailEc].key_type, "ECDSA");
  EXPECT_EQ(certs[kMailEc].key_bits, 256);
  EXPECT_THAT(certs[kMailEc].dns_names, ElementsAre("mail.example.com", "imap.example.com"));
  EXPECT_EQ(certs[kMailEc].certificate_file, "(PEM text)");
  EXPECT_EQ(certs[kMailRsa].key_type, "RSA");
  EXPECT_EQ(certs[kMailRsa].key_bits, 2048);
  EXPECT_THAT(certs[kPopEc].dns_names, ElementsAre("pop.example.net"));  // lower case
  EXPECT_EQ(certs[kPopEc].index, kPopEc);
}

TEST_P(SniTest, ExactNames) {
  EXPECT_EQ(Chosen("mail.example.com"), kMailEc);
  EXPECT_EQ(Chosen("imap.example.com"), kMailEc);
  EXPECT_EQ(Chosen("pop.example.net"), kPopEc);
}

TEST_P(SniTest, NamesAreCaseInsensitive) {
  EXPECT_EQ(Chosen("POP.example.Net"), kPopEc);
  EXPECT_EQ(Chosen("Imap.Example.Com"), kMailEc);
}

TEST_P(SniTest, WildcardCoversOneLabel) {
  EXPECT_EQ(Chosen("imap.example.org"), kWildEc);
  EXPECT_EQ(Chosen("POP3.EXAMPLE.ORG"), kWildEc);
  // RFC 6125 section 6.4.3: the wildcard is one whole label, no more, no less.
  EXPECT_EQ(Chosen("example.org"), kMailEc);
  EXPECT_EQ(Chosen("a.b.example.org"), kMailEc);
}

TEST_P(SniTest, DefaultForUnknownOrAbsentNames) {
  EXPECT_EQ(Chosen("unknown.example"), kMailEc);
  EXPECT_EQ(Chosen(""), kMailEc);           // no SNI at all
  EXPECT_EQ(Chosen("127.0.0.1"), kMailEc);  // addresses are never sent as SNI
}

TEST_P(SniTest, RsaForClientsWithoutEcdsa) {
  EXPECT_EQ(Chosen(ConnectRsaOnly("mail.example.com")), kMailRsa);
  EXPECT_EQ(Chosen(ConnectRsaOnly("imap.example.com")), kMailRsa);
  // The default serves RSA clients with the RSA certificate for its name.
  EXPECT_EQ(Chosen(ConnectRsaOnly("unknown.example")), kMailRsa);
  EXPECT_EQ(Chosen(ConnectRsaOnly("")), kMailRsa);
}

TEST_P(SniTest, NoCertificateFitsTheClient) {
  // pop.example.net has an ECDSA certificate only: the server offers it and
  // the handshake fails as it would with that certificate alone.
  auto p = ConnectRsaOnly("pop.example.net");
  EXPECT_EQ(p->Pump(), TlsEngine::Result::kError);
  ASSERT_NE(p->server->certificate(), nullptr);
  EXPECT_EQ(p->server->certificate()->index, kPopEc);
}

TEST_P(SniTest, EcdsaPreferredWhateverTheOrder) {
  // RSA listed first for the name: a client that takes ECDSA still gets it.
  auto server = TlsContext::CreateServerFromPem({Certs()[kMailRsa], Certs()[kMailEc]});
  ASSERT_TRUE(server.ok()) << server.status();
  auto p = Connect("mail.example.com", server->get());
  ASSERT_TRUE(p->Handshake());
  ASSERT_NE(p->server->certificate(), nullptr);
  EXPECT_EQ(p->server->certificate()->index, 1);
  EXPECT_EQ(p->server->certificate()->key_type, "ECDSA");
  EXPECT_EQ(PeerLeaf(*p->client), PemToDer(Certs()[kMailEc].chain_pem));

  // Without SNI, the default of `server` (the RSA certificate and the ECDSA
  // one with the same first name): RSA for a client without ECDSA.
  auto r = Connect("", server->get());
  static const uint16_t kRsaOnly[] = {SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256};
  ASSERT_TRUE(SSL_set_verify_algorithm_prefs(r->client->ssl(), kRsaOnly, 2));
  ASSERT_TRUE(r->Handshake());
  EXPECT_EQ(r->server->certificate()->key_type, "RSA");
}

TEST_P(SniTest, ResumedSessionsRecordTheCertificate) {
  std::shared_ptr<SSL_SESSION> saved;
  {
    auto p = Connect("pop.example.net");
    ASSERT_TRUE(p->Handshake());
    ASSERT_EQ(p->server->Write("+OK\r\n"), TlsEngine::Result::kOk);
    ASSERT_EQ(p->Pump(), TlsEngine::Result::kOk);
    TlsSession s = p->client->TakeSession();
    ASSERT_NE(s, nullptr);
    saved.reset(s.release(), SSL_SESSION_free);
  }
  auto p = Connect("pop.example.net");
  p->client->OfferSession(saved.get());
  ASSERT_TRUE(p->Handshake());
  EXPECT_TRUE(p->server->resumed());
  ASSERT_NE(p->server->certificate(), nullptr);
  EXPECT_EQ(p->server->certificate()->index, kPopEc);
}

TEST_P(SniTest, ConnectionOutlivesItsContext) {
  // The integrator drops the old context on a reload while a handshake is
  // still running: the connection keeps what it needs.
  auto server = TlsContext::CreateServerFromPem(Certs());
  ASSERT_TRUE(server.ok());
  auto p = Connect("pop.example.net", server->get());
  server->reset();
  ASSERT_TRUE(p->Handshake()) << p->server->error();
  ASSERT_NE(p->server->certificate(), nullptr);
  EXPECT_EQ(p->server->certificate()->index, kPopEc);
  EXPECT_EQ(p->server->certificate()->dns_names[0], "pop.example.net");
}

// TLS 1.2 clients choose by suite too: one that offers only ECDHE-RSA suites
// gets the RSA certificate even though it could verify ECDSA signatures.
TEST(SniSuiteTest, Tls12ClientWithRsaSuitesOnly) {
  BufferPool pool{4096};
  auto server = TlsContext::CreateServerFromPem(Certs());
  ASSERT_TRUE(server.ok());
  auto client = ClientContext();
  Pair p(**server, *client, pool, "mail.example.com");
  SSL_set_max_proto_version(p.client->ssl(), kTls12);
  ASSERT_TRUE(SSL_set_strict_cipher_list(p.client->ssl(), "ECDHE-RSA-AES128-GCM-SHA256"));
  ASSERT_TRUE(p.Handshake()) << p.client->error() << " / " << p.server->error();
  ASSERT_NE(p.server->certificate(), nullptr);
  EXPECT_EQ(p.server->certificate()->index, kMailRsa);
}

// A single certificate: no choice to make, still recorded.
TEST(SniSingleTest, OneCertificateIsRecorded) {
  BufferPool pool{4096};
  auto server = testing_tls::ServerContext();
  auto client = ClientContext();
  Pair p(*server, *client, pool, "whatever.example");
  ASSERT_TRUE(p.Handshake());
  ASSERT_NE(p.server->certificate(), nullptr);
  EXPECT_EQ(p.server->certificate()->index, 0);
  EXPECT_THAT(p.server->certificate()->dns_names, ElementsAre("localhost"));
  ASSERT_EQ(server->certificates().size(), 1u);
  EXPECT_EQ(server->ticket_keys(), nullptr);
  EXPECT_TRUE(client->certificates().empty());
}

class SniFilesTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }

  TlsServerOptions Options() {
    TlsServerOptions o;
    for (int i = 0; i < kCount; ++i) {
      o.certificates.push_back(
          {dir_.Write("cert" + std::to_string(i) + ".pem", Certs()[i].chain_pem),
           dir_.Write("key" + std::to_string(i) + ".pem", Certs()[i].key_pem)});
    }
    return o;
  }

  TempDir dir_;
  BufferPool pool_{4096};
};

TEST_F(SniFilesTest, LoadsTheListAndNamesTheFiles) {
  TlsServerOptions o = Options();
  auto server = TlsContext::CreateServer(o);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_EQ((*server)->certificates().size(), 4u);
  EXPECT_EQ((*server)->certificates()[kPopEc].certificate_file,
            o.certificates[kPopEc].certificate_file);
  auto client = ClientContext();
  Pair p(**server, *client, pool_, "pop.example.net");
  ASSERT_TRUE(p.Handshake());
  EXPECT_EQ(p.server->certificate()->certificate_file, o.certificates[kPopEc].certificate_file);
}

TEST_F(SniFilesTest, BuildingTwiceFromTheSameFiles) {
  TlsServerOptions o = Options();
  auto first = TlsContext::CreateServer(o);
  auto second = TlsContext::CreateServer(o);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  auto client = ClientContext();
  for (const auto& server : {*first, *second}) {
    Pair p(*server, *client, pool_, "imap.example.org");
    ASSERT_TRUE(p.Handshake());
    EXPECT_EQ(p.server->certificate()->index, kWildEc);
  }
}

TEST_F(SniFilesTest, MissingFileIsNamedWithItsPlace) {
  TlsServerOptions o = Options();
  o.certificates[2].certificate_file = dir_.path() + "/gone.pem";
  auto ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ctx.status().message(),
              HasSubstr("tls.certificates[2].certificate: " + dir_.path() + "/gone.pem"));
  EXPECT_THAT(ctx.status().message(), HasSubstr("No such file"));

  o = Options();
  o.certificates[3].key_file = "";
  ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.certificates[3].key: no file given"));
}

TEST_F(SniFilesTest, MismatchedKeyNamesBothFiles) {
  TlsServerOptions o = Options();
  o.certificates[1].key_file = o.certificates[0].key_file;  // the ECDSA key for the RSA cert
  auto ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(
      ctx.status().message(),
      HasSubstr("tls.certificates[1].key: " + o.certificates[0].key_file +
                ": does not match the certificate in " + o.certificates[1].certificate_file));

  o = Options();
  o.certificates[3].key_file = o.certificates[2].key_file;  // same type, another key
  ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.certificates[3].key: "));
  EXPECT_THAT(ctx.status().message(), HasSubstr("does not match the certificate in"));
  EXPECT_THAT(ctx.status().message(), HasSubstr("KEY_VALUES_MISMATCH"));
}

TEST_F(SniFilesTest, GarbageCertificateIsNamed) {
  TlsServerOptions o = Options();
  o.certificates[1].certificate_file = dir_.Write("junk.pem", "not a certificate\n");
  auto ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(),
              HasSubstr("tls.certificates[1].certificate: " + o.certificates[1].certificate_file +
                        ": no PEM certificate found"));
}

TEST_F(SniFilesTest, BothFormsAtOnceIsAnError) {
  TlsServerOptions o = Options();
  o.certificate_file = o.certificates[0].certificate_file;
  o.key_file = o.certificates[0].key_file;
  auto ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("not both"));
}

TEST(SniPemTest, EmptyListIsAnError) {
  auto ctx = TlsContext::CreateServerFromPem(std::vector<TlsCertificatePem>{});
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("no certificate"));
}

}  // namespace
}  // namespace postern
