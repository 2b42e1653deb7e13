#include "routing/passwd_file.h"

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace postern {
namespace {

using namespace std::string_literals;

// Cheap to validate, so that big files load fast.
constexpr char kPlain[] = "{PLAIN}s3cret";
const std::string kSsha = "{SSHA256}Tx/nNaGDa6BUssxWVKaqjo3sHH4rDw1dBnr9tLBytz7wZFq9";  // "test"
const std::string kSha512Crypt =
    "{SHA512-CRYPT}$6$v8AJgrd4qD4HD.US$5zeP5Fphjf/fEV4LWI2z32J.k54m3gOeSd1cp9HrcgESgEQgxMpO0ehOe6QE"
    "CZGvG2DC37U0zHsGvfKvhbyMk0";

using Extras = std::vector<std::pair<std::string, std::string>>;

struct LineCase {
  std::string line;
  bool ok;
  // When ok:
  std::string user;
  std::string password;
  std::string host;
  uint16_t port = 0;
  std::string destuser;
  bool nologin = false;
  std::string reason;
  Extras extras;
  // When not ok: a substring of the error.
  std::string error;
};

LineCase Ok(std::string line, std::string user, std::string password, Extras extras = {}) {
  LineCase c;
  c.line = std::move(line);
  c.ok = true;
  c.user = std::move(user);
  c.password = std::move(password);
  c.extras = std::move(extras);
  return c;
}

LineCase Err(std::string line, std::string error) {
  LineCase c;
  c.line = std::move(line);
  c.ok = false;
  c.error = std::move(error);
  return c;
}

LineCase Routed(std::string line, std::string host, uint16_t port, std::string destuser,
                bool nologin, std::string reason, Extras extras = {}) {
  LineCase c = Ok(std::move(line), "alice", kPlain, std::move(extras));
  c.host = std::move(host);
  c.port = port;
  c.destuser = std::move(destuser);
  c.nologin = nologin;
  c.reason = std::move(reason);
  return c;
}

class LineTable : public ::testing::TestWithParam<LineCase> {};

TEST_P(LineTable, Parses) {
  const LineCase& c = GetParam();
  absl::StatusOr<PasswdLine> got = ParsePasswdLine(c.line);
  if (!c.ok) {
    ASSERT_FALSE(got.ok()) << c.line;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(got.status().message(), c.error)) << got.status();
    return;
  }
  ASSERT_TRUE(got.ok()) << c.line << ": " << got.status();
  EXPECT_EQ(got->user, c.user);
  EXPECT_EQ(got->password, c.password);
  EXPECT_EQ(got->host, c.host);
  EXPECT_EQ(got->port, c.port);
  EXPECT_EQ(got->destuser, c.destuser);
  EXPECT_EQ(got->nologin, c.nologin);
  EXPECT_EQ(got->reason, c.reason);
  Extras extras;
  for (const PasswdExtraField& f : got->extra_fields) {
    extras.emplace_back(std::string(f.key), std::string(f.value));
  }
  EXPECT_EQ(extras, c.extras);
}

INSTANTIATE_TEST_SUITE_P(
    FieldCounts, LineTable,
    ::testing::Values(
        // From one field to all eight: trailing fields may be left out.
        Ok("alice", "alice", ""), Ok("alice:", "alice", ""),
        Ok("alice:{PLAIN}s3cret", "alice", kPlain), Ok("alice:{PLAIN}s3cret:", "alice", kPlain),
        Ok("alice:{PLAIN}s3cret:1000", "alice", kPlain),
        Ok("alice:{PLAIN}s3cret:1000:1000", "alice", kPlain),
        Ok("alice:{PLAIN}s3cret:1000:1000:Alice A.", "alice", kPlain),
        Ok("alice:{PLAIN}s3cret:1000:1000:Alice A.:/home/alice", "alice", kPlain),
        Ok("alice:{PLAIN}s3cret:1000:1000:Alice A.:/home/alice:/bin/false", "alice", kPlain),
        Ok("alice:{PLAIN}s3cret:1000:1000:Alice A.:/home/alice:/bin/false:", "alice", kPlain),
        Ok("alice:{PLAIN}s3cret:1000:1000:Alice A.:/home/alice:/bin/false:proxy", "alice", kPlain,
           {{"proxy", ""}}),
        Ok("alice:{PLAIN}s3cret::::::proxy", "alice", kPlain, {{"proxy", ""}}),
        Ok("alice::::::", "alice", ""),
        // The password cannot hold ':': what follows is the uid.
        Ok("alice:{PLAIN}a:b", "alice", "{PLAIN}a"),
        // Dovecot's default scheme is CRYPT.
        Ok("alice:" + kSha512Crypt.substr(14), "alice", kSha512Crypt.substr(14)),
        Ok("alice:" + kSha512Crypt, "alice", kSha512Crypt),
        // libpam-pwdfile's hash[13] is a DES crypt.
        Ok("alice:abhWCwoTZY2c6[13]", "alice", "abhWCwoTZY2c6"),
        // CRLF line end; spaces inside the user name are the user name's.
        Ok("alice:{PLAIN}s3cret\r", "alice", kPlain),
        Ok(" alice :{PLAIN}s3cret", " alice ", kPlain),
        Ok("al#ice:{PLAIN}s3cret", "al#ice", kPlain),
        Ok("alice@example.com:{PLAIN}s3cret", "alice@example.com", kPlain)));

INSTANTIATE_TEST_SUITE_P(
    ExtraFields, LineTable,
    ::testing::Values(
        Routed("alice:{PLAIN}s3cret::::::host=10.0.0.2 port=1143", "10.0.0.2", 1143, "", false, ""),
        Routed("alice:{PLAIN}s3cret::::::proxy host=store2.example port=143 destuser=alice2 "
               "master=admin pass=x user=bob",
               "store2.example", 143, "alice2", false, "",
               {{"proxy", ""}, {"master", "admin"}, {"pass", "x"}, {"user", "bob"}}),
        Routed("alice:{PLAIN}s3cret::::::nologin reason=moved", "", 0, "", true, "moved"),
        Routed("alice:{PLAIN}s3cret::::::nologin=y", "", 0, "", true, ""),
        Routed("alice:{PLAIN}s3cret::::::reason=", "", 0, "", false, ""),
        Routed("alice:{PLAIN}s3cret::::::port=65535 port_x=1", "", 65535, "", false, "",
               {{"port_x", "1"}}),
        // Separated by spaces only, several spaces are one; values keep ':' and tabs.
        Routed("alice:{PLAIN}s3cret::::::  a=1   b  ", "", 0, "", false, "",
               {{"a", "1"}, {"b", ""}}),
        Routed("alice:{PLAIN}s3cret::::::mail=maildir:~/Maildir:LAYOUT=fs x", "", 0, "", false, "",
               {{"mail", "maildir:~/Maildir:LAYOUT=fs"}, {"x", ""}}),
        Routed("alice:{PLAIN}s3cret::::::a=1\tb=2", "", 0, "", false, "", {{"a", "1\tb=2"}}),
        Routed("alice:{PLAIN}s3cret::::::a=b=c", "", 0, "", false, "", {{"a", "b=c"}}),
        Routed("alice:{PLAIN}s3cret::::::Host=x", "", 0, "", false, "", {{"Host", "x"}}),
        // The old format: an empty eighth field, then the mail location.
        Routed("alice:{PLAIN}s3cret:1:1:A:/h:/s::maildir:~/Maildir", "", 0, "", false, "",
               {{"userdb_mail", "maildir:~/Maildir"}}),
        Routed("alice:{PLAIN}s3cret:1:1:A:/h:/s::", "", 0, "", false, "")));

INSTANTIATE_TEST_SUITE_P(
    Errors, LineTable,
    ::testing::Values(
        Err("", "not a user line"), Err("# alice:x", "not a user line"),
        Err(":{PLAIN}s3cret", "empty user name"), Err("al\x01ice:x", "control character"),
        Err("alice\x7f:x", "control character"), Err("alice:{PLAIN}s3\0cret"s, "NUL byte"),
        Err("alice:{FOO}s3cret", "user alice: password field: unknown password scheme"),
        Err("alice:{SHA256}tooshort", "user alice: password field: SHA256"),
        Err("alice:s3cret[34]", "libpam-pwdfile type [34] (PLAIN-MD5) is not supported"),
        Err("alice:s3cret[56]", "(DIGEST-MD5) is not supported"),
        Err("alice:{PLAIN}s3cret::::::host=a host=b", "user alice: host= given twice"),
        Err("alice:{PLAIN}s3cret::::::host=", "empty host="),
        Err("alice:{PLAIN}s3cret::::::destuser=", "empty destuser="),
        Err("alice:{PLAIN}s3cret::::::port=0", "port= is not a number in 1..65535"),
        Err("alice:{PLAIN}s3cret::::::port=65536", "port= is not a number"),
        Err("alice:{PLAIN}s3cret::::::port=0143", "port= is not a number"),
        Err("alice:{PLAIN}s3cret::::::port=14x", "port= is not a number"),
        Err("alice:{PLAIN}s3cret::::::port", "port= is not a number"),
        Err("alice:{PLAIN}s3cret::::::port=1 port=2", "port= given twice"),
        Err("alice:{PLAIN}s3cret::::::nologin nologin=y", "nologin given twice"),
        Err("alice:{PLAIN}s3cret::::::reason=a reason=b", "reason= given twice"),
        Err("alice:{PLAIN}s3cret::::::=x", "extra field with an empty key")));

TEST(PasswdLineTest, SkippedLines) {
  for (const char* line :
       {"", " ", "\t \t", "\r", "#", "# alice:{PLAIN}x", "   # indented", "\t#x\r"}) {
    EXPECT_TRUE(IsPasswdSkippedLine(line)) << line;
  }
  for (const char* line : {"a", " a", "a#", ":x", "a:#", "\r\r", " \r\r"}) {
    EXPECT_FALSE(IsPasswdSkippedLine(line)) << line;
  }
}

TEST(PasswdLineTest, ErrorsNeverShowThePassword) {
  const char* lines[] = {
      "alice:{SHA256}hunter2hunter2",
      "alice:{SSHA512.HEX}hunter2hunter2",
      "alice:hunter2hunter2",
      "alice:{hunter2hunter2}",
      "alice:{PLAIN.B64}hunter2hunter2",
      "alice:$6$rounds=99$hunter2hunter2$x",
      "alice:{ARGON2I}$argon2i$hunter2hunter2",
      "alice:hunter2hunter2[34]",
  };
  for (const char* line : lines) {
    absl::StatusOr<PasswdLine> got = ParsePasswdLine(line);
    ASSERT_FALSE(got.ok()) << line;
    EXPECT_FALSE(absl::StrContains(got.status().message(), "hunter2")) << got.status();
    auto file = PasswdFile::Parse(absl::StrCat("bob:", kPlain, "\n", line, "\n"), "users.passwd");
    ASSERT_FALSE(file.ok());
    EXPECT_TRUE(absl::StartsWith(file.status().message(), "users.passwd:2: user alice: "))
        << file.status();
    EXPECT_FALSE(absl::StrContains(file.status().message(), "hunter2")) << file.status();
  }
}

const char kFile[] =
    "# Postern test users\n"
    "\n"
    "alice:{PLAIN}s3cret::::::host=10.0.0.2 port=1143\n"
    "   # an indented comment\n"
    "Bob:{SSHA256}Tx/nNaGDa6BUssxWVKaqjo3sHH4rDw1dBnr9tLBytz7wZFq9:1000:1000::/home/bob:\r\n"
    "carol:{PLAIN}x::::::nologin reason=moved proxy master=admin\n"
    "dave\n"
    "erin:{PLAIN}y::::::a=1 b=2 c";  // no final LF

TEST(PasswdFileTest, ParsesAndFinds) {
  auto file = PasswdFile::Parse(kFile, "users.passwd");
  ASSERT_TRUE(file.ok()) << file.status();
  const PasswdFile& f = **file;
  EXPECT_EQ(f.size(), 5u);
  EXPECT_EQ(f.source_name(), "users.passwd");
  EXPECT_FALSE(f.case_insensitive());

  const PasswdEntry* alice = f.Find("alice");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->password, "{PLAIN}s3cret");
  EXPECT_EQ(alice->host, "10.0.0.2");
  EXPECT_EQ(alice->port, 1143);
  EXPECT_EQ(alice->line, 3u);
  EXPECT_TRUE(alice->extra_fields.empty());

  const PasswdEntry* bob = f.Find("Bob");
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(bob->password, kSsha);
  EXPECT_EQ(bob->line, 5u);
  EXPECT_EQ(f.Find("bob"), nullptr);  // case-sensitive by default
  EXPECT_EQ(f.Find("BOB"), nullptr);

  const PasswdEntry* carol = f.Find("carol");
  ASSERT_NE(carol, nullptr);
  EXPECT_TRUE(carol->nologin);
  EXPECT_EQ(carol->reason, "moved");
  ASSERT_EQ(carol->extra_fields.size(), 2u);
  EXPECT_EQ(carol->extra_fields[0].key, "proxy");
  EXPECT_EQ(carol->extra_fields[1].key, "master");
  EXPECT_EQ(carol->extra_fields[1].value, "admin");

  const PasswdEntry* dave = f.Find("dave");
  ASSERT_NE(dave, nullptr);
  EXPECT_TRUE(dave->password.empty());

  const PasswdEntry* erin = f.Find("erin");
  ASSERT_NE(erin, nullptr);
  ASSERT_EQ(erin->extra_fields.size(), 3u);
  EXPECT_EQ(erin->extra_fields[2].key, "c");

  EXPECT_EQ(f.Find(""), nullptr);
  EXPECT_EQ(f.Find("alice "), nullptr);
  EXPECT_EQ(f.Find("# Postern test users"), nullptr);
  ASSERT_EQ(f.entries().size(), 5u);
  EXPECT_EQ(f.entries()[0].user, "alice");
  EXPECT_EQ(f.entries()[4].user, "erin");
}

