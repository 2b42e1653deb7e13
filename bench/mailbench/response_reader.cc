#include "bench/mailbench/response_reader.h"

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace postern::mailbench {
namespace {

// Literals larger than this are treated as a protocol error (a bench mailbox
// never holds one; the bound keeps a corrupt length from stalling a run).
constexpr uint64_t kMaxLiteral = uint64_t{1} << 40;

absl::string_view StripCrlf(absl::string_view line) {
  if (absl::EndsWith(line, "\n")) line.remove_suffix(1);
  if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
  return line;
}

absl::string_view FirstWord(absl::string_view s) {
  size_t sp = s.find(' ');
  return sp == absl::string_view::npos ? s : s.substr(0, sp);
}

absl::string_view AfterFirstWord(absl::string_view s) {
  size_t sp = s.find(' ');
  return sp == absl::string_view::npos ? absl::string_view() : s.substr(sp + 1);
}

// RFC 3501 section 4.3: a line ending in "{n}" (or "{n+}", RFC 7888; "~{n}",
// RFC 3516) announces n octets of literal data right after the CRLF.
// Returns false if the line does not end in a literal announcement.
bool LiteralLength(absl::string_view body, uint64_t* n, bool* bad) {
  *bad = false;
  if (!absl::EndsWith(body, "}")) return false;
  size_t open = body.rfind('{');
  if (open == absl::string_view::npos) return false;
  absl::string_view digits = body.substr(open + 1, body.size() - open - 2);
  if (absl::EndsWith(digits, "+")) digits.remove_suffix(1);
  if (digits.empty() || digits.size() > 19) {
    *bad = !digits.empty();
    return *bad;
  }
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  uint64_t v = 0;
  if (!absl::SimpleAtoi(digits, &v) || v > kMaxLiteral) {
    *bad = true;
    return true;
  }
  *n = v;
  return true;
}

}  // namespace

void ResponseReader::Start(Expect expect, absl::string_view tag) {
  expect_ = expect;
  tag_ = std::string(tag);
  reply_ = Reply();
}

ResponseReader::Result ResponseReader::Fail(std::string why) {
  error_ = std::move(why);
  return Result::kError;
}

ResponseReader::Result ResponseReader::Feed(absl::string_view in, size_t* consumed) {
  *consumed = 0;
  if (!error_.empty()) return Result::kError;
  if (expect_ == Expect::kNothing) {
    // Nothing is awaited: whatever arrives (a BYE, an unsolicited EXISTS) is dropped.
    line_.clear();
    literal_left_ = 0;
    in_response_ = false;
    in_body_ = false;
    hash_open_ = false;
    *consumed = in.size();
    return Result::kNeedMore;
  }
  const bool imap = expect_ == Expect::kImapGreeting || expect_ == Expect::kImapTagged ||
                    expect_ == Expect::kImapContinuation;
  size_t i = 0;
  while (i < in.size()) {
    if (literal_left_ > 0) {
      uint64_t take = std::min<uint64_t>(literal_left_, in.size() - i);
      if (hash_open_) HashBytes(in.substr(i, take));
      literal_left_ -= take;
      payload_bytes_ += take;
      i += take;
      if (literal_left_ == 0 && hash_open_) EndDigest();
      continue;
    }
    if (in_body_) {
      size_t used = 0;
      bool end = ScanBody(in.substr(i), &used);
      payload_bytes_ += used;
      i += used;
      if (end) {
        in_body_ = false;
        if (hash_open_) EndDigest();
        ++messages_;
        reply_.ok = true;
        reply_.text = first_line_;
        *consumed = i;
        return Result::kDone;
      }
      continue;
    }
    const char* start = in.data() + i;
    const void* nl = std::memchr(start, '\n', in.size() - i);
    size_t len = nl ? static_cast<const char*>(nl) - start + 1 : in.size() - i;
    if (line_.size() + len > kMaxLine) {
      return Fail(absl::StrCat("response line longer than ", kMaxLine, " bytes"));
    }
    i += len;
    if (nl == nullptr) {
      line_.append(start, len);
      break;
    }
    absl::string_view line(start, len);
    if (!line_.empty()) {
      line_.append(start, len);
      line = line_;
    }
    Result r = imap ? OnImapLine(line) : OnPop3Line(line);
    line_.clear();
    if (r != Result::kNeedMore) {
      *consumed = i;
      return r;
    }
  }
  *consumed = i;
  return Result::kNeedMore;
}

void ResponseReader::BeginDigest(uint64_t number) {
  SHA256_Init(&sha_);
  current_ = MessageDigest();
  current_.number = number;
  hash_open_ = true;
}

void ResponseReader::HashBytes(absl::string_view bytes) {
  if (!bytes.empty()) SHA256_Update(&sha_, bytes.data(), bytes.size());
}

void ResponseReader::EndDigest() {
  SHA256_Final(current_.sha256.data(), &sha_);
  digests_.push_back(current_);
  hash_open_ = false;
}

void ResponseReader::ClassifyImap(absl::string_view body) {
  first_line_ = std::string(body.substr(0, 200));
  status_ok_ = false;
  fetch_number_ = 0;
  if (absl::StartsWith(body, "* ")) {
    kind_ = Kind::kUntagged;
    absl::string_view rest = body.substr(2);
    absl::string_view word = FirstWord(rest);
    // RFC 3501 section 7.1: status responses; section 7.3.1 / 7.4.2: "n EXISTS", "n FETCH".
    status_ok_ = absl::EqualsIgnoreCase(word, "OK") || absl::EqualsIgnoreCase(word, "PREAUTH");
    uint32_t n = 0;
    if (absl::SimpleAtoi(word, &n)) {
      absl::string_view what = FirstWord(AfterFirstWord(rest));
      if (absl::EqualsIgnoreCase(what, "EXISTS")) exists_ = n;
      if (absl::EqualsIgnoreCase(what, "FETCH")) {
        ++messages_;
        fetch_number_ = n;
      }
    }
  } else if (absl::StartsWith(body, "+")) {
    kind_ = Kind::kContinuation;
  } else if (!tag_.empty() && FirstWord(body) == tag_) {
    kind_ = Kind::kTagged;
    status_ok_ = absl::EqualsIgnoreCase(FirstWord(AfterFirstWord(body)), "OK");
  } else {
    kind_ = Kind::kOther;
  }
}

ResponseReader::Result ResponseReader::OnImapLine(absl::string_view line) {
  absl::string_view body = StripCrlf(line);
  if (!in_response_) ClassifyImap(body);
  uint64_t n = 0;
  bool bad = false;
  if (LiteralLength(body, &n, &bad)) {
    if (bad) return Fail(absl::StrCat("bad literal length in: ", body.substr(0, 200)));
    literal_left_ = n;
    in_response_ = true;  // the response goes on after the literal
    // RFC 3501 section 7.4.2: "* N FETCH (... BODY[] {n}": the message itself.
    if (hashing_ && kind_ == Kind::kUntagged && fetch_number_ != 0) {
      absl::string_view before = body.substr(0, body.rfind('{'));
      if (absl::EndsWithIgnoreCase(before, "BODY[] ")) {
        BeginDigest(fetch_number_);
        if (n == 0) EndDigest();
      }
    }
    return Result::kNeedMore;
  }
  in_response_ = false;
  switch (expect_) {
    case Expect::kImapGreeting:
      if (kind_ != Kind::kUntagged) return Fail(absl::StrCat("bad greeting: ", first_line_));
      break;
    case Expect::kImapTagged:
      if (kind_ != Kind::kTagged) return Result::kNeedMore;
      break;
    case Expect::kImapContinuation:
      if (kind_ == Kind::kContinuation) {
        status_ok_ = true;
        break;
      }
      if (kind_ != Kind::kTagged) return Result::kNeedMore;
      break;
    default:
      return Result::kNeedMore;
  }
  reply_.ok = status_ok_;
  reply_.text = first_line_;
  return Result::kDone;
}

ResponseReader::Result ResponseReader::OnPop3Line(absl::string_view line) {
  absl::string_view body = StripCrlf(line);
  first_line_ = std::string(body.substr(0, 200));
  // RFC 1939 section 3: "+OK" / "-ERR" status indicators.
  bool ok = absl::StartsWith(body, "+OK");
  if (expect_ == Expect::kPop3Multi && ok) {
    in_body_ = true;
    body_state_ = BodyState::kLineStart;
    if (hashing_) BeginDigest(0);
    return Result::kNeedMore;
  }
  reply_.ok = ok;
  reply_.text = first_line_;
  return Result::kDone;
}

bool ResponseReader::ScanBody(absl::string_view in, size_t* used) {
  // RFC 1939 section 3: a multi-line response ends with a line holding only
  // ".", i.e. CRLF "." CRLF; a line starting with "." is otherwise stuffed.
  // When hashing, the message is what remains without the stuffing dots and
  // the final "." line.
  const char* s = in.data();
  size_t n = in.size();
  size_t j = 0;
  const bool hash = hash_open_;
  while (j < n) {
    switch (body_state_) {
      case BodyState::kMid: {
        const void* nl = std::memchr(s + j, '\n', n - j);
        size_t end = nl == nullptr ? n : static_cast<const char*>(nl) - s + 1;
        if (hash) HashBytes(absl::string_view(s + j, end - j));
        j = end;
        if (nl != nullptr) body_state_ = BodyState::kLineStart;
        break;
      }
      case BodyState::kLineStart: {
        char c = s[j++];
        if (c != '.' && hash) HashBytes(absl::string_view(&c, 1));
        body_state_ = c == '.'    ? BodyState::kDot
                      : c == '\n' ? BodyState::kLineStart
                                  : BodyState::kMid;
        break;
      }
      case BodyState::kDot: {
        char c = s[j++];
        if (c == '\n') {  // lenient: "." LF
          *used = j;
          return true;
        }
        // A stuffed line: the dot was added by the server, c is the line's.
        if (c != '\r' && hash) HashBytes(absl::string_view(&c, 1));
        body_state_ = c == '\r' ? BodyState::kDotCr : BodyState::kMid;
        break;
      }
      case BodyState::kDotCr: {
        char c = s[j++];
        if (c == '\n') {
          *used = j;
          return true;
        }
        if (hash) {
          HashBytes("\r");
          HashBytes(absl::string_view(&c, 1));
        }
        body_state_ = BodyState::kMid;
        break;
      }
    }
  }
  *used = j;
  return false;
}

}  // namespace postern::mailbench
