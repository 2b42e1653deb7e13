// Dovecot passwd-file lines and files: ParsePasswdLine on the whole input,
// then PasswdFile::Parse on it as a file, case-sensitive and not.
//
// Checks:
//  - never a crash or a sanitizer report;
//  - a refused line's error names the user and otherwise holds only the
//    bytes our messages are made of (no echo of the password field);
//  - an accepted line has a non-empty user name without control
//    characters, every view lies inside the input, port= is 1..65535 when
//    given, and the extra fields have non-empty keys;
//  - a refused file's error starts with "fuzz.passwd:<line>: " with a line
//    number inside the file (or is the whole-file size error);
//  - an accepted file holds one entry per user line, each found by Find()
//    under its name, equal to what ParsePasswdLine makes of its line;
//  - case-insensitive loading refuses only what the case-sensitive one
//    refuses, plus duplicates; every entry is found under the upper-cased name.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "routing/passwd_file.h"

#define POSTERN_FUZZ_CHECK(cond)                                                         \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace postern::fuzz {
namespace {

constexpr absl::string_view kSource = "fuzz.passwd";

// Only cheap schemes in practice: costs stay tiny.
PasswordCostLimits FuzzLimits() {
  PasswordCostLimits limits;
  limits.max_sha_crypt_rounds = 20'000;
  limits.max_bcrypt_cost = 6;
  limits.max_argon2_memory_kib = 256;
  limits.max_argon2_work = 1024;
  limits.max_argon2_lanes = 2;
  return limits;
}

bool Inside(absl::string_view view, absl::string_view outer) {
  if (view.empty()) return true;
  return view.data() >= outer.data() && view.data() + view.size() <= outer.data() + outer.size();
}

// An error names the user ("user <name>: ") and then says what is wrong in
// our own words: scheme names, fixed text, numbers. Anything else would be
// an echo of the line (the password field above all).
bool OnlyMessageBytes(absl::string_view input, absl::string_view message) {
  if (!input.empty() && input.back() == '\r') input.remove_suffix(1);
  const std::string prefix = absl::StrCat("user ", input.substr(0, input.find(':')), ": ");
  absl::ConsumePrefix(&message, prefix);
  for (char c : message) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        absl::string_view(" :'{}()$/.,=*<>_-^[]").find(c) == absl::string_view::npos) {
      return false;
    }
  }
  return true;
}

void CheckLine(absl::string_view input, const PasswordCostLimits& limits) {
  const absl::StatusOr<PasswdLine> line = ParsePasswdLine(input, limits);
  if (!line.ok()) {
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(line.status()) ||
                       absl::IsResourceExhausted(line.status()));
    POSTERN_FUZZ_CHECK(OnlyMessageBytes(input, line.status().message()));
    return;
  }
  POSTERN_FUZZ_CHECK(!IsPasswdSkippedLine(input));
  POSTERN_FUZZ_CHECK(!line->user.empty());
  for (char c : line->user) {
    POSTERN_FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
  }
  for (absl::string_view v :
       {line->user, line->password, line->host, line->destuser, line->reason}) {
    POSTERN_FUZZ_CHECK(Inside(v, input));
  }
  if (!line->password.empty()) {
    POSTERN_FUZZ_CHECK(ValidatePasswordField(line->password, limits).ok());
  }
  for (const PasswdExtraField& f : line->extra_fields) {
    POSTERN_FUZZ_CHECK(!f.key.empty());
    POSTERN_FUZZ_CHECK(f.key.find(' ') == absl::string_view::npos);
    POSTERN_FUZZ_CHECK(f.key != "host" && f.key != "port" && f.key != "destuser" &&
                       f.key != "reason" && f.key != "nologin");
    if (f.key != "userdb_mail") POSTERN_FUZZ_CHECK(Inside(f.key, input));
    POSTERN_FUZZ_CHECK(Inside(f.value, input));
  }
}

bool SameEntry(const PasswdEntry& e, const PasswdLine& l) {
  if (e.user != l.user || e.password != l.password || e.host != l.host ||
      e.destuser != l.destuser || e.reason != l.reason || e.port != l.port ||
      e.nologin != l.nologin || e.extra_fields.size() != l.extra_fields.size()) {
    return false;
  }
  for (size_t i = 0; i < l.extra_fields.size(); ++i) {
    if (e.extra_fields[i].key != l.extra_fields[i].key ||
        e.extra_fields[i].value != l.extra_fields[i].value) {
      return false;
    }
  }
  return true;
}

void CheckFile(absl::string_view input, const PasswordCostLimits& limits) {
  PasswdFileOptions options;
  options.password_limits = limits;
  options.max_line_length = 512;  // small enough for the fuzzer to reach
  const std::vector<absl::string_view> lines = absl::StrSplit(input, '\n');

  const auto file = PasswdFile::Parse(input, kSource, options);
  options.case_insensitive = true;
  const auto folded = PasswdFile::Parse(input, kSource, options);

  if (!file.ok()) {
    // "fuzz.passwd:<n>: ..." with n a line of the input.
    const absl::string_view message = file.status().message();
    POSTERN_FUZZ_CHECK(absl::StartsWith(message, "fuzz.passwd:"));
    const absl::string_view rest = message.substr(kSource.size() + 1);
    const size_t colon = rest.find(':');
    POSTERN_FUZZ_CHECK(colon != absl::string_view::npos);
    uint32_t number = 0;
    POSTERN_FUZZ_CHECK(absl::SimpleAtoi(rest.substr(0, colon), &number));
    POSTERN_FUZZ_CHECK(number >= 1 && number <= lines.size());
    POSTERN_FUZZ_CHECK(rest.substr(colon, 2) == ": ");
    POSTERN_FUZZ_CHECK(!folded.ok());  // case-folding refuses at least as much
    return;
  }
  size_t user_lines = 0;
  for (absl::string_view line : lines) {
    if (!IsPasswdSkippedLine(line)) ++user_lines;
  }
  const PasswdFile& f = **file;
  POSTERN_FUZZ_CHECK(f.size() == user_lines);
  for (const PasswdEntry& e : f.entries()) {
    POSTERN_FUZZ_CHECK(f.Find(e.user) == &e);
    POSTERN_FUZZ_CHECK(e.line >= 1 && e.line <= lines.size());
    const absl::StatusOr<PasswdLine> again = ParsePasswdLine(lines[e.line - 1], limits);
    POSTERN_FUZZ_CHECK(again.ok() && SameEntry(e, *again));
  }
  if (folded.ok()) {
    POSTERN_FUZZ_CHECK((*folded)->size() == f.size());
    for (const PasswdEntry& e : f.entries()) {
      const PasswdEntry* found = (*folded)->Find(absl::AsciiStrToUpper(e.user));
      POSTERN_FUZZ_CHECK(found != nullptr && found->user == e.user);
    }
  } else {
    POSTERN_FUZZ_CHECK(absl::StrContains(folded.status().message(), ": duplicate of line "));
  }
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const postern::PasswordCostLimits limits = postern::fuzz::FuzzLimits();
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  postern::fuzz::CheckLine(input, limits);
  postern::fuzz::CheckFile(input, limits);
  return 0;
}
