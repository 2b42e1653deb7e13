#include "protocol/imap_command_parser.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "protocol/imap_chars.h"

namespace postern {
namespace {

using imap_chars::IsAstringChar;
using imap_chars::IsAtomChar;
using imap_chars::IsTagChar;

// Characters of an atom-like argument. Looser than ATOM-CHAR so that the
// arguments of any command parse: flags ("\Seen", RFC 9051 section 9 `flag`),
// sequence sets ("1:*"), LIST patterns ("%"), section specs ("BODY[1]").
bool IsArgAtomChar(char c) {
  if (c <= 0x20 || c >= 0x7f) return false;
  return c != '(' && c != ')' && c != '{' && c != '"';
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool ImapArg::IsAstring() const {
  switch (type) {
    case Type::kString:
    case Type::kNil:
      return true;
    case Type::kAtom:
      return !value.empty() && std::all_of(value.begin(), value.end(), IsAstringChar);
    case Type::kList:
      return false;
  }
  return false;
}

void ImapCommandParser::LiteralTracker::Add(char c) {
  // The LF itself is left for the caller to look at at_literal(); the
  // tracker is reset when the next line starts.
  if (c == '\n') return;
  if (c == '{') {
    state_ = kOpen;
    size_ = 0;
    non_sync_ = false;
    return;
  }
  switch (state_) {
    case kOpen:
    case kDigits:
      if (IsDigit(c)) {
        const uint64_t d = static_cast<uint64_t>(c - '0');
        // number64 may be up to 2^63-1 (RFC 9051 section 9); anything that
        // overflows is simply "too big".
        size_ = size_ > (UINT64_MAX - d) / 10 ? UINT64_MAX : size_ * 10 + d;
        state_ = kDigits;
        return;
      }
      if (state_ == kDigits && c == '+') {
        non_sync_ = true;
        state_ = kPlus;
        return;
      }
      if (state_ == kDigits && c == '}') {
        state_ = kClose;
        return;
      }
      break;
    case kPlus:
      if (c == '}') {
        state_ = kClose;
        return;
      }
      break;
    case kClose:
      if (c == '\r') {
        state_ = kCloseCr;
        return;
      }
      break;
    case kNone:
    case kCloseCr:
      break;
  }
  state_ = kNone;
}

ImapCommandParser::ImapCommandParser(const ImapParserLimits& limits) : limits_(limits) {
  ResetCommand();
}

bool ImapCommandParser::at_command_start() const {
  return state_ == State::kTag && (reset_pending_ || line_bytes_ == 0);
}

void ImapCommandParser::ResetCommand() {
  command_.tag.clear();
  command_.name.clear();
  command_.args.clear();
  stack_.clear();
  stack_.push_back(&command_.args);
  tracker_.Reset();
  line_bytes_ = 0;
  literal_bytes_ = 0;
  arg_count_ = 0;
  literal_left_ = 0;
  tag_complete_ = false;
}

ImapCommandParser::Event ImapCommandParser::Feed(absl::string_view input, size_t* consumed) {
  if (reset_pending_) {
    ResetCommand();
    reset_pending_ = false;
  }
  size_t i = 0;
  while (i < input.size()) {
    Event event;
    if (state_ == State::kDead) {
      *consumed = i;
      return Event::kFatal;
    } else if (state_ == State::kLiteralData) {
      size_t used = 0;
      event = FeedLiteral(input.substr(i), &used);
      i += used;
    } else if (state_ == State::kDiscardLiteral) {
      size_t used = 0;
      event = SkipLiteral(input.substr(i), &used);
      i += used;
    } else if (state_ == State::kAtom && IsArgAtomChar(input[i]) &&
               line_bytes_ < limits_.max_line) {
      // Fast path for atom runs (base64 initial responses are long atoms).
      // Atom characters never include "{", so the literal tracker, which is
      // idle inside an atom, needs no update.
      const size_t budget = std::min(input.size() - i, limits_.max_line - line_bytes_);
      size_t n = 1;
      while (n < budget && IsArgAtomChar(input[i + n])) ++n;
      top().back().value.append(input.data() + i, n);
      line_bytes_ += n;
      i += n;
      continue;
    } else {
      event = Step(input[i]);
      ++i;
    }
    if (event != Event::kNeedMore) {
      *consumed = i;
      return event;
    }
  }
  *consumed = input.size();
  return state_ == State::kDead ? Event::kFatal : Event::kNeedMore;
}

ImapCommandParser::Event ImapCommandParser::FeedLiteral(absl::string_view input, size_t* used) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(literal_left_, input.size()));
  // Literal octets are CHAR8 = %x01-ff (RFC 9051 section 9): no NUL.
  if (const void* nul = std::memchr(input.data(), '\0', take); nul != nullptr) {
    *used = static_cast<size_t>(static_cast<const char*>(nul) - input.data()) + 1;
    return Fatal("", "NUL in literal");
  }
  top().back().value.append(input.data(), take);
  literal_left_ -= take;
  *used = take;
  if (literal_left_ == 0) state_ = State::kAfterArg;
  return Event::kNeedMore;
}

ImapCommandParser::Event ImapCommandParser::SkipLiteral(absl::string_view input, size_t* used) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(literal_left_, input.size()));
  if (const void* nul = std::memchr(input.data(), '\0', take); nul != nullptr) {
    *used = static_cast<size_t>(static_cast<const char*>(nul) - input.data()) + 1;
    return Fatal("", "NUL in literal");
  }
  literal_left_ -= take;
  *used = take;
  if (literal_left_ == 0) state_ = State::kDiscard;  // the rest of the command line
  return Event::kNeedMore;
}

