#include "protocol/dot_stuffer.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/protocol/split_feeder.h"

namespace postern {
namespace {

using ::postern::testing::AllCuttings;
using ::postern::testing::Chunks;
using ::postern::testing::Describe;

std::string EncodeChunks(const Chunks& chunks, DotStufferOptions options = {}) {
  DotStuffer s(options);
  std::string out;
  for (absl::string_view c : chunks) s.Encode(c, out);
  s.Finish(out);
  return out;
}

// The receiver's rule (RFC 1939 section 3): up to the line ".", drop the
// first "." of every line that starts with one. Returns the body and whether
// the terminator was found exactly at the end.
std::string Decode(absl::string_view wire, bool* terminated) {
  std::string out;
  *terminated = false;
  while (!wire.empty()) {
    size_t lf = wire.find("\r\n");
    if (lf == absl::string_view::npos) return out;
    absl::string_view line = wire.substr(0, lf);
    wire.remove_prefix(lf + 2);
    if (line == ".") {
      *terminated = wire.empty();
      return out;
    }
    if (!line.empty() && line[0] == '.') line.remove_prefix(1);
    out.append(line.data(), line.size());
    out += "\r\n";
  }
  return out;
}

struct Case {
  std::string in;
  std::string out;
};

TEST(DotStufferTest, Cases) {
  const std::vector<Case> cases = {
      {"", ".\r\n"},
      {".", "..\r\n.\r\n"},
      {".\r\n", "..\r\n.\r\n"},
      {"..", "...\r\n.\r\n"},
      {"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
      {"a\r\n..\r\n.b\r\n", "a\r\n...\r\n..b\r\n.\r\n"},
      {"no final newline", "no final newline\r\n.\r\n"},
      {"ends in cr\r", "ends in cr\r\r\n.\r\n"},
      {"bare\nlf\n.x\n", "bare\r\nlf\r\n..x\r\n.\r\n"},
      {"\n\n", "\r\n\r\n.\r\n"},
      {"a\rb\r\n\r.c\r\n", "a\rb\r\n\r.c\r\n.\r\n"},
      {"\xe9\xff\x80\r\n.\xc3\xbc\r\n", "\xe9\xff\x80\r\n..\xc3\xbc\r\n.\r\n"},
      {std::string("nul\0in\r\n", 8), std::string("nul\0in\r\n.\r\n", 11)},
      {"\r\n", "\r\n.\r\n"},
      {"x\r\n", "x\r\n.\r\n"},
  };
  for (const Case& c : cases) {
    for (const Chunks& chunks : AllCuttings(c.in)) {
      EXPECT_EQ(EncodeChunks(chunks), c.out) << "input " << c.in << " " << Describe(chunks);
    }
  }
}

TEST(DotStufferTest, PassThroughWithoutRepair) {
  DotStufferOptions o;
  o.repair_bare_lf = false;
  for (const Chunks& chunks : AllCuttings("a\nb\n.c\n")) {
    EXPECT_EQ(EncodeChunks(chunks, o), "a\nb\n..c\n.\r\n") << Describe(chunks);
  }
}

TEST(DotStufferTest, DovecotFirstLineQuirk) {
  DotStufferOptions o;
  o.stuff_first_line = false;
  EXPECT_EQ(EncodeChunks({".hidden\r\n.x\r\n"}, o), ".hidden\r\n..x\r\n.\r\n");
  EXPECT_EQ(EncodeChunks({".hidden\r\n.x\r\n"}), "..hidden\r\n..x\r\n.\r\n");
}

TEST(DotStufferTest, ReusableAfterFinish) {
  DotStuffer s;
  std::string out;
  s.Encode("a", out);
  s.Finish(out);
  s.Encode(".b\r\n", out);
  s.Finish(out);
  EXPECT_EQ(out, "a\r\n.\r\n..b\r\n.\r\n");
}

TEST(DotStufferTest, CleanRunsPassInOnePiece) {
  DotStuffer s;
  const std::string text = "line one\r\nline two\r\nline three\r\n";
  std::vector<absl::string_view> pieces;
  s.Encode(text, [&](absl::string_view p) { pieces.push_back(p); });
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].data(), text.data());
}

TEST(DotStufferTest, RandomRoundTrip) {
  // Random CRLF text: decoding what we send gives the text back, plus CR LF
  // when it did not end with one, and the terminator is the only ".\r\n" line.
  std::mt19937 rng(7);
  const char alphabet[] = {'.', '.', 'a', '\r', '\n', ' ', '\xff'};
  for (int round = 0; round < 2000; ++round) {
    std::string in;
    const int len = std::uniform_int_distribution<int>(0, 40)(rng);
    for (int i = 0; i < len; ++i) {
      in += alphabet[std::uniform_int_distribution<int>(0, sizeof(alphabet) - 1)(rng)];
    }
    // CRLF-normalize, the way the backend sends messages: a lone LF gets a CR.
    std::string crlf;
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) crlf += '\r';
      crlf += in[i];
    }
    // A lone CR at the very end is followed by the CR LF the encoder adds.
    Chunks chunks;
    size_t pos = 0;
    while (pos < crlf.size()) {
      const size_t n = std::uniform_int_distribution<size_t>(1, 5)(rng);
      chunks.push_back(absl::string_view(crlf).substr(pos, n));
      pos += n;
    }
    const std::string wire = EncodeChunks(chunks);
    bool terminated = false;
    std::string expect = crlf;
    if (expect.empty() || expect.back() != '\n') expect += "\r\n";
    if (expect == "\r\n" && crlf.empty()) expect = "";
    // Lines split on CRLF only: a bare CR inside a line stays in the line.
    EXPECT_EQ(Decode(wire, &terminated), expect) << crlf;
    EXPECT_TRUE(terminated) << crlf;
    // Same bytes whole and cut.
    EXPECT_EQ(EncodeChunks({crlf}), wire);
  }
}

}  // namespace
}  // namespace postern
