// The YAML configuration loader: reads the whole file with yaml-cpp, walks
// the node tree key by key (unknown and duplicate keys are errors), converts
// every scalar by hand (no yaml-cpp `as<T>()`, whose conversions accept too
// much and throw), then validates the whole snapshot.
//
// yaml-cpp reports errors by throwing. Loading a configuration is not the data
// path, but nothing may escape it either: every yaml-cpp call happens inside
// ParseConfig's try block and any exception becomes an InvalidArgumentError.

#include "proxy/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "protocol/pop3_gateway.h"
#include "yaml-cpp/yaml.h"

// Early returns on error, local to this file (Abseil 20220623 has no public
// status macros).
#define POSTERN_CONFIG_CONCAT_INNER(a, b) a##b
#define POSTERN_CONFIG_CONCAT(a, b) POSTERN_CONFIG_CONCAT_INNER(a, b)
#define POSTERN_CONFIG_RETURN_IF_ERROR(expr) \
  do {                                       \
    absl::Status _status = (expr);           \
    if (!_status.ok()) return _status;       \
  } while (0)
#define POSTERN_CONFIG_ASSIGN_OR_RETURN(lhs, expr) \
  POSTERN_CONFIG_ASSIGN_OR_RETURN_IMPL(POSTERN_CONFIG_CONCAT(_statusor_, __LINE__), lhs, expr)
#define POSTERN_CONFIG_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                         \
  if (!tmp.ok()) return tmp.status();                        \
  lhs = std::move(tmp).value()

namespace postern {

const char* ProtocolName(Protocol p) {
  switch (p) {
    case Protocol::kImap:
      return "imap";
    case Protocol::kPop3:
      return "pop3";
  }
  return "unknown";
}

const char* TlsModeName(TlsMode m) {
  switch (m) {
    case TlsMode::kImplicit:
      return "implicit";
    case TlsMode::kStartTls:
      return "starttls";
    case TlsMode::kNone:
      return "none";
  }
  return "unknown";
}

absl::StatusOr<SocketAddress> ParseSocketAddress(const std::string& host, uint16_t port) {
  absl::string_view bare = host;
  const bool bracketed = bare.size() >= 2 && bare.front() == '[' && bare.back() == ']';
  if (bracketed) bare = bare.substr(1, bare.size() - 2);
  // inet_pton needs a NUL-terminated string; `bare` is a view into `host`.
  const std::string literal(bare);
  const bool usable = !literal.empty() && literal.find('\0') == std::string::npos;
  SocketAddress out;
  in_addr v4{};
  in6_addr v6{};
  // IPv4 only without brackets: "[1.2.3.4]" is not an address.
  if (usable && !bracketed && literal.find(':') == std::string::npos &&
      inet_pton(AF_INET, literal.c_str(), &v4) == 1) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr = v4;
    std::memcpy(&out.storage, &sin, sizeof(sin));
    out.length = sizeof(sin);
    out.text = absl::StrCat(literal, ":", port);
    return out;
  }
  if (usable && inet_pton(AF_INET6, literal.c_str(), &v6) == 1) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    sin6.sin6_addr = v6;
    std::memcpy(&out.storage, &sin6, sizeof(sin6));
    out.length = sizeof(sin6);
    out.text = absl::StrCat("[", literal, "]:", port);
    return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", absl::CHexEscape(host),
                   "' is not a numeric IPv4 or IPv6 address (host names are not resolved)"));
}

bool Cidr::Contains(const std::array<uint8_t, 16>& addr) const {
  int left = bits;
  for (size_t i = 0; i < 16 && left > 0; ++i, left -= 8) {
    const uint8_t mask = left >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - left));
    if ((addr[i] & mask) != (ip[i] & mask)) return false;
  }
  return true;
}

absl::StatusOr<Cidr> ParseCidr(absl::string_view text) {
  Cidr c;
  absl::string_view host = text;
  int bits = -1;
  const size_t slash = text.find('/');
  if (slash != absl::string_view::npos) {
    host = text.substr(0, slash);
    if (!absl::SimpleAtoi(text.substr(slash + 1), &bits) || bits < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad prefix length in '", text, "'"));
    }
  }
  const std::string h(host);
  in_addr v4{};
  in6_addr v6{};
  if (h.find(':') == std::string::npos && inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    if (bits > 32)
      return absl::InvalidArgumentError(absl::StrCat("prefix over 32 in '", text, "'"));
    c.ip[10] = c.ip[11] = 0xff;
    std::memcpy(&c.ip[12], &v4, 4);
    c.bits = 96 + (bits < 0 ? 32 : bits);
  } else if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (bits > 128)
      return absl::InvalidArgumentError(absl::StrCat("prefix over 128 in '", text, "'"));
    std::memcpy(c.ip.data(), &v6, 16);
    c.bits = bits < 0 ? 128 : bits;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a numeric address or address/prefix"));
  }
  return c;
}

namespace {

constexpr size_t kMaxConfigFileBytes = 16 << 20;
constexpr uint64_t kMaxSizeValue = uint64_t{1} << 30;  // sizes: at most 1024m
constexpr int kMaxWorkers = 256;
constexpr size_t kMaxNameLength = 255;

// 1-based line of a yaml-cpp mark, 0 when unknown.
int LineOf(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() || mark.line < 0 ? 0 : mark.line + 1;
}

// The offending text, quoted for an error message: escaped and cut short.
std::string Quote(absl::string_view text) {
  constexpr size_t kMaxShown = 64;
  std::string shown = absl::CHexEscape(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) shown += "...";
  return absl::StrCat("'", shown, "'");
}

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

// "a, b or c"
std::string Alternatives(std::initializer_list<absl::string_view> names) {
  std::string out;
  size_t i = 0;
  for (absl::string_view name : names) {
    if (i > 0) out += (i + 1 == names.size()) ? " or " : ", ";
    absl::StrAppend(&out, name);
    ++i;
  }
  return out;
}

std::string ChildPath(absl::string_view parent, absl::string_view key) {
  if (parent.empty()) return std::string(key);
  bool plain = !key.empty();
  for (char c : key) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '@' &&
        c != '+' && c != '.') {
      plain = false;
      break;
    }
  }
  if (plain) return absl::StrCat(parent, ".", key);
  return absl::StrCat(parent, "[\"", absl::CHexEscape(key), "\"]");
}

