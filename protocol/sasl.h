#pragma once

// SASL pieces the proxy needs before login: strict base64 (RFC 4648), the
// PLAIN mechanism (RFC 4616) and the LOGIN mechanism
// (draft-murchison-sasl-login: two challenges, "Username:" and "Password:").
//
// The empty initial response is written "=" on the wire (IMAP SASL-IR,
// RFC 4959 section 3 and RFC 9051 section 6.2.2; POP3, RFC 5034 section 4).
// That is protocol framing, not base64: callers turn a lone "=" initial
// response into "" before decoding, and must not do so for later response
// lines. A response line "*" cancels the exchange (RFC 9051 section 6.2.2,
// RFC 5034 section 4): also the caller's business.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace postern {

// RFC 4648 section 4 base64, strictly: length a multiple of 4, alphabet
// A-Z a-z 0-9 + / only (no whitespace, no line breaks), "=" only as one or
// two final padding characters, padding required, and the unused bits before
// the padding zero (section 3.5), so that every input has one encoding.
// RFC 5034 section 4 and RFC 9051 section 6.2.2 require rejecting anything
// else. "" decodes to "". Errors are INVALID_ARGUMENT.
absl::StatusOr<std::string> DecodeBase64Strict(absl::string_view base64);
std::string EncodeBase64(absl::string_view bytes);

struct SaslPlain {
  std::string authzid;  // empty: act as authcid (RFC 4616 section 2)
  std::string authcid;
  std::string password;
};

// Decodes a PLAIN response: base64 of `[authzid] NUL authcid NUL passwd`
// (RFC 4616 section 2). Rejects bad base64, a missing NUL, a NUL inside a
// field, an empty authcid and an empty password (both are 1*SAFE). UTF-8 is
// not enforced: legacy clients send Latin-1 passwords and the password
// check decides. Errors are INVALID_ARGUMENT.
absl::StatusOr<SaslPlain> DecodeSaslPlain(absl::string_view base64);
// The same on the decoded message.
absl::StatusOr<SaslPlain> ParseSaslPlainMessage(absl::string_view message);
// base64 of authzid NUL authcid NUL password (for logging in to a backend,
// e.g. a master user: authzid = the user, authcid = the master).
std::string EncodeSaslPlain(absl::string_view authzid, absl::string_view authcid,
                            absl::string_view password);

// OAuth 2.0 bearer tokens over SASL.
struct SaslOAuth {
  std::string user;   // XOAUTH2 user=, OAUTHBEARER gs2 authzid (a=)
  std::string token;  // the bearer token
};
// XOAUTH2 (Google's): "user=" user ^A "auth=Bearer " token ^A ^A, on the
// decoded message. The user must not be empty.
absl::StatusOr<SaslOAuth> ParseXoauth2(absl::string_view message);
// OAUTHBEARER (RFC 7628 section 3.1): gs2-header ("n" or "y", never
// channel binding "p="; a=authzid with =2C / =3D escapes) ^A
// *(key "=" value ^A) ^A, with auth="Bearer" SP token (the scheme
// case-insensitive, RFC 6750 section 2.1). Postern routes by user name, so
// the authzid (a=) is required.
absl::StatusOr<SaslOAuth> ParseOauthbearer(absl::string_view message);
// The client side (toward a backend): base64 of the messages above.
std::string EncodeXoauth2(absl::string_view user, absl::string_view token);
std::string EncodeOauthbearer(absl::string_view user, absl::string_view token);

// The LOGIN mechanism, server side: send "+ " challenge(), give each client
// response to Step(), until done(). A client may send the user name as the
// initial response; Step() it the same way.
class SaslLogin {
 public:
  static constexpr absl::string_view kUsernameChallenge = "VXNlcm5hbWU6";  // "Username:"
  static constexpr absl::string_view kPasswordChallenge = "UGFzc3dvcmQ6";  // "Password:"

  // The base64 challenge to send before the next response.
  absl::string_view challenge() const {
    return username_done_ ? kPasswordChallenge : kUsernameChallenge;
  }
  // Takes the next base64 response. INVALID_ARGUMENT for bad base64, NUL, an
  // empty user name or password; FAILED_PRECONDITION after done().
  absl::Status Step(absl::string_view base64);
  bool done() const { return done_; }
  const std::string& username() const { return username_; }
  const std::string& password() const { return password_; }

 private:
  bool username_done_ = false;
  bool done_ = false;
  std::string username_;
  std::string password_;
};

}  // namespace postern
