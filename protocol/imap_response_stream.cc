#include "protocol/imap_response_stream.h"

#include <algorithm>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/imap_chars.h"

namespace postern {
namespace {

using imap_chars::IsAtomChar;
using imap_chars::IsTagChar;

constexpr uint64_t kMaxNumber = std::numeric_limits<uint32_t>::max();   // number, nz-number
constexpr uint64_t kMaxNumber64 = std::numeric_limits<int64_t>::max();  // number64 (RFC 9051)

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Characters of a FETCH item name (msg-att: "UID", "RFC822.SIZE", "X-GUID",
// "BODY", "BINARY.SIZE").
bool IsItemChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

char Upper(char c) { return absl::ascii_toupper(static_cast<unsigned char>(c)); }

std::optional<uint64_t> ParseNumber64(absl::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : s) {
    if (!IsDigit(c)) return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n > kMaxNumber64) return std::nullopt;
  return n;
}

}  // namespace

enum class ImapResponseStream::State : uint8_t {
  kStart,              // the first byte of a response
  kTag,                // "a1"
  kTaggedStatus,       // "a1 OK"
  kStar,               // "*": SP must follow
  kUntaggedFirst,      // "* ": a number or a keyword
  kUntaggedKeyword,    // "* CAPABILITY"
  kUntaggedNumber,     // "* 12"
  kNumericKeyword,     // "* 12 EXISTS"
  kContinuation,       // "+": SP or the end of the line
  kRespTextStart,      // after "OK ": "[" or text
  kCode,               // inside "[...]"
  kAfterCode,          // after "]"
  kText,               // text up to the end of the line
  kRestText,           // CAPABILITY / ENABLED / FLAGS: the rest of the line
  kSearch,             // "* SEARCH": SP, a number, "(" or the end
  kSearchNumber,       // digits of a SEARCH number
  kSkipLine,           // an untagged response we do not read: up to its end
  kFetchParen,         // "* 1 FETCH ": "(" must follow
  kFetchItemStart,     // an item name or ")"
  kFetchItemName,      // "RFC822.SIZE", "BODY"
  kFetchSection,       // inside "BODY[...]"
  kFetchAfterSection,  // after "]": "<" or SP
  kFetchOrigin,        // "<0"
  kFetchAfterOrigin,   // after ">": SP
  kFetchValueStart,    // the first byte of an item's value
  kFetchNumber,        // UID / RFC822.SIZE digits
  kFetchFlags,         // inside FLAGS "(...)"
  kFetchQuoted,        // INTERNALDATE or a body as a quoted string
  kFetchQuotedEscape,  // after "\" in it
  kFetchNil,           // a body's NIL
  kFetchAfterValue,    // SP or ")"
  kFetchEnd,           // after ")": the end of the line
  kLiteralTilde,       // "~": "{" must follow (literal8, RFC 9051 section 9)
  kLiteralOpen,        // "{": a digit must follow
  kLiteralDigits,      // "{12"
  kLiteralClose,       // "{12}": the end of the line must follow
  kLiteralData,        // the payload
  kGenValue,           // a skipped value (or list element) starts
  kGenAtom,            // an atom, number or NIL being skipped
  kGenQuoted,          // a quoted string being skipped
  kGenQuotedEscape,
  kGenAfter,  // after a skipped value: SP or ")" inside a list
};

enum class ImapResponseStream::Item : uint8_t { kUid, kSize, kFlags, kDate, kBody, kOther };

enum class ImapResponseStream::Line : uint8_t {
  kTagged,
  kUntaggedStatus,
  kContinuation,
  kCapability,
  kEnabled,
  kFlags,
  kOther,
};

absl::string_view ImapStatusName(ImapStatus s) {
  switch (s) {
    case ImapStatus::kOk:
      return "OK";
    case ImapStatus::kNo:
      return "NO";
    case ImapStatus::kBad:
      return "BAD";
    case ImapStatus::kBye:
      return "BYE";
    case ImapStatus::kPreauth:
      return "PREAUTH";
  }
  return "?";
}

ImapResponseStream::ImapResponseStream(ImapResponseHandler& handler,
                                       const ImapResponseLimits& limits)
    : handler_(handler), limits_(limits) {
  ResetResponse();
}

bool ImapResponseStream::at_response_start() const {
  return state_ == State::kStart && line_bytes_ == 0 && error_.ok();
}

void ImapResponseStream::ResetResponse() {
  state_ = State::kStart;
  line_ = Line::kOther;
  item_ = Item::kOther;
  after_literal_ = State::kStart;
  generic_return_ = State::kStart;
  pending_cr_ = false;
  literal_body_ = false;
  has_section_ = false;
  line_bytes_ = 0;
  depth_ = 0;
  number_ = 0;
  have_number_ = false;
  literal_left_ = 0;
  tail_ = Tail::kNone;
  tag_.clear();
  keyword_.clear();
  code_.clear();
  text_.clear();
  item_name_.clear();
  section_.clear();
  origin_.reset();
}

absl::Status ImapResponseStream::Fail(absl::StatusCode code, absl::string_view text) {
  error_ = absl::Status(code, text);
  return error_;
}

absl::Status ImapResponseStream::Malformed(absl::string_view text) {
  return Fail(absl::StatusCode::kInvalidArgument, text);
}

absl::Status ImapResponseStream::Feed(absl::string_view input) {
  if (!error_.ok()) return error_;
  size_t i = 0;
  while (i < input.size()) {
    if (state_ == State::kLiteralData) {
      i += FeedLiteral(input.substr(i));
      continue;
    }
    if ((state_ == State::kText || state_ == State::kRestText) && !pending_cr_) {
      const size_t n = FeedTextRun(input.substr(i));
      if (n > 0) {
        i += n;
        continue;
      }
    }
    if (absl::Status s = Step(input[i]); !s.ok()) return s;
    ++i;
  }
  return absl::OkStatus();
}

size_t ImapResponseStream::FeedLiteral(absl::string_view input) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(literal_left_, input.size()));
  if (literal_body_ && take > 0) handler_.OnBodyData(input.substr(0, take));
  literal_left_ -= take;
  if (literal_left_ == 0) {
    if (literal_body_) handler_.OnBodyEnd();
    literal_body_ = false;
    state_ = after_literal_;
  }
  return take;
}