// A name that shows up in logs and greetings: printable ASCII, no spaces.
bool IsPrintableToken(absl::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  for (char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

bool SameAddress(const SocketAddress& a, const SocketAddress& b) {
  if (a.storage.ss_family != b.storage.ss_family) return false;
  if (a.storage.ss_family == AF_INET) {
    sockaddr_in x, y;
    std::memcpy(&x, &a.storage, sizeof(x));
    std::memcpy(&y, &b.storage, sizeof(y));
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  sockaddr_in6 x, y;
  std::memcpy(&x, &a.storage, sizeof(x));
  std::memcpy(&y, &b.storage, sizeof(y));
  return x.sin6_port == y.sin6_port &&
         std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof(x.sin6_addr)) == 0;
}

// Parses a run of decimal digits (no sign, no spaces); false on overflow.
bool ParseDigits(absl::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

// One `key: value` pair of a mapping, with where it came from.
struct Field {
  std::string key;
  std::string path;  // "listeners[1].tls"
  YAML::Node key_node;
  YAML::Node value;
};

// A mapping read by ReadMapping: its pairs in document order, indexed by key
// (routing.users may hold many entries).
struct Mapping {
  std::string path;
  int line = 0;  // for "required key missing"
  std::vector<Field> fields;
  absl::flat_hash_map<std::string, size_t> index;  // key -> position in `fields`

  const Field* Find(absl::string_view key) const {
    auto it = index.find(key);
    return it == index.end() ? nullptr : &fields[it->second];
  }
};

class Parser {
 public:
  Parser(std::string source, std::string base_dir)
      : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  absl::StatusOr<std::shared_ptr<const Config>> Parse(const YAML::Node& root);

 private:
  absl::Status Error(int line, absl::string_view path, absl::string_view what) const {
    std::string message =
        line > 0 ? absl::StrCat(source_, ":", line, ": ") : absl::StrCat(source_, ": ");
    if (!path.empty()) absl::StrAppend(&message, path, ": ");
    absl::StrAppend(&message, what);
    return absl::InvalidArgumentError(message);
  }
  // The line of the value, or of its key when the value has no position
  // (an empty value).
  absl::Status FieldError(const Field& f, absl::string_view what) const {
    int line = LineOf(f.value);
    if (line == 0 || f.value.IsNull()) line = LineOf(f.key_node);
    return Error(line, f.path, what);
  }
  absl::Status Missing(const Mapping& m, absl::string_view key) const {
    return Error(m.line, ChildPath(m.path, key), "required key missing");
  }

  // `known` empty: any key is accepted (routing.users).
  absl::StatusOr<Mapping> ReadMapping(const YAML::Node& node, const std::string& path,
                                      int fallback_line,
                                      std::initializer_list<absl::string_view> known) const;
  absl::StatusOr<Mapping> ReadMapping(const Field& f,
                                      std::initializer_list<absl::string_view> known) const {
    return ReadMapping(f.value, f.path, LineOf(f.key_node), known);
  }
  absl::Status ExpectSequence(const Field& f) const;

  // Scalars.
  absl::StatusOr<std::string> Scalar(const Field& f, absl::string_view expected) const;
  absl::StatusOr<uint64_t> Integer(const Field& f, uint64_t min, uint64_t max) const;
  absl::StatusOr<uint16_t> Port(const Field& f, uint16_t min) const;
  absl::StatusOr<bool> Bool(const Field& f) const;
  absl::StatusOr<std::string> Token(const Field& f) const;
  absl::StatusOr<size_t> OneOf(const Field& f,
                               std::initializer_list<absl::string_view> names) const;
  absl::StatusOr<uint64_t> Size(const Field& f, uint64_t min) const;
  absl::StatusOr<std::chrono::milliseconds> Duration(const Field& f) const;
  absl::StatusOr<std::string> FilePath(const Field& f, bool must_exist) const;
  // "host:port" / "[v6]:port", numeric; `example` is the port shown in errors.
  absl::StatusOr<SocketAddress> HostPort(const Field& f, absl::string_view example) const;
  // A list of SASL mechanism names.
  absl::StatusOr<std::vector<Credentials::Mechanism>> Mechanisms(const Field& f) const;
  // Each element of a sequence as a Field ("path[i]").
  std::vector<Field> Items(const Field& f) const;

  // Sections.
  absl::Status ParseListeners(const Field& f, Config& config) const;
  absl::StatusOr<ListenerConfig> ParseListener(const YAML::Node& node, const std::string& path,
                                               int fallback_line) const;
  absl::Status ParseTls(const Mapping& root, Config& config) const;
  absl::Status ParseBackends(const Field& f, Config& config) const;
  absl::StatusOr<BackendConfig> ParseBackend(const YAML::Node& node, const std::string& path,
                                             int fallback_line) const;
  absl::Status ParseRouting(const Field& f, Config& config) const;
  absl::Status ParseLimits(const Field& f, LimitsConfig& limits) const;
  absl::Status ParseTimeouts(const Field& f, TimeoutsConfig& timeouts) const;
  absl::Status ParseLog(const Field& f, LogConfig& log) const;
  absl::Status ParseGateway(const Field& f, GatewayConfig& gateway) const;
  absl::Status ParseDirectories(const Field& f, Config& config) const;
  absl::Status ParseAuthCache(const Field& f, AuthCacheConfig& cache) const;
  absl::Status ParseShards(const Field& f, Config& config) const;
  absl::Status ParseHealth(const Field& f, HealthConfig& health) const;
  absl::Status ParseRedis(const Field& f, RedisConfig& redis) const;
  absl::Status ParseAbuse(const Field& f, AbusePolicy& abuse) const;
  absl::Status ParseAdmin(const Field& f, AdminConfig& admin) const;
  // A file holding one line (a secret): its content.
  absl::StatusOr<std::string> OneLineFile(const Field& f, absl::string_view what) const;

  std::string source_;
  std::string base_dir_;  // relative paths resolve against it
  // The line of every key read (Config::lines).
  mutable absl::flat_hash_map<std::string, int> lines_;
};

absl::StatusOr<Mapping> Parser::ReadMapping(const YAML::Node& node, const std::string& path,
                                            int fallback_line,
                                            std::initializer_list<absl::string_view> known) const {
  Mapping m;
  m.path = path;
  m.line = LineOf(node);
  if (m.line == 0 || node.IsNull()) m.line = fallback_line;
  // An empty value ("routing:" with everything below commented out) is an
  // empty mapping.
  if (node.IsNull()) return m;
  if (!node.IsMap()) {
    const char* got = node.IsSequence() ? "a list" : "a single value";
    return Error(m.line, path, absl::StrCat("expected a mapping (key: value), got ", got));
  }
  for (YAML::const_iterator it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      return Error(LineOf(key) > 0 ? LineOf(key) : m.line, path,
                   "keys must be plain strings, got a list, mapping or empty key");
    }
    Field f;
    f.key = key.Scalar();
    f.path = ChildPath(path, f.key);
    f.key_node = key;
    f.value = it->second;
    const int line = LineOf(key) > 0 ? LineOf(key) : m.line;
    if (known.size() > 0) {
      bool is_known = false;
      for (absl::string_view k : known) is_known = is_known || k == f.key;
      if (!is_known) {
        return Error(
            line, f.path,
            absl::StrCat("unknown key (expected one of: ", absl::StrJoin(known, ", "), ")"));
      }
    }
    if (const Field* first = m.Find(f.key)) {
      return Error(line, f.path,
                   absl::StrCat("duplicate key (first at line ", LineOf(first->key_node), ")"));
    }
    lines_.emplace(f.path, line);
    m.index.emplace(f.key, m.fields.size());
    m.fields.push_back(std::move(f));
  }
  return m;
}

absl::Status Parser::ExpectSequence(const Field& f) const {
  if (f.value.IsSequence() || f.value.IsNull()) return absl::OkStatus();
  const char* got = f.value.IsMap() ? "a mapping" : "a single value";
  return FieldError(f, absl::StrCat("expected a list, got ", got));
}

absl::StatusOr<std::string> Parser::Scalar(const Field& f, absl::string_view expected) const {
  if (f.value.IsScalar()) return f.value.Scalar();
  const char* got = f.value.IsSequence() ? "a list" : f.value.IsMap() ? "a mapping" : "nothing";
  return FieldError(f, absl::StrCat("expected ", expected, ", got ", got));
}

absl::StatusOr<uint64_t> Parser::Integer(const Field& f, uint64_t min, uint64_t max) const {
  const std::string expected = absl::StrCat("an integer from ", min, " to ", max);
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(f, expected));
  uint64_t v = 0;
  if (!ParseDigits(text, &v) || v < min || v > max) {
    return FieldError(f, absl::StrCat("expected ", expected, ", got ", Quote(text)));
  }
  return v;
}

absl::StatusOr<uint16_t> Parser::Port(const Field& f, uint16_t min) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(f, min, 65535));
  return static_cast<uint16_t>(v);
}

absl::StatusOr<bool> Parser::Bool(const Field& f) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(f, "true or false"));
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "yes" || lower == "on") return true;
  if (lower == "false" || lower == "no" || lower == "off") return false;
  return FieldError(f, absl::StrCat("expected true or false, got ", Quote(text)));
}

absl::StatusOr<std::string> Parser::Token(const Field& f) const {
  constexpr absl::string_view kExpected = "a name (printable characters, no spaces)";
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(f, kExpected));
  if (!IsPrintableToken(text)) {
    return FieldError(f, absl::StrCat("expected ", kExpected, ", got ", Quote(text)));
  }
  return text;
}

