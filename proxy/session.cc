#include "proxy/session.h"

#include <openssl/mem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "protocol/imap_front.h"
#include "protocol/imap_response.h"
#include "protocol/imap_string.h"
#include "protocol/pop3_front.h"
#include "protocol/sasl_server.h"
#include "proxy/backend_health.h"
#include "proxy/event_log.h"
#include "proxy/gateway.h"
#include "proxy/log_text.h"
#include "proxy/relay.h"
#include "proxy/worker.h"
#include "spdlog/spdlog.h"

namespace postern {
namespace {

// During shutdown a closing connection waits at most this long for its peer.
constexpr uint32_t kShutdownLingerMs = 500;
// Sessions of one backend lost within a second that make it a mass event
// (health.disconnect_spread then applies).
constexpr uint32_t kMassDisconnect = 3;
// Commands of one client handled per loop turn before the others get theirs.
constexpr int kCommandsPerTurn = 64;
// A refused connection gets this long for its TLS handshake and the notice.
constexpr uint64_t kRefuseTimeoutMs = 10'000;

// A POP3 client refused by the IMAP backend of a gateway hears POP3's codes
// (RFC 2449 section 8, RFC 3206; DIGEST c.1), never IMAP's.
void MapImapRefusalToPop3(LoginReply& reply) {
  const std::string code = absl::AsciiStrToUpper(reply.code);
  reply.code.clear();
  if (code == "UNAVAILABLE" || code == "SERVERBUG") {
    reply.kind = LoginReply::Kind::kUnavailable;
  } else if (code == "LIMIT" || code == "INUSE") {
    reply.code = "IN-USE";
  } else if (code == "AUTHORIZATIONFAILED") {
    reply.kind = LoginReply::Kind::kAuthzFailed;
  }
  if (reply.code.empty()) reply.text.clear();  // our own words then
}

bool HasCrLfNul(absl::string_view s) {
  return s.find_first_of(absl::string_view("\r\n\0", 3)) != absl::string_view::npos;
}

// Random, so that a session id cannot be guessed or made to collide; the
// alphabet is base64's without padding, 16 characters as Dovecot's own ids
// (and under its 64-character limit for x-session-id).
std::array<char, 16> NewSessionId() {
  uint8_t raw[12];
  RAND_bytes(raw, sizeof(raw));
  std::string b64 = absl::Base64Escape(absl::string_view(reinterpret_cast<char*>(raw), 12));
  std::array<char, 16> id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = b64[i];
  return id;
}

}  // namespace

Session::Session(Worker& worker, std::shared_ptr<WorkerView> view, const ListenerConfig& listener,
                 ConnectionPtr client, const PeerAddress& peer, bool trusted)
    : worker_(worker),
      snapshot_(view->snapshot_ptr()),
      view_(std::move(view)),
      listener_(listener),
      config_(snapshot_->config.get()),
      client_(std::move(client)),
      started_(std::chrono::steady_clock::now()),
      peer_(peer),
      limit_key_(KeyOf(peer)),
      id_(NewSessionId()),
      trusted_(trusted) {
  client_->set_handler(this);
  hops_ = config_->proxy_ttl;
  listener_index_ = static_cast<uint32_t>(&listener_ - config_->listeners.data());
}

WorkerMetrics::PerListener& Session::metrics() {
  return worker_.metrics().listeners[listener_index_];
}

void Session::EnterStage(StageLabel stage) {
  if (worker_.metrics().listeners.size() <= listener_index_) return;
  WorkerMetrics::PerListener& m = metrics();
  if (open_counted_) open_.Sub(1);
  open_ = m.open[static_cast<size_t>(stage)];
  open_.Add(1);
  open_counted_ = true;
  m.total[static_cast<size_t>(stage)].Inc();
}

void Session::CountLogin(LoginResult result) {
  if (worker_.metrics().listeners.size() <= listener_index_) return;
  metrics().logins[static_cast<size_t>(result)].Inc();
}

void Session::CountBytes() {
  if (client_ == nullptr || worker_.metrics().listeners.size() <= listener_index_) return;
  const uint64_t in = client_->bytes_in();
  const uint64_t out = client_->bytes_out();
  WorkerMetrics::PerListener& m = metrics();
  if (in > counted_in_) m.bytes_up.Add(in - counted_in_);
  if (out > counted_out_) m.bytes_down.Add(out - counted_out_);
  counted_in_ = in;
  counted_out_ = out;
}

Session::~Session() = default;

void Session::Start() {
  const LimitsConfig& limits = config_->limits;
  FrontOptions o;
  o.hostname = config_->hostname;
  o.tls = listener_.tls == TlsMode::kImplicit;
  o.starttls = listener_.tls == TlsMode::kStartTls;
  o.allow_plaintext_auth = listener_.allow_plaintext_auth;
  o.max_line = limits.max_line;
  o.max_literal = limits.max_prelogin_literal;
  o.max_sasl_line = limits.max_line;
  o.error_budget = limits.error_budget;
  o.max_auth_attempts = limits.max_auth_attempts;
  o.sasl = listener_.sasl;
  o.trusted = trusted_;
  if (listener_.protocol == Protocol::kImap) {
    front_ = std::make_unique<ImapFront>(*this, std::move(o));
  } else {
    front_ = std::make_unique<Pop3Front>(*this, std::move(o));
  }
  counted_prelogin_ = true;
  worker_.PreloginStarted();
  EnterStage(StageLabel::kPrelogin);
  if (!config_->log.trace_users.empty()) {
    trace_ =
        std::make_unique<SessionTrace>(std::string(id()), listener_.protocol == Protocol::kImap);
  }
  // OnDrained comes when the replies a blocked client owes fall to half the
  // bound: then its commands are read again (ProcessInput).
  client_->SetWatermarks(limits.max_pending_replies, limits.max_pending_replies / 2);
  tls_started_ = listener_.tls == TlsMode::kImplicit;
  if (listener_.tls == TlsMode::kImplicit && !client_->StartServerTls(*snapshot_->tls)) {
    End("tls: no engine");
    return;
  }
  // With implicit TLS the greeting waits inside the engine until the
  // handshake is done.
  front_->Start();
  const uint64_t now = uv_now(worker_.loop());
  login_deadline_ms_ = now + static_cast<uint64_t>(config_->timeouts.login_deadline.count());
  ArmIdle();
  client_->StartReading();
  if (!client_->input().empty()) {
    // Bytes that came behind a PROXY header (a ClientHello, a command):
    // already read, so no readiness event will announce them.
    const uint64_t gen = generation_;
    worker_.Defer([this, gen] {
      if (gen == generation_ && state_ == State::kFront) client_->Rescan();
    });
  }
}

void Session::Refuse(absl::string_view notice, const char* reason) {
  state_ = State::kRefusing;
  refuse_reason_ = reason;
  idle_deadline_ms_ = uv_now(worker_.loop()) + kRefuseTimeoutMs;
  if (listener_.tls == TlsMode::kImplicit) {
    // The client expects TLS from the first byte: the notice goes out after
    // the handshake (OnTlsReady), bounded by kRefuseTimeoutMs.
    if (!client_->StartServerTls(*snapshot_->tls)) {
      End(reason);
      return;
    }
    Send(notice);
    client_->StartReading();
    return;
  }
  Send(notice);
  End(reason);
}

void Session::ArmIdle() {
  std::chrono::milliseconds t = config_->timeouts.login;
  if (state_ == State::kStage) {
    t = listener_.protocol == Protocol::kImap ? config_->timeouts.imap_idle
                                              : config_->timeouts.pop3_idle;
  }
  idle_deadline_ms_ = uv_now(worker_.loop()) + static_cast<uint64_t>(t.count());
}

void Session::CheckTimeout(uint64_t now_ms) {
  if (state_ == State::kEnded) return;
  const bool imap = listener_.protocol == Protocol::kImap;
  if (drain_at_ms_ != 0 && now_ms >= drain_at_ms_) {
    drain_at_ms_ = 0;
    Shutdown(EndKind::kBackendDrained);
    return;
  }
  if (prelogin() && now_ms >= login_deadline_ms_) {
    // However active the client is: the whole pre-login phase is bounded
    // (Dovecot closes at 3 minutes, CLIENT_LOGIN_TIMEOUT_MSECS).
    Send(NoticeText(imap, Notice::kDeadline));
    End("login deadline");
    return;
  }
  if (idle_deadline_ms_ == 0 || now_ms < idle_deadline_ms_) return;
  if (state_ == State::kStage) {
    idle_deadline_ms_ = 0;
    stage_->IdleTimeout();
    return;
  }
  if (state_ == State::kFront) Send(NoticeText(imap, Notice::kTimeout));
  End(state_ == State::kStage      ? "idle timeout"
      : state_ == State::kRefusing ? refuse_reason_
                                   : "login timeout");
}

void Session::OnData(Connection& c) {
  if (state_ == State::kRefusing) {
    c.input().Clear();
    return;
  }
  if (state_ != State::kFront) return;
  ArmIdle();
  if (trace_ != nullptr) {
    // The bytes that came since the last look (the front leaves a partial
    // command in the buffer; its start was given to the trace already).
    Buffer& in = client_->input();
    if (in.size() > traced_in_) {
      std::string fresh(in.size() - traced_in_, '\0');
      in.CopyOut(traced_in_, fresh.size(), fresh.data());
      trace_->PreloginClient(fresh);
    }
  }
  ProcessInput();
}

void Session::ProcessInput() {
  if (processing_) {
    again_ = true;  // a drain during our own flush: the loop below goes on
    return;
  }
  processing_ = true;
  // Replies of one batch leave in one sendmsg.
  client_->Cork();
  int handled = 0;
  do {
    again_ = false;
    while (state_ == State::kFront) {
      // Replies to a client that does not read stay bounded: past
      // limits.max_pending_replies no more of its commands are parsed and
      // its socket is not read until they drain (OnDrained). The kernel
      // holds little more for it either (TCP_NOTSENT_LOWAT, Worker::Listen).
      if (client_->pending() > config_->limits.max_pending_replies) {
        blocked_ = true;
        client_->StopReading();
        break;
      }
      // Fairness: one client's pipeline gets a bounded share of a loop
      // turn; the rest waits (unread) for the next.
      if (handled == kCommandsPerTurn && !client_->input().empty()) {
        client_->StopReading();
        if (!continue_pending_) {
          continue_pending_ = true;
          const uint64_t gen = generation_;
          worker_.Defer([this, gen] {
            if (gen != generation_) return;
            continue_pending_ = false;
            if (state_ != State::kFront) return;
            if (!blocked_) client_->StartReading();
            ProcessInput();
          });
        }
        break;
      }
      ++handled;
      if (front_->ProcessOne(client_->input()) != Front::Step::kHandled) break;
    }
    if (state_ == State::kEnded) break;
    client_->Uncork();  // may drain at once: OnDrained sets again_
    client_->Cork();
    // The batch went to the kernel (corked bytes are not judged against
    // the watermarks until then): if it took enough, go on now.
    if (blocked_ && state_ == State::kFront &&
        client_->pending() <= config_->limits.max_pending_replies) {
      blocked_ = false;
      if (!continue_pending_) client_->StartReading();
      again_ = true;
    }
  } while (again_ && state_ == State::kFront);
  if (client_ != nullptr) client_->Uncork();
  processing_ = false;
  if (client_ != nullptr) traced_in_ = static_cast<uint32_t>(client_->input().size());
}

void Session::OnDrained(Connection&) {
  if (state_ != State::kFront || !blocked_) return;
  blocked_ = false;
  if (!continue_pending_) client_->StartReading();
  ProcessInput();
}

void Session::OnEnd(Connection&, absl::string_view reason) {
  if (state_ == State::kEnded) return;
  End(absl::StrCat("client: ", reason));
}

void Session::OnTlsReady(Connection&) {
  // The refusal notice went out with the end of the handshake.
  if (state_ == State::kRefusing) {
    End(refuse_reason_);
    return;
  }
  tls_ready_ = true;
  if (worker_.metrics().listeners.size() > listener_index_) {
    const bool v13 = absl::string_view(client_->tls_version()) == "TLSv1.3";
    metrics().tls[(v13 ? 2 : 0) + (client_->tls_resumed() ? 1 : 0)].Inc();
  }
}

void Session::Send(absl::string_view bytes) {
  if (trace_ != nullptr && state_ != State::kStage) trace_->PreloginServer(bytes);
  if (client_) client_->Write(bytes);
}

bool Session::StartTls() {
  client_->input().Clear();
  traced_in_ = 0;
  tls_started_ = true;
  return client_->StartServerTls(*snapshot_->tls);
}

void Session::Login(Credentials credentials) {
  state_ = State::kLogin;
  client_->StopReading();  // what the client pipelines waits in input()
  idle_deadline_ms_ = 0;   // the directory's and the backend's timeouts bound the wait
  user_ = credentials.mailbox_user();
  ++login_attempts_;
  if (trace_ != nullptr && !trace_->active()) {
    for (const std::string& u : config_->log.trace_users) {
      if (u == user_ || u == credentials.authcid) trace_->Activate(user_);
    }
  }
  const uint64_t gen = ++generation_;
  AdoptTrustedId();
  if (hops_ == 0) {
    worker_.Defer([this, gen] {
      if (gen != generation_ || state_ != State::kLogin) return;
      LoginReply r;
      r.kind = LoginReply::Kind::kUnavailable;
      LoginFailed(std::move(r), "proxy loop: x-proxy-ttl reached 0");
    });
    return;
  }
  // Credentials travel inside backend command lines: CR, LF or NUL in them
  // would let a client inject commands (and no backend accepts them).
  if (credentials.authcid.empty() || HasCrLfNul(credentials.authcid) ||
      HasCrLfNul(credentials.authzid) || HasCrLfNul(credentials.secret)) {
    worker_.Defer([this, gen] {
      if (gen != generation_ || state_ != State::kLogin) return;
      LoginReply r;
      r.kind = LoginReply::Kind::kAuthFailed;
      LoginFailed(std::move(r), "invalid characters in the credentials");
    });
    return;
  }
  credentials_ = std::make_unique<Credentials>(std::move(credentials));
  AbuseGuard* guard = view_ != nullptr ? view_->abuse() : nullptr;
  if (guard == nullptr) {
    AskDirectory();
    return;
  }
  // Brute force is refused here, before any directory or backend sees it.
  abuse_pending_ =
      guard->Check(peer_.IpText(), credentials_->authcid, [this, gen](AbuseDecision d) {
        if (gen != generation_ || state_ != State::kLogin) return;
        DropLater(std::move(abuse_pending_));
        if (!d.blocked) {
          AskDirectory();
          return;
        }
        LoginReply r;
        r.kind = LoginReply::Kind::kAuthFailed;
        login_blocked_ = true;
        worker_.metrics().abuse_blocked.Inc();
        RefuseAfter(d.delay, std::move(r), absl::StrCat("blocked: ", d.reason));
      });
}

std::chrono::milliseconds Session::CountFailure() {
  AbuseGuard* guard = view_ != nullptr ? view_->abuse() : nullptr;
  if (guard == nullptr || credentials_ == nullptr) return std::chrono::milliseconds(0);
  const std::chrono::milliseconds delay =
      guard->Failed(peer_.IpText(), credentials_->authcid).delay;
  if (delay.count() > 0) worker_.metrics().abuse_delayed.Inc();
  return delay;
}

void Session::AdoptTrustedId() {
  // A proxy in front of us (trusted_networks) tells who its client is and
  // how many hops are left (Dovecot's forwarding fields, DIGEST d.1).
  const auto& fields = front_->trusted_id();
  std::string ip;
  uint32_t port = 0;
  for (const auto& [k, v] : fields) {
    if (k == "x-proxy-ttl") {
      uint32_t ttl = 0;
      if (absl::SimpleAtoi(v, &ttl)) hops_ = std::min(hops_, ttl);
    } else if (k == "x-originating-ip") {
      ip = v;
    } else if (k == "x-originating-port") {
      if (!absl::SimpleAtoi(v, &port)) port = 0;
    }
  }
  if (!ip.empty()) {
    auto a = ParseSocketAddress(ip, static_cast<uint16_t>(port <= 65535 ? port : 0));
    if (a.ok()) peer_ = PeerAddress::From(reinterpret_cast<const sockaddr*>(&a->storage));
  }
}

DirectoryRequest Session::MakeDirectoryRequest() const {
  const Credentials& c = *credentials_;
  DirectoryRequest r;
  switch (c.mechanism) {
    case Credentials::Mechanism::kLogin:
    case Credentials::Mechanism::kPlain:
      r.mechanism = DirectoryRequest::Mechanism::kPlain;
      break;
    case Credentials::Mechanism::kSaslLogin:
      r.mechanism = DirectoryRequest::Mechanism::kLogin;
      break;
    case Credentials::Mechanism::kXoauth2:
      r.mechanism = DirectoryRequest::Mechanism::kXoauth2;
      break;
    case Credentials::Mechanism::kOauthbearer:
      r.mechanism = DirectoryRequest::Mechanism::kOauthbearer;
      break;
  }
  r.user = c.authcid;
  if (c.proxy_authorization()) r.authzid = c.authzid;
  r.secret = c.secret;
  r.protocol = ProtocolName(listener_.protocol);
  r.client_ip = peer_.IpText();
  r.client_port = peer_.port;
  const PeerAddress local = LocalAddress();
  r.local_ip = local.IpText();
  r.local_port = local.port;
  r.tls = client_->tls();
  if (r.tls) {
    r.tls_version = client_->tls_version();
    r.tls_cipher = client_->tls_cipher();
    r.sni = client_->tls_server_name();
  }
  if (listener_.protocol == Protocol::kImap) {
    r.client_id = static_cast<const ImapFront*>(front_.get())->client_id();
  }
  r.attempt = login_attempts_;
  r.session_id = std::string(id());
  return r;
}

void Session::AskDirectory() {
  Directory& dir = view_->directory(listener_);
  directory_name_ = dir.Name();
  DirectoryRequest req = MakeDirectoryRequest();
  const uint64_t gen = generation_;
  if (dir.ChecksSecrets()) {
    cache_key_ = std::make_unique<DirectoryCache::Key>(
        DirectoryCache::MakeKey(directory_name_, dir.Generation(), req));
    std::optional<DirectoryAnswer> hit =
        snapshot_->cache->Find(*cache_key_, uv_now(worker_.loop()));
    if (hit.has_value()) {
      worker_.metrics().cache_hit.Inc();
      hit->detail = absl::StrCat("cached: ", hit->detail);
      hit->cacheable = false;  // it is in the cache already
      worker_.Defer([this, gen, a = *std::move(hit)]() mutable {
        if (gen != generation_ || state_ != State::kLogin) return;
        OnDirectoryAnswer(std::move(a));
      });
      return;
    }
    worker_.metrics().cache_miss.Inc();
  } else {
    cache_key_.reset();
  }
  directory_started_ns_ = uv_hrtime();
  lookup_ =
      dir.Start(req, [this, gen, h = view_->directory_histogram(listener_)](DirectoryAnswer a) {
        if (gen != generation_ || state_ != State::kLogin) return;
        h.ObserveDuration(std::chrono::nanoseconds(uv_hrtime() - directory_started_ns_));
        OnDirectoryAnswer(std::move(a));
      });
}

template <typename T>
void Session::DropLater(std::unique_ptr<T> p) {
  if (p == nullptr) return;
  T* raw = p.release();
  worker_.Defer([raw] { delete raw; });
}

void Session::OnDirectoryAnswer(DirectoryAnswer a) {
  // We may be inside the lookup's own callback: its handle goes later.
  DropLater(std::move(lookup_));
  if (cache_key_ != nullptr && a.cacheable) {
    snapshot_->cache->Store(*cache_key_, user_, a, uv_now(worker_.loop()));
  }
  switch (a.verdict) {
    case DirectoryAnswer::Verdict::kUnavailable: {
      LoginReply r;
      r.kind = LoginReply::Kind::kUnavailable;
      LoginFailed(std::move(r), absl::StrCat(directory_name_, ": ", a.detail));
      return;
    }
    case DirectoryAnswer::Verdict::kRefuse: {
      LoginReply r;
      r.kind = LoginReply::Kind::kAuthFailed;
      r.code = SanitizeResponseCode(a.code);
      r.text = SanitizeReplyText(a.text);
      if (r.code.empty() && !r.text.empty()) {
        // A refusal text without a code (nginx's Auth-Status alone): the
        // client hears it, as nginx's clients do, after the generic code
        // (the fronts print a text only with a code).
        r.code = listener_.protocol == Protocol::kImap ? "AUTHENTICATIONFAILED" : "AUTH";
      }
      RefuseAfter(std::max(a.wait, CountFailure()), std::move(r),
                  absl::StrCat(directory_name_, ": ", a.detail));
      return;
    }
    case DirectoryAnswer::Verdict::kAccept:
      break;
  }
  answer_ = std::make_unique<DirectoryAnswer>(std::move(a));
  const DirectoryAnswer& ans = *answer_;
  // Where the mailbox lives: the directory's word wins, then the router
  // (README.md, "Routing": directory, Redis override, ring or static map).
  if (!ans.backend.empty() || !ans.shard.empty()) {
    const bool shard = ans.backend.empty();
    const std::string& name = shard ? ans.shard : ans.backend;
    const size_t n = shard ? config_->shards.size() : config_->backends.size();
    for (size_t i = 0; i < n; ++i) {
      if ((shard ? config_->shards[i].name : config_->backends[i].name) == name) {
        StartAttempts(
            RouteResult{shard ? RouteResult::Kind::kShard : RouteResult::Kind::kBackend, i});
        return;
      }
    }
    LoginReply r;
    r.kind = LoginReply::Kind::kUnavailable;
    LoginFailed(std::move(r), absl::StrCat(directory_name_, ": no ", shard ? "shard" : "backend",
                                           " named ", name));
    return;
  }
  if (!ans.host.empty()) {
    const BackendConfig* b = BackendAt(ans.host, ans.port);
    if (b == nullptr) {
      LoginReply r;
      r.kind = LoginReply::Kind::kUnavailable;
      LoginFailed(std::move(r),
                  absl::StrCat(directory_name_, ": bad backend address ", ans.host, ":", ans.port));
      return;
    }
    attempts_.reset();
    OnRouted(*b);
    return;
  }
  RouteRequest req;
  req.user = ans.backend_user.empty() ? user_ : ans.backend_user;
  req.client_ip = peer_.IpText();
  req.pop3 = listener_.protocol == Protocol::kPop3;
  const uint64_t gen = generation_;
  route_pending_ = view_->router().Route(req, [this, gen](absl::StatusOr<RouteResult> r) {
    if (gen != generation_ || state_ != State::kLogin) return;
    DropLater(std::move(route_pending_));
    const size_t n = r.ok() && r->kind == RouteResult::Kind::kShard ? config_->shards.size()
                                                                    : config_->backends.size();
    if (!r.ok() || r->index >= n) {
      LoginReply reply;
      reply.kind = LoginReply::Kind::kUnavailable;
      LoginFailed(std::move(reply),
                  absl::StrCat("routing: ", r.ok() ? "no such backend" : r.status().message()));
      return;
    }
    StartAttempts(*r);
  });
}

void Session::StartAttempts(const RouteResult& target) {
  attempts_ = std::make_unique<Attempts>();
  std::vector<size_t>& candidates = attempts_->candidates;
  if (target.kind == RouteResult::Kind::kBackend) {
    candidates.push_back(target.index);
  } else {
    // The shard's healthy replicas, least loaded (by this instance's open
    // sessions) first, then its fallback shard's (health.max_attempts of
    // them are tried in turn before the client hears anything): a shard
    // that dies is served by its fallback from the first login on, not
    // only once it has been marked down.
    const ShardConfig* shard = &config_->shards[target.index];
    for (int hops = 0; shard != nullptr && hops < 2; ++hops) {
      std::vector<std::pair<int32_t, size_t>> up;
      for (size_t b : shard->backends) {
        BackendHealth::Slot* slot = snapshot_->health->Find(config_->backends[b].name);
        if (slot == nullptr || snapshot_->health->Usable(*slot)) {
          up.emplace_back(slot != nullptr ? slot->sessions.load() : 0, b);
        }
      }
      // Equal loads: a rotation per worker, so ties do not all go to the
      // first replica.
      const size_t rot = up.empty() ? 0 : worker_.NextRotation() % up.size();
      std::rotate(up.begin(), up.begin() + static_cast<ptrdiff_t>(rot), up.end());
      std::stable_sort(up.begin(), up.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [load, b] : up) candidates.push_back(b);
      shard =
          shard->fallback >= 0 ? &config_->shards[static_cast<size_t>(shard->fallback)] : nullptr;
    }
    if (candidates.empty()) {
      LoginReply r;
      r.kind = LoginReply::Kind::kUnavailable;
      LoginFailed(std::move(r), absl::StrCat("shard ", config_->shards[target.index].name,
                                             ": no healthy replica and no fallback"));
      return;
    }
  }
  ConnectNext();
}

void Session::ConnectNext() {
  Attempts& a = *attempts_;
  const size_t limit = std::min<size_t>(a.candidates.size(), config_->health.max_attempts);
  if (a.next >= limit) {
    LoginReply r;
    r.kind = LoginReply::Kind::kUnavailable;
    LoginFailed(std::move(r), a.last_failure);
    return;
  }
  OnRouted(config_->backends[a.candidates[a.next++]]);
}

const BackendConfig* Session::BackendAt(const std::string& host, uint16_t port) {
  // A configured backend at that address keeps its settings (login method,
  // master user, POP3 mode); any other address is reached with the defaults,
  // as nginx's Auth-Server does.
  if (port == 0) port = listener_.protocol == Protocol::kImap ? 143 : 110;
  auto addr = ParseSocketAddress(host, port);
  if (!addr.ok()) return nullptr;
  for (const BackendConfig& b : config_->backends) {
    const SocketAddress& a = listener_.protocol == Protocol::kImap ? b.imap : b.pop3;
    if (a.text == addr->text) return &b;
  }
  adhoc_backend_ = std::make_unique<BackendConfig>();
  BackendConfig& b = *adhoc_backend_;
  b.name = addr->text;
  b.host = host;
  b.imap_port = b.pop3_port = port;
  b.imap = *addr;
  b.pop3 = *addr;
  return &b;
}

void Session::RefuseAfter(std::chrono::milliseconds wait, LoginReply reply, std::string detail) {
  if (wait.count() <= 0) {
    LoginFailed(std::move(reply), detail);
    return;
  }
  // The refusal waits (brute-force delays, nginx's Auth-Wait); the client is
  // not read meanwhile, and the login deadline still applies.
  wait_timer_ = std::make_unique<Timer>(worker_.loop());
  const uint64_t gen = generation_;
  wait_timer_->Start(wait, [this, gen, reply = std::move(reply), detail = std::move(detail)] {
    if (gen != generation_ || state_ != State::kLogin) return;
    LoginFailed(reply, detail);
  });
}

void Session::OnRouted(const BackendConfig& b) {
  backend_name_ = &b.name;
  if (const BackendHealth::Slot* slot = snapshot_->health->Find(b.name);
      slot != nullptr && slot->drained.load()) {
    // Drained by the admin API: no new sessions go there.
    LoginReply r;
    r.kind = LoginReply::Kind::kUnavailable;
    LoginFailed(std::move(r), absl::StrCat("backend ", b.name, " is drained"));
    return;
  }
  const Credentials& c = *credentials_;
  const DirectoryAnswer& a = *answer_;
  // A POP3 client on a gateway backend is served over the backend's IMAP.
  gateway_ = listener_.protocol == Protocol::kPop3 && b.pop3_mode == Pop3Mode::kGateway;
  const Protocol protocol = gateway_ ? Protocol::kImap : listener_.protocol;
  const PeerAddress local = LocalAddress();
  LoginRequest lr;
  if (protocol == Protocol::kImap) lr.imap_id_args = BackendIdArgs(local);
  // Who logs in to the backend. After a directory checked the login, a
  // backend with a master user (or a directory that asks for one) gets
  // AUTHENTICATE PLAIN as the master acting as the user: the backend never
  // needs the user's secret (OAuth tokens, hashed passwords).
  const bool master = a.checked && (a.master || !b.master_user.empty());
  if (master) {
    if (b.master_user.empty()) {
      LoginReply r;
      r.kind = LoginReply::Kind::kUnavailable;
      LoginFailed(std::move(r), absl::StrCat(directory_name_, ": a master login was asked for, ",
                                             "backend ", b.name, " has no master_user"));
      return;
    }
    lr.mechanism = LoginRequest::Mechanism::kPlain;
    lr.user = b.master_user;
    lr.password = b.master_password;
    lr.authzid = a.backend_user.empty() ? user_ : a.backend_user;
  } else {
    lr.user = a.backend_user.empty() ? c.authcid : a.backend_user;
    lr.password = a.backend_password.empty() ? c.secret : a.backend_password;
    if (a.backend_user.empty() && c.proxy_authorization()) lr.authzid = c.authzid;
    if (c.oauth() && a.backend_password.empty()) {
      // The client's token goes to the backend with the client's mechanism
      // (the backend must offer it).
      lr.mechanism = c.mechanism == Credentials::Mechanism::kXoauth2
                         ? LoginRequest::Mechanism::kXoauth2
                         : LoginRequest::Mechanism::kOauthbearer;
    }
    if (!lr.authzid.empty() && lr.mechanism == LoginRequest::Mechanism::kConfigured) {
      // Another identity's mailbox: only SASL PLAIN carries an authorization
      // identity to the backend (RFC 4616 section 2); LOGIN and USER/PASS
      // would silently open the authentication identity's own mailbox.
      const bool plain = protocol == Protocol::kImap ? b.imap_login == ImapBackendLogin::kPlain
                                                     : b.pop3_login == Pop3BackendLogin::kPlain;
      if (!plain) {
        LoginReply reply;
        reply.kind = LoginReply::Kind::kAuthzFailed;
        LoginFailed(std::move(reply),
                    absl::StrCat("authorization identity for ", c.authcid,
                                 " refused: the backend is not logged in to with PLAIN"));
        return;
      }
    }
  }
  if (HasCrLfNul(lr.user) || HasCrLfNul(lr.password) || HasCrLfNul(lr.authzid)) {
    LoginReply r;
    r.kind = LoginReply::Kind::kUnavailable;
    LoginFailed(std::move(r), "the directory gave credentials with CR, LF or NUL");
    return;
  }
  BackendLink link;
  link.tls = snapshot_->backend_tls_for(b.name);
  link.tls_session = link.tls != nullptr ? worker_.backend_tls_session(b.name) : nullptr;
  if (!b.source_addresses.empty()) {
    // In turn per backend, across workers (a counter of its own: the
    // worker's rotation also breaks ties between replicas, and shared it
    // would always land on the same address with two of them).
    BackendHealth::Slot* slot = snapshot_->health->Find(b.name);
    const uint32_t turn = slot != nullptr ? slot->NextSource() : worker_.NextRotation();
    link.source = &b.source_addresses[turn % b.source_addresses.size()];
  }
  link.client = peer_;
  link.local = local;
  link.session_id = std::string(id());
  link.ttl = hops_ - 1;
  link.client_tls = client_->tls();
  link.sni = client_->tls_server_name();
  connector_ = std::make_unique<BackendConnector>(worker_.poller(), worker_.pool(), b, protocol,
                                                  config_->timeouts, std::move(lr), std::move(link),
                                                  [this](LoginOutcome o, ConnectionPtr conn) {
                                                    OnBackendLogin(std::move(o), std::move(conn));
                                                  });
  backend_started_ns_ = uv_hrtime();
  backend_index_ =
      &b >= config_->backends.data() && &b < config_->backends.data() + config_->backends.size()
          ? static_cast<int>(&b - config_->backends.data())
          : -1;
  connector_->Start();
}

PeerAddress Session::LocalAddress() const {
  const PeerAddress bound =
      PeerAddress::From(reinterpret_cast<const sockaddr*>(&listener_.address.storage));
  // 0.0.0.0 (mapped) or ::: the kernel knows which address was reached.
  const bool wildcard = std::all_of(bound.ip.begin() + (bound.v4 ? 12 : 0), bound.ip.end(),
                                    [](uint8_t b) { return b == 0; });
  if (bound.known && bound.port != 0 && !wildcard) return bound;
  return PeerAddress::Local(client_->fd());
}

std::string Session::BackendIdArgs(const PeerAddress& local) const {
  // The client's own RFC 2971 fields first (ImapFront keeps only those),
  // then what Postern says: Dovecot's forwarding keys (DIGEST d.1), read by
  // a backend that trusts Postern's address (login_trusted_networks).
  std::string out = "(";
  if (listener_.protocol == Protocol::kImap) {
    const auto* imap = static_cast<const ImapFront*>(front_.get());
    for (const auto& [k, v] : imap->client_id()) {
      absl::StrAppend(&out, ImapQuote(k), " ", ImapQuote(v), " ");
    }
  }
  absl::StrAppend(&out, "\"x-session-id\" ", ImapQuote(absl::string_view(id_.data(), id_.size())),
                  " \"x-originating-ip\" ", ImapQuote(peer_.IpText()), " \"x-originating-port\" \"",
                  peer_.port, "\"");
  if (local.known) {
    absl::StrAppend(&out, " \"x-connected-ip\" ", ImapQuote(local.IpText()),
                    " \"x-connected-port\" \"", local.port, "\"");
  }
  absl::StrAppend(&out, " \"x-proxy-ttl\" \"", hops_ - 1, "\"");
  const absl::string_view sni = client_->tls_server_name();
  if (!sni.empty() && !NeedsLiteral(sni)) {
    absl::StrAppend(&out, " \"x-connected-name\" ", ImapQuote(sni));
  }
  absl::StrAppend(&out, " \"x-client-transport\" ", client_->tls() ? "\"TLS\"" : "\"insecure\"",
                  ")");
  return out;
}

void Session::OnBackendLogin(LoginOutcome outcome, ConnectionPtr backend) {
  // We are inside the connector's callback: free it on a later turn.
  if (connector_) {
    BackendConnector* raw = connector_.release();
    worker_.Defer([raw] { delete raw; });
  }
  if (state_ != State::kLogin) return;
  if (view_ != nullptr) {
    ViewMetrics& vm = view_->metrics();
    ViewMetrics::PerBackend& b =
        backend_index_ >= 0 && static_cast<size_t>(backend_index_) < vm.backends.size()
            ? vm.backends[static_cast<size_t>(backend_index_)]
            : vm.adhoc;
    b.login_seconds.ObserveDuration(std::chrono::nanoseconds(uv_hrtime() - backend_started_ns_));
    (outcome.kind == LoginOutcome::Kind::kOk           ? b.ok
     : outcome.kind == LoginOutcome::Kind::kAuthFailed ? b.auth_failed
                                                       : b.unavailable)
        .Inc();
  }
  LoginReply reply;
  reply.code = SanitizeResponseCode(outcome.code);
  reply.text = SanitizeReplyText(outcome.text);
  switch (outcome.kind) {
    case LoginOutcome::Kind::kOk:
      reply.kind = LoginReply::Kind::kOk;
      reply.capabilities = SanitizeCapabilities(outcome.capabilities);
      backend_ = std::move(backend);
      if (AbuseGuard* guard = view_ != nullptr ? view_->abuse() : nullptr;
          guard != nullptr && credentials_ != nullptr) {
        guard->Succeeded(peer_.IpText(), credentials_->authcid);
      }
      ForgetLogin();
      LeavePrelogin();
      CountLogin(LoginResult::kOk);
      if ((health_slot_ = snapshot_->health->Find(backend_name())) != nullptr) {
        snapshot_->health->Succeeded(*health_slot_);
        health_slot_->sessions.fetch_add(1);
      }
      // The gateway answers the login itself, once the maildrop is open.
      if (!gateway_) front_->LoginSucceeded(reply);
      if (spdlog::should_log(spdlog::level::debug)) {
        spdlog::debug("login ok: session={} client={} user={} backend={}", std::string(id()),
                      peer_.Text(), LogSafe(user_), backend_name());
      }
      StartStage(std::move(outcome.capabilities));
      return;
    case LoginOutcome::Kind::kAuthFailed:
      reply.kind = LoginReply::Kind::kAuthFailed;
      if (gateway_) MapImapRefusalToPop3(reply);
      if (reply.kind == LoginReply::Kind::kAuthFailed) {
        // The backend refused the credentials: a failure like any other.
        RefuseAfter(CountFailure(), std::move(reply), outcome.detail);
        return;
      }
      break;
    case LoginOutcome::Kind::kUnavailable:
      reply.kind = LoginReply::Kind::kUnavailable;
      if (outcome.before_login) {
        // The backend could not be reached or did not greet: it counts
        // toward marking it down, and the next replica is tried before the
        // client hears anything.
        if (BackendHealth::Slot* slot = snapshot_->health->Find(backend_name())) {
          snapshot_->health->Failed(*slot, config_->health, outcome.detail);
        }
        if (attempts_ != nullptr) {
          attempts_->last_failure = absl::StrCat(backend_name(), ": ", outcome.detail);
        }
        if (attempts_ != nullptr && !attempts_->candidates.empty() &&
            attempts_->next <
                std::min<size_t>(attempts_->candidates.size(), config_->health.max_attempts)) {
          LogEvent("backend_failed")
              .Str("session", id())
              .Str("backend", backend_name())
              .Str("next", "replica")
              .Quoted("detail", outcome.detail)
              .Emit();
          ConnectNext();
          return;
        }
      }
      break;
  }
  LoginFailed(std::move(reply), outcome.detail);
}

void Session::ForgetLogin() {
  if (credentials_) {
    OPENSSL_cleanse(credentials_->secret.data(), credentials_->secret.size());
    credentials_.reset();
  }
  answer_.reset();
  cache_key_.reset();
  // Possibly from inside its own callback (a delayed refusal).
  DropLater(std::move(wait_timer_));
}

void Session::LoginFailed(LoginReply reply, absl::string_view detail) {
  ForgetLogin();
  CountLogin(login_blocked_                                 ? LoginResult::kBlocked
             : reply.kind == LoginReply::Kind::kUnavailable ? LoginResult::kUnavailable
             : reply.kind == LoginReply::Kind::kAuthzFailed ? LoginResult::kAuthzFailed
                                                            : LoginResult::kAuthFailed);
  login_blocked_ = false;
  if (reply.kind == LoginReply::Kind::kUnavailable) {
    LogEvent("backend_unavailable", spdlog::level::warn)
        .Str("session", id())
        .Str("client", peer_.Text())
        .Safe("user", user_)
        .Str("backend", backend_name())
        .Quoted("detail", detail)
        .Emit();
  } else {
    LogEvent("auth_failed")
        .Str("session", id())
        .Str("client", peer_.Text())
        .Str("listener", listener_.name)
        .Safe("user", user_)
        .Str("backend", backend_name())
        .Quoted("detail", detail)
        .Emit();
  }
  state_ = State::kFront;
  front_->LoginFailed(reply);
  if (state_ != State::kFront) return;
  ArmIdle();
  client_->StartReading();
  ProcessInput();  // commands pipelined after the failed login
}

void Session::StartStage(std::string backend_capabilities) {
  state_ = State::kStage;
  front_.reset();  // frees what only the pre-login dialogue needed
  attempts_.reset();
  EnterStage(gateway_ ? StageLabel::kGateway : StageLabel::kRelay);
  // The router and directories of this snapshot are not needed any more
  // (dropped on a later turn: we may be inside one of their callbacks).
  worker_.Defer([v = std::move(view_)] {});
  // Not a traced user: nothing of this session is written.
  if (trace_ != nullptr && !trace_->active()) trace_.reset();
  const LimitsConfig& limits = config_->limits;
  // The pre-login bound on what the kernel may hold unsent goes: the relay
  // wants full socket buffers.
  Connection::SetNotSentLowat(client_->fd(), 0);
  backend_->SetWatermarks(limits.relay_high_watermark, limits.relay_low_watermark);
  if (gateway_) {
    // The translator's own bound: OnDrained comes whenever the client made
    // progress, which resumes commands, listings and the backend.
    client_->SetWatermarks(limits.max_pending_replies, limits.max_pending_replies / 2);
    Pop3GatewayOptions o;
    o.uidl_format = config_->gateway.uidl_format;
    o.seen = config_->gateway.seen;
    o.max_reply_backlog = limits.max_pending_replies;
    // CAPA after login lists what the listener offered before it
    // (listeners[].sasl_mechanisms; RFC 5034 section 3).
    o.sasl_mechanisms.clear();
    for (const Credentials::Mechanism m : listener_.sasl) {
      o.sasl_mechanisms.emplace_back(SaslServer::MechanismName(m));
    }
    o.pop3_limits.max_line = limits.max_line;
    o.pop3_limits.error_budget = limits.error_budget;
    auto gateway = std::make_unique<Gateway>(worker_, *client_, *backend_, *this, std::move(o),
                                             SplitCapabilities(backend_capabilities),
                                             limits.relay_high_watermark);
    if (trace_ != nullptr) gateway->set_trace(trace_.get());
    stage_ = std::move(gateway);
  } else {
    client_->SetWatermarks(limits.relay_high_watermark, limits.relay_low_watermark);
    auto relay = std::make_unique<Relay>(worker_, listener_.protocol, *client_, *backend_, *this);
    if (trace_ != nullptr) relay->set_trace(trace_.get());
    stage_ = std::move(relay);
  }
  ArmIdle();
  stage_->Start();
}

void Session::StageActivity() { ArmIdle(); }

void Session::StageEnded(absl::string_view reason) { End(reason); }

void Session::StageBackendLost(absl::string_view reason) {
  const std::chrono::milliseconds spread = config_->health.disconnect_spread;
  // Only a backend that dies with many sessions (several lost within the
  // same second) spreads its clients' disconnects: their reconnects then do
  // not all land on the surviving replicas at once (Dovecot's
  // login_proxy_max_disconnect_delay). One session's backend closing is
  // just the end of that session.
  if (spread.count() <= 0 || health_slot_ == nullptr ||
      snapshot_->health->Dropped(*health_slot_) < kMassDisconnect) {
    End(reason);
    return;
  }
  stage_->Finish();  // the relay does nothing more
  client_->StopReading();
  uint32_t r = 0;
  RAND_bytes(reinterpret_cast<uint8_t*>(&r), sizeof(r));
  const auto delay = std::chrono::milliseconds(r % static_cast<uint64_t>(spread.count()));
  wait_timer_ = std::make_unique<Timer>(worker_.loop());
  const std::string why(reason);
  wait_timer_->Start(delay, [this, why] {
    if (state_ != State::kEnded) End(absl::StrCat(why, " (disconnect spread)"));
  });
}

void Session::Shutdown(EndKind kind) {
  const bool imap = listener_.protocol == Protocol::kImap;
  Notice notice = Notice::kShutdown;
  const char* reason = "server shutdown";
  if (kind == EndKind::kKicked) {
    notice = Notice::kKicked;
    reason = "kicked by the administrator";
  } else if (kind == EndKind::kBackendDrained) {
    notice = Notice::kDrained;
    reason = "backend drained";
  }
  switch (state_) {
    case State::kEnded:
      return;
    case State::kStage:
      stage_->Shutdown(NoticeText(imap, notice), reason);
      return;
    case State::kRefusing:
      End(refuse_reason_);
      return;
    case State::kFront:
    case State::kLogin:
      Send(NoticeText(imap, notice));
      End(reason);
      return;
  }
}

bool Session::Matches(const SessionFilter& f) const {
  if (state_ == State::kEnded || state_ == State::kRefusing) return false;
  if (!f.user.empty() && f.user != user_) return false;
  if (!f.backend.empty() && (backend_name_ == nullptr || f.backend != *backend_name_)) {
    return false;
  }
  if (!f.client_ip.empty() && f.client_ip != peer_.IpText()) return false;
  // A backend filter means the sessions relayed there.
  if (!f.backend.empty() && state_ != State::kStage) return false;
  return true;
}

SessionInfo Session::Info(uint64_t now_ms) const {
  SessionInfo i;
  i.id = std::string(id());
  i.user = user_;
  i.client = peer_.Text();
  i.listener = listener_.name;
  i.protocol = ProtocolName(listener_.protocol);
  switch (state_) {
    case State::kFront:
      i.stage = "prelogin";
      break;
    case State::kLogin:
      i.stage = "login";
      break;
    case State::kStage: {
      std::string d = stage_ ? stage_->Describe() : "relay";
      i.stage = d.substr(0, d.find(' '));
      break;
    }
    case State::kRefusing:
    case State::kEnded:
      i.stage = "ending";
      break;
  }
  i.backend = backend_name_ != nullptr ? *backend_name_ : "";
  if (client_) {
    i.tls = client_->tls_version();
    i.bytes_in = client_->bytes_in();
    i.bytes_out = client_->bytes_out();
  }
  (void)now_ms;
  i.age_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::steady_clock::now() - started_)
                                       .count());
  i.snapshot = snapshot_->serial;
  return i;
}

