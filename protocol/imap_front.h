#pragma once

// The IMAP front before login (RFC 9051 / RFC 3501 not-authenticated state):
// the greeting, CAPABILITY, NOOP, LOGOUT, STARTTLS, ID, LOGIN, AUTHENTICATE
// PLAIN / LOGIN with SASL-IR. Everything else is refused until the backend
// takes over. See protocol/front.h for how a driver runs it.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "protocol/front.h"
#include "protocol/imap_command_parser.h"
#include "protocol/line_splitter.h"
#include "protocol/sasl_server.h"

namespace postern {

class ImapFront final : public Front {
 public:
  ImapFront(FrontHost& host, FrontOptions options);

  // Front
  void Start() override;
  Step ProcessOne(Buffer& in) override;
  void LoginSucceeded(const LoginReply& reply) override;
  void LoginFailed(const LoginReply& reply) override;
  void TlsStarted() override;

  // The client's ID fields (RFC 2971) that may be passed on to a backend:
  // only the field names of RFC 2971 section 3.3, within its size limits,
  // with values that fit a quoted string. Never an "x-" field: those the
  // backend sees come from Postern alone.
  const std::vector<std::pair<std::string, std::string>>& client_id() const { return client_id_; }
  // From a trusted peer only (FrontOptions::trusted): its forwarding fields
  // x-originating-ip, x-originating-port and x-proxy-ttl, lower-cased names.

  // The capabilities offered before login.
  std::string Capabilities() const;

 private:
  Step ProcessSasl(Buffer& in);
  void HandleCommand(const ImapCommand& cmd);
  void HandleId(const ImapCommand& cmd);
  void StartSasl(Credentials::Mechanism mech, bool has_initial, absl::string_view initial);
  void OnSaslResult(SaslServer::Result r);
  void BeginLogin(Credentials c);
  // The refusal itself (after the OAuth error round trip, if any).
  void Refuse(const LoginReply& reply);
  void Tagged(absl::string_view status, absl::string_view text);
  // BAD for a client error, then the error budget.
  void Bad(absl::string_view text);

  std::unique_ptr<ImapCommandParser> parser_;
  std::string tag_;  // of the command being answered
  std::vector<std::pair<std::string, std::string>> client_id_;
  // Set exactly while an AUTHENTICATE exchange waits for response lines.
  struct Sasl {
    Sasl(Credentials::Mechanism m, size_t max_line) : server(m), lines(max_line) {}
    SaslServer server;
    LineSplitter lines;
  };
  std::unique_ptr<Sasl> sasl_;
  // A refused OAuth login: the client's answer to the error challenge is
  // awaited before the refusal (RFC 7628 section 3.2.2).
  struct OauthRefusal {
    explicit OauthRefusal(LoginReply r) : reply(std::move(r)), lines(1024) {}
    LoginReply reply;
    LineSplitter lines;
  };
  std::unique_ptr<OauthRefusal> oauth_refusal_;
};

}  // namespace postern
