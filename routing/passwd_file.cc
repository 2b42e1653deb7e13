#include "routing/passwd_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace postern {
namespace {

// Offsets and line numbers are 32-bit.
constexpr size_t kMaxSupportedFileSize = UINT32_MAX;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

absl::string_view StripCr(absl::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

absl::Status LineError(absl::string_view user, absl::string_view what) {
  if (user.empty()) return absl::InvalidArgumentError(what);
  return absl::InvalidArgumentError(absl::StrCat("user ", user, ": ", what));
}

std::optional<uint16_t> ParsePort(absl::string_view s) {
  if (s.empty() || s.size() > 5 || s[0] == '0') return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// Sets one honoured extra field, refusing a second one.
absl::Status SetOnce(absl::string_view user, absl::string_view key, absl::string_view value,
                     bool allow_empty, absl::string_view* field, bool* seen) {
  if (*seen) return LineError(user, absl::StrCat(key, "= given twice"));
  if (value.empty() && !allow_empty) return LineError(user, absl::StrCat("empty ", key, "="));
  *seen = true;
  *field = value;
  return absl::OkStatus();
}

struct HonouredSeen {
  bool host = false;
  bool port = false;
  bool destuser = false;
  bool reason = false;
  bool nologin = false;
};

absl::Status AddExtraField(absl::string_view token, PasswdLine& out, HonouredSeen& seen) {
  const size_t eq = token.find('=');
  const absl::string_view key = token.substr(0, eq);
  const absl::string_view value =
      eq == absl::string_view::npos ? absl::string_view() : token.substr(eq + 1);
  if (key.empty()) return LineError(out.user, "extra field with an empty key");
  if (key == "host") return SetOnce(out.user, key, value, false, &out.host, &seen.host);
  if (key == "destuser") {
    return SetOnce(out.user, key, value, false, &out.destuser, &seen.destuser);
  }
  if (key == "reason") return SetOnce(out.user, key, value, true, &out.reason, &seen.reason);
  if (key == "port") {
    if (seen.port) return LineError(out.user, "port= given twice");
    seen.port = true;
    const std::optional<uint16_t> port = ParsePort(value);
    if (!port) return LineError(out.user, "port= is not a number in 1..65535");
    out.port = *port;
    return absl::OkStatus();
  }
  if (key == "nologin") {
    // Dovecot's login processes look at the key only (nologin=y is usual).
    if (seen.nologin) return LineError(out.user, "nologin given twice");
    seen.nologin = true;
    out.nologin = true;
    return absl::OkStatus();
  }
  out.extra_fields.push_back(PasswdExtraField{key, value});
  return absl::OkStatus();
}

// IsPasswdSkippedLine on a line whose CR is already gone (one CR only is
// a line end: "x\r\r" is the user "x\r", refused for its control character).
bool IsSkipped(absl::string_view line) {
  size_t i = 0;
  while (i < line.size() && IsBlank(line[i])) ++i;
  return i == line.size() || line[i] == '#';
}

}  // namespace

bool IsPasswdSkippedLine(absl::string_view line) { return IsSkipped(StripCr(line)); }

absl::StatusOr<PasswdLine> ParsePasswdLine(absl::string_view line,
                                           const PasswordCostLimits& limits) {
  line = StripCr(line);
  if (IsSkipped(line)) return absl::InvalidArgumentError("not a user line");
  if (line.find('\0') != absl::string_view::npos) return LineError("", "NUL byte in the line");
  if (line.find('\n') != absl::string_view::npos) return LineError("", "LF inside the line");

  // user:password:uid:gid:gecos:home:shell, then the extra fields (which
  // keep their ':').
  absl::string_view fields[7];
  size_t count = 0;
  absl::string_view rest = line;
  bool has_extra = false;
  while (count < 7) {
    const size_t colon = rest.find(':');
    fields[count++] = rest.substr(0, colon);
    if (colon == absl::string_view::npos) {
      rest = absl::string_view();
      break;
    }
    rest.remove_prefix(colon + 1);
    if (count == 7) has_extra = true;
  }

  PasswdLine out;
  if (fields[0].empty()) return LineError("", "empty user name");
  for (char c : fields[0]) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return LineError("", "control character in the user name");
    }
  }
  out.user = fields[0];

