#include "routing/password_scheme.h"

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace postern {
namespace {

using namespace std::string_literals;

// One row of testdata/dovecot_password_vectors.tsv (made by
// make_password_vectors.py: Dovecot's own hashes and Dovecot's verdicts).
struct Vector {
  std::string verdict;  // match, mismatch or error
  std::string password;
  std::string stored;
  std::string note;
};

std::vector<Vector> LoadVectors() {
  std::ifstream in(POSTERN_SOURCE_DIR "/tests/routing/testdata/dovecot_password_vectors.tsv");
  std::vector<Vector> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols = absl::StrSplit(line, '\t');
    if (cols.size() != 4) {
      ADD_FAILURE() << "bad vector line: " << line;
      continue;
    }
    out.push_back(Vector{cols[0], absl::HexStringToBytes(cols[1]), cols[2], cols[3]});
  }
  return out;
}

// The scheme label of a stored field: "SSHA256.HEX" -> "SSHA256".
std::string SchemeOf(const std::string& stored) {
  if (stored.empty() || stored[0] != '{') return "CRYPT";
  std::string name = stored.substr(1, stored.find('}') - 1);
  name = name.substr(0, name.find('.'));
  return absl::AsciiStrToUpper(name);
}

// The data after the braces: what an error message must never show.
std::string DataOf(const std::string& stored) {
  const size_t close = stored.find('}');
  return close == std::string::npos ? stored : stored.substr(close + 1);
}

// Rows where Postern answers differently from Dovecot on purpose (both fail
// closed): note -> Postern's verdict.
const std::map<std::string, std::string>& Deviations() {
  static const auto* m = new std::map<std::string, std::string>{
      // The cut leaves non-zero bits after the last byte of the hash:
      // libsodium ignores them (a mismatch), libargon2 refuses to decode
      // ("Decoding failed"), so it is an error here.
      {"hand-made: argon2id hash cut short", "error"},
      {"hand-made: argon2id hash cut short, wrong", "error"},
  };
  return *m;
}

TEST(PasswordSchemeTest, AgreesWithDovecotOnEveryVector) {
  const std::vector<Vector> vectors = LoadVectors();
  ASSERT_GT(vectors.size(), 200u);
  size_t deviations = 0;
  for (const Vector& v : vectors) {
    SCOPED_TRACE(v.note + ": " + v.stored);
    std::string expected = v.verdict;
    auto dev = Deviations().find(v.note);
    if (dev != Deviations().end()) {
      expected = dev->second;
      ++deviations;
    }
    const absl::StatusOr<bool> got = VerifyPassword(v.password, v.stored);
    if (expected == "error") {
      ASSERT_FALSE(got.ok());
      EXPECT_FALSE(ValidatePasswordField(v.stored).ok());
      const std::string message(got.status().message());
      EXPECT_FALSE(absl::StrContains(message, DataOf(v.stored))) << message;
      EXPECT_FALSE(absl::StrContains(message, v.password)) << message;
    } else {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, expected == "match");
      EXPECT_TRUE(ValidatePasswordField(v.stored).ok());
    }
  }
  EXPECT_EQ(deviations, Deviations().size());  // none left over from older vectors
}

TEST(PasswordSchemeTest, VectorsCoverEverySchemeAndEncoding) {
  std::set<std::string> labels;
  for (const Vector& v : LoadVectors()) {
    if (v.stored[0] == '{')
      labels.insert(absl::AsciiStrToUpper(v.stored.substr(1, v.stored.find('}') - 1)));
  }
  for (const char* want :
       {"SHA512-CRYPT", "SHA256-CRYPT",   "BLF-CRYPT", "MD5-CRYPT", "CRYPT",       "DES-CRYPT",
        "ARGON2I",      "ARGON2ID",       "SSHA256",   "SSHA512",   "SSHA256.HEX", "SSHA512.HEX",
        "SSHA256.B64",  "SSHA512.BASE64", "SHA256",    "SHA512",    "SHA256.HEX",  "SHA512.B64",
        "PLAIN",        "CLEAR",          "PLAIN.HEX", "CLEAR.B64", "PLAIN.B64",   "CLEARTEXT"}) {
    EXPECT_TRUE(labels.count(want)) << want;
  }
}