ImapCommandParser::Event ImapCommandParser::Step(char c) {
  // RFC 9051 section 9, note 3: NUL must not be used anywhere.
  if (c == '\0') return Fatal("", "NUL in command");
  tracker_.Add(c);
  if (state_ == State::kDiscard) {
    return c == '\n' ? EndDiscardedLine() : Event::kNeedMore;
  }
  if (++line_bytes_ > limits_.max_line) return Error(c, "TOOBIG", "Command line too long");
  return Dispatch(c);
}

ImapCommandParser::Event ImapCommandParser::Dispatch(char c) {
  // A CR must be followed by LF; the LF is then handled by the state the CR
  // interrupted (bare LF is accepted the same way).
  if (c == '\r' && state_ != State::kQuoted && state_ != State::kQuotedEscape &&
      state_ != State::kCr) {
    before_cr_ = state_;
    state_ = State::kCr;
    return Event::kNeedMore;
  }
  switch (state_) {
    case State::kCr:
      if (c != '\n') return Error(c, "", "CR without LF");
      state_ = before_cr_;
      return Dispatch(c);

    case State::kTag:
      if (c == ' ') {
        if (command_.tag.empty()) return Error(c, "", "Missing tag");
        tag_complete_ = true;
        state_ = State::kNameStart;
        return Event::kNeedMore;
      }
      if (c == '\n') {
        if (command_.tag.empty()) return Error(c, "", "Empty command line");
        tag_complete_ = true;
        return Error(c, "", "Missing command name");
      }
      if (!IsTagChar(c)) return Error(c, "", "Invalid characters in tag");
      command_.tag.push_back(c);
      return Event::kNeedMore;

    case State::kNameStart:
      if (c == '\n') return Error(c, "", "Missing command name");
      if (!IsAtomChar(c)) return Error(c, "", "Invalid characters in command name");
      command_.name.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
      state_ = State::kName;
      return Event::kNeedMore;

    case State::kName:
      if (c == ' ') {
        state_ = State::kArgStart;
        return Event::kNeedMore;
      }
      if (c == '\n') {
        state_ = State::kTag;
        reset_pending_ = true;
        return Event::kCommand;
      }
      if (!IsAtomChar(c)) return Error(c, "", "Invalid characters in command name");
      command_.name.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
      return Event::kNeedMore;

    case State::kArgStart:
    case State::kListStart:
      if (c == '"') {
        if (!NewArg(ImapArg::Type::kString)) return Error(c, "TOOBIG", "Too many arguments");
        state_ = State::kQuoted;
        return Event::kNeedMore;
      }
      if (c == '{') {
        if (!NewArg(ImapArg::Type::kString)) return Error(c, "TOOBIG", "Too many arguments");
        top().back().literal = true;
        state_ = State::kLiteralOpen;
        return Event::kNeedMore;
      }
      if (c == '(') {
        if (stack_.size() > kMaxListDepth) return Error(c, "", "Lists nested too deeply");
        if (!NewArg(ImapArg::Type::kList)) return Error(c, "TOOBIG", "Too many arguments");
        stack_.push_back(&top().back().list);
        state_ = State::kListStart;
        return Event::kNeedMore;
      }
      if (c == ')' && state_ == State::kListStart) {
        stack_.pop_back();
        state_ = State::kAfterArg;
        return Event::kNeedMore;
      }
      if (IsArgAtomChar(c)) {
        if (!NewArg(ImapArg::Type::kAtom)) return Error(c, "TOOBIG", "Too many arguments");
        top().back().value.push_back(c);
        state_ = State::kAtom;
        return Event::kNeedMore;
      }
      if (c == '\n') {
        return Error(c, "", state_ == State::kListStart ? "Unterminated list" : "Missing argument");
      }
      return Error(c, "", "Invalid characters in argument");

    case State::kAtom:
      if (IsArgAtomChar(c)) {
        top().back().value.push_back(c);
        return Event::kNeedMore;
      }
      if (c != ' ' && c != ')' && c != '\n') return Error(c, "", "Invalid characters in atom");
      FinishAtom();
      state_ = State::kAfterArg;
      return Dispatch(c);

    case State::kAfterArg:
      if (c == ' ') {
        state_ = State::kArgStart;
        return Event::kNeedMore;
      }
      if (c == ')') {
        if (stack_.size() == 1) return Error(c, "", "Unexpected ')'");
        stack_.pop_back();
        return Event::kNeedMore;
      }
      if (c == '\n') {
        if (stack_.size() > 1) return Error(c, "", "Unterminated list");
        state_ = State::kTag;
        reset_pending_ = true;
        return Event::kCommand;
      }
      return Error(c, "", "Missing space between arguments");

    case State::kQuoted:
      // quoted = DQUOTE *QUOTED-CHAR DQUOTE; no CR or LF inside; 8-bit
      // (UTF-8) is allowed (RFC 9051 sections 4.3 and 9).
      if (c == '"') {
        state_ = State::kAfterArg;
        return Event::kNeedMore;
      }
      if (c == '\\') {
        state_ = State::kQuotedEscape;
        return Event::kNeedMore;
      }
      if (c == '\r' || c == '\n') return Error(c, "", "Unterminated quoted string");
      top().back().value.push_back(c);
      return Event::kNeedMore;

    case State::kQuotedEscape:
      // QUOTED-CHAR allows only "\" quoted-specials (RFC 9051 section 9).
      if (c != '\\' && c != '"') return Error(c, "", "Invalid escape in quoted string");
      top().back().value.push_back(c);
      state_ = State::kQuoted;
      return Event::kNeedMore;

    case State::kLiteralOpen:
      if (!IsDigit(c)) return Error(c, "", "Invalid literal");
      state_ = State::kLiteralDigits;
      return Event::kNeedMore;

    case State::kLiteralDigits:
      if (IsDigit(c)) return Event::kNeedMore;
      if (c == '+') {
        state_ = State::kLiteralPlus;
        return Event::kNeedMore;
      }
      if (c == '}') {
        state_ = State::kLiteralClose;
        return Event::kNeedMore;
      }
      return Error(c, "", "Invalid literal");

    case State::kLiteralPlus:
      if (c != '}') return Error(c, "", "Invalid literal");
      state_ = State::kLiteralClose;
      return Event::kNeedMore;

    case State::kLiteralClose:
      // literal = "{" number64 ["+"] "}" CRLF *CHAR8 (RFC 9051 section 9).
      if (c != '\n') return Error(c, "", "Invalid literal");
      return LiteralHeaderDone(c);

    case State::kLiteralData:
    case State::kDiscard:
    case State::kDiscardLiteral:
    case State::kDead:
      break;  // handled in Feed and Step
  }
  return Error(c, "", "Internal parser state");
}

