#pragma once

// Shared by imap_front_fuzz.cc and pop3_front_fuzz.cc: a whole pre-login
// dialogue (greeting, capabilities, STARTTLS/STLS, LOGIN/USER+PASS, SASL
// exchanges, ID, errors, LOGOUT/QUIT) driven from the fuzzer's bytes through
// the Front interface (protocol/front.h), without sockets: the seam the
// proxy's Session drives.
//
// Input: a header of choices, then the client's byte stream.
//   flags      bit 0 implicit TLS, bit 1 STARTTLS offered, bit 2 plaintext
//              auth allowed, bit 3 the client is a trusted proxy, bit 4 the
//              TLS start fails, bit 5 small line/literal/SASL limits
//   limits     max_line, max_literal, max_sasl_line (U16 each, used when
//              bit 5 is set: 16 + value % 4096)
//   budgets    error_budget (0..12), max_auth_attempts (1..4)
//   sasl       which of PLAIN, LOGIN, XOAUTH2, OAUTHBEARER are offered (bits)
//   split      U32 seed and the largest piece (1..64) for the cut feeding
//   answers    8 bytes: the directory's/backend's answer to the nth login
//              (kind, response code, text, each from a small set)
//   the rest   what the client sends
//
// The stream is fed whole, in random pieces and (when short) one byte at a
// time; the three runs must send the same bytes and ask for the same logins,
// unless a TLS start succeeded (the host then drops what was pipelined, which
// depends on where the stream was cut).
//
// Checked on every run:
//   - every reply is whole CRLF lines of printable ASCII (no CR, LF or NUL
//     inside a line: nothing the client sent can forge a line), POP3 lines at
//     most 512 octets (RFC 2449 section 4);
//   - nothing is sent after the session ended, nor while a login is pending;
//   - Login() only on an encrypted connection or where plaintext auth is
//     allowed, never while another is pending, at most max_auth_attempts
//     refused ones (an "unavailable" answer does not count);
//   - a failed TLS start ends the session (nothing goes on in plaintext);
//   - a trusted-proxy field only from a trusted client;
//   - ProcessOne() makes progress: no more kHandled steps than input bytes
//     plus logins plus a few.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "protocol/front.h"
#include "tests/fuzz/fuzz_util.h"

namespace postern::fuzz {

struct DialogueSetup {
  FrontOptions options;
  bool tls_fails = false;
  uint32_t split_seed = 0;
  size_t max_chunk = 1;
  uint8_t answers[8] = {};
  absl::string_view stream;
};

inline DialogueSetup ReadDialogueSetup(FuzzInput& in) {
  DialogueSetup s;
  const uint8_t flags = in.Byte();
  s.options.tls = (flags & 1) != 0;
  s.options.starttls = (flags & 2) != 0;
  s.options.allow_plaintext_auth = (flags & 4) != 0;
  s.options.trusted = (flags & 8) != 0;
  s.tls_fails = (flags & 16) != 0;
  const bool small = (flags & 32) != 0;
  const size_t line = 16 + in.U16() % 4096;
  const size_t literal = 16 + in.U16() % 4096;
  const size_t sasl = 16 + in.U16() % 4096;
  if (small) {
    s.options.max_line = line;
    s.options.max_literal = literal;
    s.options.max_sasl_line = sasl;
  }
  s.options.error_budget = static_cast<uint32_t>(in.Range(0, 12));
  s.options.max_auth_attempts = static_cast<uint32_t>(in.Range(1, 4));
  const uint8_t mechs = in.Byte();
  s.options.sasl.clear();
  if (mechs & 1) s.options.sasl.push_back(Credentials::Mechanism::kPlain);
  if (mechs & 2) s.options.sasl.push_back(Credentials::Mechanism::kSaslLogin);
  if (mechs & 4) s.options.sasl.push_back(Credentials::Mechanism::kXoauth2);
  if (mechs & 8) s.options.sasl.push_back(Credentials::Mechanism::kOauthbearer);
  s.split_seed = in.U32();
  s.max_chunk = in.Range(1, 64);
  for (uint8_t& a : s.answers) a = in.Byte();
  s.stream = in.Rest();
  return s;
}

// The answer to the nth login, as the session would build it from a
// directory's or backend's answer (codes and texts sanitized).
inline LoginReply AnswerFor(uint8_t choice) {
  static const char* const kCodes[] = {"", "EXPIRED", "SYS/TEMP", "ALERT"};
  static constexpr char kEvil[] = "evil\r\n* OK forged\0\x01 line";  // a NUL inside
  static const absl::string_view kTexts[] = {
      "", "Mailbox moved", absl::string_view(kEvil, sizeof(kEvil) - 1),
      "\xff\xfe long text from a backend that goes on and on and on and on"};
  LoginReply r;
  r.kind = static_cast<LoginReply::Kind>(choice % 4);
  r.code = SanitizeResponseCode(kCodes[(choice >> 2) % 4]);
  r.text = SanitizeReplyText(kTexts[(choice >> 4) % 4]);
  if (r.kind == LoginReply::Kind::kOk && (choice & 0x40) != 0) {
    r.capabilities = SanitizeCapabilities("IMAP4rev1 IDLE\r\nBAD LITERAL+ ID");
  }
  return r;
}

// What one run did, compared between runs.
struct Transcript {
  std::string out;
  std::vector<std::string> logins;  // mechanism, authcid, authzid, secret
  std::string ended;
  int tls_starts = 0;
  bool tls_ok_once = false;
  bool logged_in = false;
  bool operator==(const Transcript& o) const {
    return out == o.out && logins == o.logins && ended == o.ended && tls_starts == o.tls_starts &&
           logged_in == o.logged_in;
  }
};

class DialogueHost : public FrontHost {
 public:
  DialogueHost(const DialogueSetup& setup, Buffer& in) : setup_(setup), in_(in) {}

