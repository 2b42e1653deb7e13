// SASL before login: strict base64, PLAIN and the LOGIN mechanism.
//
// Checks, on the whole input:
//  - DecodeBase64Strict: when it accepts, EncodeBase64 of the result gives
//    the input back (one encoding per value); EncodeBase64 of any bytes is
//    accepted and decodes to them.
//  - DecodeSaslPlain / ParseSaslPlainMessage: accepted messages have a
//    non-empty authcid and password and no NUL in any field, and
//    EncodeSaslPlain of the fields decodes back to the same fields.
//  - SaslLogin, fed the input's lines as responses (raw, or base64-encoded
//    when the first byte says so): the challenge follows the steps, done()
//    only with a non-empty user name and password, nothing accepted after.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "protocol/sasl.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern::fuzz {
namespace {

void CheckBase64(absl::string_view input) {
  const absl::StatusOr<std::string> decoded = DecodeBase64Strict(input);
  if (decoded.ok()) {
    POSTERN_FUZZ_CHECK(EncodeBase64(*decoded) == input);
    // Three bytes per four characters, less one per "=".
    const size_t pad = input.size() - std::min(input.find('='), input.size());
    POSTERN_FUZZ_CHECK(pad <= 2);
    POSTERN_FUZZ_CHECK(decoded->size() == input.size() / 4 * 3 - pad);
  } else {
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(decoded.status()));
  }
  const std::string encoded = EncodeBase64(input);
  const absl::StatusOr<std::string> back = DecodeBase64Strict(encoded);
  POSTERN_FUZZ_CHECK(back.ok());
  POSTERN_FUZZ_CHECK(*back == input);
}

void CheckPlainFields(const SaslPlain& p) {
  POSTERN_FUZZ_CHECK(!p.authcid.empty());
  POSTERN_FUZZ_CHECK(!p.password.empty());
  for (const std::string* field : {&p.authzid, &p.authcid, &p.password}) {
    POSTERN_FUZZ_CHECK(field->find('\0') == std::string::npos);
  }
  const absl::StatusOr<SaslPlain> again =
      DecodeSaslPlain(EncodeSaslPlain(p.authzid, p.authcid, p.password));
  POSTERN_FUZZ_CHECK(again.ok());
  POSTERN_FUZZ_CHECK(again->authzid == p.authzid);
  POSTERN_FUZZ_CHECK(again->authcid == p.authcid);
  POSTERN_FUZZ_CHECK(again->password == p.password);
}

void CheckPlain(absl::string_view input) {
  const absl::StatusOr<SaslPlain> from_base64 = DecodeSaslPlain(input);
  if (from_base64.ok()) {
    CheckPlainFields(*from_base64);
  } else {
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(from_base64.status()));
  }
  const absl::StatusOr<SaslPlain> from_message = ParseSaslPlainMessage(input);
  if (from_message.ok()) {
    CheckPlainFields(*from_message);
    // The same message base64-encoded decodes the same way.
    const absl::StatusOr<SaslPlain> encoded = DecodeSaslPlain(EncodeBase64(input));
    POSTERN_FUZZ_CHECK(encoded.ok());
    POSTERN_FUZZ_CHECK(encoded->authcid == from_message->authcid);
  } else {
    POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(from_message.status()));
    POSTERN_FUZZ_CHECK(!DecodeSaslPlain(EncodeBase64(input)).ok());
  }
}

void CheckLogin(absl::string_view input, bool encode) {
  SaslLogin login;
  POSTERN_FUZZ_CHECK(login.challenge() == SaslLogin::kUsernameChallenge);
  int accepted = 0;
  for (absl::string_view piece : absl::StrSplit(input, '\n')) {
    const std::string response = encode ? EncodeBase64(piece) : std::string(piece);
    const bool was_done = login.done();
    const absl::Status s = login.Step(response);
    if (was_done) {
      POSTERN_FUZZ_CHECK(absl::IsFailedPrecondition(s));
      continue;
    }
    if (!s.ok()) {
      POSTERN_FUZZ_CHECK(absl::IsInvalidArgument(s));
      continue;
    }
    ++accepted;
    const absl::StatusOr<std::string> value = DecodeBase64Strict(response);
    POSTERN_FUZZ_CHECK(value.ok() && !value->empty());
    POSTERN_FUZZ_CHECK(value->find('\0') == std::string::npos);
    POSTERN_FUZZ_CHECK(*value == (accepted == 1 ? login.username() : login.password()));
  }
  POSTERN_FUZZ_CHECK(login.done() == (accepted == 2));
  POSTERN_FUZZ_CHECK(login.challenge() == (accepted == 0 ? SaslLogin::kUsernameChallenge
                                                         : SaslLogin::kPasswordChallenge));
  if (login.done()) {
    POSTERN_FUZZ_CHECK(!login.username().empty() && !login.password().empty());
  }
}

}  // namespace
}  // namespace postern::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  postern::fuzz::CheckBase64(input);
  postern::fuzz::CheckPlain(input);
  postern::fuzz::CheckLogin(input, /*encode=*/!input.empty() && (data[0] & 1) != 0);
  return 0;
}
