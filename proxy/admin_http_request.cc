#include "proxy/admin_http.h"

// The parts of the admin endpoint without I/O: the request parser, the
// query decoder, the JSON writer and the response helpers (compiled alone
// into tests/fuzz/admin_http_request_fuzz.cc).

#include <http_parser.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "proxy/utf8.h"

namespace postern {
namespace {

// RFC 9110 section 5.6.2: tchar.
bool IsTchar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool FormDecode(absl::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out->push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out->push_back(c);
    }
  }
  return true;
}

}  // namespace

bool IsHttpToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTchar);
}

// --- AdminRequest -------------------------------------------------------------------

const std::string* AdminRequest::Header(absl::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

const std::string* AdminRequest::Param(absl::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return &value;
  }
  return nullptr;
}

bool ParseAdminQuery(absl::string_view query,
                     std::vector<std::pair<std::string, std::string>>* out) {
  out->clear();
  if (query.empty()) return true;
  for (absl::string_view part : absl::StrSplit(query, '&')) {
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    std::string key, value;
    if (!FormDecode(part.substr(0, eq), &key)) return false;
    if (eq != absl::string_view::npos && !FormDecode(part.substr(eq + 1), &value)) return false;
    out->emplace_back(std::move(key), std::move(value));
  }
  return true;
}

// --- the request parser -------------------------------------------------------------

struct AdminRequestParser::Callbacks {
  static AdminRequestParser* Self(http_parser* p) {
    return static_cast<AdminRequestParser*>(p->data);
  }
  static bool Count(AdminRequestParser* s, size_t n) {
    s->header_bytes_ += n;
    if (s->header_bytes_ <= s->limits_.max_header_bytes) return true;
    return s->SetError(431, absl::StrCat("request line and header fields over ",
                                         s->limits_.max_header_bytes, " bytes"));
  }
  static int OnMessageBegin(http_parser* p) {
    Self(p)->started_ = true;
    return 0;
  }
  static int OnUrl(http_parser* p, const char* at, size_t n) {
    AdminRequestParser* s = Self(p);
    if (s->request_.target.size() + n > s->limits_.max_target) {
      s->SetError(414, absl::StrCat("request-target over ", s->limits_.max_target, " bytes"));
      return 1;
    }
    if (!Count(s, n)) return 1;
    s->request_.target.append(at, n);
    return 0;
  }
  static int OnHeaderField(http_parser* p, const char* at, size_t n) {
    AdminRequestParser* s = Self(p);
    if (s->in_value_) s->FinishField();
    if (!s->have_field_) {
      // Trailer fields (after a chunked body) count against the same bounds.
      if (s->fields_ >= s->limits_.max_headers) {
        s->SetError(431, absl::StrCat("over ", s->limits_.max_headers, " header fields"));
        return 1;
      }
      ++s->fields_;
      if (!Count(s, 4)) return 1;  // ": " and CRLF
    }
    if (!Count(s, n)) return 1;
    s->have_field_ = true;
    // Trailer fields are read and dropped: none of them may change what the
    // header fields said (RFC 9110 section 6.5.1), and none is used here.
    if (s->headers_complete_) return 0;
    for (size_t i = 0; i < n; ++i) {
      s->field_.push_back(absl::ascii_tolower(static_cast<unsigned char>(at[i])));
    }
    s->have_field_ = true;
    return 0;
  }
  static int OnHeaderValue(http_parser* p, const char* at, size_t n) {
    AdminRequestParser* s = Self(p);
    if (!Count(s, n)) return 1;
    s->in_value_ = true;
    if (!s->headers_complete_) s->value_.append(at, n);
    return 0;
  }
  static int OnHeadersComplete(http_parser* p) {
    AdminRequestParser* s = Self(p);
    if (s->in_value_ || s->have_field_) s->FinishField();
    AdminRequest& r = s->request_;
    r.method = http_method_str(static_cast<http_method>(p->method));
    if (p->http_major != 1 || p->http_minor > 1) {
      s->SetError(505, absl::StrCat("HTTP/", p->http_major, ".", p->http_minor,
                                    " is not supported (HTTP/1.0 and HTTP/1.1 are)"));
      return -1;
    }
    r.version_minor = p->http_minor;
    if ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > s->limits_.max_body) {
      s->SetError(413, absl::StrCat("request content over ", s->limits_.max_body, " bytes"));
      return -1;
    }
    if (!s->FinishTarget() || !s->CheckHeaders()) return -1;
    s->headers_complete_ = true;
    return 0;
  }
  static int OnBody(http_parser* p, const char* at, size_t n) {
    AdminRequestParser* s = Self(p);
    if (s->request_.body.size() + n > s->limits_.max_body) {
      s->SetError(413, absl::StrCat("request content over ", s->limits_.max_body, " bytes"));
      return 1;
    }
    s->request_.body.append(at, n);
    return 0;
  }
  static int OnChunkHeader(http_parser* p) {
    // A chunk that would pass the bound is refused before its data comes.
    AdminRequestParser* s = Self(p);
    if (p->content_length > s->limits_.max_body - s->request_.body.size()) {
      s->SetError(413, absl::StrCat("request content over ", s->limits_.max_body, " bytes"));
      return 1;
    }
    return 0;
  }
  static int OnMessageComplete(http_parser* p) {
    AdminRequestParser* s = Self(p);
    // After an upgrade (or CONNECT) the bytes that follow are another
    // protocol: answer, then close.
    s->request_.keep_alive = http_should_keep_alive(p) != 0 && p->upgrade == 0;
    s->result_ = Result::kDone;
    http_parser_pause(p, 1);
    return 0;
  }
  static const http_parser_settings* Settings() {
    static const http_parser_settings settings = [] {
      http_parser_settings st;
      http_parser_settings_init(&st);
      st.on_message_begin = &OnMessageBegin;
      st.on_url = &OnUrl;
      st.on_header_field = &OnHeaderField;
      st.on_header_value = &OnHeaderValue;
      st.on_headers_complete = &OnHeadersComplete;
      st.on_body = &OnBody;
      st.on_message_complete = &OnMessageComplete;
      st.on_chunk_header = &OnChunkHeader;
      return st;
    }();
    return &settings;
  }
};

