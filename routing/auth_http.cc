#include "routing/auth_http.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

// Exported by libhttp_parser 2.9 (and used by its own tests) but missing from
// Debian's header: whether the body runs to the end of the stream.
extern "C" int http_message_needs_eof(const http_parser* parser);

namespace postern {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

std::string Escape(absl::string_view in, bool strict) {
  std::string out;
  out.reserve(in.size());
  for (char ch : in) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == ' ' || c == '%' || (strict && c == 0x7f)) {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

bool IsHeaderNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-';
}

bool IsHeaderName(absl::string_view name, size_t max) {
  return !name.empty() && name.size() <= max &&
         std::all_of(name.begin(), name.end(), IsHeaderNameChar);
}

void AppendHeader(std::string* out, absl::string_view name, absl::string_view value) {
  absl::StrAppend(out, name, ": ", value, "\r\n");
}

// nginx's ngx_atoi: digits only, at least one, no sign, no overflow.
std::optional<int64_t> NginxAtoi(absl::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// A response code the session can put in brackets or after -ERR as is.
bool IsSafeCode(absl::string_view code) {
  if (code.empty() || code.size() > 64) return false;
  return std::all_of(code.begin(), code.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '/' ||
           c == '_';
  });
}

// The names kept while parsing (lower case).
constexpr absl::string_view kWantedHeaders[] = {
    "auth-status",     "auth-server",  "auth-port",  "auth-user",   "auth-pass",      "auth-wait",
    "auth-error-code", "auth-backend", "auth-shard", "auth-master", "auth-cache-ttl",
};
constexpr size_t kMaxWantedName = 15;  // "auth-error-code"

bool Wanted(absl::string_view lower_name) {
  return std::find(std::begin(kWantedHeaders), std::end(kWantedHeaders), lower_name) !=
         std::end(kWantedHeaders);
}

}  // namespace

std::string AuthHttpEscape(absl::string_view in) { return Escape(in, false); }
std::string AuthHttpEscapeStrict(absl::string_view in) { return Escape(in, true); }

absl::string_view AuthHttpMethod(DirectoryRequest::Mechanism m) {
  switch (m) {
    case DirectoryRequest::Mechanism::kPlain:
    case DirectoryRequest::Mechanism::kLogin:
      return "plain";
    case DirectoryRequest::Mechanism::kXoauth2:
      return "xoauth2";
    case DirectoryRequest::Mechanism::kOauthbearer:
      return "oauthbearer";
  }
  return "plain";
}

absl::Status ValidateAuthHttpHeader(absl::string_view name, absl::string_view value) {
  if (!IsHeaderName(name, 256)) {
    return absl::InvalidArgumentError(
        absl::StrCat("header name \"", AuthHttpEscapeStrict(name), "\" is not [A-Za-z0-9-]+"));
  }
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("header ", name, ": the value holds a control character"));
    }
  }
  return absl::OkStatus();
}

std::string BuildAuthHttpRequest(const AuthHttpRequestConfig& config,
                                 const DirectoryRequest& request) {
  std::string out;
  out.reserve(512 + request.user.size() * 3 + request.secret.size() * 3);
  // What nginx sends, in nginx's order (ngx_mail_auth_http_create_request).
  absl::StrAppend(&out, "GET ", config.uri, " HTTP/1.1\r\n");
  AppendHeader(&out, "Host", config.host);
  AppendHeader(&out, "Auth-Method", AuthHttpMethod(request.mechanism));
  AppendHeader(&out, "Auth-User", AuthHttpEscape(request.user));
  AppendHeader(&out, "Auth-Pass", AuthHttpEscape(request.secret));
  AppendHeader(&out, "Auth-Protocol", AuthHttpEscapeStrict(request.protocol));
  AppendHeader(&out, "Auth-Login-Attempt", absl::StrCat(request.attempt));
  AppendHeader(&out, "Client-IP", AuthHttpEscapeStrict(request.client_ip));
  if (request.tls) {
    AppendHeader(&out, "Auth-SSL", "on");
    if (!request.tls_version.empty()) {
      AppendHeader(&out, "Auth-SSL-Protocol", AuthHttpEscapeStrict(request.tls_version));
    }
    if (!request.tls_cipher.empty()) {
      AppendHeader(&out, "Auth-SSL-Cipher", AuthHttpEscapeStrict(request.tls_cipher));
    }
  }
  // Postern's own.
  AppendHeader(&out, "Client-Port", absl::StrCat(request.client_port));
  AppendHeader(&out, "Local-IP", AuthHttpEscapeStrict(request.local_ip));
  AppendHeader(&out, "Local-Port", absl::StrCat(request.local_port));
  if (!request.sni.empty()) AppendHeader(&out, "Auth-SNI", AuthHttpEscapeStrict(request.sni));
  if (!request.authzid.empty() && request.authzid != request.user) {
    AppendHeader(&out, "Auth-Authzid", AuthHttpEscapeStrict(request.authzid));
  }
  if (!request.session_id.empty()) {
    AppendHeader(&out, "Auth-Session-Id", AuthHttpEscapeStrict(request.session_id));
  }
  for (const auto& [name, value] : request.client_id) {
    if (!IsHeaderName(name, 64)) continue;
    AppendHeader(&out, absl::StrCat("Auth-ID-", name), AuthHttpEscapeStrict(value));
  }
  // nginx's auth_http_header lines come last.
  for (const auto& [name, value] : config.headers) AppendHeader(&out, name, value);
  out.append("\r\n");
  return out;
}