size_t ImapResponseStream::FeedTextRun(absl::string_view input) {
  if (line_bytes_ >= limits_.max_line) return 0;
  const size_t budget = std::min(input.size(), limits_.max_line - line_bytes_);
  size_t n = 0;
  while (n < budget) {
    const char c = input[n];
    if (c == '\r' || c == '\n' || c == '\0') break;
    ++n;
  }
  text_.append(input.data(), n);
  line_bytes_ += n;
  return n;
}

absl::Status ImapResponseStream::Step(char c) {
  // NUL is not a CHAR8 (RFC 9051 section 9, note 3); only literal payloads
  // (which never come here) may hold any octet.
  if (c == '\0') return Malformed("NUL in response");
  if (++line_bytes_ > limits_.max_line) {
    return Fail(absl::StatusCode::kResourceExhausted, "Response line too long");
  }
  if (pending_cr_) {
    if (c != '\n') return Malformed("CR without LF");
    pending_cr_ = false;
  } else if (c == '\r') {
    pending_cr_ = true;
    return absl::OkStatus();
  }
  return Dispatch(c);
}

bool ImapResponseStream::AddDigit(char c, uint64_t max) {
  const uint64_t d = static_cast<uint64_t>(c - '0');
  if (number_ > (max - d) / 10) return false;
  number_ = number_ * 10 + d;
  have_number_ = true;
  return true;
}

