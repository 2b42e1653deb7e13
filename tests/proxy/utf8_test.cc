// UTF-8 checks (proxy/utf8.h): well-formed sequences at the edges of
// Unicode's table 3-7, and U+FFFD per maximal subpart.

#include "proxy/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace postern {
namespace {

std::string Clean(absl::string_view in) {
  std::string out;
  AppendUtf8Sanitized(&out, in);
  return out;
}

TEST(Utf8Test, WellFormedEdges) {
  for (absl::string_view ok :
       {"a", "\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80",
        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"}) {
    EXPECT_EQ(ok.size(), Utf8SequenceLength(ok)) << ok;
    EXPECT_TRUE(IsValidUtf8(ok));
    EXPECT_EQ(std::string(ok), Clean(ok));
  }
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_EQ(0u, Utf8SequenceLength(""));
}

TEST(Utf8Test, IllFormed) {
  struct Case {
    absl::string_view in;
    size_t bad;  // the maximal subpart at the start
  };
  for (const Case& c : {
           Case{"\x80", 1},              // a lone continuation byte
           Case{"\xc0\xaf", 1},          // overlong (C0, C1 never lead)
           Case{"\xc1\xbf", 1},          //
           Case{"\xe0\x80\x80", 1},      // overlong three bytes: E0 needs A0..BF
           Case{"\xed\xa0\x80", 1},      // a surrogate: ED needs 80..9F
           Case{"\xf0\x80\x80\x80", 1},  // overlong four bytes
           Case{"\xf4\x90\x80\x80", 1},  // above U+10FFFF
           Case{"\xf5\x80\x80\x80", 1},  // F5..FF never lead
           Case{"\xff", 1},              //
           Case{"\xe2\x82", 2},          // cut short: both bytes are one subpart
           Case{"\xf0\x9f\x98", 3},      //
           Case{"\xe2\x82x", 2},         // cut by an ASCII byte
           Case{"\xc3", 1},              //
       }) {
    size_t bad = 99;
    EXPECT_EQ(0u, Utf8SequenceLength(c.in, &bad)) << c.in;
    EXPECT_EQ(c.bad, bad) << c.in;
    EXPECT_FALSE(IsValidUtf8(c.in));
  }
}

TEST(Utf8Test, ReplacesEachMaximalSubpartOnce) {
  EXPECT_EQ("a\xef\xbf\xbd!", Clean("a\xff!"));
  // "\xe2\x82" is one subpart, then the ASCII "x" survives.
  EXPECT_EQ("\xef\xbf\xbdx", Clean("\xe2\x82x"));
  // Surrogate halves: three replacements (ED, then A0 and 80 alone).
  EXPECT_EQ("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", Clean("\xed\xa0\x80"));
  // A truncated sequence does not eat the valid sequence after it.
  EXPECT_EQ("\xef\xbf\xbd\xc3\xa9", Clean("\xe2\xc3\xa9"));
  EXPECT_EQ("caf\xc3\xa9", Clean("caf\xc3\xa9"));
  EXPECT_EQ("\xef\xbf\xbd", Clean("\xf0\x9f\x98"));
  EXPECT_EQ(std::string("nul\0ok", 6), Clean(std::string("nul\0ok", 6)));
}

}  // namespace
}  // namespace postern