// --- the response parser ----------------------------------------------------------

struct AuthHttpResponseParser::Callbacks {
  static AuthHttpResponseParser* Self(http_parser* p) {
    return static_cast<AuthHttpResponseParser*>(p->data);
  }
  // Counts status line and header bytes against the bound (2 for each line's
  // CRLF, 2 for ": ").
  static bool Count(AuthHttpResponseParser* s, size_t n) {
    s->header_bytes_ += n;
    if (s->header_bytes_ <= kAuthHttpMaxHeaderBytes) return true;
    s->error_ = absl::StrCat("response headers over ", kAuthHttpMaxHeaderBytes, " bytes");
    return false;
  }
  static int OnMessageBegin(http_parser* p) {
    Self(p)->started_ = true;
    return 0;
  }
  static int OnStatus(http_parser* p, const char*, size_t n) { return Count(Self(p), n) ? 0 : 1; }
  static int OnHeaderField(http_parser* p, const char* at, size_t n) {
    AuthHttpResponseParser* s = Self(p);
    if (s->in_value_) s->FinishHeader();
    if (!s->have_field_ && !Count(s, 4)) return 1;
    if (!Count(s, n)) return 1;
    // Longer names are none of ours: keep one byte past the longest.
    for (size_t i = 0; i < n && s->field_.size() <= kMaxWantedName; ++i) {
      s->field_.push_back(absl::ascii_tolower(static_cast<unsigned char>(at[i])));
    }
    s->have_field_ = true;
    return 0;
  }
  static int OnHeaderValue(http_parser* p, const char* at, size_t n) {
    AuthHttpResponseParser* s = Self(p);
    if (!Count(s, n)) return 1;
    s->in_value_ = true;
    if (Wanted(s->field_)) s->value_.append(at, n);
    return 0;
  }
  static int OnHeadersComplete(http_parser* p) {
    AuthHttpResponseParser* s = Self(p);
    if (s->in_value_ || s->have_field_) s->FinishHeader();
    s->response_.http_status = static_cast<int>(p->status_code);
    if (p->status_code < 200) {
      s->error_ = absl::StrCat("informational response ", p->status_code, " instead of an answer");
      return -1;
    }
    if (http_message_needs_eof(p)) {
      // The body runs to the end of the stream: the answer is complete now
      // (nginx reads only headers) and the connection cannot be reused.
      s->response_.keep_alive = false;
      s->result_ = Result::kDone;
      http_parser_pause(p, 1);
    }
    return 0;
  }
  static int OnBody(http_parser* p, const char*, size_t n) {
    AuthHttpResponseParser* s = Self(p);
    s->body_bytes_ += n;
    if (s->body_bytes_ <= kAuthHttpMaxBodyBytes) return 0;
    s->error_ = absl::StrCat("response body over ", kAuthHttpMaxBodyBytes, " bytes");
    return 1;
  }
  static int OnMessageComplete(http_parser* p) {
    AuthHttpResponseParser* s = Self(p);
    s->response_.keep_alive = http_should_keep_alive(p) != 0;
    s->result_ = Result::kDone;
    http_parser_pause(p, 1);
    return 0;
  }
  static const http_parser_settings* Settings() {
    static const http_parser_settings settings = [] {
      http_parser_settings st;
      http_parser_settings_init(&st);
      st.on_message_begin = &OnMessageBegin;
      st.on_status = &OnStatus;
      st.on_header_field = &OnHeaderField;
      st.on_header_value = &OnHeaderValue;
      st.on_headers_complete = &OnHeadersComplete;
      st.on_body = &OnBody;
      st.on_message_complete = &OnMessageComplete;
      return st;
    }();
    return &settings;
  }
};

