#pragma once

// Incremental reader for the server side of an IMAP or POP3 conversation, as
// a load-generating client sees it. It waits for one reply at a time (the
// greeting, a tagged completion, a continuation request, a POP3 status line or
// a POP3 multi-line reply), counts message bytes without copying them, and
// survives any split of its input.

#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "bench/mailbench/digests.h"

namespace postern::mailbench {

// What the client waits for next.
enum class Expect {
  kNothing,           // discard everything (after LOGOUT/QUIT, or while a POP3 session is held)
  kImapGreeting,      // "* OK", "* PREAUTH" (success) or "* BYE" (failure): RFC 3501 section 7.1
  kImapTagged,        // "<tag> OK|NO|BAD": untagged responses before it are skipped
  kImapContinuation,  // "+ ..." (RFC 3501 section 7.5); a tagged reply instead is a failure
  kPop3Line,          // "+OK" / "-ERR" single line (RFC 1939 section 3)
  kPop3Multi,         // "+OK" line then a body ending in CRLF.CRLF, or "-ERR"
};

struct Reply {
  bool ok = false;
  std::string text;  // first line of the reply without CRLF, at most 200 bytes
};

// The SHA-256 of one message as delivered (set_hashing): an IMAP "BODY[]"
// literal's content, or a POP3 multi-line body without its dot-stuffing and
// without the final "." line.
struct MessageDigest {
  uint64_t number = 0;  // IMAP: the "* N FETCH" sequence number; POP3: 0
  Sha256 sha256{};
};

class ResponseReader {
 public:
  enum class Result { kNeedMore, kDone, kError };

  // Longest line kept whole (a line longer than this outside a literal is an error).
  static constexpr size_t kMaxLine = 1 << 20;

  // Starts waiting for a reply. `tag` is the IMAP tag for kImapTagged and
  // kImapContinuation. State about a response in progress is kept: a literal
  // or multi-line body that has started is finished first.
  void Start(Expect expect, absl::string_view tag = {});

  // Consumes a prefix of `in` and sets *consumed. kDone: reply() holds the
  // completed reply and the bytes after it are not consumed. kError: error()
  // says why; the stream is unusable.
  Result Feed(absl::string_view in, size_t* consumed);

  const Reply& reply() const { return reply_; }
  const std::string& error() const { return error_; }

  // Message bytes seen so far: IMAP literal contents and POP3 multi-line
  // bodies (dot-stuffed, terminator included).
  uint64_t payload_bytes() const { return payload_bytes_; }
  // Untagged FETCH responses (IMAP) and multi-line bodies (POP3) seen so far.
  uint64_t messages() const { return messages_; }
  // The last "* N EXISTS" seen (RFC 3501 section 7.3.1).
  uint32_t exists() const { return exists_; }

  // Hash every message delivered from now on: IMAP literals announced as
  // "BODY[] {n}" inside an untagged FETCH response, POP3 multi-line bodies.
  void set_hashing(bool on) { hashing_ = on; }
  // The digests completed since the last call, in arrival order.
  std::vector<MessageDigest> TakeDigests() { return std::move(digests_); }

 private:
  enum class Kind { kUntagged, kTagged, kContinuation, kOther };
  enum class BodyState { kLineStart, kMid, kDot, kDotCr };

  // `line` includes its LF. Returns kDone when it completes the awaited reply.
  Result OnImapLine(absl::string_view line);
  Result OnPop3Line(absl::string_view line);
  void ClassifyImap(absl::string_view line);
  // Scans a POP3 multi-line body; returns true at the terminator, *used = bytes taken.
  bool ScanBody(absl::string_view in, size_t* used);
  Result Fail(std::string why);
  void BeginDigest(uint64_t number);
  void HashBytes(absl::string_view bytes);
  void EndDigest();

  Expect expect_ = Expect::kNothing;
  std::string tag_;
  std::string line_;  // a line that straddles two Feed() calls
  Reply reply_;
  std::string error_;

  // IMAP: a response continues after a literal; its classification is kept.
  uint64_t literal_left_ = 0;
  bool in_response_ = false;
  Kind kind_ = Kind::kOther;
  bool status_ok_ = false;  // tagged OK, greeting OK/PREAUTH
  std::string first_line_;

  // POP3: inside a multi-line body.
  bool in_body_ = false;
  BodyState body_state_ = BodyState::kLineStart;

  uint64_t payload_bytes_ = 0;
  uint64_t messages_ = 0;
  uint32_t exists_ = 0;

  // Hashing (set_hashing): the message being hashed, if any.
  bool hashing_ = false;
  bool hash_open_ = false;
  uint64_t fetch_number_ = 0;  // "* N FETCH" of the response in progress (0: not a FETCH)
  SHA256_CTX sha_{};
  MessageDigest current_;
  std::vector<MessageDigest> digests_;
};

}  // namespace postern::mailbench
