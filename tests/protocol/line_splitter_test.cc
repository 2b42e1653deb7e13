#include "protocol/line_splitter.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/buffer.h"
#include "tests/protocol/split_feeder.h"

namespace postern {
namespace {

using ::postern::testing::AllCuttings;
using ::postern::testing::Chunks;
using ::postern::testing::Describe;
using ::testing::ElementsAreArray;

// Appends each chunk to a buffer and takes every line out after each append,
// the way a session does after each read. Events: "L:<line>" or "TOOLONG".
std::vector<std::string> Split(size_t slab_size, size_t max_line, const Chunks& chunks) {
  BufferPool pool(slab_size);
  Buffer buf(pool);
  LineSplitter splitter(max_line);
  std::vector<std::string> events;
  for (absl::string_view chunk : chunks) {
    buf.Append(chunk);
    for (;;) {
      absl::string_view line;
      size_t consumed = 0;
      LineSplitter::Status s = splitter.Next(buf, &line, &consumed);
      EXPECT_LE(consumed, buf.size());
      if (s == LineSplitter::Status::kLine) events.push_back("L:" + std::string(line));
      if (s == LineSplitter::Status::kTooLong) events.push_back("TOOLONG");
      buf.Drain(consumed);
      if (s == LineSplitter::Status::kNeedMore) break;
    }
  }
  return events;
}

struct SplitCase {
  const char* name;
  size_t max_line;
  std::string input;
  std::vector<std::string> events;
};

class LineSplitterTable : public ::testing::TestWithParam<SplitCase> {};

TEST_P(LineSplitterTable, SameEventsForEveryCuttingAndSlabSize) {
  const SplitCase& c = GetParam();
  for (size_t slab : {3, 5, 16, 4096}) {
    for (const Chunks& chunks : AllCuttings(c.input)) {
      EXPECT_THAT(Split(slab, c.max_line, chunks), ElementsAreArray(c.events))
          << "slab " << slab << ", " << Describe(chunks);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LineSplitterTable,
    ::testing::Values(
        SplitCase{"crlf", 100, "a1 NOOP\r\n", {"L:a1 NOOP"}},
        SplitCase{"bare_lf", 100, "a1 NOOP\n", {"L:a1 NOOP"}},
        SplitCase{"empty_lines", 100, "\r\n\n", {"L:", "L:"}},
        SplitCase{"several", 100, "one\r\ntwo\nthree\r\n", {"L:one", "L:two", "L:three"}},
        SplitCase{"partial_tail", 100, "one\r\ntw", {"L:one"}},
        SplitCase{"cr_only_before_lf_is_stripped", 100, "a\rb\r\r\n", {"L:a\rb\r"}},
        SplitCase{"eight_bit_and_nul_pass",
                  100,
                  std::string("\xff\0x\r\n", 5),
                  {std::string("L:\xff\0x", 5)}},
        // max_line counts the terminator: "abcd\r\n" is 6 bytes.
        SplitCase{"exactly_max_crlf", 6, "abcd\r\nxy\r\n", {"L:abcd", "L:xy"}},
        SplitCase{"exactly_max_lf", 6, "abcde\nxy\n", {"L:abcde", "L:xy"}},
        SplitCase{"one_over_max", 6, "abcde\r\nxy\r\n", {"TOOLONG", "L:xy"}},
        SplitCase{"long_then_more", 6, "0123456789abcdef\r\nok\r\n", {"TOOLONG", "L:ok"}},
        SplitCase{"long_without_end", 6, "0123456789abcdef", {"TOOLONG"}},
        SplitCase{"two_long_lines", 4, "aaaaaaa\nbbbbbbbbb\nc\n", {"TOOLONG", "TOOLONG", "L:c"}},
        SplitCase{"long_then_empty", 4, "aaaaaaaaa\n\n", {"TOOLONG", "L:"}},
        SplitCase{"min_limit", 0, "\n\r\nab\n", {"L:", "L:", "TOOLONG"}}),
    [](const ::testing::TestParamInfo<SplitCase>& info) { return std::string(info.param.name); });

// The events a trivial model expects: every complete line (CR before LF
// stripped), "TOOLONG" for each line longer than max_line, and for a final
// unterminated part that already reached max_line.
std::vector<std::string> Model(absl::string_view in, size_t max_line) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t lf = in.find('\n', start);
    if (lf == absl::string_view::npos) {
      if (in.size() - start >= max_line) out.push_back("TOOLONG");
      return out;
    }
    absl::string_view line = in.substr(start, lf - start);
    if (line.size() + 1 > max_line) {
      out.push_back("TOOLONG");
    } else {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      out.push_back("L:" + std::string(line));
    }
    start = lf + 1;
  }
}

TEST(LineSplitterTest, RandomInputsMatchTheModel) {
  std::mt19937 rng(3);
  const char alphabet[] = {'a', 'b', '\r', '\n', '\0', '\xff'};
  for (int round = 0; round < 200; ++round) {
    std::string in(std::uniform_int_distribution<size_t>(0, 60)(rng), 'x');
    for (char& c : in) c = alphabet[std::uniform_int_distribution<size_t>(0, 5)(rng)];
    const size_t max_line = std::uniform_int_distribution<size_t>(2, 12)(rng);
    const size_t slab = std::uniform_int_distribution<size_t>(1, 9)(rng);
    const std::vector<std::string> want = Model(in, max_line);
    for (const Chunks& chunks : AllCuttings(in, round)) {
      ASSERT_THAT(Split(slab, max_line, chunks), ElementsAreArray(want))
          << "max_line " << max_line << ", slab " << slab << ", " << Describe(chunks);
    }
  }
}

TEST(LineSplitterTest, LineInsideOneSlabIsAViewIntoTheSlab) {
  BufferPool pool(64);
  Buffer buf(pool);
  buf.Append("a1 LOGIN joe secret\r\nrest");
  LineSplitter splitter(100);
  absl::string_view line;
  size_t consumed = 0;
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kLine);
  EXPECT_EQ(line, "a1 LOGIN joe secret");
  EXPECT_EQ(line.data(), buf.Front().data());
  EXPECT_EQ(consumed, 21u);
}

TEST(LineSplitterTest, LineAcrossSlabsIsCopied) {
  BufferPool pool(8);
  Buffer buf(pool);
  buf.Append("0123456789\r\n");
  LineSplitter splitter(100);
  absl::string_view line;
  size_t consumed = 0;
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kLine);
  EXPECT_EQ(line, "0123456789");
  const absl::string_view front = buf.Front();
  EXPECT_FALSE(line.data() >= front.data() && line.data() < front.data() + front.size());
  EXPECT_EQ(consumed, 12u);
}

