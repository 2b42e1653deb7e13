#pragma once

// ImapResponseStream: an incremental parser for what an IMAP server sends
// after login (RFC 9051 section 7, RFC 3501 section 7; formal syntax in
// section 9 of both), for a proxy that speaks IMAP to a backend itself (the
// POP3 gateway, protocol/pop3_gateway.h).
//
// A byte state machine like ImapCommandParser: Feed() takes slices of any
// size and its state survives every split. Each byte is looked at once;
// literal payloads are never held: they are handed on in bulk as views into
// the input (OnBodyData), or skipped. Memory is bounded by the limits: the
// bytes of one response line (literal payloads excluded) and the nesting
// depth of lists.
//
// What it reports (ImapResponseHandler):
//  - tagged completions and untagged status responses (OK/NO/BAD/BYE/PREAUTH)
//    with the response code split into name, arguments and a number
//    (UIDVALIDITY n, UIDNEXT n, READ-ONLY, READ-WRITE, CAPABILITY ...);
//  - continuation requests;
//  - "* n EXISTS", "* n EXPUNGE", "* n RECENT", "* CAPABILITY", "* FLAGS",
//    "* ENABLED", "* SEARCH n n n" (numbers streamed one at a time);
//  - "* n FETCH (...)": items one by one. UID, RFC822.SIZE, FLAGS and
//    INTERNALDATE are decoded; body sections (BODY[...]<origin>,
//    BINARY[...], RFC822, RFC822.HEADER, RFC822.TEXT) stream their value,
//    whether a literal {n} (or literal8 ~{n}), a quoted string (unescaped) or
//    NIL. Every other item (BODYSTRUCTURE, ENVELOPE, MODSEQ, X-GUID ...) is
//    skipped, lists, quoted strings and literals inside it included.
//  - any other untagged response by its keyword, skipped (literals too).
//
// Anything malformed or over a limit is an error: Feed() returns it, and
// every later Feed returns it again. A proxy treats that as a broken backend.
// Leniency: a bare LF ends a line like CR LF; a status without text
// ("a1 OK") is accepted. NUL is refused everywhere but inside literals.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace postern {

struct ImapResponseLimits {
  // Bytes of one response: every line of it, CR LF included, literal payloads
  // excluded (RFC 2683 section 3.2.1.5 asks clients to take long lines;
  // RFC 7162 section 4 recommends at least 8192 octets).
  size_t max_line = 64 * 1024;
  // Largest literal accepted. number64 goes to 2^63-1 (RFC 9051 section 9);
  // a message bigger than this is not something a backend should send.
  uint64_t max_literal = uint64_t{1} << 40;
  // Parenthesized lists nest at most this deep (BODYSTRUCTURE of a deeply
  // nested MIME message is the deepest thing a server sends).
  size_t max_depth = 64;
};

enum class ImapStatus { kOk, kNo, kBad, kBye, kPreauth };

absl::string_view ImapStatusName(ImapStatus s);

// A tagged completion or an untagged status response (RFC 9051 section 7.1).
// Views are valid during the callback only.
struct ImapStatusResponse {
  ImapStatus status = ImapStatus::kOk;
  absl::string_view tag;  // "" for untagged responses
  // The response code without its brackets ("UIDVALIDITY 3857529045"),
  // "" when there is none.
  absl::string_view code;
  // The code's first atom, uppercased ("UIDVALIDITY", "READ-WRITE").
  absl::string_view code_name;
  // What follows the code's name and its SP ("3857529045", or the
  // capability names of "CAPABILITY ...").
  absl::string_view code_args;
  // code_args as a number when it is one (number64: at most 2^63-1).
  std::optional<uint64_t> code_number;
  absl::string_view text;
};

// A body section of a FETCH response, at its start.
struct ImapBodySection {
  // The item, uppercased: "BODY", "BINARY", "RFC822", "RFC822.HEADER" or
  // "RFC822.TEXT" (BODY.PEEK is answered as BODY, RFC 9051 section 7.5.2).
  absl::string_view item;
  // The section spec between the brackets, as sent ("", "HEADER",
  // "TEXT", "1.2.MIME", "HEADER.FIELDS (SUBJECT)"); "" for RFC822*.
  absl::string_view section;
  // The origin octet of a partial fetch: "BODY[TEXT]<0>".
  std::optional<uint64_t> origin;
  // Octets that follow in OnBodyData (after unescaping, for a quoted string).
  uint64_t size = 0;
  bool nil = false;      // the value was NIL: no data follows
  bool literal = false;  // a literal {n} or ~{n}, rather than a quoted string
};

// The callbacks. Every default does nothing, so a user overrides what it
// needs. Callbacks may call anything on the caller's side but must not
// Feed() the same stream again.
class ImapResponseHandler {
 public:
  virtual ~ImapResponseHandler() = default;

