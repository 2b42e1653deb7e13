#pragma once

// Masks the secrets in a pre-login IMAP or POP3 dialogue, for the raw
// protocol trace of named users (log.trace_users). Pure protocol code: bytes
// in, text out, no I/O.
//
// What is masked (replaced by "***", the rest of the line kept):
//   IMAP  LOGIN's arguments (RFC 9051 section 6.2.3), AUTHENTICATE's initial
//         response and every client line of the exchange that follows until
//         the server's next line that is not a continuation "+" (section
//         6.2.2), including literals ({n} / {n+}, RFC 7888) inside them.
//   POP3  PASS's argument (RFC 1939 section 7), APOP's digest, AUTH's initial
//         response and the client lines of its exchange (RFC 5034 section 4).
// Everything else passes as it was sent. Lines longer than `max_line` are
// cut (the cut part counted, not shown); literal payloads of commands that
// are not masked are shown.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace postern {

class TraceMasker {
 public:
  TraceMasker(bool imap, size_t max_line = 8192) : imap_(imap), max_line_(max_line) {}

  // Bytes the client sent: appends their masked form to `out`.
  void Client(absl::string_view bytes, std::string* out);
  // Bytes Postern sent to the client (the server side of the dialogue):
  // appended to `out` as they are; they end a SASL exchange.
  void Server(absl::string_view bytes, std::string* out);

 private:
  void ClientLine(absl::string_view line, bool complete, std::string* out);
  // Whether the command line (first line of a command) carries secrets.
  bool Secret(absl::string_view line) const;

  const bool imap_;
  const size_t max_line_;
  std::string line_;         // a client line being gathered
  bool line_cut_ = false;    // line_ reached max_line_: the rest is dropped
  uint64_t literal_ = 0;     // literal bytes still to come
  bool masking_ = false;     // the command in progress (with its literals) is masked
  bool sasl_ = false;        // inside an AUTHENTICATE / AUTH exchange
  std::string server_line_;  // the start of the server's current line
  bool server_mid_ = false;  // inside a server line (its first bytes seen)
};

}  // namespace postern
