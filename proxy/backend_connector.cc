#include "proxy/backend_connector.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/imap_response.h"
#include "protocol/imap_string.h"
#include "protocol/proxy_header.h"
#include "protocol/sasl.h"
#include "proxy/log_text.h"

namespace postern {
namespace {

// Backend lines before login are short; capability lists are the longest.
constexpr size_t kMaxBackendLine = 64 * 1024;

constexpr char kCapTag[] = "P1";
constexpr char kIdTag[] = "P2";
constexpr char kLoginTag[] = "P3";
constexpr char kPostCapTag[] = "P4";
constexpr char kTlsTag[] = "P0";

ProxyAddress ToProxy(const PeerAddress& a) {
  if (a.v4) return ProxyAddress::V4({a.ip[12], a.ip[13], a.ip[14], a.ip[15]}, a.port);
  return ProxyAddress::V6(a.ip, a.port);
}

}  // namespace

BackendConnector::BackendConnector(Poller& poller, BufferPool& pool, const BackendConfig& backend,
                                   Protocol protocol, const TimeoutsConfig& timeouts,
                                   LoginRequest request, BackendLink link, Done done)
    : poller_(poller),
      pool_(pool),
      backend_(backend),
      protocol_(protocol),
      timeouts_(timeouts),
      request_(std::move(request)),
      link_(std::move(link)),
      done_(std::move(done)),
      splitter_(kMaxBackendLine) {}

BackendConnector::~BackendConnector() = default;

void BackendConnector::Start() {
  timer_.Init(poller_.loop());
  conn_ = Connection::Create(poller_, pool_, this);
  const SocketAddress& addr = target();
  int r = conn_->Connect(reinterpret_cast<const sockaddr*>(&addr.storage), link_.source);
  if (r != 0) {
    // Report from the loop, never from inside Start().
    std::string detail = absl::StrCat("connect ", addr.text, ": ", uv_strerror(r));
    timer_.Start(std::chrono::milliseconds(0), [this, detail] { Unavailable(detail); });
    return;
  }
  timer_.Start(timeouts_.backend_connect, [this, text = addr.text] {
    Unavailable(absl::StrCat("connect ", text, ": timed out"));
  });
}

void BackendConnector::OnConnected(Connection& c, int status) {
  const SocketAddress& addr = target();
  if (status != 0) {
    Unavailable(absl::StrCat("connect ", addr.text, ": ", uv_strerror(status)));
    return;
  }
  c.SetSocketOptions();
  state_ = State::kGreeting;
  timer_.Start(timeouts_.backend_login, [this, text = addr.text] {
    Unavailable(absl::StrCat("backend ", text, ": login timed out"));
  });
  if (backend_.send_proxy_v2) {
    // The PROXY protocol v2 header, in one write before anything else
    // (proxy-protocol.txt section 2.2): the backend logs the real client.
    ProxyAddress src = ToProxy(link_.client);
    ProxyAddress dst = ToProxy(link_.local);
    if (link_.client.v4 != link_.local.v4) dst = src;  // a family mix cannot be said: mirror
    ProxyV2Tlvs tlvs;
    tlvs.authority = link_.sni;
    tlvs.unique_id = link_.session_id;
    tlvs.ssl = link_.client_tls;
    absl::StatusOr<std::string> header = BuildProxyV2(src, dst, tlvs);
    if (!header.ok()) {
      Unavailable(absl::StrCat("PROXY v2 header: ", header.status().message()));
      return;
    }
    c.Write(*header);
  }
  if (backend_.tls == BackendTls::kImplicit && !StartTls()) return;
  c.StartReading();
}

bool BackendConnector::StartTls() {
  if (link_.tls == nullptr) {
    Unavailable("no TLS context for the backend");
    return false;
  }
  tls_started_ = true;
  const std::string& name = backend_.tls_name.empty() ? backend_.host : backend_.tls_name;
  SSL_SESSION* offer = link_.tls_session != nullptr ? link_.tls_session->get() : nullptr;
  if (!conn_->StartClientTls(*link_.tls, name, offer)) {
    Unavailable("TLS toward the backend could not start");
    return false;
  }
  splitter_.Reset();
  stale_ = 0;
  return true;
}

void BackendConnector::OnTlsReady(Connection&) {
  if (state_ != State::kTlsHandshake) return;  // implicit TLS: the greeting follows
  if (protocol_ == Protocol::kImap) {
    // RFC 3501 section 6.2.1: capabilities learnt before TLS are forgotten.
    caps_.clear();
    state_ = State::kCapability;
    Send(absl::StrCat(kCapTag, " CAPABILITY\r\n"));
  } else {
    AfterPop3Greeting();
  }
}

void BackendConnector::OnEnd(Connection&, absl::string_view reason) {
  Unavailable(absl::StrCat("backend closed during login: ", reason));
}

void BackendConnector::OnData(Connection& c) {
  Buffer& in = c.input();
  while (state_ != State::kDone) {
    absl::string_view line;
    size_t consumed = 0;
    LineSplitter::Status st = splitter_.Next(in, &line, &consumed);
    if (st == LineSplitter::Status::kNeedMore) {
      if (consumed > 0) in.Drain(consumed);
      return;
    }
    if (st == LineSplitter::Status::kTooLong) {
      Unavailable("backend sent an overlong line during login");
      return;
    }
    std::string copy(line);  // the view dies with the drain below
    in.Drain(consumed);
    // A line that was already here when we sent our last command was sent
    // before the backend could have read that command: it cannot be the
    // answer. Only untagged IMAP data may come unasked; anything else is a
    // broken (or hostile) backend trying to answer for us.
    const bool stale = stale_ > 0;
    stale_ = stale_ > consumed ? stale_ - consumed : 0;
    if (stale && (protocol_ != Protocol::kImap || !absl::StartsWith(copy, "* "))) {
      Unavailable("backend answered a command before it was sent");
      return;
    }
    if (protocol_ == Protocol::kImap) {
      HandleImapLine(copy);
    } else {
      HandlePop3Line(copy);
    }
  }
}

bool BackendConnector::HasCap(absl::string_view cap) const {
  for (const std::string& c : caps_) {
    if (absl::EqualsIgnoreCase(c, cap)) return true;
  }
  return false;
}

void BackendConnector::HandleImapLine(absl::string_view line) {
  ImapResponse r = ParseImapResponseLine(line);
  if (r.kind == ImapResponse::Kind::kInvalid) {
    Unavailable(absl::StrCat("backend sent an invalid line: ", line.substr(0, 80)));
    return;
  }
  if (r.kind == ImapResponse::Kind::kUntagged && absl::EqualsIgnoreCase(r.status, "BYE")) {
    Unavailable(absl::StrCat("backend said BYE: ", r.text));
    return;
  }
  switch (state_) {
    case State::kGreeting: {
      if (r.kind != ImapResponse::Kind::kUntagged || !absl::EqualsIgnoreCase(r.status, "OK")) {
        Unavailable(absl::StrCat("unexpected backend greeting: ", line.substr(0, 80)));
        return;
      }
      if (absl::StartsWithIgnoreCase(r.code, "CAPABILITY ")) {
        caps_ = SplitCapabilities(r.code.substr(11));
        AfterCapabilities();
      } else {
        state_ = State::kCapability;
        Send(absl::StrCat(kCapTag, " CAPABILITY\r\n"));
      }
      return;
    }
    case State::kCapability:
      if (r.kind == ImapResponse::Kind::kUntagged &&
          absl::EqualsIgnoreCase(r.status, "CAPABILITY")) {
        caps_ = SplitCapabilities(r.rest);
      } else if (r.kind == ImapResponse::Kind::kTagged && r.tag == kCapTag) {
        if (!absl::EqualsIgnoreCase(r.status, "OK")) {
          Unavailable(absl::StrCat("backend CAPABILITY failed: ", line.substr(0, 80)));
          return;
        }
        AfterCapabilities();
      }
      return;
    case State::kStartTls:
      if (r.kind != ImapResponse::Kind::kTagged || r.tag != kTlsTag) return;
      if (!absl::EqualsIgnoreCase(r.status, "OK")) {
        Unavailable(absl::StrCat("backend refused STARTTLS: ", line.substr(0, 80)));
        return;
      }
      // Whatever the backend sent after its OK is dropped with the
      // plaintext (StartClientTls): never taken as an answer.
      state_ = State::kTlsHandshake;
      StartTls();
      return;
    case State::kTlsHandshake:
      return;
    case State::kLogin:
      if (r.kind == ImapResponse::Kind::kContinuation) {
        if (next_chunk_ < chunks_.size()) {
          SendNextChunk();
        } else {
          // A "+" we did not ask for (e.g. a SASL challenge after PLAIN):
          // cancel (RFC 9051 section 6.2.2) and let the tagged answer decide.
          // A refused OAuth token's error challenge gets the dummy %x01
          // response instead (RFC 7628 section 3.2.3). Once: a backend that
          // keeps asking is broken.
          if (canceled_) {
            Unavailable("backend keeps sending continuation requests");
            return;
          }
          canceled_ = true;
          Send(oauth_ ? "AQ==\r\n" : "*\r\n");
        }
        return;
      }
      if (r.kind == ImapResponse::Kind::kTagged && r.tag == kIdTag) {
        // Recent Dovecots answer "Trusted ID completed." to a proxy in
        // their login_trusted_networks and "ID completed." to others, who
        // have the client's address ignored. Dovecot 2.3.19 (Debian 12)
        // answers "ID completed." either way, and so does Postern itself:
        // the answer cannot prove distrust, only hint at it.
        if (absl::EqualsIgnoreCase(r.status, "OK") &&
            !absl::StrContains(absl::AsciiStrToLower(r.text), "trusted")) {
          LogOnce(absl::StrCat("untrusted-id:", backend_.name),
                  absl::StrCat("backend ", backend_.name,
                               " did not confirm that it trusts Postern's IMAP ID (",
                               LogQuoted(r.text), "; Dovecot 2.3.19 never does): if its log ",
                               "shows Postern's address instead of the client's, add Postern's ",
                               "address to its login_trusted_networks"),
                  spdlog::level::info);  // a hint: a trusting Dovecot 2.3 says the same
        }
        return;
      }
      if (r.kind != ImapResponse::Kind::kTagged || r.tag != kLoginTag) return;
      {
        LoginOutcome o;
        o.code = std::string(r.code);
        o.text = std::string(r.text);
        if (absl::EqualsIgnoreCase(r.status, "OK")) {
          o.kind = LoginOutcome::Kind::kOk;
          if (absl::StartsWithIgnoreCase(r.code, "CAPABILITY ")) {
            o.capabilities = std::string(r.code.substr(11));
            Finish(std::move(o));
          } else {
            // RFC 9051 section 6.2.3: the server may omit them; ask.
            pending_ = std::move(o);
            state_ = State::kPostCapability;
            Send(absl::StrCat(kPostCapTag, " CAPABILITY\r\n"));
          }
        } else if (absl::EqualsIgnoreCase(r.status, "NO")) {
          o.kind = LoginOutcome::Kind::kAuthFailed;
          o.detail = absl::StrCat("backend: ", line.substr(0, 200));
          Finish(std::move(o));
        } else {
          Unavailable(absl::StrCat("backend rejected the login command: ", line.substr(0, 200)));
        }
      }
      return;
    case State::kPostCapability:
      if (r.kind == ImapResponse::Kind::kUntagged &&
          absl::EqualsIgnoreCase(r.status, "CAPABILITY")) {
        post_caps_ = std::string(r.rest);
      } else if (r.kind == ImapResponse::Kind::kTagged && r.tag == kPostCapTag) {
        LoginOutcome o = std::move(pending_);
        o.capabilities = post_caps_;
        Finish(std::move(o));
      }
      return;
    default:
      return;
  }
}

void BackendConnector::AfterCapabilities() {
  if (backend_.tls == BackendTls::kStartTls && !tls_started_) {
    // The credentials never cross in the clear: no STARTTLS, no login
    // (DIGEST e.6; Dovecot's proxy does the same).
    if (!HasCap("STARTTLS")) {
      Unavailable("backend does not offer STARTTLS: refusing to log in in the clear");
      return;
    }
    state_ = State::kStartTls;
    Send(absl::StrCat(kTlsTag, " STARTTLS\r\n"));
    return;
  }
  SendImapLogin();
}

void BackendConnector::SendImapLogin() {
  state_ = State::kLogin;
  chunks_.clear();
  next_chunk_ = 0;
  std::string first;
  // The client's identity and address first (RFC 2971; Dovecot takes the
  // x-originating-* fields from trusted networks): pipelined with the login.
  if (!request_.imap_id_args.empty() && HasCap("ID")) {
    absl::StrAppend(&first, kIdTag, " ID ", request_.imap_id_args, "\r\n");
  }
  const bool literal_plus = HasCap("LITERAL+");
  std::string mech;  // a SASL mechanism, or "" for the LOGIN command
  std::string ir;    // its initial response
  switch (request_.mechanism) {
    case LoginRequest::Mechanism::kConfigured:
      if (backend_.imap_login == ImapBackendLogin::kPlain) {
        mech = "PLAIN";
        ir = EncodeSaslPlain(request_.authzid, request_.user, request_.password);
      }
      break;
    case LoginRequest::Mechanism::kPlain:
      mech = "PLAIN";
      ir = EncodeSaslPlain(request_.authzid, request_.user, request_.password);
      break;
    case LoginRequest::Mechanism::kXoauth2:
      mech = "XOAUTH2";
      ir = EncodeXoauth2(request_.user, request_.password);
      break;
    case LoginRequest::Mechanism::kOauthbearer:
      mech = "OAUTHBEARER";
      ir = EncodeOauthbearer(request_.user, request_.password);
      break;
  }
  oauth_ = request_.mechanism == LoginRequest::Mechanism::kXoauth2 ||
           request_.mechanism == LoginRequest::Mechanism::kOauthbearer;
  if (!mech.empty()) {
    if (HasCap("SASL-IR")) {
      // RFC 4959 section 3: the initial response on the command line.
      absl::StrAppend(&first, kLoginTag, " AUTHENTICATE ", mech, " ", ir, "\r\n");
      chunks_.push_back(std::move(first));
    } else {
      absl::StrAppend(&first, kLoginTag, " AUTHENTICATE ", mech, "\r\n");
      chunks_.push_back(std::move(first));
      chunks_.push_back(absl::StrCat(ir, "\r\n"));
    }
  } else {
    // LOGIN user password, each an astring: quoted when possible, else a
    // literal; a synchronizing literal waits for "+" (RFC 9051 section 4.3).
    absl::StrAppend(&first, kLoginTag, " LOGIN ");
    std::string cur = std::move(first);
    const std::string* args[2] = {&request_.user, &request_.password};
    for (int i = 0; i < 2; ++i) {
      const std::string& a = *args[i];
      if (!NeedsLiteral(a)) {
        absl::StrAppend(&cur, ImapQuote(a));
      } else if (literal_plus) {
        absl::StrAppend(&cur, "{", a.size(), "+}\r\n", a);
      } else {
        absl::StrAppend(&cur, "{", a.size(), "}\r\n");
        chunks_.push_back(std::move(cur));
        cur = a;
      }
      absl::StrAppend(&cur, i == 0 ? " " : "\r\n");
    }
    chunks_.push_back(std::move(cur));
  }
  SendNextChunk();
}

void BackendConnector::SendNextChunk() {
  Send(chunks_[next_chunk_]);
  ++next_chunk_;
}

void BackendConnector::Send(absl::string_view command) {
  conn_->Write(command);
  stale_ = conn_->input().size();
}

void BackendConnector::HandlePop3Line(absl::string_view line) {
  Pop3Response r = ParsePop3ResponseLine(line);
  switch (state_) {
    case State::kGreeting:
      if (r.kind != Pop3Response::Kind::kOk) {
        Unavailable(absl::StrCat("unexpected backend greeting: ", line.substr(0, 80)));
        return;
      }
      // Dovecot offers XCLIENT in its greeting to trusted proxies only
      // (DIGEST d.2).
      xclient_ = absl::EqualsIgnoreCase(r.code, "XCLIENT");
      if (backend_.tls == BackendTls::kStartTls && !tls_started_) {
        state_ = State::kStartTls;
        Send("STLS\r\n");  // RFC 2595 section 4
        return;
      }
      AfterPop3Greeting();
      return;
    case State::kStartTls:
      if (r.kind != Pop3Response::Kind::kOk) {
        Unavailable(absl::StrCat("backend refused STLS: ", line.substr(0, 80)));
        return;
      }
      state_ = State::kTlsHandshake;
      StartTls();
      return;
    case State::kTlsHandshake:
      return;
    case State::kPop3Capa:
      if (!capa_listing_) {
        if (r.kind == Pop3Response::Kind::kOk) {
          capa_listing_ = true;  // RFC 2449 section 5: one capability a line, then "."
        } else if (r.kind == Pop3Response::Kind::kErr) {
          SendPop3Login();  // an RFC 1939 server without CAPA: no XCLIENT either
        } else {
          Unavailable(absl::StrCat("backend sent an invalid line: ", line.substr(0, 80)));
        }
        return;
      }
      if (line == ".") {
        capa_listing_ = false;
        if (xclient_) {
          SendPop3Xclient();
        } else {
          SendPop3Login();
        }
        return;
      }
      if (++capa_lines_ > 256) {
        Unavailable("backend's CAPA answer has too many lines");
        return;
      }
      if (absl::EqualsIgnoreCase(line.substr(0, line.find(' ')), "XCLIENT")) xclient_ = true;
      return;
    case State::kPop3Xclient:
      if (r.kind != Pop3Response::Kind::kOk) {
        // Dovecot's proxy treats this as a configuration error too.
        Unavailable(absl::StrCat("backend refused XCLIENT: ", line.substr(0, 80)));
        return;
      }
      if (absl::StrContains(absl::AsciiStrToLower(r.text), "not from trusted")) {
        LogOnce(absl::StrCat("untrusted-xclient:", backend_.name),
                absl::StrCat("backend ", backend_.name, " ignored XCLIENT (", LogQuoted(r.text),
                             "): add Postern's address to its login_trusted_networks"));
      }
      SendPop3Login();
      return;
    case State::kPop3User:
      if (r.kind != Pop3Response::Kind::kOk) {
        LoginOutcome o;
        o.kind = LoginOutcome::Kind::kAuthFailed;
        o.code = std::string(r.code);
        o.text = std::string(r.text);
        o.detail = absl::StrCat("backend refused USER: ", line.substr(0, 200));
        Finish(std::move(o));
        return;
      }
      state_ = State::kPop3Pass;
      Send(absl::StrCat("PASS ", request_.password, "\r\n"));
      return;
    case State::kPop3Pass: {
      if (r.kind == Pop3Response::Kind::kContinuation) {
        // An unexpected SASL challenge: cancel, once.
        if (canceled_) {
          Unavailable("backend keeps sending continuation requests");
          return;
        }
        canceled_ = true;
        Send(oauth_ ? "AQ==\r\n" : "*\r\n");
        return;
      }
      LoginOutcome o;
      o.code = std::string(r.code);
      o.text = std::string(r.text);
      if (r.kind == Pop3Response::Kind::kOk) {
        o.kind = LoginOutcome::Kind::kOk;
      } else if (r.kind == Pop3Response::Kind::kErr) {
        o.kind = LoginOutcome::Kind::kAuthFailed;
        o.detail = absl::StrCat("backend: ", line.substr(0, 200));
      } else {
        Unavailable(absl::StrCat("backend sent an invalid line: ", line.substr(0, 80)));
        return;
      }
      Finish(std::move(o));
      return;
    }
    default:
      return;
  }
}

void BackendConnector::AfterPop3Greeting() {
  if (xclient_) {
    SendPop3Xclient();
    return;
  }
  // Dovecot names XCLIENT in its greeting; other servers may list it in
  // CAPA only (RFC 2449 section 5). One round trip more, for backends whose
  // greeting did not offer it.
  state_ = State::kPop3Capa;
  capa_listing_ = false;
  capa_lines_ = 0;
  Send("CAPA\r\n");
}

void BackendConnector::SendPop3Xclient() {
  // Dovecot's XCLIENT (DIGEST d.2): the real client, then the login.
  std::string cmd =
      absl::StrCat("XCLIENT ADDR=", link_.client.IpText(), " PORT=", link_.client.port);
  if (link_.local.known) {
    absl::StrAppend(&cmd, " DESTADDR=", link_.local.IpText(), " DESTPORT=", link_.local.port);
  }
  absl::StrAppend(&cmd, " SESSION=", link_.session_id, " TTL=", link_.ttl,
                  " CLIENT-TRANSPORT=", link_.client_tls ? "TLS" : "insecure");
  if (!link_.sni.empty() && link_.sni.find_first_of(" \r\n") == std::string::npos) {
    absl::StrAppend(&cmd, " DESTNAME=", link_.sni);
  }
  state_ = State::kPop3Xclient;
  Send(absl::StrCat(cmd, "\r\n"));
}

void BackendConnector::SendPop3Login() {
  oauth_ = request_.mechanism == LoginRequest::Mechanism::kXoauth2 ||
           request_.mechanism == LoginRequest::Mechanism::kOauthbearer;
  if (oauth_) {
    state_ = State::kPop3Pass;
    Send(absl::StrCat(
        request_.mechanism == LoginRequest::Mechanism::kXoauth2
            ? "AUTH XOAUTH2 " + EncodeXoauth2(request_.user, request_.password)
            : "AUTH OAUTHBEARER " + EncodeOauthbearer(request_.user, request_.password),
        "\r\n"));
  } else if (backend_.pop3_login == Pop3BackendLogin::kPlain ||
             request_.mechanism == LoginRequest::Mechanism::kPlain) {
    // RFC 5034 section 4: AUTH with an initial response.
    state_ = State::kPop3Pass;
    Send(absl::StrCat("AUTH PLAIN ",
                      EncodeSaslPlain(request_.authzid, request_.user, request_.password), "\r\n"));
  } else {
    state_ = State::kPop3User;
    Send(absl::StrCat("USER ", request_.user, "\r\n"));
  }
}

void BackendConnector::Unavailable(std::string detail) {
  LoginOutcome o = LoginOutcome::Failure(LoginOutcome::Kind::kUnavailable, std::move(detail));
  o.before_login =
      state_ == State::kConnecting || state_ == State::kGreeting || state_ == State::kCapability;
  Finish(std::move(o));
}

void BackendConnector::Finish(LoginOutcome outcome) {
  if (state_ == State::kDone) return;
  state_ = State::kDone;
  timer_.Stop();
  // The next login to this backend resumes this TLS session.
  if (tls_started_ && link_.tls_session != nullptr && conn_ != nullptr) {
    if (TlsSession s = conn_->TakeTlsSession()) *link_.tls_session = std::move(s);
  }
  ConnectionPtr conn = std::move(conn_);
  if (outcome.kind != LoginOutcome::Kind::kOk) {
    conn.reset();  // closes
  } else {
    conn->StopReading();
    conn->set_handler(nullptr);
  }
  // The session may destroy this object from inside `done`: touch nothing
  // after the call.
  Done done = std::move(done_);
  done(std::move(outcome), std::move(conn));
}

}  // namespace postern
