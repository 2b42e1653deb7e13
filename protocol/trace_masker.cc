#include "protocol/trace_masker.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace postern {
namespace {

constexpr absl::string_view kMask = "***";

// The literal announced at the end of `line` ("{12}", "{12+}"), or -1.
int64_t LiteralAtEnd(absl::string_view line) {
  if (line.empty() || line.back() != '}') return -1;
  const size_t open = line.rfind('{');
  if (open == absl::string_view::npos) return -1;
  absl::string_view digits = line.substr(open + 1, line.size() - open - 2);
  if (!digits.empty() && digits.back() == '+') digits.remove_suffix(1);
  if (digits.empty() || digits.size() > 18) return -1;
  int64_t n = 0;
  for (char c : digits) {
    if (!absl::ascii_isdigit(c)) return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

std::vector<absl::string_view> Words(absl::string_view line, size_t max) {
  std::vector<absl::string_view> words;
  for (absl::string_view w : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    if (words.size() == max) break;
    words.push_back(w);
  }
  return words;
}

}  // namespace

bool TraceMasker::Secret(absl::string_view line) const {
  std::vector<absl::string_view> w = Words(line, 3);
  if (imap_) {
    if (w.size() < 2) return false;
    return absl::EqualsIgnoreCase(w[1], "LOGIN") || absl::EqualsIgnoreCase(w[1], "AUTHENTICATE");
  }
  if (w.empty()) return false;
  return absl::EqualsIgnoreCase(w[0], "PASS") || absl::EqualsIgnoreCase(w[0], "APOP") ||
         (absl::EqualsIgnoreCase(w[0], "AUTH") && w.size() >= 2);
}

void TraceMasker::ClientLine(absl::string_view line, bool complete, std::string* out) {
  // `line` without its line end; `complete`: a CRLF/LF ended it.
  const absl::string_view eol = complete ? "\r\n" : "";
  const bool continuation = masking_ && !sasl_;  // after a literal of a masked command
  if (sasl_) {
    // A client response in an AUTHENTICATE / AUTH exchange.
    absl::StrAppend(out, kMask, eol);
  } else if (continuation) {
    absl::StrAppend(out, kMask, eol);
  } else if (Secret(line)) {
    masking_ = true;
    std::vector<absl::string_view> w = Words(line, 3);
    if (imap_) {
      const bool auth = absl::EqualsIgnoreCase(w[1], "AUTHENTICATE");
      // The tag and the command; AUTHENTICATE's mechanism too.
      absl::StrAppend(out, w[0], " ", w[1]);
      if (auth && w.size() >= 3) absl::StrAppend(out, " ", w[2]);
      if (!auth || Words(line, 4).size() > 3) absl::StrAppend(out, " ", kMask);
      absl::StrAppend(out, eol);
      if (auth) sasl_ = true;
    } else {
      const bool auth = absl::EqualsIgnoreCase(w[0], "AUTH");
      const bool apop = absl::EqualsIgnoreCase(w[0], "APOP");
      absl::StrAppend(out, w[0]);
      if ((auth || apop) && w.size() >= 2) absl::StrAppend(out, " ", w[1]);
      if (!auth || w.size() >= 3) absl::StrAppend(out, " ", kMask);
      absl::StrAppend(out, eol);
      if (auth) sasl_ = true;
    }
  } else {
    absl::StrAppend(out, line, eol);
  }
  if (line_cut_) absl::StrAppend(out, "[line cut]", eol.empty() ? "\r\n" : "");
  const int64_t literal = imap_ && complete ? LiteralAtEnd(line) : -1;
  if (literal >= 0) {
    literal_ = static_cast<uint64_t>(literal);
    if (masking_ && literal_ > 0) absl::StrAppend(out, kMask);
  } else if (!sasl_) {
    masking_ = false;  // the command is complete
  }
}

void TraceMasker::Client(absl::string_view bytes, std::string* out) {
  while (!bytes.empty()) {
    if (literal_ > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(literal_, bytes.size()));
      if (!masking_) absl::StrAppend(out, bytes.substr(0, n));
      literal_ -= n;
      bytes.remove_prefix(n);
      continue;
    }
    const size_t lf = bytes.find('\n');
    const absl::string_view part = bytes.substr(0, lf);
    if (!line_cut_) {
      const size_t room = max_line_ > line_.size() ? max_line_ - line_.size() : 0;
      line_.append(part.data(), std::min(room, part.size()));
      if (part.size() > room) line_cut_ = true;
    }
    if (lf == absl::string_view::npos) return;  // the rest of the line comes later
    bytes.remove_prefix(lf + 1);
    absl::string_view line = line_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    ClientLine(line, /*complete=*/true, out);
    line_.clear();
    line_cut_ = false;
  }
}

void TraceMasker::Server(absl::string_view bytes, std::string* out) {
  absl::StrAppend(out, bytes);
  for (char c : bytes) {
    if (!server_mid_) {
      server_line_.clear();
      server_mid_ = true;
    }
    if (server_line_.size() < 3) server_line_.push_back(c);
    if (server_line_.size() == 2 || c == '\n') {
      // A line's first two bytes decide: "+ " (or "+\r") continues a SASL
      // exchange; anything else ends it.
      const bool more =
          server_line_[0] == '+' && (server_line_.size() < 2 || server_line_[1] == ' ' ||
                                     server_line_[1] == '\r' || server_line_[1] == '\n');
      if (sasl_ && !more) {
        sasl_ = false;
        masking_ = false;
      }
    }
    if (c == '\n') server_mid_ = false;
  }
}

}  // namespace postern
