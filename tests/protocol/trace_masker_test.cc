#include "protocol/trace_masker.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Client(TraceMasker& m, absl::string_view bytes) {
  std::string out;
  m.Client(bytes, &out);
  return out;
}

std::string Server(TraceMasker& m, absl::string_view bytes) {
  std::string out;
  m.Server(bytes, &out);
  return out;
}

TEST(TraceMaskerTest, ImapLoginArgumentsAreMasked) {
  TraceMasker m(true);
  EXPECT_EQ(Client(m, "a1 CAPABILITY\r\n"), "a1 CAPABILITY\r\n");
  EXPECT_EQ(Client(m, "a2 LOGIN alice s3cret\r\n"), "a2 LOGIN ***\r\n");
  EXPECT_EQ(Client(m, "a3 login \"alice\" \"p w\"\r\n"), "a3 login ***\r\n");
}

TEST(TraceMaskerTest, ImapLoginLiteralsAreMasked) {
  TraceMasker m(true);
  std::string out = Client(m, "a LOGIN {5}\r\n");
  out += Client(m, "alice {6+}\r\n");
  out += Client(m, "secret\r\n");
  out += Client(m, "b NOOP\r\n");
  EXPECT_THAT(out, Not(HasSubstr("secret")));
  EXPECT_THAT(out, Not(HasSubstr("alice")));
  EXPECT_THAT(out, HasSubstr("b NOOP\r\n"));
}

TEST(TraceMaskerTest, LiteralCutAnywhereStaysMasked) {
  const std::string input = "a LOGIN {5}\r\nalice {6}\r\nsecret\r\nb NOOP\r\n";
  for (size_t step = 1; step < input.size(); ++step) {
    TraceMasker m(true);
    std::string out;
    for (size_t i = 0; i < input.size(); i += step) m.Client(input.substr(i, step), &out);
    EXPECT_THAT(out, Not(HasSubstr("secret"))) << step;
    EXPECT_THAT(out, HasSubstr("b NOOP")) << step;
  }
}

TEST(TraceMaskerTest, ImapAuthenticateExchangeIsMaskedUntilTheServerAnswers) {
  TraceMasker m(true);
  EXPECT_EQ(Client(m, "a AUTHENTICATE PLAIN\r\n"), "a AUTHENTICATE PLAIN\r\n");
  EXPECT_EQ(Server(m, "+ \r\n"), "+ \r\n");
  EXPECT_EQ(Client(m, "AGFsaWNlAHNlY3JldA==\r\n"), "***\r\n");
  EXPECT_EQ(Server(m, "a OK done\r\n"), "a OK done\r\n");
  EXPECT_EQ(Client(m, "b SELECT INBOX\r\n"), "b SELECT INBOX\r\n");
}

TEST(TraceMaskerTest, ImapSaslInitialResponseIsMasked) {
  TraceMasker m(true);
  EXPECT_EQ(Client(m, "a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
            "a AUTHENTICATE PLAIN ***\r\n");
  Server(m, "a NO [AUTHENTICATIONFAILED] no\r\n");
  EXPECT_EQ(Client(m, "b LOGOUT\r\n"), "b LOGOUT\r\n");
}

TEST(TraceMaskerTest, Pop3SecretsAreMasked) {
  TraceMasker m(false);
  EXPECT_EQ(Client(m, "USER alice\r\n"), "USER alice\r\n");
  EXPECT_EQ(Client(m, "PASS my secret\r\n"), "PASS ***\r\n");
  EXPECT_EQ(Client(m, "APOP alice 0123456789abcdef\r\n"), "APOP alice ***\r\n");
  EXPECT_EQ(Client(m, "AUTH\r\n"), "AUTH\r\n");  // the list of mechanisms
  EXPECT_EQ(Client(m, "AUTH PLAIN\r\n"), "AUTH PLAIN\r\n");
  Server(m, "+ \r\n");
  EXPECT_EQ(Client(m, "AGFsaWNlAHNlY3JldA==\r\n"), "***\r\n");
  Server(m, "+OK logged in\r\n");
  EXPECT_EQ(Client(m, "STAT\r\n"), "STAT\r\n");
  EXPECT_EQ(Client(m, "AUTH PLAIN AGFsaWNl\r\n"), "AUTH PLAIN ***\r\n");
}

TEST(TraceMaskerTest, ServerLineSplitAcrossCallsEndsTheExchange) {
  TraceMasker m(false);
  Client(m, "AUTH LOGIN\r\n");
  Server(m, "+");
  Server(m, " VXNlcm5hbWU6\r\n");
  EXPECT_EQ(Client(m, "YWxpY2U=\r\n"), "***\r\n");
  Server(m, "-");
  Server(m, "ERR no\r\n");
  EXPECT_EQ(Client(m, "QUIT\r\n"), "QUIT\r\n");
}

TEST(TraceMaskerTest, LongLinesAreCut) {
  TraceMasker m(true, 16);
  const std::string out = Client(m, "a NOOP " + std::string(100, 'x') + "\r\n");
  EXPECT_LT(out.size(), 40u);
  EXPECT_THAT(out, HasSubstr("[line cut]"));
}

}  // namespace
}  // namespace postern
