#include "routing/auth_http_directory.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "routing/uv_owner.h"

namespace postern {
namespace {

constexpr size_t kReadBufferSize = 16 * 1024;
constexpr size_t kMaxServers = 64;
// A request that met a kept-alive connection the service had closed is sent
// again on another connection, at most this many times.
constexpr int kMaxStaleRetries = 2;

// "1.2.3.4:80" or "[::1]:80" -> the address, and the host part for Host.
absl::Status ParseServer(absl::string_view text, sockaddr_storage* addr, std::string* host) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("server \"", text, "\": no :port"));
  }
  absl::string_view h = text.substr(0, colon);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 1 || port > 65535 ||
      !std::all_of(text.begin() + colon + 1, text.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return absl::InvalidArgumentError(absl::StrCat("server \"", text, "\": bad port"));
  }
  *host = std::string(h);
  std::memset(addr, 0, sizeof(*addr));
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    const std::string ip(h.substr(1, h.size() - 2));
    if (uv_ip6_addr(ip.c_str(), static_cast<int>(port), reinterpret_cast<sockaddr_in6*>(addr)) ==
        0) {
      return absl::OkStatus();
    }
  } else {
    const std::string ip(h);
    if (uv_ip4_addr(ip.c_str(), static_cast<int>(port), reinterpret_cast<sockaddr_in*>(addr)) ==
        0) {
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "server \"", text, "\": not a numeric address (1.2.3.4:port or [::1]:port; no DNS)"));
}

bool PrintableNoSpace(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace

// One lookup, from Start() to its answer (or its cancellation).
struct AuthHttpDirectory::Job {
  enum class State {
    kQueued,     // waiting for a connection
    kOnConn,     // its request is on `conn` (connecting, or sent)
    kSleeping,   // Auth-Status: WAIT, until the timer asks again
    kFinishing,  // `answer` is set; the timer delivers it
  };
  State state = State::kQueued;
  Handle* handle = nullptr;  // null once the handle is gone
  Done done;
  std::string request;
  UvTimer timer;  // the deadline, then the WAIT sleep or the delivery
  Conn* conn = nullptr;
  size_t server = 0;   // the address of the current (or next) try
  uint64_t tried = 0;  // addresses tried, a bit each
  int wait_rounds = 0;
  int stale_retries = 0;
  std::optional<DirectoryAnswer> answer;
  std::list<std::unique_ptr<Job>>::iterator self;
  std::list<Job*>::iterator queue_pos;
};

class AuthHttpDirectory::Handle final : public Directory::Lookup {
 public:
  Handle(AuthHttpDirectory* dir, Job* job) : dir_(dir), job_(job) {}
  ~Handle() override {
    if (job_ != nullptr) dir_->Cancel(job_);
  }
  AuthHttpDirectory* dir_;
  Job* job_;  // null once answered, or when the directory is gone
};

// One TCP connection to one address of the service.
struct AuthHttpDirectory::Conn {
  enum class State {
    kConnecting,  // connect in progress (for `job`, or for nobody: cancelled)
    kIdle,        // kept alive, reading only to notice a close
    kBusy,        // a request written, its answer being read (`job` null: cancelled)
  };
  State state = State::kConnecting;
  AuthHttpDirectory* dir = nullptr;
  size_t server = 0;
  UvOwner<uv_tcp_t> tcp;
  UvTimer timer;  // connect/answer bound, or the idle bound
  Job* job = nullptr;
  bool used = false;             // carried a request before
  bool exchange_reused = false;  // the current request went on a kept-alive connection
  AuthHttpResponseParser parser;
  std::list<std::unique_ptr<Conn>>::iterator self;
};

namespace {
struct WriteReq {
  uv_write_t req;
  std::string data;
};
}  // namespace

absl::StatusOr<std::unique_ptr<AuthHttpDirectory>> AuthHttpDirectory::Create(
    uv_loop_t* loop, AuthHttpOptions options) {
  if (loop == nullptr) return absl::InvalidArgumentError("auth-http: no loop");
  if (options.servers.empty()) return absl::InvalidArgumentError("auth-http: no server");
  if (options.servers.size() > kMaxServers) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth-http: more than ", kMaxServers, " servers"));
  }
  std::vector<Server> servers;
  std::string first_host;
  for (const std::string& text : options.servers) {
    Server s;
    s.text = text;
    std::string host;
    if (absl::Status st = ParseServer(text, &s.addr, &host); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("auth-http: ", st.message()));
    }
    if (first_host.empty()) first_host = host;
    servers.push_back(std::move(s));
  }
  if (options.uri.empty() || options.uri[0] != '/' || !PrintableNoSpace(options.uri)) {
    return absl::InvalidArgumentError(
        "auth-http: uri must start with / and hold printable ASCII only, no spaces");
  }
  if (options.host.empty()) options.host = first_host;
  if (!PrintableNoSpace(options.host)) {
    return absl::InvalidArgumentError("auth-http: host must be printable ASCII, no spaces");
  }
  if (options.timeout.count() <= 0)
    return absl::InvalidArgumentError("auth-http: timeout must be > 0");
  if (options.attempt_timeout.count() < 0 || options.server_cooldown.count() < 0 ||
      options.idle_timeout.count() <= 0) {
    return absl::InvalidArgumentError("auth-http: negative or zero durations");
  }
  if (options.max_connections == 0) {
    return absl::InvalidArgumentError("auth-http: max_connections must be >= 1");
  }
  if (options.max_wait_rounds < 0)
    return absl::InvalidArgumentError("auth-http: max_wait_rounds < 0");
  for (const auto& [name, value] : options.headers) {
    if (absl::Status st = ValidateAuthHttpHeader(name, value); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("auth-http: ", st.message()));
    }
  }
  AuthHttpRequestConfig config;
  config.uri = options.uri;
  config.host = options.host;
  config.headers = options.headers;
  return std::unique_ptr<AuthHttpDirectory>(
      new AuthHttpDirectory(loop, std::move(options), std::move(servers), std::move(config)));
}

