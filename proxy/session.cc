#include "proxy/session.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/sasl.h"
#include "proxy/imap_session.h"
#include "proxy/pop3_session.h"
#include "proxy/worker.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

// LOGIN mechanism prompts: base64 of "Username:" and "Password:"
// (draft-murchison-sasl-login).
constexpr char kLoginUserPrompt[] = "+ VXNlcm5hbWU6\r\n";
constexpr char kLoginPassPrompt[] = "+ UGFzc3dvcmQ6\r\n";

// During shutdown a closing connection waits at most this long for its peer.
constexpr uint32_t kShutdownLingerMs = 500;

// "ip:port" / "[v6]:port" -> ip (no brackets) and port.
void SplitAddress(absl::string_view addr, absl::string_view* ip, absl::string_view* port) {
  *ip = addr;
  *port = {};
  size_t colon = addr.rfind(':');
  if (colon != absl::string_view::npos) {
    *ip = addr.substr(0, colon);
    *port = addr.substr(colon + 1);
  }
  if (absl::StartsWith(*ip, "[") && absl::EndsWith(*ip, "]")) *ip = ip->substr(1, ip->size() - 2);
}

bool HasCrLfNul(absl::string_view s) {
  return s.find_first_of(absl::string_view("\r\n\0", 3)) != absl::string_view::npos;
}

}  // namespace

std::unique_ptr<Session> Session::Create(Worker& worker, const ListenerConfig& listener,
                                         ConnectionPtr client) {
  if (listener.protocol == Protocol::kImap) {
    return std::make_unique<ImapSession>(worker, listener, std::move(client));
  }
  return std::make_unique<Pop3Session>(worker, listener, std::move(client));
}

Session::Session(Worker& worker, const ListenerConfig& listener, ConnectionPtr client)
    : worker_(worker),
      listener_(listener),
      config_(worker.config_ptr()),
      client_(std::move(client)),
      started_(std::chrono::steady_clock::now()) {
  client_->set_handler(this);
}

void Session::Start() {
  if (client_address_.empty()) client_address_ = client_->PeerAddress();
  const size_t high = config_->limits.relay_high_watermark;
  const size_t low = config_->limits.relay_low_watermark;
  client_->SetWatermarks(high, low);
  if (listener_.tls == TlsMode::kImplicit) client_->StartServerTls(*worker_.tls());
  // With implicit TLS the greeting waits inside the engine until the
  // handshake is done.
  Send(Greeting());
  ArmTimer();
  client_->StartReading();
}

absl::string_view Session::client_ip() const {
  absl::string_view ip, port;
  SplitAddress(client_address_, &ip, &port);
  return ip;
}

absl::string_view Session::client_port() const {
  absl::string_view ip, port;
  SplitAddress(client_address_, &ip, &port);
  return port;
}

bool Session::AuthAllowed() const { return client_->tls() || listener_.allow_plaintext_auth; }

bool Session::CanStartTls() const { return listener_.tls == TlsMode::kStartTls && !client_->tls(); }

void Session::StartTls() {
  client_->input().Clear();
  client_->StartServerTls(*worker_.tls());
}

void Session::ArmTimer() {
  std::chrono::milliseconds t = config_->timeouts.login;
  if (state_ == State::kRelay) {
    t = listener_.protocol == Protocol::kImap ? config_->timeouts.imap_idle
                                              : config_->timeouts.pop3_idle;
  }
  deadline_ms_ = uv_now(worker_.loop()) + static_cast<uint64_t>(t.count());
}

void Session::CheckTimeout(uint64_t now_ms) {
  if (deadline_ms_ == 0 || now_ms < deadline_ms_ || state_ == State::kEnded) return;
  if (state_ == State::kPreLogin) Send(TimeoutNotice());
  End(state_ == State::kRelay ? "idle timeout" : "login timeout");
}

void Session::OnData(Connection& c) {
  if (state_ == State::kEnded) return;
  if (state_ == State::kRelay) {
    ArmTimer();
    if (&c == client_.get()) {
      RelayFrom(*client_, *backend_);
    } else {
      RelayFrom(*backend_, *client_);
    }
    return;
  }
  if (&c != client_.get()) return;
  if (state_ == State::kPreLogin) ArmTimer();
  ProcessInput();
}

void Session::ProcessInput() {
  while (state_ == State::kPreLogin && !client_->input().empty()) {
    bool progressed = sasl_ != nullptr ? ProcessSaslLine() : ProcessCommand();
    if (!progressed) break;
  }
}

void Session::OnDrained(Connection& c) {
  if (state_ != State::kRelay) return;
  // The side that was slow caught up: read from its peer again.
  if (&c == client_.get()) {
    backend_->StartReading();
  } else {
    client_->StartReading();
  }
}

