#include "protocol/imap_response.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace postern {
namespace {

using ::testing::ElementsAre;

// "<kind> tag=<> status=<> code=<> text=<> rest=<>"
std::string Render(const ImapResponse& r) {
  const char* kinds[] = {"UNTAGGED", "TAGGED", "CONT", "INVALID"};
  if (r.kind == ImapResponse::Kind::kInvalid) return "INVALID";
  return absl::StrCat(kinds[static_cast<int>(r.kind)], " tag=", r.tag, " status=", r.status,
                      " code=", r.code, " text=", r.text, " rest=", r.rest);
}

struct ImapRespCase {
  std::string line;
  std::string expected;
};

class ImapResponseTable : public ::testing::TestWithParam<ImapRespCase> {};

TEST_P(ImapResponseTable, Parses) {
  EXPECT_EQ(Render(ParseImapResponseLine(GetParam().line)), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Lines, ImapResponseTable,
    ::testing::Values(
        ImapRespCase{"* OK [CAPABILITY IMAP4rev1 SASL-IR ID] Dovecot ready.",
                     "UNTAGGED tag=* status=OK code=CAPABILITY IMAP4rev1 SASL-IR ID "
                     "text=Dovecot ready. rest=[CAPABILITY IMAP4rev1 SASL-IR ID] Dovecot ready."},
        ImapRespCase{"* PREAUTH hi", "UNTAGGED tag=* status=PREAUTH code= text=hi rest=hi"},
        ImapRespCase{
            "* BYE [UNAVAILABLE] busy",
            "UNTAGGED tag=* status=BYE code=UNAVAILABLE text=busy rest=[UNAVAILABLE] busy"},
        ImapRespCase{"* CAPABILITY IMAP4rev1 LITERAL+",
                     "UNTAGGED tag=* status=CAPABILITY code= text=IMAP4rev1 LITERAL+ "
                     "rest=IMAP4rev1 LITERAL+"},
        ImapRespCase{"* ID NIL", "UNTAGGED tag=* status=ID code= text=NIL rest=NIL"},
        ImapRespCase{"* 3 EXISTS", "UNTAGGED tag=* status=3 code= text=EXISTS rest=EXISTS"},
        ImapRespCase{"* [x] y", "UNTAGGED tag=* status=[x] code= text=y rest=y"},
        ImapRespCase{"a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in",
                     "TAGGED tag=a1 status=OK code=CAPABILITY IMAP4rev1 IDLE text=Logged in "
                     "rest=[CAPABILITY IMAP4rev1 IDLE] Logged in"},
        ImapRespCase{
            "a1 no [AUTHENTICATIONFAILED] Authentication failed.",
            "TAGGED tag=a1 status=no code=AUTHENTICATIONFAILED "
            "text=Authentication failed. rest=[AUTHENTICATIONFAILED] Authentication failed."},
        ImapRespCase{"a1 BAD", "TAGGED tag=a1 status=BAD code= text= rest="},
        ImapRespCase{"a1 OK [ALERT]", "TAGGED tag=a1 status=OK code=ALERT text= rest=[ALERT]"},
        ImapRespCase{"a1 OK [unclosed text",
                     "TAGGED tag=a1 status=OK code= text=[unclosed text "
                     "rest=[unclosed text"},
        ImapRespCase{"+ ", "CONT tag=+ status= code= text= rest="},
        ImapRespCase{"+", "CONT tag=+ status= code= text= rest="},
        ImapRespCase{"+ OK", "CONT tag=+ status= code= text=OK rest=OK"},
        ImapRespCase{"+ dGVzdA==", "CONT tag=+ status= code= text=dGVzdA== rest=dGVzdA=="},
        ImapRespCase{"+x", "INVALID"}, ImapRespCase{"", "INVALID"}, ImapRespCase{"*", "INVALID"},
        ImapRespCase{"* ", "INVALID"}, ImapRespCase{" a OK", "INVALID"},
        ImapRespCase{"a1 BYE x", "INVALID"},         // BYE is never tagged
        ImapRespCase{"a1 PREAUTH x", "INVALID"},     // nor PREAUTH
        ImapRespCase{"a1 CAPABILITY x", "INVALID"},  // tagged responses are status responses
        ImapRespCase{"a+1 OK x", "INVALID"}, ImapRespCase{"a{1 OK x", "INVALID"},
        ImapRespCase{"a1", "INVALID"}));

TEST(ImapResponseTest, IsIgnoresCase) {
  ImapResponse r = ParseImapResponseLine("a1 ok done");
  EXPECT_TRUE(r.Is("OK"));
  EXPECT_FALSE(r.Is("NO"));
}

TEST(ImapResponseTest, Capabilities) {
  EXPECT_THAT(SplitCapabilities("CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN"),
              ElementsAre("IMAP4rev1", "SASL-IR", "AUTH=PLAIN"));
  EXPECT_THAT(SplitCapabilities("capability  IMAP4rev1 "), ElementsAre("IMAP4rev1"));
  EXPECT_THAT(SplitCapabilities("IMAP4rev1 LITERAL+"), ElementsAre("IMAP4rev1", "LITERAL+"));
  EXPECT_THAT(SplitCapabilities("IMAP4rev1 CAPABILITY"), ElementsAre("IMAP4rev1", "CAPABILITY"));
  EXPECT_THAT(SplitCapabilities(""), ElementsAre());
  ImapResponse r = ParseImapResponseLine("* OK [CAPABILITY IMAP4rev1 literal+ ID] ready");
  std::vector<std::string> caps = SplitCapabilities(r.code);
  EXPECT_TRUE(HasCapability(caps, "LITERAL+"));
  EXPECT_TRUE(HasCapability(caps, "id"));
  EXPECT_FALSE(HasCapability(caps, "SASL-IR"));
}

struct Pop3RespCase {
  std::string line;
  std::string expected;
};

std::string Render(const Pop3Response& r) {
  const char* kinds[] = {"OK", "ERR", "CONT", "INVALID"};
  if (r.kind == Pop3Response::Kind::kInvalid) return "INVALID";
  return absl::StrCat(kinds[static_cast<int>(r.kind)], " code=", r.code, " text=", r.text);
}

class Pop3ResponseTable : public ::testing::TestWithParam<Pop3RespCase> {};

TEST_P(Pop3ResponseTable, Parses) {
  EXPECT_EQ(Render(ParsePop3ResponseLine(GetParam().line)), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Lines, Pop3ResponseTable,
    ::testing::Values(Pop3RespCase{"+OK", "OK code= text="}, Pop3RespCase{"+OK ", "OK code= text="},
                      Pop3RespCase{"+OK Dovecot ready. <1.2@host>",
                                   "OK code= text=Dovecot ready. <1.2@host>"},
                      Pop3RespCase{"-ERR [SYS/TEMP] try later", "ERR code=SYS/TEMP text=try later"},
                      Pop3RespCase{"-ERR [AUTH] Authentication failed.",
                                   "ERR code=AUTH text=Authentication failed."},
                      Pop3RespCase{"-ERR [IN-USE]", "ERR code=IN-USE text="},
                      Pop3RespCase{"-ERR [oops", "ERR code= text=[oops"},
                      Pop3RespCase{"-ERR", "ERR code= text="},
                      Pop3RespCase{"+ ", "CONT code= text="}, Pop3RespCase{"+", "CONT code= text="},
                      Pop3RespCase{"+ VXNlcm5hbWU6", "CONT code= text=VXNlcm5hbWU6"},
                      Pop3RespCase{"+ok", "INVALID"}, Pop3RespCase{"+OKAY", "INVALID"},
                      Pop3RespCase{"-ERROR x", "INVALID"}, Pop3RespCase{"-err x", "INVALID"},
                      Pop3RespCase{"+x", "INVALID"}, Pop3RespCase{"", "INVALID"},
                      Pop3RespCase{"* OK", "INVALID"}));

}  // namespace
}  // namespace postern