absl::StatusOr<size_t> Parser::OneOf(const Field& f,
                                     std::initializer_list<absl::string_view> names) const {
  const std::string expected = Alternatives(names);
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(f, expected));
  size_t i = 0;
  for (absl::string_view name : names) {
    if (text == name) return i;
    ++i;
  }
  return FieldError(f, absl::StrCat("expected ", expected, ", got ", Quote(text)));
}

// A byte count: "65536", "64k" (KiB) or "1m" (MiB).
absl::StatusOr<uint64_t> Parser::Size(const Field& f, uint64_t min) const {
  constexpr absl::string_view kExpected = "a size in bytes like 65536, 64k or 1m";
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(f, kExpected));
  absl::string_view digits = text;
  uint64_t unit = 1;
  if (!digits.empty()) {
    const char last = absl::ascii_tolower(static_cast<unsigned char>(digits.back()));
    if (last == 'k') unit = 1024;
    if (last == 'm') unit = 1024 * 1024;
    if (unit != 1) digits.remove_suffix(1);
  }
  uint64_t v = 0;
  if (!ParseDigits(digits, &v)) {
    return FieldError(f, absl::StrCat("expected ", kExpected, ", got ", Quote(text)));
  }
  if (v > kMaxSizeValue / unit) {
    return FieldError(f, absl::StrCat("must be at most 1024m, got ", Quote(text)));
  }
  v *= unit;
  if (v < min) return FieldError(f, absl::StrCat("must be at least ", min, ", got ", Quote(text)));
  return v;
}

// "500ms", "30s", "10m", "1h"; a bare integer is seconds. Must be > 0.
absl::StatusOr<std::chrono::milliseconds> Parser::Duration(const Field& f) const {
  constexpr absl::string_view kExpected = "a duration like 500ms, 30s, 10m or 1h";
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(f, kExpected));
  absl::string_view digits = text;
  uint64_t unit_ms = 1000;
  if (absl::ConsumeSuffix(&digits, "ms")) {
    unit_ms = 1;
  } else if (absl::ConsumeSuffix(&digits, "s")) {
    unit_ms = 1000;
  } else if (absl::ConsumeSuffix(&digits, "m")) {
    unit_ms = 60 * 1000;
  } else if (absl::ConsumeSuffix(&digits, "h")) {
    unit_ms = 60 * 60 * 1000;
  }
  uint64_t v = 0;
  if (!ParseDigits(digits, &v)) {
    return FieldError(f, absl::StrCat("expected ", kExpected, ", got ", Quote(text)));
  }
  if (v == 0) return FieldError(f, absl::StrCat("must be greater than 0, got ", Quote(text)));
  constexpr uint64_t kMaxMs = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (v > kMaxMs / unit_ms) return FieldError(f, absl::StrCat("is too large: ", Quote(text)));
  return std::chrono::milliseconds(static_cast<int64_t>(v * unit_ms));
}

// A file path, relative ones resolved against the configuration file's
// directory. With `must_exist`, the file must be a readable regular file (its
// contents are TlsContext's business).
absl::StatusOr<std::string> Parser::FilePath(const Field& f, bool must_exist) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(f, "a file path"));
  if (text.empty()) return FieldError(f, "expected a file path, got ''");
  if (text.find('\0') != std::string::npos) {
    return FieldError(f, absl::StrCat("expected a file path, got ", Quote(text)));
  }
  std::string path = text;
  if (path.front() != '/' && !base_dir_.empty()) {
    path = base_dir_.back() == '/' ? absl::StrCat(base_dir_, text)
                                   : absl::StrCat(base_dir_, "/", text);
  }
  if (!must_exist) return path;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    return FieldError(f, absl::StrCat("cannot read ", Quote(path), ": ", ErrnoText(err)));
  }
  struct stat st {};
  const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  close(fd);
  if (!regular) return FieldError(f, absl::StrCat(Quote(path), " is not a regular file"));
  return path;
}

absl::StatusOr<SocketAddress> Parser::HostPort(const Field& f, absl::string_view example) const {
  const std::string expected =
      absl::StrCat("a numeric address with a port, like 127.0.0.1", example, " or [::1]", example);
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(f, expected));
  absl::string_view host;
  absl::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return FieldError(f, absl::StrCat("expected ", expected, ", got ", Quote(text)));
    }
    host = absl::string_view(text).substr(1, close - 1);
    port_text = absl::string_view(text).substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return FieldError(f, absl::StrCat("expected ", expected, ", got ", Quote(text)));
    }
    host = absl::string_view(text).substr(0, colon);
    port_text = absl::string_view(text).substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) {
      return FieldError(f, absl::StrCat("an IPv6 address needs brackets, like [::1]", example,
                                        ", got ", Quote(text)));
    }
  }
  uint64_t port = 0;
  if (!ParseDigits(port_text, &port) || port > 65535) {
    return FieldError(
        f, absl::StrCat("expected a port from 0 to 65535 after the ':', got ", Quote(text)));
  }
  auto parsed = ParseSocketAddress(std::string(host), static_cast<uint16_t>(port));
  if (!parsed.ok()) return FieldError(f, parsed.status().message());
  return *std::move(parsed);
}

absl::StatusOr<ListenerConfig> Parser::ParseListener(const YAML::Node& node,
                                                     const std::string& path,
                                                     int fallback_line) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m,
      ReadMapping(node, path, fallback_line,
                  {"name", "protocol", "address", "tls", "allow_plaintext_auth", "backlog",
                   "directory", "sasl_mechanisms", "proxy_protocol", "trusted_networks"}));
  ListenerConfig l;
  const Field* protocol = m.Find("protocol");
  if (protocol == nullptr) return Missing(m, "protocol");
  POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t p, OneOf(*protocol, {"imap", "pop3"}));
  l.protocol = p == 0 ? Protocol::kImap : Protocol::kPop3;

  const Field* address = m.Find("address");
  if (address == nullptr) return Missing(m, "address");
  POSTERN_CONFIG_ASSIGN_OR_RETURN(l.address, HostPort(*address, ":993"));

  if (const Field* f = m.Find("tls")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t t, OneOf(*f, {"implicit", "starttls", "none"}));
    l.tls = t == 0 ? TlsMode::kImplicit : t == 1 ? TlsMode::kStartTls : TlsMode::kNone;
  }
  if (const Field* f = m.Find("allow_plaintext_auth")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(l.allow_plaintext_auth, Bool(*f));
  }
  if (const Field* f = m.Find("backlog")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t backlog, Integer(*f, 1, 65535));
    l.backlog = static_cast<int>(backlog);
  }
  if (const Field* f = m.Find("name")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(l.name, Token(*f));
  } else {
    l.name = absl::StrCat(ProtocolName(l.protocol), "-", PortOf(l.address));
  }
  if (const Field* f = m.Find("directory")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(l.directory, Token(*f));
  }
  if (const Field* f = m.Find("sasl_mechanisms")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(l.sasl, Mechanisms(*f));
  }
  if (const Field* f = m.Find("proxy_protocol")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(l.proxy_protocol, Bool(*f));
  }
  if (const Field* f = m.Find("trusted_networks")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(*f));
    for (const Field& item : Items(*f)) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(item, "an address/prefix"));
      absl::StatusOr<Cidr> c = ParseCidr(text);
      if (!c.ok()) return FieldError(item, c.status().message());
      l.trusted_networks.push_back(*c);
    }
  }
  if (l.proxy_protocol && l.trusted_networks.empty()) {
    // Never guessed, never from anyone (DIGEST d.5).
    return Missing(m, "trusted_networks");
  }
  return l;
}

