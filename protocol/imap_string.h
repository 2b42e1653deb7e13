#pragma once

// Writing IMAP strings: what the proxy sends to a backend on behalf of a user
// (LOGIN userid password, ID values). A string the client gave us must never
// be able to end our command early: anything that cannot sit inside a quoted
// string goes out as a literal (RFC 9051 section 4.3; DIGEST b.9).
//
// NUL can be sent in no IMAP string at all, literal or quoted (CHAR8 =
// %x01-ff, RFC 9051 section 9): callers reject it before they get here.

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace postern {

// Longer strings are sent as literals (a long quoted string makes a long
// command line, and servers limit those, RFC 2683 section 3.2.1.5).
inline constexpr size_t kMaxQuotedLength = 1024;

// True when `s` cannot be sent as a quoted string: it holds CR, LF or NUL
// (quoted = DQUOTE *QUOTED-CHAR DQUOTE, QUOTED-CHAR has no CR/LF, RFC 9051
// section 9), any 8-bit byte (IMAP4rev1 quoted strings are 7-bit, RFC 3501
// section 9, and a backend may be rev1), or it is longer than kMaxQuotedLength.
bool NeedsLiteral(absl::string_view s);

// "s" with \ and " escaped as \\ and \" (RFC 9051 section 9 QUOTED-CHAR).
// When NeedsLiteral(s) it returns ImapLiteral(s, false) instead: never a
// quoted string that would break the command.
std::string ImapQuote(absl::string_view s);

// "{n}\r\n" + s, or "{n+}\r\n" + s for a non-synchronizing literal (RFC 7888;
// only toward a server that advertises LITERAL+, or LITERAL- with n <= 4096).
// A synchronizing literal needs the server's "+" before s is sent: callers
// that cannot wait should use the non-synchronizing form.
std::string ImapLiteral(absl::string_view s, bool non_sync);

// An astring for a command: quoted when possible, else a literal
// (non-synchronizing when `literal_plus`).
std::string ImapAstring(absl::string_view s, bool literal_plus);

}  // namespace postern