ImapCommandParser::Event ImapCommandParser::LiteralHeaderDone(char c) {
  const uint64_t size = tracker_.size();
  const bool non_sync = tracker_.non_sync();
  if (size > limits_.max_literal - literal_bytes_) {
    if (non_sync) {
      // The client sends the bytes without waiting (RFC 7888 section 4).
      return Fatal("TOOBIG", "Literal too big");
    }
    // A refused synchronizing literal is never sent: the command ends here
    // (RFC 9051 section 7.5; RFC 3501 section 7.5).
    return Error(c, "TOOBIG", "Literal too big");
  }
  literal_bytes_ += static_cast<size_t>(size);
  literal_left_ = size;
  tracker_.Reset();
  state_ = size == 0 ? State::kAfterArg : State::kLiteralData;
  return non_sync ? Event::kNeedMore : Event::kContinue;
}

bool ImapCommandParser::NewArg(ImapArg::Type type) {
  if (arg_count_ >= limits_.max_args) return false;
  ++arg_count_;
  ImapArg& arg = top().emplace_back();
  arg.type = type;
  return true;
}

void ImapCommandParser::FinishAtom() {
  ImapArg& arg = top().back();
  // nil = "NIL", case-insensitive like every keyword (RFC 9051 section 9 note 1).
  if (absl::EqualsIgnoreCase(arg.value, "NIL")) arg.type = ImapArg::Type::kNil;
}