absl::Status Parser::ParseListeners(const Field& f, Config& config) const {
  POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(f));
  if (f.value.IsNull() || f.value.size() == 0) {
    return FieldError(f, "at least one listener is required");
  }
  size_t i = 0;
  for (YAML::const_iterator it = f.value.begin(); it != f.value.end(); ++it, ++i) {
    const std::string path = absl::StrCat(f.path, "[", i, "]");
    const YAML::Node item = *it;
    POSTERN_CONFIG_ASSIGN_OR_RETURN(ListenerConfig l,
                                    ParseListener(item, path, LineOf(f.key_node)));
    // Port 0 asks the kernel for a fresh port on each bind, so two such
    // listeners never collide (tests use it).
    if (PortOf(l.address) != 0) {
      for (size_t j = 0; j < config.listeners.size(); ++j) {
        if (SameAddress(config.listeners[j].address, l.address)) {
          // Point at this listener's address key.
          int line = LineOf(item);
          for (YAML::const_iterator kv = item.begin(); kv != item.end(); ++kv) {
            if (kv->first.IsScalar() && kv->first.Scalar() == "address") {
              line = LineOf(kv->second) > 0 ? LineOf(kv->second) : line;
            }
          }
          return Error(
              line, absl::StrCat(path, ".address"),
              absl::StrCat(Quote(l.address.text), " is already used by ", f.path, "[", j, "]"));
        }
      }
    }
    if (l.tls != TlsMode::kNone) config.tls_needed = true;
    config.listeners.push_back(std::move(l));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseTls(const Mapping& root, Config& config) const {
  const Field* section = root.Find("tls");
  const ListenerConfig* tls_listener = nullptr;
  size_t tls_index = 0;
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    if (config.listeners[i].tls != TlsMode::kNone) {
      tls_listener = &config.listeners[i];
      tls_index = i;
      break;
    }
  }
  if (section == nullptr) {
    if (tls_listener == nullptr) return absl::OkStatus();
    return Error(root.line, "tls",
                 absl::StrCat("required because listeners[", tls_index,
                              "] uses tls: ", TlsModeName(tls_listener->tls)));
  }
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m, ReadMapping(*section, {"certificate", "key", "certificates", "min_version",
                                        "session_tickets", "ticket_key_file"}));
  const bool needed = tls_listener != nullptr;
  // Without a TLS listener the section is checked for form only: the files
  // need not exist on a plaintext-only test setup.
  const Field* certificate = m.Find("certificate");
  const Field* key = m.Find("key");
  const Field* list = m.Find("certificates");
  if (list != nullptr && (certificate != nullptr || key != nullptr)) {
    return FieldError(*list, "give either certificates or certificate and key, not both");
  }
  if (list != nullptr) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(*list));
    std::vector<Field> items = Items(*list);
    if (items.empty()) return FieldError(*list, "at least one certificate is needed");
    for (const Field& item : items) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping c, ReadMapping(item, {"certificate", "key"}));
      TlsCertificateConfig tc;
      const Field* cf = c.Find("certificate");
      if (cf == nullptr) return Missing(c, "certificate");
      POSTERN_CONFIG_ASSIGN_OR_RETURN(tc.certificate, FilePath(*cf, needed));
      const Field* kf = c.Find("key");
      if (kf == nullptr) return Missing(c, "key");
      POSTERN_CONFIG_ASSIGN_OR_RETURN(tc.key, FilePath(*kf, needed));
      config.tls.certificates.push_back(std::move(tc));
    }
  } else {
    if (certificate != nullptr) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(config.tls.certificate, FilePath(*certificate, needed));
    } else if (needed) {
      return Missing(m, "certificate");
    }
    if (key != nullptr) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(config.tls.key, FilePath(*key, needed));
    } else if (needed) {
      return Missing(m, "key");
    }
  }
  if (const Field* f = m.Find("ticket_key_file")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config.tls.ticket_key_file, FilePath(*f, needed));
  }
  if (const Field* f = m.Find("min_version")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*f, {"1.2", "1.3"}));
    config.tls.min_version = v == 0 ? "1.2" : "1.3";
  }
  if (const Field* f = m.Find("session_tickets")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config.tls.session_tickets, Bool(*f));
  }
  return absl::OkStatus();
}

absl::StatusOr<BackendConfig> Parser::ParseBackend(const YAML::Node& node, const std::string& path,
                                                   int fallback_line) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m,
      ReadMapping(node, path, fallback_line,
                  {"name", "address", "imap_port", "pop3_port", "imap_login", "pop3_login",
                   "pop3_mode", "master_user", "master_password_file", "tls", "tls_ca_file",
                   "tls_name", "tls_verify", "send_proxy", "source_addresses"}));
  BackendConfig b;
  const Field* name = m.Find("name");
  if (name == nullptr) return Missing(m, "name");
  POSTERN_CONFIG_ASSIGN_OR_RETURN(b.name, Token(*name));

  const Field* address = m.Find("address");
  if (address == nullptr) return Missing(m, "address");
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string host,
                                  Scalar(*address, "a numeric IPv4 or IPv6 address"));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  b.host = host;

  if (const Field* f = m.Find("imap_port")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(b.imap_port, Port(*f, 1));
  }
  if (const Field* f = m.Find("pop3_port")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(b.pop3_port, Port(*f, 1));
  }
  auto imap = ParseSocketAddress(b.host, b.imap_port);
  if (!imap.ok()) return FieldError(*address, imap.status().message());
  b.imap = *std::move(imap);
  auto pop3 = ParseSocketAddress(b.host, b.pop3_port);
  if (!pop3.ok()) return FieldError(*address, pop3.status().message());
  b.pop3 = *std::move(pop3);

  if (const Field* f = m.Find("imap_login")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*f, {"login", "plain"}));
    b.imap_login = v == 0 ? ImapBackendLogin::kLogin : ImapBackendLogin::kPlain;
  }
  if (const Field* f = m.Find("pop3_login")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*f, {"user", "plain"}));
    b.pop3_login = v == 0 ? Pop3BackendLogin::kUser : Pop3BackendLogin::kPlain;
  }
  if (const Field* f = m.Find("pop3_mode")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*f, {"relay", "gateway"}));
    b.pop3_mode = v == 0 ? Pop3Mode::kRelay : Pop3Mode::kGateway;
  }
  const Field* master = m.Find("master_user");
  const Field* master_file = m.Find("master_password_file");
  if ((master == nullptr) != (master_file == nullptr)) {
    return master == nullptr ? Missing(m, "master_user") : Missing(m, "master_password_file");
  }
  if (master != nullptr) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(b.master_user, Token(*master));
    POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string path, FilePath(*master_file, true));
    POSTERN_CONFIG_ASSIGN_OR_RETURN(b.master_password_file, FilePath(*master_file, true));
    POSTERN_CONFIG_ASSIGN_OR_RETURN(b.master_password,
                                    OneLineFile(*master_file, "the master password"));
  }
  if (const Field* f = m.Find("tls")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*f, {"none", "implicit", "starttls"}));
    b.tls = static_cast<BackendTls>(v);
  }
  const Field* ca = m.Find("tls_ca_file");
  if (ca != nullptr) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(b.tls_ca_file, FilePath(*ca, true));
  }
  if (const Field* f = m.Find("tls_name")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(b.tls_name, Token(*f));
  }
  const Field* verify = m.Find("tls_verify");
  if (verify != nullptr) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(b.tls_verify, Bool(*verify));
  }
  if (b.tls != BackendTls::kNone && b.tls_verify && b.tls_ca_file.empty()) {
    // Verification needs the CAs; no verification needs saying so.
    return Missing(m, "tls_ca_file");
  }
  if (const Field* f = m.Find("send_proxy")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*f, {"none", "v2"}));
    b.send_proxy_v2 = v == 1;
  }
  if (const Field* f = m.Find("source_addresses")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(*f));
    for (const Field& item : Items(*f)) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(item, "a numeric address"));
      auto a = ParseSocketAddress(text, 0);
      if (!a.ok()) return FieldError(item, a.status().message());
      if (a->storage.ss_family != b.imap.storage.ss_family) {
        return FieldError(item, "not of the backend address's family");
      }
      b.source_addresses.push_back(*std::move(a));
    }
  }
  return b;
}

