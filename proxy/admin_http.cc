#include "proxy/admin_http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include <openssl/mem.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proxy/config.h"
#include "proxy/connection.h"
#include "proxy/log_text.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

const char* ReasonPhrase(int status) {
  const char* s = http_status_str(static_cast<http_status>(status));
  return s == nullptr || s[0] == '<' ? "Unknown" : s;
}

std::string HttpDate() {
  // RFC 9110 section 5.6.7: IMF-fixdate.
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::Now(), absl::UTCTimeZone());
}

// 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104.
bool IsLoopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

absl::StatusOr<SocketAddress> ParseAddress(absl::string_view text) {
  absl::string_view host, port_text;
  if (absl::StartsWith(text, "[")) {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("admin address \"", text, "\": expected [v6]:port"));
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos || text.find(':') != colon) {
      return absl::InvalidArgumentError(
          absl::StrCat("admin address \"", text, "\": expected a.b.c.d:port or [v6]:port"));
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port > 65535 || port_text.empty() ||
      !absl::ascii_isdigit(static_cast<unsigned char>(port_text[0]))) {
    return absl::InvalidArgumentError(absl::StrCat("admin address \"", text, "\": bad port"));
  }
  absl::StatusOr<SocketAddress> a =
      ParseSocketAddress(std::string(host), static_cast<uint16_t>(port));
  if (!a.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin address \"", text, "\": ", a.status().message()));
  }
  return a;
}

absl::Status ReadToken(const std::string& path, uint8_t digest[SHA256_DIGEST_LENGTH]) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("admin token file ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buf[1024];
  bool too_big = false;
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 4096) {
      too_big = true;
      break;
    }
  }
  close(fd);
  if (too_big) {
    return absl::FailedPreconditionError(
        absl::StrCat("admin token file ", path, ": over 4096 bytes"));
  }
  absl::string_view token = text;
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.remove_suffix(1);
  if (token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("admin token file ", path, ": empty"));
  }
  // What a client can send after "Bearer ": visible ASCII, no spaces.
  for (char c : token) {
    if (c <= 0x20 || c >= 0x7f) {
      return absl::FailedPreconditionError(
          absl::StrCat("admin token file ", path,
                       ": the token must be one line of visible ASCII characters without spaces"));
    }
  }
  SHA256(reinterpret_cast<const uint8_t*>(token.data()), token.size(), digest);
  return absl::OkStatus();
}

}  // namespace

// --- the server's connections --------------------------------------------------------

// What a Responder and its connection share. `conn` is cleared when either
// side is done: the answer was given, or the connection went away.
struct AdminResponder::Exchange {
  AdminServer::Conn* conn = nullptr;
  std::thread::id thread;  // the loop's: answers come from there only
};

class AdminServer::Conn final : public ConnectionHandler {
 public:
  Conn(AdminServer* server, int fd)
      : server_(server),
        conn_(Connection::Create(server->poller_, server->pool_, this)),
        parser_(server->options_.limits) {
    conn_->Adopt(fd);
    conn_->SetSocketOptions();
    conn_->set_linger(2000);
    // OnDrained once what is queued falls to half the bound after passing it.
    conn_->SetWatermarks(server->options_.max_pending_output,
                         server->options_.max_pending_output / 2);
    peer_ = conn_->PeerAddress();
    timer_.Init(server->poller_.loop());
    resume_.Init(server->poller_.loop());
    conn_->StartReading();
    Arm(Wait::kIdle);
  }

  ~Conn() override { Detach(); }

  // The server goes away: no callbacks into it from here on.
  void Shutdown() {
    Detach();
    timer_.Stop();
    resume_.Stop();
    conn_.reset();  // flushes what is queued, then closes
  }

  // ConnectionHandler
  void OnData(Connection&) override { Process(); }
  void OnDrained(Connection&) override { Process(); }
  void OnEnd(Connection&, absl::string_view reason) override {
    spdlog::debug("admin: {} ended: {}", peer_, std::string(reason));
    End();
  }

