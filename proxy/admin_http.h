#pragma once

// The admin endpoint: a small HTTP/1.1 server (RFC 9110 semantics, RFC 9112
// message syntax) on a worker's libuv loop, for /metrics, /healthz,
// /readyz and the JSON admin API. The integrator registers the routes:
//
//   auto admin = AdminServer::Create(worker.poller(), worker.pool(), options);
//   (*admin)->Handle("GET", "/healthz", [](const AdminRequest&, AdminResponder r) {
//     r.Respond(AdminResponse::Text(200, "ok\n"));
//   });
//   (*admin)->Handle("GET", "/api/v1/sessions", [&](const AdminRequest& req, AdminResponder r) {
//     // Answer later, from this loop, once every worker has reported:
//     GatherSessions(req.Param("user"), [r = std::make_shared<AdminResponder>(std::move(r))](
//         std::string json) { r->Respond(AdminResponse::Json(200, std::move(json))); });
//   });
//
// Three parts, each usable alone:
//  - AdminRequestParser: bytes in, one request out (http-parser, Debian's
//    libhttp-parser, as routing/auth_http.h uses it for responses), with
//    every bound checked; no I/O, so tests/fuzz/admin_http_request_fuzz.cc
//    feeds it directly.
//  - JsonWriter: a tiny JSON builder whose strings are always valid JSON
//    and valid UTF-8, whatever bytes went in (user names are client text).
//  - AdminServer: the listener, connections, routing, auth, timeouts.
//
// Sockets: the admin server uses the project's Poller and Connection (plain
// fds in the worker's epoll set, proxy/connection.h), not uv_tcp_t. Memory
// is no reason here (a few connections), but Connection already has what
// an HTTP server needs and took work to get right: buffered reads into pool
// slabs, writes that go straight to the kernel with the rest queued,
// watermarks for a client that does not read, and a lingering close that
// flushes the last response, half-closes and drains the peer, so an error
// answered before the client finished sending (413, 431) is not destroyed
// by a RST. It also keeps one I/O model in proxy/.
//
// Connections and requests:
//  - At most `max_connections` (64) at once; one more is accepted, sent a
//    503 and closed at once (never queued: the cap bounds fds and memory,
//    and a backlog of stalled connections would hide the refusal).
//  - Keep-alive as RFC 9112 section 9.3 says (HTTP/1.1 unless "Connection:
//    close", HTTP/1.0 with "Connection: keep-alive"). Pipelined requests
//    are answered in order, one at a time: the next is not parsed before
//    the previous one's answer is queued, and while responses queued toward
//    a client pass `max_pending_output`, nothing more of it is parsed.
//    Bytes buffered past one maximal request stop reading the socket.
//  - Timeouts: `idle_timeout` between requests (closed quietly, RFC 9112
//    section 9.5), `request_timeout` from a request's first byte to its end
//    whatever the pace (408, a slow-loris client cannot hold a slot), and
//    `handler_timeout` for an answer (503, the handler's late answer then
//    goes nowhere).
//  - A client that closes or resets while its handler works cancels it: the
//    Responder's answer then goes nowhere (as nginx's 499). A client that
//    half-closes right after its request (printf ... | nc -N) still gets
//    answers given synchronously.
//  - Limits (AdminHttpLimits): request-target 4 KiB (414, RFC 9110 section
//    15.5.15), request line and headers 16 KiB and 64 fields (431, RFC 6585
//    section 5), body 64 KiB with Content-Length or chunked (413, RFC 9110
//    section 15.5.14; refused as soon as the headers announce it, before
//    any "100 Continue").
//
// Auth: with a token file, every path except `open_paths` (/healthz and
// /readyz) needs "Authorization: Bearer <token>" (RFC 6750 section 2.1;
// the scheme is case-insensitive, RFC 9110 section 11.1). The token is read
// once at Create() (the trailing CR/LF stripped) and only its SHA-256 is
// kept; a presented token is hashed and the digests compared with
// CRYPTO_memcmp, so the comparison's time depends on neither the token's
// bytes nor its length. Missing or wrong: 401 with "WWW-Authenticate:
// Bearer realm="postern"" (plus error="invalid_token" for a wrong one,
// RFC 6750 section 3.1). Auth is checked before routing, so without the
// token no one learns which paths exist. Without a token file no request
// needs a token, and Create() refuses any address but a loopback one
// (127.0.0.0/8, ::1): anyone who can reach a non-loopback admin port
// could otherwise drain backends. (The config loader enforces the same.)
//
// Threads: everything runs on the loop thread of the poller given to
// Create(), and so must a Responder's Respond() and its destruction (an
// unanswered one answers 500): a handler that gathers from other workers
// comes back to this loop before it answers, and does not let the last
// reference to a shared Responder go on another thread (debug builds
// assert both).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "proxy/poller.h"
#include "proxy/uv_handle.h"

