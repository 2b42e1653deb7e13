#pragma once

// Response lines from backends, read before and during the proxy's own login
// there (greeting, CAPABILITY, STARTTLS, LOGIN/AUTHENTICATE, ID). Line based:
// the caller splits lines (LineSplitter) and passes each without CR LF. The
// results are views into that line.
//
// Backends are trusted more than clients, but not blindly: anything that does
// not have the shape the RFC gives comes back as kInvalid and the caller
// treats the backend as broken.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace postern {

struct ImapResponse {
  enum class Kind { kUntagged, kTagged, kContinuation, kInvalid };
  Kind kind = Kind::kInvalid;
  // The tag of a tagged response; "*" or "+" for the others.
  absl::string_view tag;
  // OK / NO / BAD (tagged; RFC 9051 section 9 `response-tagged`), or for
  // untagged responses OK / NO / BAD / BYE / PREAUTH or the data keyword
  // ("CAPABILITY", "ID", the number of "* 3 EXISTS"). As sent: compare with
  // Is(), keywords are case-insensitive (RFC 9051 section 9, note 1).
  absl::string_view status;
  // For status responses (and continuations): the response code inside
  // [...] without the brackets ("CAPABILITY IMAP4rev1 ..."), "" if none
  // (RFC 9051 section 7.1, `resp-text`).
  absl::string_view code;
  // The human text after the code (and its SP).
  absl::string_view text;
  // Everything after "status SP" (for "* CAPABILITY a b": "a b"); for a
  // continuation request everything after "+ ".
  absl::string_view rest;

  bool Is(absl::string_view keyword) const;
};

// Parses one response line (without CR LF):
//   "tag OK|NO|BAD [code] text"   kTagged    (RFC 9051 section 7.1)
//   "* keyword ..."               kUntagged  (RFC 9051 section 7)
//   "+ text-or-base64", "+"       kContinuation (RFC 9051 section 7.5)
// A status with nothing after it ("a1 OK") is accepted; a "[" without its
// "]" is taken as text, not as a code.
ImapResponse ParseImapResponseLine(absl::string_view line);

// The capability names in a CAPABILITY response code ("CAPABILITY a b c")
// or in the rest of an untagged CAPABILITY line ("a b c"): a leading
// "CAPABILITY" is dropped, names are split on spaces and kept as sent.
std::vector<std::string> SplitCapabilities(absl::string_view caps);
// Case-insensitive membership (capability names are case-insensitive,
// RFC 9051 section 9 note 1): HasCapability(caps, "LITERAL+").
bool HasCapability(const std::vector<std::string>& caps, absl::string_view name);

struct Pop3Response {
  enum class Kind { kOk, kErr, kContinuation, kInvalid };
  Kind kind = Kind::kInvalid;
  // RFC 2449 section 8 extended response code inside [...] at the start of
  // the text ("SYS/TEMP", "IN-USE", "AUTH"), without brackets; "" if none.
  absl::string_view code;
  // The text after the status (and after the code and its SP). For a
  // continuation ("+ " base64, RFC 5034 section 4) the base64 challenge.
  absl::string_view text;
};

// Parses one POP3 response line (without CR LF). "+OK" and "-ERR" must be
// upper case (RFC 1939 section 3) and followed by SP or the end of the line.
Pop3Response ParsePop3ResponseLine(absl::string_view line);

}  // namespace postern
