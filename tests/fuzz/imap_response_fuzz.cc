// Backend response lines: ParseImapResponseLine, SplitCapabilities,
// HasCapability and ParsePop3ResponseLine on the whole input as one line.
//
// Checks: every view lies inside the line; each kind has the shape its
// comment promises (tags, status keywords, prefixes); capability names are
// non-empty, hold no space and are found again by HasCapability.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "protocol/imap_chars.h"
#include "protocol/imap_response.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern::fuzz {
namespace {

void CheckCapabilities(absl::string_view caps) {
  const std::vector<std::string> names = SplitCapabilities(caps);
  for (const std::string& name : names) {
    POSTERN_FUZZ_CHECK(!name.empty());
    POSTERN_FUZZ_CHECK(name.find(' ') == std::string::npos);
    POSTERN_FUZZ_CHECK(absl::StrContains(caps, name));
    POSTERN_FUZZ_CHECK(HasCapability(names, name));
  }
}

void CheckImap(absl::string_view line) {
  const ImapResponse r = ParseImapResponseLine(line);
  for (absl::string_view v : {r.tag, r.status, r.code, r.text, r.rest}) {
    POSTERN_FUZZ_CHECK(Inside(v, line));
  }
  switch (r.kind) {
    case ImapResponse::Kind::kTagged:
      POSTERN_FUZZ_CHECK(!r.tag.empty() && r.tag != "*");
      for (char c : r.tag) POSTERN_FUZZ_CHECK(imap_chars::IsTagChar(c));
      POSTERN_FUZZ_CHECK(r.Is("OK") || r.Is("NO") || r.Is("BAD"));
      POSTERN_FUZZ_CHECK(absl::StartsWith(line, r.tag));
      POSTERN_FUZZ_CHECK(line.substr(r.tag.size(), 1) == " ");
      break;
    case ImapResponse::Kind::kUntagged:
      POSTERN_FUZZ_CHECK(r.tag == "*");
      POSTERN_FUZZ_CHECK(!r.status.empty());
      POSTERN_FUZZ_CHECK(absl::StartsWith(line, "* "));
      break;
    case ImapResponse::Kind::kContinuation:
      POSTERN_FUZZ_CHECK(r.tag == "+");
      POSTERN_FUZZ_CHECK(line == "+" || absl::StartsWith(line, "+ "));
      POSTERN_FUZZ_CHECK(r.status.empty());
      break;
    case ImapResponse::Kind::kInvalid:
      POSTERN_FUZZ_CHECK(r.tag.empty() && r.status.empty() && r.rest.empty());
      break;
  }
  // The code and the text come from `rest`, in that order.
  POSTERN_FUZZ_CHECK(Inside(r.code, r.rest));
  POSTERN_FUZZ_CHECK(Inside(r.text, r.rest));
  if (!r.code.empty()) {
    POSTERN_FUZZ_CHECK(r.code.find(']') == absl::string_view::npos);
    CheckCapabilities(r.code);
  }
  CheckCapabilities(r.rest);
}

void CheckPop3(absl::string_view line) {
  const Pop3Response r = ParsePop3ResponseLine(line);
  POSTERN_FUZZ_CHECK(Inside(r.code, line));
  POSTERN_FUZZ_CHECK(Inside(r.text, line));
  switch (r.kind) {
    case Pop3Response::Kind::kOk:
      POSTERN_FUZZ_CHECK(line == "+OK" || absl::StartsWith(line, "+OK "));
      break;
    case Pop3Response::Kind::kErr:
      POSTERN_FUZZ_CHECK(line == "-ERR" || absl::StartsWith(line, "-ERR "));
      break;
    case Pop3Response::Kind::kContinuation:
      POSTERN_FUZZ_CHECK(line == "+" || absl::StartsWith(line, "+ "));
      POSTERN_FUZZ_CHECK(r.code.empty());
      break;
    case Pop3Response::Kind::kInvalid:
      break;
  }
  if (!r.code.empty()) POSTERN_FUZZ_CHECK(r.code.find(']') == absl::string_view::npos);
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view line(reinterpret_cast<const char*>(data), size);
  postern::fuzz::CheckImap(line);
  postern::fuzz::CheckPop3(line);
  postern::fuzz::CheckCapabilities(line);
  return 0;
}