absl::Status ImapResponseStream::Dispatch(char c) {
  switch (state_) {
    case State::kStart:
      if (c == '*') {
        state_ = State::kStar;
        return absl::OkStatus();
      }
      if (c == '+') {
        line_ = Line::kContinuation;
        state_ = State::kContinuation;
        return absl::OkStatus();
      }
      if (!IsTagChar(c)) return Malformed("Invalid response start");
      tag_.push_back(c);
      state_ = State::kTag;
      return absl::OkStatus();

    case State::kTag:
      if (c == ' ') {
        state_ = State::kTaggedStatus;
        return absl::OkStatus();
      }
      if (!IsTagChar(c)) return Malformed("Invalid characters in tag");
      tag_.push_back(c);
      return absl::OkStatus();

    case State::kTaggedStatus:
      if (c == ' ' || c == '\n') {
        // response-tagged = tag SP resp-cond-state CRLF (RFC 9051 section 9).
        if (keyword_ == "OK") {
          status_.status = ImapStatus::kOk;
        } else if (keyword_ == "NO") {
          status_.status = ImapStatus::kNo;
        } else if (keyword_ == "BAD") {
          status_.status = ImapStatus::kBad;
        } else {
          return Malformed("Invalid status in tagged response");
        }
        line_ = Line::kTagged;
        if (c == '\n') return StatusDone();
        state_ = State::kRespTextStart;
        return absl::OkStatus();
      }
      if (!IsAtomChar(c)) return Malformed("Invalid status in tagged response");
      keyword_.push_back(Upper(c));
      return absl::OkStatus();

    case State::kStar:
      if (c != ' ') return Malformed("Missing space after '*'");
      state_ = State::kUntaggedFirst;
      return absl::OkStatus();

    case State::kUntaggedFirst:
      if (IsDigit(c)) {
        number_ = static_cast<uint64_t>(c - '0');
        state_ = State::kUntaggedNumber;
        return absl::OkStatus();
      }
      if (!IsAtomChar(c)) return Malformed("Invalid untagged response");
      keyword_.push_back(Upper(c));
      state_ = State::kUntaggedKeyword;
      return absl::OkStatus();

    case State::kUntaggedKeyword:
      if (c == ' ' || c == '\n') return UntaggedKeywordDone(c);
      if (!IsAtomChar(c)) return Malformed("Invalid untagged response keyword");
      keyword_.push_back(Upper(c));
      return absl::OkStatus();

    case State::kUntaggedNumber:
      if (IsDigit(c)) {
        if (!AddDigit(c, kMaxNumber)) return Malformed("Number too large");
        return absl::OkStatus();
      }
      if (c != ' ') return Malformed("Invalid untagged number");
      state_ = State::kNumericKeyword;
      return absl::OkStatus();

    case State::kNumericKeyword:
      if (c == ' ' || c == '\n') {
        if (keyword_.empty()) return Malformed("Missing keyword after number");
        return NumericKeywordDone(c);
      }
      if (!IsAtomChar(c)) return Malformed("Invalid keyword after number");
      keyword_.push_back(Upper(c));
      return absl::OkStatus();

    case State::kContinuation:
      // continue-req = "+" SP (resp-text / base64) CRLF; "+" alone is taken too.
      if (c == '\n') {
        handler_.OnContinuation("");
        ResetResponse();
        return absl::OkStatus();
      }
      if (c != ' ') text_.push_back(c);
      state_ = State::kText;
      return absl::OkStatus();

    case State::kRespTextStart:
      // resp-text = ["[" resp-text-code "]" SP] [text] (RFC 9051 section 9).
      if (c == '[') {
        state_ = State::kCode;
        return absl::OkStatus();
      }
      if (c == '\n') return StatusDone();
      text_.push_back(c);
      state_ = State::kText;
      return absl::OkStatus();

    case State::kCode:
      if (c == ']') {
        state_ = State::kAfterCode;
        return absl::OkStatus();
      }
      if (c == '\n') {
        // A "[" that never closes is text, not a code.
        text_ = absl::StrCat("[", code_);
        code_.clear();
        return StatusDone();
      }
      code_.push_back(c);
      return absl::OkStatus();

    case State::kAfterCode:
      if (c == '\n') return StatusDone();
      if (c != ' ') text_.push_back(c);
      state_ = State::kText;
      return absl::OkStatus();

    case State::kText:
      if (c != '\n') {
        text_.push_back(c);
        return absl::OkStatus();
      }
      if (line_ == Line::kContinuation) {
        handler_.OnContinuation(text_);
        ResetResponse();
        return absl::OkStatus();
      }
      return StatusDone();

    case State::kRestText:
      if (c != '\n') {
        text_.push_back(c);
        return absl::OkStatus();
      }
      if (line_ == Line::kCapability) {
        handler_.OnCapability(text_);
      } else if (line_ == Line::kEnabled) {
        handler_.OnEnabled(text_);
      } else {
        // mailbox-data =/ "FLAGS" SP flag-list; flag-list = "(" [flag *(SP flag)] ")"
        absl::string_view v = text_;
        if (v.size() < 2 || v.front() != '(' || v.back() != ')') {
          return Malformed("Invalid FLAGS response");
        }
        handler_.OnFlags(v.substr(1, v.size() - 2));
      }
      ResetResponse();
      return absl::OkStatus();

    case State::kSearch:
      // mailbox-data =/ "SEARCH" *(SP nz-number); CONDSTORE adds
      // SP "(" "MODSEQ" SP mod-sequence-value ")" (RFC 7162 section 3.1.5).
      if (IsDigit(c)) {
        number_ = static_cast<uint64_t>(c - '0');
        state_ = State::kSearchNumber;
        return absl::OkStatus();
      }
      if (c == ' ') return absl::OkStatus();
      if (c == '\n') {
        handler_.OnSearchEnd();
        ResetResponse();
        return absl::OkStatus();
      }
      if (c == '(') {
        depth_ = 0;
        generic_return_ = State::kSearch;
        return GenericValue(c);
      }
      return Malformed("Invalid SEARCH response");

    case State::kSearchNumber:
      if (IsDigit(c)) {
        if (!AddDigit(c, kMaxNumber)) return Malformed("Number too large");
        return absl::OkStatus();
      }
      if (c != ' ' && c != '\n') return Malformed("Invalid SEARCH response");
      handler_.OnSearchNumber(static_cast<uint32_t>(number_));
      number_ = 0;
      state_ = State::kSearch;
      return Dispatch(c);

    case State::kSkipLine:
      // Watch for a literal announcement at the end of the line: its octets
      // belong to this response (RFC 9051 section 4.3).
      if (c == '\n') {
        if (tail_ == Tail::kClose) {
          number_ = tail_size_;
          tail_ = Tail::kNone;
          literal_body_ = false;
          after_literal_ = State::kSkipLine;
          return LiteralHeaderDone();
        }
        ResetResponse();
        return absl::OkStatus();
      }
      if (c == '{') {
        tail_ = Tail::kOpen;
        tail_size_ = 0;
      } else if (IsDigit(c) && (tail_ == Tail::kOpen || tail_ == Tail::kDigits)) {
        const uint64_t d = static_cast<uint64_t>(c - '0');
        if (tail_size_ > (kMaxNumber64 - d) / 10) {
          return Fail(absl::StatusCode::kResourceExhausted, "Literal too big");
        }
        tail_size_ = tail_size_ * 10 + d;
        tail_ = Tail::kDigits;
      } else if (c == '}' && tail_ == Tail::kDigits) {
        tail_ = Tail::kClose;
      } else {
        tail_ = Tail::kNone;
      }
      return absl::OkStatus();

    case State::kFetchParen:
      if (c != '(') return Malformed("Missing '(' after FETCH");
      handler_.OnFetchStart(seq_);
      state_ = State::kFetchItemStart;
      return absl::OkStatus();

    case State::kFetchItemStart:
      item_name_.clear();
      section_.clear();
      origin_.reset();
      has_section_ = false;
      if (c == ')') {  // "FETCH ()": nothing, but harmless
        state_ = State::kFetchEnd;
        return absl::OkStatus();
      }
      if (!IsItemChar(c)) return Malformed("Invalid FETCH item");
      item_name_.push_back(Upper(c));
      state_ = State::kFetchItemName;
      return absl::OkStatus();

    case State::kFetchItemName:
      if (IsItemChar(c)) {
        item_name_.push_back(Upper(c));
        return absl::OkStatus();
      }
      if (c == '[') {
        has_section_ = true;
        state_ = State::kFetchSection;
        return absl::OkStatus();
      }
      if (c == ' ') {
        state_ = State::kFetchValueStart;
        return absl::OkStatus();
      }
      return Malformed("Invalid FETCH item");

    case State::kFetchSection:
      if (c == ']') {
        state_ = State::kFetchAfterSection;
        return absl::OkStatus();
      }
      if (c == '\n' || c == '[') return Malformed("Invalid FETCH section");
      section_.push_back(c);
      return absl::OkStatus();

    case State::kFetchAfterSection:
      if (c == '<') {
        number_ = 0;
        have_number_ = false;
        state_ = State::kFetchOrigin;
        return absl::OkStatus();
      }
      if (c != ' ') return Malformed("Invalid FETCH section");
      state_ = State::kFetchValueStart;
      return absl::OkStatus();

    case State::kFetchOrigin:
      // "BODY" section ["<" number ">"] (RFC 9051 section 9, msg-att-static).
      if (IsDigit(c)) {
        if (!AddDigit(c, kMaxNumber64)) return Malformed("Origin too large");
        return absl::OkStatus();
      }
      if (c != '>' || !have_number_) return Malformed("Invalid origin octet");
      origin_ = number_;
      state_ = State::kFetchAfterOrigin;
      return absl::OkStatus();

    case State::kFetchAfterOrigin:
      if (c != ' ') return Malformed("Invalid FETCH item");
      state_ = State::kFetchValueStart;
      return absl::OkStatus();

    case State::kFetchValueStart:
      return FetchValueStart(c);

    case State::kFetchNumber:
      if (IsDigit(c)) {
        if (!AddDigit(c, item_ == Item::kUid ? kMaxNumber : kMaxNumber64)) {
          return Malformed("Number too large");
        }
        return absl::OkStatus();
      }
      if (c != ' ' && c != ')') return Malformed("Invalid number in FETCH");
      if (item_ == Item::kUid) {
        if (number_ == 0) return Malformed("UID 0");  // uniqueid = nz-number
        handler_.OnFetchUid(static_cast<uint32_t>(number_));
      } else {
        handler_.OnFetchSize(number_);
      }
      state_ = State::kFetchAfterValue;
      return Dispatch(c);

    case State::kFetchFlags:
      if (c == ')') {
        handler_.OnFetchFlags(text_);
        text_.clear();
        state_ = State::kFetchAfterValue;
        return absl::OkStatus();
      }
      if (c == '(' || c == '\n' || c == '"' || c == '{') return Malformed("Invalid FLAGS");
      text_.push_back(c);
      return absl::OkStatus();

    case State::kFetchQuoted:
      if (c == '"') {
        if (item_ == Item::kDate) {
          handler_.OnFetchInternalDate(text_);
        } else {
          EmitBody(text_, /*nil=*/false, /*literal=*/false, text_.size());
        }
        text_.clear();
        state_ = State::kFetchAfterValue;
        return absl::OkStatus();
      }
      if (c == '\\') {
        state_ = State::kFetchQuotedEscape;
        return absl::OkStatus();
      }
      if (c == '\n') return Malformed("Unterminated quoted string");
      text_.push_back(c);
      return absl::OkStatus();

    case State::kFetchQuotedEscape:
      // QUOTED-CHAR: only "\" quoted-specials (RFC 9051 section 9).
      if (c != '\\' && c != '"') return Malformed("Invalid escape in quoted string");
      text_.push_back(c);
      state_ = State::kFetchQuoted;
      return absl::OkStatus();

    case State::kFetchNil:
      if (c == ' ' || c == ')') {
        if (keyword_ != "NIL") return Malformed("Invalid body value");
        EmitBody("", /*nil=*/true, /*literal=*/false, 0);
        keyword_.clear();
        state_ = State::kFetchAfterValue;
        return Dispatch(c);
      }
      if (keyword_.size() >= 3) return Malformed("Invalid body value");
      keyword_.push_back(Upper(c));
      return absl::OkStatus();

    case State::kFetchAfterValue:
      return FetchValueDone(c);

    case State::kFetchEnd:
      if (c != '\n') return Malformed("Noise after FETCH response");
      handler_.OnFetchEnd();
      ResetResponse();
      return absl::OkStatus();

    case State::kLiteralTilde:
      if (c != '{') return Malformed("Invalid literal8");
      state_ = State::kLiteralOpen;
      return absl::OkStatus();

    case State::kLiteralOpen:
      if (!IsDigit(c)) return Malformed("Invalid literal");
      number_ = static_cast<uint64_t>(c - '0');
      state_ = State::kLiteralDigits;
      return absl::OkStatus();

    case State::kLiteralDigits:
      if (IsDigit(c)) {
        if (!AddDigit(c, kMaxNumber64)) {
          return Fail(absl::StatusCode::kResourceExhausted, "Literal too big");
        }
        return absl::OkStatus();
      }
      if (c != '}') return Malformed("Invalid literal");
      state_ = State::kLiteralClose;
      return absl::OkStatus();

    case State::kLiteralClose:
      // literal = "{" number64 "}" CRLF *CHAR8
      if (c != '\n') return Malformed("Invalid literal");
      return LiteralHeaderDone();

    case State::kGenValue:
      return GenericValue(c);

    case State::kGenAtom:
      if (c == ' ' || c == ')' || c == '\n') return GenericAfter(c);
      if (c == '(' || c == '"') return Malformed("Invalid atom");
      return absl::OkStatus();

    case State::kGenQuoted:
      if (c == '"') {
        state_ = State::kGenAfter;
      } else if (c == '\\') {
        state_ = State::kGenQuotedEscape;
      } else if (c == '\n') {
        return Malformed("Unterminated quoted string");
      }
      return absl::OkStatus();

    case State::kGenQuotedEscape:
      if (c != '\\' && c != '"') return Malformed("Invalid escape in quoted string");
      state_ = State::kGenQuoted;
      return absl::OkStatus();

    case State::kGenAfter:
      return GenericAfter(c);

    case State::kLiteralData:
      break;  // handled in Feed
  }
  return Malformed("Internal parser state");
}

