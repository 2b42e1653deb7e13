#include "protocol/sasl_front.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace postern {

void SaslFront::LoginFailed(const LoginReply& reply) {
  waiting_login_ = false;
  if (oauth_login_ && reply.kind != LoginReply::Kind::kUnavailable) {
    // RFC 7628 section 3.2.2 (and RFC 5034 section 4 for POP3 AUTH): a
    // refused token gets an error challenge; the refusal follows the
    // client's (dummy) answer.
    host_.Send(kOauthErrorChallenge);
    oauth_refusal_ = std::make_unique<OauthRefusal>(reply);
    return;
  }
  Refuse(reply);
}

void SaslFront::BeginLogin(Credentials c) {
  waiting_login_ = true;
  oauth_login_ = c.oauth();
  host_.Login(std::move(c));
}

void SaslFront::StartSasl(Credentials::Mechanism mech, bool has_initial,
                          absl::string_view initial) {
  sasl_ = std::make_unique<Sasl>(mech, options_.max_sasl_line);
  OnSaslResult(sasl_->server.Start(has_initial, initial));
}

bool SaslFront::ProcessExchange(Buffer& in, Step* step) {
  if (SkipTail(in)) {
    *step = Step::kNeedMore;
    return true;
  }
  if (oauth_refusal_ != nullptr) {
    *step = ProcessOauthAnswer(in);
    return true;
  }
  if (sasl_ != nullptr) {
    *step = ProcessSaslLine(in);
    return true;
  }
  return false;
}

bool SaslFront::SkipTail(Buffer& in) {
  if (!skip_tail_) return false;
  const size_t lf = in.Find('\n');
  if (lf == Buffer::npos) {
    in.Clear();
    return true;
  }
  in.Drain(lf + 1);
  skip_tail_ = false;
  return false;
}

Front::Step SaslFront::ProcessOauthAnswer(Buffer& in) {
  // Any line (the %x01 dummy response, or "*") ends the exchange.
  absl::string_view line;
  size_t consumed = 0;
  LineSplitter::Status st = oauth_refusal_->lines.Next(in, &line, &consumed);
  in.Drain(consumed);
  if (st == LineSplitter::Status::kNeedMore) return Step::kNeedMore;
  // An overlong line ends the exchange too; what is still to come of it is
  // dropped (SkipTail), not read as commands: it arrived as one line,
  // however the bytes were cut (found by the dialogue fuzzer).
  if (st == LineSplitter::Status::kTooLong) skip_tail_ = oauth_refusal_->lines.discarding();
  std::unique_ptr<OauthRefusal> r = std::move(oauth_refusal_);
  Refuse(r->reply);
  return ended_ ? Step::kStopped : Step::kHandled;
}

Front::Step SaslFront::ProcessSaslLine(Buffer& in) {
  absl::string_view line;
  size_t consumed = 0;
  LineSplitter::Status st = sasl_->lines.Next(in, &line, &consumed);
  if (st == LineSplitter::Status::kNeedMore) {
    in.Drain(consumed);
    return Step::kNeedMore;
  }
  if (st == LineSplitter::Status::kTooLong) {
    in.Drain(consumed);
    // The rest of the overlong line is not a command: the splitter would
    // skip it, but it goes with the exchange; SkipTail drops it instead.
    skip_tail_ = sasl_->lines.discarding();
    sasl_.reset();
    SaslFailed(SaslFailure::kTooLong, "");
    return ended_ ? Step::kStopped : Step::kHandled;
  }
  // The view may point into the splitter's scratch: step before draining.
  SaslServer::Result r = sasl_->server.Step(line);
  in.Drain(consumed);
  OnSaslResult(r);
  return ended_ || waiting_login_ ? Step::kStopped : Step::kHandled;
}

void SaslFront::OnSaslResult(SaslServer::Result r) {
  switch (r) {
    case SaslServer::Result::kChallenge:
      // RFC 9051 section 6.2.2, RFC 5034 section 4: "+" SP the base64
      // challenge.
      host_.Send(absl::StrCat("+ ", sasl_->server.challenge(), "\r\n"));
      return;
    case SaslServer::Result::kDone: {
      Credentials c = std::move(sasl_->server.credentials());
      sasl_.reset();
      BeginLogin(std::move(c));
      return;
    }
    case SaslServer::Result::kCanceled:
      sasl_.reset();
      SaslFailed(SaslFailure::kCanceled, "");
      return;
    case SaslServer::Result::kBad: {
      std::string why = sasl_->server.error();
      sasl_.reset();
      SaslFailed(SaslFailure::kBadData, why);
      return;
    }
  }
}

}  // namespace postern