  // The handler's answer (through the Responder).
  void Answer(AdminResponse response) {
    exchange_.reset();
    Send(std::move(response), head_, keep_alive_);
    if (done_) return;
    Arm(Wait::kIdle);
    if (!dispatching_) {
      // An answer from outside our own call stack: parse what is pipelined
      // behind it on the next turn (never re-enter the caller).
      if (!resume_armed_) {
        resume_armed_ = true;
        resume_.Start(std::chrono::milliseconds(0), [this] { Process(); });
      } else {
        resume_.Restart(std::chrono::milliseconds(0));
      }
    }
  }

  // Starts a handler's exchange.
  std::shared_ptr<AdminResponder::Exchange> Begin(bool head, bool keep_alive) {
    head_ = head;
    keep_alive_ = keep_alive;
    exchange_ = std::make_shared<AdminResponder::Exchange>();
    exchange_->conn = this;
    exchange_->thread = std::this_thread::get_id();
    Arm(Wait::kHandler);
    return exchange_;
  }

  // Answers without a handler (errors, 401, 404, 405).
  void Reply(AdminResponse response, bool head, bool keep_alive) {
    Send(std::move(response), head, keep_alive);
    if (!done_) Arm(Wait::kIdle);
  }

  const std::string& peer() const { return peer_; }

 private:
  enum class Wait { kIdle, kRequest, kHandler };

  void Detach() {
    if (exchange_ != nullptr) {
      exchange_->conn = nullptr;
      exchange_.reset();
    }
  }

  // Parses and dispatches what is buffered, one request at a time.
  void Process() {
    if (done_ || dispatching_) return;
    dispatching_ = true;
    while (!done_ && exchange_ == nullptr &&
           conn_->pending() <= server_->options_.max_pending_output) {
      Buffer& in = conn_->input();
      AdminRequestParser::Result r = AdminRequestParser::Result::kNeedMore;
      while (!in.empty()) {
        size_t consumed = 0;
        r = parser_.Feed(in.Front(), &consumed);
        in.Drain(consumed);
        if (r != AdminRequestParser::Result::kNeedMore) break;
      }
      if (r == AdminRequestParser::Result::kError) {
        spdlog::debug("admin: {}: {} {}", peer_, parser_.error_status(), parser_.error());
        Reply(AdminResponse::Error(parser_.error_status(), parser_.error()), false, false);
        break;
      }
      if (r == AdminRequestParser::Result::kNeedMore) {
        if (parser_.started() && wait_ == Wait::kIdle) Arm(Wait::kRequest);
        if (parser_.headers_complete() && parser_.request().expect_continue && !continued_) {
          // RFC 9110 section 10.1.1: the client waits for this before the content.
          continued_ = true;
          conn_->Write("HTTP/1.1 100 Continue\r\n\r\n");
        }
        break;
      }
      AdminRequest request = parser_.TakeRequest();
      parser_.Reset();
      continued_ = false;
      request.peer = peer_;
      server_->Dispatch(*this, std::move(request));
    }
    dispatching_ = false;
    if (done_) return;
    // Bytes past one maximal request wait in the kernel, not here.
    if (conn_->input().size() > server_->options_.limits.max_request()) {
      conn_->StopReading();
    } else if (!conn_->reading()) {
      conn_->StartReading();
    }
  }

