#pragma once

// The POP3 front before login (RFC 1939 AUTHORIZATION state, RFC 2449 CAPA,
// RFC 5034 AUTH, RFC 2595 STLS): CAPA, USER/PASS, AUTH PLAIN/LOGIN, STLS,
// NOOP, QUIT. No APOP: the backend holds the secrets, we never see them.

#include <memory>
#include <string>

#include "protocol/pop3_command_parser.h"
#include "proxy/session.h"

namespace postern {

class Pop3Session : public Session {
 public:
  Pop3Session(Worker& worker, const ListenerConfig& listener, ConnectionPtr client);

 protected:
  std::string Greeting() override;
  bool ProcessCommand() override;
  void ReplyLoginOk(const LoginOutcome& o) override;
  void ReplyLoginFailed(const LoginOutcome& o) override;
  void ReplyUnavailable() override;
  void ReplyAuthCanceled() override;
  void ReplyAuthBad(absl::string_view why) override;
  void ReplyTooManyFailures() override;
  std::string TimeoutNotice() override;
  std::string ShutdownNotice() override;
  void ReleaseFront() override { reader_.reset(); }

 private:
  void HandleCommand(const Pop3Command& cmd);

  std::unique_ptr<Pop3CommandReader> reader_;  // null once relaying
  std::string pending_user_;                   // from USER, waiting for PASS
};

}  // namespace postern