AuthHttpDirectory::AuthHttpDirectory(uv_loop_t* loop, AuthHttpOptions options,
                                     std::vector<Server> servers, AuthHttpRequestConfig config)
    : loop_(loop),
      options_(std::move(options)),
      servers_(std::move(servers)),
      request_config_(std::move(config)),
      read_buf_(new char[kReadBufferSize]) {
  attempt_timeout_ = options_.attempt_timeout.count() > 0
                         ? options_.attempt_timeout
                         : std::max(std::chrono::milliseconds(1),
                                    options_.timeout / static_cast<int64_t>(servers_.size()));
}

AuthHttpDirectory::~AuthHttpDirectory() {
  for (auto& job : jobs_) {
    if (job->handle != nullptr) job->handle->job_ = nullptr;
  }
  queue_.clear();
  conns_.clear();
  jobs_.clear();
}

AuthHttpDirectory::Stats AuthHttpDirectory::stats() const {
  Stats s = stats_;
  s.open_connections = conns_.size();
  s.idle_connections = static_cast<size_t>(std::count_if(
      conns_.begin(), conns_.end(), [](const auto& c) { return c->state == Conn::State::kIdle; }));
  s.queued = queue_.size();
  return s;
}

// --- lookups --------------------------------------------------------------------------

std::unique_ptr<Directory::Lookup> AuthHttpDirectory::Start(const DirectoryRequest& request,
                                                            Done done) {
  ++stats_.lookups;
  jobs_.push_back(std::make_unique<Job>());
  Job* job = jobs_.back().get();
  job->self = std::prev(jobs_.end());
  job->done = std::move(done);
  job->request = BuildAuthHttpRequest(request_config_, request);
  job->timer.Init(loop_);
  auto handle = std::make_unique<Handle>(this, job);
  job->handle = handle.get();
  job->timer.Start(options_.timeout, [this, job] { OnDeadline(job); });
  job->server = FirstServer();
  Enqueue(job, /*front=*/false);
  Pump();
  if (job->state == Job::State::kQueued && queue_.size() > options_.max_queue) {
    ++stats_.queue_full;
    Finish(job, DirectoryAnswer::Unavailable(absl::StrCat(
                    "auth http: ", options_.max_queue, " lookups already wait for a connection")));
  }
  return handle;
}

void AuthHttpDirectory::Enqueue(Job* job, bool front) {
  job->state = Job::State::kQueued;
  job->queue_pos = front ? queue_.insert(queue_.begin(), job) : queue_.insert(queue_.end(), job);
}

void AuthHttpDirectory::Dequeue(Job* job) {
  if (job->state != Job::State::kQueued) return;
  queue_.erase(job->queue_pos);
  job->state = Job::State::kOnConn;  // the caller sets what it becomes
}

void AuthHttpDirectory::Cancel(Job* job) {
  ++stats_.cancelled;
  job->handle = nullptr;
  if (job->state == Job::State::kQueued) Dequeue(job);
  if (job->conn != nullptr) {
    // The connection finishes the exchange alone; its answer is dropped.
    job->conn->job = nullptr;
    job->conn = nullptr;
  }
  jobs_.erase(job->self);  // closes the timer: nothing of the job runs again
}

