#include "protocol/pop3_front.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace postern {
namespace {

constexpr char kTooMany[] = "-ERR Too many invalid commands.\r\n";

Pop3ReaderLimits ReaderLimits(const FrontOptions& o) {
  Pop3ReaderLimits l;
  l.max_line = o.max_line;
  l.max_sasl_line = o.max_sasl_line;
  l.error_budget = UINT32_MAX;  // the front keeps its own budget
  return l;
}

}  // namespace

Pop3Front::Pop3Front(FrontHost& host, FrontOptions options)
    : SaslFront(host, std::move(options)),
      reader_(std::make_unique<Pop3CommandReader>(ReaderLimits(options_))) {}

void Pop3Front::Start() {
  // No APOP timestamp: APOP is not offered (RFC 1939 section 7). A proxy
  // in front that we trust is told it may say who its client is (Dovecot's
  // "[XCLIENT]" greeting code, DIGEST d.2).
  host_.Send(
      absl::StrCat("+OK ", options_.trusted ? "[XCLIENT] " : "", options_.hostname, " ready.\r\n"));
}

void Pop3Front::TlsStarted() {
  options_.tls = true;
  // RFC 2595 section 4: forget what was said before TLS.
  pending_user_.clear();
  reader_->Reset();
}

void Pop3Front::Err(absl::string_view text) {
  host_.Send(absl::StrCat("-ERR ", text, "\r\n"));
  SpendError(kTooMany);
}

Front::Step Pop3Front::ProcessOne(Buffer& in) {
  if (ended_ || waiting_login_ || logged_in_) return Step::kStopped;
  // An AUTH exchange, or the answer to an OAuth error challenge.
  if (Step step; ProcessExchange(in, &step)) return step;
  switch (reader_->Next(in)) {
    case Pop3CommandReader::Event::kNeedMore:
    case Pop3CommandReader::Event::kLine:  // only from NextLine()
      return Step::kNeedMore;
    case Pop3CommandReader::Event::kError:
      Err(reader_->error_text());
      return ended_ ? Step::kStopped : Step::kHandled;
    case Pop3CommandReader::Event::kFatal:
      // The reader takes nothing more from this client (a NUL byte in a
      // command): one answer and the end, not one per remaining error of
      // the budget (found by the pop3_front fuzzer).
      host_.Send(absl::StrCat("-ERR ", reader_->error_text(), "\r\n"));
      EndSession(reader_->error_text());
      return Step::kStopped;
    case Pop3CommandReader::Event::kCommand:
      HandleCommand(reader_->command());
      return ended_ || waiting_login_ ? Step::kStopped : Step::kHandled;
  }
  return Step::kNeedMore;
}

