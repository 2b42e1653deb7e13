#pragma once

// ImapCommandParser: an incremental parser for IMAP commands sent by clients
// before login (CAPABILITY, NOOP, LOGOUT, STARTTLS, AUTHENTICATE, LOGIN, ID,
// and whatever else a client tries), following the formal syntax of
// RFC 9051 section 9 / RFC 3501 section 9.
//
// It is a byte state machine: Feed() takes whatever bytes have arrived, in
// pieces of any size, and its state survives every split. It never needs a
// whole command in one buffer, and it never looks at a byte twice (literal
// payloads are copied in bulk).
//
// Errors come in two kinds (as in Dovecot's lib-imap/imap-parser.h):
//  kError: the command is bad or over a limit. The caller answers
//    "<error_tag()> BAD [<error_code()>] <error_text()>" and keeps feeding;
//    the parser skips the rest of that command by itself (following any
//    non-synchronizing literal announced at the end of a skipped line, so it
//    never reads literal bytes as a command, RFC 7888 section 3) and resumes
//    at the next one.
//  kFatal: the session must end: "* BYE <error_text()>" and close. Reported
//    for a NUL byte anywhere (RFC 9051 section 9 note 3), for a
//    non-synchronizing literal larger than the limit (RFC 7888 section 4,
//    choice 2: we will not skip unbounded bytes before login), and when the
//    error budget is spent. After kFatal every Feed returns kFatal again.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace postern {

struct ImapArg {
  enum class Type {
    kAtom,    // 1*ATOM-CHAR, loosely: also sequence sets, flags ("\Seen"), "*", "%"
    kString,  // quoted (escapes \\ and \" undone) or literal (then `literal` is true)
    kNil,     // the atom NIL, any case; `value` keeps the text as sent
    kList,    // ( ... ), elements in `list`
  };
  Type type = Type::kAtom;
  std::string value;
  std::vector<ImapArg> list;
  bool literal = false;

  // True when this argument is a valid astring (RFC 9051 section 9:
  // 1*ASTRING-CHAR / string). NIL counts: as an astring it is the user name
  // "NIL". Use it for LOGIN's userid and password.
  bool IsAstring() const;
};

struct ImapCommand {
  std::string tag;
  std::string name;  // uppercased
  std::vector<ImapArg> args;
};

struct ImapParserLimits {
  // Bytes of one command, CR LF of each of its lines included, literal
  // payloads excluded (RFC 2683 section 3.2.1.5 suggests at least 8000).
  size_t max_line = 8192;
  // Literal payload bytes of one command, all its literals together.
  size_t max_literal = 65536;
  // kErrors allowed per parser (session); the next error is kFatal.
  uint32_t error_budget = 10;
  // Arguments of one command, list elements at every depth included.
  size_t max_args = 64;
};

class ImapCommandParser {
 public:
  // Parenthesized lists nest at most this deep (RFC 9051 section 4.4 sets no
  // bound; commands a proxy sees before login use one level).
  static constexpr size_t kMaxListDepth = 8;

  enum class Event {
    kNeedMore,  // all input consumed, no event yet
    kCommand,   // command() holds a complete command
    kContinue,  // a synchronizing literal was announced: send "+ OK\r\n", keep feeding
    kError,     // answer "<tag> BAD ..." and keep feeding
    kFatal,     // answer "* BYE ..." and close
  };

  explicit ImapCommandParser(const ImapParserLimits& limits);

  // Consumes bytes from `input` and stops right after the first event that is
  // not kNeedMore; *consumed = bytes used. kNeedMore => all of `input` was
  // consumed.
  //
  // kContinue (RFC 9051 sections 4.3 and 7.5): the line ended with a
  // synchronizing literal {n} within the limits; the client waits for a
  // continuation request before it sends the n bytes. Not reported for
  // non-synchronizing literals {n+} (RFC 7888), which are read on directly.
  Event Feed(absl::string_view input, size_t* consumed);