absl::Status Parser::ParseBackends(const Field& f, Config& config) const {
  POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(f));
  if (f.value.IsNull() || f.value.size() == 0) {
    return FieldError(f, "at least one backend is required");
  }
  size_t i = 0;
  for (YAML::const_iterator it = f.value.begin(); it != f.value.end(); ++it, ++i) {
    const std::string path = absl::StrCat(f.path, "[", i, "]");
    const YAML::Node item = *it;
    POSTERN_CONFIG_ASSIGN_OR_RETURN(BackendConfig b, ParseBackend(item, path, LineOf(f.key_node)));
    for (size_t j = 0; j < config.backends.size(); ++j) {
      if (config.backends[j].name == b.name) {
        int line = LineOf(item);
        for (YAML::const_iterator kv = item.begin(); kv != item.end(); ++kv) {
          if (kv->first.IsScalar() && kv->first.Scalar() == "name") {
            line = LineOf(kv->second) > 0 ? LineOf(kv->second) : line;
          }
        }
        return Error(line, absl::StrCat(path, ".name"),
                     absl::StrCat("duplicate backend name ", Quote(b.name), " (also ", f.path, "[",
                                  j, "])"));
      }
    }
    config.backends.push_back(std::move(b));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseRouting(const Field& f, Config& config) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m, ReadMapping(f, {"default_backend", "users", "ring_key", "redis_overrides",
                                 "override_cache_ttl"}));
  if (const Field* x = m.Find("ring_key")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*x, {"user", "domain"}));
    config.ring_domain_only = v == 1;
  }
  if (const Field* x = m.Find("redis_overrides")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config.redis_overrides, Bool(*x));
  }
  if (const Field* x = m.Find("override_cache_ttl")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config.override_cache_ttl, Duration(*x));
  }
  auto backend_index = [&](const Field& field) -> absl::StatusOr<size_t> {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string name, Scalar(field, "a backend name"));
    for (size_t i = 0; i < config.backends.size(); ++i) {
      if (config.backends[i].name == name) return i;
    }
    return FieldError(field, absl::StrCat("no backend named ", Quote(name)));
  };
  if (const Field* d = m.Find("default_backend")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config.default_backend, backend_index(*d));
  }
  if (const Field* u = m.Find("users")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping users, ReadMapping(*u, {}));
    for (const Field& user : users.fields) {
      if (user.key.empty()) return FieldError(user, "user names must not be empty");
      POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t index, backend_index(user));
      config.user_backends[user.key] = index;
    }
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseLimits(const Field& f, LimitsConfig& limits) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m,
      ReadMapping(f, {"max_line", "max_prelogin_literal", "error_budget", "relay_high_watermark",
                      "relay_low_watermark", "max_auth_attempts", "max_pending_replies",
                      "max_connections_per_ip", "max_prelogin_sessions", "max_sessions"}));
  constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
  if (const Field* x = m.Find("max_line")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(limits.max_line, Size(*x, 512));
  }
  if (const Field* x = m.Find("max_prelogin_literal")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(limits.max_prelogin_literal, Size(*x, 0));
  }
  if (const Field* x = m.Find("error_budget")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 1, kMaxU32));
    limits.error_budget = static_cast<uint32_t>(v);
  }
  const Field* high = m.Find("relay_high_watermark");
  if (high != nullptr) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(limits.relay_high_watermark, Size(*high, 1));
  }
  const Field* low = m.Find("relay_low_watermark");
  if (low != nullptr) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(limits.relay_low_watermark, Size(*low, 0));
  }
  if (limits.relay_low_watermark >= limits.relay_high_watermark) {
    if (low != nullptr) {
      return FieldError(
          *low, absl::StrCat("must be less than relay_high_watermark (",
                             limits.relay_high_watermark, "), got ", limits.relay_low_watermark));
    }
    // Only the high mark was given, below the default low mark.
    return FieldError(
        *high, absl::StrCat("must be greater than relay_low_watermark (",
                            limits.relay_low_watermark, "), got ", limits.relay_high_watermark));
  }
  if (const Field* x = m.Find("max_auth_attempts")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 1, kMaxU32));
    limits.max_auth_attempts = static_cast<uint32_t>(v);
  }
  if (const Field* x = m.Find("max_pending_replies")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(limits.max_pending_replies, Size(*x, 512));
  }
  if (const Field* x = m.Find("max_connections_per_ip")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 0, kMaxU32));
    limits.max_connections_per_ip = static_cast<uint32_t>(v);
  }
  if (const Field* x = m.Find("max_prelogin_sessions")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 0, kMaxU32));
    limits.max_prelogin_sessions = static_cast<uint32_t>(v);
  }
  if (const Field* x = m.Find("max_sessions")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 0, 10'000'000));
    limits.max_sessions = static_cast<uint32_t>(v);
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseTimeouts(const Field& f, TimeoutsConfig& timeouts) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m, ReadMapping(f, {"login", "login_deadline", "backend_connect", "backend_login",
                                 "imap_idle", "pop3_idle", "shutdown_grace", "shutdown_deadline"}));
  const std::pair<absl::string_view, TimeoutsConfig::Ms*> slots[] = {
      {"login", &timeouts.login},
      {"login_deadline", &timeouts.login_deadline},
      {"backend_connect", &timeouts.backend_connect},
      {"backend_login", &timeouts.backend_login},
      {"imap_idle", &timeouts.imap_idle},
      {"pop3_idle", &timeouts.pop3_idle},
      {"shutdown_grace", &timeouts.shutdown_grace},
      {"shutdown_deadline", &timeouts.shutdown_deadline},
  };
  for (const auto& [key, slot] : slots) {
    if (const Field* x = m.Find(key)) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(*slot, Duration(*x));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Parser::OneLineFile(const Field& f, absl::string_view what) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string path, FilePath(f, true));
  std::ifstream in(path);
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty() || secret.find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
    return FieldError(f, absl::StrCat("the file must hold one line, ", what));
  }
  return secret;
}

absl::Status Parser::ParseAdmin(const Field& f, AdminConfig& admin) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping m,
                                  ReadMapping(f, {"address", "token_file", "drain_spread"}));
  admin.enabled = true;
  if (const Field* x = m.Find("address")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(admin.address, HostPort(*x, ":9199"));
  } else {
    admin.address = *ParseSocketAddress("127.0.0.1", 9199);
  }
  const Field* token = m.Find("token_file");
  // Every route but the health checks can drain, kick and reload: never
  // without a token.
  if (token == nullptr) return Missing(m, "token_file");
  POSTERN_CONFIG_ASSIGN_OR_RETURN(admin.token_file, FilePath(*token, true));
  POSTERN_CONFIG_ASSIGN_OR_RETURN(admin.token, OneLineFile(*token, "the bearer token"));
  if (admin.token.size() < 16) {
    return FieldError(*token, "the token must be at least 16 characters");
  }
  if (const Field* x = m.Find("drain_spread")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(admin.drain_spread, Duration(*x));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseLog(const Field& f, LogConfig& log) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping m, ReadMapping(f, {"level", "format", "trace_users"}));
  if (const Field* x = m.Find("format")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*x, {"json", "text"}));
    log.json = v == 0;
  }
  if (const Field* x = m.Find("trace_users")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(*x));
    for (const Field& item : Items(*x)) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string user, Token(item));
      log.trace_users.push_back(std::move(user));
    }
  }
  if (const Field* x = m.Find("level")) {
    static constexpr const char* kLevels[] = {"trace", "debug", "info", "warn", "error"};
    POSTERN_CONFIG_ASSIGN_OR_RETURN(
        size_t v, OneOf(*x, {kLevels[0], kLevels[1], kLevels[2], kLevels[3], kLevels[4]}));
    log.level = kLevels[v];
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseGateway(const Field& f, GatewayConfig& gateway) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping m, ReadMapping(f, {"uidl_format", "seen"}));
  if (const Field* x = m.Find("uidl_format")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string v, Scalar(*x, "a UIDL format"));
    absl::StatusOr<UidlFormat> parsed = UidlFormat::Parse(v);
    if (!parsed.ok()) return FieldError(*x, parsed.status().message());
    gateway.uidl_format = v;
  }
  if (const Field* x = m.Find("seen")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v, OneOf(*x, {"deferred", "immediate", "never"}));
    constexpr Pop3GatewayOptions::Seen kSeen[] = {Pop3GatewayOptions::Seen::kDeferred,
                                                  Pop3GatewayOptions::Seen::kImmediate,
                                                  Pop3GatewayOptions::Seen::kNever};
    gateway.seen = kSeen[v];
  }
  return absl::OkStatus();
}