AdminRequestParser::AdminRequestParser(AdminHttpLimits limits)
    : limits_(limits), parser_(std::make_unique<http_parser>()) {
  Reset();
}

AdminRequestParser::~AdminRequestParser() = default;

void AdminRequestParser::Reset() {
  http_parser_init(parser_.get(), HTTP_REQUEST);
  parser_->data = this;
  request_ = AdminRequest();
  result_ = Result::kNeedMore;
  error_status_ = 0;
  error_.clear();
  started_ = false;
  headers_complete_ = false;
  header_bytes_ = 0;
  total_bytes_ = 0;
  fields_ = 0;
  field_.clear();
  value_.clear();
  in_value_ = false;
  have_field_ = false;
}

bool AdminRequestParser::SetError(int status, std::string why) {
  if (error_status_ == 0) {
    error_status_ = status;
    error_ = std::move(why);
  }
  return false;
}

void AdminRequestParser::FinishField() {
  absl::string_view v = absl::StripAsciiWhitespace(value_);
  if (!headers_complete_) request_.headers.emplace_back(std::move(field_), std::string(v));
  field_.clear();
  value_.clear();
  in_value_ = false;
  have_field_ = false;
}

bool AdminRequestParser::FinishTarget() {
  AdminRequest& r = request_;
  http_parser_url u;
  http_parser_url_init(&u);
  if (r.target.empty() || http_parser_parse_url(r.target.data(), r.target.size(),
                                                parser_->method == HTTP_CONNECT, &u) != 0) {
    return SetError(400, "malformed request-target");
  }
  auto field = [&](int f) -> absl::string_view {
    if ((u.field_set & (1 << f)) == 0) return {};
    return absl::string_view(r.target).substr(u.field_data[f].off, u.field_data[f].len);
  };
  if (parser_->method == HTTP_CONNECT) {
    r.path = std::string(field(UF_HOST));  // authority-form: no path to route
  } else {
    r.path = std::string(field(UF_PATH));
    if (r.path.empty()) r.path = "/";  // absolute-form without a path (RFC 9112 section 3.2.2)
  }
  r.query = std::string(field(UF_QUERY));
  if (!ParseAdminQuery(r.query, &r.params)) return SetError(400, "malformed query string");
  return true;
}

bool AdminRequestParser::CheckHeaders() {
  AdminRequest& r = request_;
  int hosts = 0;
  for (const auto& [name, value] : r.headers) {
    // RFC 9112 section 5.1: no whitespace inside or before the colon
    // (http-parser lets a space through in field names).
    if (!IsHttpToken(name)) return SetError(400, "malformed field name");
    // RFC 9110 section 5.5: CR, LF and NUL are never part of a field value
    // (an obs-fold, RFC 9112 section 5.2, is refused with them).
    for (char c : value) {
      if (c == '\r' || c == '\n' || c == '\0') {
        return SetError(400, absl::StrCat("bad byte in the value of ", name));
      }
    }
    if (name == "host") ++hosts;
    if (name == "expect") {
      // RFC 9110 section 10.1.1: 100-continue is the only expectation;
      // HTTP/1.0 clients cannot have sent it meaningfully.
      if (absl::EqualsIgnoreCase(value, "100-continue")) {
        r.expect_continue = r.version_minor >= 1;
      } else {
        return SetError(417, absl::StrCat("unsupported expectation"));
      }
    }
  }
  // RFC 9112 section 3.2: exactly one Host in HTTP/1.1 (at most one in 1.0).
  if (hosts > 1 || (hosts == 0 && r.version_minor >= 1)) {
    return SetError(400, hosts == 0 ? "no Host header field" : "more than one Host header field");
  }
  return true;
}

