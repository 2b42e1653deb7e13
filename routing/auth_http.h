#pragma once

// nginx's mail auth_http protocol (nginx.org, ngx_mail_auth_http_module;
// src/mail/ngx_mail_auth_http_module.c), the parts without I/O: the request
// Postern sends, the response parser and what an answer means. The client
// that speaks it over keep-alive connections is AuthHttpDirectory
// (auth_http_directory.h); README.md, "auth-http", has the whole protocol as
// implemented and every difference from nginx.
//
// The request is nginx's, header for header and byte for byte where nginx
// sends the header (tests/routing/auth_http_nginx_compat_test.cc compares
// with requests recorded from nginx 1.22), then Postern's own headers, then
// the configured ones:
//
//   GET /auth HTTP/1.1                     (nginx: HTTP/1.0, one connection per login)
//   Host: 127.0.0.1                        (the first server's address, without port, as nginx)
//   Auth-Method: plain                     (plain for IMAP LOGIN, USER/PASS, SASL PLAIN and LOGIN;
//                                           xoauth2 | oauthbearer: nginx has no such methods)
//   Auth-User: <user, AuthHttpEscape>
//   Auth-Pass: <password or token, AuthHttpEscape>
//   Auth-Protocol: imap | pop3
//   Auth-Login-Attempt: <n>
//   Client-IP: <ip>
//   Auth-SSL: on                           (with TLS, as the next two)
//   Auth-SSL-Protocol: TLSv1.3
//   Auth-SSL-Cipher: TLS_AES_256_GCM_SHA384
//   Client-Port, Local-IP, Local-Port      (Postern: always)
//   Auth-SNI: <server name>                (Postern: when the client sent one)
//   Auth-Authzid: <identity>               (Postern: when the client asked for another identity)
//   Auth-Session-Id: <id>                  (Postern: the session id of the log line)
//   Auth-ID-<field>: <value>               (Postern: the client's IMAP ID, one header a field)
//   <configured headers>                   (nginx's auth_http_header)
//
// nginx sends no Client-Host for IMAP and POP3 (only its SMTP module
// resolves), no Auth-Salt for plain logins and Auth-SSL-Verify/-Subject/...
// only for client certificates; Postern sends none of them.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "routing/directory.h"

struct http_parser;

namespace postern {

// nginx's ngx_escape_uri(NGX_ESCAPE_MAIL_AUTH), used for Auth-User and
// Auth-Pass: "%XX" (upper-case hex) for space, "%" and the bytes 0x00-0x1F;
// every other byte as it is (DEL and bytes above 0x7F included, as nginx).
std::string AuthHttpEscape(absl::string_view in);
// For Postern's own headers with text a client chose (SNI, authzid, IMAP ID
// values): AuthHttpEscape, and DEL as "%7F" too, so that no control byte
// reaches a header a strict HTTP server would refuse.
std::string AuthHttpEscapeStrict(absl::string_view in);

// The Auth-Method value: "plain" for kPlain and kLogin (what nginx sends for
// both), "xoauth2", "oauthbearer".
absl::string_view AuthHttpMethod(DirectoryRequest::Mechanism m);

// What the request needs besides the login; AuthHttpDirectory fills it from
// its options.
struct AuthHttpRequestConfig {
  std::string uri = "/auth";
  std::string host;  // the Host header
  // Configured headers (nginx's auth_http_header), appended as they are:
  // names and values checked by ValidateAuthHttpHeader.
  std::vector<std::pair<std::string, std::string>> headers;
};

// INVALID_ARGUMENT unless `name` is a header name nginx would read back
// ([A-Za-z0-9-]+) and `value` has no control byte (HTAB excepted).
absl::Status ValidateAuthHttpHeader(absl::string_view name, absl::string_view value);

// The whole request, ready to write. No byte below 0x20 but the CRLF line
// ends (client-chosen text is escaped); IMAP ID fields whose names are not
// [A-Za-z0-9-]{1,64} are left out.
std::string BuildAuthHttpRequest(const AuthHttpRequestConfig& config,
                                 const DirectoryRequest& request);

// The response headers nginx reads (Auth-*), raw, plus the HTTP status and
// what the connection may do next. Header names are matched without regard
// to case; values have the surrounding spaces and tabs trimmed.
struct AuthHttpResponse {
  int http_status = 0;
  // The connection may carry the next request (HTTP/1.1 without
  // "Connection: close", or HTTP/1.0 with "Connection: keep-alive", and the
  // body's end was known without the connection closing).
  bool keep_alive = false;

