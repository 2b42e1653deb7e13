#include "protocol/imap_response.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "protocol/imap_chars.h"

namespace postern {
namespace {

// Splits `rest` into a bracketed code and the text after it (resp-text =
// ["[" resp-text-code "]" SP] [text], RFC 9051 section 9; resp-code =
// "[" resp-level *("/" resp-level) "]", RFC 2449 section 3).
void SplitCode(absl::string_view rest, absl::string_view* code, absl::string_view* text) {
  *code = absl::string_view();
  *text = rest;
  if (rest.empty() || rest.front() != '[') return;
  const size_t close = rest.find(']');
  if (close == absl::string_view::npos) return;
  *code = rest.substr(1, close - 1);
  rest.remove_prefix(close + 1);
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  *text = rest;
}

bool IsStatusKeyword(absl::string_view s, bool tagged) {
  if (absl::EqualsIgnoreCase(s, "OK") || absl::EqualsIgnoreCase(s, "NO") ||
      absl::EqualsIgnoreCase(s, "BAD")) {
    return true;
  }
  // BYE and PREAUTH are always untagged (RFC 9051 section 7.1).
  return !tagged && (absl::EqualsIgnoreCase(s, "BYE") || absl::EqualsIgnoreCase(s, "PREAUTH"));
}

}  // namespace

bool ImapResponse::Is(absl::string_view keyword) const {
  return absl::EqualsIgnoreCase(status, keyword);
}

ImapResponse ParseImapResponseLine(absl::string_view line) {
  ImapResponse r;
  if (line.empty()) return r;
  if (line.front() == '+') {
    // continue-req = "+" SP (resp-text / base64) (RFC 9051 section 9). Some
    // servers drop the SP of an empty challenge: "+" alone is accepted.
    if (line.size() > 1 && line[1] != ' ') return r;
    r.kind = ImapResponse::Kind::kContinuation;
    r.tag = line.substr(0, 1);
    r.rest = line.substr(std::min<size_t>(2, line.size()));
    SplitCode(r.rest, &r.code, &r.text);
    return r;
  }
  const size_t sp = line.find(' ');
  if (sp == absl::string_view::npos || sp == 0) return r;
  const absl::string_view tag = line.substr(0, sp);
  const bool tagged = tag != "*";
  if (tagged && !std::all_of(tag.begin(), tag.end(), imap_chars::IsTagChar)) return r;
  absl::string_view after = line.substr(sp + 1);
  const size_t sp2 = std::min(after.find(' '), after.size());
  const absl::string_view status = after.substr(0, sp2);
  if (status.empty()) return r;
  const bool is_status = IsStatusKeyword(status, tagged);
  // response-tagged = tag SP resp-cond-state (RFC 9051 section 9).
  if (tagged && !is_status) return r;
  r.kind = tagged ? ImapResponse::Kind::kTagged : ImapResponse::Kind::kUntagged;
  r.tag = tag;
  r.status = status;
  r.rest = after.substr(std::min(sp2 + 1, after.size()));
  if (is_status) {
    SplitCode(r.rest, &r.code, &r.text);
  } else {
    r.text = r.rest;
  }
  return r;
}

std::vector<std::string> SplitCapabilities(absl::string_view caps) {
  std::vector<std::string> out;
  bool first = true;
  while (!caps.empty()) {
    const size_t start = caps.find_first_not_of(' ');
    if (start == absl::string_view::npos) break;
    caps.remove_prefix(start);
    const size_t stop = std::min(caps.find(' '), caps.size());
    const absl::string_view name = caps.substr(0, stop);
    caps.remove_prefix(stop);
    if (first && absl::EqualsIgnoreCase(name, "CAPABILITY")) {
      first = false;
      continue;
    }
    first = false;
    out.emplace_back(name);
  }
  return out;
}

bool HasCapability(const std::vector<std::string>& caps, absl::string_view name) {
  return std::any_of(caps.begin(), caps.end(),
                     [name](const std::string& c) { return absl::EqualsIgnoreCase(c, name); });
}

Pop3Response ParsePop3ResponseLine(absl::string_view line) {
  Pop3Response r;
  absl::string_view rest;
  if (absl::StartsWith(line, "+OK")) {
    r.kind = Pop3Response::Kind::kOk;
    rest = line.substr(3);
  } else if (absl::StartsWith(line, "-ERR")) {
    r.kind = Pop3Response::Kind::kErr;
    rest = line.substr(4);
  } else if (line == "+" || absl::StartsWith(line, "+ ")) {
    // continue-req = "+" SP [base64] (RFC 5034 section 5); "+" alone tolerated.
    r.kind = Pop3Response::Kind::kContinuation;
    r.text = line.substr(std::min<size_t>(2, line.size()));
    return r;
  } else {
    return r;
  }
  // single-line = status [SP text] (RFC 2449 section 3).
  if (!rest.empty() && rest.front() != ' ') {
    r.kind = Pop3Response::Kind::kInvalid;
    return r;
  }
  if (!rest.empty()) rest.remove_prefix(1);
  SplitCode(rest, &r.code, &r.text);
  return r;
}

}  // namespace postern