void AuthHttpDirectory::Finish(Job* job, DirectoryAnswer answer) {
  Dequeue(job);
  if (job->conn != nullptr) {
    job->conn->job = nullptr;
    job->conn = nullptr;
  }
  job->state = Job::State::kFinishing;
  job->answer = std::move(answer);
  // Always from the loop, never from inside Start() or a caller's frame.
  job->timer.Start(std::chrono::milliseconds(0), [this, job] { Deliver(job); });
}

void AuthHttpDirectory::Deliver(Job* job) {
  std::unique_ptr<Job> owned = std::move(*job->self);
  jobs_.erase(job->self);
  if (job->handle != nullptr) job->handle->job_ = nullptr;
  Done done = std::move(job->done);
  DirectoryAnswer answer = *std::move(job->answer);
  owned.reset();
  ++stats_.answers;
  done(std::move(answer));  // may destroy this directory: nothing after
}

void AuthHttpDirectory::OnDeadline(Job* job) {
  ++stats_.timeouts;
  // A connection carrying the request keeps it: bounded by attempt_timeout,
  // it may still bring an answer (dropped) and go back to the pool.
  Finish(job, DirectoryAnswer::Unavailable(absl::StrCat("auth http server did not answer within ",
                                                        options_.timeout.count(), " ms")));
}

size_t AuthHttpDirectory::FirstServer() const {
  const uint64_t now = uv_now(loop_);
  for (size_t i = 0; i < servers_.size(); ++i) {
    if (servers_[i].cooldown_until_ms <= now) return i;
  }
  return 0;
}

bool AuthHttpDirectory::NextServer(Job* job) const {
  job->tried |= uint64_t{1} << job->server;
  const uint64_t now = uv_now(loop_);
  std::optional<size_t> cooling;
  for (size_t k = 1; k <= servers_.size(); ++k) {
    const size_t i = (job->server + k) % servers_.size();
    if (job->tried & (uint64_t{1} << i)) continue;
    if (servers_[i].cooldown_until_ms <= now) {
      job->server = i;
      return true;
    }
    if (!cooling) cooling = i;
  }
  if (!cooling) return false;
  job->server = *cooling;  // every address left is cooling down: try it anyway
  return true;
}

void AuthHttpDirectory::ServerFailed(size_t server) {
  servers_[server].cooldown_until_ms =
      uv_now(loop_) + static_cast<uint64_t>(options_.server_cooldown.count());
}

void AuthHttpDirectory::AttemptFailed(Job* job, const std::string& why) {
  if (!NextServer(job)) {
    Finish(job, DirectoryAnswer::Unavailable(why));
    return;
  }
  ++stats_.failovers;
  job->stale_retries = 0;
  Enqueue(job, /*front=*/true);
}

void AuthHttpDirectory::HandleResponse(Job* job, const AuthHttpResponse& response) {
  AuthHttpOutcome outcome = InterpretAuthHttpResponse(response);
  if (outcome.kind == AuthHttpOutcome::Kind::kAnswer) {
    if (response.http_status < 200 || response.http_status > 299) ++stats_.bad_responses;
    Finish(job, std::move(outcome.answer));
    return;
  }
  // Auth-Status: WAIT: ask again later (nginx does so without a bound).
  if (++job->wait_rounds > options_.max_wait_rounds) {
    Finish(job, DirectoryAnswer::Unavailable(
                    absl::StrCat("auth http server said WAIT ", job->wait_rounds, " times")));
    return;
  }
  job->state = Job::State::kSleeping;
  job->timer.Start(outcome.again_after, [this, job] {
    job->tried = 0;
    job->stale_retries = 0;
    job->server = FirstServer();
    job->timer.Start(options_.timeout, [this, job] { OnDeadline(job); });
    Enqueue(job, /*front=*/false);
    Pump();
  });
}

// --- connections ------------------------------------------------------------------------

void AuthHttpDirectory::Pump() {
  if (pumping_) return;
  pumping_ = true;
  while (!queue_.empty()) {
    Job* job = queue_.front();
    Conn* conn = nullptr;
    Conn* spare = nullptr;
    for (auto& c : conns_) {
      if (c->state != Conn::State::kIdle) continue;
      if (c->server == job->server) {
        conn = c.get();
        break;
      }
      if (spare == nullptr) spare = c.get();
    }
    if (conn == nullptr) {
      if (conns_.size() >= options_.max_connections) {
        if (spare == nullptr) break;  // all busy: the queue waits
        CloseConn(spare);             // idle, but to another address
      }
      std::string why;
      conn = OpenConn(job->server, &why);
      if (conn == nullptr) {
        Dequeue(job);
        ServerFailed(job->server);
        AttemptFailed(job, why);
        continue;
      }
    }
    Dequeue(job);
    Assign(conn, job);
  }
  pumping_ = false;
}

