#pragma once

// The IMAP front before login (RFC 9051 / RFC 3501 not-authenticated state):
// CAPABILITY, NOOP, LOGOUT, STARTTLS, ID, LOGIN, AUTHENTICATE PLAIN/LOGIN
// with SASL-IR. Everything else waits for the backend.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "protocol/imap_command_parser.h"
#include "proxy/session.h"

namespace postern {

class ImapSession : public Session {
 public:
  ImapSession(Worker& worker, const ListenerConfig& listener, ConnectionPtr client);

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
  std::string LoginIdArgs() override;
  void ReleaseFront() override;

 private:
  std::string Capabilities() const;
  void HandleCommand(const ImapCommand& cmd);
  void Tagged(absl::string_view status, absl::string_view text);

  std::unique_ptr<ImapCommandParser> parser_;  // null once relaying
  std::string tag_;  // of the command being answered (LOGIN / AUTHENTICATE)
  std::vector<std::pair<std::string, std::string>> client_id_;  // the client's ID fields
};

}  // namespace postern
