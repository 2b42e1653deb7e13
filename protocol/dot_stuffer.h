#pragma once

// DotStuffer: the POP3 multi-line body encoding (RFC 1939 section 3) as a
// stream filter, for message text that arrives in slices (an IMAP literal
// streamed by ImapResponseStream).
//
//  - A line that starts with "." gets one more "." in front.
//  - Finish(): if the data did not end with a line end, CR LF is added; then
//    the terminating ".\r\n".
//  - A bare LF (not after CR) becomes CR LF when repair_bare_lf is set, which
//    is what Dovecot's POP3 server does with the same bytes
//    (tests/protocol/dovecot_fixtures.inc); a bare CR passes as it is.
//
// State survives every split: a "." at the start of a slice that follows a
// LF is stuffed, a LF at the start of a slice that follows a CR is not
// repaired. Clean runs are passed on in bulk (memchr for LF): the output
// callback sees views into the input, split only where a byte is inserted.
//
// One deliberate difference from Dovecot 2.3.19: Dovecot does not stuff a "."
// in the very first byte of a message (its state starts "not after LF"); a
// message whose first line is "." would then end the answer early. We stuff
// it, as RFC 1939 section 3 says ("If any line begins with the termination
// octet"); stuff_first_line = false reproduces Dovecot, for tests only.

#include <cstddef>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"

namespace postern {

struct DotStufferOptions {
  bool repair_bare_lf = true;
  bool stuff_first_line = true;
};

class DotStuffer {
 public:
  using Sink = absl::FunctionRef<void(absl::string_view)>;

  explicit DotStuffer(DotStufferOptions options = {}) : options_(options) { Reset(); }

  // Passes the stuffed form of `in` to `out`, in order, in one or more pieces.
  void Encode(absl::string_view in, Sink out);
  void Encode(absl::string_view in, Buffer& out) {
    Encode(in, [&out](absl::string_view s) { out.Append(s); });
  }
  void Encode(absl::string_view in, std::string& out) {
    Encode(in, [&out](absl::string_view s) { out.append(s.data(), s.size()); });
  }

  // Ends the body: CR LF if it did not end with LF, then ".\r\n". The
  // stuffer is then ready for the next body.
  void Finish(Sink out);
  void Finish(Buffer& out) {
    Finish([&out](absl::string_view s) { out.Append(s); });
  }
  void Finish(std::string& out) {
    Finish([&out](absl::string_view s) { out.append(s.data(), s.size()); });
  }

  // Forgets the body in progress.
  void Reset() { last_ = options_.stuff_first_line ? '\n' : '\0'; }

  // True when the next byte starts a line.
  bool at_line_start() const { return last_ == '\n'; }

 private:
  DotStufferOptions options_;
  char last_;  // the last byte passed on ('\n' at a line start)
};

}  // namespace postern