  // "tag OK|NO|BAD [code] text" and "* OK|NO|BAD|BYE|PREAUTH [code] text".
  virtual void OnTagged(const ImapStatusResponse& /*r*/) {}
  virtual void OnUntaggedStatus(const ImapStatusResponse& /*r*/) {}
  // "+ text" (RFC 9051 section 7.5).
  virtual void OnContinuation(absl::string_view /*text*/) {}
  // "* n EXISTS", "* n EXPUNGE", "* n RECENT" (keyword uppercased).
  virtual void OnNumeric(absl::string_view /*keyword*/, uint32_t /*n*/) {}
  // "* CAPABILITY a b c" and "* ENABLED a b": the rest of the line.
  virtual void OnCapability(absl::string_view /*caps*/) {}
  virtual void OnEnabled(absl::string_view /*caps*/) {}
  // "* FLAGS (\Seen \Deleted)": what is inside the parentheses.
  virtual void OnFlags(absl::string_view /*flags*/) {}
  // "* SEARCH n n n": one call per number, then OnSearchEnd.
  virtual void OnSearchNumber(uint32_t /*n*/) {}
  virtual void OnSearchEnd() {}
  // Any other untagged response, by its keyword (uppercased): "LIST",
  // "STATUS", "ID", or the keyword after a number ("* 3 XYZ"). Reported when
  // the keyword is read; the rest of the response is skipped.
  virtual void OnOtherUntagged(absl::string_view /*keyword*/) {}

  // "* seq FETCH (" ... ")": items in the order they arrive.
  virtual void OnFetchStart(uint32_t /*seq*/) {}
  virtual void OnFetchUid(uint32_t /*uid*/) {}
  virtual void OnFetchSize(uint64_t /*size*/) {}             // RFC822.SIZE
  virtual void OnFetchFlags(absl::string_view /*flags*/) {}  // inside the parentheses
  virtual void OnFetchInternalDate(absl::string_view /*date*/) {}
  virtual void OnBodyStart(const ImapBodySection& /*section*/) {}
  virtual void OnBodyData(absl::string_view /*data*/) {}
  virtual void OnBodyEnd() {}
  // An item that was skipped (uppercased name, section included:
  // "BODYSTRUCTURE", "BINARY.SIZE[1]").
  virtual void OnFetchOther(absl::string_view /*item*/) {}
  virtual void OnFetchEnd() {}
};

class ImapResponseStream {
 public:
  ImapResponseStream(ImapResponseHandler& handler, const ImapResponseLimits& limits = {});

  // Parses `input` and calls the handler. Returns OK once all of it is
  // consumed; otherwise the error (INVALID_ARGUMENT for malformed input,
  // RESOURCE_EXHAUSTED for a limit) and the stream stays failed.
  absl::Status Feed(absl::string_view input);

  bool failed() const { return !error_.ok(); }
  const absl::Status& error() const { return error_; }
  // True between responses (nothing of the next one read yet).
  bool at_response_start() const;

 private:
  enum class State : uint8_t;
  enum class Item : uint8_t;
  enum class Line : uint8_t;

  absl::Status Step(char c);
  absl::Status Dispatch(char c);
  absl::Status Fail(absl::StatusCode code, absl::string_view text);
  absl::Status Malformed(absl::string_view text);
  // Bulk paths; each returns the bytes it used.
  size_t FeedLiteral(absl::string_view input);
  size_t FeedTextRun(absl::string_view input);

  absl::Status UntaggedKeywordDone(char c);
  absl::Status NumericKeywordDone(char c);
  absl::Status StatusDone();
  absl::Status FetchValueStart(char c);
  absl::Status FetchValueDone(char c);
  absl::Status GenericValue(char c);
  absl::Status GenericAfter(char c);
  absl::Status LiteralHeaderDone();
  void EmitBody(absl::string_view value, bool nil, bool literal, uint64_t size);
  bool AddDigit(char c, uint64_t max);
  void ResetResponse();

  ImapResponseHandler& handler_;
  ImapResponseLimits limits_;
  absl::Status error_;

  State state_;
  Line line_;                // what kind of response is being read
  Item item_;                // the FETCH item whose value is being read
  State after_literal_;      // where a literal's payload returns to
  State generic_return_;     // where a skipped value hands its last byte back
  bool pending_cr_ = false;  // a CR was read; only LF may follow
  bool literal_body_ = false;
  bool has_section_ = false;  // the FETCH item had [section]
  size_t line_bytes_ = 0;
  size_t depth_ = 0;  // of a value being skipped
  uint64_t number_ = 0;
  bool have_number_ = false;
  uint64_t literal_left_ = 0;
  uint32_t seq_ = 0;
  // The literal header tracker of a skipped line: "{" digits ["+"] "}" or
  // "~{" ... right before its end (RFC 9051 section 4.3).
  enum class Tail : uint8_t { kNone, kOpen, kDigits, kClose } tail_ = Tail::kNone;
  uint64_t tail_size_ = 0;

  ImapStatusResponse status_;
  std::string tag_;
  std::string keyword_;
  std::string code_;
  std::string code_name_;
  std::string text_;
  std::string item_name_;
  std::string section_;
  std::optional<uint64_t> origin_;
};

}  // namespace postern
