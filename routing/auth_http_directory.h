#pragma once

// The auth-http Directory: nginx's mail auth_http protocol (auth_http.h has
// the request and the answers; README.md, "auth-http", the whole story)
// over plain HTTP/1.1 with keep-alive connections, on one worker's libuv
// loop.
//
// Plain HTTP to numeric addresses only: the service belongs on loopback or a
// trusted network (it receives passwords), as nginx's auth_http does; no
// TLS, no DNS (and no libcurl, which would load OpenSSL next to BoringSSL).
//
// Better than nginx, which opens one connection per login:
//  - a small pool of keep-alive connections per worker (max_connections),
//    each reused for the next lookup; a lookup that finds them all busy
//    waits in a bounded queue (max_queue; over it: kUnavailable at once);
//  - several service addresses, tried in turn: a lookup whose connection
//    is refused, fails or stays silent for attempt_timeout moves to the
//    next address within its overall timeout; an address that failed is
//    skipped for server_cooldown by the lookups that start after;
//  - every lookup is bounded by `timeout` (then kUnavailable); Auth-Status:
//    WAIT (send again after Auth-Wait) at most max_wait_rounds times;
//  - a keep-alive connection the service closed while idle is noticed, and
//    a request that meets such a connection is sent again on a new one.
//
// Cancellation: destroying the Lookup handle before the answer drops the
// lookup at once; `done` is never called afterwards. A lookup still queued
// just leaves the queue. One whose request is on a connection leaves that
// connection to finish the exchange alone: the answer is read and thrown
// away, and the connection goes back to the pool (or is closed after
// attempt_timeout), so that a client that hangs up does not cost the pool a
// reconnect (nginx's auth_http pattern under a password-guessing storm: the
// service has the request anyway). Destroying the directory drops every
// lookup still in flight without an answer and closes its connections.
//
// Threads: everything on the loop given to Create(), which must outlive the
// directory and run until the closed handles have been freed.

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "routing/auth_http.h"
#include "routing/directory.h"

namespace postern {

struct AuthHttpOptions {
  // For logs and metrics: Name() is "auth-http:<name>".
  std::string name = "auth-http";
  // The service, "127.0.0.1:9000" or "[::1]:9000": numeric addresses only,
  // tried in this order; at most 64.
  std::vector<std::string> servers;
  // The request path (with a query if wanted): starts with "/", printable
  // ASCII without spaces.
  std::string uri = "/auth";
  // The Host header; "" takes the first server's address without its port
  // (what nginx sends for `auth_http 127.0.0.1:9000/auth`).
  std::string host;
  // The whole lookup, queue wait included: then kUnavailable.
  std::chrono::milliseconds timeout{5000};
  // One address's try (connect, request, answer): then the next address.
  // 0: timeout divided by the number of servers.
  std::chrono::milliseconds attempt_timeout{0};
  // How long an address that failed is skipped by new lookups (unless every
  // address is failing).
  std::chrono::milliseconds server_cooldown{2000};
  // A kept-alive connection unused this long is closed.
  std::chrono::milliseconds idle_timeout{30000};
  // Connections of this directory (one worker), busy or idle.
  size_t max_connections = 4;
  // Lookups waiting for a connection; one more is answered kUnavailable.
  size_t max_queue = 1024;
  // Auth-Status: WAIT rounds one lookup may go through.
  int max_wait_rounds = 5;
  // Extra request headers (nginx's auth_http_header), e.g. a shared secret.
  std::vector<std::pair<std::string, std::string>> headers;
};

class AuthHttpDirectory final : public Directory {
 public:
  // INVALID_ARGUMENT for options that cannot work (no server, a server
  // that is not a numeric address with a port, a bad uri or header, zero
  // timeout or connections).
  static absl::StatusOr<std::unique_ptr<AuthHttpDirectory>> Create(uv_loop_t* loop,
                                                                   AuthHttpOptions options);
  ~AuthHttpDirectory() override;
  AuthHttpDirectory(const AuthHttpDirectory&) = delete;
  AuthHttpDirectory& operator=(const AuthHttpDirectory&) = delete;

  // Directory
  std::unique_ptr<Lookup> Start(const DirectoryRequest& request, Done done) override;
  bool ChecksSecrets() const override { return true; }
  std::string Name() const override { return "auth-http:" + options_.name; }

  // Counters since creation, for metrics and tests.
  struct Stats {
    uint64_t lookups = 0;   // Start() calls
    uint64_t answers = 0;   // `done` calls
    uint64_t connects = 0;  // TCP connections opened
    uint64_t connect_failures = 0;
    uint64_t requests = 0;       // HTTP requests written
    uint64_t reused = 0;         // ... of them on a kept-alive connection
    uint64_t stale_retries = 0;  // requests sent again: a kept-alive connection had closed
    uint64_t attempt_timeouts = 0;
    uint64_t failovers = 0;      // lookups moved to the next address
    uint64_t timeouts = 0;       // lookups answered kUnavailable for `timeout`
    uint64_t queue_full = 0;     // lookups answered kUnavailable for max_queue
    uint64_t bad_responses = 0;  // malformed, over a bound, not 2xx
    uint64_t cancelled = 0;      // Lookup handles dropped before the answer
    uint64_t discarded = 0;      // answers read for cancelled lookups
    size_t open_connections = 0;
    size_t idle_connections = 0;
    size_t queued = 0;
  };
  Stats stats() const;

 private:
  struct Job;
  struct Conn;
  class Handle;
  struct Server {
    std::string text;
    sockaddr_storage addr;
    uint64_t cooldown_until_ms = 0;  // uv_now
  };

  AuthHttpDirectory(uv_loop_t* loop, AuthHttpOptions options, std::vector<Server> servers,
                    AuthHttpRequestConfig config);

  // Jobs.
  void Enqueue(Job* job, bool front);
  void Dequeue(Job* job);
  void Cancel(Job* job);
  void Finish(Job* job, DirectoryAnswer answer);
  void Deliver(Job* job);
  void OnDeadline(Job* job);
  void AttemptFailed(Job* job, const std::string& why);
  void HandleResponse(Job* job, const AuthHttpResponse& response);
  size_t FirstServer() const;
  bool NextServer(Job* job) const;
  void ServerFailed(size_t server);

  // Connections.
  void Pump();
  Conn* OpenConn(size_t server, std::string* why);
  void CloseConn(Conn* conn);
  void Assign(Conn* conn, Job* job);
  void Send(Conn* conn);
  void MakeIdle(Conn* conn);
  void ExchangeFailed(Conn* conn, const std::string& why, bool timed_out);
  void OnConnected(Conn* conn, int status);
  void OnRead(Conn* conn, ssize_t nread, const uv_buf_t* buf);
  void OnConnTimer(Conn* conn);
  void ResponseDone(Conn* conn, bool ok, bool keep);
  static void AllocCb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void ReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void ConnectCb(uv_connect_t* req, int status);
  static void WriteCb(uv_write_t* req, int status);

  uv_loop_t* loop_;
  AuthHttpOptions options_;
  std::vector<Server> servers_;
  AuthHttpRequestConfig request_config_;
  std::chrono::milliseconds attempt_timeout_;
  std::list<std::unique_ptr<Job>> jobs_;  // every job not yet delivered
  std::list<Job*> queue_;                 // waiting for a connection
  std::list<std::unique_ptr<Conn>> conns_;
  std::unique_ptr<char[]> read_buf_;
  bool pumping_ = false;
  Stats stats_;
};

}  // namespace postern
