#include "tls/tls_context.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tls/tls_test_util.h"
#include "tls/tls_engine.h"

namespace postern {
namespace {

using ::postern::testing_tls::Cert;
using ::postern::testing_tls::Pair;
using ::postern::testing_tls::ServerContext;
using ::postern::testing_tls::TempDir;
using ::testing::HasSubstr;

class TlsContextTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  TempDir dir_;
  BufferPool pool_{4096};
};

TEST_F(TlsContextTest, LoadsCertificateAndKeyFromFiles) {
  TlsServerOptions o;
  o.certificate_file = dir_.Write("cert.pem", Cert().cert_pem);
  o.key_file = dir_.Write("key.pem", Cert().key_pem);
  auto server = TlsContext::CreateServer(o);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*server)->is_server());
  auto client = TlsContext::CreateClient({});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_FALSE((*client)->is_server());
  Pair p(**server, **client, pool_);
  ASSERT_TRUE(p.Handshake()) << p.client->error() << p.server->error();
}

TEST_F(TlsContextTest, LoadsAChain) {
  // A leaf followed by another certificate: both are sent.
  std::string other_cert, other_key;
  ASSERT_TRUE(MakeSelfSignedPem({"ca.example"}, &other_cert, &other_key).ok());
  TlsServerOptions o;
  o.certificate_file = dir_.Write("chain.pem", Cert().cert_pem + other_cert);
  o.key_file = dir_.Write("key.pem", Cert().key_pem);
  auto server = TlsContext::CreateServer(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = TlsContext::CreateClient({});
  ASSERT_TRUE(client.ok());
  Pair p(**server, **client, pool_);
  ASSERT_TRUE(p.Handshake());
  EXPECT_EQ(sk_CRYPTO_BUFFER_num(SSL_get0_peer_certificates(p.client->ssl())), 2u);
}

TEST_F(TlsContextTest, MissingFileIsNamed) {
  TlsServerOptions o;
  o.certificate_file = dir_.path() + "/nope.pem";
  o.key_file = dir_.Write("key.pem", Cert().key_pem);
  auto ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.certificate: " + o.certificate_file));
  EXPECT_THAT(ctx.status().message(), HasSubstr("No such file"));

  o.certificate_file = dir_.Write("cert.pem", Cert().cert_pem);
  o.key_file = dir_.path() + "/nokey.pem";
  ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.key: " + o.key_file));

  o.key_file = "";
  ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.key: no file given"));
}

TEST_F(TlsContextTest, KeyMismatchNamesBothFiles) {
  std::string other_cert, other_key;
  ASSERT_TRUE(MakeSelfSignedPem({"other.example"}, &other_cert, &other_key).ok());
  TlsServerOptions o;
  o.certificate_file = dir_.Write("cert.pem", Cert().cert_pem);
  o.key_file = dir_.Write("other-key.pem", other_key);
  auto ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.key: " + o.key_file));
  EXPECT_THAT(ctx.status().message(),
              HasSubstr("does not match the certificate in " + o.certificate_file));
  EXPECT_THAT(ctx.status().message(), HasSubstr("KEY_VALUES_MISMATCH"));
}

TEST_F(TlsContextTest, GarbageFilesAreNamedWithTheReason) {
  TlsServerOptions o;
  o.certificate_file = dir_.Write("cert.pem", "this is not PEM\n");
  o.key_file = dir_.Write("key.pem", Cert().key_pem);
  auto ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.certificate: " + o.certificate_file));
  EXPECT_THAT(ctx.status().message(), HasSubstr("NO_START_LINE"));

  // A certificate where the key should be.
  o.certificate_file = dir_.Write("cert2.pem", Cert().cert_pem);
  o.key_file = dir_.Write("key2.pem", Cert().cert_pem);
  ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.key: " + o.key_file));

  // A truncated certificate.
  o.certificate_file = dir_.Write("cert3.pem", Cert().cert_pem.substr(0, 100));
  o.key_file = dir_.Write("key3.pem", Cert().key_pem);
  ctx = TlsContext::CreateServer(o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.certificate: " + o.certificate_file));
}

TEST_F(TlsContextTest, BadVersionOption) {
  TlsServerOptions o;
  o.min_version = "1.1";
  auto ctx = TlsContext::CreateServerFromPem(Cert().cert_pem, Cert().key_pem, o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kInvalidArgument);
  TlsClientOptions c;
  c.min_version = "TLSv1";
  EXPECT_EQ(TlsContext::CreateClient(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsContextTest, ClientRequiringTls13) {
  TlsClientOptions c;
  c.min_version = "1.3";
  auto client = TlsContext::CreateClient(c);
  ASSERT_TRUE(client.ok());
  auto server = ServerContext();
  Pair p(*server, **client, pool_);
  ASSERT_TRUE(p.Handshake());
  EXPECT_STREQ(p.client->version(), "TLSv1.3");
}

TEST_F(TlsContextTest, SelfSignedCertificateNamesItsHosts) {
  std::string cert_pem, key_pem;
  ASSERT_TRUE(MakeSelfSignedPem({"mail.example", "127.0.0.1", "::1"}, &cert_pem, &key_pem).ok());
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(cert_pem.data(), cert_pem.size()));
  bssl::UniquePtr<X509> x509(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ASSERT_NE(x509, nullptr);
  EXPECT_EQ(X509_check_host(x509.get(), "mail.example", 12, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(x509.get(), "other.example", 13, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(x509.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(x509.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(x509.get(), "10.0.0.1", 0), 0);
  bssl::UniquePtr<EVP_PKEY> pub(X509_get_pubkey(x509.get()));
  ASSERT_NE(pub, nullptr);
  EXPECT_EQ(EVP_PKEY_id(pub.get()), EVP_PKEY_EC);
  EXPECT_EQ(X509_verify(x509.get(), pub.get()), 1);  // self-signed
  EXPECT_THAT(key_pem, HasSubstr("PRIVATE KEY"));
}

class VerifyTest : public TlsContextTest {
 protected:
  std::shared_ptr<const TlsContext> VerifyingClient() {
    TlsClientOptions c;
    c.verify_peer = true;
    c.ca_file = dir_.Write("ca.pem", Cert().cert_pem);
    auto client = TlsContext::CreateClient(c);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *client : nullptr;
  }
  std::shared_ptr<const TlsContext> server_ = ServerContext();
};

TEST_F(VerifyTest, AcceptsTheRightName) {
  auto client = VerifyingClient();
  ASSERT_NE(client, nullptr);
  Pair p(*server_, *client, pool_, "localhost");
  ASSERT_TRUE(p.Handshake()) << p.client->error();
}

TEST_F(VerifyTest, AcceptsTheRightAddress) {
  auto client = VerifyingClient();
  ASSERT_NE(client, nullptr);
  Pair p(*server_, *client, pool_, "127.0.0.1");
  ASSERT_TRUE(p.Handshake()) << p.client->error();
}

TEST_F(VerifyTest, RefusesAnotherName) {
  auto client = VerifyingClient();
  ASSERT_NE(client, nullptr);
  Pair p(*server_, *client, pool_, "imap.example");
  EXPECT_EQ(p.Pump(), TlsEngine::Result::kError);
  EXPECT_THAT(p.client->error(), HasSubstr("CERTIFICATE_VERIFY_FAILED"));
  EXPECT_THAT(p.client->error(), HasSubstr("mismatch"));
  EXPECT_FALSE(p.client->cipher_out().empty());  // the alert for the server
}

TEST_F(VerifyTest, RefusesAnUnknownIssuer) {
  std::string other_cert, other_key;
  ASSERT_TRUE(MakeSelfSignedPem({"localhost"}, &other_cert, &other_key).ok());
  TlsClientOptions c;
  c.verify_peer = true;
  c.ca_file = dir_.Write("other-ca.pem", other_cert);
  auto client = TlsContext::CreateClient(c);
  ASSERT_TRUE(client.ok());
  Pair p(*server_, **client, pool_, "localhost");
  EXPECT_EQ(p.Pump(), TlsEngine::Result::kError);
  EXPECT_THAT(p.client->error(), HasSubstr("CERTIFICATE_VERIFY_FAILED"));
}

TEST_F(VerifyTest, MissingCaFileIsNamed) {
  TlsClientOptions c;
  c.verify_peer = true;
  c.ca_file = dir_.path() + "/missing-ca.pem";
  auto client = TlsContext::CreateClient(c);
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(client.status().message(), HasSubstr("tls.ca_file: " + c.ca_file));
}

}  // namespace
}  // namespace postern