// A test that measures nothing: the crypt and argon2 families must go to the
// thread pool, the digests and PLAIN must not.
TEST(PasswordSchemeTest, SlowSchemesAreFlaggedSlow) {
  const std::set<std::string> slow = {"SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "MD5-CRYPT",
                                      "CRYPT",        "DES-CRYPT",    "ARGON2I",   "ARGON2ID"};
  for (const Vector& v : LoadVectors()) {
    const std::string scheme = SchemeOf(v.stored);
    if (scheme == "FOO") continue;
    EXPECT_EQ(IsSlowScheme(v.stored), slow.count(scheme) == 1) << v.stored;
  }
  // A field without braces is CRYPT.
  EXPECT_TRUE(IsSlowScheme("$6$salt$" + std::string(86, 'a')));
  EXPECT_TRUE(IsSlowScheme("abhWCwoTZY2c6"));
  EXPECT_TRUE(IsSlowScheme("$1$salt$" + std::string(22, 'a') + "$ignored"));
  EXPECT_FALSE(IsSlowScheme("{PLAIN}x"));
  EXPECT_FALSE(IsSlowScheme("{FOO}x"));
  EXPECT_FALSE(IsSlowScheme("{SHA512"));
  EXPECT_FALSE(IsSlowScheme(""));
}

// One password and its Dovecot hashes, for the hand-written cases below.
// (Rows of the vector file, copied so the cases read on their own.)
constexpr char kPw[] = "s3cret";
const std::string kSha512Crypt =
    "$6$dhmO13hGyQcxUcpC$87wFQIzNn9FuhSGX27GBUh/LY.kdFG8CeEpiWXA5NOTnJQoZbphfVrWE/"
    "mVEmTAkt6I1OZ5EcS8o1VTXARXPQ/";
const std::string kMd5Crypt = "$1$$9Tf6VJZsz3W4bG2XPMu3T.";  // empty salt

TEST(PasswordSchemeTest, FieldWithoutBracesIsCrypt) {
  EXPECT_EQ(VerifyPassword(kPw, kSha512Crypt).value_or(false), true);
  EXPECT_EQ(VerifyPassword("s3creT", kSha512Crypt).value_or(true), false);
  EXPECT_EQ(VerifyPassword(kPw, "abhWCwoTZY2c6").value_or(false), true);  // DES
  // Dovecot reads `$1$salt$hash$anything` as MD5-CRYPT without `$anything`.
  EXPECT_EQ(VerifyPassword(kPw, kMd5Crypt).value_or(false), true);
  EXPECT_EQ(VerifyPassword(kPw, kMd5Crypt + "$ignored").value_or(false), true);
  EXPECT_EQ(VerifyPassword(kPw, kMd5Crypt + "$").value_or(false), true);
  // Inside braces nothing is cut.
  EXPECT_FALSE(VerifyPassword(kPw, "{MD5-CRYPT}" + kMd5Crypt + "$ignored").ok());
}

TEST(PasswordSchemeTest, EmptyOrNulPasswordNeverMatches) {
  EXPECT_EQ(VerifyPassword("", "{PLAIN}x").value_or(true), false);
  EXPECT_EQ(VerifyPassword("s3cret\0"s, "{PLAIN}s3cret").value_or(true), false);
  EXPECT_EQ(VerifyPassword("s3cret\0x"s, kSha512Crypt).value_or(true), false);
  EXPECT_EQ(VerifyPassword("s\0"s, "{PLAIN.HEX}7300").value_or(true), false);
  // The field is still checked first.
  EXPECT_FALSE(VerifyPassword("", "{FOO}x").ok());
}

