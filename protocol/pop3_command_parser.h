#pragma once

// POP3 commands from clients (RFC 1939 section 3, RFC 2449 sections 3-4,
// RFC 5034 section 4): ParsePop3Command() for one line, Pop3CommandReader to
// take commands (and raw SASL response lines) off a Buffer.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "protocol/line_splitter.h"

namespace postern {

struct Pop3Command {
  std::string name;  // the keyword, uppercased
  std::vector<std::string> args;
};

// Arguments are at most this long, except PASS's and AUTH's initial
// response. RFC 1939 section 3 said 40 octets; RFC 2449 section 4 raised
// command lines to 255 octets, and real e-mail addresses used as user
// names are often longer than 40.
inline constexpr size_t kPop3MaxArgLength = 255;
// No POP3 command takes more than two arguments (TOP n k, APOP name digest,
// AUTH mech response); a few more are tolerated, then the line is refused.
inline constexpr size_t kPop3MaxArgs = 8;

// Parses one command line, without its CR LF.
//  - keyword: 3 or 4 VCHARs, case-insensitive (RFC 1939 section 3,
//    RFC 2449 section 3 `keyword = 3*4VCHAR`), uppercased in `name`.
//  - arguments: separated by spaces (runs of spaces are tolerated), no
//    control characters, at most kPop3MaxArgLength bytes each; 8-bit bytes
//    are allowed (UTF-8 user names).
//  - PASS: everything after "PASS " is the one argument, spaces included
//    (RFC 1939 section 7: "a POP3 server may treat spaces in the argument as
//    part of the password"), any length the line allows; it may hold any
//    byte but NUL, CR and LF. "PASS" alone gives no argument.
//  - AUTH: the second argument (the initial response, base64 or "=",
//    RFC 5034 section 4) is not held to kPop3MaxArgLength.
//  - NUL anywhere: error.
// Errors are INVALID_ARGUMENT with a text fit for "-ERR <text>".
absl::StatusOr<Pop3Command> ParsePop3Command(absl::string_view line);

struct Pop3ReaderLimits {
  // Command lines, CR LF included. RFC 2449 section 4 requires at least 255.
  size_t max_line = 1024;
  // Lines read with NextLine (SASL responses: RFC 5034 section 4 has them
  // unbounded by the command limit; OAUTHBEARER tokens run to several KB).
  size_t max_sasl_line = 16384;
  // kErrors allowed per reader (session); the next error is kFatal.
  uint32_t error_budget = 10;
};

class Pop3CommandReader {
 public:
  enum class Event {
    kNeedMore,  // no complete line in the buffer
    kCommand,   // command() holds the next command (Next)
    kLine,      // *line holds the next raw line (NextLine)
    kError,     // a bad or overlong line: answer "-ERR <error_text()>"
    kFatal,     // error budget spent: answer "-ERR <error_text()>" and close
  };

  explicit Pop3CommandReader(const Pop3ReaderLimits& limits = {});

  // Takes the next command line off the front of `buf` and drains what it
  // consumed (bytes after that line stay for the next call: pipelining,
  // RFC 2449 section 6.6).
  Event Next(Buffer& buf);

  // Takes the next line off `buf` as it is (without CR LF), for the client's
  // answers in an AUTH exchange (base64, or "*" to cancel, RFC 5034
  // section 4). Limited by max_sasl_line.
  Event NextLine(Buffer& buf, std::string* line);

  // After kCommand; valid until the next call.
  const Pop3Command& command() const { return command_; }
  const std::string& error_text() const { return error_text_; }

  // Spends one unit of the error budget for an error the caller found
  // (unknown command, command in the wrong state, failed AUTH decoding).
  // Returns false once the budget is spent: the session should end.
  bool ChargeError();

  // Forgets a partly read line (after STLS the buffered plaintext is
  // discarded, RFC 2595 section 4).
  void Reset() { splitter_.Reset(); }

 private:
  Event Take(Buffer& buf, size_t max_line, absl::string_view* line, size_t* consumed);
  Event Fail(std::string text);

  Pop3ReaderLimits limits_;
  LineSplitter splitter_;
  Pop3Command command_;
  std::string error_text_;
  uint32_t errors_ = 0;
  bool dead_ = false;
};

}  // namespace postern
