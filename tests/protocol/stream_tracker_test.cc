#include "protocol/stream_tracker.h"

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace postern {
namespace {

// Offsets (after the byte) where the stream stands right after a response,
// found by feeding `s` in pieces cut at `cuts` and stopping at boundaries.
std::vector<size_t> ImapBoundaries(const std::string& s, size_t piece) {
  ImapResponseTracker t;
  std::vector<size_t> out;
  size_t pos = 0;
  while (pos < s.size()) {
    absl::string_view chunk(s.data() + pos, std::min(piece, s.size() - pos));
    size_t used = t.FeedUntilBoundary(chunk);
    pos += used;
    if (t.at_boundary()) out.push_back(pos);
  }
  return out;
}

TEST(ImapResponseTrackerTest, LinesAndLiterals) {
  // Literal payloads that look like responses or announcements are skipped.
  const std::string s =
      "* 1 FETCH (BODY[] {13}\r\nab\r\n* BYE x\r\n)\r\n"
      "* OK [UIDNEXT 5] x\r\n"
      "a1 OK done\r\n"
      "+ idling\r\n"
      "* 2 FETCH (BODY[HEADER] {0}\r\n BODY[TEXT] ~{5}\r\n{3}\r\n)\r\n";
  const std::vector<size_t> expected = {40, 60, 72, 82, 137};
  for (size_t piece = 1; piece <= s.size(); ++piece) {
    ASSERT_EQ(ImapBoundaries(s, piece), expected) << "piece " << piece;
  }
  ImapResponseTracker t;
  t.Feed(s.substr(0, 24));
  EXPECT_FALSE(t.at_boundary());
  EXPECT_EQ(t.literal_remaining(), 13u);
  t.SkipLiteral(13);
  EXPECT_EQ(t.literal_remaining(), 0u);
  t.Feed(s.substr(37));
  EXPECT_TRUE(t.at_boundary());
}

TEST(ImapResponseTrackerTest, SplicedAfterAPeekStandsWhereTheMovedBytesEnd) {
  // What the splicing relay does: peek at the lines before a literal, feed
  // them to a copy, splice some bytes, then Spliced(). For every amount a
  // splice may move, the tracker must equal one fed those bytes.
  const std::string s =
      "* 1 FETCH (UID 7 BODY[] {10}\r\n0123456789)\r\n* 2 FETCH (UID 8 BODY[] {4}\r\nabcd)\r\n";
  const std::string first = "* 1 EXISTS\r\n";  // the tracker starts mid-stream
  ImapResponseTracker base;
  base.Feed(first);
  for (size_t peek = 1; peek <= s.size(); ++peek) {
    const absl::string_view peeked(s.data(), peek);
    ImapResponseTracker ahead = base;
    ahead.Feed(peeked);
    const uint64_t max = peek + ahead.literal_remaining();
    for (uint64_t n = 1; n <= max; ++n) {
      ImapResponseTracker t = base;
      t.Spliced(n, peeked, ahead);
      ImapResponseTracker fed = base;
      fed.Feed(absl::string_view(s).substr(0, static_cast<size_t>(n)));
      ASSERT_EQ(t.at_boundary(), fed.at_boundary()) << "peek " << peek << " n " << n;
      ASSERT_EQ(t.literal_remaining(), fed.literal_remaining()) << "peek " << peek << " n " << n;
      // And it goes on the same way.
      t.Feed(absl::string_view(s).substr(static_cast<size_t>(n)));
      EXPECT_TRUE(t.at_boundary()) << "peek " << peek << " n " << n;
    }
  }
  // Nothing peeked: the bytes are literal payload.
  ImapResponseTracker t;
  t.Feed("* 1 FETCH (BODY[] {10}\r\n");
  t.Spliced(4, "", ImapResponseTracker());
  EXPECT_EQ(t.literal_remaining(), 6u);
}

TEST(ImapResponseTrackerTest, LongLinesAndHugeLiterals) {
  ImapResponseTracker t;
  t.Feed("* LIST () \"/\" " + std::string(100000, 'x') + " {7}\r\n");
  EXPECT_EQ(t.literal_remaining(), 7u);
  t.Feed("1234567\r\n");
  EXPECT_TRUE(t.at_boundary());
  t.Feed("* 1 FETCH (BODY[] {99999999999999999999999})\r\n");  // not at the end: no literal
  EXPECT_TRUE(t.at_boundary());
  t.Feed("* 1 FETCH (BODY[] {99999999999999999999}\r\n");  // 20 digits: saturates
  EXPECT_EQ(t.literal_remaining(), UINT64_MAX);
  EXPECT_FALSE(t.at_boundary());
}

std::vector<size_t> Pop3Boundaries(const std::string& commands, const std::string& answers,
                                   size_t piece) {
  Pop3ResponseTracker t;
  t.ClientBytes(commands);
  std::vector<size_t> out;
  size_t pos = 0;
  while (pos < answers.size()) {
    absl::string_view chunk(answers.data() + pos, std::min(piece, answers.size() - pos));
    pos += t.ServerBytes(chunk, /*stop=*/true);
    if (t.at_boundary()) out.push_back(pos);
  }
  return out;
}

TEST(Pop3ResponseTrackerTest, SingleAndMultiLineAnswers) {
  const std::string commands =
      "STAT\r\nLIST\r\nLIST 1\r\nretr 1\r\n\r\nTOP 1 0\r\nUIDL\r\nCAPA\r\nRETR 9\r\nNOOP\r\n";
  // One answer per command (the empty line gets none), in order.
  const std::vector<std::string> parts = {
      "+OK 1 10\r\n",                             // STAT
      "+OK 1 messages\r\n1 10\r\n.\r\n",          // LIST
      "+OK 1 10\r\n",                             // LIST 1
      "+OK 10 octets\r\n..x\r\n\r\n.x\r\n.\r\n",  // RETR 1: stuffed lines, an empty one
      "+OK\r\nSubject: .\r\n.\r\n",               // TOP
      "+OK\r\n1 abc\r\n.\r\n",                    // UIDL
      "+OK\r\nTOP\r\n.\r\n",                      // CAPA
      "-ERR no such message\r\n",                 // RETR 9: single line
      "+OK\r\n",                                  // NOOP
  };
  std::string answers;
  std::vector<size_t> expected;
  for (const std::string& p : parts) {
    answers += p;
    expected.push_back(answers.size());
  }
  for (size_t piece = 1; piece <= answers.size(); ++piece) {
    ASSERT_EQ(Pop3Boundaries(commands, answers, piece), expected) << "piece " << piece;
  }
}

TEST(Pop3ResponseTrackerTest, InsideAMultiLineAnswerIsNotABoundary) {
  Pop3ResponseTracker t;
  t.ClientBytes("RETR 1\r\n");
  t.ServerBytes("+OK 5 octets\r\nhello");
  EXPECT_FALSE(t.at_boundary());
  t.ServerBytes("\r\n.");
  EXPECT_FALSE(t.at_boundary());
  t.ServerBytes("\r\n");
  EXPECT_TRUE(t.at_boundary());
  t.ClientBytes("RETR 1\r\n");
  t.ServerBytes("-ERR gone\r\n");
  EXPECT_TRUE(t.at_boundary());
}

TEST(Pop3ResponseTrackerTest, TooManyPipelinedCommandsAreLost) {
  Pop3ResponseTracker t;
  std::string many;
  for (uint32_t i = 0; i <= Pop3ResponseTracker::kMaxPending; ++i) many += "NOOP\r\n";
  t.ClientBytes(many);
  EXPECT_TRUE(t.lost());
  EXPECT_FALSE(t.at_boundary());
}

}  // namespace
}  // namespace postern
