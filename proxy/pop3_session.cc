#include "proxy/pop3_session.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proxy/worker.h"

namespace postern {

Pop3Session::Pop3Session(Worker& worker, const ListenerConfig& listener, ConnectionPtr client)
    : Session(worker, listener, std::move(client)),
      reader_(std::make_unique<Pop3CommandReader>(
          Pop3ReaderLimits{config_->limits.max_line, 16384, UINT32_MAX})) {}

std::string Pop3Session::Greeting() {
  // No APOP timestamp: APOP is not offered (RFC 1939 section 7).
  return absl::StrCat("+OK ", config_->hostname, " ready.\r\n");
}

bool Pop3Session::ProcessCommand() {
  Pop3CommandReader::Event ev = reader_->Next(input());
  switch (ev) {
    case Pop3CommandReader::Event::kNeedMore:
    case Pop3CommandReader::Event::kLine:  // only from NextLine()
      return false;
    case Pop3CommandReader::Event::kError:
      Send(absl::StrCat("-ERR ", reader_->error_text(), "\r\n"));
      return SpendError();
    case Pop3CommandReader::Event::kFatal:
      Send(absl::StrCat("-ERR ", reader_->error_text(), "\r\n"));
      End(absl::StrCat("protocol error: ", reader_->error_text()));
      return false;
    case Pop3CommandReader::Event::kCommand:
      HandleCommand(reader_->command());
      return state_ == State::kPreLogin;
  }
  return false;
}

void Pop3Session::HandleCommand(const Pop3Command& cmd) {
  const std::string& name = cmd.name;
  const auto& args = cmd.args;
  if (name == "CAPA" && args.empty()) {
    // RFC 2449 section 5. USER and SASL only where we would accept them.
    std::string caps =
        "+OK Capability list "
        "follows.\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n";
    if (CanStartTls()) absl::StrAppend(&caps, "STLS\r\n");
    if (AuthAllowed()) absl::StrAppend(&caps, "USER\r\nSASL PLAIN LOGIN\r\n");
    absl::StrAppend(&caps, "IMPLEMENTATION Postern\r\n.\r\n");
    Send(caps);
    return;
  }
  if (name == "NOOP" && args.empty()) {
    Send("+OK\r\n");
    return;
  }
  if (name == "QUIT" && args.empty()) {
    Send("+OK Logging out.\r\n");
    End("client quit");
    return;
  }
  if (name == "STLS" && args.empty()) {
    if (!CanStartTls()) {
      Send(listener_.tls == TlsMode::kStartTls ? "-ERR TLS is already active.\r\n"
                                               : "-ERR STLS is not available here.\r\n");
      SpendError();
      return;
    }
    // RFC 2595 section 4.
    Send("+OK Begin TLS negotiation now.\r\n");
    pending_user_.clear();
    reader_->Reset();
    StartTls();
    return;
  }
  if (name == "USER" && args.size() == 1) {
    if (!AuthAllowed()) {
      Send("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
      return;
    }
    pending_user_ = args[0];
    Send("+OK\r\n");
    return;
  }
  if (name == "PASS" && args.size() == 1) {
    if (!AuthAllowed()) {
      Send("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
      return;
    }
    if (pending_user_.empty()) {
      Send("-ERR No user name given (USER first).\r\n");
      SpendError();
      return;
    }
    std::string user = std::move(pending_user_);
    pending_user_.clear();
    BeginLogin(std::move(user), args[0]);
    return;
  }
  if (name == "AUTH") {
    if (args.empty()) {
      // The mechanism list (as most servers answer a bare AUTH).
      if (!AuthAllowed()) {
        Send("-ERR [AUTH] Authentication disallowed on non-secure connections.\r\n");
        return;
      }
      Send("+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
      return;
    }
    if (args.size() > 2) {
      Send("-ERR AUTH expects a mechanism and an optional initial response.\r\n");
      SpendError();
      return;
    }
    if (!AuthAllowed()) {
      Send("-ERR [AUTH] Authentication disallowed on non-secure connections.\r\n");
      return;
    }
    SaslMech m = ParseSaslMech(args[0]);
    if (m == SaslMech::kNone) {
      Send("-ERR Unsupported authentication mechanism.\r\n");
      return;
    }
    StartSasl(m, args.size() == 2, args.size() == 2 ? absl::string_view(args[1]) : "");
    return;
  }
  Send("-ERR Unknown command or not allowed before login.\r\n");
  SpendError();
}

void Pop3Session::ReplyLoginOk(const LoginOutcome& o) {
  Send(absl::StrCat("+OK ", o.code.empty() ? "" : absl::StrCat("[", o.code, "] "),
                    o.text.empty() ? "Logged in." : o.text, "\r\n"));
}

void Pop3Session::ReplyLoginFailed(const LoginOutcome& o) {
  // RFC 3206 / RFC 2449 section 8: [AUTH] for bad credentials; the
  // backend's own code (SYS/TEMP, IN-USE, ...) when it gave one.
  if (o.code.empty() || absl::EqualsIgnoreCase(o.code, "AUTH")) {
    Send("-ERR [AUTH] Authentication failed.\r\n");
  } else {
    Send(absl::StrCat("-ERR [", o.code, "] ", o.text.empty() ? "Login failed." : o.text, "\r\n"));
  }
}

void Pop3Session::ReplyUnavailable() {
  Send("-ERR [SYS/TEMP] Backend server unavailable, try again later.\r\n");
}

void Pop3Session::ReplyAuthCanceled() { Send("-ERR Authentication canceled.\r\n"); }

void Pop3Session::ReplyAuthBad(absl::string_view why) {
  Send(absl::StrCat("-ERR ", why, "\r\n"));
  SpendError();
}

void Pop3Session::ReplyTooManyFailures() {
  Send("-ERR Too many invalid authentication attempts.\r\n");
}

std::string Pop3Session::TimeoutNotice() { return "-ERR Disconnected for inactivity.\r\n"; }

std::string Pop3Session::ShutdownNotice() { return "-ERR Server shutting down.\r\n"; }

}  // namespace postern
