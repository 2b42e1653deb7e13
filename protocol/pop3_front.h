#pragma once

// The POP3 front before login (RFC 1939 AUTHORIZATION state, RFC 2449 CAPA,
// RFC 5034 AUTH, RFC 2595 STLS): the greeting, CAPA, USER/PASS, AUTH
// PLAIN/LOGIN, STLS, NOOP, QUIT. No APOP: Postern terminates TLS and the
// backend holds the secrets (DIGEST e.26). See protocol/front.h.

#include <memory>
#include <string>

#include "protocol/front.h"
#include "protocol/line_splitter.h"
#include "protocol/pop3_command_parser.h"
#include "protocol/sasl_server.h"

namespace postern {

class Pop3Front final : public Front {
 public:
  Pop3Front(FrontHost& host, FrontOptions options);

  // Front
  void Start() override;
  Step ProcessOne(Buffer& in) override;
  void LoginSucceeded(const LoginReply& reply) override;
  void LoginFailed(const LoginReply& reply) override;
  void TlsStarted() override;

 private:
  void HandleCommand(const Pop3Command& cmd);
  Step ProcessSasl(Buffer& in);
  void OnSaslResult(SaslServer::Result r);
  void BeginLogin(Credentials c);
  void Refuse(const LoginReply& reply);
  // -ERR for a client error, then the error budget.
  void Err(absl::string_view text);

  std::unique_ptr<Pop3CommandReader> reader_;
  std::string pending_user_;  // from USER, waiting for PASS
  struct Sasl {
    Sasl(Credentials::Mechanism m, size_t max_line) : server(m), lines(max_line) {}
    SaslServer server;
    LineSplitter lines;
  };
  std::unique_ptr<Sasl> sasl_;
  struct OauthRefusal {
    explicit OauthRefusal(LoginReply r) : reply(std::move(r)), lines(1024) {}
    LoginReply reply;
    LineSplitter lines;
  };
  std::unique_ptr<OauthRefusal> oauth_refusal_;  // see ImapFront
};

}  // namespace postern