struct http_parser;

namespace postern {

// --- requests ---------------------------------------------------------------------

struct AdminRequest {
  std::string method;  // "GET", "POST", ... (http-parser's spelling)
  std::string target;  // the request-target as sent
  // The target's path, not percent-decoded ("/api/v1/sessions"; "/" for an
  // absolute-form target without one; "*" for OPTIONS *). Routing and the
  // auth exemption compare it byte for byte, so "/healthz/../api" is just
  // an unknown path.
  std::string path;
  std::string query;  // after '?', raw
  // The query as application/x-www-form-urlencoded pairs, decoded ('+' is
  // a space, %XX a byte: a '+' in a value is sent as %2B). Client bytes:
  // any value, NUL and invalid UTF-8 included.
  std::vector<std::pair<std::string, std::string>> params;
  // Field names lower-cased, values without surrounding whitespace, in
  // order (a repeated field appears as often as it was sent).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int version_minor = 1;  // HTTP/1.0 or HTTP/1.1
  bool keep_alive = true;
  bool expect_continue = false;  // "Expect: 100-continue" (HTTP/1.1)
  std::string peer;              // "127.0.0.1:50312", "[::1]:50312" (set by the server)

  // The first field named `lower_name`, or null.
  const std::string* Header(absl::string_view lower_name) const;
  // The first query parameter named `name`, or null.
  const std::string* Param(absl::string_view name) const;
};

struct AdminHttpLimits {
  size_t max_target = 4 * 1024;         // 414 past it
  size_t max_header_bytes = 16 * 1024;  // request line and fields: 431 past it
  size_t max_headers = 64;              // fields: 431 past it
  size_t max_body = 64 * 1024;          // 413 past it
  // One maximal request with its framing (chunk lines): what the parser
  // takes in at most, and what a connection buffers before it stops reading.
  size_t max_request() const { return max_header_bytes + 2 * max_body + 4096; }
};

// One request at a time over http-parser; Feed() the bytes in any split.
// Strict where RFC 9112 says a server must be (section 3.2: exactly one
// Host in HTTP/1.1; section 6.1: Transfer-Encoding with Content-Length is
// refused, as http-parser does; section 5.2 and RFC 9110 section 5.5:
// CR, LF or NUL in a field value is refused).
class AdminRequestParser {
 public:
  enum class Result {
    kNeedMore,  // feed more
    kDone,      // request() is complete; the bytes after it were not consumed
    kError,     // error_status() and error() say why; the connection ends
  };

  explicit AdminRequestParser(AdminHttpLimits limits = {});
  ~AdminRequestParser();
  AdminRequestParser(const AdminRequestParser&) = delete;
  AdminRequestParser& operator=(const AdminRequestParser&) = delete;

  // `*consumed`: the bytes that belong to this request (all of them unless
  // kDone came first). After kDone or kError, Feed consumes nothing and
  // repeats the result until Reset().
  Result Feed(absl::string_view bytes, size_t* consumed);
  // Ready for the next request on the same connection.
  void Reset();