absl::Status ImapResponseStream::UntaggedKeywordDone(char c) {
  const std::string& k = keyword_;
  // resp-cond-state / resp-cond-bye / resp-cond-auth (RFC 9051 section 9).
  std::optional<ImapStatus> status;
  if (k == "OK") {
    status = ImapStatus::kOk;
  } else if (k == "NO") {
    status = ImapStatus::kNo;
  } else if (k == "BAD") {
    status = ImapStatus::kBad;
  } else if (k == "BYE") {
    status = ImapStatus::kBye;
  } else if (k == "PREAUTH") {
    status = ImapStatus::kPreauth;
  }
  if (status.has_value()) {
    status_.status = *status;
    line_ = Line::kUntaggedStatus;
    if (c == '\n') return StatusDone();
    state_ = State::kRespTextStart;
    return absl::OkStatus();
  }
  if (k == "CAPABILITY" || k == "ENABLED" || k == "FLAGS") {
    line_ = k == "CAPABILITY" ? Line::kCapability : k == "ENABLED" ? Line::kEnabled : Line::kFlags;
    state_ = State::kRestText;
    return c == '\n' ? Dispatch(c) : absl::OkStatus();
  }
  if (k == "SEARCH") {
    state_ = State::kSearch;
    return c == '\n' ? Dispatch(c) : absl::OkStatus();
  }
  handler_.OnOtherUntagged(k);
  state_ = State::kSkipLine;
  return c == '\n' ? Dispatch(c) : absl::OkStatus();
}