void Session::OnEnd(Connection& c, absl::string_view reason) {
  if (state_ == State::kEnded) return;
  const bool client_side = &c == client_.get();
  End(absl::StrCat(client_side ? "client: " : "backend: ", reason));
}

bool Session::SpendError() {
  if (++errors_ < config_->limits.error_budget) return true;
  Send(listener_.protocol == Protocol::kImap ? "* BYE Too many invalid commands.\r\n"
                                             : "-ERR Too many invalid commands.\r\n");
  End("too many invalid commands");
  return false;
}

Session::SaslMech Session::ParseSaslMech(absl::string_view name) {
  if (absl::EqualsIgnoreCase(name, "PLAIN")) return SaslMech::kPlain;
  if (absl::EqualsIgnoreCase(name, "LOGIN")) return SaslMech::kLogin;
  return SaslMech::kNone;
}

void Session::StartSasl(SaslMech mech, bool has_ir, absl::string_view ir) {
  if (!has_ir) {
    sasl_ = std::make_unique<SaslState>(mech, config_->limits.max_line);
    Send(mech == SaslMech::kLogin ? kLoginUserPrompt : "+ \r\n");
    return;
  }
  // Process the initial response as if it were the first line.
  if (mech == SaslMech::kPlain) {
    absl::StatusOr<SaslPlain> p = DecodeSaslPlain(ir == "=" ? "" : ir);
    if (!p.ok()) {
      ReplyAuthBad(p.status().message());
      return;
    }
    BeginLogin(std::move(p->authcid), std::move(p->password), std::move(p->authzid));
    return;
  }
  absl::StatusOr<std::string> u = DecodeBase64Strict(ir == "=" ? "" : ir);
  if (!u.ok() || u->empty()) {
    ReplyAuthBad("Invalid base64 data in the initial response.");
    return;
  }
  sasl_ = std::make_unique<SaslState>(mech, config_->limits.max_line);
  sasl_->user = std::move(*u);
  Send(kLoginPassPrompt);
}

bool Session::ProcessSaslLine() {
  absl::string_view line;
  size_t consumed = 0;
  Buffer& in = client_->input();
  LineSplitter::Status st = sasl_->lines.Next(in, &line, &consumed);
  if (st == LineSplitter::Status::kNeedMore) {
    in.Drain(consumed);
    return false;
  }
  if (st == LineSplitter::Status::kTooLong) {
    in.Drain(consumed);
    sasl_.reset();
    ReplyAuthBad("SASL response too long.");
    return state_ == State::kPreLogin;
  }
  std::string response(line);  // the view may point into sasl_'s scratch
  in.Drain(consumed);
  if (response == "*") {  // RFC 9051 section 6.2.2, RFC 5034 section 4
    sasl_.reset();
    ReplyAuthCanceled();
    return true;
  }
  if (sasl_->mech == SaslMech::kPlain) {
    sasl_.reset();
    absl::StatusOr<SaslPlain> p = DecodeSaslPlain(response);
    if (!p.ok()) {
      ReplyAuthBad(p.status().message());
      return state_ == State::kPreLogin;
    }
    BeginLogin(std::move(p->authcid), std::move(p->password), std::move(p->authzid));
    return false;
  }
  absl::StatusOr<std::string> v = DecodeBase64Strict(response);
  if (!v.ok() || (sasl_->user.empty() && v->empty())) {
    const bool bad_base64 = !v.ok();
    sasl_.reset();
    ReplyAuthBad(bad_base64 ? "Invalid base64 data." : "Empty user name.");
    return state_ == State::kPreLogin;
  }
  if (sasl_->user.empty()) {
    sasl_->user = std::move(*v);
    Send(kLoginPassPrompt);
    return true;
  }
  std::string user = std::move(sasl_->user);
  sasl_.reset();
  BeginLogin(std::move(user), std::move(*v));
  return false;
}

