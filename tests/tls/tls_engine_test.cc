#include "tls/tls_engine.h"

#include <openssl/aead.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tls/tls_test_util.h"

namespace postern {
namespace {

using ::postern::testing_tls::ClientContext;
using ::postern::testing_tls::Pair;
using ::postern::testing_tls::ServerContext;
using ::testing::HasSubstr;
using Result = TlsEngine::Result;

constexpr uint16_t kTls12 = TLS1_2_VERSION;
constexpr uint16_t kTls13 = TLS1_3_VERSION;

std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Client and server engines with the client capped at one TLS version.
class TlsEngineTest : public ::testing::TestWithParam<uint16_t> {
 protected:
  void SetUp() override {
    server_ctx_ = ServerContext();
    client_ctx_ = ClientContext();
    ASSERT_NE(server_ctx_, nullptr);
    ASSERT_NE(client_ctx_, nullptr);
  }

  std::unique_ptr<Pair> NewPair() {
    auto p = std::make_unique<Pair>(*server_ctx_, *client_ctx_, pool_);
    EXPECT_NE(p->server, nullptr);
    EXPECT_NE(p->client, nullptr);
    SSL_set_max_proto_version(p->client->ssl(), GetParam());
    return p;
  }

  const char* ExpectedVersion() const { return GetParam() == kTls13 ? "TLSv1.3" : "TLSv1.2"; }