AuthHttpResponseParser::AuthHttpResponseParser() : parser_(std::make_unique<http_parser>()) {
  Reset();
}

AuthHttpResponseParser::~AuthHttpResponseParser() = default;

void AuthHttpResponseParser::Reset() {
  http_parser_init(parser_.get(), HTTP_RESPONSE);
  parser_->data = this;
  response_ = AuthHttpResponse();
  result_ = Result::kNeedMore;
  error_.clear();
  started_ = false;
  header_bytes_ = 0;
  body_bytes_ = 0;
  field_.clear();
  value_.clear();
  in_value_ = false;
  have_field_ = false;
}

void AuthHttpResponseParser::FinishHeader() {
  absl::string_view v = absl::StripTrailingAsciiWhitespace(value_);
  v = absl::StripLeadingAsciiWhitespace(v);
  AuthHttpResponse& r = response_;
  const absl::string_view f = field_;
  if (f == "auth-status") {
    // ngx_mail_auth_http_process_headers: "OK" and "WAIT" are compared
    // byte for byte; anything else is the error message.
    r.has_status = true;
    if (v == "OK") {
    } else if (v == "WAIT") {
      r.status_wait = true;
    } else {
      r.refused = true;
      r.refusal = std::string(v);
    }
  } else if (f == "auth-server") {
    r.server = std::string(v);
  } else if (f == "auth-port") {
    r.port = std::string(v);
  } else if (f == "auth-user") {
    r.user = std::string(v);
  } else if (f == "auth-pass") {
    r.pass = std::string(v);
  } else if (f == "auth-wait") {
    // nginx keeps the previous value when this one is not a number.
    if (std::optional<int64_t> n = NginxAtoi(v)) r.wait_seconds = *n;
  } else if (f == "auth-error-code") {
    r.error_code = std::string(v);
  } else if (f == "auth-backend") {
    r.backend = std::string(v);
  } else if (f == "auth-shard") {
    r.shard = std::string(v);
  } else if (f == "auth-master") {
    r.master = std::string(v);
  } else if (f == "auth-cache-ttl") {
    r.cache_ttl = std::string(v);
  }
  field_.clear();
  value_.clear();
  in_value_ = false;
  have_field_ = false;
}

AuthHttpResponseParser::Result AuthHttpResponseParser::Fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  result_ = Result::kError;
  return result_;
}

AuthHttpResponseParser::Result AuthHttpResponseParser::Feed(absl::string_view bytes,
                                                            size_t* consumed) {
  *consumed = 0;
  if (result_ != Result::kNeedMore || bytes.empty()) return result_;
  const size_t n =
      http_parser_execute(parser_.get(), Callbacks::Settings(), bytes.data(), bytes.size());
  *consumed = n;
  if (result_ == Result::kDone) return result_;  // paused at the end of the response
  const auto err = static_cast<http_errno>(parser_->http_errno);
  if (err != HPE_OK) {
    return Fail(absl::StrCat("malformed response: ", http_errno_description(err)));
  }
  if (n != bytes.size()) return Fail("malformed response");
  return result_;
}

AuthHttpResponseParser::Result AuthHttpResponseParser::FeedEof() {
  if (result_ != Result::kNeedMore) return result_;
  if (!started_) return Fail("connection closed before a response");
  http_parser_execute(parser_.get(), Callbacks::Settings(), nullptr, 0);
  if (result_ == Result::kDone) return result_;
  return Fail("connection closed in the middle of the response");
}

absl::StatusOr<AuthHttpResponse> ParseAuthHttpResponse(absl::string_view bytes) {
  AuthHttpResponseParser parser;
  size_t consumed = 0;
  AuthHttpResponseParser::Result r = parser.Feed(bytes, &consumed);
  if (r == AuthHttpResponseParser::Result::kNeedMore) r = parser.FeedEof();
  if (r != AuthHttpResponseParser::Result::kDone) {
    return absl::InvalidArgumentError(parser.error());
  }
  return parser.response();
}

// --- what an answer means ----------------------------------------------------------

