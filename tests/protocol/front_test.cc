// ImapFront and Pop3Front driven from bytes, without sockets: a fake host
// records what the front sends and asks for.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "protocol/buffer.h"
#include "protocol/imap_front.h"
#include "protocol/pop3_front.h"
#include "protocol/sasl.h"

namespace postern {
namespace {

class FakeHost : public FrontHost {
 public:
  void Send(absl::string_view bytes) override { out.append(bytes.data(), bytes.size()); }
  bool StartTls() override {
    ++tls_starts;
    if (input != nullptr) input->Clear();  // as the proxy does: pipelined bytes are dropped
    return tls_ok;
  }
  void Login(Credentials c) override { logins.push_back(std::move(c)); }
  void End(absl::string_view reason) override { ended = std::string(reason); }

  std::string out;
  std::vector<Credentials> logins;
  std::string ended;
  int tls_starts = 0;
  bool tls_ok = true;
  Buffer* input = nullptr;
};

// Feeds `bytes` to the front and runs it until it stops or needs more.
class Driver {
 public:
  Driver(bool imap, FrontOptions o = {}, size_t slab = 16 * 1024) : pool_(slab), in_(pool_) {
    host_.input = &in_;
    if (imap) {
      front_ = std::make_unique<ImapFront>(host_, std::move(o));
    } else {
      front_ = std::make_unique<Pop3Front>(host_, std::move(o));
    }
    front_->Start();
  }
  void Feed(absl::string_view bytes) {
    in_.Append(bytes);
    Run();
  }
  void Run() {
    while (front_->ProcessOne(in_) == Front::Step::kHandled) {
    }
  }
  // Takes what was sent since the last call.
  std::string Take() {
    std::string s;
    s.swap(host_.out);
    return s;
  }
  FakeHost& host() { return host_; }
  Front& front() { return *front_; }
  Buffer& in() { return in_; }