TEST(PasswdFileTest, ExtraFieldsSurviveTheFinalShrink) {
  // Found by passwd_line_fuzz: three users with one extra field each leave
  // the shared vector with spare capacity, and the spans must be taken
  // after it is shrunk (run under ASan to see the difference).
  auto file =
      PasswdFile::Parse("a:{PLAIN}x::::::k=1\nb:{PLAIN}x::::::k=2\nc:{PLAIN}x::::::k=3\n", "u");
  ASSERT_TRUE(file.ok()) << file.status();
  for (const char* user : {"a", "b", "c"}) {
    const PasswdEntry* e = (*file)->Find(user);
    ASSERT_NE(e, nullptr);
    ASSERT_EQ(e->extra_fields.size(), 1u);
    EXPECT_EQ(e->extra_fields[0].key, "k");
  }
  EXPECT_EQ((*file)->Find("c")->extra_fields[0].value, "3");
}

TEST(PasswdFileTest, SnapshotOutlivesItsText) {
  std::string text = kFile;
  auto file = PasswdFile::Parse(text, "users.passwd");
  ASSERT_TRUE(file.ok());
  text.assign(text.size(), 'X');
  const PasswdEntry* alice = (*file)->Find("alice");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->host, "10.0.0.2");
}

TEST(PasswdFileTest, CaseInsensitiveOption) {
  PasswdFileOptions options;
  options.case_insensitive = true;
  auto file = PasswdFile::Parse(kFile, "users.passwd", options);
  ASSERT_TRUE(file.ok()) << file.status();
  for (const char* name : {"bob", "Bob", "BOB", "bOb"}) {
    const PasswdEntry* bob = (*file)->Find(name);
    ASSERT_NE(bob, nullptr) << name;
    EXPECT_EQ(bob->user, "Bob");  // as written
  }
  EXPECT_NE((*file)->Find("ALICE"), nullptr);
  EXPECT_EQ((*file)->Find("alic"), nullptr);

  // Two spellings of one name are duplicates in this mode only.
  const char two[] = "alice:{PLAIN}a\nALICE:{PLAIN}b\n";
  EXPECT_TRUE(PasswdFile::Parse(two, "u").ok());
  auto dup = PasswdFile::Parse(two, "u", options);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(), "u:2: user ALICE: duplicate of line 1");
}