  // A byte of a request was seen (empty lines before one do not count,
  // RFC 9112 section 2.2).
  bool started() const { return started_; }
  // The request line and fields are complete (a body may follow): the
  // moment to send "100 Continue" for request().expect_continue.
  bool headers_complete() const { return headers_complete_; }
  const AdminRequest& request() const { return request_; }
  AdminRequest TakeRequest() { return std::move(request_); }
  // 400, 413, 414, 417, 431, 501 or 505 after kError.
  int error_status() const { return error_status_; }
  const std::string& error() const { return error_; }

 private:
  struct Callbacks;
  void FinishField();
  bool SetError(int status, std::string why);
  bool CheckHeaders();
  bool FinishTarget();

  AdminHttpLimits limits_;
  std::unique_ptr<http_parser> parser_;
  AdminRequest request_;
  Result result_ = Result::kNeedMore;
  int error_status_ = 0;
  std::string error_;
  bool started_ = false;
  bool headers_complete_ = false;
  size_t header_bytes_ = 0;
  size_t total_bytes_ = 0;
  size_t fields_ = 0;  // header and trailer fields
  std::string field_;
  std::string value_;
  bool in_value_ = false;
  bool have_field_ = false;
};

// RFC 9110 section 5.6.2: a token (field names, methods).
bool IsHttpToken(absl::string_view s);

// Percent-decodes an application/x-www-form-urlencoded query; false on a
// bad %-escape.
bool ParseAdminQuery(absl::string_view query,
                     std::vector<std::pair<std::string, std::string>>* out);

// --- JSON ---------------------------------------------------------------------------

// Appends `s` as a JSON string (RFC 8259 section 7), quotes included: '"'
// and '\' escaped, control bytes as \n \r \t or \u00XX, DEL as \u007f,
// U+2028 and U+2029 as \u2028 / \u2029 (so the text is also safe inside a
// <script>), every ill-formed UTF-8 part as U+FFFD (Unicode's maximal
// subparts, proxy/utf8.h): the result is valid JSON and valid UTF-8
// whatever `s` holds, at the price of not round-tripping invalid bytes.
void AppendJsonString(std::string* out, absl::string_view s);

// Builds compact JSON; commas come by themselves.
//
//   JsonWriter j;
//   j.BeginObject().Key("sessions").BeginArray();
//   j.BeginObject().Key("user").String(user).Key("bytes_in").Uint(n).EndObject();
//   j.EndArray().EndObject();
//   std::string body = std::move(j).Take();
//
// Misuse (a value where a key is due, unbalanced ends) is not checked
// beyond debug asserts: the callers are our own code.
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(absl::string_view key);
  JsonWriter& String(absl::string_view s);
  JsonWriter& Int(int64_t v);
  JsonWriter& Uint(uint64_t v);
  // Non-finite numbers have no JSON form: null.
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();

  const std::string& str() const { return out_; }
  std::string Take() && { return std::move(out_); }

 private:
  void BeforeValue();
  std::string out_;
  std::vector<bool> has_item_;  // per open object or array
  bool after_key_ = false;
};

// --- responses ----------------------------------------------------------------------

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra fields. Names must be tokens and values free of CR, LF and NUL,
  // or the field is left out (no response splitting through a handler).
  std::vector<std::pair<std::string, std::string>> headers;

  static AdminResponse Text(int status, std::string body);
  static AdminResponse Json(int status, std::string body);
  // {"error":"<message>"} as application/json.
  static AdminResponse Error(int status, absl::string_view message);
};

class AdminServer;

// The way a handler answers: now, or later from the same loop. Movable;
// Respond() once. Safe whichever goes first: a Responder whose connection
// went away (client gone, timeout, server destroyed) answers into nothing
// (Respond() returns false), and a connection whose Responder is destroyed
// unanswered gets a 500.
class AdminResponder {
 public:
  struct Exchange;  // admin_http.cc