absl::Status ImapResponseStream::NumericKeywordDone(char c) {
  const std::string& k = keyword_;
  // message-data = nz-number SP ("EXPUNGE" / ("FETCH" SP msg-att));
  // mailbox-data =/ number SP "EXISTS" / number SP "RECENT" (RFC 3501).
  if (k == "EXISTS" || k == "EXPUNGE" || k == "RECENT") {
    if (c != '\n') return Malformed("Noise after numeric response");
    if (k == "EXPUNGE" && number_ == 0) return Malformed("EXPUNGE of message 0");
    handler_.OnNumeric(k, static_cast<uint32_t>(number_));
    ResetResponse();
    return absl::OkStatus();
  }
  if (k == "FETCH") {
    if (c != ' ') return Malformed("FETCH without data");
    if (number_ == 0) return Malformed("FETCH of message 0");
    seq_ = static_cast<uint32_t>(number_);
    number_ = 0;
    keyword_.clear();
    state_ = State::kFetchParen;
    return absl::OkStatus();
  }
  handler_.OnOtherUntagged(k);
  state_ = State::kSkipLine;
  return c == '\n' ? Dispatch(c) : absl::OkStatus();
}

absl::Status ImapResponseStream::StatusDone() {
  ImapStatusResponse& r = status_;
  r.tag = line_ == Line::kTagged ? absl::string_view(tag_) : absl::string_view();
  r.code = code_;
  const size_t sp = code_.find(' ');
  code_name_ = absl::AsciiStrToUpper(absl::string_view(code_).substr(0, sp));
  r.code_name = code_name_;
  r.code_args =
      sp == std::string::npos ? absl::string_view() : absl::string_view(code_).substr(sp + 1);
  r.code_number = ParseNumber64(r.code_args);
  r.text = text_;
  if (line_ == Line::kTagged) {
    handler_.OnTagged(r);
  } else {
    handler_.OnUntaggedStatus(r);
  }
  ResetResponse();
  return absl::OkStatus();
}

