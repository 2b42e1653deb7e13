#pragma once

// Where the responses are in a relayed stream, without parsing them: the
// relay feeds what it passes on, and the tracker tells whether the stream
// stands right after a complete response. A session told to stop (SIGTERM,
// a drained backend) ends there, so the client never gets a notice in the
// middle of a literal or of a POP3 multi-line answer.
//
// Both trackers look at each byte at most once and hold a few bytes of
// state; literal payloads are skipped by count (and may be spliced by the
// relay without being seen at all: SkipLiteral()).

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace postern {

// Server-to-client IMAP: response lines, each possibly continued after a
// literal ("{n}" right before the CRLF, RFC 9051 section 4.3; literal8 "~{n}"
// ends the same way). A continuation request ("+ ...") is a response line
// like any other.
class ImapResponseTracker {
 public:
  // Takes the next bytes of the stream.
  void Feed(absl::string_view bytes) { FeedUntilBoundary(bytes, false); }
  // Takes bytes up to and including the first response boundary in them
  // (when `stop` is set) and returns how many it took; with `stop` unset,
  // or when no boundary is reached, all of them.
  size_t FeedUntilBoundary(absl::string_view bytes, bool stop = true);

  // Everything fed so far ends exactly after a complete response.
  bool at_boundary() const { return state_ == State::kLineStart; }
  // Literal payload bytes still to come before the response line goes on.
  uint64_t literal_remaining() const { return state_ == State::kLiteral ? literal_left_ : 0; }
  // `n` <= literal_remaining() payload bytes passed without being fed.
  void SkipLiteral(uint64_t n);
  // `n` bytes passed without being fed (a splice), of which the first were
  // seen beforehand: `peeked` (MSG_PEEK), fed to `ahead`, a copy of this
  // tracker. Afterwards this tracker stands exactly where the n bytes end:
  // past the peeked bytes and that much of the literal they open, or inside
  // the peeked bytes when fewer moved. With nothing peeked, the n bytes are
  // literal payload (SkipLiteral).
  void Spliced(uint64_t n, absl::string_view peeked, const ImapResponseTracker& ahead);

 private:
  enum class State : uint8_t { kLineStart, kLine, kLiteral };
  // At the LF ending a line: a literal announcement, or the end of the
  // response.
  void EndLine();

  uint64_t literal_left_ = 0;
  // The last bytes of the current line: enough for "{" 20 digits "}" CR.
  char tail_[24];
  State state_ = State::kLineStart;
  uint8_t tail_len_ = 0;
};

// A POP3 relay after login: the client's command lines tell which answers
// are multi-line (RFC 1939: RETR, TOP, LIST and UIDL without an argument;
// RFC 2449: CAPA), the server's lines where each answer ends (a multi-line
// one with a line holding a single ".", RFC 1939 section 3).
class Pop3ResponseTracker {
 public:
  // Commands the client sent, in order.
  void ClientBytes(absl::string_view bytes);
  // The server's answers, in order; with `stop`, up to and including the
  // end of the first answer that completes (see ImapResponseTracker).
  size_t ServerBytes(absl::string_view bytes, bool stop = false);

  // No answer is being received (some may still be owed).
  bool at_boundary() const { return server_ == Server::kIdle && !lost_; }
  // More commands were pipelined than the tracker keeps: it can no longer
  // tell where answers end (a relay then has no safe point to cut at).
  bool lost() const { return lost_; }

  // Commands kept at most (each one bit).
  static constexpr uint32_t kMaxPending = 4096;

 private:
  enum class Server : uint8_t {
    kIdle,       // between answers
    kStatus,     // inside a status line
    kBody,       // inside a multi-line answer, at the start of a line
    kBodyLine,   // inside a multi-line answer, inside a line
    kBodyDot,    // a line started with "."
    kBodyDotCr,  // ".\r"
  };
  // At the end of a client command line.
  void EndCommand();
  void Push(bool multi);
  bool Pop();  // the next owed answer is multi-line (false when none is owed)

  // Client side: the command keyword and whether it had an argument.
  char word_[4];
  uint8_t word_len_ = 0;
  bool word_done_ = false;
  bool has_arg_ = false;
  bool word_too_long_ = false;
  // Owed answers: a ring of bits (1 = multi-line).
  uint64_t bits_[kMaxPending / 64] = {};
  uint32_t head_ = 0;
  uint32_t count_ = 0;
  bool lost_ = false;
  // Server side.
  Server server_ = Server::kIdle;
  bool multi_ = false;      // the answer being received is multi-line if +OK
  uint8_t status_len_ = 0;  // bytes of the status line seen (for "+OK")
  bool ok_ = false;         // the status line starts with "+OK"
};

}  // namespace postern