struct FileErrorCase {
  std::string text;
  std::string error;  // the whole message
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
};

class FileErrorTable : public ::testing::TestWithParam<FileErrorCase> {};

TEST_P(FileErrorTable, RefusedWholeWithFileAndLine) {
  auto file = PasswdFile::Parse(GetParam().text, "users.passwd");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), GetParam().code);
  EXPECT_EQ(file.status().message(), GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    Files, FileErrorTable,
    ::testing::Values(
        FileErrorCase{"alice:{PLAIN}a\n# c\n\nalice:{PLAIN}b\n",
                      "users.passwd:4: user alice: duplicate of line 1"},
        FileErrorCase{"a:{PLAIN}a\nb:{PLAIN}b\r\nc:{PLAIN}c::::::port=x\n",
                      "users.passwd:3: user c: port= is not a number in 1..65535"},
        FileErrorCase{"a:{PLAIN}a\n:{PLAIN}b\n", "users.passwd:2: empty user name"},
        FileErrorCase{"a:{PLAIN}a\nb:{MD5}abc\n",
                      "users.passwd:2: user b: password field: password scheme MD5 is not "
                      "supported"},
        FileErrorCase{"\n\n\nb:{PLAIN}\n",
                      "users.passwd:4: user b: password field: PLAIN: nothing after the scheme"},
        FileErrorCase{"a:{PLAIN}a\n\0\n"s, "users.passwd:2: NUL byte in the line"},
        // One CR ends a line; a second is part of it (found by passwd_line_fuzz).
        FileErrorCase{"a:{PLAIN}a\r\nb\r\r\n",
                      "users.passwd:2: control character in the user name"},
        FileErrorCase{"\r\r\n", "users.passwd:1: control character in the user name"}));

