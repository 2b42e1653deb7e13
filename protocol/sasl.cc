#include "protocol/sasl.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

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
