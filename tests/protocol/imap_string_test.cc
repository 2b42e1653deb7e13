#include "protocol/imap_string.h"

#include <string>

#include "gtest/gtest.h"
#include "protocol/imap_command_parser.h"

namespace postern {
namespace {

using namespace std::string_literals;

TEST(ImapStringTest, Quote) {
  EXPECT_EQ(ImapQuote(""), "\"\"");
  EXPECT_EQ(ImapQuote("joe"), "\"joe\"");
  EXPECT_EQ(ImapQuote("a\"b\\c d"), "\"a\\\"b\\\\c d\"");
  EXPECT_EQ(ImapQuote("{5}"), "\"{5}\"");
}

TEST(ImapStringTest, NeedsLiteral) {
  EXPECT_FALSE(NeedsLiteral(""));
  EXPECT_FALSE(NeedsLiteral("p@ss w\"rd\\"));
  EXPECT_FALSE(NeedsLiteral(std::string(kMaxQuotedLength, 'x')));
  EXPECT_TRUE(NeedsLiteral(std::string(kMaxQuotedLength + 1, 'x')));
  EXPECT_TRUE(NeedsLiteral("a\r\nb"));
  EXPECT_TRUE(NeedsLiteral("a\nb"));
  EXPECT_TRUE(NeedsLiteral("a\rb"));
  EXPECT_TRUE(NeedsLiteral("a\0b"s));
  EXPECT_TRUE(NeedsLiteral("j\xc3\xb6rg"));
}

TEST(ImapStringTest, QuoteNeverBreaksTheCommand) {
  // An injection attempt through the password.
  EXPECT_EQ(ImapQuote("x\" \"y\r\na2 DELETE INBOX"), "{22}\r\nx\" \"y\r\na2 DELETE INBOX");
}

TEST(ImapStringTest, Literal) {
  EXPECT_EQ(ImapLiteral("abc", false), "{3}\r\nabc");
  EXPECT_EQ(ImapLiteral("abc", true), "{3+}\r\nabc");
  EXPECT_EQ(ImapLiteral("", true), "{0+}\r\n");
  EXPECT_EQ(ImapAstring("joe", true), "\"joe\"");
  EXPECT_EQ(ImapAstring("j\xc3\xb6", true), "{3+}\r\nj\xc3\xb6");
  EXPECT_EQ(ImapAstring("j\xc3\xb6", false), "{3}\r\nj\xc3\xb6");
}

// What we write, our own parser reads back to the same bytes.
TEST(ImapStringTest, RoundTripThroughTheParser) {
  const std::string values[] = {
      "",    "joe", "a\"b\\c", "sp ace", "line\r\nbreak", "\xff\xfe", std::string(2000, 'z'),
      "{5}", "(x)", "NIL"};
  for (const std::string& v : values) {
    ImapCommandParser p(ImapParserLimits{});
    const std::string cmd = "a LOGIN " + ImapAstring(v, true) + " " + ImapQuote(v) + "\r\n";
    size_t pos = 0;
    ImapCommandParser::Event e;
    do {
      size_t used = 0;
      e = p.Feed(absl::string_view(cmd).substr(pos), &used);
      pos += used;
    } while (e == ImapCommandParser::Event::kContinue);
    ASSERT_EQ(e, ImapCommandParser::Event::kCommand) << cmd;
    ASSERT_EQ(p.command().args.size(), 2u);
    EXPECT_EQ(p.command().args[0].value, v);
    EXPECT_EQ(p.command().args[0].type, ImapArg::Type::kString);
    EXPECT_EQ(p.command().args[1].value, v);
  }
}

}  // namespace
}  // namespace postern