  // Auth-Status as nginx reads it: "OK" (exactly) accepts, "WAIT" (exactly)
  // asks to ask again after Auth-Wait; any other value refuses, and a
  // refusal anywhere wins over OK (nginx never clears it).
  bool has_status = false;
  bool status_wait = false;
  bool refused = false;
  std::string refusal;  // the last refusing value (may be empty: "Auth-Status:")

  // Last one wins, as in nginx.
  std::optional<std::string> server;      // Auth-Server
  std::optional<std::string> port;        // Auth-Port
  std::optional<std::string> user;        // Auth-User (taken as is: nginx does not unescape)
  std::optional<std::string> pass;        // Auth-Pass (as is)
  std::optional<int64_t> wait_seconds;    // Auth-Wait: the last value that is a number
  std::optional<std::string> error_code;  // Auth-Error-Code
  // Postern's extensions.
  std::optional<std::string> backend;    // Auth-Backend: a configured backend's name
  std::optional<std::string> shard;      // Auth-Shard
  std::optional<std::string> master;     // Auth-Master: yes | no
  std::optional<std::string> cache_ttl;  // Auth-Cache-TTL: seconds, 0 = do not cache
};

// Bounds of a response (status line and headers; body, read and dropped).
inline constexpr size_t kAuthHttpMaxHeaderBytes = 16 * 1024;
inline constexpr size_t kAuthHttpMaxBodyBytes = 1024 * 1024;
// Auth-Wait above this is taken as this (nginx has no bound).
inline constexpr std::chrono::seconds kAuthHttpMaxWait{300};

// An incremental response parser over http-parser (nodejs/http-parser 2.9,
// Debian's libhttp-parser): Feed() the bytes as they come, in any split.
// One response per Reset(): bytes after its end are left unconsumed.
class AuthHttpResponseParser {
 public:
  enum class Result {
    kNeedMore,  // feed more bytes (or FeedEof)
    kDone,      // response() is complete
    kError,     // malformed, or over a bound: error() says why
  };

  AuthHttpResponseParser();
  ~AuthHttpResponseParser();
  AuthHttpResponseParser(const AuthHttpResponseParser&) = delete;
  AuthHttpResponseParser& operator=(const AuthHttpResponseParser&) = delete;

  // Parses bytes; `*consumed` is how many belong to this response (all of
  // them unless kDone came before the end). After kDone or kError, Feed
  // consumes nothing and repeats the result.
  Result Feed(absl::string_view bytes, size_t* consumed);
  // The peer closed the connection: ends a response whose body runs to the
  // end of the stream; kError if the response is incomplete.
  Result FeedEof();
  // Starts over for the next response on the same connection.
  void Reset();

  const AuthHttpResponse& response() const { return response_; }
  const std::string& error() const { return error_; }
  // Any byte of a response was seen (a keep-alive connection the server
  // closed before answering is retried; one that closed mid-answer is not).
  bool started() const { return started_; }

 private:
  struct Callbacks;
  void FinishHeader();
  Result Fail(std::string why);

  std::unique_ptr<http_parser> parser_;
  AuthHttpResponse response_;
  Result result_ = Result::kNeedMore;
  std::string error_;
  bool started_ = false;
  size_t header_bytes_ = 0;
  size_t body_bytes_ = 0;
  // The header being read: its name (lower-cased, bounded) and, for the
  // names we keep, its value so far.
  std::string field_;
  std::string value_;
  bool in_value_ = false;
  bool have_field_ = false;
};

// A complete response in one buffer (followed by the end of the stream):
// the parser's result, or INVALID_ARGUMENT with its error.
absl::StatusOr<AuthHttpResponse> ParseAuthHttpResponse(absl::string_view bytes);

// What a response means, following nginx's code paths
// (ngx_mail_auth_http_process_headers), with Postern's extensions.
struct AuthHttpOutcome {
  enum class Kind {
    kAnswer,    // `answer` is the directory's answer
    kAskAgain,  // Auth-Status: WAIT: send the request again after `again_after`
  };
  Kind kind = Kind::kAnswer;
  DirectoryAnswer answer;
  std::chrono::milliseconds again_after{0};
};
AuthHttpOutcome InterpretAuthHttpResponse(const AuthHttpResponse& response);

// An Auth-Server value Postern can connect to: an IPv4 or IPv6 address in
// numeric form (IPv6 also in brackets), as nginx's ngx_parse_addr takes it
// (nginx does not resolve names there either). The canonical text, or
// INVALID_ARGUMENT.
absl::StatusOr<std::string> ParseAuthHttpServerAddress(absl::string_view value);

}  // namespace postern