  BufferPool pool_{4096};  // small slabs: records straddle slabs
  std::shared_ptr<const TlsContext> server_ctx_;
  std::shared_ptr<const TlsContext> client_ctx_;
};

INSTANTIATE_TEST_SUITE_P(Versions, TlsEngineTest, ::testing::Values(kTls12, kTls13),
                         [](const ::testing::TestParamInfo<uint16_t>& info) {
                           return info.param == kTls13 ? std::string("Tls13")
                                                       : std::string("Tls12");
                         });

TEST_P(TlsEngineTest, Handshake) {
  auto p = NewPair();
  EXPECT_FALSE(p->client->handshake_done());
  EXPECT_STREQ(p->client->version(), "");
  ASSERT_TRUE(p->Handshake()) << p->client->error() << " / " << p->server->error();
  EXPECT_STREQ(p->client->version(), ExpectedVersion());
  EXPECT_STREQ(p->server->version(), ExpectedVersion());
  EXPECT_FALSE(p->client->resumed());
  EXPECT_FALSE(p->server->resumed());
  const SSL_CIPHER* cipher = SSL_get_current_cipher(p->server->ssl());
  ASSERT_NE(cipher, nullptr);
  EXPECT_TRUE(SSL_CIPHER_is_aead(cipher));
  if (GetParam() == kTls12) {
    EXPECT_THAT(SSL_CIPHER_get_name(cipher), HasSubstr("ECDHE-ECDSA"));
  }
  EXPECT_TRUE(p->client_plain.empty());
  EXPECT_TRUE(p->server_plain.empty());
}

TEST_P(TlsEngineTest, DataBothWays) {
  auto p = NewPair();
  ASSERT_TRUE(p->Handshake());
  ASSERT_EQ(p->client->Write("a1 LOGIN user pass\r\n"), Result::kOk);
  ASSERT_EQ(p->Pump(), Result::kOk);
  EXPECT_EQ(p->server_plain.ToString(), "a1 LOGIN user pass\r\n");
  ASSERT_EQ(p->server->Write("a1 OK\r\n"), Result::kOk);
  ASSERT_EQ(p->Pump(), Result::kOk);
  EXPECT_EQ(p->client_plain.ToString(), "a1 OK\r\n");
}

TEST_P(TlsEngineTest, OneMebibyteEachWay) {
  auto p = NewPair();
  ASSERT_TRUE(p->Handshake());
  const std::string up = Pattern(1 << 20, 1);
  const std::string down = Pattern(1 << 20, 2);
  Buffer b(pool_);
  b.Append(up);
  ASSERT_EQ(p->client->Write(b), Result::kOk);
  EXPECT_TRUE(b.empty());
  b.Append(down);
  ASSERT_EQ(p->server->Write(b), Result::kOk);
  EXPECT_TRUE(b.empty());
  ASSERT_EQ(p->Pump(), Result::kOk);
  EXPECT_TRUE(p->server_plain.ToString() == up);
  EXPECT_TRUE(p->client_plain.ToString() == down);
  EXPECT_EQ(p->server_plain.size(), up.size());
  EXPECT_EQ(p->client_plain.size(), down.size());
}

// The handshake flights and a few records, fed one byte at a time.
TEST_P(TlsEngineTest, OneByteAtATime) {
  auto p = NewPair();
  ASSERT_EQ(p->client->Read(p->client_plain), Result::kOk);  // ClientHello
  for (int round = 0; round < 8 && !(p->client->handshake_done() && p->server->handshake_done());
       ++round) {
    for (TlsEngine* from : {p->client.get(), p->server.get()}) {
      TlsEngine* to = from == p->client.get() ? p->server.get() : p->client.get();
      Buffer& plain = from == p->client.get() ? p->server_plain : p->client_plain;
      std::string bytes = from->cipher_out().ToString();
      from->cipher_out().Clear();
      for (char c : bytes) {
        to->cipher_in().Append(absl::string_view(&c, 1));
        ASSERT_EQ(to->Read(plain), Result::kOk) << to->error();
      }
    }
  }
  ASSERT_TRUE(p->client->handshake_done());
  ASSERT_TRUE(p->server->handshake_done());

  const std::string big = Pattern(20000, 3);  // two records
  ASSERT_EQ(p->client->Write("x"), Result::kOk);
  ASSERT_EQ(p->client->Write("hello world\r\n"), Result::kOk);
  ASSERT_EQ(p->client->Write(big), Result::kOk);
  std::string bytes = p->client->cipher_out().ToString();
  p->client->cipher_out().Clear();
  for (char c : bytes) {
    p->server->cipher_in().Append(absl::string_view(&c, 1));
    ASSERT_EQ(p->server->Read(p->server_plain), Result::kOk) << p->server->error();
  }
  EXPECT_TRUE(p->server_plain.ToString() == "xhello world\r\n" + big);
}

// A small record set cut in two at every byte boundary.
TEST_P(TlsEngineTest, EverySplitPoint) {
  const std::string expected = "a\r\nb2 NOOP\r\n" + std::string(100, 'z');
  size_t total = 0;
  for (size_t split = 0;; ++split) {
    auto p = NewPair();
    ASSERT_TRUE(p->Handshake());
    p->client_plain.Clear();
    ASSERT_EQ(p->client->Write("a\r\n"), Result::kOk);
    ASSERT_EQ(p->client->Write("b2 NOOP\r\n"), Result::kOk);
    ASSERT_EQ(p->client->Write(std::string(100, 'z')), Result::kOk);
    std::string bytes = p->client->cipher_out().ToString();
    p->client->cipher_out().Clear();
    total = bytes.size();
    if (split > total) break;
    p->server->cipher_in().Append(absl::string_view(bytes).substr(0, split));
    ASSERT_EQ(p->server->Read(p->server_plain), Result::kOk) << split;
    p->server->cipher_in().Append(absl::string_view(bytes).substr(split));
    ASSERT_EQ(p->server->Read(p->server_plain), Result::kOk) << split;
    ASSERT_EQ(p->server_plain.ToString(), expected) << "split at " << split;
  }
  EXPECT_GT(total, expected.size());
}

TEST_P(TlsEngineTest, WriteBeforeHandshakeGoesOutAfter) {
  auto p = NewPair();
  // The server's greeting is written as soon as the connection is accepted.
  ASSERT_EQ(p->server->Write("* OK ready\r\n"), Result::kOk);
  EXPECT_EQ(p->server->pending_plain_size(), 12u);
  EXPECT_TRUE(p->server->cipher_out().empty());
  // A client's first Write sends its ClientHello and keeps the plaintext.
  Buffer b(pool_);
  b.Append("c1 CAPABILITY\r\n");
  ASSERT_EQ(p->client->Write(b), Result::kOk);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(p->client->pending_plain_size(), 15u);
  EXPECT_FALSE(p->client->cipher_out().empty());  // the ClientHello
  ASSERT_EQ(p->Pump(), Result::kOk);
  ASSERT_TRUE(p->client->handshake_done());
  EXPECT_EQ(p->server_plain.ToString(), "c1 CAPABILITY\r\n");
  EXPECT_EQ(p->client_plain.ToString(), "* OK ready\r\n");
  EXPECT_EQ(p->client->pending_plain_size(), 0u);
  EXPECT_EQ(p->server->pending_plain_size(), 0u);
}

TEST_P(TlsEngineTest, CloseNotify) {
  auto p = NewPair();
  ASSERT_TRUE(p->Handshake());
  ASSERT_EQ(p->client->Write("a LOGOUT\r\n"), Result::kOk);
  p->client->Shutdown();
  p->client->Shutdown();  // a second call adds nothing
  p->server->cipher_in().MoveFrom(p->client->cipher_out());
  EXPECT_EQ(p->server->Read(p->server_plain), Result::kClosed);
  EXPECT_EQ(p->server_plain.ToString(), "a LOGOUT\r\n");
  // The server answers with its own close_notify.
  p->server->Shutdown();
  ASSERT_FALSE(p->server->cipher_out().empty());
  p->client->cipher_in().MoveFrom(p->server->cipher_out());
  EXPECT_EQ(p->client->Read(p->client_plain), Result::kClosed);
}

TEST_P(TlsEngineTest, SessionResumptionWithTicket) {
  std::shared_ptr<SSL_SESSION> saved;
  {
    auto p = NewPair();
    ASSERT_TRUE(p->Handshake());
    // TLS 1.3 tickets come after the handshake; a round of data collects them.
    ASSERT_EQ(p->server->Write("* OK\r\n"), Result::kOk);
    ASSERT_EQ(p->Pump(), Result::kOk);
    TlsSession s = p->client->TakeSession();
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(p->client->TakeSession(), nullptr);
    saved.reset(s.release(), SSL_SESSION_free);
  }
  auto p = NewPair();
  p->client->OfferSession(saved.get());
  ASSERT_TRUE(p->Handshake());
  EXPECT_TRUE(p->client->resumed());
  EXPECT_TRUE(p->server->resumed());
  EXPECT_STREQ(p->server->version(), ExpectedVersion());
}

TEST_P(TlsEngineTest, PoolBuffersReturnedWhenIdle) {
  {
    auto p = NewPair();
    ASSERT_TRUE(p->Handshake());
    EXPECT_EQ(pool_.in_use(), 0u);
    Buffer b(pool_);
    b.Append(Pattern(100000, 4));
    ASSERT_EQ(p->client->Write(b), Result::kOk);
    ASSERT_EQ(p->server->Write("x"), Result::kOk);
    ASSERT_EQ(p->Pump(), Result::kOk);
    EXPECT_GT(pool_.in_use(), 0u);  // the received plaintext
    p->server_plain.Clear();
    p->client_plain.Clear();
    EXPECT_EQ(pool_.in_use(), 0u);
    p->client->Shutdown();
    ASSERT_EQ(p->Pump(), Result::kClosed);
    EXPECT_EQ(pool_.in_use(), 0u);
  }
  EXPECT_EQ(pool_.in_use(), 0u);
}

class TlsEngineErrorTest : public ::testing::Test {
 protected:
  BufferPool pool_{4096};
  std::shared_ptr<const TlsContext> server_ctx_ = ServerContext();
  std::shared_ptr<const TlsContext> client_ctx_ = ClientContext();
};

TEST_F(TlsEngineErrorTest, ServerRequiringTls13RefusesTls12) {
  TlsServerOptions o;
  o.min_version = "1.3";
  auto server_ctx = ServerContext(o);
  Pair p(*server_ctx, *client_ctx_, pool_);
  SSL_set_max_proto_version(p.client->ssl(), TLS1_2_VERSION);
  EXPECT_EQ(p.Pump(), Result::kError);
  EXPECT_THAT(p.server->error(), HasSubstr("UNSUPPORTED_PROTOCOL"));
  EXPECT_FALSE(p.server->cipher_out().empty());  // protocol_version alert
  EXPECT_FALSE(p.client->handshake_done());
}

// The first byte of a TLS alert record (RFC 5246 section 6.2.1, RFC 8446
// section 5.1: content type 21), in the clear before the handshake.
constexpr char kAlertRecord = 21;

TEST_F(TlsEngineErrorTest, GarbageInsteadOfClientHello) {
  auto server = TlsEngine::CreateServer(*server_ctx_, pool_);
  Buffer plain(pool_);
  server->cipher_in().Append("\x01\x02garbage garbage garbage garbage\r\n");
  EXPECT_EQ(server->Read(plain), Result::kError);
  EXPECT_THAT(server->error(), HasSubstr("WRONG_VERSION_NUMBER"));
  // The alert is ready to be flushed before the owner closes.
  std::string out = server->cipher_out().ToString();
  ASSERT_EQ(out.size(), 7u);  // header (5) + level + description
  EXPECT_EQ(out[0], kAlertRecord);
  EXPECT_EQ(out[5], 2);  // fatal
  EXPECT_FALSE(server->handshake_done());
  // Once failed, always failed, and nothing more is sent.
  server->cipher_out().Clear();
  server->cipher_in().Append("more");
  EXPECT_EQ(server->Read(plain), Result::kError);
  EXPECT_EQ(server->Write("x"), Result::kError);
  server->Shutdown();
  EXPECT_TRUE(server->cipher_out().empty());
  EXPECT_TRUE(plain.empty());
}

TEST_F(TlsEngineErrorTest, HandshakeRecordWithGarbage) {
  auto server = TlsEngine::CreateServer(*server_ctx_, pool_);
  Buffer plain(pool_);
  // A well-formed record header around a message that is not a ClientHello.
  server->cipher_in().Append(absl::string_view("\x16\x03\x01\x00\x08\x02\x00\x00\x04zzzz", 13));
  EXPECT_EQ(server->Read(plain), Result::kError);
  EXPECT_FALSE(server->error().empty());
  std::string out = server->cipher_out().ToString();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0], kAlertRecord);
}

