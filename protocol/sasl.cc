#include "protocol/sasl.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace postern {
namespace {

// Value of a base64 alphabet character (RFC 4648 section 4, table 1), or -1.
int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

absl::StatusOr<std::string> DecodeBase64Strict(absl::string_view base64) {
  if (base64.size() % 4 != 0) return absl::InvalidArgumentError("Invalid base64 length");
  size_t pad = 0;
  if (!base64.empty() && base64.back() == '=') {
    pad = base64[base64.size() - 2] == '=' ? 2 : 1;
  }
  const size_t data = base64.size() - pad;
  for (size_t i = 0; i < data; ++i) {
    if (Base64Value(base64[i]) < 0) return absl::InvalidArgumentError("Invalid base64 character");
  }
  // RFC 4648 section 3.5: the bits after the last whole byte must be zero.
  if (pad == 1 && (Base64Value(base64[data - 1]) & 0x3) != 0) {
    return absl::InvalidArgumentError("Non-canonical base64");
  }
  if (pad == 2 && (Base64Value(base64[data - 1]) & 0xf) != 0) {
    return absl::InvalidArgumentError("Non-canonical base64");
  }
  std::string out;
  if (!absl::Base64Unescape(base64, &out)) return absl::InvalidArgumentError("Invalid base64");
  return out;
}

std::string EncodeBase64(absl::string_view bytes) { return absl::Base64Escape(bytes); }

absl::StatusOr<SaslPlain> ParseSaslPlainMessage(absl::string_view message) {
  // message = [authzid] UTF8NUL authcid UTF8NUL passwd (RFC 4616 section 2)
  const size_t nul1 = message.find('\0');
  if (nul1 == absl::string_view::npos) return absl::InvalidArgumentError("PLAIN: missing NUL");
  const size_t nul2 = message.find('\0', nul1 + 1);
  if (nul2 == absl::string_view::npos) return absl::InvalidArgumentError("PLAIN: missing NUL");
  if (message.find('\0', nul2 + 1) != absl::string_view::npos) {
    return absl::InvalidArgumentError("PLAIN: NUL in password");
  }
  SaslPlain plain;
  plain.authzid = std::string(message.substr(0, nul1));
  plain.authcid = std::string(message.substr(nul1 + 1, nul2 - nul1 - 1));
  plain.password = std::string(message.substr(nul2 + 1));
  if (plain.authcid.empty()) return absl::InvalidArgumentError("PLAIN: empty user name");
  if (plain.password.empty()) return absl::InvalidArgumentError("PLAIN: empty password");
  return plain;
}

absl::StatusOr<SaslPlain> DecodeSaslPlain(absl::string_view base64) {
  absl::StatusOr<std::string> message = DecodeBase64Strict(base64);
  if (!message.ok()) return message.status();
  return ParseSaslPlainMessage(*message);
}

std::string EncodeSaslPlain(absl::string_view authzid, absl::string_view authcid,
                            absl::string_view password) {
  return EncodeBase64(absl::StrCat(authzid, absl::string_view("\0", 1), authcid,
                                   absl::string_view("\0", 1), password));
}

namespace {

constexpr char kKvSep = '\x01';

bool HasControl(absl::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

// RFC 7628 section 3.1: auth-value = "Bearer" 1*SP b64token, the scheme
// matched without regard to case (RFC 6750 section 2.1).
absl::StatusOr<std::string> BearerToken(absl::string_view value) {
  constexpr absl::string_view kBearer = "bearer ";
  if (value.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer)) {
    return absl::InvalidArgumentError("OAuth: auth is not a Bearer token");
  }
  absl::string_view token = value.substr(kBearer.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (token.empty() || HasControl(token) || token.find(' ') != absl::string_view::npos) {
    return absl::InvalidArgumentError("OAuth: bad token");
  }
  return std::string(token);
}

}  // namespace

absl::StatusOr<SaslOAuth> ParseXoauth2(absl::string_view message) {
  // user=<user>^Aauth=Bearer <token>^A^A
  if (!absl::ConsumePrefix(&message, "user=")) {
    return absl::InvalidArgumentError("XOAUTH2: missing user=");
  }
  const size_t sep = message.find(kKvSep);
  if (sep == absl::string_view::npos) return absl::InvalidArgumentError("XOAUTH2: bad format");
  SaslOAuth out;
  out.user = std::string(message.substr(0, sep));
  message.remove_prefix(sep + 1);
  if (!absl::ConsumePrefix(&message, "auth=") || !absl::ConsumeSuffix(&message, "\x01\x01")) {
    return absl::InvalidArgumentError("XOAUTH2: bad format");
  }
  if (out.user.empty() || HasControl(out.user)) {
    return absl::InvalidArgumentError("XOAUTH2: bad user");
  }
  absl::StatusOr<std::string> token = BearerToken(message);
  if (!token.ok()) return token.status();
  out.token = *std::move(token);
  return out;
}

absl::StatusOr<SaslOAuth> ParseOauthbearer(absl::string_view message) {
  // gs2-header = gs2-cb-flag "," [gs2-authzid] "," ; RFC 5801 section 4
  const size_t c1 = message.find(',');
  if (c1 == absl::string_view::npos) return absl::InvalidArgumentError("OAUTHBEARER: bad header");
  const absl::string_view flag = message.substr(0, c1);
  if (flag != "n" && flag != "y") {
    // "p=...": channel binding, which a proxy that terminates TLS cannot
    // honour (DIGEST e.26).
    return absl::InvalidArgumentError("OAUTHBEARER: channel binding not supported");
  }
  message.remove_prefix(c1 + 1);
  const size_t c2 = message.find(',');
  if (c2 == absl::string_view::npos) return absl::InvalidArgumentError("OAUTHBEARER: bad header");
  absl::string_view authzid = message.substr(0, c2);
  message.remove_prefix(c2 + 1);
  SaslOAuth out;
  if (absl::ConsumePrefix(&authzid, "a=")) {
    // saslname: "," and "=" written =2C and =3D (RFC 5801 section 4).
    for (size_t i = 0; i < authzid.size(); ++i) {
      if (authzid[i] != '=') {
        out.user.push_back(authzid[i]);
        continue;
      }
      const absl::string_view esc = authzid.substr(i, 3);
      if (esc == "=2C") {
        out.user.push_back(',');
      } else if (esc == "=3D") {
        out.user.push_back('=');
      } else {
        return absl::InvalidArgumentError("OAUTHBEARER: bad authzid escape");
      }
      i += 2;
    }
  } else if (!authzid.empty()) {
    return absl::InvalidArgumentError("OAUTHBEARER: bad header");
  }
  if (out.user.empty() || HasControl(out.user)) {
    return absl::InvalidArgumentError("OAUTHBEARER: a user (a=) is required");
  }
  // kvsep *kvpair kvsep
  if (!absl::ConsumePrefix(&message, "\x01") || !absl::ConsumeSuffix(&message, "\x01")) {
    return absl::InvalidArgumentError("OAUTHBEARER: bad format");
  }
  bool have_auth = false;
  while (!message.empty()) {
    const size_t end = message.find(kKvSep);
    if (end == absl::string_view::npos)
      return absl::InvalidArgumentError("OAUTHBEARER: bad format");
    absl::string_view kv = message.substr(0, end);
    message.remove_prefix(end + 1);
    if (absl::ConsumePrefix(&kv, "auth=")) {
      if (have_auth) return absl::InvalidArgumentError("OAUTHBEARER: two auth values");
      absl::StatusOr<std::string> token = BearerToken(kv);
      if (!token.ok()) return token.status();
      out.token = *std::move(token);
      have_auth = true;
    }
    // host=, port= and extensions are not used.
  }
  if (!have_auth) return absl::InvalidArgumentError("OAUTHBEARER: no auth value");
  return out;
}

std::string EncodeXoauth2(absl::string_view user, absl::string_view token) {
  return EncodeBase64(absl::StrCat("user=", user,
                                   "\x01"
                                   "auth=Bearer ",
                                   token, "\x01\x01"));
}

std::string EncodeOauthbearer(absl::string_view user, absl::string_view token) {
  std::string name;
  for (char c : user) {
    if (c == ',') {
      name += "=2C";
    } else if (c == '=') {
      name += "=3D";
    } else {
      name.push_back(c);
    }
  }
  return EncodeBase64(absl::StrCat("n,a=", name,
                                   ",\x01"
                                   "auth=Bearer ",
                                   token, "\x01\x01"));
}

absl::Status SaslLogin::Step(absl::string_view base64) {
  if (done_) return absl::FailedPreconditionError("LOGIN: exchange already complete");
  absl::StatusOr<std::string> value = DecodeBase64Strict(base64);
  if (!value.ok()) return value.status();
  if (value->find('\0') != std::string::npos) return absl::InvalidArgumentError("LOGIN: NUL");
  if (value->empty()) {
    return absl::InvalidArgumentError(username_done_ ? "LOGIN: empty password"
                                                     : "LOGIN: empty user name");
  }
  if (!username_done_) {
    username_ = *std::move(value);
    username_done_ = true;
  } else {
    password_ = *std::move(value);
    done_ = true;
  }
  return absl::OkStatus();
}

}  // namespace postern