AdminRequestParser::Result AdminRequestParser::Feed(absl::string_view bytes, size_t* consumed) {
  *consumed = 0;
  if (result_ != Result::kNeedMore || bytes.empty()) return result_;
  // The whole request (chunk framing included) is bounded too.
  const size_t max_total = limits_.max_request();
  bytes = bytes.substr(0, max_total - total_bytes_);
  const size_t n =
      http_parser_execute(parser_.get(), Callbacks::Settings(), bytes.data(), bytes.size());
  *consumed = n;
  total_bytes_ += n;
  if (result_ == Result::kDone) return result_;
  const auto err = static_cast<http_errno>(parser_->http_errno);
  if (err != HPE_OK || n != bytes.size()) {
    if (error_status_ == 0) {
      switch (err) {
        case HPE_HEADER_OVERFLOW:
          SetError(431, "request header too large");
          break;
        case HPE_INVALID_TRANSFER_ENCODING:
          // RFC 9112 section 6.1: a transfer coding we do not know.
          SetError(501, "unsupported transfer coding");
          break;
        default:
          SetError(400, absl::StrCat("malformed request: ", http_errno_description(err)));
          break;
      }
    }
    result_ = Result::kError;
    return result_;
  }
  if (total_bytes_ >= max_total) {
    SetError(413, "request too large");
    result_ = Result::kError;
  }
  return result_;
}

// --- JSON ----------------------------------------------------------------------------

void AppendJsonString(std::string* out, absl::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t bad = 0;
      const size_t n = Utf8SequenceLength(s.substr(i), &bad);
      if (n == 0) {
        out->append(kUtf8Replacement.data(), kUtf8Replacement.size());
        i += bad;
        continue;
      }
      // U+2028 and U+2029 (E2 80 A8 / A9): line terminators in JavaScript.
      if (n == 3 && c == 0xE2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
          (static_cast<unsigned char>(s[i + 2]) & 0xFE) == 0xA8) {
        out->append(static_cast<unsigned char>(s[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029");
      } else {
        out->append(s.data() + i, n);
      }
      i += n;
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

void JsonWriter::BeforeValue() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!has_item_.empty()) {
    if (has_item_.back()) out_.push_back(',');
    has_item_.back() = true;
  }
}

JsonWriter& JsonWriter::BeginObject() {
  BeforeValue();
  out_.push_back('{');
  has_item_.push_back(false);
  return *this;
}

JsonWriter& JsonWriter::EndObject() {
  assert(!has_item_.empty() && !after_key_);
  if (!has_item_.empty()) has_item_.pop_back();
  out_.push_back('}');
  return *this;
}

JsonWriter& JsonWriter::BeginArray() {
  BeforeValue();
  out_.push_back('[');
  has_item_.push_back(false);
  return *this;
}

JsonWriter& JsonWriter::EndArray() {
  assert(!has_item_.empty() && !after_key_);
  if (!has_item_.empty()) has_item_.pop_back();
  out_.push_back(']');
  return *this;
}

JsonWriter& JsonWriter::Key(absl::string_view key) {
  BeforeValue();
  AppendJsonString(&out_, key);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(absl::string_view s) {
  BeforeValue();
  AppendJsonString(&out_, s);
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t v) {
  BeforeValue();
  absl::StrAppend(&out_, v);
  return *this;
}

JsonWriter& JsonWriter::Uint(uint64_t v) {
  BeforeValue();
  absl::StrAppend(&out_, v);
  return *this;
}

JsonWriter& JsonWriter::Double(double v) {
  BeforeValue();
  if (!std::isfinite(v)) {
    out_.append("null");
  } else {
    // %.17g reads back as the same double and is valid JSON (no "inf").
    char buf[32];
    const int n = snprintf(buf, sizeof(buf), "%.17g", v);
    out_.append(buf, static_cast<size_t>(n));
  }
  return *this;
}

JsonWriter& JsonWriter::Bool(bool v) {
  BeforeValue();
  out_.append(v ? "true" : "false");
  return *this;
}

JsonWriter& JsonWriter::Null() {
  BeforeValue();
  out_.append("null");
  return *this;
}

// --- responses ----------------------------------------------------------------------

AdminResponse AdminResponse::Text(int status, std::string body) {
  AdminResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

AdminResponse AdminResponse::Json(int status, std::string body) {
  AdminResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

AdminResponse AdminResponse::Error(int status, absl::string_view message) {
  JsonWriter j;
  j.BeginObject().Key("error").String(message).EndObject();
  std::string body = std::move(j).Take();
  body.push_back('\n');
  return Json(status, std::move(body));
}

}  // namespace postern