TEST(PasswordSchemeTest, PlainComparesWholePassword) {
  EXPECT_EQ(*VerifyPassword("abc", "{PLAIN}abc"), true);
  EXPECT_EQ(*VerifyPassword("abc", "{plain}abc"), true);
  EXPECT_EQ(*VerifyPassword("ab", "{PLAIN}abc"), false);
  EXPECT_EQ(*VerifyPassword("abcd", "{PLAIN}abc"), false);
  EXPECT_EQ(*VerifyPassword("abd", "{CLEAR}abc"), false);
  // A '}' inside the data belongs to the data; so does a ':' or a space.
  EXPECT_EQ(*VerifyPassword("a}b c:d", "{PLAIN}a}b c:d"), true);
  EXPECT_EQ(*VerifyPassword("p\xc3\xa4ss", "{PLAIN.B64}cMOkc3M="), true);
}

struct MalformedCase {
  std::string stored;
  absl::StatusCode code;
  std::string message;  // a substring of the error
};

class MalformedTable : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedTable, RefusedWithoutEchoingTheHash) {
  const MalformedCase& c = GetParam();
  const absl::Status validated = ValidatePasswordField(c.stored);
  const absl::StatusOr<bool> verified = VerifyPassword(kPw, c.stored);
  ASSERT_FALSE(validated.ok()) << c.stored;
  ASSERT_FALSE(verified.ok()) << c.stored;
  EXPECT_EQ(validated, verified.status());
  EXPECT_EQ(validated.code(), c.code) << validated;
  EXPECT_TRUE(absl::StrContains(validated.message(), c.message)) << validated;
  const std::string data = DataOf(c.stored);
  if (data.size() >= 4) {
    EXPECT_FALSE(absl::StrContains(validated.message(), data)) << validated;
  }
}

const std::string kSalt16 = "dhmO13hGyQcxUcpC";
const std::string kHash86 = kSha512Crypt.substr(20);
const std::string kBcrypt = "$2y$05$VNFcWyjPXDcKrP3ScT1Q..8YZwDrb9E5FLukXEoc2SZ1MyWpGhQVm";
const std::string kArgon =
    "$argon2id$v=19$m=65536,t=3,p=1$WoqeJ3rw0YXfFRereQLTRQ$FBfSGe7udgpTbCjFenUN9lyFxyJNbhU/F/"
    "aE/O4zmFA";

