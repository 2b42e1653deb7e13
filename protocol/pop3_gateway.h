#pragma once

// Pop3Gateway: serves a POP3 client (RFC 1939, RFC 2449) from an IMAP
// backend (RFC 3501 / RFC 9051) the proxy has already logged in to. A pure
// state machine: POP3 command bytes and IMAP response bytes in, POP3 answer
// bytes and IMAP command bytes out, through Pop3GatewayHost. proxy/ owns the
// sockets and drives it.
//
// The session (DIGEST c.1-c.9):
//  - Start(): SELECT INBOX, then FETCH 1:* (UID RFC822.SIZE) (skipped when
//    the mailbox is empty), parsed as it streams into a compact table (16
//    bytes per message). The POP3 numbering is fixed there (RFC 1939
//    section 4); afterwards only UID commands are sent, so messages that
//    other IMAP clients expunge or deliver never shift it.
//  - STAT, LIST, UIDL: from the table, no backend traffic. Long listings are
//    produced in chunks while the client drains them.
//  - RETR: UID FETCH uid (BODY.PEEK[]), the literal dot-stuffed and sent on
//    as it arrives. TOP n k: BODY.PEEK[HEADER], then BODY.PEEK[TEXT]<o.l> in
//    growing chunks until k lines are complete or the text ends. A message
//    expunged elsewhere gets "-ERR Message n expunged." (UID FETCH of a
//    missing UID answers OK without data, RFC 3501 section 6.4.8).
//  - DELE marks; RSET unmarks. A clean QUIT stores \Deleted on exactly the
//    marked UIDs and expunges exactly those: UID EXPUNGE with UIDPLUS
//    (RFC 4315 section 2.1); without it, NOOP (Dovecot's SEARCH misses
//    flags other sessions set until the view syncs) and UID SEARCH DELETED
//    first, and a plain EXPUNGE only when no other message carries \Deleted,
//    else "-ERR" and no \Deleted is stored. A dropped connection deletes nothing (RFC 1939
//    section 6).
//  - \Seen as Dovecot's POP3 server sets it by default: RETR (not TOP) marks
//    the message, the flag is stored at QUIT or when the session ends, RSET
//    forgets it (Seen::kDeferred).
//  - UIDL values from Dovecot's pop3_uidl_format (UidlFormat below).
//
// Answers are byte for byte what Dovecot 2.3.19's POP3 server sends for the
// same mailbox (tests/protocol/dovecot_fixtures.inc), with one deliberate
// exception: a message whose first line starts with "." is dot-stuffed there
// too (protocol/dot_stuffer.h says why).
//
// Nothing a client sends reaches the backend: commands carry only UIDs and
// fixed words. Backend texts never reach the client.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "protocol/buffer.h"
#include "protocol/dot_stuffer.h"
#include "protocol/imap_response_stream.h"
#include "protocol/pop3_command_parser.h"

namespace postern {

// Dovecot 2.3's pop3_uidl_format, as its var_expand() reads it:
//   %%                           a "%"
//   %[-][0]W[.[0][-]W]{mods}VAR  VAR = u (uid) or v (uidvalidity), or the
//                                long forms %{uid}, %{uidvalidity}
// Modifiers, applied in order: X (hexadecimal, lower case: Dovecot prints
// "%llx"), U (upper case), L (lower case), R (reverse), T (trim). A leading
// "0" pads to width W with zeros, never truncating; W without "0" truncates;
// ".": the first number is an offset. So "%08Xu%08Xv" gives 16 lower-case
// hex digits (the fixtures recorded from Dovecot 2.3.19 show it) and
// "%08XUu%08XUv" upper-case ones. Dovecot's other variables (%m md5, %f
// filename, %g guid) cannot be computed through IMAP and are refused; so is
// "x", which is no modifier in Dovecot 2.3.
class UidlFormat {
 public:
  // Checks a format for a config loader: known variables and modifiers, the
  // uid present, results 1-70 characters of 0x21-0x7E (RFC 1939 section 7).
  static absl::StatusOr<UidlFormat> Parse(absl::string_view format);

  void Append(uint32_t uid, uint32_t uidvalidity, std::string* out) const;
  std::string Format(uint32_t uid, uint32_t uidvalidity) const;