void Session::BeginLogin(std::string user, std::string password, std::string authzid) {
  user_ = user;
  // Credentials travel inside backend command lines: CR, LF or NUL in them
  // would let a client inject commands (and no backend accepts them).
  if (user.empty() || HasCrLfNul(user) || HasCrLfNul(password) || HasCrLfNul(authzid)) {
    OnLoginDone(LoginOutcome::Failure(LoginOutcome::Kind::kAuthFailed,
                                      "invalid characters in the credentials"),
                nullptr);
    return;
  }
  state_ = State::kAuthenticating;
  client_->StopReading();  // what the client pipelines waits in input()
  deadline_ms_ = 0;
  uint64_t gen = ++generation_;
  RouteRequest req;
  req.user = user;
  req.client_ip = std::string(client_ip());
  req.pop3 = listener_.protocol == Protocol::kPop3;
  // The credentials wait in the lambda until the route is known.
  worker_.router().Route(req, [this, gen, user = std::move(user), password = std::move(password),
                               authzid = std::move(authzid)](absl::StatusOr<RouteResult> r) {
    if (gen != generation_ || state_ != State::kAuthenticating) return;
    if (!r.ok() || r->backend >= config_->backends.size()) {
      OnLoginDone(LoginOutcome::Failure(
                      LoginOutcome::Kind::kUnavailable,
                      absl::StrCat("routing: ", r.ok() ? "no such backend" : r.status().message())),
                  nullptr);
      return;
    }
    const BackendConfig& b = config_->backends[r->backend];
    backend_name_ = &b.name;
    LoginRequest lr{user, password, authzid, LoginIdArgs()};
    login_ = std::make_unique<BackendLogin>(
        worker_.poller(), worker_.pool(), b, listener_.protocol, config_->timeouts, std::move(lr),
        [this](LoginOutcome o, ConnectionPtr c) { OnLoginDone(std::move(o), std::move(c)); });
    login_->Start();
  });
}

void Session::OnLoginDone(LoginOutcome outcome, ConnectionPtr backend) {
  // We are inside the login object's callback: free it on a later turn.
  if (login_) {
    BackendLogin* raw = login_.release();
    worker_.Defer([raw] { delete raw; });
  }
  if (state_ == State::kEnded) return;
  switch (outcome.kind) {
    case LoginOutcome::Kind::kOk:
      backend_ = std::move(backend);
      ReplyLoginOk(outcome);
      spdlog::debug("login ok: client={} user={} backend={}", client_address_, user_,
                    backend_name());
      StartRelay();
      return;
    case LoginOutcome::Kind::kAuthFailed:
      ++auth_failures_;
      spdlog::info("auth failed: client={} listener={} user={} backend={} detail=\"{}\"",
                   client_address_, listener_.name, user_, backend_name(), outcome.detail);
      ReplyLoginFailed(outcome);
      break;
    case LoginOutcome::Kind::kUnavailable:
      spdlog::warn("backend unavailable: client={} user={} backend={} detail=\"{}\"",
                   client_address_, user_, backend_name(), outcome.detail);
      ReplyUnavailable();
      break;
  }
  if (state_ == State::kEnded) return;
  if (auth_failures_ >= config_->limits.max_auth_attempts) {
    ReplyTooManyFailures();
    End("too many failed logins");
    return;
  }
  state_ = State::kPreLogin;
  ArmTimer();
  client_->StartReading();
  ProcessInput();  // commands pipelined after the failed login
}

void Session::StartRelay() {
  state_ = State::kRelay;
  ReleaseFront();
  backend_->set_handler(this);
  backend_->SetWatermarks(config_->limits.relay_high_watermark,
                          config_->limits.relay_low_watermark);
  ArmTimer();
  client_->input().set_pool(worker_.bulk_pool());
  backend_->input().set_pool(worker_.bulk_pool());
  // From here on no protocol code runs (Dovecot's login_proxy_detach): what
  // the client pipelined after its login goes first, then plain relaying.
  if (!client_->input().empty()) backend_->Write(client_->input());
  if (!backend_->input().empty()) client_->Write(backend_->input());
  if (!client_->tls() && !backend_->tls()) {
    // Both sides plaintext: bytes go socket -> pipe -> socket in the kernel,
    // never through our buffers (ARCHITECTURE.md; issue 3's splice lever).
    splice_ = std::make_unique<Splice>();
    client_->set_raw(true);
    backend_->set_raw(true);
  }
  client_->StartReading();
  backend_->StartReading();
}

// Chunks per readable event while the sender has more and the receiver takes
// it all (then the other sockets get their turn; level-triggered epoll comes
// back).
constexpr int kMaxSplicesPerEvent = 16;

