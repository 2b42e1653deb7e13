#include "protocol/imap_command_parser.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/protocol/split_feeder.h"

namespace postern {
namespace {

using ::postern::testing::AllCuttings;
using ::postern::testing::Chunks;
using ::postern::testing::Describe;
using ::testing::ElementsAreArray;
using Event = ImapCommandParser::Event;

std::string RenderArg(const ImapArg& a) {
  switch (a.type) {
    case ImapArg::Type::kAtom:
      return "A:" + a.value;
    case ImapArg::Type::kString:
      return (a.literal ? "L:" : "S:") + a.value;
    case ImapArg::Type::kNil:
      return "NIL";
    case ImapArg::Type::kList: {
      std::string s = "(";
      for (size_t i = 0; i < a.list.size(); ++i) {
        if (i > 0) s += " ";
        s += RenderArg(a.list[i]);
      }
      return s + ")";
    }
  }
  return "?";
}

// "CMD <tag> <NAME> <args>", "CONT", "ERR <tag> [<code>] <text>", "FATAL [<code>] <text>".
std::string Render(Event e, const ImapCommandParser& p) {
  switch (e) {
    case Event::kCommand: {
      std::string s = "CMD " + p.command().tag + " " + p.command().name;
      for (const ImapArg& a : p.command().args) s += " " + RenderArg(a);
      return s;
    }
    case Event::kContinue:
      return "CONT";
    case Event::kError:
      return absl::StrCat("ERR ", p.error_tag(), " [", p.error_code(), "] ", p.error_text());
    case Event::kFatal:
      return absl::StrCat("FATAL [", p.error_code(), "] ", p.error_text());
    case Event::kNeedMore:
      return "NEEDMORE";
  }
  return "?";
}

std::vector<std::string> FeedAll(const ImapParserLimits& limits, const Chunks& chunks) {
  ImapCommandParser p(limits);
  std::vector<std::string> events;
  for (absl::string_view chunk : chunks) {
    while (!chunk.empty()) {
      size_t used = 0;
      Event e = p.Feed(chunk, &used);
      EXPECT_LE(used, chunk.size());
      if (e == Event::kNeedMore) {
        EXPECT_EQ(used, chunk.size());
      } else {
        EXPECT_GT(used, 0u);
        events.push_back(Render(e, p));
      }
      if (e == Event::kFatal) return events;
      chunk.remove_prefix(used);
    }
  }
  return events;
}

struct ImapCase {
  const char* name;
  std::string input;
  std::vector<std::string> events;
  ImapParserLimits limits = {};
};

ImapParserLimits Limits(size_t max_line, size_t max_literal, uint32_t budget, size_t max_args) {
  ImapParserLimits l;
  l.max_line = max_line;
  l.max_literal = max_literal;
  l.error_budget = budget;
  l.max_args = max_args;
  return l;
}

class ImapParserTable : public ::testing::TestWithParam<ImapCase> {};

TEST_P(ImapParserTable, SameEventsForEveryCutting) {
  const ImapCase& c = GetParam();
  for (const Chunks& chunks : AllCuttings(c.input)) {
    ASSERT_THAT(FeedAll(c.limits, chunks), ElementsAreArray(c.events)) << Describe(chunks);
  }
}

const std::string kNul("\0", 1);

INSTANTIATE_TEST_SUITE_P(
    Commands, ImapParserTable,
    ::testing::Values(
        ImapCase{"capability", "a1 CAPABILITY\r\n", {"CMD a1 CAPABILITY"}},
        ImapCase{"lowercase_name", "a1 capability\r\n", {"CMD a1 CAPABILITY"}},
        ImapCase{"bare_lf", "a1 NOOP\n", {"CMD a1 NOOP"}},
        ImapCase{"pipelined", "a NOOP\r\nb LOGOUT\r\n", {"CMD a NOOP", "CMD b LOGOUT"}},
        ImapCase{"login_atoms", "a1 LOGIN joe secret\r\n", {"CMD a1 LOGIN A:joe A:secret"}},
        ImapCase{"login_quoted",
                 "a1 LOGIN \"j o\\\"e\" \"p\\\\w\"\r\n",
                 {"CMD a1 LOGIN S:j o\"e S:p\\w"}},
        ImapCase{"quoted_empty_and_utf8",
                 "a1 LOGIN \"\" \"p\xc3\xa4ss\"\r\n",
                 {"CMD a1 LOGIN S: S:p\xc3\xa4ss"}},
        ImapCase{"sync_literals",
                 "a1 LOGIN {3}\r\njoe {6}\r\nse\r\nt!\r\n",
                 {"CONT", "CONT", "CMD a1 LOGIN L:joe L:se\r\nt!"}},
        ImapCase{"non_sync_literals",
                 "a1 LOGIN {3+}\r\njoe {6+}\r\nsecret\r\n",
                 {"CMD a1 LOGIN L:joe L:secret"}},
        ImapCase{"literal_holds_command_lookalike",
                 "a LOGIN {8+}\r\nb NOOP\r\n x\r\nc NOOP\r\n",
                 {"CMD a LOGIN L:b NOOP\r\n A:x", "CMD c NOOP"}},
        ImapCase{"empty_literals", "a LOGIN {0}\r\n {0+}\r\n\r\n", {"CONT", "CMD a LOGIN L: L:"}},
        ImapCase{"literal_leading_zeros", "a LOGIN {003+}\r\nabc x\r\n", {"CMD a LOGIN L:abc A:x"}},
        ImapCase{"id_list",
                 "a1 ID (\"name\" \"mutt\" \"version\" NIL)\r\n",
                 {"CMD a1 ID (S:name S:mutt S:version NIL)"}},
        ImapCase{"id_nil_lowercase", "a1 id nil\r\n", {"CMD a1 ID NIL"}},
        ImapCase{"empty_list_and_nesting",
                 "t X () ((a) (b c)) d\r\n",
                 {"CMD t X () ((A:a) (A:b A:c)) A:d"}},
        ImapCase{
            "literal_in_list", "t ID ({1+}\r\nk {1}\r\nv)\r\n", {"CONT", "CMD t ID (L:k L:v)"}},
        ImapCase{"flags_and_sets",
                 "t UID STORE 1:*,5 +FLAGS (\\Seen $Junk)\r\n",
                 {"CMD t UID A:STORE A:1:*,5 A:+FLAGS (A:\\Seen A:$Junk)"}},
        ImapCase{"authenticate_ir",
                 "a AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n",
                 {"CMD a AUTHENTICATE A:PLAIN A:AGpvZQBzZWNyZXQ="}},
        ImapCase{"tag_with_bracket", "a]1 NOOP\r\n", {"CMD a]1 NOOP"}},
        ImapCase{"depth_8_ok", "t X ((((((((a))))))))\r\n", {"CMD t X ((((((((A:a))))))))"}}));

INSTANTIATE_TEST_SUITE_P(
    Errors, ImapParserTable,
    ::testing::Values(
        ImapCase{"empty_line", "\r\na NOOP\r\n", {"ERR * [] Empty command line", "CMD a NOOP"}},
        ImapCase{"tag_only", "a1\r\nb NOOP\r\n", {"ERR a1 [] Missing command name", "CMD b NOOP"}},
        ImapCase{"tag_space", "a1 \r\n", {"ERR a1 [] Missing command name"}},
        ImapCase{"leading_space", " a NOOP\r\nb NOOP\r\n", {"ERR * [] Missing tag", "CMD b NOOP"}},
        ImapCase{"plus_in_tag",
                 "a+1 NOOP\r\nb NOOP\r\n",
                 {"ERR * [] Invalid characters in tag", "CMD b NOOP"}},
        ImapCase{"star_tag", "* NOOP\r\n", {"ERR * [] Invalid characters in tag"}},
        ImapCase{"double_space", "a  NOOP\r\n", {"ERR a [] Invalid characters in command name"}},
        ImapCase{"bad_name",
                 "a LO(IN x\r\nb NOOP\r\n",
                 {"ERR a [] Invalid characters in command name", "CMD b NOOP"}},
        ImapCase{"trailing_space", "a NOOP \r\n", {"ERR a [] Missing argument"}},
        ImapCase{
            "eight_bit_atom", "a LOGIN j\xc3\xb6 x\r\n", {"ERR a [] Invalid characters in atom"}},
        ImapCase{"tab", "a LOGIN\tx\r\n", {"ERR a [] Invalid characters in command name"}},
        ImapCase{
            "cr_without_lf", "a NOOP\rx\r\nb NOOP\r\n", {"ERR a [] CR without LF", "CMD b NOOP"}},
        ImapCase{"cr_in_quoted",
                 "a LOGIN \"x\ry\" z\r\nb NOOP\r\n",
                 {"ERR a [] Unterminated quoted string", "CMD b NOOP"}},
        ImapCase{"lf_in_quoted",
                 "a LOGIN \"x\nb NOOP\r\n",
                 {"ERR a [] Unterminated quoted string", "CMD b NOOP"}},
        ImapCase{
            "bad_escape", "a LOGIN \"x\\n\" y\r\n", {"ERR a [] Invalid escape in quoted string"}},
        ImapCase{"unterminated_list",
                 "a ID (x\r\nb NOOP\r\n",
                 {"ERR a [] Unterminated list", "CMD b NOOP"}},
        ImapCase{"unterminated_empty_list", "a ID (\r\n", {"ERR a [] Unterminated list"}},
        ImapCase{"unexpected_close", "a ID x)\r\n", {"ERR a [] Unexpected ')'"}},
        ImapCase{"close_after_space", "a ID (x )\r\n", {"ERR a [] Invalid characters in argument"}},
        ImapCase{"no_space_after_quoted",
                 "a X \"a\"\"b\"\r\n",
                 {"ERR a [] Missing space between arguments"}},
        ImapCase{"depth_9",
                 "t X (((((((((a)))))))))\r\nb NOOP\r\n",
                 {"ERR t [] Lists nested too deeply", "CMD b NOOP"}},
        ImapCase{"bad_literal_header",
                 "a LOGIN {3x}\r\nb NOOP\r\n",
                 {"ERR a [] Invalid literal", "CMD b NOOP"}},
        ImapCase{"literal_not_at_end", "a LOGIN {3} x\r\n", {"ERR a [] Invalid literal"}},
        ImapCase{"literal_no_digits", "a LOGIN {}\r\n", {"ERR a [] Invalid literal"}},
        ImapCase{"sync_literal_too_big",
                 "a LOGIN {65537}\r\nb NOOP\r\n",
                 {"ERR a [TOOBIG] Literal too big", "CMD b NOOP"}},
        ImapCase{"sync_literal_overflow",
                 "a LOGIN {99999999999999999999999999}\r\nb NOOP\r\n",
                 {"ERR a [TOOBIG] Literal too big", "CMD b NOOP"}},
        ImapCase{"non_sync_literal_too_big",
                 "a LOGIN {65537+}\r\nxxxx",
                 {"FATAL [TOOBIG] Literal too big"}},
        ImapCase{"literals_add_up",
                 "a X {6+}\r\n123456 {5}\r\nb NOOP\r\n",
                 {"ERR a [TOOBIG] Literal too big", "CMD b NOOP"},
                 Limits(100, 10, 10, 64)},
        ImapCase{"nul_in_line", "a NO" + kNul + "OP\r\n", {"FATAL [] NUL in command"}},
        ImapCase{"nul_while_discarding",
                 "a+ x" + kNul,
                 {"ERR * [] Invalid characters in tag", "FATAL [] NUL in command"}},
        ImapCase{
            "nul_in_literal", "a LOGIN {3+}\r\na" + kNul + "b\r\n", {"FATAL [] NUL in literal"}},
        ImapCase{"line_too_long",
                 "a LOGIN 0123456789012345678901234567890123456789\r\nb NOOP\r\n",
                 {"ERR a [TOOBIG] Command line too long", "CMD b NOOP"},
                 Limits(32, 100, 10, 64)},
        ImapCase{"line_exactly_max",
                 "a LOGIN 0123456789012345678901\r\n",
                 {"CMD a LOGIN A:0123456789012345678901"},
                 Limits(32, 100, 10, 64)},
        ImapCase{"line_one_over_max_at_lf",
                 "a LOGIN 01234567890123456789012\r\nb NOOP\r\n",
                 {"ERR a [TOOBIG] Command line too long", "CMD b NOOP"},
                 Limits(32, 100, 10, 64)},
        ImapCase{"literal_payload_not_counted",
                 "a X {40+}\r\n0123456789012345678901234567890123456789 y\r\n",
                 {"CMD a X L:0123456789012345678901234567890123456789 A:y"},
                 Limits(32, 100, 10, 64)},
        ImapCase{"too_many_args",
                 "a X 1 2 (3 4)\r\nb X 1 (2)\r\n",
                 {"ERR a [TOOBIG] Too many arguments", "CMD b X A:1 (A:2)"},
                 Limits(100, 100, 10, 3)},
        ImapCase{"budget",
                 "\r\n\r\n\r\na NOOP\r\n",
                 {"ERR * [] Empty command line", "ERR * [] Empty command line",
                  "FATAL [] Too many invalid commands"},
                 Limits(100, 100, 2, 64)},
        ImapCase{"budget_zero",
                 "a+ NOOP\r\n",
                 {"FATAL [] Too many invalid commands"},
                 Limits(100, 100, 0, 64)}));

// After an error the rest of the command is skipped, following the
// literals the client announces at the end of skipped lines (RFC 7888
// section 3): their bytes must never be read as commands.
INSTANTIATE_TEST_SUITE_P(
    Resync, ImapParserTable,
    ::testing::Values(
        ImapCase{"skip_non_sync_literal",
                 "a LOGIN x\"y {11+}\r\nb LOGOUT\r\n more\r\nc NOOP\r\n",
                 {"ERR a [] Invalid characters in atom", "CMD c NOOP"}},
        ImapCase{"skip_chained_literals",
                 "a X (\" {3+}\r\n\r\n\r {2+}\r\n\n\n\r\nc NOOP\r\n",
                 {"ERR a [] Unterminated quoted string", "CMD c NOOP"}},
        ImapCase{"skip_zero_literal",
                 "a+ {0+}\r\n\r\nc NOOP\r\n",
                 {"ERR * [] Invalid characters in tag", "CMD c NOOP"}},
        ImapCase{"sync_literal_not_sent",
                 "a LOGIN x\"y {5}\r\nb NOOP\r\n",
                 {"ERR a [] Invalid characters in atom", "CMD b NOOP"}},
        ImapCase{"literal_at_line_start",
                 "{5+}\r\na NOOP\r\nc NOOP\r\n",
                 {"ERR * [] Invalid characters in tag", "CMD c NOOP"}},
        ImapCase{
            "too_long_line_with_literal",
            "a LOGIN 0123456789012345678901234567890123456789 {8+}\r\nb NOOP\r\n\r\nc NOOP\r\n",
            {"ERR a [TOOBIG] Command line too long", "CMD c NOOP"},
            Limits(32, 100, 10, 64)},
        // The limit is crossed inside the literal header: the tracker still
        // sees the whole header.
        ImapCase{"too_long_inside_header",
                 "a LOGIN 0123456789012345678901 {8+}\r\nb NOOP\r\n\r\nc NOOP\r\n",
                 {"ERR a [TOOBIG] Command line too long", "CMD c NOOP"},
                 Limits(32, 100, 10, 64)},
        ImapCase{"too_long_at_lf_after_literal_header",
                 "a LOGIN 012345678901234567 {8+}\r\nb NOOP\r\n\r\nc NOOP\r\n",
                 {"ERR a [TOOBIG] Command line too long", "CMD c NOOP"},
                 Limits(32, 100, 10, 64)},
        ImapCase{"skipped_literal_too_big",
                 "a+ {101+}\r\n",
                 {"ERR * [] Invalid characters in tag", "FATAL [TOOBIG] Literal too big"},
                 Limits(100, 100, 10, 64)},
        ImapCase{"nul_in_skipped_literal",
                 "a+ {3+}\r\nx" + kNul,
                 {"ERR * [] Invalid characters in tag", "FATAL [] NUL in literal"}},
        ImapCase{"brace_inside_quoted_is_no_literal",
                 "a X \"{3+}\"\r\nb NOOP\r\n",
                 {"CMD a X S:{3+}", "CMD b NOOP"}}));

TEST(ImapCommandParserTest, FatalIsSticky) {
  ImapCommandParser p(ImapParserLimits{});
  size_t used = 0;
  ASSERT_EQ(p.Feed(kNul + "a NOOP\r\n", &used), Event::kFatal);
  EXPECT_EQ(used, 1u);
  EXPECT_EQ(p.error_tag(), "*");
  EXPECT_EQ(p.Feed("a NOOP\r\n", &used), Event::kFatal);
  EXPECT_EQ(used, 0u);
  EXPECT_EQ(p.Feed("", &used), Event::kFatal);
}

TEST(ImapCommandParserTest, StopsRightAfterEachEvent) {
  ImapCommandParser p(ImapParserLimits{});
  const std::string in = "a LOGIN {3}\r\nabc x\r\nb NOOP\r\n";
  size_t used = 0;
  ASSERT_EQ(p.Feed(in, &used), Event::kContinue);
  EXPECT_EQ(used, 13u);
  EXPECT_FALSE(p.at_command_start());
  size_t used2 = 0;
  ASSERT_EQ(p.Feed(absl::string_view(in).substr(used), &used2), Event::kCommand);
  EXPECT_EQ(used + used2, 20u);
  EXPECT_TRUE(p.at_command_start());
  EXPECT_EQ(p.command().args.size(), 2u);
  ASSERT_EQ(p.Feed(absl::string_view(in).substr(20), &used), Event::kCommand);
  EXPECT_EQ(p.command().name, "NOOP");
  EXPECT_TRUE(p.command().args.empty());
  ASSERT_EQ(p.Feed("c", &used), Event::kNeedMore);
  EXPECT_FALSE(p.at_command_start());
}

TEST(ImapCommandParserTest, AstringArguments) {
  ImapCommandParser p(ImapParserLimits{});
  size_t used = 0;
  ASSERT_EQ(p.Feed("a LOGIN nil \"x\" {1+}\r\ny z] \\S 1:* (q)\r\n", &used), Event::kCommand);
  const auto& args = p.command().args;
  ASSERT_EQ(args.size(), 7u);
  EXPECT_TRUE(args[0].IsAstring());  // NIL as a user name
  EXPECT_EQ(args[0].value, "nil");
  EXPECT_TRUE(args[1].IsAstring());
  EXPECT_TRUE(args[2].IsAstring());
  EXPECT_TRUE(args[3].IsAstring());   // "z]": ASTRING-CHAR includes "]"
  EXPECT_FALSE(args[4].IsAstring());  // "\S"
  EXPECT_FALSE(args[5].IsAstring());  // "1:*"
  EXPECT_FALSE(args[6].IsAstring());  // a list
}

// A big literal and a long line fed one byte at a time: each byte is looked
// at once (the bulk literal path and the per-byte path both stay linear).
TEST(ImapCommandParserTest, ByteAtATimeBigCommand) {
  ImapParserLimits limits;
  limits.max_line = 1 << 20;
  limits.max_literal = 1 << 20;
  ImapCommandParser p(limits);
  std::string atom(200000, 'x');
  std::string lit(500000, 'y');
  std::string in = "t X " + atom + " {" + std::to_string(lit.size()) + "+}\r\n" + lit + "\r\n";
  size_t used = 0;
  for (size_t i = 0; i + 1 < in.size(); ++i) {
    ASSERT_EQ(p.Feed(absl::string_view(in).substr(i, 1), &used), Event::kNeedMore);
  }
  ASSERT_EQ(p.Feed("\n", &used), Event::kCommand);
  ASSERT_EQ(p.command().args.size(), 2u);
  EXPECT_EQ(p.command().args[0].value.size(), atom.size());
  EXPECT_EQ(p.command().args[1].value.size(), lit.size());
}

// Random garbage (seeded) with command-like pieces: never crashes, always
// makes progress, and gives the same events however it is cut.
TEST(ImapCommandParserTest, RandomInputSameEventsForAnyCutting) {
  const std::vector<std::string> pieces = {
      "a", "1",   " ",    "\r\n", "\n", "\r", "(",    ")",     "\"",  "\\",    "{",       "}",
      "+", "{3}", "{2+}", "NIL",  "*",  "]",  "\xff", "LOGIN", "x y", "\"q\"", "{0+}\r\n"};
  std::mt19937 rng(42);
  ImapParserLimits limits = Limits(40, 30, 1000, 6);
  for (int round = 0; round < 300; ++round) {
    std::string in;
    const int n = std::uniform_int_distribution<int>(1, 40)(rng);
    for (int i = 0; i < n; ++i) {
      in += pieces[std::uniform_int_distribution<size_t>(0, pieces.size() - 1)(rng)];
    }
    const std::vector<std::string> whole = FeedAll(limits, {in});
    for (const Chunks& chunks : AllCuttings(in, round)) {
      ASSERT_THAT(FeedAll(limits, chunks), ElementsAreArray(whole)) << Describe(chunks);
    }
  }
}

}  // namespace
}  // namespace postern