TEST_F(TlsEngineErrorTest, HttpRequestInsteadOfClientHello) {
  auto server = TlsEngine::CreateServer(*server_ctx_, pool_);
  Buffer plain(pool_);
  server->cipher_in().Append("GET / HTTP/1.1\r\nHost: mail.example\r\n\r\n");
  EXPECT_EQ(server->Read(plain), Result::kError);
  EXPECT_THAT(server->error(), HasSubstr("HTTP_REQUEST"));
}

// Deterministic random input: never crashes, never asserts, ends in kOk
// (waiting for more) or kError.
TEST_F(TlsEngineErrorTest, RandomBytesNeverCrash) {
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    auto engine = i % 2 == 0 ? TlsEngine::CreateServer(*server_ctx_, pool_)
                             : TlsEngine::CreateClient(*client_ctx_, pool_, "localhost");
    Buffer plain(pool_);
    if (i % 2 == 1) {
      ASSERT_EQ(engine->Read(plain), Result::kOk);  // ClientHello out
    }
    std::string junk = Pattern(1 + rng() % 600, static_cast<uint32_t>(i));
    if (i % 3 == 0) junk[0] = '\x16';  // handshake record type
    if (i % 3 == 0 && junk.size() > 2) junk[1] = '\x03';
    engine->cipher_in().Append(junk);
    Result r = engine->Read(plain);
    EXPECT_NE(r, Result::kClosed);
    EXPECT_TRUE(plain.empty());
    if (r == Result::kError) {
      EXPECT_FALSE(engine->error().empty());
    }
  }
  EXPECT_EQ(pool_.in_use(), 0u);
}

