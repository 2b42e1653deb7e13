#pragma once

// Character classes of the IMAP formal syntax (RFC 9051 section 9), shared by
// the command and response parsers.

namespace postern::imap_chars {

// ATOM-CHAR: any CHAR except atom-specials = "(" / ")" / "{" / SP / CTL /
// list-wildcards ("%" / "*") / quoted-specials (DQUOTE / "\") /
// resp-specials ("]"). CHAR is 7-bit, so 8-bit bytes are not atom
// characters either.
inline bool IsAtomChar(char c) {
  if (c <= 0x20 || c >= 0x7f) return false;  // CTL, SP, DEL, 8-bit (char may be signed)
  switch (c) {
    case '(':
    case ')':
    case '{':
    case '%':
    case '*':
    case '"':
    case '\\':
    case ']':
      return false;
    default:
      return true;
  }
}

// ASTRING-CHAR = ATOM-CHAR / resp-specials.
inline bool IsAstringChar(char c) { return IsAtomChar(c) || c == ']'; }

// tag = 1*<any ASTRING-CHAR except "+">.
inline bool IsTagChar(char c) { return c != '+' && IsAstringChar(c); }

}  // namespace postern::imap_chars
