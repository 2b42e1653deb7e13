// Session ticket keys: the key file, resumption across separately built
// contexts (two instances, or a certificate reload), rotation, and a bad
// file on reload.

#include "tls/tls_ticket_keys.h"

#include <openssl/base64.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tls/tls_test_util.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace postern {
namespace {

using ::postern::testing_tls::Cert;
using ::postern::testing_tls::ClientContext;
using ::postern::testing_tls::Pair;
using ::postern::testing_tls::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint16_t kTls12 = TLS1_2_VERSION;
constexpr uint16_t kTls13 = TLS1_3_VERSION;

std::string Base64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  size_t n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()),
                             reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  out.resize(n);
  return out;
}

// A key as the key file holds it, and its name as key_names() shows it.
struct Key {
  std::string raw;
  std::string line;  // base64, no newline
  std::string name;  // hex of the first 16 bytes
};

Key NewKey(size_t size = TlsTicketKeys::kKeySize) {
  Key k;
  k.raw.resize(size);
  RAND_bytes(reinterpret_cast<uint8_t*>(k.raw.data()), size);
  k.line = Base64(k.raw);
  k.name = absl::BytesToHexString(k.raw.substr(0, 16));
  return k;
}

std::string FileOf(const std::vector<Key>& keys) {
  std::string text;
  for (const Key& k : keys) absl::StrAppend(&text, k.line, "\n");
  return text;
}

// The name of the key that sealed `session`'s ticket (its first 16 bytes).
std::string TicketKeyName(SSL_SESSION* session) {
  const uint8_t* ticket;
  size_t len;
  SSL_SESSION_get0_ticket(session, &ticket, &len);
  if (len < 16) return "";
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(ticket), 16));
}

TEST(TicketKeyFileTest, ParsesKeysCommentsAndBlankLines) {
  Key a = NewKey(), b = NewKey();
  std::string text = absl::StrCat("# rotated by cron\n\n  ", a.line, "  \r\n", b.line, "\n\n");
  auto keys = TlsTicketKeys::FromText(text, "test");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ((*keys)->size(), 2u);
  EXPECT_THAT((*keys)->key_names(), ElementsAre(a.name, b.name));
  EXPECT_EQ((*keys)->file(), "");
}

TEST(TicketKeyFileTest, RejectsBadFilesWithTheLine) {
  Key a = NewKey(), b = NewKey();
  struct Case {
    std::string text;
    std::string message;
  };
  const Case cases[] = {
      {"", "no key"},
      {"# only a comment\n\n", "no key"},
      {a.line + "\nnot base64 at all!\n", "line 2: not base64"},
      {NewKey(48).line + "\n", "line 1: 48 bytes, a key is 80"},  // nginx's AES-128 keys
      {NewKey(79).line + "\n", "line 1: 79 bytes"},
      {NewKey(120).line + "\n", "line 1: not a key (longer than"},
      // `openssl rand -base64 80` wraps its output at 64 columns.
      {a.line.substr(0, 64) + "\n" + a.line.substr(64) + "\n", "line 1: 48 bytes"},
      {a.line + "\n" + b.line + "\n" + a.line + "\n",
       "line 3: the key name (first 16 bytes) repeats line 1"},
  };
  for (const Case& c : cases) {
    auto keys = TlsTicketKeys::FromText(c.text, "/etc/postern/ticket.keys");
    ASSERT_FALSE(keys.ok()) << c.text;
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(keys.status().message(),
                HasSubstr("tls.ticket_key_file: /etc/postern/ticket.keys: "));
    EXPECT_THAT(keys.status().message(), HasSubstr(c.message)) << c.text;
    // A key, or most of one, is never echoed.
    EXPECT_THAT(keys.status().message(), Not(HasSubstr(a.line.substr(0, 20))));
  }
  std::string many;
  for (size_t i = 0; i <= TlsTicketKeys::kMaxKeys; ++i) absl::StrAppend(&many, NewKey().line, "\n");
  auto keys = TlsTicketKeys::FromText(many, "f");
  ASSERT_FALSE(keys.ok());
  EXPECT_THAT(keys.status().message(), HasSubstr("line 17: more than 16 keys"));
}

TEST(TicketKeyFileTest, MissingFileIsNamed) {
  TempDir dir;
  auto keys = TlsTicketKeys::FromFile(dir.path() + "/none.keys");
  ASSERT_FALSE(keys.ok());
  EXPECT_THAT(keys.status().message(),
              HasSubstr("tls.ticket_key_file: " + dir.path() + "/none.keys: No such file"));

  TlsServerOptions o;
  o.ticket_key_file = dir.path() + "/none.keys";
  auto ctx = TlsContext::CreateServerFromPem(Cert().cert_pem, Cert().key_pem, o);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.status().message(), HasSubstr("tls.ticket_key_file: "));
}