void Session::LeavePrelogin() {
  if (!counted_prelogin_) return;
  counted_prelogin_ = false;
  worker_.PreloginEnded();
}

void Session::End(absl::string_view reason) {
  if (state_ == State::kEnded) return;
  const bool refused = state_ == State::kRefusing;
  state_ = State::kEnded;
  ++generation_;
  idle_deadline_ms_ = 0;
  // A refusal is counted and logged by the worker, at most once a second.
  if (!refused) LogEnd(reason);
  if (open_counted_) {
    open_.Sub(1);
    open_counted_ = false;
  }
  if (tls_started_ && !tls_ready_ && !refused &&
      worker_.metrics().listeners.size() > listener_index_) {
    metrics().tls_failures.Inc();
  }
  CountBytes();
  connector_.reset();
  lookup_.reset();  // cancels a directory lookup: its answer never comes
  route_pending_.reset();
  abuse_pending_.reset();
  if (health_slot_ != nullptr) {
    health_slot_->sessions.fetch_sub(1);
    health_slot_ = nullptr;
  }
  ForgetLogin();
  if (stage_) stage_->Finish();  // the stage itself goes with the session
  LeavePrelogin();
  if (worker_.shutting_down()) {
    // The process is about to exit: do not wait long for slow peers.
    client_->set_linger(kShutdownLingerMs);
    if (backend_) backend_->set_linger(kShutdownLingerMs);
  }
  client_.reset();  // flushes what is queued, then closes
  backend_.reset();
  worker_.Remove(this, refused);
}