  void Send(AdminResponse response, bool head, bool keep_alive) {
    int status = response.status;
    if (status < 200 || status > 599) {
      spdlog::warn("admin: a handler answered status {}; sent 500", status);
      response = AdminResponse::Error(500, "internal error");
      status = 500;
    }
    const bool close = !keep_alive;
    std::string out = absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                                   "\r\nDate: ", HttpDate(), "\r\nCache-Control: no-store\r\n");
    // RFC 9110 section 8.6: no Content-Length (nor content) in a 204.
    const bool no_content = status == 204 || status == 304;
    if (!no_content) {
      absl::StrAppend(&out, "Content-Type: ", response.content_type,
                      "\r\nContent-Length: ", response.body.size(), "\r\n");
    }
    for (const auto& [name, value] : response.headers) {
      if (!IsHttpToken(name) ||
          value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        spdlog::warn("admin: a handler's response field \"{}\" was left out", LogQuoted(name));
        continue;
      }
      absl::StrAppend(&out, name, ": ", value, "\r\n");
    }
    if (close) {
      out.append("Connection: close\r\n");
    } else if (version_minor_ == 0) {
      out.append("Connection: keep-alive\r\n");
    }
    out.append("\r\n");
    if (!head && !no_content) out.append(response.body);
    conn_->Write(out);
    if (close) End();
  }

  void End() {
    if (done_) return;
    done_ = true;
    Detach();
    timer_.Stop();
    resume_.Stop();
    conn_.reset();  // flushes the last response, then closes
    server_->Finish(this);
  }

  void Arm(Wait w) {
    wait_ = w;
    std::chrono::milliseconds d = server_->options_.idle_timeout;
    if (w == Wait::kRequest) d = server_->options_.request_timeout;
    if (w == Wait::kHandler) d = server_->options_.handler_timeout;
    if (!timer_armed_) {
      timer_armed_ = true;
      timer_.Start(d, [this] { OnTimeout(); });
    } else {
      timer_.Restart(d);
    }
  }

  void OnTimeout() {
    switch (wait_) {
      case Wait::kIdle:
        End();
        break;
      case Wait::kRequest:
        // RFC 9110 section 15.5.9.
        Reply(AdminResponse::Error(408, "request not received in time"), false, false);
        break;
      case Wait::kHandler:
        Detach();  // a late answer goes nowhere
        Reply(AdminResponse::Error(503, "no answer in time"), head_, false);
        break;
    }
  }

  friend class AdminServer;
  AdminServer* server_;
  ConnectionPtr conn_;
  AdminRequestParser parser_;
  std::string peer_;
  std::shared_ptr<AdminResponder::Exchange> exchange_;
  Timer timer_;   // the one deadline of `wait_`
  Timer resume_;  // parsing on the next turn after an asynchronous answer
  Wait wait_ = Wait::kIdle;
  bool timer_armed_ = false;
  bool resume_armed_ = false;
  bool dispatching_ = false;
  bool continued_ = false;  // "100 Continue" sent for this request
  bool done_ = false;
  bool head_ = false;
  bool keep_alive_ = true;
  int version_minor_ = 1;
};

// --- AdminResponder -----------------------------------------------------------------

AdminResponder::AdminResponder(std::shared_ptr<Exchange> exchange)
    : exchange_(std::move(exchange)) {}

AdminResponder::~AdminResponder() { Drop(); }

AdminResponder& AdminResponder::operator=(AdminResponder&& other) noexcept {
  if (this != &other) {
    Drop();
    exchange_ = std::move(other.exchange_);
  }
  return *this;
}

void AdminResponder::Drop() {
  if (exchange_ == nullptr) return;
  std::shared_ptr<Exchange> e = std::move(exchange_);
  assert(std::this_thread::get_id() == e->thread);
  if (e->conn != nullptr) {
    AdminServer::Conn* c = e->conn;
    e->conn = nullptr;
    spdlog::warn("admin: a handler dropped the request of {} unanswered", c->peer());
    c->Answer(AdminResponse::Error(500, "the request was dropped unanswered"));
  }
}

bool AdminResponder::Respond(AdminResponse response) {
  if (exchange_ == nullptr) return false;
  std::shared_ptr<Exchange> e = std::move(exchange_);
  assert(std::this_thread::get_id() == e->thread);
  if (e->conn == nullptr) return false;
  AdminServer::Conn* c = e->conn;
  e->conn = nullptr;
  c->Answer(std::move(response));
  return true;
}

bool AdminResponder::waiting() const { return exchange_ != nullptr && exchange_->conn != nullptr; }

// --- AdminServer --------------------------------------------------------------------

struct AdminServer::Listener final : Poller::Watcher {
  explicit Listener(AdminServer* s) : server(s) {}
  void OnReady(uint32_t) override { server->Accept(); }
  AdminServer* server;
  int fd = -1;
};