absl::StatusOr<std::string> ParseAuthHttpServerAddress(absl::string_view value) {
  absl::string_view v = value;
  if (v.size() >= 2 && v.front() == '[' && v.back() == ']') v = v.substr(1, v.size() - 2);
  if (v.empty() || v.size() >= INET6_ADDRSTRLEN) {
    return absl::InvalidArgumentError("not an IP address");
  }
  const std::string text(v);
  char out[INET6_ADDRSTRLEN];
  in_addr a4;
  if (v.size() == value.size() && inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    return std::string(inet_ntop(AF_INET, &a4, out, sizeof(out)));
  }
  in6_addr a6;
  if (inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    return std::string(inet_ntop(AF_INET6, &a6, out, sizeof(out)));
  }
  return absl::InvalidArgumentError("not an IP address (names are not resolved)");
}

AuthHttpOutcome InterpretAuthHttpResponse(const AuthHttpResponse& r) {
  AuthHttpOutcome out;
  if (r.http_status < 200 || r.http_status > 299) {
    out.answer = DirectoryAnswer::Unavailable(
        absl::StrCat("auth http server answered HTTP ", r.http_status));
    return out;
  }
  const std::chrono::seconds wait{
      std::min<int64_t>(r.wait_seconds.value_or(0), kAuthHttpMaxWait.count())};
  DirectoryAnswer& a = out.answer;
  // Auth-Cache-TTL: seconds; 0, absent or not a number: not cached (nginx
  // asks the service for every login).
  a.cacheable = false;
  if (r.cache_ttl) {
    if (std::optional<int64_t> ttl = NginxAtoi(*r.cache_ttl); ttl && *ttl > 0) {
      a.cacheable = true;
      a.ttl = std::chrono::seconds(*ttl);
    }
  }
  if (r.refused) {
    a.verdict = DirectoryAnswer::Verdict::kRefuse;
    a.checked = true;
    a.text = r.refusal;
    a.wait = wait;
    if (r.error_code && IsSafeCode(*r.error_code)) a.code = *r.error_code;
    a.detail = absl::StrCat("auth http server refused: \"", AuthHttpEscapeStrict(r.refusal), "\"");
    return out;
  }
  if (r.status_wait) {
    out.kind = AuthHttpOutcome::Kind::kAskAgain;
    out.again_after = wait;
    a = DirectoryAnswer::Unavailable("auth http server asked to wait");
    return out;
  }
  // Accepted (or no Auth-Status at all, which nginx takes as accepted too
  // when a server and port came). nginx needs Auth-Server and Auth-Port;
  // Postern takes Auth-Backend or Auth-Shard instead.
  const bool has_server = r.server && !r.server->empty();
  const bool has_port = r.port && !r.port->empty();
  const bool has_backend = r.backend && !r.backend->empty();
  const bool has_shard = r.shard && !r.shard->empty();
  if (has_server != has_port || (!has_server && !has_backend && !has_shard)) {
    a = DirectoryAnswer::Unavailable("auth http server did not send server or port");
    return out;
  }
  if (has_server) {
    absl::StatusOr<std::string> host = ParseAuthHttpServerAddress(*r.server);
    if (!host.ok()) {
      a = DirectoryAnswer::Unavailable(
          absl::StrCat("auth http server sent invalid server address \"",
                       AuthHttpEscapeStrict(*r.server), "\""));
      return out;
    }
    std::optional<int64_t> port = NginxAtoi(*r.port);
    if (!port || *port < 1 || *port > 65535) {
      a = DirectoryAnswer::Unavailable(absl::StrCat("auth http server sent invalid server port \"",
                                                    AuthHttpEscapeStrict(*r.port), "\""));
      return out;
    }
    a.host = *std::move(host);
    a.port = static_cast<uint16_t>(*port);
  }
  if (r.master) {
    const std::string m = absl::AsciiStrToLower(*r.master);
    if (m == "yes" || m == "on" || m == "true" || m == "1") {
      a.master = true;
    } else if (!(m == "no" || m == "off" || m == "false" || m == "0" || m.empty())) {
      a = DirectoryAnswer::Unavailable(absl::StrCat("auth http server sent invalid Auth-Master \"",
                                                    AuthHttpEscapeStrict(*r.master), "\""));
      return out;
    }
  }
  a.verdict = DirectoryAnswer::Verdict::kAccept;
  a.checked = true;
  if (has_backend) a.backend = *r.backend;
  if (has_shard) a.shard = *r.shard;
  if (r.user && !r.user->empty()) a.backend_user = *r.user;
  if (r.pass) a.backend_password = *r.pass;
  a.detail = r.has_status
                 ? "auth http server accepted"
                 : "auth http server sent a server without Auth-Status (accepted, as nginx)";
  return out;
}

}  // namespace postern