TEST(LineSplitterTest, CrInNextSlabStillStrippedWithoutCopy) {
  BufferPool pool(4);
  Buffer buf(pool);
  buf.Append("abcd\r\n");  // "abcd" | "\r\n"
  LineSplitter splitter(100);
  absl::string_view line;
  size_t consumed = 0;
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kLine);
  EXPECT_EQ(line, "abcd");
  EXPECT_EQ(line.data(), buf.Front().data());
}

TEST(LineSplitterTest, DiscardingReportsConsumedOnNeedMore) {
  BufferPool pool(16);
  Buffer buf(pool);
  LineSplitter splitter(4);
  absl::string_view line;
  size_t consumed = 0;
  buf.Append("aaaaaa");
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kTooLong);
  EXPECT_EQ(consumed, 6u);
  buf.Drain(consumed);
  EXPECT_TRUE(splitter.discarding());
  buf.Append("bbb");
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kNeedMore);
  EXPECT_EQ(consumed, 3u);
  buf.Drain(consumed);
  buf.Append("b\nok\n");
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kLine);
  EXPECT_EQ(line, "ok");
  EXPECT_EQ(consumed, 5u);
  EXPECT_FALSE(splitter.discarding());
  buf.Drain(consumed);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(LineSplitterTest, ResetForgetsState) {
  BufferPool pool(16);
  Buffer buf(pool);
  LineSplitter splitter(4);
  absl::string_view line;
  size_t consumed = 0;
  buf.Append("aaaaaa");
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kTooLong);
  buf.Clear();
  splitter.Reset();
  buf.Append("ok\n");
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kLine);
  EXPECT_EQ(line, "ok");
}

TEST(LineSplitterTest, RaisingTheLimitMidLineKeepsScanPosition) {
  BufferPool pool(16);
  Buffer buf(pool);
  LineSplitter splitter(8);
  absl::string_view line;
  size_t consumed = 0;
  buf.Append("abcde");
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kNeedMore);
  splitter.set_max_line(100);
  buf.Append("fghijkl\r\n");
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kLine);
  EXPECT_EQ(line, "abcdefghijkl");
}

// A long line arriving one byte at a time: each call looks only at the new
// byte, so this stays fast (a rescan would be 2^37 byte comparisons).
TEST(LineSplitterTest, OneByteAtATimeIsLinear) {
  BufferPool pool;
  Buffer buf(pool);
  constexpr size_t kLen = 1 << 19;
  LineSplitter splitter(kLen + 2);
  absl::string_view line;
  size_t consumed = 0;
  for (size_t i = 0; i < kLen; ++i) {
    buf.Append("x");
    ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kNeedMore);
    ASSERT_EQ(consumed, 0u);
  }
  buf.Append("\n");
  ASSERT_EQ(splitter.Next(buf, &line, &consumed), LineSplitter::Status::kLine);
  EXPECT_EQ(line.size(), kLen);
  EXPECT_EQ(consumed, kLen + 1);
}

}  // namespace
}  // namespace postern