AdminServer::AdminServer(Poller& poller, BufferPool& pool, AdminServerOptions options)
    : poller_(poller),
      pool_(pool),
      options_(std::move(options)),
      thread_(std::this_thread::get_id()) {}

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Create(Poller& poller, BufferPool& pool,
                                                                 AdminServerOptions options) {
  std::unique_ptr<AdminServer> s(new AdminServer(poller, pool, std::move(options)));
  if (!s->options_.token_file.empty()) {
    if (absl::Status st = ReadToken(s->options_.token_file, s->token_digest_); !st.ok()) return st;
    s->has_token_ = true;
  }
  if (s->options_.max_connections == 0) s->options_.max_connections = 1;
  if (absl::Status st = s->Listen(); !st.ok()) return st;
  s->reaper_.Init(poller.loop());
  s->accept_pause_.Init(poller.loop());
  return s;
}

absl::Status AdminServer::Listen() {
  absl::StatusOr<SocketAddress> addr = ParseAddress(options_.address);
  if (!addr.ok()) return addr.status();
  if (!has_token_ && !IsLoopback(addr->storage)) {
    return absl::FailedPreconditionError(
        absl::StrCat("admin endpoint on ", options_.address,
                     ": a token file is required to listen on a non-loopback address"));
  }
  const int family = addr->storage.ss_family;
  const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("admin socket: ", std::strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  Connection::SetTcpOptions(fd);  // accepted sockets inherit them
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr->storage), addr->length) != 0 ||
      listen(fd, options_.backlog) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("admin endpoint on ", options_.address, ": ", std::strerror(err)));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  listener_ = std::make_unique<Listener>(this);
  listener_->fd = fd;
  if (const int r = poller_.Add(fd, EPOLLIN, listener_.get()); r != 0) {
    close(fd);
    listener_.reset();
    return absl::UnavailableError(absl::StrCat("admin endpoint: epoll: ", std::strerror(-r)));
  }
  spdlog::info("admin endpoint on {} (port {}), {}", options_.address, port_,
               has_token_ ? "bearer token required" : "no token (loopback only)");
  return absl::OkStatus();
}

AdminServer::~AdminServer() {
  if (listener_ != nullptr) {
    poller_.Remove(listener_->fd, listener_.get());
    close(listener_->fd);
  }
  for (auto& [raw, conn] : conns_) conn->Shutdown();
  conns_.clear();
  graveyard_.clear();
}

absl::Status AdminServer::Handle(absl::string_view method, absl::string_view path,
                                 Handler handler) {
  if (!IsHttpToken(method) || path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("admin route ", method, " ", path));
  }
  if (!handler) return absl::InvalidArgumentError("admin route without a handler");
  auto& methods = routes_[path];
  if (!methods.emplace(std::string(method), std::move(handler)).second) {
    return absl::AlreadyExistsError(absl::StrCat("admin route ", method, " ", path, " twice"));
  }
  return absl::OkStatus();
}

void AdminServer::Accept() {
  for (int i = 0; i < 16; ++i) {
    const int fd = accept4(listener_->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        spdlog::warn("admin endpoint: accept: {}; pausing for a second", std::strerror(errno));
        PauseAccepting();
      }
      return;
    }
    if (conns_.size() >= options_.max_connections) {
      Refuse(fd);
      continue;
    }
    auto c = std::make_unique<Conn>(this, fd);
    Conn* raw = c.get();
    conns_.emplace(raw, std::move(c));
  }
}