// TLS 1.2 resumption from the server's session cache, for clients that take
// no tickets.
TEST_F(TlsEngineErrorTest, SessionCacheResumptionWithoutTickets) {
  TlsServerOptions o;
  o.session_tickets = false;
  auto server_ctx = ServerContext(o);
  std::shared_ptr<SSL_SESSION> saved;
  {
    Pair p(*server_ctx, *client_ctx_, pool_);
    SSL_set_max_proto_version(p.client->ssl(), TLS1_2_VERSION);
    ASSERT_TRUE(p.Handshake());
    TlsSession s = p.client->TakeSession();
    ASSERT_NE(s, nullptr);
    // No ticket: the session is known by its ID in the server's cache.
    unsigned len = 0;
    SSL_SESSION_get_id(s.get(), &len);
    EXPECT_GT(len, 0u);
    EXPECT_FALSE(SSL_SESSION_has_ticket(s.get()));
    saved.reset(s.release(), SSL_SESSION_free);
  }
  Pair p(*server_ctx, *client_ctx_, pool_);
  SSL_set_max_proto_version(p.client->ssl(), TLS1_2_VERSION);
  p.client->OfferSession(saved.get());
  ASSERT_TRUE(p.Handshake());
  EXPECT_TRUE(p.server->resumed());
  EXPECT_TRUE(p.client->resumed());

  // Another server context has another cache: full handshake.
  auto other_ctx = ServerContext(o);
  Pair q(*other_ctx, *client_ctx_, pool_);
  SSL_set_max_proto_version(q.client->ssl(), TLS1_2_VERSION);
  q.client->OfferSession(saved.get());
  ASSERT_TRUE(q.Handshake());
  EXPECT_FALSE(q.server->resumed());
}

