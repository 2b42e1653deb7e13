#include "protocol/sasl_server.h"

#include <utility>

#include "absl/strings/match.h"

namespace postern {

bool SaslServer::ParseMechanism(absl::string_view name, Credentials::Mechanism* out) {
  if (absl::EqualsIgnoreCase(name, "PLAIN")) {
    *out = Credentials::Mechanism::kPlain;
    return true;
  }
  if (absl::EqualsIgnoreCase(name, "LOGIN")) {
    *out = Credentials::Mechanism::kSaslLogin;
    return true;
  }
  if (absl::EqualsIgnoreCase(name, "XOAUTH2")) {
    *out = Credentials::Mechanism::kXoauth2;
    return true;
  }
  if (absl::EqualsIgnoreCase(name, "OAUTHBEARER")) {
    *out = Credentials::Mechanism::kOauthbearer;
    return true;
  }
  return false;
}

absl::string_view SaslServer::MechanismName(Credentials::Mechanism m) {
  switch (m) {
    case Credentials::Mechanism::kLogin:
    case Credentials::Mechanism::kPlain:
      return "PLAIN";
    case Credentials::Mechanism::kSaslLogin:
      return "LOGIN";
    case Credentials::Mechanism::kXoauth2:
      return "XOAUTH2";
    case Credentials::Mechanism::kOauthbearer:
      return "OAUTHBEARER";
  }
  return "PLAIN";
}

SaslServer::Result SaslServer::Start(bool has_initial, absl::string_view initial) {
  if (!has_initial) {
    // PLAIN starts with an empty challenge; LOGIN asks for the user name.
    challenge_ = credentials_.mechanism == Credentials::Mechanism::kSaslLogin
                     ? SaslLogin::kUsernameChallenge
                     : absl::string_view();
    return Result::kChallenge;
  }
  // "=" is an empty initial response (RFC 4959 section 3, RFC 5034 section 4).
  return Respond(initial == "=" ? absl::string_view() : initial);
}

SaslServer::Result SaslServer::Step(absl::string_view line) {
  // RFC 9051 section 6.2.2, RFC 5034 section 4: "*" cancels the exchange.
  if (line == "*") return Result::kCanceled;
  return Respond(line);
}

SaslServer::Result SaslServer::Respond(absl::string_view base64) {
  if (credentials_.oauth()) {
    absl::StatusOr<std::string> message = DecodeBase64Strict(base64);
    if (!message.ok()) return Bad(message.status().message());
    absl::StatusOr<SaslOAuth> o = credentials_.mechanism == Credentials::Mechanism::kXoauth2
                                      ? ParseXoauth2(*message)
                                      : ParseOauthbearer(*message);
    if (!o.ok()) return Bad(o.status().message());
    credentials_.authcid = std::move(o->user);
    credentials_.secret = std::move(o->token);
    return Result::kDone;
  }
  if (credentials_.mechanism == Credentials::Mechanism::kPlain) {
    absl::StatusOr<SaslPlain> p = DecodeSaslPlain(base64);
    if (!p.ok()) return Bad(p.status().message());
    credentials_.authzid = std::move(p->authzid);
    credentials_.authcid = std::move(p->authcid);
    credentials_.secret = std::move(p->password);
    return Result::kDone;
  }
  absl::Status st = login_.Step(base64);
  if (!st.ok()) return Bad(st.message());
  if (!login_.done()) {
    challenge_ = login_.challenge();
    return Result::kChallenge;
  }
  credentials_.authcid = login_.username();
  credentials_.secret = login_.password();
  return Result::kDone;
}

}  // namespace postern
