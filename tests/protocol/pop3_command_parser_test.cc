#include "protocol/pop3_command_parser.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/buffer.h"
#include "tests/protocol/split_feeder.h"

namespace postern {
namespace {

using ::postern::testing::AllCuttings;
using ::postern::testing::Chunks;
using ::postern::testing::Describe;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using Event = Pop3CommandReader::Event;

// "NAME|arg1|arg2" or "ERR:<message>".
std::string Parse(absl::string_view line) {
  absl::StatusOr<Pop3Command> cmd = ParsePop3Command(line);
  if (!cmd.ok()) {
    EXPECT_EQ(cmd.status().code(), absl::StatusCode::kInvalidArgument);
    return "ERR:" + std::string(cmd.status().message());
  }
  std::string s = cmd->name;
  for (const std::string& a : cmd->args) s += "|" + a;
  return s;
}

struct ParseCase {
  std::string line;
  std::string expected;
};

class Pop3ParseTable : public ::testing::TestWithParam<ParseCase> {};

TEST_P(Pop3ParseTable, Parses) { EXPECT_EQ(Parse(GetParam().line), GetParam().expected); }

const std::string k40(40, 'u');
const std::string k255(255, 'u');
const std::string k256(256, 'u');
const std::string kLongB64(300, 'A');

INSTANTIATE_TEST_SUITE_P(
    Lines, Pop3ParseTable,
    ::testing::Values(
        ParseCase{"USER joe", "USER|joe"}, ParseCase{"user joe", "USER|joe"},
        ParseCase{"CAPA", "CAPA"}, ParseCase{"STLS", "STLS"}, ParseCase{"TOP 1 10", "TOP|1|10"},
        ParseCase{"TOP  1   10  ", "TOP|1|10"},  // runs of spaces tolerated
        ParseCase{"APOP joe c4c9334bac560ecc979e58001b3e22fb",
                  "APOP|joe|c4c9334bac560ecc979e58001b3e22fb"},
        ParseCase{"PASS secret", "PASS|secret"},
        ParseCase{"PASS my  secret pass ", "PASS|my  secret pass "},
        ParseCase{"PASS  lead", "PASS| lead"}, ParseCase{"pass x", "PASS|x"},
        ParseCase{"PASS", "PASS"}, ParseCase{"PASS ", "PASS"},
        ParseCase{"PASS tab\there \xc3\xa4", "PASS|tab\there \xc3\xa4"},
        ParseCase{"PASS " + std::string(300, 'p'), "PASS|" + std::string(300, 'p')},
        ParseCase{"PASS a\rb", "ERR:Invalid characters in password"},
        ParseCase{"AUTH PLAIN", "AUTH|PLAIN"}, ParseCase{"AUTH PLAIN =", "AUTH|PLAIN|="},
        ParseCase{"AUTH PLAIN " + kLongB64, "AUTH|PLAIN|" + kLongB64},
        ParseCase{"AUTH " + kLongB64, "ERR:Argument too long"},
        ParseCase{"USER " + k40, "USER|" + k40}, ParseCase{"USER " + k255, "USER|" + k255},
        ParseCase{"USER " + k256, "ERR:Argument too long"},
        ParseCase{"USER j\xc3\xb6rg", "USER|j\xc3\xb6rg"},
        ParseCase{"USER a\tb", "ERR:Invalid characters in argument"},
        ParseCase{"USER a\rb", "ERR:Invalid characters in argument"},
        ParseCase{"", "ERR:Unknown command"}, ParseCase{" USER joe", "ERR:Unknown command"},
        ParseCase{"US", "ERR:Unknown command"}, ParseCase{"USERS joe", "ERR:Unknown command"},
        ParseCase{"US\x01R", "ERR:Unknown command"},
        ParseCase{"LIST 1 2 3 4 5 6 7 8", "LIST|1|2|3|4|5|6|7|8"},
        ParseCase{"LIST 1 2 3 4 5 6 7 8 9", "ERR:Too many arguments"},
        ParseCase{std::string("USER a\0b", 8), "ERR:NUL in command"},
        ParseCase{std::string("PASS a\0b", 8), "ERR:NUL in command"}));

// Random lines: always a command or INVALID_ARGUMENT, and whatever parses
// keeps the promises of the header.
TEST(Pop3ParseTest, RandomLines) {
  std::mt19937 rng(5);
  const std::vector<std::string> pieces = {"USER",
                                           "PASS",
                                           "AUTH",
                                           "top",
                                           " ",
                                           "  ",
                                           "x",
                                           "\t",
                                           "\r",
                                           std::string(1, '\0'),
                                           "\xc3\xa4",
                                           "=",
                                           std::string(41, 'a')};
  for (int round = 0; round < 5000; ++round) {
    std::string line;
    const int n = std::uniform_int_distribution<int>(0, 6)(rng);
    for (int i = 0; i < n; ++i) {
      line += pieces[std::uniform_int_distribution<size_t>(0, pieces.size() - 1)(rng)];
    }
    absl::StatusOr<Pop3Command> cmd = ParsePop3Command(line);
    if (!cmd.ok()) {
      ASSERT_EQ(cmd.status().code(), absl::StatusCode::kInvalidArgument) << line;
      continue;
    }
    ASSERT_GE(cmd->name.size(), 3u);
    ASSERT_LE(cmd->name.size(), 4u);
    ASSERT_LE(cmd->args.size(), kPop3MaxArgs);
    for (size_t i = 0; i < cmd->args.size(); ++i) {
      const std::string& a = cmd->args[i];
      ASSERT_EQ(a.find_first_of(std::string("\r\n\0", 3)), std::string::npos) << line;
      if (cmd->name == "PASS") continue;
      ASSERT_FALSE(a.empty());
      ASSERT_EQ(a.find_first_of(" \t"), std::string::npos) << line;
      if (!(cmd->name == "AUTH" && i == 1)) {
        ASSERT_LE(a.size(), kPop3MaxArgLength) << line;
      }
    }
  }
}

std::vector<std::string> ReadAll(const Pop3ReaderLimits& limits, size_t slab,
                                 const Chunks& chunks) {
  BufferPool pool(slab);
  Buffer buf(pool);
  Pop3CommandReader reader(limits);
  std::vector<std::string> events;
  bool in_auth = false;  // after "AUTH x", read one raw line
  for (absl::string_view chunk : chunks) {
    buf.Append(chunk);
    for (;;) {
      std::string line;
      Event e = in_auth ? reader.NextLine(buf, &line) : reader.Next(buf);
      if (e == Event::kNeedMore) break;
      if (e == Event::kCommand) {
        events.push_back("CMD " + reader.command().name + " " +
                         absl::StrJoin(reader.command().args, "|"));
        in_auth = reader.command().name == "AUTH";
      } else if (e == Event::kLine) {
        events.push_back("LINE " + line);
        in_auth = false;
      } else if (e == Event::kError) {
        events.push_back("ERR " + reader.error_text());
        in_auth = false;
      } else {
        events.push_back("FATAL " + reader.error_text());
        EXPECT_EQ(reader.Next(buf), Event::kFatal);
        return events;
      }
    }
  }
  EXPECT_EQ(pool.in_use() > 0, !buf.empty());
  return events;
}

struct ReaderCase {
  const char* name;
  std::string input;
  std::vector<std::string> events;
  Pop3ReaderLimits limits = {};
};

Pop3ReaderLimits ReaderLimits(size_t max_line, size_t max_sasl_line, uint32_t budget) {
  Pop3ReaderLimits l;
  l.max_line = max_line;
  l.max_sasl_line = max_sasl_line;
  l.error_budget = budget;
  return l;
}

class Pop3ReaderTable : public ::testing::TestWithParam<ReaderCase> {};

TEST_P(Pop3ReaderTable, SameEventsForEveryCutting) {
  const ReaderCase& c = GetParam();
  for (size_t slab : {4, 4096}) {
    for (const Chunks& chunks : AllCuttings(c.input)) {
      ASSERT_THAT(ReadAll(c.limits, slab, chunks), ElementsAreArray(c.events))
          << "slab " << slab << ", " << Describe(chunks);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Pop3ReaderTable,
    ::testing::Values(
        ReaderCase{"user_pass", "USER joe\r\nPASS s e\r\n", {"CMD USER joe", "CMD PASS s e"}},
        ReaderCase{
            "pipelined", "CAPA\r\nUSER a\nQUIT\r\n", {"CMD CAPA ", "CMD USER a", "CMD QUIT "}},
        ReaderCase{
            "auth_exchange",
            "AUTH PLAIN\r\nAGpvZQBzZWNyZXQ=\r\nAUTH LOGIN\r\n*\r\nNOOP\r\n",
            {"CMD AUTH PLAIN", "LINE AGpvZQBzZWNyZXQ=", "CMD AUTH LOGIN", "LINE *", "CMD NOOP "}},
        // SASL lines have their own, larger, limit.
        ReaderCase{"sasl_line_limit",
                   "AUTH X\r\n" + std::string(30, 'A') + "\r\nAUTH Y\r\n" + std::string(40, 'B') +
                       "\r\nEND\r\n",
                   {"CMD AUTH X", "LINE " + std::string(30, 'A'), "CMD AUTH Y", "ERR Line too long",
                    "CMD END "},
                   ReaderLimits(16, 34, 10)},
        ReaderCase{"too_long_then_ok",
                   "USER 0123456789abcdef\r\nUSER joe\r\n",
                   {"ERR Line too long", "CMD USER joe"},
                   ReaderLimits(16, 100, 10)},
        ReaderCase{"bad_then_ok",
                   "HELLO\r\nX\r\nUSER a\r\n",
                   {"ERR Unknown command", "ERR Unknown command", "CMD USER a"}},
        ReaderCase{
            "budget",
            "X\r\nX\r\nX\r\nUSER a\r\n",
            {"ERR Unknown command", "ERR Unknown command", "FATAL Too many invalid commands"},
            ReaderLimits(100, 100, 2)},
        ReaderCase{// NUL ends the session: nothing after it is read.
                   "nul",
                   std::string("US\0R\r\nUSER a\r\n", 14),
                   {"FATAL NUL byte in command"}}),
    [](const ::testing::TestParamInfo<ReaderCase>& info) { return std::string(info.param.name); });

TEST(Pop3CommandReaderTest, ChargeErrorSpendsTheBudget) {
  Pop3ReaderLimits limits;
  limits.error_budget = 2;
  Pop3CommandReader reader(limits);
  BufferPool pool;
  Buffer buf(pool);
  EXPECT_TRUE(reader.ChargeError());
  EXPECT_TRUE(reader.ChargeError());
  EXPECT_FALSE(reader.ChargeError());
  buf.Append("USER a\r\n");
  EXPECT_EQ(reader.Next(buf), Event::kFatal);
  EXPECT_EQ(reader.error_text(), "Too many invalid commands");
}

TEST(Pop3CommandReaderTest, LeavesTheRestBuffered) {
  BufferPool pool;
  Buffer buf(pool);
  Pop3CommandReader reader;
  buf.Append("STLS\r\n\x16\x03\x01");  // a TLS ClientHello right behind STLS
  ASSERT_EQ(reader.Next(buf), Event::kCommand);
  EXPECT_EQ(reader.command().name, "STLS");
  EXPECT_EQ(buf.ToString(), "\x16\x03\x01");
  buf.Clear();
  reader.Reset();
  EXPECT_EQ(reader.Next(buf), Event::kNeedMore);
  EXPECT_THAT(reader.command().args, ElementsAre());
}

}  // namespace
}  // namespace postern