class TicketResumptionTest : public ::testing::TestWithParam<uint16_t> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    client_ = ClientContext();
    ASSERT_NE(client_, nullptr);
    key_file_ = dir_.Write("ticket.keys", FileOf({k1_}));
  }

  // A server context as one instance of the fleet builds it: the same
  // certificate files and key file, its own TlsTicketKeys.
  std::shared_ptr<const TlsContext> Instance() {
    TlsServerOptions o;
    o.certificate_file = dir_.Write("cert.pem", Cert().cert_pem);
    o.key_file = dir_.Write("key.pem", Cert().key_pem);
    o.ticket_key_file = key_file_;
    auto ctx = TlsContext::CreateServer(o);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }

  // A full or resumed handshake with `server`, offering `offer` if not null.
  // Returns the session the client keeps from it.
  std::shared_ptr<SSL_SESSION> Connect(const TlsContext& server, SSL_SESSION* offer,
                                       bool* resumed) {
    Pair p(server, *client_, pool_);
    SSL_set_max_proto_version(p.client->ssl(), GetParam());
    p.client->OfferSession(offer);
    if (!p.Handshake()) {
      ADD_FAILURE() << p.client->error() << " / " << p.server->error();
      return nullptr;
    }
    *resumed = p.server->resumed();
    EXPECT_EQ(p.client->resumed(), *resumed);
    // TLS 1.3 tickets come after the handshake; a round of data collects them.
    EXPECT_EQ(p.server->Write("* OK\r\n"), TlsEngine::Result::kOk);
    EXPECT_EQ(p.Pump(), TlsEngine::Result::kOk);
    TlsSession s = p.client->TakeSession();
    return std::shared_ptr<SSL_SESSION>(s.release(), SSL_SESSION_free);
  }

  // A new session from a full handshake with `server`.
  std::shared_ptr<SSL_SESSION> NewSession(const TlsContext& server) {
    bool resumed = true;
    std::shared_ptr<SSL_SESSION> s = Connect(server, nullptr, &resumed);
    EXPECT_FALSE(resumed);
    EXPECT_NE(s, nullptr);
    return s;
  }

  bool Resumes(const TlsContext& server, const std::shared_ptr<SSL_SESSION>& session) {
    bool resumed = false;
    Connect(server, session.get(), &resumed);
    return resumed;
  }

  void Rewrite(const std::vector<Key>& keys) { dir_.Write("ticket.keys", FileOf(keys)); }

  TempDir dir_;
  BufferPool pool_{4096};
  std::shared_ptr<const TlsContext> client_;
  Key k1_ = NewKey();
  Key k2_ = NewKey();
  std::string key_file_;
};

INSTANTIATE_TEST_SUITE_P(Versions, TicketResumptionTest, ::testing::Values(kTls12, kTls13),
                         [](const ::testing::TestParamInfo<uint16_t>& info) {
                           return info.param == kTls13 ? std::string("Tls13")
                                                       : std::string("Tls12");
                         });

TEST_P(TicketResumptionTest, TwoInstancesShareOneKeyFile) {
  auto a = Instance();
  auto b = Instance();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->ticket_keys(), b->ticket_keys());  // each read the file itself
  auto session = NewSession(*a);
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(TicketKeyName(session.get()), k1_.name);
  EXPECT_TRUE(Resumes(*b, session));
  EXPECT_TRUE(Resumes(*a, session));
}

TEST_P(TicketResumptionTest, WithoutAKeyFileInstancesDoNotResumeEachOther) {
  // The control for the test above: BoringSSL's own keys differ per context.
  auto a = testing_tls::ServerContext();
  auto b = testing_tls::ServerContext();
  auto session = NewSession(*a);
  ASSERT_NE(session, nullptr);
  EXPECT_TRUE(Resumes(*a, session));
  EXPECT_FALSE(Resumes(*b, session));
}