std::vector<Field> Parser::Items(const Field& f) const {
  std::vector<Field> out;
  size_t i = 0;
  for (YAML::const_iterator it = f.value.begin(); it != f.value.end(); ++it, ++i) {
    Field item;
    item.key = absl::StrCat(i);
    item.path = absl::StrCat(f.path, "[", i, "]");
    item.key_node = f.key_node;
    item.value = YAML::Node(*it);
    out.push_back(std::move(item));
  }
  return out;
}

absl::StatusOr<std::vector<Credentials::Mechanism>> Parser::Mechanisms(const Field& f) const {
  POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(f));
  std::vector<Credentials::Mechanism> out;
  for (const Field& item : Items(f)) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t v,
                                    OneOf(item, {"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}));
    constexpr Credentials::Mechanism kMechs[] = {
        Credentials::Mechanism::kPlain, Credentials::Mechanism::kSaslLogin,
        Credentials::Mechanism::kXoauth2, Credentials::Mechanism::kOauthbearer};
    for (Credentials::Mechanism m : out) {
      if (m == kMechs[v]) return FieldError(item, "listed twice");
    }
    out.push_back(kMechs[v]);
  }
  if (out.empty()) return FieldError(f, "at least one mechanism is required");
  return out;
}

absl::Status Parser::ParseDirectories(const Field& f, Config& config) const {
  POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(f));
  for (const Field& item : Items(f)) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(
        Mapping m, ReadMapping(item.value, item.path, LineOf(f.key_node),
                               {"name", "type", "path", "case_insensitive", "servers", "uri",
                                "timeout", "max_connections", "max_queue", "headers"}));
    DirectoryConfig d;
    const Field* name = m.Find("name");
    if (name == nullptr) return Missing(m, "name");
    POSTERN_CONFIG_ASSIGN_OR_RETURN(d.name, Token(*name));
    if (d.name == "passthrough") return FieldError(*name, "'passthrough' is built in");
    for (const DirectoryConfig& other : config.directories) {
      if (other.name == d.name) return FieldError(*name, "another directory has this name");
    }
    const Field* type = m.Find("type");
    if (type == nullptr) return Missing(m, "type");
    POSTERN_CONFIG_ASSIGN_OR_RETURN(size_t t,
                                    OneOf(*type, {"passthrough", "passwd-file", "auth-http"}));
    d.type = static_cast<DirectoryConfig::Type>(t);
    auto only = [&](absl::string_view key, DirectoryConfig::Type for_type) -> absl::Status {
      const Field* x = m.Find(key);
      if (x != nullptr && d.type != for_type) {
        return FieldError(
            *x, absl::StrCat("only for type ", for_type == DirectoryConfig::Type::kPasswdFile
                                                   ? "passwd-file"
                                                   : "auth-http"));
      }
      return absl::OkStatus();
    };
    for (absl::string_view k : {"path", "case_insensitive"}) {
      POSTERN_CONFIG_RETURN_IF_ERROR(only(k, DirectoryConfig::Type::kPasswdFile));
    }
    for (absl::string_view k : {"servers", "uri", "max_connections", "max_queue", "headers"}) {
      POSTERN_CONFIG_RETURN_IF_ERROR(only(k, DirectoryConfig::Type::kAuthHttp));
    }
    if (const Field* x = m.Find("timeout")) {
      if (d.type == DirectoryConfig::Type::kPassthrough) {
        return FieldError(*x, "only for type passwd-file or auth-http");
      }
      POSTERN_CONFIG_ASSIGN_OR_RETURN(d.timeout, Duration(*x));
    }
    if (d.type == DirectoryConfig::Type::kPasswdFile) {
      const Field* path = m.Find("path");
      if (path == nullptr) return Missing(m, "path");
      POSTERN_CONFIG_ASSIGN_OR_RETURN(d.path, FilePath(*path, true));
      if (const Field* x = m.Find("case_insensitive")) {
        POSTERN_CONFIG_ASSIGN_OR_RETURN(d.case_insensitive, Bool(*x));
      }
    }
    if (d.type == DirectoryConfig::Type::kAuthHttp) {
      const Field* servers = m.Find("servers");
      if (servers == nullptr) return Missing(m, "servers");
      POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(*servers));
      for (const Field& s : Items(*servers)) {
        POSTERN_CONFIG_ASSIGN_OR_RETURN(SocketAddress a, HostPort(s, ":8080"));
        d.servers.push_back(std::move(a));
      }
      if (d.servers.empty()) return FieldError(*servers, "at least one server is required");
      if (const Field* x = m.Find("uri")) {
        POSTERN_CONFIG_ASSIGN_OR_RETURN(d.uri, Token(*x));
        if (d.uri.front() != '/') return FieldError(*x, "must start with '/'");
      }
      if (const Field* x = m.Find("max_connections")) {
        POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 1, 1024));
        d.max_connections = static_cast<uint32_t>(v);
      }
      if (const Field* x = m.Find("max_queue")) {
        POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 0, 1'000'000));
        d.max_queue = static_cast<uint32_t>(v);
      }
      if (const Field* x = m.Find("headers")) {
        POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping h, ReadMapping(*x, {}));
        for (const Field& kv : h.fields) {
          // Header names are tokens; values printable without CR/LF
          // (RFC 9110 section 5.1, 5.5): nothing in the config can split a
          // request.
          bool ok = !kv.key.empty();
          for (char c : kv.key) {
            ok = ok && (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-');
          }
          if (!ok) return FieldError(kv, "a header name is letters, digits and '-'");
          POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string v, Scalar(kv, "a header value"));
          for (char c : v) {
            const auto u = static_cast<unsigned char>(c);
            if (u < 0x20 || u == 0x7f) return FieldError(kv, "control characters in the value");
          }
          d.headers.emplace_back(kv.key, std::move(v));
        }
      }
    }
    config.directories.push_back(std::move(d));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseShards(const Field& f, Config& config) const {
  POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(f));
  std::vector<Field> items = Items(f);
  std::vector<std::string> fallbacks;  // resolved once every shard is known
  std::vector<const Field*> fallback_fields;
  std::vector<Mapping> maps;
  for (const Field& item : items) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping m,
                                    ReadMapping(item.value, item.path, LineOf(f.key_node),
                                                {"name", "weight", "backends", "fallback"}));
    ShardConfig sh;
    const Field* name = m.Find("name");
    if (name == nullptr) return Missing(m, "name");
    POSTERN_CONFIG_ASSIGN_OR_RETURN(sh.name, Token(*name));
    for (const ShardConfig& other : config.shards) {
      if (other.name == sh.name) return FieldError(*name, "another shard has this name");
    }
    if (const Field* x = m.Find("weight")) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t w, Integer(*x, 1, ShardRing::kMaxWeight));
      sh.weight = static_cast<uint32_t>(w);
    }
    const Field* backends = m.Find("backends");
    if (backends == nullptr) return Missing(m, "backends");
    POSTERN_CONFIG_RETURN_IF_ERROR(ExpectSequence(*backends));
    for (const Field& b : Items(*backends)) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string bn, Scalar(b, "a backend name"));
      size_t index = config.backends.size();
      for (size_t i = 0; i < config.backends.size(); ++i) {
        if (config.backends[i].name == bn) index = i;
      }
      if (index == config.backends.size()) {
        return FieldError(b, absl::StrCat("no backend named ", Quote(bn)));
      }
      sh.backends.push_back(index);
    }
    if (sh.backends.empty()) return FieldError(*backends, "at least one backend is required");
    const Field* fb = m.Find("fallback");
    std::string fallback;
    if (fb != nullptr) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(fallback, Token(*fb));
    }
    fallbacks.push_back(std::move(fallback));
    fallback_fields.push_back(fb);
    config.shards.push_back(std::move(sh));
  }
  if (config.shards.empty()) return FieldError(f, "at least one shard is required");
  for (size_t i = 0; i < config.shards.size(); ++i) {
    if (fallbacks[i].empty()) continue;
    for (size_t j = 0; j < config.shards.size(); ++j) {
      if (config.shards[j].name == fallbacks[i]) config.shards[i].fallback = static_cast<int>(j);
    }
    if (config.shards[i].fallback < 0 || config.shards[i].fallback == static_cast<int>(i)) {
      return FieldError(*fallback_fields[i],
                        absl::StrCat("no other shard named ", Quote(fallbacks[i])));
    }
  }
  std::vector<ShardSpec> specs;
  for (const ShardConfig& sh : config.shards) specs.push_back({sh.name, sh.weight});
  absl::StatusOr<std::shared_ptr<const ShardRing>> ring = ShardRing::Build(std::move(specs));
  if (!ring.ok()) return FieldError(f, ring.status().message());
  config.ring = *std::move(ring);
  return absl::OkStatus();
}

