// auth_http responses (routing/auth_http.h): AuthHttpResponseParser on the
// whole input (after its first byte) and on the same input cut into pieces
// (sizes from a seed: the first byte), then InterpretAuthHttpResponse on what came out.
//
// Checks:
//  - never a crash or a sanitizer report;
//  - Feed never consumes more than it was given, and nothing after kDone;
//  - the result (done or error, and every field read) does not depend on
//    how the input was cut;
//  - a done response has a status of 200..999 and no CR or LF in any value;
//  - the interpretation is consistent: an accept has somewhere to go (a
//    numeric address with a port 1..65535, or a backend or shard name), a
//    refusal carries Auth-Status's text, waits are within the bound, codes
//    are safe atoms, nothing unavailable is cacheable, no value holds CR or
//    LF.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "routing/auth_http.h"

#define POSTERN_FUZZ_CHECK(cond)                                                         \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace postern::fuzz {
namespace {

using Result = AuthHttpResponseParser::Result;

// Parses `input` in pieces of the sizes `seed` picks (0: whole).
Result Parse(absl::string_view input, uint8_t seed, AuthHttpResponseParser& p) {
  Result r = Result::kNeedMore;
  size_t pos = 0;
  uint32_t state = seed;
  while (pos < input.size()) {
    size_t n = input.size() - pos;
    if (seed != 0) {
      state = state * 1103515245u + 12345u;
      n = std::min<size_t>(n, 1 + (state >> 16) % 17);
    }
    size_t consumed = 0;
    r = p.Feed(input.substr(pos, n), &consumed);
    POSTERN_FUZZ_CHECK(consumed <= n);
    if (r != Result::kNeedMore) {
      size_t again = 1;
      POSTERN_FUZZ_CHECK(p.Feed(input.substr(pos), &again) == r);
      POSTERN_FUZZ_CHECK(again == 0);
      return r;
    }
    POSTERN_FUZZ_CHECK(consumed == n);
    pos += n;
  }
  return p.FeedEof();
}

bool NoLineBreak(absl::string_view s) { return s.find_first_of("\r\n") == absl::string_view::npos; }
bool NoLineBreakOpt(const std::optional<std::string>& s) { return !s || NoLineBreak(*s); }

bool Same(const AuthHttpResponse& a, const AuthHttpResponse& b) {
  return a.http_status == b.http_status && a.keep_alive == b.keep_alive &&
         a.has_status == b.has_status && a.status_wait == b.status_wait && a.refused == b.refused &&
         a.refusal == b.refusal && a.server == b.server && a.port == b.port && a.user == b.user &&
         a.pass == b.pass && a.wait_seconds == b.wait_seconds && a.error_code == b.error_code &&
         a.backend == b.backend && a.shard == b.shard && a.master == b.master &&
         a.cache_ttl == b.cache_ttl;
}

void CheckAnswer(const AuthHttpResponse& r) {
  const AuthHttpOutcome o = InterpretAuthHttpResponse(r);
  const DirectoryAnswer& a = o.answer;
  POSTERN_FUZZ_CHECK(o.again_after >= std::chrono::milliseconds(0));
  POSTERN_FUZZ_CHECK(o.again_after <= kAuthHttpMaxWait);
  POSTERN_FUZZ_CHECK(a.wait >= std::chrono::milliseconds(0) && a.wait <= kAuthHttpMaxWait);
  POSTERN_FUZZ_CHECK(!a.detail.empty());
  POSTERN_FUZZ_CHECK(NoLineBreak(a.detail));
  if (o.kind == AuthHttpOutcome::Kind::kAskAgain) {
    POSTERN_FUZZ_CHECK(r.status_wait && !r.refused);
    return;
  }
  switch (a.verdict) {
    case DirectoryAnswer::Verdict::kAccept:
      POSTERN_FUZZ_CHECK(r.http_status >= 200 && r.http_status <= 299);
      POSTERN_FUZZ_CHECK(!r.refused && !r.status_wait);
      POSTERN_FUZZ_CHECK(a.checked);
      POSTERN_FUZZ_CHECK(!a.host.empty() || !a.backend.empty() || !a.shard.empty());
      POSTERN_FUZZ_CHECK(a.host.empty() == (a.port == 0));
      if (!a.host.empty()) {
        absl::StatusOr<std::string> again = ParseAuthHttpServerAddress(a.host);
        POSTERN_FUZZ_CHECK(again.ok() && *again == a.host);
      }
      POSTERN_FUZZ_CHECK(NoLineBreak(a.backend_user) && NoLineBreak(a.backend_password) &&
                         NoLineBreak(a.backend) && NoLineBreak(a.shard));
      break;
    case DirectoryAnswer::Verdict::kRefuse:
      POSTERN_FUZZ_CHECK(r.refused);
      POSTERN_FUZZ_CHECK(a.text == r.refusal);
      POSTERN_FUZZ_CHECK(NoLineBreak(a.text));
      POSTERN_FUZZ_CHECK(a.code.size() <= 64);
      for (char c : a.code) {
        POSTERN_FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                           (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == '/' || c == '_');
      }
      POSTERN_FUZZ_CHECK(a.host.empty() && a.backend_user.empty() && !a.master);
      break;
    case DirectoryAnswer::Verdict::kUnavailable:
      POSTERN_FUZZ_CHECK(!a.cacheable);
      break;
  }
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace postern;
  using namespace postern::fuzz;
  if (size == 0) return 0;
  const uint8_t seed = data[0];
  const absl::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  AuthHttpResponseParser whole;
  const Result rw = Parse(input, 0, whole);
  AuthHttpResponseParser cut;
  const Result rc = Parse(input, seed | 1, cut);
  POSTERN_FUZZ_CHECK(rw != Result::kNeedMore && rc != Result::kNeedMore);
  POSTERN_FUZZ_CHECK(rw == rc);
  absl::StatusOr<AuthHttpResponse> one = ParseAuthHttpResponse(input);
  POSTERN_FUZZ_CHECK(one.ok() == (rw == Result::kDone));
  if (rw != Result::kDone) {
    POSTERN_FUZZ_CHECK(!whole.error().empty() && !cut.error().empty());
    return 0;
  }
  const AuthHttpResponse& r = whole.response();
  POSTERN_FUZZ_CHECK(Same(r, cut.response()));
  POSTERN_FUZZ_CHECK(Same(r, *one));
  POSTERN_FUZZ_CHECK(r.http_status >= 200 && r.http_status <= 999);
  POSTERN_FUZZ_CHECK(NoLineBreak(r.refusal) && NoLineBreakOpt(r.server) && NoLineBreakOpt(r.port) &&
                     NoLineBreakOpt(r.user) && NoLineBreakOpt(r.pass) &&
                     NoLineBreakOpt(r.error_code) && NoLineBreakOpt(r.backend) &&
                     NoLineBreakOpt(r.shard) && NoLineBreakOpt(r.master) &&
                     NoLineBreakOpt(r.cache_ttl));
  if (r.wait_seconds) POSTERN_FUZZ_CHECK(*r.wait_seconds >= 0);
  CheckAnswer(r);
  return 0;
}
