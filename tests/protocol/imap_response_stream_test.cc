#include "protocol/imap_response_stream.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/protocol/split_feeder.h"

namespace postern {
namespace {

using ::postern::testing::AllCuttings;
using ::postern::testing::Chunks;
using ::postern::testing::Describe;

// Renders every callback as one string; body data arriving in several pieces
// is merged, so that every cutting of the input gives the same list.
class Recorder : public ImapResponseHandler {
 public:
  std::vector<std::string> events;

  void OnTagged(const ImapStatusResponse& r) override { events.push_back("TAGGED " + Render(r)); }
  void OnUntaggedStatus(const ImapStatusResponse& r) override {
    events.push_back("STATUS " + Render(r));
  }
  void OnContinuation(absl::string_view text) override {
    events.push_back(absl::StrCat("CONT ", text));
  }
  void OnNumeric(absl::string_view keyword, uint32_t n) override {
    events.push_back(absl::StrCat(keyword, " ", n));
  }
  void OnCapability(absl::string_view caps) override {
    events.push_back(absl::StrCat("CAPABILITY ", caps));
  }
  void OnEnabled(absl::string_view caps) override {
    events.push_back(absl::StrCat("ENABLED ", caps));
  }
  void OnFlags(absl::string_view flags) override {
    events.push_back(absl::StrCat("FLAGS ", flags));
  }
  void OnSearchNumber(uint32_t n) override { events.push_back(absl::StrCat("SEARCH# ", n)); }
  void OnSearchEnd() override { events.push_back("SEARCH END"); }
  void OnOtherUntagged(absl::string_view keyword) override {
    events.push_back(absl::StrCat("OTHER ", keyword));
  }
  void OnFetchStart(uint32_t seq) override { events.push_back(absl::StrCat("FETCH ", seq)); }
  void OnFetchUid(uint32_t uid) override { events.push_back(absl::StrCat(" UID ", uid)); }
  void OnFetchSize(uint64_t size) override { events.push_back(absl::StrCat(" SIZE ", size)); }
  void OnFetchFlags(absl::string_view flags) override {
    events.push_back(absl::StrCat(" FLAGS ", flags));
  }
  void OnFetchInternalDate(absl::string_view date) override {
    events.push_back(absl::StrCat(" DATE ", date));
  }
  void OnBodyStart(const ImapBodySection& s) override {
    std::string e = absl::StrCat(" BODY ", s.item, "[", s.section, "]");
    if (s.origin.has_value()) absl::StrAppend(&e, "<", *s.origin, ">");
    absl::StrAppend(&e, " size=", s.size, s.nil ? " nil" : "", s.literal ? " literal" : "");
    events.push_back(e);
    in_body_ = true;
    data_.clear();
  }
  void OnBodyData(absl::string_view data) override {
    EXPECT_TRUE(in_body_);
    EXPECT_FALSE(data.empty());
    data_.append(data.data(), data.size());
  }
  void OnBodyEnd() override {
    EXPECT_TRUE(in_body_);
    in_body_ = false;
    events.push_back(absl::StrCat(" DATA ", data_));
  }
  void OnFetchOther(absl::string_view item) override {
    events.push_back(absl::StrCat(" SKIP ", item));
  }
  void OnFetchEnd() override { events.push_back("FETCH END"); }