absl::Status Parser::ParseHealth(const Field& f, HealthConfig& h) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m, ReadMapping(f, {"failures", "cooldown", "check_interval", "check_timeout",
                                 "disconnect_spread", "max_attempts"}));
  if (const Field* x = m.Find("failures")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 1, 1000));
    h.failures = static_cast<uint32_t>(v);
  }
  if (const Field* x = m.Find("cooldown")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(h.cooldown, Duration(*x));
  }
  if (const Field* x = m.Find("check_interval")) {
    // "0" turns active checks off (a duration must otherwise be > 0).
    POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(*x, "a duration or 0"));
    if (text == "0") {
      h.check_interval = std::chrono::milliseconds(0);
    } else {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(h.check_interval, Duration(*x));
    }
  }
  if (const Field* x = m.Find("check_timeout")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(h.check_timeout, Duration(*x));
  }
  if (const Field* x = m.Find("disconnect_spread")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(*x, "a duration or 0"));
    if (text == "0") {
      h.disconnect_spread = std::chrono::milliseconds(0);
    } else {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(h.disconnect_spread, Duration(*x));
    }
  }
  if (const Field* x = m.Find("max_attempts")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 1, 16));
    h.max_attempts = static_cast<uint32_t>(v);
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseRedis(const Field& f, RedisConfig& r) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping m, ReadMapping(f, {"address", "timeout", "prefix"}));
  const Field* a = m.Find("address");
  if (a == nullptr) return Missing(m, "address");
  POSTERN_CONFIG_ASSIGN_OR_RETURN(r.address, HostPort(*a, ":6379"));
  r.enabled = true;
  if (const Field* x = m.Find("timeout")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(r.timeout, Duration(*x));
  }
  if (const Field* x = m.Find("prefix")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(r.prefix, Token(*x));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseAbuse(const Field& f, AbusePolicy& a) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m,
      ReadMapping(f, {"enabled", "first_delay", "factor", "max_delay", "block_after_ip",
                      "block_after_user", "window", "block_for", "max_entries", "ipv6_prefix"}));
  if (const Field* x = m.Find("enabled")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(a.enabled, Bool(*x));
  }
  const std::pair<absl::string_view, std::chrono::milliseconds*> durations[] = {
      {"first_delay", &a.first_delay},
      {"max_delay", &a.max_delay},
      {"window", &a.window},
      {"block_for", &a.block_for},
  };
  for (const auto& [key, slot] : durations) {
    if (const Field* x = m.Find(key)) {
      POSTERN_CONFIG_ASSIGN_OR_RETURN(*slot, Duration(*x));
    }
  }
  if (const Field* x = m.Find("factor")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(std::string text, Scalar(*x, "a number from 1 to 10"));
    double v = 0;
    if (!absl::SimpleAtod(text, &v) || !(v >= 1.0 && v <= 10.0)) {
      return FieldError(*x, absl::StrCat("expected a number from 1 to 10, got ", Quote(text)));
    }
    a.factor = v;
  }
  constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
  if (const Field* x = m.Find("block_after_ip")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 0, kMaxU32));
    a.block_after_ip = static_cast<uint32_t>(v);
  }
  if (const Field* x = m.Find("block_after_user")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 0, kMaxU32));
    a.block_after_user = static_cast<uint32_t>(v);
  }
  if (const Field* x = m.Find("max_entries")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 32, 100'000'000));
    a.max_entries = static_cast<size_t>(v);
  }
  if (const Field* x = m.Find("ipv6_prefix")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 16, 128));
    a.ipv6_prefix = static_cast<int>(v);
  }
  // The one rule between two keys: at the line of max_delay (or of
  // first_delay when only it was given).
  if (a.max_delay < a.first_delay) {
    const Field* at = m.Find("max_delay") != nullptr ? m.Find("max_delay") : m.Find("first_delay");
    return FieldError(at != nullptr ? *at : f, "must not be shorter than abuse.first_delay");
  }
  absl::Status st = a.Validate();
  if (!st.ok()) {
    absl::string_view why = st.message();
    absl::ConsumePrefix(&why, "abuse: ");
    return FieldError(f, why);
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseAuthCache(const Field& f, AuthCacheConfig& cache) const {
  POSTERN_CONFIG_ASSIGN_OR_RETURN(Mapping m,
                                  ReadMapping(f, {"ttl", "negative_ttl", "max_entries"}));
  if (const Field* x = m.Find("ttl")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(cache.ttl, Duration(*x));
  }
  if (const Field* x = m.Find("negative_ttl")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(cache.negative_ttl, Duration(*x));
  }
  if (const Field* x = m.Find("max_entries")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*x, 0, 100'000'000));
    cache.max_entries = static_cast<size_t>(v);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Config>> Parser::Parse(const YAML::Node& root) {
  // An empty document is an empty top-level mapping; it then fails for want
  // of listeners.
  POSTERN_CONFIG_ASSIGN_OR_RETURN(
      Mapping m,
      ReadMapping(
          root, "", 1,
          {"workers",  "hostname",  "listeners",   "tls",       "backends",   "routing", "limits",
           "timeouts", "gateway",   "directories", "directory", "auth_cache", "shards",  "health",
           "redis",    "proxy_ttl", "abuse",       "log",       "admin",      "user",    "group"}));
  auto config = std::make_shared<Config>();
  config->source = source_;
  if (const Field* f = m.Find("workers")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*f, 0, kMaxWorkers));
    config->workers = static_cast<int>(v);
  }
  if (const Field* f = m.Find("hostname")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config->hostname, Token(*f));
  }
  const Field* listeners = m.Find("listeners");
  if (listeners == nullptr) return Missing(m, "listeners");
  POSTERN_CONFIG_RETURN_IF_ERROR(ParseListeners(*listeners, *config));
  POSTERN_CONFIG_RETURN_IF_ERROR(ParseTls(m, *config));
  const Field* backends = m.Find("backends");
  if (backends == nullptr) return Missing(m, "backends");
  POSTERN_CONFIG_RETURN_IF_ERROR(ParseBackends(*backends, *config));
  if (const Field* f = m.Find("routing")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseRouting(*f, *config));
  }
  if (const Field* f = m.Find("limits")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseLimits(*f, config->limits));
  }
  if (const Field* f = m.Find("timeouts")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseTimeouts(*f, config->timeouts));
  }
  if (const Field* f = m.Find("gateway")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseGateway(*f, config->gateway));
  }
  if (const Field* f = m.Find("directories")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseDirectories(*f, *config));
  }
  auto known_directory = [&](const std::string& name) {
    for (const DirectoryConfig& d : config->directories) {
      if (d.name == name) return true;
    }
    return name == "passthrough";
  };
  if (const Field* f = m.Find("directory")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config->directory, Token(*f));
    if (!known_directory(config->directory)) {
      return FieldError(*f, absl::StrCat("no directory named ", Quote(config->directory)));
    }
  }
  if (listeners != nullptr) {
    std::vector<Field> items = Items(*listeners);
    for (size_t i = 0; i < config->listeners.size() && i < items.size(); ++i) {
      const std::string& d = config->listeners[i].directory;
      if (d.empty() || known_directory(d)) continue;
      for (YAML::const_iterator kv = items[i].value.begin(); kv != items[i].value.end(); ++kv) {
        if (kv->first.IsScalar() && kv->first.Scalar() == "directory") {
          return Error(LineOf(kv->second), absl::StrCat(items[i].path, ".directory"),
                       absl::StrCat("no directory named ", Quote(d)));
        }
      }
    }
  }
  if (const Field* f = m.Find("auth_cache")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseAuthCache(*f, config->auth_cache));
  }
  if (const Field* f = m.Find("shards")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseShards(*f, *config));
  }
  if (const Field* f = m.Find("health")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseHealth(*f, config->health));
  }
  if (const Field* f = m.Find("redis")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseRedis(*f, config->redis));
  }
  if (const Field* f = m.Find("abuse")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseAbuse(*f, config->abuse));
  }
  config->abuse.redis_prefix = absl::StrCat(config->redis.prefix, "abuse:");
  if (const Field* f = m.Find("proxy_ttl")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(uint64_t v, Integer(*f, 1, 64));
    config->proxy_ttl = static_cast<uint32_t>(v);
  }
  // Rules between sections: reported at the line of the key (or of its
  // section when the key is a default).
  auto key_line = [&](absl::string_view section, absl::string_view key) {
    const Field* s = m.Find(section);
    if (s == nullptr) return 1;
    absl::StatusOr<Mapping> sm = ReadMapping(*s, {});
    const Field* k = sm.ok() ? sm->Find(key) : nullptr;
    return k != nullptr ? LineOf(k->key_node) : LineOf(s->key_node);
  };
  if (config->ring != nullptr) {
    // The ring places every user: a static map beside it would be silently
    // ignored.
    for (absl::string_view key : {"users", "default_backend"}) {
      const Field* r = m.Find("routing");
      absl::StatusOr<Mapping> rm =
          r != nullptr ? ReadMapping(*r, {}) : absl::StatusOr<Mapping>(Mapping{});
      if (rm.ok() && rm->Find(key) != nullptr) {
        return Error(key_line("routing", key), absl::StrCat("routing.", key),
                     "not used with shards (the ring places users; a directory's backend= or "
                     "shard= field, or a Redis override, places one elsewhere)");
      }
    }
  }
  if (config->redis_overrides && !config->redis.enabled) {
    return Error(key_line("routing", "redis_overrides"), "routing.redis_overrides",
                 "needs the redis section");
  }
  if (config->redis_overrides && config->ring == nullptr) {
    return Error(key_line("routing", "redis_overrides"), "routing.redis_overrides",
                 "needs shards (overrides move users off the ring)");
  }
  if (const Field* f = m.Find("log")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseLog(*f, config->log));
  }
  if (const Field* f = m.Find("admin")) {
    POSTERN_CONFIG_RETURN_IF_ERROR(ParseAdmin(*f, config->admin));
    for (const ListenerConfig& l : config->listeners) {
      if (PortOf(l.address) != 0 && l.address.text == config->admin.address.text) {
        return FieldError(*f, absl::StrCat("admin.address ", config->admin.address.text,
                                           " is already used by listener ", l.name));
      }
    }
  }
  if (const Field* f = m.Find("user")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config->user, Token(*f));
    char buf[4096];
    passwd pw{};
    passwd* found = nullptr;
    if (getpwnam_r(config->user.c_str(), &pw, buf, sizeof(buf), &found) != 0 || found == nullptr) {
      return FieldError(*f, absl::StrCat("no such user ", Quote(config->user)));
    }
    config->uid = found->pw_uid;
    config->gid = found->pw_gid;  // the user's group unless `group` says otherwise
  }
  if (const Field* f = m.Find("group")) {
    POSTERN_CONFIG_ASSIGN_OR_RETURN(config->group, Token(*f));
    char buf[4096];
    group gr{};
    group* found = nullptr;
    if (getgrnam_r(config->group.c_str(), &gr, buf, sizeof(buf), &found) != 0 || found == nullptr) {
      return FieldError(*f, absl::StrCat("no such group ", Quote(config->group)));
    }
    config->gid = found->gr_gid;
  }
  if (config->timeouts.shutdown_deadline < config->timeouts.shutdown_grace) {
    return Error(key_line("timeouts", "shutdown_deadline"), "timeouts.shutdown_deadline",
                 absl::StrCat("must not be shorter than timeouts.shutdown_grace (",
                              config->timeouts.shutdown_grace.count(), " ms)"));
  }
  config->lines = std::move(lines_);
  return std::shared_ptr<const Config>(std::move(config));
}