  void Send(absl::string_view bytes) override {
    POSTERN_FUZZ_CHECK(!ended_);
    POSTERN_FUZZ_CHECK(!pending_login_);
    t.out.append(bytes.data(), bytes.size());
  }
  bool StartTls() override {
    POSTERN_FUZZ_CHECK(!ended_);
    POSTERN_FUZZ_CHECK(!tls_active_);
    ++t.tls_starts;
    if (setup_.tls_fails) return false;
    in_.Clear();  // as the proxy does: bytes pipelined before the handshake are dropped
    t.tls_ok_once = true;
    tls_pending_ = true;
    return true;
  }
  void Login(Credentials c) override {
    POSTERN_FUZZ_CHECK(!ended_);
    POSTERN_FUZZ_CHECK(!pending_login_);
    POSTERN_FUZZ_CHECK(tls_active_ || setup_.options.allow_plaintext_auth);
    // (CR, LF or NUL in a name or secret may reach here from a literal or
    // SASL: Session::Login refuses those before anything else sees them.)
    pending_login_ = true;
    t.logins.push_back(std::to_string(static_cast<int>(c.mechanism)) + "|" + c.authcid + "|" +
                       c.authzid + "|" + c.secret);
  }
  void End(absl::string_view reason) override {
    POSTERN_FUZZ_CHECK(!ended_);
    ended_ = true;
    t.ended = std::string(reason);
  }

  Transcript t;
  bool ended_ = false;
  bool pending_login_ = false;
  bool tls_active_ = false;
  bool tls_pending_ = false;