 private:
  struct Piece {
    std::string text;  // literal text (when var == 0)
    char var = 0;      // 'u' or 'v'
    std::string mods;  // modifier letters in order
    int offset = 0;
    int width = 0;
    bool zero_pad = false;
  };
  std::vector<Piece> pieces_;
};

class Pop3GatewayHost {
 public:
  virtual ~Pop3GatewayHost() = default;
  // POP3 bytes for the client, in order.
  virtual void ToClient(absl::string_view bytes) = 0;
  // IMAP command bytes for the backend, in order.
  virtual void ToBackend(absl::string_view bytes) = 0;
  // Bytes the host still holds toward the client (not yet taken by the
  // kernel). Client commands are read, and long listings produced, only
  // while this is at most Pop3GatewayOptions::max_reply_backlog; the host
  // calls Resume() when it drains. Message bodies are passed on as the
  // backend sends them: the host stops reading the backend while this is
  // high (the relay's watermarks).
  virtual size_t ClientBacklog() const = 0;
  // The session is over (QUIT answered and LOGOUT done, the client gone and
  // LOGOUT done, the backend broken, or setup failed after the -ERR was
  // sent): flush what is queued and close both sides. Called once.
  virtual void Finish(absl::string_view reason) = 0;
};

struct Pop3GatewayOptions {
  std::string uidl_format = "%08Xu%08Xv";  // Dovecot 2.3's pop3_uidl_format
  enum class Seen {
    kDeferred,   // Dovecot: RETR marks \Seen, stored at QUIT or session end; RSET forgets
    kImmediate,  // RETR fetches BODY[]: the server sets \Seen at once
    kNever,      // BODY.PEEK[] only
  };
  Seen seen = Seen::kDeferred;
  // Stop reading client commands while ClientBacklog() is above this.
  size_t max_reply_backlog = 4096;
  // LIST/UIDL output produced per step; steps go on while the backlog allows.
  size_t listing_chunk = 64 * 1024;
  // Larger mailboxes are refused with -ERR [SYS/TEMP] (memory: 16 bytes per
  // message).
  size_t max_messages = 1000000;
  // The first BODY[TEXT] partial fetch of TOP; later ones double, up to
  // 1 MiB.
  size_t top_chunk = 16 * 1024;
  // For CAPA (RFC 5034 section 3: SASL stays listed after login).
  std::vector<std::string> sasl_mechanisms = {"PLAIN"};
  std::string implementation = "Postern";
  ImapResponseLimits imap_limits;
  Pop3ReaderLimits pop3_limits;
};

class Pop3Gateway : private ImapResponseHandler {
 public:
  Pop3Gateway(Pop3GatewayHost& host, Pop3GatewayOptions options);
  Pop3Gateway(const Pop3Gateway&) = delete;
  Pop3Gateway& operator=(const Pop3Gateway&) = delete;

  // After the proxy's IMAP login succeeded, with the backend's capabilities
  // (from the login's tagged OK or a CAPABILITY command). Sends SELECT INBOX
  // and FETCH 1:* (UID RFC822.SIZE); when the maildrop is open it sends the
  // POP3 "+OK Logged in." (the answer to PASS/AUTH) itself. On failure:
  // "-ERR [SYS/TEMP] ..." ([SYS/PERM] when there is no UIDVALIDITY), LOGOUT,
  // Finish().
  void Start(const std::vector<std::string>& backend_capabilities);

  // Backend bytes: all consumed. May call ToClient (body streaming),
  // ToBackend and Finish.
  void OnBackendData(absl::string_view bytes);
  // The backend connection closed or failed: -ERR [SYS/TEMP] if an answer is
  // owed, then Finish().
  void BackendGone();

  // Client bytes: POP3 commands are processed strictly in order (pipelining,
  // RFC 2449 section 6.6). The gateway drains what it consumed and stops
  // while a command waits for the backend, while ClientBacklog() is above
  // max_reply_backlog, and after QUIT. It keeps a pointer to `in` to go on
  // with pipelined commands when the backend answers: `in` must stay valid
  // until the next OnClientData/Resume or the end of the session.
  void OnClientData(Buffer& in);
  // The client's backlog drained: continue a long listing, then further
  // commands.
  void Resume(Buffer& in);
  // The client is gone (disconnect, timeout, shutdown): no UPDATE state,
  // nothing deleted (RFC 1939 section 6). With Seen::kDeferred the pending
  // \Seen flags are still stored (as Dovecot's POP3 server does when a
  // session ends), then LOGOUT; Finish() once the backend answered (the host
  // bounds this with a timer).
  void ClientGone(absl::string_view reason = "client: gone");
  // The server stops: the answer in progress (a RETR, TOP or listing) is
  // completed, no further command is read, `notice` (a whole "-ERR ...\r\n"
  // line) is sent, and the session ends as after ClientGone() (nothing
  // deleted). A QUIT already in progress completes instead.
  void Shutdown(absl::string_view notice);

  // For the session log.
  struct Counters {
    uint64_t retrieved = 0;   // RETR answered with the message
    uint64_t deleted = 0;     // messages expunged at QUIT
    uint64_t bytes_sent = 0;  // to the client
    uint32_t messages = 0;    // in the maildrop at login
  };
  const Counters& counters() const { return counters_; }
  bool finished() const { return phase_ == Phase::kDone; }

  // Bytes per message in the table, and the table's size (the memory bound).
  static constexpr size_t kBytesPerMessage = 16;
  size_t table_bytes() const { return msgs_.capacity() * sizeof(Message); }