absl::Status ImapResponseStream::FetchValueStart(char c) {
  const std::string& n = item_name_;
  if (!has_section_ && n == "UID") {
    item_ = Item::kUid;
  } else if (!has_section_ && n == "RFC822.SIZE") {
    item_ = Item::kSize;
  } else if (!has_section_ && n == "FLAGS") {
    item_ = Item::kFlags;
  } else if (!has_section_ && n == "INTERNALDATE") {
    item_ = Item::kDate;
  } else if ((has_section_ && (n == "BODY" || n == "BINARY")) ||
             (!has_section_ && (n == "RFC822" || n == "RFC822.HEADER" || n == "RFC822.TEXT"))) {
    item_ = Item::kBody;
  } else {
    item_ = Item::kOther;
  }
  switch (item_) {
    case Item::kUid:
    case Item::kSize:
      if (!IsDigit(c)) return Malformed("Invalid number in FETCH");
      number_ = static_cast<uint64_t>(c - '0');
      state_ = State::kFetchNumber;
      return absl::OkStatus();
    case Item::kFlags:
      if (c != '(') return Malformed("Invalid FLAGS");
      text_.clear();
      state_ = State::kFetchFlags;
      return absl::OkStatus();
    case Item::kDate:
      if (c != '"') return Malformed("Invalid INTERNALDATE");
      text_.clear();
      state_ = State::kFetchQuoted;
      return absl::OkStatus();
    case Item::kBody:
      // nstring / literal8 (RFC 9051 section 9: msg-att-static).
      if (c == '{' || c == '~') {
        literal_body_ = true;
        after_literal_ = State::kFetchAfterValue;
        state_ = c == '~' ? State::kLiteralTilde : State::kLiteralOpen;
        return absl::OkStatus();
      }
      if (c == '"') {
        text_.clear();
        state_ = State::kFetchQuoted;
        return absl::OkStatus();
      }
      if (c == 'N' || c == 'n') {
        keyword_.assign(1, 'N');
        state_ = State::kFetchNil;
        return absl::OkStatus();
      }
      return Malformed("Invalid body value");
    case Item::kOther:
      break;
  }
  if (has_section_) {
    handler_.OnFetchOther(absl::StrCat(item_name_, "[", section_, "]"));
  } else {
    handler_.OnFetchOther(item_name_);
  }
  depth_ = 0;
  generic_return_ = State::kFetchAfterValue;
  return GenericValue(c);
}

