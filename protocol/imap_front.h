#pragma once

// The IMAP front before login (RFC 9051 / RFC 3501 not-authenticated state):
// the greeting, CAPABILITY, NOOP, LOGOUT, STARTTLS, ID, LOGIN, AUTHENTICATE
// PLAIN / LOGIN with SASL-IR. Everything else is refused until the backend
// takes over. See protocol/front.h for how a driver runs it.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "protocol/imap_command_parser.h"
#include "protocol/sasl_front.h"

namespace postern {

class ImapFront final : public SaslFront {
 public:
  ImapFront(FrontHost& host, FrontOptions options);

  // Front
  void Start() override;
  Step ProcessOne(Buffer& in) override;
  void LoginSucceeded(const LoginReply& reply) override;
  void TlsStarted() override;

  // The client's ID fields (RFC 2971) that may be passed on to a backend:
  // only the field names of RFC 2971 section 3.3, within its size limits,
  // with values that fit a quoted string. Never an "x-" field: those the
  // backend sees come from Postern alone.
  const std::vector<std::pair<std::string, std::string>>& client_id() const { return client_id_; }

  // The capabilities offered before login.
  std::string Capabilities() const;

 private:
  // SaslFront
  void Refuse(const LoginReply& reply) override;
  void SaslFailed(SaslFailure failure, absl::string_view why) override;

  void HandleCommand(const ImapCommand& cmd);
  void HandleId(const ImapCommand& cmd);
  void Tagged(absl::string_view status, absl::string_view text);
  // BAD for a client error, then the error budget.
  void Bad(absl::string_view text);

  std::unique_ptr<ImapCommandParser> parser_;
  std::string tag_;  // of the command being answered
  std::vector<std::pair<std::string, std::string>> client_id_;
};

}  // namespace postern
