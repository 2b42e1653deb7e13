#include "proxy/imap_session.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/imap_string.h"
#include "proxy/worker.h"

namespace postern {
namespace {

// RFC 2971 section 3.3: at most 30 field-value pairs, fields up to 30 bytes,
// values up to 1024 bytes.
constexpr size_t kMaxIdPairs = 30;
constexpr size_t kMaxIdField = 30;
constexpr size_t kMaxIdValue = 1024;

ImapParserLimits ParserLimits(const Config& c) {
  ImapParserLimits l;
  l.max_line = c.limits.max_line;
  l.max_literal = c.limits.max_prelogin_literal;
  // The session keeps its own budget (parse errors and unknown commands).
  l.error_budget = UINT32_MAX;
  return l;
}

bool IsAstring(const ImapArg& a) {
  return a.type == ImapArg::Type::kAtom || a.type == ImapArg::Type::kString;
}

}  // namespace

ImapSession::ImapSession(Worker& worker, const ListenerConfig& listener, ConnectionPtr client)
    : Session(worker, listener, std::move(client)),
      parser_(std::make_unique<ImapCommandParser>(ParserLimits(*config_))) {}

void ImapSession::ReleaseFront() {
  parser_.reset();
  client_id_ = {};
}

std::string ImapSession::Capabilities() const {
  // Before login we offer what we implement ourselves; after login the
  // client gets the backend's list.
  std::string caps = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE";
  if (CanStartTls()) absl::StrAppend(&caps, " STARTTLS");
  if (AuthAllowed()) {
    absl::StrAppend(&caps, " AUTH=PLAIN AUTH=LOGIN");
  } else {
    // RFC 9051 section 6.2.3 / RFC 2595 section 3.2.
    absl::StrAppend(&caps, " LOGINDISABLED");
  }
  return caps;
}

std::string ImapSession::Greeting() {
  return absl::StrCat("* OK [CAPABILITY ", Capabilities(), "] ", config_->hostname, " ready.\r\n");
}

void ImapSession::Tagged(absl::string_view status, absl::string_view text) {
  Send(absl::StrCat(tag_, " ", status, " ", text, "\r\n"));
}

bool ImapSession::ProcessCommand() {
  Buffer& in = input();
  absl::string_view front = in.Front();
  size_t consumed = 0;
  ImapCommandParser::Event ev = parser_->Feed(front, &consumed);
  in.Drain(consumed);
  switch (ev) {
    case ImapCommandParser::Event::kNeedMore:
      return !in.empty();  // the next slice, if any
    case ImapCommandParser::Event::kContinue:
      // RFC 9051 section 7.5: go ahead with the synchronizing literal.
      Send("+ OK\r\n");
      return true;
    case ImapCommandParser::Event::kError: {
      std::string code = parser_->error_code().empty()
                             ? std::string()
                             : absl::StrCat("[", parser_->error_code(), "] ");
      Send(absl::StrCat(parser_->error_tag(), " BAD ", code, parser_->error_text(), "\r\n"));
      return SpendError();
    }
    case ImapCommandParser::Event::kFatal:
      Send(absl::StrCat("* BYE ", parser_->error_text(), "\r\n"));
      End(absl::StrCat("protocol error: ", parser_->error_text()));
      return false;
    case ImapCommandParser::Event::kCommand:
      HandleCommand(parser_->command());
      return state_ == State::kPreLogin;
  }
  return false;
}

void ImapSession::HandleCommand(const ImapCommand& cmd) {
  tag_ = cmd.tag;
  const std::string& name = cmd.name;
  const auto& args = cmd.args;

  if (name == "CAPABILITY" && args.empty()) {
    Send(absl::StrCat("* CAPABILITY ", Capabilities(), "\r\n"));
    Tagged("OK", "Pre-login capabilities listed, post-login capabilities have more.");
    return;
  }
  if (name == "NOOP" && args.empty()) {
    Tagged("OK", "NOOP completed.");
    return;
  }
  if (name == "LOGOUT" && args.empty()) {
    Send("* BYE Logging out.\r\n");
    Tagged("OK", "Logout completed.");
    End("client logout");
    return;
  }
  if (name == "STARTTLS" && args.empty()) {
    if (!CanStartTls()) {
      Tagged("BAD", listener_.tls == TlsMode::kStartTls ? "TLS is already active."
                                                        : "STARTTLS is not available here.");
      SpendError();
      return;
    }
    // RFC 9051 section 6.2.1 / RFC 2595 section 3.1.
    Tagged("OK", "Begin TLS negotiation now.");
    StartTls();
    return;
  }
  if (name == "ID" && args.size() == 1) {
    // RFC 2971 section 3.1: ID NIL or a list of field/value pairs.
    const ImapArg& a = args[0];
    bool ok = a.type == ImapArg::Type::kNil;
    if (a.type == ImapArg::Type::kList && a.list.size() % 2 == 0 &&
        a.list.size() / 2 <= kMaxIdPairs) {
      ok = true;
      std::vector<std::pair<std::string, std::string>> fields;
      for (size_t i = 0; i < a.list.size(); i += 2) {
        const ImapArg& k = a.list[i];
        const ImapArg& v = a.list[i + 1];
        if (k.type != ImapArg::Type::kString || k.value.size() > kMaxIdField ||
            (v.type != ImapArg::Type::kString && v.type != ImapArg::Type::kNil) ||
            v.value.size() > kMaxIdValue) {
          ok = false;
          break;
        }
        if (v.type == ImapArg::Type::kString) fields.emplace_back(k.value, v.value);
      }
      if (ok) client_id_ = std::move(fields);
    }
    if (!ok) {
      Tagged("BAD", "Invalid ID parameters.");
      SpendError();
      return;
    }
    Send("* ID (\"name\" \"Postern\")\r\n");
    Tagged("OK", "ID completed.");
    return;
  }
  if (name == "LOGIN") {
    if (args.size() != 2 || !IsAstring(args[0]) || !IsAstring(args[1])) {
      Tagged("BAD", "LOGIN expects a user name and a password.");
      SpendError();
      return;
    }
    if (!AuthAllowed()) {
      // RFC 9051 section 6.2.3 and RFC 5530 PRIVACYREQUIRED.
      Tagged("NO",
             "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.");
      return;
    }
    BeginLogin(args[0].value, args[1].value);
    return;
  }
  if (name == "AUTHENTICATE") {
    if (args.empty() || args.size() > 2 || args[0].type != ImapArg::Type::kAtom ||
        (args.size() == 2 && args[1].type != ImapArg::Type::kAtom)) {
      Tagged("BAD", "AUTHENTICATE expects a mechanism and an optional initial response.");
      SpendError();
      return;
    }
    if (!AuthAllowed()) {
      Tagged("NO", "[PRIVACYREQUIRED] Authentication disallowed on non-secure connections.");
      return;
    }
    SaslMech m = ParseSaslMech(args[0].value);
    if (m == SaslMech::kNone) {
      Tagged("NO", "Unsupported authentication mechanism.");
      return;
    }
    StartSasl(m, args.size() == 2, args.size() == 2 ? absl::string_view(args[1].value) : "");
    return;
  }
  if (name == "CAPABILITY" || name == "NOOP" || name == "LOGOUT" || name == "STARTTLS" ||
      name == "ID") {
    Tagged("BAD", "Invalid arguments.");
  } else {
    Tagged("BAD", "Command unknown or not allowed before login.");
  }
  SpendError();
}

std::string ImapSession::LoginIdArgs() {
  // The client's address for the backend (Dovecot reads x-originating-* from
  // trusted networks), then the client's own fields; the client may not
  // set the address fields itself.
  absl::string_view ip = client_ip(), port = client_port();
  std::string out = absl::StrCat("(\"x-originating-ip\" ", ImapQuote(ip));
  if (!port.empty()) absl::StrAppend(&out, " \"x-originating-port\" ", ImapQuote(port));
  for (const auto& [k, v] : client_id_) {
    if (absl::StartsWithIgnoreCase(k, "x-originating-") ||
        absl::StartsWithIgnoreCase(k, "x-connected-") || NeedsLiteral(k) || NeedsLiteral(v)) {
      continue;
    }
    absl::StrAppend(&out, " ", ImapQuote(k), " ", ImapQuote(v));
  }
  absl::StrAppend(&out, ")");
  return out;
}

void ImapSession::ReplyLoginOk(const LoginOutcome& o) {
  std::string text = o.text.empty() ? "Logged in." : o.text;
  if (!o.capabilities.empty()) {
    Tagged("OK", absl::StrCat("[CAPABILITY ", o.capabilities, "] ", text));
  } else {
    Tagged("OK", text);
  }
}

void ImapSession::ReplyLoginFailed(const LoginOutcome& o) {
  // The backend's code when it gave a specific one (RFC 5530), else the
  // generic AUTHENTICATIONFAILED.
  if (o.code.empty() || absl::EqualsIgnoreCase(o.code, "AUTHENTICATIONFAILED")) {
    Tagged("NO", "[AUTHENTICATIONFAILED] Authentication failed.");
  } else {
    Tagged("NO", absl::StrCat("[", o.code, "] ", o.text.empty() ? "Login failed." : o.text));
  }
}

void ImapSession::ReplyUnavailable() {
  Tagged("NO", "[UNAVAILABLE] Backend server unavailable, try again later.");
}

void ImapSession::ReplyAuthCanceled() { Tagged("BAD", "Authentication canceled."); }

void ImapSession::ReplyAuthBad(absl::string_view why) {
  Tagged("BAD", why);
  SpendError();
}

void ImapSession::ReplyTooManyFailures() {
  Send("* BYE Too many invalid authentication attempts.\r\n");
}

std::string ImapSession::TimeoutNotice() { return "* BYE Disconnected for inactivity.\r\n"; }

std::string ImapSession::ShutdownNotice() { return "* BYE Server shutting down.\r\n"; }

}  // namespace postern
