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

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "protocol/imap_chars.h"
#include "protocol/imap_command_parser.h"
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

std::string RenderArg(const ImapArg& a) {
  switch (a.type) {
    case ImapArg::Type::kAtom:
      return "A:" + a.value;
    case ImapArg::Type::kString:
      return (a.literal ? "L:" : "S:") + a.value;
    case ImapArg::Type::kNil:
      return "NIL:" + a.value;
    case ImapArg::Type::kList: {
      std::string s = "(";
      for (const ImapArg& e : a.list) absl::StrAppend(&s, RenderArg(e), " ");
      return s + ")";
    }
  }
  return "?";
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
      std::string s = absl::StrCat("CMD ", cmd.tag, " ", cmd.name);
      for (const ImapArg& a : cmd.args) absl::StrAppend(&s, " ", RenderArg(a));
      return s;
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

std::vector<std::string> FeedAll(const ImapParserLimits& limits,
                                 const std::vector<absl::string_view>& pieces) {
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

  const std::vector<std::string> whole = FeedAll(limits, {data});
  POSTERN_FUZZ_CHECK(FeedAll(limits, ByteCuts(data)) == whole);
  POSTERN_FUZZ_CHECK(FeedAll(limits, RandomCuts(data, rng, max_piece)) == whole);
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::Run(data, size);
  return 0;
}