TEST_P(TicketResumptionTest, CertificateReloadSharesTheKeys) {
  auto old_ctx = Instance();
  ASSERT_NE(old_ctx, nullptr);
  auto session = NewSession(*old_ctx);
  // The integrator's reload: a new context from the files, the keys shared.
  TlsServerOptions o;
  o.certificate_file = dir_.path() + "/cert.pem";
  o.key_file = dir_.path() + "/key.pem";
  o.ticket_keys = old_ctx->ticket_keys();
  auto new_ctx = TlsContext::CreateServer(o);
  ASSERT_TRUE(new_ctx.ok()) << new_ctx.status();
  EXPECT_EQ((*new_ctx)->ticket_keys(), old_ctx->ticket_keys());
  old_ctx.reset();
  EXPECT_TRUE(Resumes(**new_ctx, session));
  // A key rotation through the new context is seen by every sharer.
  Rewrite({k2_, k1_});
  ASSERT_TRUE((*new_ctx)->ReloadTicketKeys().ok());
  EXPECT_THAT((*new_ctx)->ticket_keys()->key_names(), ElementsAre(k2_.name, k1_.name));
}

TEST_P(TicketResumptionTest, RotationKeepsOldTicketsUntilTheirKeyGoes) {
  auto server = Instance();
  ASSERT_NE(server, nullptr);
  auto old_session = NewSession(*server);
  ASSERT_NE(old_session, nullptr);
  EXPECT_EQ(TicketKeyName(old_session.get()), k1_.name);

  // Step 1: a new key first, the old one still there to open tickets.
  Rewrite({k2_, k1_});
  ASSERT_TRUE(server->ReloadTicketKeys().ok());
  EXPECT_EQ(server->ticket_keys()->size(), 2u);
  bool resumed = false;
  auto renewed = Connect(*server, old_session.get(), &resumed);
  EXPECT_TRUE(resumed);
  // The old ticket was renewed: the client's new one is sealed with k2.
  ASSERT_NE(renewed, nullptr);
  EXPECT_EQ(TicketKeyName(renewed.get()), k2_.name);
  auto new_session = NewSession(*server);
  EXPECT_EQ(TicketKeyName(new_session.get()), k2_.name);

  // Step 2: the old key leaves. Its tickets get a full handshake, no error.
  Rewrite({k2_});
  ASSERT_TRUE(server->ReloadTicketKeys().ok());
  EXPECT_FALSE(Resumes(*server, old_session));
  EXPECT_TRUE(Resumes(*server, new_session));
  EXPECT_TRUE(Resumes(*server, renewed));
}

TEST_P(TicketResumptionTest, MalformedFileOnReloadKeepsTheKeys) {
  auto server = Instance();
  ASSERT_NE(server, nullptr);
  auto session = NewSession(*server);
  dir_.Write("ticket.keys", k2_.line.substr(0, 64) + "\n" + k2_.line.substr(64) + "\n");
  absl::Status s = server->ReloadTicketKeys();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("tls.ticket_key_file: " + key_file_ + ": line 1: 48 bytes"));
  EXPECT_THAT(server->ticket_keys()->key_names(), ElementsAre(k1_.name));
  EXPECT_TRUE(Resumes(*server, session));

  std::remove(key_file_.c_str());
  s = server->ReloadTicketKeys();
  EXPECT_THAT(s.message(), HasSubstr("No such file"));
  EXPECT_TRUE(Resumes(*server, session));
}

TEST_P(TicketResumptionTest, EphemeralKeysSharedAndRotated) {
  TlsServerOptions o;
  o.ticket_keys = TlsTicketKeys::Ephemeral();
  auto a = TlsContext::CreateServerFromPem(Cert().cert_pem, Cert().key_pem, o);
  auto b = TlsContext::CreateServerFromPem(Cert().cert_pem, Cert().key_pem, o);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*a)->ticket_keys()->size(), 1u);
  auto session = NewSession(**a);
  EXPECT_TRUE(Resumes(**b, session));
  ASSERT_TRUE((*a)->ReloadTicketKeys().ok());  // rotates: the old key still opens
  EXPECT_EQ((*a)->ticket_keys()->size(), 2u);
  EXPECT_TRUE(Resumes(**b, session));
  ASSERT_TRUE((*a)->ReloadTicketKeys().ok());  // and now it is gone
  EXPECT_EQ((*a)->ticket_keys()->size(), 2u);
  EXPECT_FALSE(Resumes(**b, session));
}

TEST_P(TicketResumptionTest, TicketsOffIgnoresTheKeys) {
  TlsServerOptions o;
  o.session_tickets = false;
  o.ticket_key_file = key_file_;
  auto server = TlsContext::CreateServerFromPem(Cert().cert_pem, Cert().key_pem, o);
  ASSERT_TRUE(server.ok());
  EXPECT_EQ((*server)->ticket_keys(), nullptr);
  EXPECT_FALSE((*server)->ReloadTicketKeys().ok());
}

}  // namespace
}  // namespace postern
