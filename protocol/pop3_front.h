#pragma once

// The POP3 front before login (RFC 1939 AUTHORIZATION state, RFC 2449 CAPA,
// RFC 5034 AUTH, RFC 2595 STLS): the greeting, CAPA, USER/PASS, AUTH
// PLAIN/LOGIN, STLS, NOOP, QUIT. No APOP: Postern terminates TLS and the
// backend holds the secrets (DIGEST e.26). See protocol/front.h.

#include <memory>
#include <string>

#include "protocol/pop3_command_parser.h"
#include "protocol/sasl_front.h"

namespace postern {

class Pop3Front final : public SaslFront {
 public:
  Pop3Front(FrontHost& host, FrontOptions options);

  // Front
  void Start() override;
  Step ProcessOne(Buffer& in) override;
  void LoginSucceeded(const LoginReply& reply) override;
  void TlsStarted() override;

 private:
  // SaslFront
  void Refuse(const LoginReply& reply) override;
  void SaslFailed(SaslFailure failure, absl::string_view why) override;

  void HandleCommand(const Pop3Command& cmd);
  // -ERR for a client error, then the error budget.
  void Err(absl::string_view text);

  std::unique_ptr<Pop3CommandReader> reader_;
  std::string pending_user_;  // from USER, waiting for PASS
};

}  // namespace postern