// Builds one TLS 1.2 AES-128-GCM record as one side of the connection `ssl`
// would send it (RFC 5246 section 6.2.3.3, RFC 5288 section 3): BoringSSL
// cannot start a renegotiation itself, so the tests forge the messages.
std::string SealTls12Record(SSL* ssl, bool client_side, uint8_t type, absl::string_view payload,
                            uint64_t seq) {
  std::vector<uint8_t> kb(SSL_get_key_block_len(ssl));
  // AEAD suites have no MAC keys: client key, server key, client IV, server IV.
  if (kb.size() != 40 || !SSL_generate_key_block(ssl, kb.data(), kb.size())) return "";
  const uint8_t* key = kb.data() + (client_side ? 0 : 16);
  const uint8_t* fixed_iv = kb.data() + 32 + (client_side ? 0 : 4);
  uint8_t seq_be[8];
  for (int i = 0; i < 8; ++i) seq_be[i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
  uint8_t nonce[12];
  std::memcpy(nonce, fixed_iv, 4);
  std::memcpy(nonce + 4, seq_be, 8);  // the explicit nonce is the sequence number
  uint8_t ad[13];
  std::memcpy(ad, seq_be, 8);
  ad[8] = type;
  ad[9] = 3;
  ad[10] = 3;
  ad[11] = static_cast<uint8_t>(payload.size() >> 8);
  ad[12] = static_cast<uint8_t>(payload.size());
  EVP_AEAD_CTX ctx;
  if (!EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_128_gcm(), key, 16, 16, nullptr)) return "";
  std::vector<uint8_t> sealed(payload.size() + 16);
  size_t sealed_len = 0;
  int ok = EVP_AEAD_CTX_seal(&ctx, sealed.data(), &sealed_len, sealed.size(), nonce, sizeof(nonce),
                             reinterpret_cast<const uint8_t*>(payload.data()), payload.size(), ad,
                             sizeof(ad));
  EVP_AEAD_CTX_cleanup(&ctx);
  if (!ok) return "";
  size_t body = 8 + sealed_len;
  std::string record = {static_cast<char>(type), 3, 3, static_cast<char>(body >> 8),
                        static_cast<char>(body & 0xff)};
  record.append(reinterpret_cast<const char*>(seq_be), 8);
  record.append(reinterpret_cast<const char*>(sealed.data()), sealed_len);
  return record;
}

