#pragma once

// Checking a password against a stored Dovecot password field, as Dovecot's
// passdbs store them: `{SCHEME}data` or `{SCHEME.ENCODING}data`, with the
// scheme name case-insensitive. A field without `{...}` is CRYPT (Dovecot's
// passwd-file default), except `$1$salt$hash$ignored`, which Dovecot reads as
// MD5-CRYPT without what follows the hash.
//
// Schemes (Dovecot's names; what checks them):
//   SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT, DES-CRYPT, CRYPT
//       libcrypt's crypt_r (Debian's libxcrypt), each call with its own
//       crypt_data. The method comes from the hash ($6$, $5$, $2a$/$2b$/$2y$,
//       $1$, or 13-character DES), as in Dovecot, where only BLF-CRYPT insists
//       on its own method. Other libxcrypt methods (yescrypt $y$, scrypt $7$,
//       ...) are refused: their cost is not bounded here.
//   ARGON2I, ARGON2ID
//       libargon2's argon2_verify on `$argon2i[d]$v=19$m=..,t=..,p=..$salt$hash`;
//       the variant comes from the hash string, as with Dovecot's libsodium.
//   SSHA256, SSHA512   base64(digest(password + salt) + salt), BoringSSL
//   SHA256, SHA512     base64(digest(password)), BoringSSL; hex is taken
//                      when the length says so, as Dovecot does
//   PLAIN, CLEAR, CLEARTEXT   the password itself
// An encoding suffix .b64, .base64 or .hex (any case) says how the data after
// the braces is written; without one, digests are base64 and the rest raw.
// Base64 is strict RFC 4648 (padding required, no whitespace). Every
// comparison of secret-derived bytes is constant-time (CRYPTO_memcmp, or
// libargon2's own comparison).
//
// Deliberate differences from Dovecot, all failing closed:
//  - a password containing NUL never matches (Dovecot cuts it at the NUL);
//    an empty password never matches;
//  - an empty field, or nothing after `{SCHEME}`, is an error (Dovecot
//    treats it as a mismatch, or for PLAIN as the empty password);
//  - a crypt or argon2 hash that could never match (bad length or alphabet,
//    rounds outside what libxcrypt keeps, leading zeros) is an error, as is a
//    cost above PasswordCostLimits;
//  - base64 with whitespace or non-zero padding bits is an error;
//  - an argon2 hash libsodium would not take (not v=19, a hash shorter than
//    16 bytes, non-zero trailing bits) is an error, though libargon2 could
//    check it (Dovecot calls these a mismatch).
//
// Errors never contain the password, the stored hash or its salt: only the
// scheme's name, when it is one Dovecot knows, and cost parameters.

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace postern {

// Upper bounds on the cost a stored hash may ask for. A hash above them is
// refused (RESOURCE_EXHAUSTED) before any hashing, so that one mistyped
// `rounds=` cannot make every login take minutes on the thread pool. The
// defaults let through everything `doveadm pw` makes with sane `-r` values.
struct PasswordCostLimits {
  uint32_t max_sha_crypt_rounds = 5'000'000;  // $5$/$6$ rounds= (default 5,000)
  uint32_t max_bcrypt_cost = 16;              // $2y$NN$: 2^NN rounds (doveadm: 5)
  uint32_t max_argon2_memory_kib = 1 << 20;   // m= (libsodium's SENSITIVE: 1 GiB)
  uint64_t max_argon2_work = 4u << 20;        // m= times t=, in KiB-passes
  uint32_t max_argon2_lanes = 16;             // p= (libsodium: 1)
};

// OK(true) when `password` matches `stored`, OK(false) when it does not;
// INVALID_ARGUMENT for an unknown or unsupported scheme or a malformed field,
// RESOURCE_EXHAUSTED for a cost above `limits`, INTERNAL when libcrypt or
// libargon2 fail (out of memory). Crypt and argon2 schemes take milliseconds
// to seconds: see IsSlowScheme. Thread-safe.
absl::StatusOr<bool> VerifyPassword(absl::string_view password, absl::string_view stored,
                                    const PasswordCostLimits& limits = {});

// True for the crypt and argon2 families (including a field without
// `{...}`): callers run those on the libuv thread pool. PLAIN and the
// SHA-2 digests (microseconds) run on the loop. False for an unknown
// scheme, which VerifyPassword refuses without hashing.
bool IsSlowScheme(absl::string_view stored);

// Load-time check of a stored field without hashing anything: OK when
// VerifyPassword could accept some password for it, otherwise what is wrong
// (same codes as VerifyPassword, no secret in the message).
absl::Status ValidatePasswordField(absl::string_view stored, const PasswordCostLimits& limits = {});

}  // namespace postern