void Pop3Front::HandleCommand(const Pop3Command& cmd) {
  const std::string& name = cmd.name;
  const auto& args = cmd.args;
  if (name == "CAPA" && args.empty()) {
    // RFC 2449 section 5. USER and SASL only where we would accept them.
    std::string caps =
        "+OK Capability list follows.\r\n"
        "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n";
    if (CanStartTls()) absl::StrAppend(&caps, "STLS\r\n");
    if (AuthAllowed()) absl::StrAppend(&caps, "USER\r\nSASL ", MechanismList("", " "), "\r\n");
    absl::StrAppend(&caps, "IMPLEMENTATION Postern\r\n.\r\n");
    host_.Send(caps);
    return;
  }
  if (name == "NOOP" && args.empty()) {
    host_.Send("+OK\r\n");
    return;
  }
  if (name == "XCLIENT" && !args.empty()) {
    // Dovecot's XCLIENT (DIGEST d.2): ADDR=, PORT=, TTL=, SESSION=, ... from
    // a proxy in front, believed only from trusted_networks. Unknown
    // attributes are ignored, as Dovecot does.
    if (!options_.trusted) {
      Err("You are not from trusted IP.");
      return;
    }
    std::vector<std::pair<std::string, std::string>> fields;
    for (const std::string& a : args) {
      const size_t eq = a.find('=');
      if (eq == std::string::npos) continue;
      const std::string key = absl::AsciiStrToUpper(a.substr(0, eq));
      const std::string value = a.substr(eq + 1);
      if (key == "ADDR") fields.emplace_back("x-originating-ip", value);
      if (key == "PORT") fields.emplace_back("x-originating-port", value);
      if (key == "TTL") fields.emplace_back("x-proxy-ttl", value);
    }
    trusted_id_ = std::move(fields);
    host_.Send("+OK\r\n");
    return;
  }
  if (name == "QUIT" && args.empty()) {
    // RFC 1939 section 6: QUIT in AUTHORIZATION ends without UPDATE.
    host_.Send("+OK Logging out.\r\n");
    EndSession("client quit");
    return;
  }
  if (name == "STLS" && args.empty()) {
    if (!CanStartTls()) {
      Err(options_.tls ? "TLS is already active." : "STLS is not available here.");
      return;
    }
    // RFC 2595 section 4.
    host_.Send("+OK Begin TLS negotiation now.\r\n");
    if (!host_.StartTls()) {
      EndSession("TLS could not start");
      return;
    }
    TlsStarted();
    return;
  }
  if ((name == "USER" || name == "PASS") && args.size() == 1) {
    if (!AuthAllowed()) {
      host_.Send("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
      return;
    }
    if (name == "USER") {
      // RFC 1939 section 13 / DIGEST e.13: +OK whoever it is.
      pending_user_ = args[0];
      host_.Send("+OK\r\n");
      return;
    }
    if (pending_user_.empty()) {
      Err("No user name given (USER first).");
      return;
    }
    Credentials c;
    c.mechanism = Credentials::Mechanism::kLogin;
    c.authcid = std::move(pending_user_);
    pending_user_.clear();
    c.secret = args[0];
    BeginLogin(std::move(c));
    return;
  }
  if (name == "AUTH") {
    if (!args.empty() && args.size() > 2) {
      Err("AUTH expects a mechanism and an optional initial response.");
      return;
    }
    if (!AuthAllowed()) {
      host_.Send("-ERR [AUTH] Authentication disallowed on non-secure connections.\r\n");
      return;
    }
    if (args.empty()) {
      // The mechanism list (as most servers answer a bare AUTH).
      host_.Send(absl::StrCat("+OK\r\n", MechanismList("", "\r\n"), "\r\n.\r\n"));
      return;
    }
    Credentials::Mechanism m;
    if (!Offered(args[0], &m)) {
      host_.Send("-ERR Unsupported authentication mechanism.\r\n");
      return;
    }
    StartSasl(m, args.size() == 2, args.size() == 2 ? absl::string_view(args[1]) : "");
    return;
  }
  Err("Unknown command or not allowed before login.");
}

void Pop3Front::LoginSucceeded(const LoginReply& reply) {
  waiting_login_ = false;
  logged_in_ = true;
  host_.Send(absl::StrCat("+OK ", reply.code.empty() ? "" : absl::StrCat("[", reply.code, "] "),
                          reply.text.empty() ? "Logged in." : reply.text, "\r\n"));
  reader_.reset();
}

void Pop3Front::SaslFailed(SaslFailure failure, absl::string_view why) {
  switch (failure) {
    case SaslFailure::kTooLong:
      Err("SASL response too long.");
      return;
    case SaslFailure::kCanceled:
      // RFC 5034 section 4: "*" cancels, answered with -ERR.
      host_.Send("-ERR Authentication canceled.\r\n");
      return;
    case SaslFailure::kBadData:
      Err(absl::StrCat("Invalid SASL data: ", why));
      return;
  }
}

void Pop3Front::Refuse(const LoginReply& reply) {
  switch (reply.kind) {
    case LoginReply::Kind::kOk:
    case LoginReply::Kind::kAuthFailed:
      // RFC 3206 / RFC 2449 section 8: [AUTH] for bad credentials; the
      // backend's own code (IN-USE, SYS/TEMP, ...) when it gave one.
      if (reply.code.empty() ||
          (absl::EqualsIgnoreCase(reply.code, "AUTH") && reply.text.empty())) {
        host_.Send("-ERR [AUTH] Authentication failed.\r\n");
      } else {
        host_.Send(absl::StrCat("-ERR [", reply.code, "] ",
                                reply.text.empty() ? "Login failed." : reply.text, "\r\n"));
      }
      break;
    case LoginReply::Kind::kAuthzFailed:
      host_.Send("-ERR [AUTH] Authorization failed.\r\n");
      break;
    case LoginReply::Kind::kUnavailable:
      host_.Send("-ERR [SYS/TEMP] Backend server unavailable, try again later.\r\n");
      break;
  }
  if (reply.kind != LoginReply::Kind::kUnavailable) ++auth_failures_;
  if (auth_failures_ >= options_.max_auth_attempts) {
    host_.Send("-ERR Too many invalid authentication attempts.\r\n");
    EndSession("too many failed logins");
  }
}

}  // namespace postern
