// VerifyPassword on arbitrary stored password fields, with a fixed password.
//
// Cost limits are tight (PasswordCostLimits below): a field asking for more
// is refused with RESOURCE_EXHAUSTED before anything is hashed, so that one
// input costs at most a few milliseconds (libcrypt and libargon2 are not
// instrumented). yescrypt and the other libxcrypt methods whose cost is not
// bounded are refused by the library itself.
//
// Checks:
//  - never a crash, a sanitizer report or a hang;
//  - ValidatePasswordField and VerifyPassword agree on the field (same
//    status), apart from INTERNAL (an allocation failing while hashing);
//  - the verdict does not change when asked twice;
//  - an error never carries the password, and holds only the bytes our
//    messages are made of (scheme names, fixed text, numbers), so no echo
//    of the stored field;
//  - IsSlowScheme is false for a field VerifyPassword cannot parse as a
//    scheme, and true for every accepted crypt or argon2 field.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "routing/password_scheme.h"

#define POSTERN_FUZZ_CHECK(cond)                                                         \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace postern::fuzz {
namespace {

constexpr absl::string_view kPassword = "s3cret";

PasswordCostLimits FuzzLimits() {
  PasswordCostLimits limits;
  limits.max_sha_crypt_rounds = 20'000;  // about 10 ms for $6$
  limits.max_bcrypt_cost = 6;            // 2^6 rounds, about 5 ms
  limits.max_argon2_memory_kib = 256;
  limits.max_argon2_work = 1024;  // m times t
  limits.max_argon2_lanes = 2;
  return limits;
}

// Every byte an error message may hold: scheme names, fixed text, numbers.
// Echoed input would soon bring in something else (a '+', a '!', a
// non-ASCII or control byte).
bool OnlyMessageBytes(absl::string_view message) {
  for (char c : message) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        absl::string_view(" :'{}()$/.,=*<>_-^").find(c) == absl::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool IsCryptOrArgon2Label(absl::string_view stored) {
  if (stored.empty() || stored[0] != '{') return true;  // no braces: CRYPT
  const size_t close = stored.find('}');
  absl::string_view name = stored.substr(1, close - 1);
  name = name.substr(0, name.find('.'));
  return absl::EndsWithIgnoreCase(name, "CRYPT") || absl::StartsWithIgnoreCase(name, "ARGON2I");
}

void Check(absl::string_view stored) {
  static const PasswordCostLimits limits = FuzzLimits();
  const absl::Status valid = ValidatePasswordField(stored, limits);
  const absl::StatusOr<bool> first = VerifyPassword(kPassword, stored, limits);
  if (absl::IsInternal(first.status())) return;
  POSTERN_FUZZ_CHECK(first.status() == valid);
  const bool slow = IsSlowScheme(stored);
  if (first.ok()) {
    POSTERN_FUZZ_CHECK(slow == IsCryptOrArgon2Label(stored));
    const absl::StatusOr<bool> again = VerifyPassword(kPassword, stored, limits);
    POSTERN_FUZZ_CHECK(again.ok() && *again == *first);
  } else {
    const absl::string_view message = first.status().message();
    POSTERN_FUZZ_CHECK(!absl::StrContains(message, kPassword));
    POSTERN_FUZZ_CHECK(OnlyMessageBytes(message));
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(first.status()) ||
                       absl::IsResourceExhausted(first.status()));
  }
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  postern::fuzz::Check(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