TEST(PasswdFileTest, LineLengthLimit) {
  PasswdFileOptions options;
  options.max_line_length = 64;
  const std::string ok_line = "alice:{PLAIN}" + std::string(64 - 13, 'x');
  EXPECT_TRUE(PasswdFile::Parse(ok_line + "\r\n", "u", options).ok());  // CR not counted
  auto file = PasswdFile::Parse("# x\n" + ok_line + "y\n", "u", options);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(file.status().message(), "u:2: line longer than 64 bytes");
  // Comments count too: the bound is on what is read, not on what is kept.
  EXPECT_FALSE(PasswdFile::Parse("#" + std::string(64, 'c') + "\n", "u", options).ok());
  // The default is 64 KiB.
  EXPECT_TRUE(PasswdFile::Parse("a:{PLAIN}" + std::string(65536 - 9, 'x'), "u").ok());
  EXPECT_FALSE(PasswdFile::Parse("a:{PLAIN}" + std::string(65536 - 8, 'x'), "u").ok());
}

TEST(PasswdFileTest, FileSizeLimit) {
  PasswdFileOptions options;
  options.max_file_size = 16;
  EXPECT_TRUE(PasswdFile::Parse("alice:{PLAIN}abc", "u", options).ok());  // 16 bytes
  auto file = PasswdFile::Parse("alice:{PLAIN}abcd", "u", options);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(file.status().message(), "u: larger than 16 bytes");
}