class RenegotiationTest : public TlsEngineErrorTest {
 protected:
  void SetUp() override {
    p_ = std::make_unique<Pair>(*server_ctx_, *client_ctx_, pool_);
    SSL_set_max_proto_version(p_->client->ssl(), TLS1_2_VERSION);
    ASSERT_TRUE(SSL_set_strict_cipher_list(p_->client->ssl(), "ECDHE-ECDSA-AES128-GCM-SHA256"));
    ASSERT_TRUE(p_->Handshake());
    ASSERT_STREQ(p_->server->version(), "TLSv1.2");
  }
  std::unique_ptr<Pair> p_;
};

TEST_F(RenegotiationTest, ServerRefusesClientHello) {
  SSL* client = p_->client->ssl();
  uint64_t seq = SSL_get_write_sequence(client);
  // First prove the forgery is right: an application data record is accepted.
  std::string data = SealTls12Record(client, true, SSL3_RT_APPLICATION_DATA, "forged\r\n", seq);
  ASSERT_FALSE(data.empty());
  p_->server->cipher_in().Append(data);
  ASSERT_EQ(p_->server->Read(p_->server_plain), Result::kOk) << p_->server->error();
  EXPECT_EQ(p_->server_plain.ToString(), "forged\r\n");

  // Then a renegotiation ClientHello (RFC 5246 section 7.4.1.2).
  std::string hello = {1, 0, 0, 41, 3, 3};                  // client_hello, length, version
  hello += std::string(32, 'r');                            // random
  hello += std::string("\x00\x00\x02\xc0\x2b\x01\x00", 7);  // no session, one suite, null
  std::string record = SealTls12Record(client, true, SSL3_RT_HANDSHAKE, hello, seq + 1);
  p_->server->cipher_in().Append(record);
  EXPECT_EQ(p_->server->Read(p_->server_plain), Result::kError);
  EXPECT_THAT(p_->server->error(), HasSubstr("NO_RENEGOTIATION"));
  // An encrypted fatal no_renegotiation alert is queued for the client.
  ASSERT_FALSE(p_->server->cipher_out().empty());
  p_->client->cipher_in().MoveFrom(p_->server->cipher_out());
  EXPECT_EQ(p_->client->Read(p_->client_plain), Result::kError);
  EXPECT_THAT(p_->client->error(), HasSubstr("NO_RENEGOTIATION"));
}

TEST_F(RenegotiationTest, ClientRefusesHelloRequest) {
  SSL* server = p_->server->ssl();
  uint64_t seq = SSL_get_write_sequence(server);
  std::string hello_request("\x00\x00\x00\x00", 4);  // RFC 5246 section 7.4.1.1
  std::string record = SealTls12Record(server, false, SSL3_RT_HANDSHAKE, hello_request, seq);
  ASSERT_FALSE(record.empty());
  p_->client->cipher_in().Append(record);
  EXPECT_EQ(p_->client->Read(p_->client_plain), Result::kError);
  EXPECT_THAT(p_->client->error(), HasSubstr("NO_RENEGOTIATION"));
  EXPECT_FALSE(p_->client->cipher_out().empty());  // the alert
}

}  // namespace
}  // namespace postern