void Session::OnReadable(Connection& c) {
  if (state_ != State::kRelay || splice_ == nullptr) {
    c.ReadBuffered();
    return;
  }
  bool up = &c == client_.get();
  Connection& to = up ? *backend_ : *client_;
  SpliceDir& d = up ? splice_->up : splice_->down;
  if (d.pending > 0) {
    c.StopReading();  // the receiver is full; its OnWritable resumes us
    return;
  }
  // Bytes already queued for the receiver go first: until they are gone (or
  // without a pipe to lend), this event takes the buffered path.
  if (to.pending() > 0 || !worker_.pipes().Get(&d.pipe)) {
    c.ReadBuffered();
    return;
  }
  ArmTimer();
  for (int i = 0; i < kMaxSplicesPerEvent; ++i) {
    ssize_t n;
    do {
      n = splice(c.fd(), nullptr, d.pipe.w, nullptr, d.pipe.capacity,
                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      int err = errno;
      worker_.pipes().Put(&d.pipe);  // empty
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) return;
      c.Fail(n == 0 ? "peer closed" : absl::StrCat("read error: ", std::strerror(err)));
      return;
    }
    d.pending = static_cast<size_t>(n);
    c.CountRaw(d.pending, 0);
    // Blocked (the pipe keeps the rest) or failed (the session ended).
    if (!SpliceOut(c, to, d)) return;
    if (static_cast<size_t>(n) < d.pipe.capacity) break;  // the socket had no more
  }
  worker_.pipes().Put(&d.pipe);  // empty: back until the next event
}

void Session::OnWritable(Connection& to) {
  if (state_ != State::kRelay || splice_ == nullptr) return;
  bool up = &to == backend_.get();
  SpliceDir& d = up ? splice_->up : splice_->down;
  if (SpliceOut(up ? *client_ : *backend_, to, d)) worker_.pipes().Put(&d.pipe);
}

bool Session::SpliceOut(Connection& from, Connection& to, SpliceDir& d) {
  while (d.pending > 0) {
    ssize_t m =
        splice(d.pipe.r, nullptr, to.fd(), nullptr, d.pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (m > 0) {
      d.pending -= static_cast<size_t>(m);
      to.CountRaw(0, static_cast<uint64_t>(m));
      continue;
    }
    if (m < 0 && errno == EINTR) continue;
    if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // The receiver's kernel buffer is full: the pipe holds the rest (it is
      // the backpressure window), the sender waits.
      from.StopReading();
      to.WaitWritable();
      return false;
    }
    int err = m < 0 ? errno : EPIPE;
    PipePool::Discard(&d.pipe);
    d.pending = 0;
    to.Fail(absl::StrCat("write error: ", std::strerror(err)));  // may end the session
    return false;
  }
  from.StartReading();
  return true;
}

void Session::SpillAll() {
  if (splice_ == nullptr) return;
  // Bytes still in a pipe are owed to the receiver: its close flushes them.
  Spill(splice_->down, *client_);
  if (backend_) Spill(splice_->up, *backend_);
  splice_.reset();
  client_->set_raw(false);
  if (backend_) backend_->set_raw(false);
}

void Session::Spill(SpliceDir& d, Connection& to) {
  if (!d.pipe.valid()) return;
  Buffer bytes(worker_.bulk_pool());
  while (d.pending > 0) {
    absl::Span<char> span = bytes.Reserve();
    ssize_t n = read(d.pipe.r, span.data(), std::min(span.size(), d.pending));
    if (n <= 0) {
      bytes.Commit(0);
      break;
    }
    bytes.Commit(static_cast<size_t>(n));
    d.pending -= static_cast<size_t>(n);
  }
  PipePool::Discard(&d.pipe);
  d.pending = 0;
  to.Write(bytes);  // counted as sent here, as they were not by the splice
}

void Session::RelayFrom(Connection& from, Connection& to) {
  to.Write(from.input());
  if (to.above_high_watermark()) from.StopReading();
}

void Session::Shutdown() {
  if (state_ == State::kEnded) return;
  SpillAll();  // the notice goes after what the client was already owed
  Send(ShutdownNotice());
  End("server shutdown");
}

void Session::End(absl::string_view reason) {
  if (state_ == State::kEnded) return;
  state_ = State::kEnded;
  ++generation_;
  deadline_ms_ = 0;
  LogEnd(reason);
  login_.reset();
  SpillAll();
  if (worker_.shutting_down()) {
    // The process is about to exit: do not wait long for slow peers.
    client_->set_linger(kShutdownLingerMs);
    if (backend_) backend_->set_linger(kShutdownLingerMs);
  }
  client_.reset();  // flushes what is queued, then closes
  backend_.reset();
  worker_.Remove(this);
}

const std::string& Session::backend_name() const {
  static const std::string kNone = "-";
  return backend_name_ != nullptr ? *backend_name_ : kNone;
}

void Session::LogEnd(absl::string_view reason) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started_)
                .count();
  spdlog::info(
      "session end: client={} listener={} protocol={} tls={} user={} backend={} in={} out={} "
      "duration_ms={} end=\"{}\"",
      client_address_, listener_.name, ProtocolName(listener_.protocol), client_->tls_version(),
      user_.empty() ? "-" : user_, backend_name(), client_->bytes_in(), client_->bytes_out(), ms,
      std::string(reason));
}

}  // namespace postern
