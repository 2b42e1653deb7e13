#include "routing/password_scheme.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "protocol/sasl.h"

namespace postern {
namespace {

enum class Family { kCrypt, kBlfCrypt, kArgon2, kSsha256, kSsha512, kSha256, kSha512, kPlain };
enum class Encoding { kRaw, kBase64, kHex };

struct Scheme {
  absl::string_view name;  // Dovecot's spelling
  Family family;
};

constexpr Scheme kSchemes[] = {
    {"SHA512-CRYPT", Family::kCrypt}, {"SHA256-CRYPT", Family::kCrypt},
    {"MD5-CRYPT", Family::kCrypt},    {"DES-CRYPT", Family::kCrypt},
    {"CRYPT", Family::kCrypt},        {"BLF-CRYPT", Family::kBlfCrypt},
    {"ARGON2I", Family::kArgon2},     {"ARGON2ID", Family::kArgon2},
    {"SSHA256", Family::kSsha256},    {"SSHA512", Family::kSsha512},
    {"SHA256", Family::kSha256},      {"SHA512", Family::kSha512},
    {"PLAIN", Family::kPlain},        {"CLEAR", Family::kPlain},
    {"CLEARTEXT", Family::kPlain},
};

// Dovecot 2.3's other schemes (`doveadm pw -l`): named in errors, since a
// name from this list cannot be a password typed where a scheme belongs.
constexpr absl::string_view kUnsupportedSchemes[] = {
    "MD5",      "SHA",        "SHA1",      "SMD5",      "SSHA",        "PLAIN-TRUNC",   "CRAM-MD5",
    "HMAC-MD5", "DIGEST-MD5", "PLAIN-MD4", "PLAIN-MD5", "LDAP-MD5",    "LANMAN",        "NTLM",
    "OTP",      "SKEY",       "RPA",       "PBKDF2",    "SCRAM-SHA-1", "SCRAM-SHA-256",
};

constexpr const Scheme& kCryptScheme = kSchemes[4];
constexpr const Scheme& kMd5CryptScheme = kSchemes[2];
static_assert(kCryptScheme.name == "CRYPT" && kMd5CryptScheme.name == "MD5-CRYPT");

bool IsSlow(Family f) {
  return f == Family::kCrypt || f == Family::kBlfCrypt || f == Family::kArgon2;
}

absl::Status Malformed(const Scheme& s, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(s.name, ": ", what));
}

// The scheme, the encoding and the (still encoded) data of a stored field.
struct Field {
  const Scheme* scheme = nullptr;
  Encoding encoding = Encoding::kRaw;
  bool explicit_encoding = false;
  absl::string_view data;
};

absl::StatusOr<Field> SplitField(absl::string_view stored) {
  if (stored.empty()) return absl::InvalidArgumentError("empty password field");
  Field f;
  if (absl::StartsWith(stored, "$1$")) {
    // Dovecot: `$1$<salt>$<hash>[$<ignored>]` without braces is MD5-CRYPT.
    const size_t salt_end = stored.find('$', 3);
    if (salt_end != absl::string_view::npos) {
      f.scheme = &kMd5CryptScheme;
      f.data = stored.substr(0, stored.find('$', salt_end + 1));
      return f;
    }
  }
  if (stored.front() != '{') {
    f.scheme = &kCryptScheme;  // the passwd-file default
    f.data = stored;
    return f;
  }
  const size_t close = stored.find('}');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("'{' without '}' around the password scheme");
  }
  absl::string_view name = stored.substr(1, close - 1);
  absl::string_view suffix;
  const size_t dot = name.find('.');
  if (dot != absl::string_view::npos) {
    suffix = name.substr(dot + 1);
    name = name.substr(0, dot);
  }
  for (const Scheme& s : kSchemes) {
    if (absl::EqualsIgnoreCase(name, s.name)) f.scheme = &s;
  }
  if (f.scheme == nullptr) {
    for (absl::string_view known : kUnsupportedSchemes) {
      if (absl::EqualsIgnoreCase(name, known)) {
        return absl::InvalidArgumentError(
            absl::StrCat("password scheme ", known, " is not supported"));
      }
    }
    return absl::InvalidArgumentError("unknown password scheme");
  }
  if (dot != absl::string_view::npos) {
    f.explicit_encoding = true;
    if (absl::EqualsIgnoreCase(suffix, "b64") || absl::EqualsIgnoreCase(suffix, "base64")) {
      f.encoding = Encoding::kBase64;
    } else if (absl::EqualsIgnoreCase(suffix, "hex")) {
      f.encoding = Encoding::kHex;
    } else {
      return Malformed(*f.scheme, "unknown encoding suffix (expected .b64, .base64 or .hex)");
    }
  } else {
    const Family fam = f.scheme->family;
    const bool digest = fam == Family::kSsha256 || fam == Family::kSsha512 ||
                        fam == Family::kSha256 || fam == Family::kSha512;
    f.encoding = digest ? Encoding::kBase64 : Encoding::kRaw;
  }
  f.data = stored.substr(close + 1);
  if (f.data.empty()) return Malformed(*f.scheme, "nothing after the scheme");
  return f;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> DecodeHex(absl::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

size_t DigestSize(Family f) {
  switch (f) {
    case Family::kSha256:
    case Family::kSsha256:
      return SHA256_DIGEST_LENGTH;
    case Family::kSha512:
    case Family::kSsha512:
      return SHA512_DIGEST_LENGTH;
    default:
      return 0;
  }
}

// The raw bytes behind the field's data, decoded as its encoding says.
absl::StatusOr<std::string> DecodeData(const Field& f) {
  const size_t digest_size = DigestSize(f.scheme->family);
  const bool fixed_size =
      f.scheme->family == Family::kSha256 || f.scheme->family == Family::kSha512;
  if (!f.explicit_encoding && fixed_size && f.data.size() == 2 * digest_size) {
    // Dovecot guesses hex from the length of an unsalted digest, and falls
    // back to base64 when the guess does not decode.
    if (std::optional<std::string> raw = DecodeHex(f.data)) return *std::move(raw);
  }
  switch (f.encoding) {
    case Encoding::kRaw:
      return std::string(f.data);
    case Encoding::kHex: {
      std::optional<std::string> raw = DecodeHex(f.data);
      if (!raw) return Malformed(*f.scheme, "not valid hex");
      return *std::move(raw);
    }
    case Encoding::kBase64: {
      absl::StatusOr<std::string> raw = DecodeBase64Strict(f.data);
      if (!raw.ok()) return Malformed(*f.scheme, "not valid base64");
      return raw;
    }
  }
  return Malformed(*f.scheme, "unknown encoding");
}

bool IsCrypt64(char c) {
  return c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z');
}

bool AllCrypt64(absl::string_view s) {
  for (char c : s) {
    if (!IsCrypt64(c)) return false;
  }
  return true;
}

// A decimal number without sign or leading zeros that fits in 32 bits.
std::optional<uint32_t> ParseDecimal(absl::string_view s) {
  if (s.empty() || s.size() > 10 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(v);
}

absl::Status CheckBcrypt(const Scheme& s, absl::string_view h, const PasswordCostLimits& limits) {
  // $2y$NN$ + 22 characters of salt + 31 of hash (the Openwall format).
  if (h.size() != 60 || (h[2] != 'a' && h[2] != 'b' && h[2] != 'y') || h[3] != '$' || h[6] != '$' ||
      !AllCrypt64(h.substr(7))) {
    return Malformed(s, "not a well-formed $2a$/$2b$/$2y$ hash");
  }
  const bool digits = h[4] >= '0' && h[4] <= '9' && h[5] >= '0' && h[5] <= '9';
  const uint32_t c = digits ? static_cast<uint32_t>((h[4] - '0') * 10 + (h[5] - '0')) : 0;
  if (c < 4 || c > 31) return Malformed(s, "bcrypt cost outside 04..31");
  if (c > limits.max_bcrypt_cost) {
    return absl::ResourceExhaustedError(
        absl::StrCat(s.name, ": bcrypt cost ", c, " above the limit ", limits.max_bcrypt_cost));
  }
  return absl::OkStatus();
}

absl::Status CheckShaCrypt(const Scheme& s, absl::string_view h, size_t hash_chars,
                           const PasswordCostLimits& limits) {
  absl::string_view rest = h.substr(3);
  if (absl::StartsWith(rest, "rounds=")) {
    rest.remove_prefix(7);
    const size_t end = rest.find('$');
    if (end == absl::string_view::npos) return Malformed(s, "rounds= without '$'");
    const std::optional<uint32_t> rounds = ParseDecimal(rest.substr(0, end));
    // libxcrypt clamps rounds to 1000..999999999 and writes the clamped
    // value, so a hash with any other value could never match.
    if (!rounds || *rounds < 1000 || *rounds > 999'999'999) {
      return Malformed(s, "rounds= is not a number in 1000..999999999");
    }
    if (*rounds > limits.max_sha_crypt_rounds) {
      return absl::ResourceExhaustedError(absl::StrCat(
          s.name, ": rounds=", *rounds, " above the limit ", limits.max_sha_crypt_rounds));
    }
    rest.remove_prefix(end + 1);
  }
  const size_t salt_end = rest.find('$');
  if (salt_end == absl::string_view::npos) return Malformed(s, "no '$' after the salt");
  // At most 16 salt characters count (crypt writes no more back).
  if (salt_end > 16) return Malformed(s, "salt longer than 16 characters");
  for (char c : rest.substr(0, salt_end)) {
    if (c <= ' ' || c >= 0x7f || c == ':' || c == ';' || c == '*' || c == '!' || c == '\\') {
      return Malformed(s, "bad character in the salt");
    }
  }
  const absl::string_view hash = rest.substr(salt_end + 1);
  if (hash.size() != hash_chars || !AllCrypt64(hash)) {
    return Malformed(s, absl::StrCat("the hash is not ", hash_chars, " characters of ./0-9A-Za-z"));
  }
  return absl::OkStatus();
}

absl::Status CheckMd5Crypt(const Scheme& s, absl::string_view h) {
  absl::string_view rest = h.substr(3);
  const size_t salt_end = rest.find('$');
  if (salt_end == absl::string_view::npos) return Malformed(s, "no '$' after the salt");
  if (salt_end > 8) return Malformed(s, "salt longer than 8 characters");
  for (char c : rest.substr(0, salt_end)) {
    if (c <= ' ' || c >= 0x7f || c == ':') return Malformed(s, "bad character in the salt");
  }
  const absl::string_view hash = rest.substr(salt_end + 1);
  if (hash.size() != 22 || !AllCrypt64(hash)) {
    return Malformed(s, "the hash is not 22 characters of ./0-9A-Za-z");
  }
  return absl::OkStatus();
}

// What crypt_r will be given: one of the methods whose cost is bounded here,
// well-formed enough that some password could match it.
absl::Status CheckCrypt(const Scheme& s, absl::string_view h, const PasswordCostLimits& limits) {
  if (h.find('\0') != absl::string_view::npos) return Malformed(s, "NUL byte in the hash");
  absl::Status st;
  if (absl::StartsWith(h, "$2")) {
    st = CheckBcrypt(s, h, limits);
  } else if (s.family == Family::kBlfCrypt) {
    return Malformed(s, "not a bcrypt hash ($2a$, $2b$ or $2y$)");
  } else if (absl::StartsWith(h, "$6$")) {
    st = CheckShaCrypt(s, h, 86, limits);
  } else if (absl::StartsWith(h, "$5$")) {
    st = CheckShaCrypt(s, h, 43, limits);
  } else if (absl::StartsWith(h, "$1$")) {
    st = CheckMd5Crypt(s, h);
  } else if (h.size() == 13 && AllCrypt64(h)) {
    st = absl::OkStatus();  // traditional DES: 2 characters of salt, 11 of hash
  } else if (h[0] == '$') {
    return Malformed(s, "crypt method not supported (use $1$, $2a$/$2b$/$2y$, $5$ or $6$)");
  } else {
    return Malformed(s, "not a crypt hash");
  }
  if (!st.ok()) return st;
  const std::string setting(h);
  const int check = crypt_checksalt(setting.c_str());
  if (check != CRYPT_SALT_OK && check != CRYPT_SALT_METHOD_LEGACY) {
    return Malformed(s, "libcrypt does not accept the hash's settings");
  }
  return absl::OkStatus();
}

bool IsBase64NoPad(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  return c == '+' ? 62 : 63;
}

// The decoded size of unpadded base64 as libargon2 reads it (the unused low
// bits of the last character must be zero), or nullopt.
std::optional<size_t> UnpaddedBase64Size(absl::string_view s) {
  for (char c : s) {
    if (!IsBase64NoPad(c)) return std::nullopt;
  }
  switch (s.size() % 4) {
    case 1:
      return std::nullopt;
    case 2:
      if ((Base64Value(s.back()) & 0xf) != 0) return std::nullopt;
      break;
    case 3:
      if ((Base64Value(s.back()) & 0x3) != 0) return std::nullopt;
      break;
    default:
      break;
  }
  return s.size() * 3 / 4;
}

constexpr size_t kMinArgon2HashBytes = 16;  // crypto_pwhash_BYTES_MIN

struct Argon2Params {
  argon2_type type = Argon2_i;
  uint32_t memory_kib = 0;
  uint32_t passes = 0;
  uint32_t lanes = 0;
};

// Takes `prefix` followed by a decimal number and `sep` off the front of `s`.
std::optional<uint32_t> TakeNumber(absl::string_view& s, absl::string_view prefix, char sep) {
  if (!absl::ConsumePrefix(&s, prefix)) return std::nullopt;
  const size_t end = s.find(sep);
  if (end == absl::string_view::npos) return std::nullopt;
  std::optional<uint32_t> v = ParseDecimal(s.substr(0, end));
  s.remove_prefix(end + 1);
  return v;
}

// `$argon2i$v=19$m=65536,t=3,p=1$<salt>$<hash>` (the PHC string libsodium
// and libargon2 write), checked before libargon2 allocates m KiB.
absl::StatusOr<Argon2Params> CheckArgon2(const Scheme& s, absl::string_view h,
                                         const PasswordCostLimits& limits) {
  Argon2Params p;
  absl::string_view rest = h;
  if (absl::ConsumePrefix(&rest, "$argon2id$")) {
    p.type = Argon2_id;
  } else if (absl::ConsumePrefix(&rest, "$argon2i$")) {
    p.type = Argon2_i;
  } else {
    return Malformed(s, "not an $argon2i$ or $argon2id$ hash");
  }
  // libsodium, behind Dovecot, knows version 1.3 only (libargon2 also
  // takes v=16, or no v= at all).
  const std::optional<uint32_t> v = TakeNumber(rest, "v=", '$');
  if (!v || *v != ARGON2_VERSION_13) return Malformed(s, "version is not v=19");
  const std::optional<uint32_t> m = TakeNumber(rest, "m=", ',');
  const std::optional<uint32_t> t = m ? TakeNumber(rest, "t=", ',') : std::nullopt;
  const std::optional<uint32_t> l = t ? TakeNumber(rest, "p=", '$') : std::nullopt;
  if (!m || !t || !l) return Malformed(s, "parameters are not m=<KiB>,t=<passes>,p=<lanes>");
  p.memory_kib = *m;
  p.passes = *t;
  p.lanes = *l;
  if (p.passes < ARGON2_MIN_TIME || p.lanes < ARGON2_MIN_LANES || p.lanes > ARGON2_MAX_LANES ||
      p.memory_kib < 8 * p.lanes) {
    return Malformed(s, "t= below 1, p= outside 1..2^24-1, or m= below 8 KiB per lane");
  }
  if (p.memory_kib > limits.max_argon2_memory_kib ||
      uint64_t{p.memory_kib} * p.passes > limits.max_argon2_work ||
      p.lanes > limits.max_argon2_lanes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(s.name, ": m=", p.memory_kib, ",t=", p.passes, ",p=", p.lanes,
                     " above the limits (m <= ", limits.max_argon2_memory_kib,
                     ", m*t <= ", limits.max_argon2_work, ", p <= ", limits.max_argon2_lanes, ")"));
  }
  const size_t salt_end = rest.find('$');
  if (salt_end == absl::string_view::npos) return Malformed(s, "no '$' between salt and hash");
  const std::optional<size_t> salt = UnpaddedBase64Size(rest.substr(0, salt_end));
  const std::optional<size_t> hash = UnpaddedBase64Size(rest.substr(salt_end + 1));
  if (!salt || !hash) return Malformed(s, "salt or hash is not unpadded base64");
  // libargon2 takes a 4-byte hash; libsodium, behind Dovecot, wants 16.
  if (*salt < ARGON2_MIN_SALT_LENGTH || *hash < kMinArgon2HashBytes) {
    return Malformed(s, "salt shorter than 8 bytes or hash shorter than 16");
  }
  return p;
}

// The stored field split, decoded and checked: everything but the hashing.
struct Checked {
  const Scheme* scheme = nullptr;
  std::string raw;  // decoded data
  Argon2Params argon2;
};

absl::StatusOr<Checked> CheckField(absl::string_view stored, const PasswordCostLimits& limits) {
  absl::StatusOr<Field> f = SplitField(stored);
  if (!f.ok()) return f.status();
  absl::StatusOr<std::string> raw = DecodeData(*f);
  if (!raw.ok()) return raw.status();
  Checked c;
  c.scheme = f->scheme;
  c.raw = *std::move(raw);
  const Scheme& s = *c.scheme;
  if (c.raw.empty()) return Malformed(s, "nothing after the scheme");
  const size_t digest = DigestSize(s.family);
  switch (s.family) {
    case Family::kCrypt:
    case Family::kBlfCrypt: {
      absl::Status st = CheckCrypt(s, c.raw, limits);
      if (!st.ok()) return st;
      break;
    }
    case Family::kArgon2: {
      if (c.raw.find('\0') != std::string::npos) return Malformed(s, "NUL byte in the hash");
      absl::StatusOr<Argon2Params> p = CheckArgon2(s, c.raw, limits);
      if (!p.ok()) return p.status();
      c.argon2 = *p;
      break;
    }
    case Family::kSha256:
    case Family::kSha512:
      if (c.raw.size() != digest) {
        return Malformed(s, absl::StrCat(c.raw.size(), " bytes instead of ", digest));
      }
      break;
    case Family::kSsha256:
    case Family::kSsha512:
      if (c.raw.size() <= digest) {
        return Malformed(s, absl::StrCat("too short for a ", digest, "-byte digest and a salt"));
      }
      break;
    case Family::kPlain:
      break;
  }
  return c;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<bool> VerifyCrypt(const Checked& c, absl::string_view password) {
  const std::string phrase(password);  // no NUL inside: checked by the caller
  // libxcrypt's scratch space is 32 KiB: on the heap, zeroed as crypt_r wants.
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_r(phrase.c_str(), c.raw.c_str(), data.get());
  bool match = false;
  const bool failed = out == nullptr || out[0] == '*';
  if (!failed) match = ConstantTimeEquals(out, c.raw);
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  if (failed) return absl::InternalError(absl::StrCat(c.scheme->name, ": crypt_r failed"));
  return match;
}

absl::StatusOr<bool> VerifyArgon2(const Checked& c, absl::string_view password) {
  const int rc = argon2_verify(c.raw.c_str(), password.data(), password.size(), c.argon2.type);
  if (rc == ARGON2_OK) return true;
  if (rc == ARGON2_VERIFY_MISMATCH) return false;
  if (rc == ARGON2_MEMORY_ALLOCATION_ERROR || rc == ARGON2_THREAD_FAIL) {
    return absl::InternalError(absl::StrCat(c.scheme->name, ": ", argon2_error_message(rc)));
  }
  return Malformed(*c.scheme, absl::StrCat("libargon2: ", argon2_error_message(rc)));
}

bool VerifyDigest(const Checked& c, absl::string_view password) {
  const bool sha256 = c.scheme->family == Family::kSha256 || c.scheme->family == Family::kSsha256;
  const size_t size = sha256 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  const absl::string_view raw = c.raw;
  const absl::string_view salt = raw.substr(size);  // empty for SHA256/SHA512
  uint8_t digest[SHA512_DIGEST_LENGTH];
  if (sha256) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, password.data(), password.size());
    SHA256_Update(&ctx, salt.data(), salt.size());
    SHA256_Final(digest, &ctx);
  } else {
    SHA512_CTX ctx;
    SHA512_Init(&ctx);
    SHA512_Update(&ctx, password.data(), password.size());
    SHA512_Update(&ctx, salt.data(), salt.size());
    SHA512_Final(digest, &ctx);
  }
  const bool match = CRYPTO_memcmp(digest, raw.data(), size) == 0;
  OPENSSL_cleanse(digest, sizeof(digest));
  return match;
}

}  // namespace

absl::StatusOr<bool> VerifyPassword(absl::string_view password, absl::string_view stored,
                                    const PasswordCostLimits& limits) {
  absl::StatusOr<Checked> c = CheckField(stored, limits);
  if (!c.ok()) return c.status();
  // Neither can be a password Dovecot would check as given.
  if (password.empty() || password.find('\0') != absl::string_view::npos) return false;
  switch (c->scheme->family) {
    case Family::kCrypt:
    case Family::kBlfCrypt:
      return VerifyCrypt(*c, password);
    case Family::kArgon2:
      return VerifyArgon2(*c, password);
    case Family::kSha256:
    case Family::kSha512:
    case Family::kSsha256:
    case Family::kSsha512:
      return VerifyDigest(*c, password);
    case Family::kPlain:
      return ConstantTimeEquals(password, c->raw);
  }
  return absl::InternalError("unreachable password scheme family");
}

bool IsSlowScheme(absl::string_view stored) {
  absl::StatusOr<Field> f = SplitField(stored);
  return f.ok() && IsSlow(f->scheme->family);
}

absl::Status ValidatePasswordField(absl::string_view stored, const PasswordCostLimits& limits) {
  return CheckField(stored, limits).status();
}

}  // namespace postern