INSTANTIATE_TEST_SUITE_P(
    Fields, MalformedTable,
    ::testing::Values(
        MalformedCase{"", absl::StatusCode::kInvalidArgument, "empty password field"},
        MalformedCase{"{SHA256-CRYPT", absl::StatusCode::kInvalidArgument, "without '}'"},
        MalformedCase{"{FOO}secretsecret", absl::StatusCode::kInvalidArgument,
                      "unknown password scheme"},
        // A password typed where the scheme belongs is not repeated.
        MalformedCase{"{hunter2}x", absl::StatusCode::kInvalidArgument, "unknown password scheme"},
        MalformedCase{"{}abc", absl::StatusCode::kInvalidArgument, "unknown password scheme"},
        MalformedCase{"{SSHA}c2VjcmV0c2VjcmV0c2VjcmV0c2Vj", absl::StatusCode::kInvalidArgument,
                      "SSHA is not supported"},
        MalformedCase{"{pbkdf2}$1$abc$def", absl::StatusCode::kInvalidArgument,
                      "PBKDF2 is not supported"},
        MalformedCase{"{PLAIN}", absl::StatusCode::kInvalidArgument, "nothing after the scheme"},
        MalformedCase{"{PLAIN.HEX}", absl::StatusCode::kInvalidArgument, "nothing after"},
        MalformedCase{"{PLAIN.QP}abcd", absl::StatusCode::kInvalidArgument, "encoding suffix"},
        MalformedCase{"{PLAIN.}abcd", absl::StatusCode::kInvalidArgument, "encoding suffix"},
        MalformedCase{"{PLAIN.HEX}abcz", absl::StatusCode::kInvalidArgument, "not valid hex"},
        MalformedCase{"{PLAIN.HEX}abc", absl::StatusCode::kInvalidArgument, "not valid hex"},
        MalformedCase{"{SSHA256}n4bQ gYhM", absl::StatusCode::kInvalidArgument, "not valid base64"},
        MalformedCase{"{SSHA256}n4bQgYhM", absl::StatusCode::kInvalidArgument, "too short"},
        MalformedCase{"{SHA512}n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
                      absl::StatusCode::kInvalidArgument, "32 bytes instead of 64"},
        // Crypt: only the methods whose cost is bounded, well-formed.
        MalformedCase{"{CRYPT}$y$j9T$abcdefgh$ijklmnopqrstuvwxyz0123456789ABCDEFGHIJK",
                      absl::StatusCode::kInvalidArgument, "crypt method not supported"},
        MalformedCase{"{CRYPT}$7$CU..../....abcdefgh$ijkl", absl::StatusCode::kInvalidArgument,
                      "crypt method not supported"},
        MalformedCase{"{CRYPT}_J9..abcdefghijk", absl::StatusCode::kInvalidArgument,
                      "not a crypt hash"},
        MalformedCase{"{CRYPT}abhWCwoTZY2c", absl::StatusCode::kInvalidArgument,
                      "not a crypt hash"},
        MalformedCase{"{SHA512-CRYPT}$6$" + kSalt16 + "$" + kHash86.substr(1),
                      absl::StatusCode::kInvalidArgument, "not 86 characters"},
        MalformedCase{"{SHA512-CRYPT}$6$" + kSalt16 + kHash86, absl::StatusCode::kInvalidArgument,
                      "no '$' after the salt"},
        MalformedCase{"{SHA512-CRYPT}$6$" + kSalt16 + "x$" + kHash86,
                      absl::StatusCode::kInvalidArgument, "salt longer than 16"},
        MalformedCase{"{SHA512-CRYPT}$6$rounds=999$" + kSalt16 + "$" + kHash86,
                      absl::StatusCode::kInvalidArgument, "rounds="},
        MalformedCase{"{SHA512-CRYPT}$6$rounds=01000$" + kSalt16 + "$" + kHash86,
                      absl::StatusCode::kInvalidArgument, "rounds="},
        MalformedCase{"{SHA512-CRYPT}$6$rounds=1e4$" + kSalt16 + "$" + kHash86,
                      absl::StatusCode::kInvalidArgument, "rounds="},
        MalformedCase{"{SHA512-CRYPT}$6$rounds=5000" + kSalt16, absl::StatusCode::kInvalidArgument,
                      "rounds= without '$'"},
        MalformedCase{"{SHA512-CRYPT}$6$rounds=999999999$" + kSalt16 + "$" + kHash86,
                      absl::StatusCode::kResourceExhausted, "rounds=999999999 above the limit"},
        MalformedCase{"{SHA256-CRYPT}$5$" + kSalt16 + "$" + kHash86,
                      absl::StatusCode::kInvalidArgument, "not 43 characters"},
        MalformedCase{"{MD5-CRYPT}$1$123456789$abcdefghijklmnopqrstuv",
                      absl::StatusCode::kInvalidArgument, "salt longer than 8"},
        MalformedCase{"{MD5-CRYPT}$1$1234$abcdefghijklmnopqrstu",
                      absl::StatusCode::kInvalidArgument, "not 22 characters"},
        MalformedCase{"{BLF-CRYPT}" + kSha512Crypt, absl::StatusCode::kInvalidArgument,
                      "not a bcrypt hash"},
        MalformedCase{"{BLF-CRYPT}" + kBcrypt.substr(0, 59), absl::StatusCode::kInvalidArgument,
                      "not a well-formed"},
        MalformedCase{"{BLF-CRYPT}$2x$" + kBcrypt.substr(4), absl::StatusCode::kInvalidArgument,
                      "not a well-formed"},
        MalformedCase{"{BLF-CRYPT}$2y$03$" + kBcrypt.substr(7), absl::StatusCode::kInvalidArgument,
                      "cost outside 04..31"},
        MalformedCase{"{BLF-CRYPT}$2y$32$" + kBcrypt.substr(7), absl::StatusCode::kInvalidArgument,
                      "cost outside 04..31"},
        MalformedCase{"{BLF-CRYPT}$2y$1a$" + kBcrypt.substr(7), absl::StatusCode::kInvalidArgument,
                      "cost outside 04..31"},
        MalformedCase{"{BLF-CRYPT}$2y$20$" + kBcrypt.substr(7),
                      absl::StatusCode::kResourceExhausted, "bcrypt cost 20 above the limit 16"},
        MalformedCase{"{CRYPT.HEX}2436240036", absl::StatusCode::kInvalidArgument, "NUL byte"},
        // Argon2: the PHC string, checked before libargon2 allocates.
        MalformedCase{"{ARGON2I}" + kSha512Crypt, absl::StatusCode::kInvalidArgument,
                      "not an $argon2i$ or $argon2id$ hash"},
        MalformedCase{"{ARGON2ID}$argon2d$v=19$m=65536,t=3,p=1$WoqeJ3rw0YXfFRereQLTRQ$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kInvalidArgument, "not an $argon2i$"},
        MalformedCase{"{ARGON2ID}$argon2id$v=20$m=65536,t=3,p=1$WoqeJ3rw0YXfFRereQLTRQ$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kInvalidArgument, "version"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$t=3,m=65536,p=1$WoqeJ3rw0YXfFRereQLTRQ$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kInvalidArgument, "parameters"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$m=65536,t=0,p=1$WoqeJ3rw0YXfFRereQLTRQ$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kInvalidArgument, "t= below 1"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$m=15,t=1,p=2$WoqeJ3rw0YXfFRereQLTRQ$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kInvalidArgument, "m= below 8 KiB per lane"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$m=4194304,t=1,p=1$WoqeJ3rw0YXfFRereQLTRQ$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kResourceExhausted, "above the limits"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$m=1048576,t=5,p=1$WoqeJ3rw0YXfFRereQLTRQ$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kResourceExhausted, "m*t <= 4194304"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$WoqeJ3rw$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kInvalidArgument, "salt shorter than 8 bytes"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$WoqeJ3rw0YXfFRereQLTRQ==$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kInvalidArgument, "not unpadded base64"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$WoqeJ3rw0YXfFRereQLTRR$"
                      "FBfSGe7udgpTbCjFenUN9lyFxyJNbhU",
                      absl::StatusCode::kInvalidArgument, "not unpadded base64"},
        MalformedCase{"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$WoqeJ3rw0YXfFRereQLTRQ",
                      absl::StatusCode::kInvalidArgument, "no '$' between salt and hash"}));

TEST(PasswordSchemeTest, LimitsAreConfigurable) {
  PasswordCostLimits tight;
  tight.max_sha_crypt_rounds = 1000;
  tight.max_bcrypt_cost = 4;
  tight.max_argon2_memory_kib = 1024;
  EXPECT_TRUE(ValidatePasswordField(kSha512Crypt).ok());  // default 5000 rounds
  EXPECT_EQ(ValidatePasswordField(kSha512Crypt, tight).code(),
            absl::StatusCode::kOk);  // no rounds= means 5000, not bounded by the field
  EXPECT_EQ(ValidatePasswordField("{BLF-CRYPT}" + kBcrypt, tight).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(VerifyPassword(kPw, "{ARGON2ID}" + kArgon, tight).status().code(),
            absl::StatusCode::kResourceExhausted);
  tight.max_argon2_memory_kib = 65536;
  tight.max_argon2_work = 65536 * 3 - 1;
  EXPECT_EQ(ValidatePasswordField("{ARGON2ID}" + kArgon, tight).code(),
            absl::StatusCode::kResourceExhausted);
  tight.max_argon2_work = 65536 * 3;
  EXPECT_TRUE(ValidatePasswordField("{ARGON2ID}" + kArgon, tight).ok());
}

TEST(PasswordSchemeTest, Argon2SizesFollowLibsodium) {
  // Made with libargon2's argon2id_hash_encoded (doveadm cannot go this
  // small); Dovecot verifies the first and calls the second a mismatch:
  // libsodium wants a hash of 16 bytes or more, libargon2 takes 4.
  EXPECT_EQ(*VerifyPassword(kPw,
                            "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$"
                            "MFH3xoFDa+Wu2koEEjOPMA"),
            true);
  const std::string short_hash =
      "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$"
      "QwRxOE06R9Izq8g14uhC";
  EXPECT_EQ(ValidatePasswordField(short_hash).message(),
            "ARGON2ID: salt shorter than 8 bytes or hash shorter than 16");
  EXPECT_EQ(VerifyPassword(kPw, short_hash).status().code(), absl::StatusCode::kInvalidArgument);
  // argon2i with two lanes, also from libargon2; Dovecot verifies it.
  EXPECT_EQ(*VerifyPassword(kPw,
                            "{ARGON2I}$argon2i$v=19$m=128,t=2,p=2$c2FsdHNhbHRzYWx0MTIzNA$"
                            "cKi8bEs0dSUnyj3Zu0+R4Q"),
            true);
  // Version 1.0 (v=16, or no v=): libargon2 verifies it, libsodium does not.
  for (const char* old_version : {"$argon2i$v=16$", "$argon2i$"}) {
    const std::string stored = absl::StrCat("{ARGON2I}", old_version,
                                            "m=64,t=2,p=1$c2FsdHNhbHRzYWx0MTIzNA$"
                                            "i7fpHuiu4+CiAEhPNi3svA");
    EXPECT_EQ(ValidatePasswordField(stored).message(), "ARGON2I: version is not v=19");
  }
}

TEST(PasswordSchemeTest, TruncatingMethodsTruncateLikeDovecot) {
  // Made and checked with doveadm pw (-t says "verified" for the longer
  // passwords too): bcrypt reads 72 bytes, DES 8 characters.
  const std::string a72(72, 'a');
  const std::string bcrypt =
      "{BLF-CRYPT}$2y$04$SR.ajsJ/LK/gQnrXZPz9KuISgO.K/D1K/KVw13k1rl6autxLk05Tq";
  EXPECT_EQ(*VerifyPassword(a72, bcrypt), true);
  EXPECT_EQ(*VerifyPassword(a72 + "tail-ignored", bcrypt), true);
  EXPECT_EQ(*VerifyPassword(a72.substr(1), bcrypt), false);
  const std::string des = "{DES-CRYPT}lVEFRAFelDPQA";
  EXPECT_EQ(*VerifyPassword("abcdefgh", des), true);
  EXPECT_EQ(*VerifyPassword("abcdefghXYZ", des), true);
  EXPECT_EQ(*VerifyPassword("abcdefg", des), false);
}

TEST(PasswordSchemeTest, ThreadSafe) {
  // crypt_r with a crypt_data per call: several threads at once agree.
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&bad, t] {
      for (int i = 0; i < 20; ++i) {
        const bool right = (i + t) % 2 == 0;
        absl::StatusOr<bool> r = VerifyPassword(right ? kPw : "wrong", kSha512Crypt);
        if (!r.ok() || *r != right) ++bad;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace postern