ImapCommandParser::Event ImapCommandParser::Error(char c, absl::string_view code,
                                                  absl::string_view text) {
  if (errors_ >= limits_.error_budget) return Fatal("", "Too many invalid commands");
  ++errors_;
  error_tag_ = tag_complete_ ? command_.tag : "*";
  error_code_ = std::string(code);
  error_text_ = std::string(text);
  if (c == '\n') {
    // The line already ended: the next one is the next command, unless the
    // line announced a non-synchronizing literal.
    if (EndDiscardedLine() == Event::kFatal) return Event::kFatal;
  } else {
    state_ = State::kDiscard;
  }
  return Event::kError;
}

ImapCommandParser::Event ImapCommandParser::EndDiscardedLine() {
  if (tracker_.at_literal() && tracker_.non_sync()) {
    // RFC 7888 section 3: the client sends the literal and the rest of the
    // command without waiting. Skip them, up to the limit we would have
    // accepted.
    if (tracker_.size() > limits_.max_literal) return Fatal("TOOBIG", "Literal too big");
    literal_left_ = tracker_.size();
    tracker_.Reset();
    state_ = literal_left_ == 0 ? State::kDiscard : State::kDiscardLiteral;
    return Event::kNeedMore;
  }
  // A synchronizing literal is not sent without a continuation request, which
  // a rejected command never gets.
  ResetCommand();
  state_ = State::kTag;
  return Event::kNeedMore;
}

ImapCommandParser::Event ImapCommandParser::Fatal(absl::string_view code, absl::string_view text) {
  // (clear + push_back: GCC 12 warns falsely about operator=("*"), -Wrestrict.)
  error_tag_.clear();
  error_tag_.push_back('*');
  error_code_ = std::string(code);
  error_text_ = std::string(text);
  state_ = State::kDead;
  return Event::kFatal;
}

}  // namespace postern
