// ImapCommandParser on arbitrary bytes, with limits chosen by the input.
// Input: [max_line: 2][max_literal: 2][error budget][max_args][split seed: 4]
// [max piece] then the stream.
//
// The stream is fed three ways: in one piece, one byte at a time, and in
// random pieces. Each way must give the same events with the same commands
// and error texts (the parser's state survives any split). While feeding:
// *consumed <= the input; kNeedMore consumes everything; any other event
// consumes something; after kFatal only kFatal; at most error_budget kErrors;
// commands respect max_args, kMaxListDepth and max_literal; error tags are
// "*" or a valid tag.
//
// Round trips through the writers of protocol/imap_string.h: every command
// written back out (strings with ImapAstring, as the proxy writes to a
// backend) parses to the same command; and a LOGIN built from any two
// strings with ImapAstring parses to exactly those two strings (no user
// string can end the proxy's command early).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "protocol/imap_chars.h"
#include "protocol/imap_command_parser.h"
#include "protocol/imap_string.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern::fuzz {
namespace {

using Event = ImapCommandParser::Event;

struct Counts {
  size_t args = 0;
  size_t depth = 0;
  size_t literal_bytes = 0;
};

void Count(const std::vector<ImapArg>& args, size_t depth, Counts* c) {
  c->depth = std::max(c->depth, depth);
  for (const ImapArg& a : args) {
    ++c->args;
    switch (a.type) {
      case ImapArg::Type::kAtom:
      case ImapArg::Type::kNil:
        POSTERN_FUZZ_CHECK(!a.value.empty());
        POSTERN_FUZZ_CHECK(a.list.empty());
        break;
      case ImapArg::Type::kString:
        if (a.literal) c->literal_bytes += a.value.size();
        POSTERN_FUZZ_CHECK(a.list.empty());
        break;
      case ImapArg::Type::kList:
        POSTERN_FUZZ_CHECK(a.value.empty());
        Count(a.list, depth + 1, c);
        break;
    }
    // NUL ends the session before it can reach an argument.
    POSTERN_FUZZ_CHECK(a.value.find('\0') == std::string::npos);
  }
}

// `exact`: quoted and literal strings are told apart.
std::string RenderArg(const ImapArg& a, bool exact = true) {
  switch (a.type) {
    case ImapArg::Type::kAtom:
      return "A:" + a.value;
    case ImapArg::Type::kString:
      return (a.literal && exact ? "L:" : "S:") + a.value;
    case ImapArg::Type::kNil:
      return "NIL:" + a.value;
    case ImapArg::Type::kList: {
      std::string s = "(";
      for (const ImapArg& e : a.list) absl::StrAppend(&s, RenderArg(e, exact), " ");
      return s + ")";
    }
  }
  return "?";
}

std::string RenderCommand(const ImapCommand& cmd, bool exact = true) {
  std::string s = absl::StrCat("CMD ", cmd.tag, " ", cmd.name);
  for (const ImapArg& a : cmd.args) absl::StrAppend(&s, " ", RenderArg(a, exact));
  return s;
}

// Limits no round trip reaches.
ImapParserLimits Unlimited() {
  ImapParserLimits limits;
  limits.max_line = size_t{1} << 30;
  limits.max_literal = size_t{1} << 30;
  limits.max_args = size_t{1} << 30;
  limits.error_budget = 0;
  return limits;
}

// Parses `text`, which must hold exactly one command (and the continuation
// requests of its synchronizing literals), and returns it.
ImapCommand ParseOne(absl::string_view text) {
  ImapCommandParser p(Unlimited());
  ImapCommand out;
  bool seen = false;
  while (!text.empty()) {
    size_t used = 0;
    const Event e = p.Feed(text, &used);
    text.remove_prefix(used);
    if (e == Event::kNeedMore || e == Event::kContinue) continue;
    POSTERN_FUZZ_CHECK(e == Event::kCommand);
    POSTERN_FUZZ_CHECK(!seen);
    seen = true;
    out = p.command();
  }
  POSTERN_FUZZ_CHECK(seen);
  POSTERN_FUZZ_CHECK(p.at_command_start());
  return out;
}

void WriteArg(const ImapArg& a, bool literal_plus, std::string* out) {
  switch (a.type) {
    case ImapArg::Type::kAtom:
    case ImapArg::Type::kNil:
      out->append(a.value);
      return;
    case ImapArg::Type::kString:
      out->append(ImapAstring(a.value, literal_plus));
      return;
    case ImapArg::Type::kList:
      out->push_back('(');
      for (size_t i = 0; i < a.list.size(); ++i) {
        if (i > 0) out->push_back(' ');
        WriteArg(a.list[i], literal_plus, out);
      }
      out->push_back(')');
      return;
  }
}

void CheckRoundTrip(const ImapCommand& cmd) {
  for (const bool literal_plus : {false, true}) {
    std::string text = absl::StrCat(cmd.tag, " ", cmd.name);
    for (const ImapArg& a : cmd.args) {
      text.push_back(' ');
      WriteArg(a, literal_plus, &text);
    }
    text.append("\r\n");
    POSTERN_FUZZ_CHECK(RenderCommand(ParseOne(text), false) == RenderCommand(cmd, false));
  }
}

// LOGIN with two strings taken from the input (NUL cannot be sent at all).
void CheckAstrings(absl::string_view data) {
  std::string user(data.substr(0, data.size() / 2));
  std::string password(data.substr(data.size() / 2));
  for (std::string* s : {&user, &password})
    s->erase(std::remove(s->begin(), s->end(), '\0'), s->end());
  for (const bool literal_plus : {false, true}) {
    const ImapCommand cmd = ParseOne(absl::StrCat("a1 LOGIN ", ImapAstring(user, literal_plus), " ",
                                                  ImapAstring(password, literal_plus), "\r\n"));
    POSTERN_FUZZ_CHECK(cmd.tag == "a1" && cmd.name == "LOGIN");
    POSTERN_FUZZ_CHECK(cmd.args.size() == 2);
    POSTERN_FUZZ_CHECK(cmd.args[0].type == ImapArg::Type::kString && cmd.args[0].value == user);
    POSTERN_FUZZ_CHECK(cmd.args[1].type == ImapArg::Type::kString && cmd.args[1].value == password);
    POSTERN_FUZZ_CHECK(cmd.args[0].IsAstring() && cmd.args[1].IsAstring());
    POSTERN_FUZZ_CHECK(cmd.args[0].literal == NeedsLiteral(user));
  }
}

bool IsTag(absl::string_view tag) {
  if (tag.empty()) return false;
  for (char c : tag) {
    if (!imap_chars::IsTagChar(c)) return false;
  }
  return true;
}

std::string CheckAndRender(Event e, const ImapCommandParser& p, const ImapParserLimits& limits) {
  switch (e) {
    case Event::kCommand: {
      const ImapCommand& cmd = p.command();
      POSTERN_FUZZ_CHECK(IsTag(cmd.tag));
      POSTERN_FUZZ_CHECK(!cmd.name.empty());
      for (char c : cmd.name) POSTERN_FUZZ_CHECK(!(c >= 'a' && c <= 'z'));
      Counts counts;
      Count(cmd.args, 0, &counts);
      POSTERN_FUZZ_CHECK(counts.args <= limits.max_args);
      POSTERN_FUZZ_CHECK(counts.depth <= ImapCommandParser::kMaxListDepth);
      POSTERN_FUZZ_CHECK(counts.literal_bytes <= limits.max_literal);
      POSTERN_FUZZ_CHECK(p.at_command_start());
      return RenderCommand(cmd);
    }
    case Event::kContinue:
      return "CONT";
    case Event::kError:
      POSTERN_FUZZ_CHECK(p.error_tag() == "*" || IsTag(p.error_tag()));
      POSTERN_FUZZ_CHECK(!p.error_text().empty());
      return absl::StrCat("ERR ", p.error_tag(), " [", p.error_code(), "] ", p.error_text());
    case Event::kFatal:
      POSTERN_FUZZ_CHECK(p.error_tag() == "*");
      POSTERN_FUZZ_CHECK(!p.error_text().empty());
      return absl::StrCat("FATAL [", p.error_code(), "] ", p.error_text());
    case Event::kNeedMore:
      break;
  }
  CheckFailed(__FILE__, __LINE__, "unexpected event");
}

// `round_trip`: also write each command back out and parse it again.
std::vector<std::string> FeedAll(const ImapParserLimits& limits,
                                 const std::vector<absl::string_view>& pieces,
                                 bool round_trip = false) {
  ImapCommandParser p(limits);
  std::vector<std::string> events;
  size_t errors = 0;
  bool dead = false;
  for (absl::string_view piece : pieces) {
    if (dead) {
      // After kFatal every Feed is kFatal and consumes nothing.
      size_t used = 1;
      POSTERN_FUZZ_CHECK(p.Feed(piece, &used) == Event::kFatal);
      POSTERN_FUZZ_CHECK(used == 0);
      continue;
    }
    while (!piece.empty()) {
      size_t used = piece.size() + 1;
      const Event e = p.Feed(piece, &used);
      POSTERN_FUZZ_CHECK(used <= piece.size());
      if (e == Event::kNeedMore) {
        POSTERN_FUZZ_CHECK(used == piece.size());
      } else {
        POSTERN_FUZZ_CHECK(used > 0);
        events.push_back(CheckAndRender(e, p, limits));
        if (e == Event::kCommand && round_trip) CheckRoundTrip(p.command());
      }
      if (e == Event::kError) POSTERN_FUZZ_CHECK(++errors <= limits.error_budget);
      piece.remove_prefix(used);
      if (e == Event::kFatal) {
        dead = true;
        size_t again = 1;
        POSTERN_FUZZ_CHECK(p.Feed(piece, &again) == Event::kFatal);
        POSTERN_FUZZ_CHECK(again == 0);
        POSTERN_FUZZ_CHECK(p.Feed("a1 NOOP\r\n", &again) == Event::kFatal);
        POSTERN_FUZZ_CHECK(again == 0);
        break;
      }
    }
  }
  if (!dead) {
    size_t used = 1;
    POSTERN_FUZZ_CHECK(p.Feed("", &used) == Event::kNeedMore);
    POSTERN_FUZZ_CHECK(used == 0);
  }
  return events;
}

void Run(const uint8_t* bytes, size_t size) {
  FuzzInput in(bytes, size);
  ImapParserLimits limits;
  // Small limits most of the time, so that the inputs reach them; the
  // defaults when the choice byte says so.
  const uint16_t line_choice = in.U16();
  limits.max_line = line_choice >= 0xf000 ? ImapParserLimits{}.max_line : line_choice % 512;
  const uint16_t literal_choice = in.U16();
  limits.max_literal =
      literal_choice >= 0xf000 ? ImapParserLimits{}.max_literal : literal_choice % 512;
  limits.error_budget = in.Byte() % 24;
  const uint8_t args_choice = in.Byte();
  limits.max_args = args_choice >= 0xf0 ? ImapParserLimits{}.max_args : args_choice % 80;
  SplitRng rng(in.U32());
  const size_t max_piece = 1 + in.Byte();
  const absl::string_view data = in.Rest();

  const std::vector<std::string> whole = FeedAll(limits, {data}, /*round_trip=*/true);
  POSTERN_FUZZ_CHECK(FeedAll(limits, ByteCuts(data)) == whole);
  POSTERN_FUZZ_CHECK(FeedAll(limits, RandomCuts(data, rng, max_piece)) == whole);
  CheckAstrings(data);
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::Run(data, size);
  return 0;
}