AuthHttpDirectory::Conn* AuthHttpDirectory::OpenConn(size_t server, std::string* why) {
  auto owned = std::make_unique<Conn>();
  Conn* c = owned.get();
  c->dir = this;
  c->server = server;
  uv_tcp_t* tcp = c->tcp.Allocate();
  int rc = uv_tcp_init(loop_, tcp);
  if (rc == 0) {
    tcp->data = c;
    auto* req = new uv_connect_t;
    rc = uv_tcp_connect(req, tcp, reinterpret_cast<const sockaddr*>(&servers_[server].addr),
                        &AuthHttpDirectory::ConnectCb);
    if (rc != 0) delete req;
  }
  if (rc != 0) {
    ++stats_.connect_failures;
    *why = absl::StrCat("auth http server ", servers_[server].text, ": connect: ", uv_strerror(rc));
    return nullptr;  // `owned` closes the handle
  }
  uv_tcp_nodelay(tcp, 1);
  ++stats_.connects;
  c->timer.Init(loop_);
  conns_.push_back(std::move(owned));
  c->self = std::prev(conns_.end());
  c->timer.Start(attempt_timeout_, [this, c] { OnConnTimer(c); });
  return c;
}

void AuthHttpDirectory::CloseConn(Conn* conn) {
  if (conn->job != nullptr) conn->job->conn = nullptr;  // callers moved the job on already
  conns_.erase(conn->self);  // closes the socket and the timer; late callbacks find no owner
}

void AuthHttpDirectory::Assign(Conn* conn, Job* job) {
  conn->job = job;
  job->conn = conn;
  job->state = Job::State::kOnConn;
  if (conn->state == Conn::State::kIdle) Send(conn);
}

void AuthHttpDirectory::Send(Conn* conn) {
  Job* job = conn->job;
  conn->state = Conn::State::kBusy;
  conn->parser.Reset();
  conn->exchange_reused = conn->used;
  conn->used = true;
  auto* w = new WriteReq;
  w->req.data = w;
  w->data = job->request;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned int>(w->data.size()));
  const int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(conn->tcp.get()), &buf, 1,
                          &AuthHttpDirectory::WriteCb);
  if (rc != 0) {
    delete w;
    ExchangeFailed(conn,
                   absl::StrCat("auth http server ", servers_[conn->server].text,
                                ": write: ", uv_strerror(rc)),
                   /*timed_out=*/false);
    return;
  }
  ++stats_.requests;
  if (conn->exchange_reused) ++stats_.reused;
  conn->timer.Start(attempt_timeout_, [this, conn] { OnConnTimer(conn); });
}

void AuthHttpDirectory::MakeIdle(Conn* conn) {
  conn->state = Conn::State::kIdle;
  conn->timer.Start(options_.idle_timeout, [this, conn] { OnConnTimer(conn); });
}

void AuthHttpDirectory::ExchangeFailed(Conn* conn, const std::string& why, bool timed_out) {
  Job* job = conn->job;
  conn->job = nullptr;
  if (job != nullptr) job->conn = nullptr;
  const size_t server = conn->server;
  // A kept-alive connection that closed before any byte of an answer: the
  // service closed it while idle (a restart, its own idle timeout) and our
  // request crossed the close. Not the service's fault; send it again.
  const bool stale = conn->state == Conn::State::kBusy && conn->exchange_reused &&
                     !conn->parser.started() && !timed_out;
  CloseConn(conn);
  if (stale) {
    // Its idle siblings are probably as stale: do not offer them next.
    for (auto it = conns_.begin(); it != conns_.end();) {
      Conn* c = (it++)->get();
      if (c->server == server && c->state == Conn::State::kIdle) CloseConn(c);
    }
  } else {
    ServerFailed(server);
  }
  if (job != nullptr) {
    if (stale && job->stale_retries < kMaxStaleRetries) {
      ++job->stale_retries;
      ++stats_.stale_retries;
      Enqueue(job, /*front=*/true);
    } else {
      AttemptFailed(job, why);
    }
  }
  Pump();
}

void AuthHttpDirectory::ConnectCb(uv_connect_t* req, int status) {
  auto* conn = static_cast<Conn*>(req->handle->data);
  delete req;
  if (conn == nullptr) return;  // closed meanwhile
  conn->dir->OnConnected(conn, status);
}