 private:
  enum class Phase : uint8_t {
    kIdle,         // before Start
    kSetup,        // SELECT / FETCH sizes
    kTransaction,  // POP3 commands
    kUpdate,       // QUIT received: STORE / EXPUNGE
    kLogout,       // LOGOUT sent, waiting for its answer
    kDone,         // Finish() called
  };
  enum class Op : uint8_t {
    kNone,
    kSelect,
    kFetchSizes,
    kRetr,
    kTopHeader,
    kTopText,
    kSync,
    kSearchDeleted,
    kStoreSeen,
    kStoreDeleted,
    kExpunge,
    kLogout,
  };
  struct Message {
    uint64_t size;
    uint32_t uid;
    uint8_t flags;
  };
  static_assert(sizeof(Message) == kBytesPerMessage);
  enum : uint8_t { kDeleted = 1, kSeenPending = 2, kFilled = 4 };
  enum class Listing : uint8_t { kNone, kList, kUidl };

  // ImapResponseHandler
  void OnTagged(const ImapStatusResponse& r) override;
  void OnUntaggedStatus(const ImapStatusResponse& r) override;
  void OnNumeric(absl::string_view keyword, uint32_t n) override;
  void OnSearchNumber(uint32_t n) override;
  void OnFetchStart(uint32_t seq) override;
  void OnFetchUid(uint32_t uid) override;
  void OnFetchSize(uint64_t size) override;
  void OnFetchEnd() override;
  void OnBodyStart(const ImapBodySection& s) override;
  void OnBodyData(absl::string_view data) override;
  void OnBodyEnd() override;

  void Send(absl::string_view bytes);
  void Command(Op op, absl::string_view body);
  void ProcessClient();
  // One step of a listing; false while it waits for the client to drain.
  bool ContinueListing();
  void Execute(const Pop3Command& cmd);
  // Message number argument: the index into msgs_, or -1 after an -ERR.
  int64_t MessageArg(const Pop3Command& cmd, size_t index, bool more_follow);
  void Retr(size_t index);
  void Top(size_t index, uint64_t lines);
  void NextTopText();
  void EndBody();
  void SetupDone(const ImapStatusResponse& r);
  void SizesDone(const ImapStatusResponse& r);
  void CommandDone(const ImapStatusResponse& r);
  void Opened();
  void Quit();
  void GoneSequence();
  void NextUpdateStep();
  // An -ERR for a bad argument; false when the error budget is spent and the
  // session was ended.
  bool CommandError(absl::string_view text);
  void Logout();
  void Fail(absl::string_view client_text, absl::string_view reason);
  void BackendBroken(absl::string_view reason);
  void Done(absl::string_view reason);
  // Writes the next batch of UIDs whose flags have `want` and not `skip`, from
  // update_cursor_ as an IMAP sequence set; false when there are none left.
  bool NextUidBatch(uint8_t want, uint8_t skip, std::string* set);
  bool HasDeletedOf(uint32_t uid) const;

  Pop3GatewayHost& host_;
  Pop3GatewayOptions options_;
  UidlFormat uidl_;
  ImapResponseStream stream_;
  Pop3CommandReader reader_;
  DotStuffer stuffer_;
  Buffer* client_in_ = nullptr;
  Phase phase_ = Phase::kIdle;
  Op op_ = Op::kNone;
  std::string tag_;  // of the command in flight
  uint32_t next_tag_ = 1;
  bool uid_expunge_ = false;
  bool read_only_ = false;
  bool client_gone_ = false;
  bool answer_owed_ = false;  // the client waits for an answer we have not begun
  bool in_body_ = false;
  bool body_seen_ = false;  // the fetch in flight returned its section

  // The maildrop.
  std::vector<Message> msgs_;
  uint32_t uidvalidity_ = 0;
  bool have_uidvalidity_ = false;
  uint64_t exists_ = 0;
  uint32_t fetch_seq_ = 0;
  uint32_t fetch_uid_ = 0;
  uint64_t fetch_size_ = 0;
  bool fetch_has_size_ = false;
  uint32_t deleted_count_ = 0;
  uint64_t deleted_size_ = 0;
  uint64_t total_size_ = 0;

  // The command in progress.
  size_t cur_ = 0;  // message index
  uint64_t top_lines_left_ = 0;
  uint64_t top_offset_ = 0;
  uint64_t top_chunk_ = 0;
  uint64_t top_received_ = 0;
  bool top_done_ = false;
  Listing listing_ = Listing::kNone;
  size_t listing_next_ = 0;

  // QUIT.
  enum class Step : uint8_t { kSeen, kSync, kSearch, kStoreDeleted, kExpunge, kAnswer };
  Step step_ = Step::kSeen;
  size_t update_cursor_ = 0;
  bool others_deleted_ = false;
  bool update_failed_ = false;
  bool expunge_sent_ = false;
  bool gone_update_ = false;     // storing \Seen for a client that left
  std::string shutdown_notice_;  // Shutdown(): sent once the answer in progress is complete
  bool shutting_down_ = false;
  std::string finish_reason_;

  Counters counters_;
};

}  // namespace postern