absl::Status ImapResponseStream::FetchValueDone(char c) {
  if (c == ' ') {
    state_ = State::kFetchItemStart;
    return absl::OkStatus();
  }
  if (c == ')') {
    state_ = State::kFetchEnd;
    return absl::OkStatus();
  }
  return Malformed("Invalid FETCH response");
}

absl::Status ImapResponseStream::GenericValue(char c) {
  switch (c) {
    case '(':
      if (++depth_ > limits_.max_depth) {
        return Fail(absl::StatusCode::kResourceExhausted, "Lists nested too deeply");
      }
      state_ = State::kGenValue;
      return absl::OkStatus();
    case ')':
      if (depth_ == 0) return Malformed("Unexpected ')'");
      --depth_;  // "()": an empty list
      state_ = State::kGenAfter;
      return absl::OkStatus();
    case '"':
      state_ = State::kGenQuoted;
      return absl::OkStatus();
    case '{':
    case '~':
      literal_body_ = false;
      after_literal_ = State::kGenAfter;
      state_ = c == '~' ? State::kLiteralTilde : State::kLiteralOpen;
      return absl::OkStatus();
    case ' ':
    case '\n':
      return Malformed("Missing value");
    default:
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return Malformed("Invalid characters in value");
      }
      state_ = State::kGenAtom;
      return absl::OkStatus();
  }
}