 private:
  BufferPool pool_;
  Buffer in_;
  FakeHost host_;
  std::unique_ptr<Front> front_;
};

FrontOptions Tls() {
  FrontOptions o;
  o.tls = true;
  return o;
}

TEST(ImapFrontTest, GreetsAndAnswersBeforeLogin) {
  Driver d(true, Tls());
  EXPECT_EQ(d.Take(),
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN AUTH=LOGIN] "
            "postern ready.\r\n");
  d.Feed("a1 CAPABILITY\r\na2 NOOP\r\n");
  EXPECT_EQ(d.Take(),
            "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN AUTH=LOGIN\r\n"
            "a1 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"
            "a2 OK NOOP completed.\r\n");
  d.Feed("a3 LOGOUT\r\n");
  EXPECT_EQ(d.Take(), "* BYE Logging out.\r\na3 OK Logout completed.\r\n");
  EXPECT_EQ(d.host().ended, "client logout");
}

TEST(ImapFrontTest, PlaintextListenerRefusesLoginUntilTls) {
  FrontOptions o;
  o.starttls = true;
  Driver d(true, o);
  EXPECT_NE(d.Take().find("STARTTLS LOGINDISABLED]"), std::string::npos);
  d.Feed("a LOGIN alice secret\r\n");
  EXPECT_EQ(d.Take(),
            "a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure "
            "connections.\r\n");
  EXPECT_TRUE(d.host().logins.empty());
  // STARTTLS: OK, then whatever was pipelined behind it is dropped.
  d.Feed("b STARTTLS\r\nc LOGIN alice secret\r\n");
  EXPECT_EQ(d.Take(), "b OK Begin TLS negotiation now.\r\n");
  EXPECT_EQ(d.host().tls_starts, 1);
  EXPECT_TRUE(d.host().logins.empty());
  d.Feed("d CAPABILITY\r\n");
  std::string caps = d.Take();
  EXPECT_NE(caps.find("AUTH=PLAIN"), std::string::npos);
  EXPECT_EQ(caps.find("STARTTLS"), std::string::npos);
  d.Feed("e STARTTLS\r\n");
  EXPECT_EQ(d.Take(), "e BAD TLS is already active.\r\n");
}

TEST(ImapFrontTest, FailedTlsStartEndsTheSession) {
  FrontOptions o;
  o.starttls = true;
  Driver d(true, o);
  d.Take();
  d.host().tls_ok = false;
  d.Feed("b STARTTLS\r\n");
  EXPECT_EQ(d.Take(), "b OK Begin TLS negotiation now.\r\n");
  EXPECT_EQ(d.host().ended, "TLS could not start");
  EXPECT_TRUE(d.front().ended());
}

TEST(ImapFrontTest, LoginWaitsAndKeepsWhatIsPipelinedBehindIt) {
  Driver d(true, Tls());
  d.Take();
  d.Feed("a LOGIN \"alice\" {6+}\r\nsecret\r\nb SELECT INBOX\r\n");
  ASSERT_EQ(d.host().logins.size(), 1u);
  EXPECT_EQ(d.host().logins[0].authcid, "alice");
  EXPECT_EQ(d.host().logins[0].secret, "secret");
  EXPECT_EQ(d.host().logins[0].mechanism, Credentials::Mechanism::kLogin);
  EXPECT_TRUE(d.front().waiting_for_login());
  EXPECT_EQ(d.front().ProcessOne(d.in()), Front::Step::kStopped);
  EXPECT_EQ(d.in().ToString(), "b SELECT INBOX\r\n");
  LoginReply ok;
  ok.kind = LoginReply::Kind::kOk;
  ok.capabilities = "IMAP4rev1 IDLE";
  d.front().LoginSucceeded(ok);
  EXPECT_EQ(d.Take(), "a OK [CAPABILITY IMAP4rev1 IDLE] Logged in.\r\n");
  EXPECT_TRUE(d.front().logged_in());
  EXPECT_EQ(d.in().ToString(), "b SELECT INBOX\r\n");
}

TEST(ImapFrontTest, FailedLoginsAreAnsweredThenTheSessionEnds) {
  FrontOptions o = Tls();
  o.max_auth_attempts = 2;
  Driver d(true, o);
  d.Take();
  d.Feed("a LOGIN alice x\r\n");
  LoginReply r;
  r.kind = LoginReply::Kind::kUnavailable;
  d.front().LoginFailed(r);
  EXPECT_EQ(d.Take(), "a NO [UNAVAILABLE] Backend server unavailable, try again later.\r\n");
  d.Feed("b LOGIN alice x\r\n");
  r.kind = LoginReply::Kind::kAuthFailed;
  d.front().LoginFailed(r);
  EXPECT_EQ(d.Take(), "b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  d.Feed("c LOGIN alice x\r\n");
  r.kind = LoginReply::Kind::kAuthzFailed;
  d.front().LoginFailed(r);
  EXPECT_EQ(d.Take(),
            "c NO [AUTHORIZATIONFAILED] Authorization failed.\r\n"
            "* BYE Too many invalid authentication attempts.\r\n");
  EXPECT_EQ(d.host().ended, "too many failed logins");
}

TEST(ImapFrontTest, BackendCodesArePassedOn) {
  Driver d(true, Tls());
  d.Take();
  d.Feed("a LOGIN alice x\r\n");
  LoginReply r;
  r.kind = LoginReply::Kind::kAuthFailed;
  r.code = "EXPIRED";
  r.text = "Password expired.";
  d.front().LoginFailed(r);
  EXPECT_EQ(d.Take(), "a NO [EXPIRED] Password expired.\r\n");
}

TEST(ImapFrontTest, ATextIsPassedOnOnlyWithACode) {
  // AUTHENTICATIONFAILED with a text (a directory's refusal, nginx's
  // Auth-Status): the text; a text without a code: ours, as Pop3Front does.
  Driver d(true, Tls());
  d.Take();
  d.Feed("a LOGIN alice x\r\n");
  LoginReply r;
  r.kind = LoginReply::Kind::kAuthFailed;
  r.code = "AUTHENTICATIONFAILED";
  r.text = "Account suspended";
  d.front().LoginFailed(r);
  EXPECT_EQ(d.Take(), "a NO [AUTHENTICATIONFAILED] Account suspended\r\n");
  d.Feed("b LOGIN alice x\r\n");
  r.code.clear();
  d.front().LoginFailed(r);
  EXPECT_EQ(d.Take(), "b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  Driver p(false, Tls());
  p.Take();
  p.Feed("USER alice\r\nPASS x\r\n");
  p.Take();
  r.code = "AUTH";
  p.front().LoginFailed(r);
  EXPECT_EQ(p.Take(), "-ERR [AUTH] Account suspended\r\n");
  p.Feed("USER alice\r\nPASS x\r\n");
  p.Take();
  r.code.clear();
  p.front().LoginFailed(r);
  EXPECT_EQ(p.Take(), "-ERR [AUTH] Authentication failed.\r\n");
}

TEST(ImapFrontTest, AuthenticatePlainWithAndWithoutInitialResponse) {
  Driver d(true, Tls());
  d.Take();
  const std::string ir = EncodeSaslPlain("bob", "alice", "secret");
  d.Feed("a AUTHENTICATE PLAIN " + ir + "\r\n");
  ASSERT_EQ(d.host().logins.size(), 1u);
  EXPECT_EQ(d.host().logins[0].authzid, "bob");
  EXPECT_EQ(d.host().logins[0].authcid, "alice");
  EXPECT_EQ(d.host().logins[0].mailbox_user(), "bob");
  EXPECT_TRUE(d.host().logins[0].proxy_authorization());
  LoginReply r;
  r.kind = LoginReply::Kind::kAuthFailed;
  d.front().LoginFailed(r);
  d.Take();
  d.Feed("b AUTHENTICATE PLAIN\r\n");
  EXPECT_EQ(d.Take(), "+ \r\n");
  d.Feed(EncodeSaslPlain("", "carol", "pw") + "\r\n");
  ASSERT_EQ(d.host().logins.size(), 2u);
  EXPECT_EQ(d.host().logins[1].authcid, "carol");
  EXPECT_FALSE(d.host().logins[1].proxy_authorization());
}

TEST(ImapFrontTest, AuthenticateLoginCancelAndBadData) {
  Driver d(true, Tls());
  d.Take();
  d.Feed("a AUTHENTICATE LOGIN\r\n");
  EXPECT_EQ(d.Take(), "+ VXNlcm5hbWU6\r\n");
  d.Feed(EncodeBase64("alice") + "\r\n");
  EXPECT_EQ(d.Take(), "+ UGFzc3dvcmQ6\r\n");
  d.Feed(EncodeBase64("pw") + "\r\n");
  ASSERT_EQ(d.host().logins.size(), 1u);
  EXPECT_EQ(d.host().logins[0].mechanism, Credentials::Mechanism::kSaslLogin);
  EXPECT_EQ(d.host().logins[0].secret, "pw");
  LoginReply r;
  r.kind = LoginReply::Kind::kAuthFailed;
  d.front().LoginFailed(r);
  d.Take();
  d.Feed("b AUTHENTICATE PLAIN\r\n*\r\n");
  EXPECT_EQ(d.Take(), "+ \r\nb BAD Authentication canceled.\r\n");
  d.Feed("c AUTHENTICATE PLAIN\r\n!!!!\r\n");
  EXPECT_EQ(d.Take(), "+ \r\nc BAD Invalid SASL data: Invalid base64 character\r\n");
  d.Feed("d AUTHENTICATE CRAM-MD5\r\n");
  EXPECT_EQ(d.Take(), "d NO Unsupported authentication mechanism.\r\n");
}

TEST(ImapFrontTest, IdKeepsOnlyRfc2971FieldsAndTakesTheMaximalCommand) {
  Driver d(true, Tls());
  d.Take();
  d.Feed(
      "a ID (\"x-session-id\" \"forged\" \"x-originating-ip\" \"203.0.113.9\" \"Name\" "
      "\"RealClient\" \"x-forward-foo\" \"bar\" \"version\" \"1.0\" \"os\" NIL)\r\n");
  EXPECT_EQ(d.Take(), "* ID (\"name\" \"Postern\")\r\na OK ID completed.\r\n");
  const auto& id = static_cast<ImapFront&>(d.front()).client_id();
  ASSERT_EQ(id.size(), 2u);
  EXPECT_EQ(id[0].first, "name");
  EXPECT_EQ(id[0].second, "RealClient");
  EXPECT_EQ(id[1].first, "version");

  // RFC 2971 section 3.3's maxima: 30 pairs, 30-octet fields, 1024-octet
  // values, every value character escaped in the quoted form.
  std::string cmd = "b ID (";
  for (int i = 0; i < 30; ++i) {
    std::string field = absl::StrCat("field-", i);
    field.resize(30, 'f');
    absl::StrAppend(&cmd, i == 0 ? "" : " ", "\"", field, "\" \"", std::string(2048, '\\'), "\"");
  }
  cmd += ")\r\n";
  ASSERT_LT(cmd.size(), FrontOptions().max_line);
  d.Feed(cmd);
  EXPECT_EQ(d.Take(), "* ID (\"name\" \"Postern\")\r\nb OK ID completed.\r\n");

  std::string too_many = "c ID (";
  for (int i = 0; i < 31; ++i) absl::StrAppend(&too_many, " \"k", i, "\" \"v\"");
  too_many += ")\r\n";
  d.Feed(too_many);
  EXPECT_EQ(d.Take().substr(0, 6), "c BAD ");
  d.Feed("d ID (\"name\" \"" + std::string(1025, 'v') + "\")\r\n");
  EXPECT_EQ(d.Take(), "d BAD Invalid ID parameters.\r\n");
}

TEST(ImapFrontTest, ErrorBudgetAllowsThatManyErrors) {
  FrontOptions o = Tls();
  o.error_budget = 3;
  Driver d(true, o);
  d.Take();
  d.Feed("a FOO\r\nb BAR\r\nc BAZ\r\n");
  EXPECT_EQ(d.Take(),
            "a BAD Command unknown or not allowed before login.\r\n"
            "b BAD Command unknown or not allowed before login.\r\n"
            "c BAD Command unknown or not allowed before login.\r\n");
  EXPECT_TRUE(d.host().ended.empty());
  d.Feed("d QUX\r\ne NOOP\r\n");
  EXPECT_EQ(d.Take(),
            "d BAD Command unknown or not allowed before login.\r\n"
            "* BYE Too many invalid commands.\r\n");
  EXPECT_EQ(d.host().ended, "too many invalid commands");
}

TEST(ImapFrontTest, NulIsFatal) {
  Driver d(true, Tls());
  d.Take();
  d.Feed(std::string("a NO\0OP\r\n", 9));
  EXPECT_EQ(d.Take().substr(0, 6), "* BYE ");
  EXPECT_TRUE(d.front().ended());
}

TEST(ImapFrontTest, SynchronizingLiteralGetsAContinuation) {
  Driver d(true, Tls());
  d.Take();
  d.Feed("a LOGIN {5}\r\n");
  EXPECT_EQ(d.Take(), "+ OK\r\n");
  d.Feed("alice {2}\r\n");
  EXPECT_EQ(d.Take(), "+ OK\r\n");
  d.Feed("pw\r\n");
  ASSERT_EQ(d.host().logins.size(), 1u);
  EXPECT_EQ(d.host().logins[0].authcid, "alice");
}

TEST(ImapFrontTest, LongCredentialsWithinTheLineLimit) {
  Driver d(true, Tls());
  d.Take();
  const std::string user(3000, 'u');
  const std::string pass(5000, 'p');
  d.Feed(absl::StrCat("a LOGIN {", user.size(), "+}\r\n", user, " {", pass.size(), "+}\r\n", pass,
                      "\r\n"));
  ASSERT_EQ(d.host().logins.size(), 1u);
  EXPECT_EQ(d.host().logins[0].authcid, user);
  EXPECT_EQ(d.host().logins[0].secret, pass);
}

// The whole dialogue gives the same answers at every split of its bytes.
TEST(ImapFrontTest, SameAnswersAtEverySplit) {
  const std::string script =
      "a CAPABILITY\r\nb NOOP\r\nc ID (\"name\" \"x\")\r\nd FOO\r\n"
      "e AUTHENTICATE PLAIN\r\n*\r\nf LOGIN {5+}\r\nalice \"pw\"\r\n";
  Driver whole(true, Tls());
  whole.Feed(script);
  const std::string expected = whole.Take();
  ASSERT_EQ(whole.host().logins.size(), 1u);
  for (size_t cut = 1; cut < script.size(); ++cut) {
    for (size_t slab : {7, 16384}) {
      Driver d(true, Tls(), slab);
      d.Feed(script.substr(0, cut));
      d.Feed(script.substr(cut));
      ASSERT_EQ(d.Take(), expected) << "cut " << cut << " slab " << slab;
      ASSERT_EQ(d.host().logins.size(), 1u);
    }
  }
  Driver bytes(true, Tls(), 5);
  for (char c : script) bytes.Feed(std::string(1, c));
  EXPECT_EQ(bytes.Take(), expected);
}

TEST(ImapFrontTest, TheTailOfAnOverlongSaslLineIsNotACommand) {
  // The same rule as POP3's below (both fronts share the exchange's code,
  // protocol/sasl_front.h): the overlong line ends the exchange with
  // [TOOBIG], and its rest is dropped, not parsed as a command.
  FrontOptions o = Tls();
  o.max_sasl_line = 16;
  Driver d(true, o);
  d.Take();
  d.Feed("a AUTHENTICATE PLAIN\r\n");
  EXPECT_EQ(d.Take(), "+ \r\n");
  d.Feed(std::string(40, 'A'));
  d.Feed("b LOGOUT but not a command\r\nc NOOP\r\n");
  EXPECT_EQ(d.Take(), "a BAD [TOOBIG] SASL response too long.\r\nc OK NOOP completed.\r\n");
  EXPECT_TRUE(d.host().ended.empty());
}

TEST(Pop3FrontTest, TheTailOfAnOverlongSaslLineIsNotACommand) {
  // However the bytes are cut (found by the pop3_front fuzzer: in pieces,
  // the tail was parsed as a command).
  FrontOptions o = Tls();
  o.max_sasl_line = 16;
  Driver d(false, o);
  d.Take();
  d.Feed("AUTH PLAIN\r\n");
  EXPECT_EQ(d.Take(), "+ \r\n");
  d.Feed(std::string(40, 'A'));
  d.Feed("QUIT but not a command\r\nNOOP\r\n");
  EXPECT_EQ(d.Take(), "-ERR SASL response too long.\r\n+OK\r\n");
  EXPECT_TRUE(d.host().ended.empty());
}

TEST(Pop3FrontTest, ANulByteGetsOneAnswerAndTheEnd) {
  FrontOptions o = Tls();
  o.error_budget = 10;
  Driver d(false, o);
  d.Take();
  d.Feed(std::string("USER a\0b\r\nNOOP\r\n", 14));
  EXPECT_EQ(d.Take(), "-ERR NUL byte in command\r\n");
  EXPECT_FALSE(d.host().ended.empty());
}

TEST(Pop3FrontTest, GreetsAndAnswersBeforeLogin) {
  Driver d(false, Tls());
  EXPECT_EQ(d.Take(), "+OK postern ready.\r\n");
  d.Feed("CAPA\r\nNOOP\r\n");
  EXPECT_EQ(d.Take(),
            "+OK Capability list follows.\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
            "AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION Postern\r\n.\r\n"
            "+OK\r\n");
  d.Feed("QUIT\r\n");
  EXPECT_EQ(d.Take(), "+OK Logging out.\r\n");
  EXPECT_EQ(d.host().ended, "client quit");
}

TEST(Pop3FrontTest, LongUserNamesUpToRfc2449sLimit) {
  Driver d(false, Tls());
  d.Take();
  const std::string user = std::string(90, 'a') + "@" + std::string(150, 'b') + ".example";
  d.Feed("USER " + user + "\r\nPASS secret word\r\nCAPA\r\n");
  EXPECT_EQ(d.Take(), "+OK\r\n");
  ASSERT_EQ(d.host().logins.size(), 1u);
  EXPECT_EQ(d.host().logins[0].authcid, user);
  EXPECT_EQ(d.host().logins[0].secret, "secret word");
  EXPECT_EQ(d.in().ToString(), "CAPA\r\n");
  LoginReply ok;
  ok.kind = LoginReply::Kind::kOk;
  d.front().LoginSucceeded(ok);
  EXPECT_EQ(d.Take(), "+OK Logged in.\r\n");
}

TEST(Pop3FrontTest, StlsDropsWhatWasPipelinedAndForgetsTheUser) {
  FrontOptions o;
  o.starttls = true;
  Driver d(false, o);
  d.Take();
  d.Feed("CAPA\r\n");
  std::string caps = d.Take();
  EXPECT_NE(caps.find("STLS\r\n"), std::string::npos);
  EXPECT_EQ(caps.find("USER\r\n"), std::string::npos);
  d.Feed("USER alice\r\n");
  EXPECT_EQ(d.Take(),
            "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
  d.Feed("STLS\r\nUSER evil\r\n");
  EXPECT_EQ(d.Take(), "+OK Begin TLS negotiation now.\r\n");
  d.Feed("PASS x\r\n");
  EXPECT_EQ(d.Take(), "-ERR No user name given (USER first).\r\n");
}

TEST(Pop3FrontTest, AuthExchanges) {
  Driver d(false, Tls());
  d.Take();
  d.Feed("AUTH\r\n");
  EXPECT_EQ(d.Take(), "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
  d.Feed("AUTH PLAIN\r\n");
  EXPECT_EQ(d.Take(), "+ \r\n");
  d.Feed(EncodeSaslPlain("", "alice", "pw") + "\r\n");
  ASSERT_EQ(d.host().logins.size(), 1u);
  LoginReply r;
  r.kind = LoginReply::Kind::kUnavailable;
  d.front().LoginFailed(r);
  EXPECT_EQ(d.Take(), "-ERR [SYS/TEMP] Backend server unavailable, try again later.\r\n");
  d.Feed("AUTH LOGIN " + EncodeBase64("alice") + "\r\n");
  EXPECT_EQ(d.Take(), "+ UGFzc3dvcmQ6\r\n");
  d.Feed("*\r\n");
  EXPECT_EQ(d.Take(), "-ERR Authentication canceled.\r\n");
  d.Feed("AUTH PLAIN =\r\n");
  EXPECT_EQ(d.Take(), "-ERR Invalid SASL data: PLAIN: missing NUL\r\n");
}

TEST(Pop3FrontTest, ErrorBudgetAllowsThatManyErrors) {
  FrontOptions o = Tls();
  o.error_budget = 2;
  Driver d(false, o);
  d.Take();
  d.Feed("FOO\r\nBAR\r\n");
  EXPECT_TRUE(d.host().ended.empty());
  d.Take();
  d.Feed("BAZ\r\n");
  EXPECT_EQ(d.Take(),
            "-ERR Unknown command or not allowed before login.\r\n"
            "-ERR Too many invalid commands.\r\n");
  EXPECT_EQ(d.host().ended, "too many invalid commands");
}

TEST(Pop3FrontTest, SameAnswersAtEverySplit) {
  const std::string script = "CAPA\r\nNOOP\r\nFOO\r\nAUTH PLAIN\r\n*\r\nUSER alice\r\nPASS pw\r\n";
  Driver whole(false, Tls());
  whole.Feed(script);
  const std::string expected = whole.Take();
  for (size_t cut = 1; cut < script.size(); ++cut) {
    Driver d(false, Tls(), 7);
    d.Feed(script.substr(0, cut));
    d.Feed(script.substr(cut));
    ASSERT_EQ(d.Take(), expected) << "cut " << cut;
    ASSERT_EQ(d.host().logins.size(), 1u);
  }
}

TEST(FrontTextTest, SanitizersKeepOnlySafeBytes) {
  EXPECT_EQ(SanitizeReplyText("a\r\nb\x01 c\x7f"), "ab c");
  // 8-bit text (invalid UTF-8 here) never reaches a 7-bit reply.
  EXPECT_EQ(SanitizeReplyText("d\xc3\xa9plac\xff"), "d??plac?");
  EXPECT_EQ(SanitizeReplyText(std::string(600, 'x'), 512).size(), 512u);
  EXPECT_EQ(SanitizeResponseCode("SYS/TEMP"), "SYS/TEMP");
  EXPECT_EQ(SanitizeResponseCode("ALERT] forged ["), "");
  EXPECT_EQ(SanitizeCapabilities("IMAP4rev1  IDLE x]y AUTH=PLAIN"), "IMAP4rev1 IDLE AUTH=PLAIN");
}

}  // namespace
}  // namespace postern

namespace postern {
namespace {

FrontOptions WithOAuth() {
  FrontOptions o = Tls();
  o.sasl = {Credentials::Mechanism::kPlain, Credentials::Mechanism::kXoauth2,
            Credentials::Mechanism::kOauthbearer};
  return o;
}

TEST(OAuthFrontTest, OfferedOnlyWhenConfigured) {
  Driver plain(true, Tls());
  EXPECT_EQ(plain.Take().find("XOAUTH2"), std::string::npos);
  plain.Feed("a AUTHENTICATE XOAUTH2 " + EncodeXoauth2("alice", "tok") + "\r\n");
  EXPECT_EQ(plain.Take(), "a NO Unsupported authentication mechanism.\r\n");
  Driver d(true, WithOAuth());
  EXPECT_NE(d.Take().find("AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER]"), std::string::npos);
  Driver p(false, WithOAuth());
  p.Take();
  p.Feed("CAPA\r\n");
  EXPECT_NE(p.Take().find("SASL PLAIN XOAUTH2 OAUTHBEARER\r\n"), std::string::npos);
}

TEST(OAuthFrontTest, RefusedTokenGetsTheErrorChallengeFirst) {
  for (bool imap : {true, false}) {
    Driver d(imap, WithOAuth());
    d.Take();
    d.Feed(imap ? "a AUTHENTICATE OAUTHBEARER " + EncodeOauthbearer("alice@x", "t0k") + "\r\n"
                : "AUTH OAUTHBEARER " + EncodeOauthbearer("alice@x", "t0k") + "\r\n");
    ASSERT_EQ(d.host().logins.size(), 1u);
    EXPECT_EQ(d.host().logins[0].authcid, "alice@x");
    EXPECT_EQ(d.host().logins[0].secret, "t0k");
    EXPECT_TRUE(d.host().logins[0].oauth());
    LoginReply r;
    r.kind = LoginReply::Kind::kAuthFailed;
    d.front().LoginFailed(r);
    EXPECT_EQ(d.Take(), "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJlciJ9\r\n");
    d.Feed("AQ==\r\n");
    EXPECT_EQ(d.Take(), imap ? "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                             : "-ERR [AUTH] Authentication failed.\r\n");
    // XOAUTH2 without an initial response: an empty challenge first.
    d.Feed(imap ? "b AUTHENTICATE XOAUTH2\r\n" : "AUTH XOAUTH2\r\n");
    EXPECT_EQ(d.Take(), "+ \r\n");
    d.Feed(EncodeXoauth2("bob", "tok2") + "\r\n");
    ASSERT_EQ(d.host().logins.size(), 2u);
    EXPECT_EQ(d.host().logins[1].mechanism, Credentials::Mechanism::kXoauth2);
    // A backend that is down: no error challenge, the plain refusal.
    r.kind = LoginReply::Kind::kUnavailable;
    d.front().LoginFailed(r);
    EXPECT_EQ(d.Take().substr(0, imap ? 17 : 15), imap ? "b NO [UNAVAILABLE" : "-ERR [SYS/TEMP]");
  }
}

TEST(OAuthFrontTest, AnOverlongDummyResponseIsOneLineHoweverItArrives) {
  // Found by the imap_front fuzzer: after the error challenge, a response
  // longer than max_sasl_line ended the exchange, but when it arrived cut
  // before its CRLF the rest of it was then read as commands.
  for (bool imap : {true, false}) {
    std::string outputs[2];
    for (int cut = 0; cut < 2; ++cut) {
      FrontOptions o = WithOAuth();
      o.max_sasl_line = 1024;
      Driver d(imap, o);
      d.Take();
      d.Feed(imap ? "a AUTHENTICATE OAUTHBEARER " + EncodeOauthbearer("alice@x", "t0k") + "\r\n"
                  : "AUTH OAUTHBEARER " + EncodeOauthbearer("alice@x", "t0k") + "\r\n");
      LoginReply r;
      r.kind = LoginReply::Kind::kAuthFailed;
      d.front().LoginFailed(r);
      d.Take();
      const std::string head(o.max_sasl_line + 100, 'A');
      const std::string tail = imap ? " x LOGOUT\r\nb NOOP\r\n" : " QUIT\r\nNOOP\r\n";
      if (cut == 1) {
        d.Feed(head);
        d.Feed(tail);
      } else {
        d.Feed(head + tail);
      }
      outputs[cut] = d.Take();
      EXPECT_EQ(d.host().ended, "") << outputs[cut];
    }
    EXPECT_EQ(outputs[0], outputs[1]);
    EXPECT_EQ(outputs[0], imap ? "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                                 "b OK NOOP completed.\r\n"
                               : "-ERR [AUTH] Authentication failed.\r\n+OK\r\n");
  }
}

}  // namespace
}  // namespace postern