  absl::string_view password = count > 1 ? fields[1] : absl::string_view();
  const size_t n = password.size();
  if (n > 4 && password[0] != '{' && password[0] != '$' && password[n - 1] == ']' &&
      password[n - 4] == '[') {
    // libpam-pwdfile's `hash[NN]`: 13 is DES, 34 PLAIN-MD5, 56 DIGEST-MD5;
    // Dovecot takes any other number as CRYPT too.
    const absl::string_view type = password.substr(n - 3, 2);
    if (type == "34" || type == "56") {
      return LineError(
          out.user, absl::StrCat("password field: libpam-pwdfile type [", type, "] (",
                                 type == "34" ? "PLAIN-MD5" : "DIGEST-MD5", ") is not supported"));
    }
    password.remove_suffix(4);
  }
  if (!password.empty()) {
    const absl::Status st = ValidatePasswordField(password, limits);
    if (!st.ok()) {
      return absl::Status(st.code(),
                          absl::StrCat("user ", out.user, ": password field: ", st.message()));
    }
  }
  out.password = password;

  if (has_extra) {
    HonouredSeen seen;
    if (rest.empty() || rest[0] == ':') {
      // The old format: an empty field, then the mail location.
      if (!rest.empty() && rest.size() > 1) {
        out.extra_fields.push_back(PasswdExtraField{"userdb_mail", rest.substr(1)});
      }
    } else {
      // Separated by spaces only (Dovecot's p_strsplit_spaces(..., " ")).
      while (!rest.empty()) {
        const size_t space = rest.find(' ');
        const absl::string_view token = rest.substr(0, space);
        rest.remove_prefix(space == absl::string_view::npos ? rest.size() : space + 1);
        if (token.empty()) continue;
        const absl::Status st = AddExtraField(token, out, seen);
        if (!st.ok()) return st;
      }
    }
  }
  return out;
}

PasswdFile::PasswdFile(std::string text, std::string source_name, bool case_insensitive)
    : text_(std::move(text)),
      source_name_(std::move(source_name)),
      case_insensitive_(case_insensitive),
      index_(0, KeyHash{this}, KeyEq{this}) {}

absl::string_view PasswdFile::Key(uint32_t i) const {
  if (!case_insensitive_) return entries_[i].user;
  const auto [offset, size] = lowered_keys_[i];
  return absl::string_view(lowered_).substr(offset, size);
}

size_t PasswdFile::KeyHash::operator()(uint32_t i) const { return (*this)(file->Key(i)); }
size_t PasswdFile::KeyHash::operator()(absl::string_view key) const {
  return absl::Hash<absl::string_view>()(key);
}
bool PasswdFile::KeyEq::operator()(uint32_t a, uint32_t b) const {
  return file->Key(a) == file->Key(b);
}
bool PasswdFile::KeyEq::operator()(uint32_t a, absl::string_view b) const {
  return file->Key(a) == b;
}
bool PasswdFile::KeyEq::operator()(absl::string_view a, uint32_t b) const {
  return a == file->Key(b);
}

