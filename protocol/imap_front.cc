#include "protocol/imap_front.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "protocol/imap_string.h"

namespace postern {
namespace {

// RFC 2971 section 3.3: at most 30 field-value pairs, field strings up to 30
// octets, value strings up to 1024 octets.
constexpr size_t kMaxIdPairs = 30;
constexpr size_t kMaxIdField = 30;
constexpr size_t kMaxIdValue = 1024;

// The fields RFC 2971 section 3.3 defines. Only these are passed on: any
// other field, "x-" ones above all, could make a backend that trusts
// Postern's address believe something Postern never said (Dovecot honours
// x-session-id, x-originating-ip, x-forward-* and x-client-transport from
// its login_trusted_networks).
constexpr absl::string_view kIdFields[] = {
    "name",    "version", "os",      "os-version", "vendor",      "support-url",
    "address", "date",    "command", "arguments",  "environment",
};

bool IsRfc2971Field(absl::string_view k) {
  for (absl::string_view f : kIdFields) {
    if (absl::EqualsIgnoreCase(k, f)) return true;
  }
  return false;
}

bool IsAstring(const ImapArg& a) { return a.IsAstring(); }

ImapParserLimits ParserLimits(const FrontOptions& o) {
  ImapParserLimits l;
  l.max_line = o.max_line;
  l.max_literal = o.max_literal;
  // The front keeps its own budget (parse errors and unknown commands).
  l.error_budget = UINT32_MAX;
  // An ID list of 30 pairs is 60 elements; LOGIN with literals and the
  // command's other arguments come on top.
  l.max_args = 2 * kMaxIdPairs + 8;
  return l;
}

constexpr char kTooMany[] = "* BYE Too many invalid commands.\r\n";

}  // namespace

ImapFront::ImapFront(FrontHost& host, FrontOptions options)
    : SaslFront(host, std::move(options)),
      parser_(std::make_unique<ImapCommandParser>(ParserLimits(options_))) {}

std::string ImapFront::Capabilities() const {
  // Before login we offer what we implement ourselves; after login the
  // client gets the backend's list in the tagged OK.
  std::string caps = "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE";
  if (CanStartTls()) absl::StrAppend(&caps, " STARTTLS");
  if (AuthAllowed()) {
    absl::StrAppend(&caps, " ", MechanismList("AUTH=", " "));
  } else {
    // RFC 9051 section 6.2.3 / RFC 2595 section 3.2.
    absl::StrAppend(&caps, " LOGINDISABLED");
  }
  return caps;
}

void ImapFront::Start() {
  host_.Send(
      absl::StrCat("* OK [CAPABILITY ", Capabilities(), "] ", options_.hostname, " ready.\r\n"));
}

void ImapFront::TlsStarted() {
  options_.tls = true;
  // RFC 9051 section 6.2.1: nothing the client said before TLS counts.
  client_id_.clear();
  trusted_id_.clear();
}

void ImapFront::Tagged(absl::string_view status, absl::string_view text) {
  host_.Send(absl::StrCat(tag_, " ", status, " ", text, "\r\n"));
}

void ImapFront::Bad(absl::string_view text) {
  Tagged("BAD", text);
  SpendError(kTooMany);
}

Front::Step ImapFront::ProcessOne(Buffer& in) {
  if (ended_ || waiting_login_ || logged_in_) return Step::kStopped;
  // An AUTHENTICATE exchange, or the answer to an OAuth error challenge.
  if (Step step; ProcessExchange(in, &step)) return step;
  while (!in.empty()) {
    size_t consumed = 0;
    ImapCommandParser::Event ev = parser_->Feed(in.Front(), &consumed);
    in.Drain(consumed);
    switch (ev) {
      case ImapCommandParser::Event::kNeedMore:
        continue;  // the next slice, if any
      case ImapCommandParser::Event::kContinue:
        // RFC 9051 section 7.5: go ahead with the synchronizing literal.
        host_.Send("+ OK\r\n");
        return Step::kHandled;
      case ImapCommandParser::Event::kError: {
        tag_ = parser_->error_tag();
        std::string code = parser_->error_code().empty()
                               ? std::string()
                               : absl::StrCat("[", parser_->error_code(), "] ");
        Bad(absl::StrCat(code, parser_->error_text()));
        return ended_ ? Step::kStopped : Step::kHandled;
      }
      case ImapCommandParser::Event::kFatal:
        host_.Send(absl::StrCat("* BYE ", parser_->error_text(), "\r\n"));
        EndSession(absl::StrCat("protocol error: ", parser_->error_text()));
        return Step::kStopped;
      case ImapCommandParser::Event::kCommand:
        HandleCommand(parser_->command());
        return ended_ || waiting_login_ ? Step::kStopped : Step::kHandled;
    }
  }
  return Step::kNeedMore;
}

void ImapFront::HandleCommand(const ImapCommand& cmd) {
  tag_ = cmd.tag;
  const std::string& name = cmd.name;
  const auto& args = cmd.args;

  if (name == "CAPABILITY" && args.empty()) {
    host_.Send(absl::StrCat("* CAPABILITY ", Capabilities(), "\r\n"));
    Tagged("OK", "Pre-login capabilities listed, post-login capabilities have more.");
    return;
  }
  if (name == "NOOP" && args.empty()) {
    Tagged("OK", "NOOP completed.");
    return;
  }
  if (name == "LOGOUT" && args.empty()) {
    host_.Send("* BYE Logging out.\r\n");
    Tagged("OK", "Logout completed.");
    EndSession("client logout");
    return;
  }
  if (name == "STARTTLS" && args.empty()) {
    if (!CanStartTls()) {
      // RFC 9051 section 6.2.1: BAD when TLS is active or not offered here.
      Bad(options_.tls ? "TLS is already active." : "STARTTLS is not available here.");
      return;
    }
    Tagged("OK", "Begin TLS negotiation now.");
    if (!host_.StartTls()) {
      EndSession("TLS could not start");
      return;
    }
    TlsStarted();
    return;
  }
  if (name == "ID" && args.size() == 1) {
    HandleId(cmd);
    return;
  }
  if (name == "LOGIN") {
    if (args.size() != 2 || !IsAstring(args[0]) || !IsAstring(args[1])) {
      Bad("LOGIN expects a user name and a password.");
      return;
    }
    if (!AuthAllowed()) {
      // RFC 9051 section 6.2.3 and RFC 5530 PRIVACYREQUIRED.
      Tagged("NO",
             "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.");
      return;
    }
    Credentials c;
    c.mechanism = Credentials::Mechanism::kLogin;
    c.authcid = args[0].value;
    c.secret = args[1].value;
    BeginLogin(std::move(c));
    return;
  }
  if (name == "AUTHENTICATE") {
    if (args.empty() || args.size() > 2 || args[0].type != ImapArg::Type::kAtom ||
        (args.size() == 2 && args[1].type != ImapArg::Type::kAtom)) {
      Bad("AUTHENTICATE expects a mechanism and an optional initial response.");
      return;
    }
    if (!AuthAllowed()) {
      Tagged("NO", "[PRIVACYREQUIRED] Authentication disallowed on non-secure connections.");
      return;
    }
    Credentials::Mechanism m;
    if (!Offered(args[0].value, &m)) {
      // RFC 9051 section 6.2.2: NO for a mechanism we do not support.
      Tagged("NO", "Unsupported authentication mechanism.");
      return;
    }
    StartSasl(m, args.size() == 2, args.size() == 2 ? absl::string_view(args[1].value) : "");
    return;
  }
  if (name == "CAPABILITY" || name == "NOOP" || name == "LOGOUT" || name == "STARTTLS" ||
      name == "ID") {
    Bad("Invalid arguments.");
  } else {
    Bad("Command unknown or not allowed before login.");
  }
}

void ImapFront::HandleId(const ImapCommand& cmd) {
  // RFC 2971 section 3.1: ID NIL or a list of field/value pairs, values
  // strings or NIL; section 3.3 limits their number and sizes.
  const ImapArg& a = cmd.args[0];
  bool ok = a.type == ImapArg::Type::kNil;
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<std::pair<std::string, std::string>> trusted;
  if (a.type == ImapArg::Type::kList && a.list.size() % 2 == 0 &&
      a.list.size() / 2 <= kMaxIdPairs) {
    ok = true;
    for (size_t i = 0; i < a.list.size() && ok; i += 2) {
      const ImapArg& k = a.list[i];
      const ImapArg& v = a.list[i + 1];
      ok = k.type == ImapArg::Type::kString && k.value.size() <= kMaxIdField &&
           (v.type == ImapArg::Type::kString || v.type == ImapArg::Type::kNil) &&
           v.value.size() <= kMaxIdValue;
      if (ok && options_.trusted && v.type == ImapArg::Type::kString &&
          (absl::EqualsIgnoreCase(k.value, "x-originating-ip") ||
           absl::EqualsIgnoreCase(k.value, "x-originating-port") ||
           absl::EqualsIgnoreCase(k.value, "x-proxy-ttl"))) {
        trusted.emplace_back(absl::AsciiStrToLower(k.value), v.value);
        continue;
      }
      if (!ok || v.type == ImapArg::Type::kNil || !IsRfc2971Field(k.value)) continue;
      // Passed on as quoted strings, pipelined with the backend login:
      // what cannot be quoted is left out rather than sent as a literal.
      if (NeedsLiteral(v.value)) continue;
      bool seen = false;
      for (const auto& f : fields) seen = seen || absl::EqualsIgnoreCase(f.first, k.value);
      if (!seen) fields.emplace_back(absl::AsciiStrToLower(k.value), v.value);
    }
  }
  if (!ok) {
    Bad("Invalid ID parameters.");
    return;
  }
  client_id_ = std::move(fields);
  trusted_id_ = std::move(trusted);
  host_.Send("* ID (\"name\" \"Postern\")\r\n");
  Tagged("OK", "ID completed.");
}

void ImapFront::LoginSucceeded(const LoginReply& reply) {
  waiting_login_ = false;
  logged_in_ = true;
  std::string text = reply.text.empty() ? "Logged in." : reply.text;
  if (!reply.capabilities.empty()) {
    Tagged("OK", absl::StrCat("[CAPABILITY ", reply.capabilities, "] ", text));
  } else {
    Tagged("OK", text);
  }
  parser_.reset();
  client_id_.clear();
  client_id_.shrink_to_fit();
}

void ImapFront::SaslFailed(SaslFailure failure, absl::string_view why) {
  switch (failure) {
    case SaslFailure::kTooLong:
      Bad("[TOOBIG] SASL response too long.");
      return;
    case SaslFailure::kCanceled:
      // RFC 9051 section 6.2.2: "*" cancels, answered with BAD.
      Tagged("BAD", "Authentication canceled.");
      return;
    case SaslFailure::kBadData:
      Bad(absl::StrCat("Invalid SASL data: ", why));
      return;
  }
}

void ImapFront::Refuse(const LoginReply& reply) {
  switch (reply.kind) {
    case LoginReply::Kind::kOk:
    case LoginReply::Kind::kAuthFailed:
      // The backend's code when it gave a specific one (RFC 5530), else the
      // generic AUTHENTICATIONFAILED (RFC 3501 section 11.2: never say
      // whether the user or the password was wrong). A text comes with a
      // code only (a directory's refusal text, nginx's Auth-Status, gets
      // AUTHENTICATIONFAILED from the session), as in Pop3Front::Refuse.
      if (reply.code.empty() ||
          (absl::EqualsIgnoreCase(reply.code, "AUTHENTICATIONFAILED") && reply.text.empty())) {
        Tagged("NO", "[AUTHENTICATIONFAILED] Authentication failed.");
      } else {
        Tagged("NO", absl::StrCat("[", reply.code, "] ",
                                  reply.text.empty() ? "Login failed." : reply.text));
      }
      break;
    case LoginReply::Kind::kAuthzFailed:
      Tagged("NO", "[AUTHORIZATIONFAILED] Authorization failed.");
      break;
    case LoginReply::Kind::kUnavailable:
      Tagged("NO", "[UNAVAILABLE] Backend server unavailable, try again later.");
      break;
  }
  // A backend that is down is not the client's failure.
  if (reply.kind != LoginReply::Kind::kUnavailable) ++auth_failures_;
  if (auth_failures_ >= options_.max_auth_attempts) {
    host_.Send("* BYE Too many invalid authentication attempts.\r\n");
    EndSession("too many failed logins");
  }
}

}  // namespace postern
