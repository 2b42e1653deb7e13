#pragma once

// What the IMAP and POP3 fronts share around a login (protocol/front.h):
// the response lines of a SASL exchange (IMAP AUTHENTICATE, RFC 9051
// section 6.2.2; POP3 AUTH, RFC 5034 section 4), RFC 7628's error
// challenge after a refused OAuth token, and the start of a login. Each
// protocol says only how it answers: Refuse() a failed login, SaslFailed()
// an exchange that went wrong.

#include <memory>
#include <utility>

#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "protocol/front.h"
#include "protocol/line_splitter.h"
#include "protocol/sasl_server.h"

namespace postern {

class SaslFront : public Front {
 public:
  // Front. An OAuth token refused for a reason that is the client's gets
  // the error challenge first (RFC 7628 section 3.2.2), and Refuse() once
  // the client has answered it; any other failure gets Refuse() now.
  void LoginFailed(const LoginReply& reply) final;

 protected:
  using Front::Front;

  enum class SaslFailure {
    kTooLong,   // a response line over max_sasl_line
    kCanceled,  // the client sent "*"
    kBadData,   // the mechanism refused the data (`why` says how)
  };
  // The protocol's refusal of a failed login (tagged NO / -ERR), counting
  // it against max_auth_attempts.
  virtual void Refuse(const LoginReply& reply) = 0;
  // The protocol's answer to an exchange that ended without credentials.
  virtual void SaslFailed(SaslFailure failure, absl::string_view why) = 0;

  // Asks the host for a login with `c`; no command is handled until the
  // answer.
  void BeginLogin(Credentials c);
  // Begins an exchange with `mech` (`initial`: SASL-IR, RFC 4959 section 3,
  // or RFC 5034's initial response; "=" stands for an empty one).
  void StartSasl(Credentials::Mechanism mech, bool has_initial, absl::string_view initial);
  // While an exchange is going on (or its rest is being dropped), the
  // client's next line belongs to it: true, and *step says what came of
  // it. False when the next line is a command.
  bool ProcessExchange(Buffer& in, Step* step);

 private:
  // RFC 7628 section 3.2.2: the error challenge after a refused OAuth token
  // ("+ " base64 of a JSON status), answered by one client line.
  static constexpr absl::string_view kOauthErrorChallenge =
      "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJlciJ9\r\n";

  Step ProcessSaslLine(Buffer& in);
  Step ProcessOauthAnswer(Buffer& in);
  void OnSaslResult(SaslServer::Result r);
  // The rest of an overlong line of an exchange is not a command: it is
  // dropped up to its LF, however the bytes are cut. True while more of it
  // may come.
  bool SkipTail(Buffer& in);

  // Set exactly while an exchange waits for response lines.
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
  bool skip_tail_ = false;  // see SkipTail
};

}  // namespace postern