absl::Status ImapResponseStream::GenericAfter(char c) {
  if (depth_ == 0) {
    // The skipped value is complete: its terminator belongs to the caller.
    state_ = generic_return_;
    return Dispatch(c);
  }
  if (c == ' ') {
    state_ = State::kGenValue;
    return absl::OkStatus();
  }
  if (c == ')') {
    --depth_;
    state_ = State::kGenAfter;
    return absl::OkStatus();
  }
  // body-type-mpart = 1*body SP media-subtype: the parts of a multipart
  // BODYSTRUCTURE follow each other without a space (RFC 9051 section 9).
  if (c == '(') return GenericValue(c);
  return Malformed(c == '\n' ? "Unterminated list" : "Invalid list");
}

absl::Status ImapResponseStream::LiteralHeaderDone() {
  const uint64_t size = number_;
  number_ = 0;
  if (size > limits_.max_literal) {
    return Fail(absl::StatusCode::kResourceExhausted, "Literal too big");
  }
  if (literal_body_) {
    ImapBodySection s;
    s.item = item_name_;
    s.section = section_;
    s.origin = origin_;
    s.size = size;
    s.literal = true;
    handler_.OnBodyStart(s);
  }
  literal_left_ = size;
  state_ = State::kLiteralData;
  if (size == 0) {
    if (literal_body_) handler_.OnBodyEnd();
    literal_body_ = false;
    state_ = after_literal_;
  }
  return absl::OkStatus();
}

void ImapResponseStream::EmitBody(absl::string_view value, bool nil, bool literal, uint64_t size) {
  ImapBodySection s;
  s.item = item_name_;
  s.section = section_;
  s.origin = origin_;
  s.size = size;
  s.nil = nil;
  s.literal = literal;
  handler_.OnBodyStart(s);
  if (!value.empty()) handler_.OnBodyData(value);
  handler_.OnBodyEnd();
}

}  // namespace postern