// The directory relative paths in `source` resolve against, made absolute so
// that a later chdir does not change what they mean.
std::string BaseDirectory(const std::string& source) {
  const size_t slash = source.rfind('/');
  std::string dir = slash == std::string::npos ? "" : source.substr(0, slash);
  if (slash == 0) dir = "/";
  if (!dir.empty() && dir.front() == '/') return dir;
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) return dir;
  if (dir.empty()) return cwd;
  return absl::StrCat(cwd, absl::string_view(cwd).back() == '/' ? "" : "/", dir);
}

}  // namespace

uint16_t PortOf(const SocketAddress& a) {
  if (a.storage.ss_family == AF_INET) {
    sockaddr_in sin;
    std::memcpy(&sin, &a.storage, sizeof(sin));
    return ntohs(sin.sin_port);
  }
  sockaddr_in6 sin6;
  std::memcpy(&sin6, &a.storage, sizeof(sin6));
  return ntohs(sin6.sin6_port);
}

absl::StatusOr<std::shared_ptr<const Config>> ParseConfig(const std::string& yaml,
                                                          const std::string& source_name) {
  try {
    YAML::Node root;
    try {
      root = YAML::Load(yaml);
    } catch (const YAML::Exception& e) {
      const std::string where = e.mark.is_null() || e.mark.line < 0
                                    ? source_name
                                    : absl::StrCat(source_name, ":", e.mark.line + 1);
      return absl::InvalidArgumentError(absl::StrCat(where, ": YAML syntax error: ", e.msg));
    }
    Parser parser(source_name, BaseDirectory(source_name));
    return parser.Parse(root);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": cannot read configuration: ", e.what()));
  } catch (...) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": cannot read configuration: unknown error"));
  }
}

absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open: ", ErrnoText(err)));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::string contents;
  char chunk[65536];
  while (true) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read: ", ErrnoText(err)));
    }
    if (n == 0) break;
    contents.append(chunk, static_cast<size_t>(n));
    if (contents.size() > kMaxConfigFileBytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than ", kMaxConfigFileBytes, " bytes"));
    }
  }
  close(fd);
  return ParseConfig(contents, path);
}

}  // namespace postern

#undef POSTERN_CONFIG_ASSIGN_OR_RETURN_IMPL
#undef POSTERN_CONFIG_ASSIGN_OR_RETURN
#undef POSTERN_CONFIG_RETURN_IF_ERROR
#undef POSTERN_CONFIG_CONCAT
#undef POSTERN_CONFIG_CONCAT_INNER
