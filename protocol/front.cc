#include "protocol/front.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/sasl_server.h"

namespace postern {

bool Front::SpendError(absl::string_view bye) {
  if (ended_) return false;
  // limits.error_budget: that many bad commands are answered; the next one
  // past it ends the session.
  if (++errors_ <= options_.error_budget) return true;
  host_.Send(bye);
  EndSession("too many invalid commands");
  return false;
}

absl::string_view NoticeText(bool imap, Notice notice) {
  switch (notice) {
    case Notice::kTimeout:
      return imap ? "* BYE Disconnected for inactivity.\r\n"
                  : "-ERR Disconnected for inactivity.\r\n";
    case Notice::kDeadline:
      return imap ? "* BYE Disconnected: login took too long.\r\n"
                  : "-ERR Disconnected: login took too long.\r\n";
    case Notice::kShutdown:
      return imap ? "* BYE Server shutting down.\r\n" : "-ERR Server shutting down.\r\n";
    case Notice::kIpCap:
      return imap ? "* BYE [UNAVAILABLE] Too many connections from your address.\r\n"
                  : "-ERR [SYS/TEMP] Too many connections from your address.\r\n";
    case Notice::kBusy:
      return imap ? "* BYE [UNAVAILABLE] Server busy, try again later.\r\n"
                  : "-ERR [SYS/TEMP] Server busy, try again later.\r\n";
    case Notice::kKicked:
      // RFC 5530 section 3: UNAVAILABLE; RFC 3206 section 4: SYS/TEMP.
      return imap ? "* BYE [UNAVAILABLE] Disconnected by the administrator.\r\n"
                  : "-ERR [SYS/TEMP] Disconnected by the administrator.\r\n";
    case Notice::kDrained:
      return imap ? "* BYE [UNAVAILABLE] Mail server under maintenance, please reconnect.\r\n"
                  : "-ERR [SYS/TEMP] Mail server under maintenance, please reconnect.\r\n";
  }
  return "";
}

bool Front::Offered(absl::string_view name, Credentials::Mechanism* mech) const {
  Credentials::Mechanism m;
  if (!SaslServer::ParseMechanism(name, &m)) return false;
  for (Credentials::Mechanism o : options_.sasl) {
    if (o == m) {
      *mech = m;
      return true;
    }
  }
  return false;
}

std::string Front::MechanismList(absl::string_view prefix, absl::string_view separator) const {
  std::string out;
  for (Credentials::Mechanism m : options_.sasl) {
    if (!out.empty()) out.append(separator.data(), separator.size());
    absl::StrAppend(&out, prefix, SaslServer::MechanismName(m));
  }
  return out;
}

std::string SanitizeReplyText(absl::string_view text, size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  for (char c : text) {
    if (out.size() >= max) break;
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) continue;
    // RFC 3501 section 9 (resp-text: CHAR is 7-bit) and POP3's replies: a
    // client that did not ask for UTF-8 gets ASCII.
    out.push_back(u >= 0x80 ? '?' : c);
  }
  return out;
}

std::string SanitizeResponseCode(absl::string_view code) {
  if (code.empty() || code.size() > 64) return "";
  for (char c : code) {
    const auto u = static_cast<unsigned char>(c);
    const bool ok = (u > 0x20 && u < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' &&
                     c != '*' && c != '"' && c != '\\' && c != ']' && c != '[');
    if (!ok) return "";
  }
  return std::string(code);
}

std::string SanitizeCapabilities(absl::string_view caps) {
  std::string out;
  size_t i = 0;
  while (i < caps.size()) {
    size_t j = caps.find(' ', i);
    if (j == absl::string_view::npos) j = caps.size();
    absl::string_view name = caps.substr(i, j - i);
    // capability = ("AUTH=" auth-type) / atom: the code check is that of an atom.
    if (!name.empty() && !SanitizeResponseCode(name).empty()) {
      if (!out.empty()) out.push_back(' ');
      out.append(name.data(), name.size());
    }
    i = j + 1;
  }
  return out;
}

}  // namespace postern
