#pragma once

// Dovecot's passwd-file (doc.dovecot.org, "Passwd-file"; src/auth/db-passwd-file.c):
//
//   user:password:uid:gid:gecos:home:shell:extra_fields
//
// one user a line. Fields are split on every ':' (no escaping, so the
// password cannot hold one); trailing fields may be left out. Everything after
// the seventh ':' is the extra fields, a list separated by spaces of
// `key=value` or bare `key` entries (a value cannot hold a space; it may hold
// ':'). If that part starts with an empty field (`...:shell::more`), the
// rest is the old format's mail location, kept as `userdb_mail=<rest>`.
// `password[NN]` (libpam-pwdfile) is CRYPT, except [34] and [56]
// (PLAIN-MD5, DIGEST-MD5), which are refused as unsupported schemes.
//
// Lines are LF- or CRLF-terminated (one CR: a second belongs to the line).
// Empty lines, lines of blanks and lines whose first non-blank character is
// '#' are skipped.
//
// What Postern honours of the extra fields: host=, port= (1..65535),
// destuser=, nologin (with or without a value) and reason=. Every other
// extra field (proxy, master, pass, user, nopassword, userdb_*, ...) is kept
// as a key/value pair for later use. uid, gid, gecos, home and shell are
// skipped: a proxy has no use for them.
//
// Stricter than Dovecot, which logs and goes on: a file with any bad line
// is refused whole, with the file name and line number and never the
// password field: an empty user name (Dovecot skips `:...` lines), a control
// character in a user name, a NUL byte, a duplicate user (Dovecot keeps the
// first), a honoured key given twice, a bad port=, a password field
// ValidatePasswordField refuses, a line over the length limit, a file over
// the size limit.
//
// A PasswdFile is an immutable snapshot: build it off the event loops, share
// it as std::shared_ptr<const PasswdFile>, read it from any thread.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "routing/password_scheme.h"

namespace postern {

struct PasswdExtraField {
  absl::string_view key;
  absl::string_view value;  // empty for a bare `key`
};

// One user line, as views into the line it was parsed from.
struct PasswdLine {
  absl::string_view user;
  absl::string_view password;                  // the stored field for VerifyPassword; empty: none
  absl::string_view host;                      // host=, empty when absent
  absl::string_view destuser;                  // destuser=, empty when absent
  absl::string_view reason;                    // reason=, empty when absent
  uint16_t port = 0;                           // port=, 0 when absent
  bool nologin = false;                        // nologin present
  std::vector<PasswdExtraField> extra_fields;  // every other extra field, in order
};

// True for the lines a passwd-file skips: empty, blanks only, or a comment.
bool IsPasswdSkippedLine(absl::string_view line);

// Parses one line (without its LF; a final CR is dropped). INVALID_ARGUMENT
// with a message naming the problem (and the user, once known) but never the
// password; skipped lines are INVALID_ARGUMENT too. The password field is
// checked with ValidatePasswordField(limits).
absl::StatusOr<PasswdLine> ParsePasswdLine(absl::string_view line,
                                           const PasswordCostLimits& limits = {});

// One user of a loaded file: views into the file's own copy of the text.
struct PasswdEntry {
  absl::string_view user;  // as written in the file
  absl::string_view password;
  absl::string_view host;
  absl::string_view destuser;
  absl::string_view reason;
  absl::Span<const PasswdExtraField> extra_fields;  // the others; empty span if none
  uint32_t line = 0;                                // 1-based line number, for logs
  uint16_t port = 0;
  bool nologin = false;
};

struct PasswdFileOptions {
  // Dovecot's `username_format=%Lu`: user names compared after ASCII
  // lower-casing (two spellings of one name in the file are duplicates).
  bool case_insensitive = false;
  size_t max_file_size = size_t{256} << 20;   // bytes
  size_t max_line_length = size_t{64} << 10;  // bytes, without the line end
  PasswordCostLimits password_limits;
};

class PasswdFile {
 public:
  // Parses `text` (a copy is kept). Errors are INVALID_ARGUMENT as
  // "<source_name>:<line>: <what>", or RESOURCE_EXHAUSTED for the size
  // limits ("<source_name>:<line>: line longer than ..." / "<source_name>:
  // larger than ...").
  static absl::StatusOr<std::shared_ptr<const PasswdFile>> Parse(
      absl::string_view text, absl::string_view source_name, const PasswdFileOptions& options = {});
  // Reads and parses the file at `path` (named by that path in errors).
  // Blocking: run it off the event loops.
  static absl::StatusOr<std::shared_ptr<const PasswdFile>> Load(
      const std::string& path, const PasswdFileOptions& options = {});

  PasswdFile(const PasswdFile&) = delete;
  PasswdFile& operator=(const PasswdFile&) = delete;

  // The user's entry, or nullptr. Case-sensitive unless the file was built
  // case_insensitive.
  const PasswdEntry* Find(absl::string_view user) const;

  size_t size() const { return entries_.size(); }
  absl::Span<const PasswdEntry> entries() const { return entries_; }  // in file order
  const std::string& source_name() const { return source_name_; }
  bool case_insensitive() const { return case_insensitive_; }

 private:
  // Hashes and compares entry indexes by their lookup key, and a key
  // against an index (heterogeneous lookup, so the set holds 4 bytes a user).
  struct KeyHash {
    using is_transparent = void;
    const PasswdFile* file;
    size_t operator()(uint32_t i) const;
    size_t operator()(absl::string_view key) const;
  };
  struct KeyEq {
    using is_transparent = void;
    const PasswdFile* file;
    bool operator()(uint32_t a, uint32_t b) const;
    bool operator()(uint32_t a, absl::string_view b) const;
    bool operator()(absl::string_view a, uint32_t b) const;
  };

  PasswdFile(std::string text, std::string source_name, bool case_insensitive);
  static absl::StatusOr<std::shared_ptr<const PasswdFile>> Build(std::string text,
                                                                 std::string source_name,
                                                                 const PasswdFileOptions& options);
  absl::Status ParseAll(const PasswdFileOptions& options);
  absl::string_view Key(uint32_t i) const;

  const std::string text_;
  const std::string source_name_;
  const bool case_insensitive_;
  std::vector<PasswdEntry> entries_;
  std::vector<PasswdExtraField> extra_fields_;  // every entry's, back to back
  // case_insensitive: every key lower-cased, back to back, and where each is.
  std::string lowered_;
  std::vector<std::pair<uint32_t, uint32_t>> lowered_keys_;  // offset, size
  absl::flat_hash_set<uint32_t, KeyHash, KeyEq> index_;
};

}  // namespace postern