 private:
  const DialogueSetup& setup_;
  Buffer& in_;
};

// Checks the bytes sent: whole CRLF lines, printable ASCII inside.
inline void CheckReplies(absl::string_view out, bool imap) {
  if (out.empty()) return;
  POSTERN_FUZZ_CHECK(absl::EndsWith(out, "\r\n"));
  out.remove_suffix(2);
  for (absl::string_view line : absl::StrSplit(out, "\r\n")) {
    for (const char ch : line) {
      const auto b = static_cast<unsigned char>(ch);
      POSTERN_FUZZ_CHECK(b >= 0x20 && b < 0x7f);
    }
    if (imap) {
      // "* ...", "+ ..." or "<tag> OK|NO|BAD ...": the tag is the client's,
      // an atom without spaces.
      if (absl::StartsWith(line, "* ") || absl::StartsWith(line, "+")) continue;
      const size_t sp = line.find(' ');
      POSTERN_FUZZ_CHECK(sp != absl::string_view::npos && sp > 0);
      const absl::string_view status = line.substr(sp + 1);
      POSTERN_FUZZ_CHECK(absl::StartsWith(status, "OK") || absl::StartsWith(status, "NO") ||
                         absl::StartsWith(status, "BAD"));
    } else {
      POSTERN_FUZZ_CHECK(line.size() + 2 <= 512);
    }
  }
}

// Runs one dialogue with the stream cut into `pieces`.
template <typename FrontT>
Transcript RunDialogue(const DialogueSetup& setup, const std::vector<absl::string_view>& pieces,
                       bool imap) {
  BufferPool pool(imap ? 64 : 48);  // tiny slabs: every read crosses slab edges
  Buffer in(pool);
  DialogueHost host(setup, in);
  host.tls_active_ = setup.options.tls;
  FrontT front(host, setup.options);
  front.Start();
  POSTERN_FUZZ_CHECK(!host.t.out.empty());  // a greeting
  size_t handled = 0;
  size_t fed = 0;
  size_t answered = 0;
  size_t refused = 0;
  for (const absl::string_view piece : pieces) {
    if (host.ended_ || front.logged_in()) break;
    in.Append(piece);
    fed += piece.size();
    for (;;) {
      const Front::Step step = front.ProcessOne(in);
      if (host.tls_pending_) {
        // The host pushed the TLS engine: capabilities change.
        host.tls_pending_ = false;
        host.tls_active_ = true;
        front.TlsStarted();
      }
      if (step == Front::Step::kHandled) {
        POSTERN_FUZZ_CHECK(!host.ended_);
        POSTERN_FUZZ_CHECK(++handled <= fed + answered + 8);
        continue;
      }
      if (step == Front::Step::kStopped && host.pending_login_) {
        POSTERN_FUZZ_CHECK(front.waiting_for_login());
        // Refusals count toward max_auth_attempts; "unavailable" answers
        // (a backend or directory down) do not.
        POSTERN_FUZZ_CHECK(refused < setup.options.max_auth_attempts);
        const LoginReply reply = AnswerFor(setup.answers[answered % 8]);
        ++answered;
        if (reply.kind != LoginReply::Kind::kUnavailable) ++refused;
        host.pending_login_ = false;
        if (reply.kind == LoginReply::Kind::kOk) {
          front.LoginSucceeded(reply);
          POSTERN_FUZZ_CHECK(front.logged_in());
          break;
        }
        front.LoginFailed(reply);
        if (host.ended_) break;
        continue;
      }
      if (step == Front::Step::kNeedMore) POSTERN_FUZZ_CHECK(!host.ended_);
      break;
    }
    if (setup.tls_fails && host.t.tls_starts > 0) {
      // Nothing may go on in plaintext after "OK Begin TLS".
      POSTERN_FUZZ_CHECK(host.ended_);
    }
  }
  if (!setup.options.trusted) POSTERN_FUZZ_CHECK(front.trusted_id().empty());
  host.t.logged_in = front.logged_in();
  CheckReplies(host.t.out, imap);
  return host.t;
}

// The same stream fed whole and in pieces gives the same transcript, unless
// TLS started in either (then where the stream was cut decides what the
// handshake dropped). Before a failure both transcripts are printed, for the
// report; `how` names the pieces.
inline void CheckSameTranscript(const Transcript& whole, const Transcript& other, const char* how) {
  if (whole.tls_ok_once || other.tls_ok_once || whole == other) return;
  auto print = [](const char* name, const Transcript& t) {
    std::fprintf(stderr, "-- %s: ended \"%s\", tls_starts %d, logged_in %d, logins", name,
                 absl::CEscape(t.ended).c_str(), t.tls_starts, t.logged_in ? 1 : 0);
    for (const std::string& l : t.logins) std::fprintf(stderr, " [%s]", absl::CEscape(l).c_str());
    std::fprintf(stderr, "\n%s\n", absl::CEscape(t.out).c_str());
  };
  print("whole", whole);
  print(how, other);
  POSTERN_FUZZ_CHECK(whole == other);
}

template <typename FrontT>
void FuzzDialogue(const uint8_t* data, size_t size, bool imap) {
  FuzzInput input(data, size);
  const DialogueSetup setup = ReadDialogueSetup(input);
  const Transcript whole = RunDialogue<FrontT>(setup, {setup.stream}, imap);
  SplitRng rng(setup.split_seed);
  const Transcript cut =
      RunDialogue<FrontT>(setup, RandomCuts(setup.stream, rng, setup.max_chunk), imap);
  CheckSameTranscript(whole, cut, "cut");
  if (setup.stream.size() <= 2048) {
    CheckSameTranscript(whole, RunDialogue<FrontT>(setup, ByteCuts(setup.stream), imap), "bytes");
  }
}

}  // namespace postern::fuzz
