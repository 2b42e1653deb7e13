// Admin endpoint requests (proxy/admin_http.h): AdminRequestParser over a
// stream of pipelined requests, fed whole and cut into pieces (sizes from
// the first input byte), under small limits so that every bound is reached;
// then the JSON string escaper and the query decoder on the same bytes.
//
// Checks:
//  - never a crash or a sanitizer report;
//  - Feed never consumes more than it was given, nothing after kDone or
//    kError, and repeats its result until Reset;
//  - the requests, and whether an error ends them, do not depend on how
//    the input was cut (which error may, see below);
//  - a parsed request keeps the bounds (target, fields, body) and the
//    rules: a method and a path, field names lower-case tokens, no CR, LF
//    or NUL in a value, exactly one Host in HTTP/1.1, query parameters
//    that decode the query;
//  - an error status is one the server sends (400 413 414 417 431 501 505);
//  - AppendJsonString gives valid UTF-8 with no raw control byte, quoted.
//
// Run it with tests/fuzz/run.sh 300 admin_http_request (tests/README.md).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "proxy/admin_http.h"
#include "proxy/utf8.h"

#define POSTERN_FUZZ_CHECK(cond)                                                         \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace postern::fuzz {
namespace {

using Result = AdminRequestParser::Result;

AdminHttpLimits Limits() {
  AdminHttpLimits l;
  l.max_target = 64;
  l.max_header_bytes = 512;
  l.max_headers = 8;
  l.max_body = 128;
  return l;
}

struct Outcome {
  std::vector<AdminRequest> requests;
  int error_status = 0;
  std::string error;
  size_t consumed = 0;
};

bool Same(const AdminRequest& a, const AdminRequest& b) {
  return a.method == b.method && a.target == b.target && a.path == b.path && a.query == b.query &&
         a.params == b.params && a.headers == b.headers && a.body == b.body &&
         a.version_minor == b.version_minor && a.keep_alive == b.keep_alive &&
         a.expect_continue == b.expect_continue;
}

void CheckRequest(const AdminRequest& r, const AdminHttpLimits& l) {
  POSTERN_FUZZ_CHECK(IsHttpToken(r.method));
  POSTERN_FUZZ_CHECK(!r.target.empty() && r.target.size() <= l.max_target);
  POSTERN_FUZZ_CHECK(!r.path.empty());
  POSTERN_FUZZ_CHECK(r.body.size() <= l.max_body);
  POSTERN_FUZZ_CHECK(r.headers.size() <= l.max_headers);
  POSTERN_FUZZ_CHECK(r.version_minor == 0 || r.version_minor == 1);
  POSTERN_FUZZ_CHECK(!r.expect_continue || r.version_minor == 1);
  size_t bytes = r.target.size();
  int hosts = 0;
  for (const auto& [name, value] : r.headers) {
    POSTERN_FUZZ_CHECK(IsHttpToken(name));
    for (char c : name) POSTERN_FUZZ_CHECK(!absl::ascii_isupper(static_cast<unsigned char>(c)));
    POSTERN_FUZZ_CHECK(value.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    POSTERN_FUZZ_CHECK(value.empty() || (value.front() != ' ' && value.back() != ' '));
    bytes += name.size() + value.size();
    if (name == "host") ++hosts;
  }
  POSTERN_FUZZ_CHECK(bytes <= l.max_header_bytes);
  POSTERN_FUZZ_CHECK(hosts <= 1 && (hosts == 1 || r.version_minor == 0));
  std::vector<std::pair<std::string, std::string>> params;
  POSTERN_FUZZ_CHECK(ParseAdminQuery(r.query, &params));
  POSTERN_FUZZ_CHECK(params == r.params);
  POSTERN_FUZZ_CHECK(r.Header("host") == nullptr || hosts == 1);
}

// Parses every request in `input`, in pieces of the sizes `seed` picks (0:
// whole), until the input ends or an error.
Outcome Parse(absl::string_view input, uint8_t seed, const AdminHttpLimits& limits) {
  Outcome out;
  AdminRequestParser p(limits);
  size_t pos = 0;
  uint32_t state = seed;
  while (pos < input.size()) {
    size_t n = input.size() - pos;
    if (seed != 0) {
      state = state * 1103515245u + 12345u;
      n = std::min<size_t>(n, 1 + (state >> 16) % 23);
    }
    size_t consumed = 0;
    const Result r = p.Feed(input.substr(pos, n), &consumed);
    POSTERN_FUZZ_CHECK(consumed <= n);
    pos += consumed;
    if (r == Result::kNeedMore) {
      POSTERN_FUZZ_CHECK(consumed == n);
      continue;
    }
    size_t again = 1;
    POSTERN_FUZZ_CHECK(p.Feed(input.substr(pos), &again) == r);
    POSTERN_FUZZ_CHECK(again == 0);
    if (r == Result::kError) {
      out.error_status = p.error_status();
      out.error = p.error();
      break;
    }
    POSTERN_FUZZ_CHECK(p.started() && p.headers_complete());
    out.requests.push_back(p.TakeRequest());
    p.Reset();
    POSTERN_FUZZ_CHECK(!p.started());
  }
  out.consumed = pos;
  return out;
}

void CheckJson(absl::string_view bytes) {
  std::string json;
  AppendJsonString(&json, bytes);
  POSTERN_FUZZ_CHECK(json.size() >= 2 && json.front() == '"' && json.back() == '"');
  POSTERN_FUZZ_CHECK(IsValidUtf8(json));
  bool escaped = false;
  for (size_t i = 1; i + 1 < json.size(); ++i) {
    const auto c = static_cast<unsigned char>(json[i]);
    POSTERN_FUZZ_CHECK(c >= 0x20 && c != 0x7f);
    if (escaped) {
      POSTERN_FUZZ_CHECK(c == '"' || c == '\\' || c == 'n' || c == 'r' || c == 't' || c == 'u');
      escaped = false;
    } else if (c == '\\') {
      escaped = true;
    } else {
      POSTERN_FUZZ_CHECK(c != '"');
    }
  }
  POSTERN_FUZZ_CHECK(!escaped);
  // Valid UTF-8 without controls, quotes or backslashes passes unchanged.
  bool plain = IsValidUtf8(bytes);
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') plain = false;
  }
  if (plain && bytes.find("\xe2\x80\xa8") == absl::string_view::npos &&
      bytes.find("\xe2\x80\xa9") == absl::string_view::npos) {
    POSTERN_FUZZ_CHECK(json.substr(1, json.size() - 2) == bytes);
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
  const AdminHttpLimits limits = Limits();

  const Outcome whole = Parse(input, 0, limits);
  const Outcome cut = Parse(input, seed | 1, limits);
  POSTERN_FUZZ_CHECK(whole.requests.size() == cut.requests.size());
  for (size_t i = 0; i < whole.requests.size(); ++i) {
    POSTERN_FUZZ_CHECK(Same(whole.requests[i], cut.requests[i]));
    CheckRequest(whole.requests[i], limits);
  }
  // An error either way. Which one may depend on the cut when the same
  // element is both over a bound and malformed (http-parser reports a URL
  // or field piece at the end of each Feed, so a bound can be seen before
  // the bad byte after it); the requests before it may not.
  POSTERN_FUZZ_CHECK((whole.error_status == 0) == (cut.error_status == 0));
  // Where an error is noticed may depend on the cut (a bound is checked
  // as each piece of a field arrives); what was parsed before may not.
  if (whole.error_status == 0) POSTERN_FUZZ_CHECK(whole.consumed == cut.consumed);
  for (const Outcome* o : {&whole, &cut}) {
    const int s = o->error_status;
    if (s == 0) continue;
    POSTERN_FUZZ_CHECK(s == 400 || s == 413 || s == 414 || s == 417 || s == 431 || s == 501 ||
                       s == 505);
    POSTERN_FUZZ_CHECK(!o->error.empty());
  }
  // The default limits too.
  const Outcome roomy = Parse(input, seed | 1, AdminHttpLimits());
  for (const AdminRequest& r : roomy.requests) CheckRequest(r, AdminHttpLimits());

  CheckJson(input);
  std::vector<std::pair<std::string, std::string>> params;
  ParseAdminQuery(input, &params);
  return 0;
}
