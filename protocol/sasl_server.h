#pragma once

// The server side of one SASL exchange before login (IMAP AUTHENTICATE,
// RFC 9051 section 6.2.2 and RFC 4959; POP3 AUTH, RFC 5034 section 4): the
// mechanisms Postern takes itself, turning what the client sends into
// Credentials. Framing (reading response lines, writing "+ " challenges)
// belongs to the caller.

#include <string>

#include "absl/strings/string_view.h"
#include "protocol/front.h"
#include "protocol/sasl.h"

namespace postern {

class SaslServer {
 public:
  enum class Result {
    kChallenge,  // send "+ " challenge() and read one more response line
    kDone,       // credentials() holds the login
    kBad,        // bad data (error() says what): BAD / -ERR, the exchange is over
    kCanceled,   // the client sent "*": BAD / -ERR, the exchange is over
  };

  // PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER in any case; false otherwise.
  static bool ParseMechanism(absl::string_view name, Credentials::Mechanism* out);
  // The SASL name (IMAP LOGIN and POP3 USER/PASS count as PLAIN).
  static absl::string_view MechanismName(Credentials::Mechanism m);

  explicit SaslServer(Credentials::Mechanism mechanism) { credentials_.mechanism = mechanism; }

  // Begins the exchange. `has_initial` when the client sent an initial
  // response (SASL-IR, RFC 4959 section 3; RFC 5034 section 4); "=" stands
  // for an empty one.
  Result Start(bool has_initial, absl::string_view initial);
  // One response line from the client (without CR LF).
  Result Step(absl::string_view line);

  // Base64 challenge for kChallenge ("" for PLAIN's empty challenge).
  absl::string_view challenge() const { return challenge_; }
  const std::string& error() const { return error_; }
  Credentials& credentials() { return credentials_; }

 private:
  Result Respond(absl::string_view base64);
  Result Bad(absl::string_view why) {
    error_ = std::string(why);
    return Result::kBad;
  }

  Credentials credentials_;
  SaslLogin login_;
  absl::string_view challenge_;
  std::string error_;
};

}  // namespace postern