void AdminServer::Refuse(int fd) {
  ++refused_;
  // Best effort, never queued: the socket's buffer is empty.
  static const std::string kBusy = [] {
    const AdminResponse r = AdminResponse::Error(503, "too many admin clients");
    return absl::StrCat("HTTP/1.1 503 Service Unavailable\r\nContent-Type: ", r.content_type,
                        "\r\nContent-Length: ", r.body.size(), "\r\nConnection: close\r\n\r\n",
                        r.body);
  }();
  ssize_t r;
  do {
    r = send(fd, kBusy.data(), kBusy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  shutdown(fd, SHUT_WR);
  close(fd);
  if (refused_ == 1 || refused_ % 1000 == 0) {
    spdlog::warn("admin endpoint: {} connections refused over the cap of {}", refused_,
                 options_.max_connections);
  }
}

void AdminServer::PauseAccepting() {
  poller_.Modify(listener_->fd, 0, listener_.get());
  accept_pause_.Start(std::chrono::seconds(1),
                      [this] { poller_.Modify(listener_->fd, EPOLLIN, listener_.get()); });
}

bool AdminServer::Authorized(const AdminRequest& request, bool* wrong_token) const {
  *wrong_token = false;
  const std::string* value = nullptr;
  for (const auto& [name, v] : request.headers) {
    if (name != "authorization") continue;
    if (value != nullptr) {
      *wrong_token = true;  // two credentials: neither is taken
      return false;
    }
    value = &v;
  }
  if (value == nullptr) return false;
  absl::string_view v = *value;
  // credentials = auth-scheme 1*SP token68 (RFC 9110 section 11.4).
  const size_t space = v.find(' ');
  if (space == absl::string_view::npos || !absl::EqualsIgnoreCase(v.substr(0, space), "bearer")) {
    return false;
  }
  absl::string_view token = absl::StripLeadingAsciiWhitespace(v.substr(space));
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(token.data()), token.size(), digest);
  if (CRYPTO_memcmp(digest, token_digest_, sizeof(digest)) == 0) return true;
  *wrong_token = true;
  return false;
}

void AdminServer::Dispatch(Conn& c, AdminRequest request) {
  assert(std::this_thread::get_id() == thread_);
  c.version_minor_ = request.version_minor;
  const bool head = request.method == "HEAD";
  const bool keep_alive = request.keep_alive;
  const bool open = std::find(options_.open_paths.begin(), options_.open_paths.end(),
                              request.path) != options_.open_paths.end();
  if (has_token_ && !open) {
    bool wrong = false;
    if (!Authorized(request, &wrong)) {
      spdlog::debug("admin: {} {} {}: {} token", c.peer(), request.method, LogSafe(request.path),
                    wrong ? "wrong" : "no");
      AdminResponse r =
          AdminResponse::Error(401, wrong ? "invalid token" : "a bearer token is required");
      // RFC 6750 section 3.
      r.headers.emplace_back(
          "WWW-Authenticate",
          wrong ? "Bearer realm=\"postern\", error=\"invalid_token\"" : "Bearer realm=\"postern\"");
      c.Reply(std::move(r), head, keep_alive);
      return;
    }
  }
  auto route = routes_.find(request.path);
  if (route == routes_.end()) {
    c.Reply(AdminResponse::Error(404, "no such path"), head, keep_alive);
    return;
  }
  const auto& methods = route->second;
  auto h = methods.find(request.method);
  if (h == methods.end() && head) h = methods.find("GET");
  if (h == methods.end()) {
    std::vector<std::string> allow;
    for (const auto& [m, unused] : methods) allow.push_back(m);
    if (methods.contains("GET") && !methods.contains("HEAD")) allow.push_back("HEAD");
    std::sort(allow.begin(), allow.end());
    AdminResponse r = AdminResponse::Error(405, "method not allowed");
    r.headers.emplace_back("Allow", absl::StrJoin(allow, ", "));  // RFC 9110 section 15.5.6
    c.Reply(std::move(r), head, keep_alive);
    return;
  }
  spdlog::debug("admin: {} {} {}", c.peer(), request.method, LogSafe(request.target));
  // The handler may answer at once (Answer() runs inside this call) or
  // keep the Responder for later.
  AdminResponder responder(c.Begin(head, keep_alive));
  const Handler& handler = h->second;
  handler(request, std::move(responder));
}

void AdminServer::Finish(Conn* c) {
  auto it = conns_.find(c);
  if (it == conns_.end()) return;
  graveyard_.push_back(std::move(it->second));
  conns_.erase(it);
  if (!reaper_armed_) {
    reaper_armed_ = true;
    reaper_.Start(std::chrono::milliseconds(0), [this] { graveyard_.clear(); });
  } else {
    reaper_.Restart(std::chrono::milliseconds(0));
  }
}

}  // namespace postern