#include "protocol/imap_string.h"

#include "absl/strings/str_cat.h"

namespace postern {

bool NeedsLiteral(absl::string_view s) {
  if (s.size() > kMaxQuotedLength) return true;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u == '\0' || u == '\r' || u == '\n' || u >= 0x80) return true;
  }
  return false;
}

std::string ImapQuote(absl::string_view s) {
  if (NeedsLiteral(s)) return ImapLiteral(s, /*non_sync=*/false);
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string ImapLiteral(absl::string_view s, bool non_sync) {
  return absl::StrCat("{", s.size(), non_sync ? "+}\r\n" : "}\r\n", s);
}

std::string ImapAstring(absl::string_view s, bool literal_plus) {
  return NeedsLiteral(s) ? ImapLiteral(s, literal_plus) : ImapQuote(s);
}

}  // namespace postern