 private:
  static std::string Render(const ImapStatusResponse& r) {
    std::string s = absl::StrCat(r.tag, r.tag.empty() ? "" : " ", ImapStatusName(r.status));
    if (!r.code.empty()) {
      absl::StrAppend(&s, " [", r.code_name, "|", r.code_args);
      if (r.code_number.has_value()) absl::StrAppend(&s, "|#", *r.code_number);
      absl::StrAppend(&s, "]");
    }
    return absl::StrCat(s, " ", r.text);
  }
  bool in_body_ = false;
  std::string data_;
};

struct Result {
  std::vector<std::string> events;
  std::string error;  // "" when everything was consumed
};

Result RunStream(const Chunks& chunks, const ImapResponseLimits& limits = {}) {
  Recorder rec;
  ImapResponseStream stream(rec, limits);
  Result r;
  for (absl::string_view c : chunks) {
    absl::Status s = stream.Feed(c);
    if (!s.ok()) {
      r.error = std::string(s.message());
      EXPECT_TRUE(stream.failed());
      EXPECT_EQ(stream.Feed("* 1 EXISTS\r\n").message(), s.message()) << "stays failed";
      break;
    }
  }
  r.events = std::move(rec.events);
  return r;
}

struct Case {
  std::string name;
  std::string input;
  std::vector<std::string> events;
  std::string error = "";
};

void CheckEveryCutting(const Case& c, const ImapResponseLimits& limits = {}) {
  for (const Chunks& chunks : AllCuttings(c.input)) {
    Result r = RunStream(chunks, limits);
    if (c.error.empty()) {
      EXPECT_EQ(r.error, "") << c.name << " " << Describe(chunks);
      EXPECT_EQ(r.events, c.events) << c.name << " " << Describe(chunks);
    } else {
      EXPECT_EQ(r.error, c.error) << c.name << " " << Describe(chunks);
      // Events before the error are the same whatever the cutting, except
      // that body data may have been handed on in part: compare up to the
      // last complete event.
      for (size_t i = 0; i < std::min(r.events.size(), c.events.size()); ++i) {
        EXPECT_EQ(r.events[i], c.events[i]) << c.name << " " << Describe(chunks);
      }
    }
    if (::testing::Test::HasFailure()) return;  // one failing cutting is enough
  }
}

const std::vector<Case>& Cases() {
  static const auto* cases = new std::vector<Case>{
      {"tagged ok",
       "a1 OK [READ-WRITE] Select completed.\r\n",
       {"TAGGED a1 OK [READ-WRITE|] Select completed."}},
      {"tagged no text", "a1 OK\r\n", {"TAGGED a1 OK "}},
      {"tagged no",
       "a2 NO [TRYCREATE] No such mailbox\r\n",
       {"TAGGED a2 NO [TRYCREATE|] No such mailbox"}},
      {"tagged bad lowercase",
       "x.9 bad Error in IMAP command\n",
       {"TAGGED x.9 BAD Error in IMAP command"}},
      {"continuation", "+ OK\r\n+\r\n+ YWJj\r\n", {"CONT OK", "CONT ", "CONT YWJj"}},
      {"untagged status codes",
       "* OK [UIDVALIDITY 1796135574] UIDs valid\r\n"
       "* OK [UIDNEXT 13] Predicted next UID\r\n"
       "* OK [PERMANENTFLAGS (\\Answered \\Deleted \\*)] Flags permitted.\r\n"
       "* NO [ALERT] Disk full\r\n"
       "* BYE Server shutting down.\r\n"
       "* PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS] ready\r\n"
       "* OK [unknown-code with args] x\r\n"
       "* OK [READ-ONLY]\r\n"
       "* OK [ never closed\r\n"
       "* OK\r\n",
       {"STATUS OK [UIDVALIDITY|1796135574|#1796135574] UIDs valid",
        "STATUS OK [UIDNEXT|13|#13] Predicted next UID",
        "STATUS OK [PERMANENTFLAGS|(\\Answered \\Deleted \\*)] Flags permitted.",
        "STATUS NO [ALERT|] Disk full", "STATUS BYE Server shutting down.",
        "STATUS PREAUTH [CAPABILITY|IMAP4rev1 UIDPLUS] ready",
        "STATUS OK [UNKNOWN-CODE|with args] x", "STATUS OK [READ-ONLY|] ",
        "STATUS OK [ never closed", "STATUS OK "}},
      {"numeric",
       "* 12 EXISTS\r\n* 0 RECENT\r\n* 3 EXPUNGE\r\n* 4294967295 EXISTS\r\n",
       {"EXISTS 12", "RECENT 0", "EXPUNGE 3", "EXISTS 4294967295"}},
      {"capability enabled flags",
       "* CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS\r\n* ENABLED CONDSTORE\r\n* ENABLED\r\n"
       "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* FLAGS ()\r\n",
       {"CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS", "ENABLED CONDSTORE", "ENABLED ",
        "FLAGS \\Answered \\Flagged \\Deleted \\Seen \\Draft", "FLAGS "}},
      {"search",
       "* SEARCH 2 84 882\r\n* SEARCH\r\n* SEARCH 7 (MODSEQ 917162500)\r\n",
       {"SEARCH# 2", "SEARCH# 84", "SEARCH# 882", "SEARCH END", "SEARCH END", "SEARCH# 7",
        "SEARCH END"}},
      {"other untagged with literals",
       "* LIST (\\HasNoChildren) \".\" INBOX\r\n"
       "* ID (\"name\" {9}\r\nDove{5}\r\n \"x\" NIL)\r\n"
       "* 3 XSTRANGE {3}\r\na\r\n trailing\r\n"
       "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
       "a3 OK done\r\n",
       {"OTHER LIST", "OTHER ID", "OTHER XSTRANGE", "OTHER STATUS", "TAGGED a3 OK done"}},
      {"fetch uid size",
       "* 1 FETCH (UID 1 RFC822.SIZE 208)\r\n* 2 FETCH (RFC822.SIZE 9223372036854775807 UID "
       "4294967295)\r\n",
       {"FETCH 1", " UID 1", " SIZE 208", "FETCH END", "FETCH 2", " SIZE 9223372036854775807",
        " UID 4294967295", "FETCH END"}},
      {"fetch flags date",
       "* 3 FETCH (FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" UID "
       "9)\r\n* 4 FETCH (FLAGS ())\r\n",
       {"FETCH 3", " FLAGS \\Seen $Forwarded", " DATE 17-Jul-1996 02:44:25 -0700", " UID 9",
        "FETCH END", "FETCH 4", " FLAGS ", "FETCH END"}},
      {"fetch literal body",
       "* 1 FETCH (UID 7 BODY[] {12}\r\nab\r\n.\r\ncd)\r\nFLAGS (\\Seen))\r\n",
       {"FETCH 1", " UID 7", " BODY BODY[] size=12 literal", " DATA ab\r\n.\r\ncd)\r\n"},
       "Invalid FETCH response"},
      {"fetch literal body ok",
       "* 1 FETCH (UID 7 BODY[] {17}\r\nab\r\n.\r\ncd)\r\nA1 OK FLAGS (\\Seen))\r\n",
       {"FETCH 1", " UID 7", " BODY BODY[] size=17 literal", " DATA ab\r\n.\r\ncd)\r\nA1 OK",
        " FLAGS \\Seen", "FETCH END"}},
      {"fetch partial and sections",
       "* 2 FETCH (BODY[TEXT]<0> {3}\r\nabc UID 5 BODY[HEADER.FIELDS (SUBJECT FROM)] {0}\r\n"
       " BINARY[1] ~{2}\r\n\x01\x02 RFC822.HEADER \"a\\\"b\\\\c\" RFC822 NIL RFC822.TEXT nil "
       "BODY[1.MIME]<100> \"\")\r\n",
       {"FETCH 2", " BODY BODY[TEXT]<0> size=3 literal", " DATA abc", " UID 5",
        " BODY BODY[HEADER.FIELDS (SUBJECT FROM)] size=0 literal", " DATA ",
        " BODY BINARY[1] size=2 literal", " DATA \x01\x02", " BODY RFC822.HEADER[] size=5",
        " DATA a\"b\\c", " BODY RFC822[] size=0 nil", " DATA ", " BODY RFC822.TEXT[] size=0 nil",
        " DATA ", " BODY BODY[1.MIME]<100> size=0", " DATA ", "FETCH END"}},
      {"literal with NUL and 8-bit",
       "* 1 FETCH (BODY[] {4}\r\n" + std::string("\0\xff\r\n", 4) + ")\r\n",
       {"FETCH 1", " BODY BODY[] size=4 literal", " DATA " + std::string("\0\xff\r\n", 4),
        "FETCH END"}},
      {"skipped items",
       "* 12 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 3 "
       "1 NIL NIL NIL NIL)(\"text\" \"html\" NIL NIL NIL \"base64\" {2}\r\nxy 2 NIL NIL NIL "
       "NIL) \"alternative\" (\"boundary\" \"b\") NIL NIL NIL) UID 3 ENVELOPE (\"date\" "
       "\"subj \\\"q\\\" (x\" ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL NIL \"<id>\") "
       "X-GUID 7d1b MODSEQ (12345) BODY (\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0) "
       "BINARY.SIZE[1] 30 X-EMPTY () X-LIT8 ~{1}\r\n) RFC822.SIZE 44)\r\n",
       {"FETCH 12", " SKIP BODYSTRUCTURE", " UID 3", " SKIP ENVELOPE", " SKIP X-GUID",
        " SKIP MODSEQ", " SKIP BODY", " SKIP BINARY.SIZE[1]", " SKIP X-EMPTY", " SKIP X-LIT8",
        " SIZE 44", "FETCH END"}},
      {"interleaved unsolicited",
       "* 1 FETCH (UID 4 BODY[] {3}\r\nabc)\r\n* 2 FETCH (FLAGS (\\Deleted))\r\n"
       "* 3 EXPUNGE\r\n* 40 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen) UID 4)\r\na9 OK Fetch "
       "completed.\r\n",
       {"FETCH 1", " UID 4", " BODY BODY[] size=3 literal", " DATA abc", "FETCH END", "FETCH 2",
        " FLAGS \\Deleted", "FETCH END", "EXPUNGE 3", "EXISTS 40", "FETCH 1", " FLAGS \\Seen",
        " UID 4", "FETCH END", "TAGGED a9 OK Fetch completed."}},
      {"bare LF lines",
       "* 1 EXISTS\n* OK [UIDNEXT 2] x\na OK y\n",
       {"EXISTS 1", "STATUS OK [UIDNEXT|2|#2] x", "TAGGED a OK y"}},
      {"empty fetch list", "* 1 FETCH ()\r\n", {"FETCH 1", "FETCH END"}},
      // Errors.
      {"NUL in line", std::string("* OK a\0b\r\n", 10), {}, "NUL in response"},
      {"CR without LF", "* OK a\rb\r\n", {}, "CR without LF"},
      {"empty line", "\r\n", {}, "Invalid response start"},
      {"bad tagged status", "a1 MAYBE\r\n", {}, "Invalid status in tagged response"},
      {"star without space", "*OK\r\n", {}, "Missing space after '*'"},
      {"fetch no paren", "* 1 FETCH UID 1\r\n", {}, "Missing '(' after FETCH"},
      {"fetch seq 0", "* 0 FETCH (UID 1)\r\n", {}, "FETCH of message 0"},
      {"uid 0", "* 1 FETCH (UID 0)\r\n", {"FETCH 1"}, "UID 0"},
      {"uid overflow", "* 1 FETCH (UID 4294967296)\r\n", {"FETCH 1"}, "Number too large"},
      {"size overflow",
       "* 1 FETCH (RFC822.SIZE 9223372036854775808)\r\n",
       {"FETCH 1"},
       "Number too large"},
      {"seq overflow", "* 4294967296 EXISTS\r\n", {}, "Number too large"},
      {"literal overflow",
       "* 1 FETCH (BODY[] {99999999999999999999}\r\n",
       {"FETCH 1"},
       "Literal too big"},
      {"noise after exists", "* 1 EXISTS now\r\n", {}, "Noise after numeric response"},
      {"unterminated fetch", "* 1 FETCH (UID 1\r\n", {"FETCH 1"}, "Invalid number in FETCH"},
      {"unterminated fetch after item",
       "* 1 FETCH (UID 1 X a\r\n",
       {"FETCH 1", " UID 1", " SKIP X"},
       "Invalid FETCH response"},
      {"unbalanced list",
       "* 1 FETCH (X (a b)\r\n",
       {"FETCH 1", " SKIP X"},
       "Invalid FETCH response"},
      {"open list at eol", "* 1 FETCH (X (a b\r\n", {"FETCH 1", " SKIP X"}, "Unterminated list"},
      {"bad body value", "* 1 FETCH (BODY[] abc)\r\n", {"FETCH 1"}, "Invalid body value"},
      {"quoted with CR",
       "* 1 FETCH (BODY[] \"ab\r\n\")\r\n",
       {"FETCH 1"},
       "Unterminated quoted string"},
      {"bad escape",
       "* 1 FETCH (INTERNALDATE \"a\\b\")\r\n",
       {"FETCH 1"},
       "Invalid escape in quoted string"},
      {"noise after fetch",
       "* 1 FETCH (UID 1) x\r\n",
       {"FETCH 1", " UID 1"},
       "Noise after FETCH response"},
      {"bad literal", "* 1 FETCH (BODY[] {1x}\r\n", {"FETCH 1"}, "Invalid literal"},
      {"literal no eol", "* 1 FETCH (BODY[] {1} a)\r\n", {"FETCH 1"}, "Invalid literal"},
      {"bad origin", "* 1 FETCH (BODY[]<> {1}\r\na)\r\n", {"FETCH 1"}, "Invalid origin octet"},
      {"bad flags", "* FLAGS \\Seen\r\n", {}, "Invalid FLAGS response"},
  };
  return *cases;
}

TEST(ImapResponseStreamTest, TableAtEveryCutting) {
  for (const Case& c : Cases()) CheckEveryCutting(c);
}

TEST(ImapResponseStreamTest, DovecotSelect) {
  CheckEveryCutting(
      {"select",
       "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
       "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags "
       "permitted.\r\n"
       "* 12 EXISTS\r\n* 12 RECENT\r\n* OK [UNSEEN 1] First unseen.\r\n"
       "* OK [UIDVALIDITY 1796135574] UIDs valid\r\n* OK [UIDNEXT 13] Predicted next UID\r\n"
       "a1 OK [READ-WRITE] Select completed (0.002 + 0.000 + 0.001 secs).\r\n",
       {"FLAGS \\Answered \\Flagged \\Deleted \\Seen \\Draft",
        "STATUS OK [PERMANENTFLAGS|(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags "
        "permitted.",
        "EXISTS 12", "RECENT 12", "STATUS OK [UNSEEN|1|#1] First unseen.",
        "STATUS OK [UIDVALIDITY|1796135574|#1796135574] UIDs valid",
        "STATUS OK [UIDNEXT|13|#13] Predicted next UID",
        "TAGGED a1 OK [READ-WRITE|] Select completed (0.002 + 0.000 + 0.001 secs)."}});
}

TEST(ImapResponseStreamTest, ManyFetchSizes) {
  std::string in;
  std::vector<std::string> want;
  for (int i = 1; i <= 300; ++i) {
    absl::StrAppend(&in, "* ", i, " FETCH (UID ", i * 3, " RFC822.SIZE ", 1000 + i, ")\r\n");
    want.push_back(absl::StrCat("FETCH ", i));
    want.push_back(absl::StrCat(" UID ", i * 3));
    want.push_back(absl::StrCat(" SIZE ", 1000 + i));
    want.push_back("FETCH END");
  }
  in += "a2 OK Fetch completed.\r\n";
  want.push_back("TAGGED a2 OK Fetch completed.");
  // Every 2-way split would be slow at this size: whole, one byte at a
  // time, and odd-sized pieces.
  EXPECT_EQ(RunStream({in}).events, want);
  Chunks bytes;
  for (size_t i = 0; i < in.size(); ++i) bytes.push_back(absl::string_view(in).substr(i, 1));
  EXPECT_EQ(RunStream(bytes).events, want);
  Chunks sevens;
  for (size_t i = 0; i < in.size(); i += 7) sevens.push_back(absl::string_view(in).substr(i, 7));
  EXPECT_EQ(RunStream(sevens).events, want);
}

TEST(ImapResponseStreamTest, LiteralPayloadIsHandedOnAsViews) {
  // The payload is never copied: each OnBodyData view points into the input.
  struct Views : ImapResponseHandler {
    std::vector<absl::string_view> pieces;
    void OnBodyData(absl::string_view d) override { pieces.push_back(d); }
  } h;
  ImapResponseStream s(h);
  const std::string head = "* 1 FETCH (UID 2 BODY[] {10}\r\n01234";
  const std::string tail = "56789)\r\n";
  ASSERT_TRUE(s.Feed(head).ok());
  ASSERT_TRUE(s.Feed(tail).ok());
  ASSERT_EQ(h.pieces.size(), 2u);
  EXPECT_EQ(h.pieces[0].data(), head.data() + head.size() - 5);
  EXPECT_EQ(h.pieces[1].data(), tail.data());
  EXPECT_TRUE(s.at_response_start());
}

TEST(ImapResponseStreamTest, Limits) {
  ImapResponseLimits limits;
  limits.max_line = 40;
  CheckEveryCutting(
      {"line too long", "* OK " + std::string(100, 'x') + "\r\n", {}, "Response line too long"},
      limits);
  // Literal payloads do not count toward the line.
  CheckEveryCutting(
      {"literal not counted",
       "* 1 FETCH (BODY[] {100}\r\n" + std::string(100, 'y') + ")\r\n",
       {"FETCH 1", " BODY BODY[] size=100 literal", " DATA " + std::string(100, 'y'), "FETCH END"}},
      limits);
  // ... but the lines around them do, all together.
  CheckEveryCutting({"continuation lines count",
                     "* 1 FETCH (X {1}\r\na Y {1}\r\nb Z {1}\r\nc W {1}\r\nd V {1}\r\ne)\r\n",
                     {"FETCH 1", " SKIP X", " SKIP Y", " SKIP Z", " SKIP W"},
                     "Response line too long"},
                    limits);
  limits = {};
  limits.max_literal = 1000;
  CheckEveryCutting(
      {"literal over max", "* 1 FETCH (BODY[] {1001}\r\n", {"FETCH 1"}, "Literal too big"}, limits);
  CheckEveryCutting(
      {"skipped literal over max", "* 1 XY {1001}\r\n", {"OTHER XY"}, "Literal too big"}, limits);
  limits = {};
  limits.max_depth = 3;
  CheckEveryCutting({"depth ok", "* 1 FETCH (X (((a))))\r\n", {"FETCH 1", " SKIP X", "FETCH END"}},
                    limits);
  CheckEveryCutting({"too deep",
                     "* 1 FETCH (X ((((a)))))\r\n",
                     {"FETCH 1", " SKIP X"},
                     "Lists nested too deeply"},
                    limits);
}

TEST(ImapResponseStreamTest, HugeLiteralStreams) {
  // A literal of 2^40 bytes is announced and streamed; nothing is held.
  struct Count : ImapResponseHandler {
    uint64_t bytes = 0;
    uint64_t announced = 0;
    void OnBodyStart(const ImapBodySection& s) override { announced = s.size; }
    void OnBodyData(absl::string_view d) override { bytes += d.size(); }
  } h;
  ImapResponseStream s(h);
  ASSERT_TRUE(s.Feed("* 1 FETCH (BODY[] {1099511627776}\r\n").ok());
  const std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(s.Feed(chunk).ok());
  EXPECT_EQ(h.announced, uint64_t{1} << 40);
  EXPECT_EQ(h.bytes, uint64_t{16} << 20);
  EXPECT_FALSE(s.at_response_start());
}

}  // namespace
}  // namespace postern