absl::Status PasswdFile::ParseAll(const PasswdFileOptions& options) {
  const absl::string_view text = text_;
  std::vector<uint32_t> extra_begin;  // into extra_fields_, until the spans are set
  size_t pos = 0;
  uint32_t number = 0;
  while (pos < text.size()) {
    ++number;
    size_t end = text.find('\n', pos);
    if (end == absl::string_view::npos) end = text.size();
    const absl::string_view raw = text.substr(pos, end - pos);  // CR and all
    const absl::string_view line = StripCr(raw);
    pos = end + 1;
    if (line.size() > options.max_line_length) {
      return absl::ResourceExhaustedError(absl::StrCat(
          source_name_, ":", number, ": line longer than ", options.max_line_length, " bytes"));
    }
    if (IsSkipped(line)) continue;
    absl::StatusOr<PasswdLine> parsed = ParsePasswdLine(raw, options.password_limits);
    if (!parsed.ok()) {
      return absl::Status(parsed.status().code(),
                          absl::StrCat(source_name_, ":", number, ": ", parsed.status().message()));
    }
    PasswdEntry e;
    e.user = parsed->user;
    e.password = parsed->password;
    e.host = parsed->host;
    e.destuser = parsed->destuser;
    e.reason = parsed->reason;
    e.line = number;
    e.port = parsed->port;
    e.nologin = parsed->nologin;
    extra_begin.push_back(static_cast<uint32_t>(extra_fields_.size()));
    extra_fields_.insert(extra_fields_.end(), parsed->extra_fields.begin(),
                         parsed->extra_fields.end());
    entries_.push_back(e);
    if (case_insensitive_) {
      lowered_keys_.emplace_back(static_cast<uint32_t>(lowered_.size()),
                                 static_cast<uint32_t>(e.user.size()));
      for (char c : e.user) lowered_.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    }
    const uint32_t index = static_cast<uint32_t>(entries_.size() - 1);
    const auto [it, inserted] = index_.insert(index);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(source_name_, ":", number, ": user ", e.user,
                                                     ": duplicate of line ", entries_[*it].line));
    }
  }
  entries_.shrink_to_fit();
  extra_fields_.shrink_to_fit();
  lowered_.shrink_to_fit();
  lowered_keys_.shrink_to_fit();
  // extra_fields_ is final (and will not move again): point each entry at
  // its slice.
  for (size_t i = 0; i < entries_.size(); ++i) {
    const size_t begin = extra_begin[i];
    const size_t stop = i + 1 < entries_.size() ? extra_begin[i + 1] : extra_fields_.size();
    if (stop > begin) {
      entries_[i].extra_fields =
          absl::Span<const PasswdExtraField>(extra_fields_.data() + begin, stop - begin);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const PasswdFile>> PasswdFile::Build(
    std::string text, std::string source_name, const PasswdFileOptions& options) {
  std::shared_ptr<PasswdFile> file(
      new PasswdFile(std::move(text), std::move(source_name), options.case_insensitive));
  const absl::Status st = file->ParseAll(options);
  if (!st.ok()) return st;
  return std::shared_ptr<const PasswdFile>(std::move(file));
}

absl::StatusOr<std::shared_ptr<const PasswdFile>> PasswdFile::Parse(
    absl::string_view text, absl::string_view source_name, const PasswdFileOptions& options) {
  const size_t max = std::min(options.max_file_size, kMaxSupportedFileSize);
  if (text.size() > max) {
    return absl::ResourceExhaustedError(absl::StrCat(source_name, ": larger than ", max, " bytes"));
  }
  return Build(std::string(text), std::string(source_name), options);
}

absl::StatusOr<std::shared_ptr<const PasswdFile>> PasswdFile::Load(
    const std::string& path, const PasswdFileOptions& options) {
  const size_t max = std::min(options.max_file_size, kMaxSupportedFileSize);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > max) {
    close(fd);
    return absl::ResourceExhaustedError(absl::StrCat(path, ": larger than ", max, " bytes"));
  }
  std::string text;
  text.reserve(static_cast<size_t>(st.st_size));
  char chunk[65536];
  while (true) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return absl::ErrnoToStatus(err, absl::StrCat(path, ": cannot read"));
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > max) {  // it grew while we read
      close(fd);
      return absl::ResourceExhaustedError(absl::StrCat(path, ": larger than ", max, " bytes"));
    }
    text.append(chunk, static_cast<size_t>(n));
  }
  close(fd);
  return Build(std::move(text), path, options);
}

const PasswdEntry* PasswdFile::Find(absl::string_view user) const {
  if (case_insensitive_) {
    std::string key(user);
    absl::AsciiStrToLower(&key);
    auto it = index_.find(absl::string_view(key));
    return it == index_.end() ? nullptr : &entries_[*it];
  }
  auto it = index_.find(user);
  return it == index_.end() ? nullptr : &entries_[*it];
}

}  // namespace postern