void AuthHttpDirectory::OnConnected(Conn* conn, int status) {
  if (status == 0) {
    status = uv_read_start(reinterpret_cast<uv_stream_t*>(conn->tcp.get()),
                           &AuthHttpDirectory::AllocCb, &AuthHttpDirectory::ReadCb);
  }
  if (status != 0) {
    ++stats_.connect_failures;
    ExchangeFailed(conn,
                   absl::StrCat("auth http server ", servers_[conn->server].text,
                                ": connect: ", uv_strerror(status)),
                   /*timed_out=*/false);
    return;
  }
  if (conn->job != nullptr) {
    Send(conn);
  } else {
    MakeIdle(conn);  // its lookup was cancelled or went elsewhere
    Pump();
  }
}

void AuthHttpDirectory::AllocCb(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* conn = static_cast<Conn*>(h->data);
  *buf = conn == nullptr ? uv_buf_init(nullptr, 0)
                         : uv_buf_init(conn->dir->read_buf_.get(), kReadBufferSize);
}

void AuthHttpDirectory::ReadCb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* conn = static_cast<Conn*>(s->data);
  if (conn == nullptr || nread == 0) return;
  conn->dir->OnRead(conn, nread, buf);
}

void AuthHttpDirectory::WriteCb(uv_write_t* req, int status) {
  auto* conn = static_cast<Conn*>(req->handle->data);
  delete static_cast<WriteReq*>(req->data);
  if (conn == nullptr || status == 0 || conn->state != Conn::State::kBusy) return;
  conn->dir->ExchangeFailed(
      conn,
      absl::StrCat("auth http server ", conn->dir->servers_[conn->server].text,
                   ": write: ", uv_strerror(status)),
      /*timed_out=*/false);
}

void AuthHttpDirectory::OnRead(Conn* conn, ssize_t nread, const uv_buf_t* buf) {
  if (conn->state != Conn::State::kBusy) {
    // An idle connection the service closed, or bytes nobody asked for.
    CloseConn(conn);
    Pump();
    return;
  }
  using Result = AuthHttpResponseParser::Result;
  if (nread > 0) {
    size_t consumed = 0;
    const Result r =
        conn->parser.Feed(absl::string_view(buf->base, static_cast<size_t>(nread)), &consumed);
    if (r == Result::kNeedMore) return;
    // Bytes after the answer (we never pipeline): do not trust the rest.
    ResponseDone(conn, r == Result::kDone,
                 r == Result::kDone && conn->parser.response().keep_alive &&
                     consumed == static_cast<size_t>(nread));
    return;
  }
  if (nread == UV_EOF) {
    const Result r = conn->parser.FeedEof();
    if (r == Result::kDone) {
      ResponseDone(conn, true, false);
      return;
    }
  }
  ExchangeFailed(conn,
                 absl::StrCat("auth http server ", servers_[conn->server].text,
                              conn->parser.started() ? ": connection lost in the answer: "
                                                     : ": connection lost before an answer: ",
                              uv_strerror(static_cast<int>(nread))),
                 /*timed_out=*/false);
}

void AuthHttpDirectory::OnConnTimer(Conn* conn) {
  if (conn->state == Conn::State::kIdle) {
    CloseConn(conn);  // unused for idle_timeout
    return;
  }
  ++stats_.attempt_timeouts;
  ExchangeFailed(conn,
                 absl::StrCat("auth http server ", servers_[conn->server].text,
                              conn->state == Conn::State::kConnecting ? ": connect timed out after "
                                                                      : ": no answer after ",
                              attempt_timeout_.count(), " ms"),
                 /*timed_out=*/true);
}

void AuthHttpDirectory::ResponseDone(Conn* conn, bool ok, bool keep) {
  Job* job = conn->job;
  conn->job = nullptr;
  if (job != nullptr) job->conn = nullptr;
  std::optional<AuthHttpResponse> response;
  std::string error;
  if (ok) {
    response = conn->parser.response();
  } else {
    error = conn->parser.error();
  }
  const std::string server = servers_[conn->server].text;
  if (ok && keep) {
    MakeIdle(conn);
  } else {
    CloseConn(conn);
  }
  if (!ok) ++stats_.bad_responses;
  if (job == nullptr) {
    ++stats_.discarded;  // its lookup was cancelled or timed out
  } else if (!ok) {
    Finish(job,
           DirectoryAnswer::Unavailable(absl::StrCat("auth http server ", server, ": ", error)));
  } else {
    HandleResponse(job, *response);
  }
  Pump();
}

}  // namespace postern