  AdminResponder() = default;
  explicit AdminResponder(std::shared_ptr<Exchange> exchange);
  ~AdminResponder();
  AdminResponder(AdminResponder&& other) noexcept = default;
  AdminResponder& operator=(AdminResponder&& other) noexcept;
  AdminResponder(const AdminResponder&) = delete;
  AdminResponder& operator=(const AdminResponder&) = delete;

  // Queues the response (loop thread only). False when nobody waits for it
  // any more, or it was answered already.
  bool Respond(AdminResponse response);
  // The client still waits for this answer.
  bool waiting() const;

 private:
  void Drop();
  std::shared_ptr<Exchange> exchange_;
};

// --- the server ---------------------------------------------------------------------

struct AdminServerOptions {
  // Numeric "a.b.c.d:port" or "[v6]:port"; port 0 lets the kernel choose
  // (port() says which). IPv6 sockets are IPV6_V6ONLY.
  std::string address = "127.0.0.1:9199";
  // A file holding the bearer token (one line). Empty: no token (loopback
  // addresses only, see above).
  std::string token_file;
  // Paths served without a token.
  std::vector<std::string> open_paths = {"/healthz", "/readyz"};
  size_t max_connections = 64;
  AdminHttpLimits limits;
  std::chrono::milliseconds idle_timeout{30000};
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds handler_timeout{30000};
  // Responses queued toward one client past which its next requests wait.
  size_t max_pending_output = 4 * 1024 * 1024;
  int backlog = 64;
};

class AdminServer {
 public:
  // Handlers run on the loop thread; `request` lives for the call only
  // (copy what an asynchronous answer needs).
  using Handler = std::function<void(const AdminRequest& request, AdminResponder responder)>;

  // Reads the token, binds and listens (the endpoint is up when this
  // returns). FAILED_PRECONDITION for a token file that cannot be read or
  // holds no usable token, or for no token on a non-loopback address;
  // INVALID_ARGUMENT for a bad address; UNAVAILABLE when binding fails.
  // `pool` gives the connections' buffers; both outlive the server.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Create(Poller& poller, BufferPool& pool,
                                                             AdminServerOptions options);
  // Stops listening and closes every connection (queued responses are still
  // flushed); pending Responders answer into nothing. Not from inside a
  // handler.
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Routes `method` (case-sensitive, RFC 9110 section 9.1) on exactly
  // `path`. A GET route also answers HEAD (without the body) unless HEAD
  // has its own. A path with routes but not this method gets 405 with
  // Allow; no route at all, 404. INVALID_ARGUMENT for an empty method or a
  // path not starting with '/'; ALREADY_EXISTS for a route registered twice.
  absl::Status Handle(absl::string_view method, absl::string_view path, Handler handler);

  uint16_t port() const { return port_; }
  size_t connection_count() const { return conns_.size(); }
  // Connections refused over max_connections since the start.
  uint64_t refused_count() const { return refused_; }
  bool requires_token() const { return has_token_; }

 private:
  class Conn;
  struct Listener;
  friend class AdminResponder;

  AdminServer(Poller& poller, BufferPool& pool, AdminServerOptions options);
  absl::Status Listen();
  void Accept();
  void Refuse(int fd);
  void PauseAccepting();
  // Runs the request: auth, route, handler (or the error answer).
  void Dispatch(Conn& c, AdminRequest request);
  bool Authorized(const AdminRequest& request, bool* wrong_token) const;
  // Forgets a finished connection; it is freed on a later loop turn.
  void Finish(Conn* c);

  Poller& poller_;
  BufferPool& pool_;
  AdminServerOptions options_;
  std::thread::id thread_;
  bool has_token_ = false;
  uint8_t token_digest_[32] = {};
  uint16_t port_ = 0;
  uint64_t refused_ = 0;
  std::unique_ptr<Listener> listener_;
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, Handler>> routes_;
  absl::flat_hash_map<Conn*, std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Conn>> graveyard_;
  Timer reaper_;        // frees the graveyard on the next turn
  Timer accept_pause_;  // out of fds: accepting resumes after a pause
  bool reaper_armed_ = false;
};

}  // namespace postern