  // After kCommand; valid until the next Feed.
  const ImapCommand& command() const { return command_; }

  // After kError / kFatal. error_tag(): the command's tag if one was read
  // completely, else "*". error_code(): an IMAP response code without
  // brackets ("TOOBIG" for the line, literal and argument limits,
  // RFC 9051 section 7.1 / RFC 7888 section 5), or "".
  const std::string& error_tag() const { return error_tag_; }
  const std::string& error_text() const { return error_text_; }
  const std::string& error_code() const { return error_code_; }

  // True between commands: nothing of a next command has been read yet. A
  // caller that switches to reading raw lines (AUTHENTICATE responses) or to
  // TLS (STARTTLS) does so right after kCommand, when this holds.
  bool at_command_start() const;

 private:
  enum class State {
    kTag,
    kNameStart,
    kName,
    kArgStart,   // after SP: an argument must follow
    kListStart,  // after "(": an argument or ")"
    kAtom,
    kAfterArg,  // after an argument: SP, ")" or end of line
    kQuoted,
    kQuotedEscape,
    kLiteralOpen,    // after "{"
    kLiteralDigits,  // after "{" DIGIT
    kLiteralPlus,    // after "{" number "+"
    kLiteralClose,   // after "}": only CR LF may follow
    kLiteralData,
    kCr,              // after a CR that must be followed by LF
    kDiscard,         // skipping the rest of a bad command line
    kDiscardLiteral,  // skipping a non-synchronizing literal of a bad command
    kDead,            // after kFatal
  };

  // Watches every line byte for a literal header "{" number ["+"] "}" right
  // before the LF, as RFC 7888 section 3 tells receivers to, so that a line
  // being skipped after an error still tells where its command ends.
  class LiteralTracker {
   public:
    void Reset() { state_ = kNone; }
    void Add(char c);
    bool at_literal() const { return state_ == kClose || state_ == kCloseCr; }
    uint64_t size() const { return size_; }
    bool non_sync() const { return non_sync_; }

   private:
    enum : uint8_t { kNone, kOpen, kDigits, kPlus, kClose, kCloseCr } state_ = kNone;
    uint64_t size_ = 0;  // saturates at UINT64_MAX
    bool non_sync_ = false;
  };

  Event Step(char c);
  Event Dispatch(char c);
  Event Error(char c, absl::string_view code, absl::string_view text);
  Event Fatal(absl::string_view code, absl::string_view text);
  // At the LF of a line that is being discarded (or that ended in an error):
  // decides where the next command starts. Returns kFatal or kNeedMore.
  Event EndDiscardedLine();
  Event LiteralHeaderDone(char c);
  Event FeedLiteral(absl::string_view input, size_t* used);
  Event SkipLiteral(absl::string_view input, size_t* used);
  // Starts a new argument in the innermost list; false when over max_args.
  bool NewArg(ImapArg::Type type);
  void FinishAtom();
  void ResetCommand();
  std::vector<ImapArg>& top() { return *stack_.back(); }

  ImapParserLimits limits_;
  State state_ = State::kTag;
  State before_cr_ = State::kTag;
  ImapCommand command_;
  // stack_[0] is &command_.args, stack_[i] the list opened at depth i. Only
  // the innermost vector grows, so the outer pointers stay valid.
  std::vector<std::vector<ImapArg>*> stack_;
  LiteralTracker tracker_;
  size_t line_bytes_ = 0;     // of the current command, literal payloads excluded
  size_t literal_bytes_ = 0;  // literal payload of the current command
  size_t arg_count_ = 0;
  uint64_t literal_left_ = 0;  // bytes still to read (or skip) of a literal
  bool tag_complete_ = false;
  bool reset_pending_ = false;  // clear command_ at the next Feed
  uint32_t errors_ = 0;
  std::string error_tag_;
  std::string error_text_;
  std::string error_code_;
};

}  // namespace postern