TEST(PasswdFileTest, EmptyFileHasNoUsers) {
  auto file = PasswdFile::Parse("", "u");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->size(), 0u);
  EXPECT_EQ((*file)->Find("alice"), nullptr);
  auto comments = PasswdFile::Parse("# only\n\n#comments\n", "u");
  ASSERT_TRUE(comments.ok());
  EXPECT_EQ((*comments)->size(), 0u);
}

class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char name[] = "/tmp/postern-passwd-XXXXXX";
    const int fd = mkstemp(name);
    path_ = name;
    if (fd >= 0) {
      (void)!write(fd, contents.data(), contents.size());
      close(fd);
    }
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PasswdFileTest, LoadsFromDisk) {
  TempFile tmp(kFile);
  auto file = PasswdFile::Load(tmp.path());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->size(), 5u);
  EXPECT_EQ((*file)->source_name(), tmp.path());
  EXPECT_NE((*file)->Find("carol"), nullptr);

  TempFile bad("alice:{PLAIN}a\nalice:{PLAIN}b\n");
  auto refused = PasswdFile::Load(bad.path());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(),
            absl::StrCat(bad.path(), ":2: user alice: duplicate of line 1"));

  PasswdFileOptions small;
  small.max_file_size = 10;
  auto big = PasswdFile::Load(tmp.path(), small);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(big.status().message(), absl::StrCat(tmp.path(), ": larger than 10 bytes"));
}