const std::string& Session::backend_name() const {
  static const std::string kNone = "-";
  return backend_name_ != nullptr ? *backend_name_ : kNone;
}

void Session::LogEnd(absl::string_view reason) {
  // Nothing is formatted for a logger above info (log.level warn under a
  // login storm).
  if (!spdlog::should_log(spdlog::level::info)) return;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started_)
                .count();
  LogEvent e("session_end");
  e.Str("session", id())
      .Str("client", peer_.Text())
      .Str("listener", listener_.name)
      .Str("protocol", ProtocolName(listener_.protocol))
      .Str("tls", client_->tls_version())
      .Safe("user", user_)
      .Str("backend", backend_name());
  if (stage_ != nullptr) {
    // "relay", "splice", or "gateway messages=3 retrieved=1 deleted=0".
    const std::string d = stage_->Describe();
    bool first = true;
    for (absl::string_view word : absl::StrSplit(d, ' ', absl::SkipEmpty())) {
      if (first) {
        e.Str("stage", word);
        first = false;
      } else if (const size_t eq = word.find('='); eq != absl::string_view::npos) {
        e.Str(word.substr(0, eq), word.substr(eq + 1));
      }
    }
  } else {
    e.Str("stage", "prelogin");
  }
  e.Num("in", client_->bytes_in())
      .Num("out", client_->bytes_out())
      .Num("duration_ms", static_cast<int64_t>(ms))
      .Num("snapshot", snapshot_->serial)
      .Quoted("end", reason)
      .Emit();
}

}  // namespace postern
