#include "protocol/sasl.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace postern {
namespace {

using namespace std::string_literals;

struct B64Case {
  std::string input;
  bool ok;
  std::string decoded;
};

class Base64Table : public ::testing::TestWithParam<B64Case> {};

TEST_P(Base64Table, DecodesStrictly) {
  const B64Case& c = GetParam();
  absl::StatusOr<std::string> out = DecodeBase64Strict(c.input);
  ASSERT_EQ(out.ok(), c.ok) << c.input;
  if (c.ok) {
    EXPECT_EQ(*out, c.decoded);
  } else {
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// RFC 4648 section 10 test vectors, then what a strict decoder rejects.
INSTANTIATE_TEST_SUITE_P(
    Rfc4648, Base64Table,
    ::testing::Values(
        B64Case{"", true, ""}, B64Case{"Zg==", true, "f"}, B64Case{"Zm8=", true, "fo"},
        B64Case{"Zm9v", true, "foo"}, B64Case{"Zm9vYg==", true, "foob"},
        B64Case{"Zm9vYmE=", true, "fooba"}, B64Case{"Zm9vYmFy", true, "foobar"},
        B64Case{"+/+/", true, "\xfb\xff\xbf"}, B64Case{"AA==", true, "\0"s},
        B64Case{"Zg", false, ""}, B64Case{"Zg=", false, ""}, B64Case{"Zm9", false, ""},
        B64Case{"Zm9v\r\n", false, ""}, B64Case{"Zm 9v", false, ""}, B64Case{" Zm9v", false, ""},
        B64Case{"Zm9v ", false, ""}, B64Case{"=Zm9", false, ""}, B64Case{"Zm=v", false, ""},
        B64Case{"Z===", false, ""}, B64Case{"====", false, ""}, B64Case{"Zg==Zg==", false, ""},
        B64Case{"Zh==", false, ""}, B64Case{"Zm9=", false, ""}, B64Case{"Zm-_", false, ""},
        B64Case{"Zm9v\0"s, false, ""}, B64Case{"=", false, ""}, B64Case{"*", false, ""}));

TEST(Base64Test, RoundTripsEveryLength) {
  std::mt19937 rng(7);
  for (size_t n = 0; n < 200; ++n) {
    std::string bytes(n, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    const std::string enc = EncodeBase64(bytes);
    EXPECT_EQ(enc.size() % 4, 0u);
    absl::StatusOr<std::string> dec = DecodeBase64Strict(enc);
    ASSERT_TRUE(dec.ok()) << enc;
    EXPECT_EQ(*dec, bytes);
  }
}

TEST(SaslPlainTest, Decodes) {
  absl::StatusOr<SaslPlain> p = DecodeSaslPlain(EncodeBase64("\0tim\0tanstaaftanstaaf"s));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->authzid, "");
  EXPECT_EQ(p->authcid, "tim");
  EXPECT_EQ(p->password, "tanstaaftanstaaf");

  // RFC 4616 section 4 example 2.
  p = DecodeSaslPlain(EncodeBase64("Ursel\0Kurt\0xipj3plmq"s));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->authzid, "Ursel");
  EXPECT_EQ(p->authcid, "Kurt");
  EXPECT_EQ(p->password, "xipj3plmq");

  // Spaces and 8-bit bytes are password bytes like any other.
  p = DecodeSaslPlain(EncodeBase64("\0j\xc3\xb6rg\0 p w \xe4"s));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->authcid, "j\xc3\xb6rg");
  EXPECT_EQ(p->password, " p w \xe4");
}

TEST(SaslPlainTest, Rejects) {
  for (const std::string& msg :
       {"tim"s, "\0tim"s, "tim\0pw"s, "\0\0pw"s, "\0tim\0"s, "\0tim\0p\0w"s, "a\0b\0c\0"s, ""s}) {
    absl::StatusOr<SaslPlain> p = DecodeSaslPlain(EncodeBase64(msg));
    EXPECT_FALSE(p.ok()) << EncodeBase64(msg);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(DecodeSaslPlain("AHRpbQB0YW5zdGFhZg").ok());     // missing padding
  EXPECT_FALSE(DecodeSaslPlain("AHRpbQB0YW5zdGFhZg=\n").ok());  // line break
}

TEST(SaslPlainTest, EncodeIsTheInverse) {
  EXPECT_EQ(EncodeSaslPlain("", "tim", "tanstaaftanstaaf"), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
  absl::StatusOr<SaslPlain> p = DecodeSaslPlain(EncodeSaslPlain("user", "master", "pw"));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->authzid, "user");
  EXPECT_EQ(p->authcid, "master");
  EXPECT_EQ(p->password, "pw");
}

TEST(SaslLoginTest, TwoSteps) {
  SaslLogin login;
  EXPECT_EQ(login.challenge(), SaslLogin::kUsernameChallenge);
  EXPECT_EQ(DecodeBase64Strict(SaslLogin::kUsernameChallenge).value(), "Username:");
  EXPECT_EQ(DecodeBase64Strict(SaslLogin::kPasswordChallenge).value(), "Password:");
  ASSERT_TRUE(login.Step(EncodeBase64("joe")).ok());
  EXPECT_FALSE(login.done());
  EXPECT_EQ(login.challenge(), SaslLogin::kPasswordChallenge);
  ASSERT_TRUE(login.Step(EncodeBase64("s e c")).ok());
  EXPECT_TRUE(login.done());
  EXPECT_EQ(login.username(), "joe");
  EXPECT_EQ(login.password(), "s e c");
  EXPECT_EQ(login.Step(EncodeBase64("x")).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SaslLoginTest, Rejects) {
  SaslLogin a;
  EXPECT_EQ(a.Step("am9l").code(), absl::StatusCode::kOk);
  SaslLogin b;
  EXPECT_EQ(b.Step("am9").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.Step("").code(), absl::StatusCode::kInvalidArgument);  // empty user
  EXPECT_EQ(b.Step(EncodeBase64("a\0b"s)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(b.done());
  ASSERT_TRUE(b.Step(EncodeBase64("joe")).ok());
  EXPECT_EQ(b.Step("").code(), absl::StatusCode::kInvalidArgument);  // empty password
  EXPECT_FALSE(b.done());
}

}  // namespace
}  // namespace postern

namespace postern {
namespace {

TEST(SaslOAuthTest, Xoauth2) {
  auto o =
      ParseXoauth2(std::string("user=a@b\x01"
                               "auth=Bearer tok.en\x01\x01"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->user, "a@b");
  EXPECT_EQ(o->token, "tok.en");
  EXPECT_FALSE(ParseXoauth2(std::string("user=\x01"
                                        "auth=Bearer t\x01\x01"))
                   .ok());
  EXPECT_FALSE(ParseXoauth2(std::string("user=a\x01"
                                        "auth=Basic t\x01\x01"))
                   .ok());
  EXPECT_FALSE(ParseXoauth2(std::string("user=a\x01"
                                        "auth=Bearer t\x01"))
                   .ok());
  auto round = DecodeBase64Strict(EncodeXoauth2("u", "t"));
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(ParseXoauth2(*round)->token, "t");
}

TEST(SaslOAuthTest, Oauthbearer) {
  // RFC 7628 section 4.1's example, with a= as Postern requires.
  auto o = ParseOauthbearer(
      std::string("n,a=user@example.com,\x01"
                  "host=server.example.com\x01"
                  "port=143\x01"
                  "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->user, "user@example.com");
  EXPECT_EQ(o->token, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
  auto esc =
      ParseOauthbearer(std::string("y,a=a=2Cb=3Dc,\x01"
                                   "auth=bearer T\x01\x01"));
  ASSERT_TRUE(esc.ok()) << esc.status();
  EXPECT_EQ(esc->user, "a,b=c");
  EXPECT_FALSE(ParseOauthbearer(std::string("p=tls-unique,a=u,\x01"
                                            "auth=Bearer T\x01\x01"))
                   .ok());
  EXPECT_FALSE(ParseOauthbearer(std::string("n,,\x01"
                                            "auth=Bearer T\x01\x01"))
                   .ok());
  EXPECT_FALSE(ParseOauthbearer(std::string("n,a=u,\x01"
                                            "host=x\x01\x01"))
                   .ok());
  EXPECT_FALSE(ParseOauthbearer(std::string("n,a=u=4x,\x01"
                                            "auth=Bearer T\x01\x01"))
                   .ok());
  auto round = DecodeBase64Strict(EncodeOauthbearer("a,b", "T"));
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(ParseOauthbearer(*round)->user, "a,b");
}

}  // namespace
}  // namespace postern