TEST(PasswdFileTest, LoadErrorsNameThePath) {
  auto missing = PasswdFile::Load("/nonexistent/users.passwd");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(
      absl::StartsWith(missing.status().message(), "/nonexistent/users.passwd: cannot open"))
      << missing.status();
  auto dir = PasswdFile::Load("/tmp");
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().message(), "/tmp: not a regular file");
}

size_t HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// 100,000 users: it loads, every user is found, and the figures are printed
// (not asserted: the machine is shared).
TEST(PasswdFileTest, HundredThousandUsers) {
  constexpr int kUsers = 100'000;
  std::string text;
  text.reserve(kUsers * 120);
  for (int i = 0; i < kUsers; ++i) {
    absl::StrAppend(&text, "user", i, "@example.com:", i % 2 ? kSsha : kSha512Crypt,
                    "::::::host=10.0.", i % 256, ".", i % 199, i % 10 == 0 ? " proxy" : "", "\n");
  }
  const size_t before = HeapInUse();
  const auto start = std::chrono::steady_clock::now();
  auto file = PasswdFile::Parse(text, "big.passwd");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(file.ok()) << file.status();
  const size_t after = HeapInUse();
  EXPECT_EQ((*file)->size(), static_cast<size_t>(kUsers));
  for (int i = 0; i < kUsers; i += 997) {
    const PasswdEntry* e = (*file)->Find(absl::StrCat("user", i, "@example.com"));
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->line, static_cast<uint32_t>(i + 1));
    EXPECT_EQ(e->extra_fields.size(), i % 10 == 0 ? 1u : 0u);
  }
  EXPECT_EQ((*file)->Find("user100000@example.com"), nullptr);
  const double ms = std::chrono::duration<double, std::milli>(elapsed).count();
  // mallinfo2 sees glibc's heap only (nothing under ASan).
  const double per_user = after > before ? static_cast<double>(after - before) / kUsers : 0;
  std::printf(
      "passwd-file: %d users, %zu bytes of text, parsed in %.0f ms, %.0f bytes of heap per "
      "user (text included; 0: not measurable in this build)\n",
      kUsers, text.size(), ms, per_user);
  RecordProperty("parse_ms", static_cast<int>(ms));
  RecordProperty("heap_bytes_per_user", static_cast<int>(per_user));
}

}  // namespace
}  // namespace postern
