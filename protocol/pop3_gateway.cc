#include "protocol/pop3_gateway.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "protocol/imap_response.h"

namespace postern {
namespace {

// A sequence set in one UID STORE / UID EXPUNGE stays below this, so the
// command line stays far below what servers accept (Dovecot:
// imap_max_line_length 64k; RFC 7162 section 4 recommends taking 8192).
constexpr size_t kMaxSetBytes = 4000;
constexpr uint64_t kMaxTopChunk = 1 << 20;
// RFC 2449 section 4: a response's first line is at most 512 octets.
constexpr size_t kMaxReasonBytes = 512;

// Backend text for our logs: no CR, LF or NUL, at most 512 octets. It never
// goes to the client.
std::string Sanitize(absl::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxReasonBytes)) {
    out.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
  }
  return out;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

// --- UidlFormat ---------------------------------------------------------------

absl::StatusOr<UidlFormat> UidlFormat::Parse(absl::string_view format) {
  UidlFormat f;
  std::string text;
  bool has_uid = false;
  size_t i = 0;
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("pop3 uidl_format '", format, "': ", what, " at offset ", i));
  };
  while (i < format.size()) {
    const char c = format[i];
    if (c != '%') {
      if (c < 0x21 || c > 0x7e) return error("UIDL characters must be printable ASCII");
      text.push_back(c);
      ++i;
      continue;
    }
    ++i;
    if (i < format.size() && format[i] == '%') {
      text.push_back('%');
      ++i;
      continue;
    }
    // [<offset>.]<width>[<modifiers>]<variable>, as Dovecot 2.3's
    // var_expand() reads it.
    Piece p;
    int sign = 1;
    if (i < format.size() && format[i] == '-') {
      sign = -1;
      ++i;
    }
    if (i < format.size() && format[i] == '0') {
      p.zero_pad = true;
      ++i;
    }
    int width = 0;
    while (i < format.size() && IsDigit(format[i])) {
      width = width * 10 + (format[i] - '0');
      if (width > 1000) return error("width too large");
      ++i;
    }
    if (i < format.size() && format[i] == '.') {
      p.offset = sign * width;
      sign = 1;
      width = 0;
      ++i;
      p.zero_pad = false;
      if (i < format.size() && format[i] == '0') {
        p.zero_pad = true;
        ++i;
      }
      if (i < format.size() && format[i] == '-') {
        sign = -1;
        ++i;
      }
      while (i < format.size() && IsDigit(format[i])) {
        width = width * 10 + (format[i] - '0');
        if (width > 1000) return error("width too large");
        ++i;
      }
    }
    p.width = sign * width;
    while (i < format.size() &&
           absl::string_view("XULRTHNMDE").find(format[i]) != absl::string_view::npos) {
      if (absl::string_view("HNMDE").find(format[i]) != absl::string_view::npos) {
        return error(absl::StrCat("modifier '", absl::string_view(&format[i], 1),
                                  "' is not supported for UIDLs"));
      }
      p.mods.push_back(format[i]);
      if (p.mods.size() > 10) return error("too many modifiers");
      ++i;
    }
    if (i >= format.size()) return error("'%' without a variable");
    if (format[i] == '{') {
      const size_t end = format.find('}', i);
      if (end == absl::string_view::npos) return error("'%{' without '}'");
      const absl::string_view name = format.substr(i + 1, end - i - 1);
      if (name == "uid") {
        p.var = 'u';
      } else if (name == "uidvalidity") {
        p.var = 'v';
      } else {
        return error(
            absl::StrCat("variable %{", name, "} is not available through IMAP (use %u or %v)"));
      }
      i = end + 1;
    } else if (format[i] == 'u' || format[i] == 'v') {
      p.var = format[i];
      ++i;
    } else {
      return error(absl::StrCat("variable %", absl::string_view(&format[i], 1),
                                " is not available through IMAP (use %u or %v)"));
    }
    if (p.var == 'u') has_uid = true;
    if (!text.empty()) {
      Piece t;
      t.text = std::move(text);
      text.clear();
      f.pieces_.push_back(std::move(t));
    }
    f.pieces_.push_back(std::move(p));
  }
  if (!text.empty()) {
    Piece t;
    t.text = std::move(text);
    f.pieces_.push_back(std::move(t));
  }
  if (!has_uid) return error("the format must contain the uid (%u), or UIDLs repeat");
  // RFC 1939 section 7: "The unique-id of a message is an arbitrary
  // server-determined string, consisting of one to 70 characters in the range
  // 0x21 to 0x7E"; and distinct for distinct messages.
  const uint32_t kSamples[] = {1, 9, 10, 255, 256, 65535, 99999, 4294967295u};
  std::vector<std::string> seen;
  for (uint32_t uid : kSamples) {
    for (uint32_t validity : {1u, 4294967295u}) {
      const std::string u = f.Format(uid, validity);
      if (u.empty() || u.size() > 70) {
        return absl::InvalidArgumentError(absl::StrCat("pop3 uidl_format '", format, "' gives '", u,
                                                       "': UIDLs must have 1 to 70 characters"));
      }
      for (char c : u) {
        if (c < 0x21 || c > 0x7e) {
          return absl::InvalidArgumentError(
              absl::StrCat("pop3 uidl_format '", format, "' gives characters outside 0x21-0x7E"));
        }
      }
      if (validity == 1) seen.push_back(u);
    }
  }
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pop3 uidl_format '", format, "' gives the same UIDL to different messages"));
  }
  return f;
}

void UidlFormat::Append(uint32_t uid, uint32_t uidvalidity, std::string* out) const {
  for (const Piece& p : pieces_) {
    if (p.var == 0) {
      out->append(p.text);
      continue;
    }
    uint64_t number = p.var == 'u' ? uid : uidvalidity;
    std::string v = absl::StrCat(number);
    for (char m : p.mods) {
      switch (m) {
        case 'X': {
          // Dovecot: str_to_ullong(), "%llx" (0 when it is no number).
          uint64_t n = 0;
          bool ok = !v.empty() && v.size() <= 20;
          for (char c : v) ok = ok && IsDigit(c);
          if (ok) {
            for (char c : v) n = n * 10 + static_cast<uint64_t>(c - '0');
          }
          v = absl::StrCat(absl::Hex(n));
          break;
        }
        case 'U':
          absl::AsciiStrToUpper(&v);
          break;
        case 'L':
          absl::AsciiStrToLower(&v);
          break;
        case 'R':
          std::reverse(v.begin(), v.end());
          break;
        case 'T':
          while (!v.empty() && absl::ascii_isspace(static_cast<unsigned char>(v.back()))) {
            v.pop_back();
          }
          break;
        default:
          break;
      }
    }
    absl::string_view s = v;
    if (p.offset < 0) {
      const size_t back = static_cast<size_t>(-p.offset);
      if (s.size() > back) s.remove_prefix(s.size() - back);
    } else {
      s.remove_prefix(std::min(s.size(), static_cast<size_t>(p.offset)));
    }
    if (p.width == 0) {
      out->append(s.data(), s.size());
    } else if (!p.zero_pad) {
      // Truncation to the width; a negative width drops that many from the end.
      const int64_t w = p.width < 0 ? static_cast<int64_t>(s.size()) + p.width : p.width;
      if (w >= 0) s = s.substr(0, static_cast<size_t>(w));
      out->append(s.data(), s.size());
    } else {
      // "%05d-like padding. no truncation."
      if (static_cast<int64_t>(s.size()) < p.width) {
        out->append(static_cast<size_t>(p.width) - s.size(), '0');
      }
      out->append(s.data(), s.size());
    }
  }
}

std::string UidlFormat::Format(uint32_t uid, uint32_t uidvalidity) const {
  std::string out;
  Append(uid, uidvalidity, &out);
  return out;
}

// --- Pop3Gateway --------------------------------------------------------------

namespace {

UidlFormat UidlOrDefault(absl::string_view format) {
  absl::StatusOr<UidlFormat> f = UidlFormat::Parse(format);
  if (f.ok()) return *std::move(f);
  // The config loader validated it; fall back to Dovecot's default.
  return *UidlFormat::Parse("%08Xu%08Xv");
}

}  // namespace

Pop3Gateway::Pop3Gateway(Pop3GatewayHost& host, Pop3GatewayOptions options)
    : host_(host),
      options_(std::move(options)),
      uidl_(UidlOrDefault(options_.uidl_format)),
      stream_(*this, options_.imap_limits),
      reader_(options_.pop3_limits) {}

void Pop3Gateway::Send(absl::string_view bytes) {
  if (client_gone_ || phase_ == Phase::kDone || bytes.empty()) return;
  counters_.bytes_sent += bytes.size();
  host_.ToClient(bytes);
}

void Pop3Gateway::Command(Op op, absl::string_view body) {
  tag_ = absl::StrCat("G", next_tag_++);
  op_ = op;
  host_.ToBackend(absl::StrCat(tag_, " ", body, "\r\n"));
}

void Pop3Gateway::Start(const std::vector<std::string>& caps) {
  if (phase_ != Phase::kIdle) return;
  // UID EXPUNGE: UIDPLUS (RFC 4315 section 2.1), or an IMAP4rev2-only server
  // (RFC 9051 section 6.4.9). A server offering rev1 and rev2 behaves as rev1
  // until ENABLE (RFC 9051 appendix A): without UIDPLUS it gets the careful
  // path.
  uid_expunge_ = HasCapability(caps, "UIDPLUS") ||
                 (HasCapability(caps, "IMAP4rev2") && !HasCapability(caps, "IMAP4rev1"));
  phase_ = Phase::kSetup;
  answer_owed_ = true;
  Command(Op::kSelect, "SELECT INBOX");
}

void Pop3Gateway::OnBackendData(absl::string_view bytes) {
  if (phase_ == Phase::kDone || phase_ == Phase::kIdle) return;
  absl::Status s = stream_.Feed(bytes);
  if (!s.ok() && phase_ != Phase::kDone) {
    BackendBroken(absl::StrCat("backend: malformed response: ", s.message()));
  }
}

void Pop3Gateway::BackendGone() {
  if (phase_ == Phase::kDone) return;
  if (phase_ == Phase::kLogout || phase_ == Phase::kIdle) {
    Done(finish_reason_.empty() ? "backend: closed" : finish_reason_);
    return;
  }
  BackendBroken("backend: connection closed");
}

void Pop3Gateway::OnClientData(Buffer& in) {
  client_in_ = &in;
  ProcessClient();
}

void Pop3Gateway::Resume(Buffer& in) {
  client_in_ = &in;
  ProcessClient();
}

void Pop3Gateway::ClientGone(absl::string_view reason) {
  if (phase_ == Phase::kDone || client_gone_) return;
  client_gone_ = true;
  client_in_ = nullptr;
  if (finish_reason_.empty()) finish_reason_ = std::string(reason);
  if (phase_ == Phase::kIdle) {
    Done(finish_reason_);
    return;
  }
  // Anything in flight finishes first (its answer goes nowhere); the
  // completion handlers come back here through GoneSequence().
  if (op_ == Op::kNone) GoneSequence();
}

void Pop3Gateway::GoneSequence() {
  // RFC 1939 section 6: no UPDATE state without QUIT; nothing is deleted.
  // Dovecot still writes the \Seen flags of what was RETRieved.
  switch (phase_) {
    case Phase::kTransaction:
      if (options_.seen == Pop3GatewayOptions::Seen::kDeferred && !read_only_) {
        phase_ = Phase::kUpdate;
        gone_update_ = true;
        step_ = Step::kSeen;
        update_cursor_ = 0;
        NextUpdateStep();
        return;
      }
      Logout();
      return;
    case Phase::kSetup:
      Logout();
      return;
    case Phase::kIdle:
    case Phase::kUpdate:  // a QUIT in progress completes
    case Phase::kLogout:
    case Phase::kDone:
      return;
  }
}

void Pop3Gateway::Logout() {
  phase_ = Phase::kLogout;
  Command(Op::kLogout, "LOGOUT");
}

void Pop3Gateway::Done(absl::string_view reason) {
  if (phase_ == Phase::kDone) return;
  phase_ = Phase::kDone;
  op_ = Op::kNone;
  host_.Finish(reason);
}

void Pop3Gateway::Fail(absl::string_view client_text, absl::string_view reason) {
  if (answer_owed_) Send(absl::StrCat(client_text, "\r\n"));
  answer_owed_ = false;
  finish_reason_ = std::string(reason);
  Logout();
}

void Pop3Gateway::BackendBroken(absl::string_view reason) {
  if (phase_ == Phase::kDone) return;
  // An answer not begun gets an -ERR; one whose "+OK" went out already stays
  // without its terminator, so the client sees it cut short rather than
  // complete.
  if (answer_owed_) Send("-ERR [SYS/TEMP] Backend failure, try again later.\r\n");
  answer_owed_ = false;
  Done(reason);
}

// --- the IMAP side -----------------------------------------------------------

void Pop3Gateway::OnUntaggedStatus(const ImapStatusResponse& r) {
  if (phase_ == Phase::kDone) return;
  if (r.status == ImapStatus::kBye) {
    // RFC 3501 section 7.1.5: expected after LOGOUT; otherwise the server
    // is about to close on us.
    if (phase_ != Phase::kLogout) {
      BackendBroken(absl::StrCat("backend: BYE ", Sanitize(r.text)));
    }
    return;
  }
  if (op_ == Op::kSelect && r.status == ImapStatus::kOk && r.code_name == "UIDVALIDITY" &&
      r.code_number.has_value() && *r.code_number > 0 &&
      *r.code_number <= std::numeric_limits<uint32_t>::max()) {
    uidvalidity_ = static_cast<uint32_t>(*r.code_number);
    have_uidvalidity_ = true;
  }
}

void Pop3Gateway::OnNumeric(absl::string_view keyword, uint32_t n) {
  // EXISTS / EXPUNGE / RECENT during later commands change nothing: the
  // numbering is fixed (RFC 1939 section 4, DIGEST c.5).
  if (op_ == Op::kSelect && keyword == "EXISTS") exists_ = n;
}

void Pop3Gateway::OnSearchNumber(uint32_t n) {
  if (op_ == Op::kSearchDeleted && !HasDeletedOf(n)) others_deleted_ = true;
}

void Pop3Gateway::OnFetchStart(uint32_t seq) {
  fetch_seq_ = seq;
  fetch_uid_ = 0;
  fetch_has_size_ = false;
}

void Pop3Gateway::OnFetchUid(uint32_t uid) { fetch_uid_ = uid; }

void Pop3Gateway::OnFetchSize(uint64_t size) {
  fetch_size_ = size;
  fetch_has_size_ = true;
}

void Pop3Gateway::OnFetchEnd() {
  if (phase_ == Phase::kDone) return;
  if (op_ == Op::kFetchSizes) {
    // Responses without UID and size are unsolicited (FLAGS); messages that
    // arrived after SELECT are not ours to number.
    if (fetch_uid_ != 0 && fetch_has_size_ && fetch_seq_ <= msgs_.size()) {
      msgs_[fetch_seq_ - 1] = Message{fetch_size_, fetch_uid_, kFilled};
    }
    return;
  }
  if ((op_ == Op::kRetr || op_ == Op::kTopHeader || op_ == Op::kTopText) && body_seen_ &&
      fetch_uid_ != 0 && fetch_uid_ != msgs_[cur_].uid) {
    // RFC 3501 section 6.4.8: match by UID. Data of another message under
    // our fetch is a broken backend.
    BackendBroken("backend: body for the wrong UID");
  }
}

void Pop3Gateway::OnBodyStart(const ImapBodySection& s) {
  if (phase_ == Phase::kDone) return;
  if (op_ != Op::kRetr && op_ != Op::kTopHeader && op_ != Op::kTopText) return;
  if (body_seen_) {
    BackendBroken("backend: two bodies for one fetch");
    return;
  }
  if (fetch_uid_ != 0 && fetch_uid_ != msgs_[cur_].uid) {
    BackendBroken("backend: body for the wrong UID");
    return;
  }
  if (s.nil) return;  // no data: answered like an expunged message
  body_seen_ = true;
  in_body_ = true;
  if (op_ == Op::kRetr) {
    // Dovecot: "+OK <size> octets" with the size LIST gives (RFC 1939
    // section 7 leaves the text free).
    Send(absl::StrCat("+OK ", msgs_[cur_].size, " octets\r\n"));
    answer_owed_ = false;
    stuffer_.Reset();
  } else if (op_ == Op::kTopHeader) {
    Send("+OK\r\n");
    answer_owed_ = false;
    stuffer_.Reset();
  }
}

void Pop3Gateway::OnBodyData(absl::string_view data) {
  if (!in_body_ || phase_ == Phase::kDone) return;
  auto sink = [this](absl::string_view s) { Send(s); };
  if (op_ == Op::kTopText) {
    top_received_ += data.size();
    if (top_done_) return;
    // RFC 1939 section 7 TOP: "the number of lines of the message body";
    // lines end at LF, as Dovecot counts them.
    size_t pos = 0;
    while (top_lines_left_ > 0) {
      const size_t lf = data.find('\n', pos);
      if (lf == absl::string_view::npos) break;
      pos = lf + 1;
      if (--top_lines_left_ == 0) {
        stuffer_.Encode(data.substr(0, pos), sink);
        top_done_ = true;
        return;
      }
    }
  }
  stuffer_.Encode(data, sink);
}

void Pop3Gateway::OnBodyEnd() { in_body_ = false; }

void Pop3Gateway::EndBody() {
  auto sink = [this](absl::string_view s) { Send(s); };
  stuffer_.Finish(sink);
  answer_owed_ = false;
}

void Pop3Gateway::OnTagged(const ImapStatusResponse& r) {
  if (phase_ == Phase::kDone) return;
  if (op_ == Op::kNone || r.tag != tag_) {
    BackendBroken(absl::StrCat("backend: unexpected tagged response ", Sanitize(r.tag)));
    return;
  }
  const Op op = op_;
  op_ = Op::kNone;
  const bool ok = r.status == ImapStatus::kOk;
  switch (op) {
    case Op::kSelect:
      SetupDone(r);
      return;
    case Op::kFetchSizes:
      SizesDone(r);
      return;
    case Op::kRetr:
      if (body_seen_) {
        EndBody();
        ++counters_.retrieved;
        if (options_.seen == Pop3GatewayOptions::Seen::kDeferred) {
          msgs_[cur_].flags |= kSeenPending;
        }
      } else if (ok) {
        // UID FETCH of a UID that is gone: OK without data (RFC 3501
        // section 6.4.8). Dovecot's text.
        Send(absl::StrCat("-ERR Message ", cur_ + 1, " expunged.\r\n"));
      } else {
        Send(absl::StrCat("-ERR [SYS/TEMP] Couldn't read message ", cur_ + 1, ".\r\n"));
      }
      answer_owed_ = false;
      break;
    case Op::kTopHeader:
      if (!body_seen_) {
        Send(ok ? absl::StrCat("-ERR Message ", cur_ + 1, " expunged.\r\n")
                : absl::StrCat("-ERR [SYS/TEMP] Couldn't read message ", cur_ + 1, ".\r\n"));
        answer_owed_ = false;
      } else if (top_lines_left_ == 0) {
        EndBody();
      } else {
        top_offset_ = 0;
        top_chunk_ = std::max<uint64_t>(options_.top_chunk, 1);
        top_done_ = false;
        NextTopText();
        return;
      }
      break;
    case Op::kTopText:
      if (ok && body_seen_ && !top_done_ && top_received_ >= top_chunk_) {
        // The text goes on: the next, larger piece (RFC 3501 section 6.4.5
        // partial fetch; a reply shorter than asked means the text ended).
        top_offset_ += top_received_;
        top_chunk_ = std::min(top_chunk_ * 2, kMaxTopChunk);
        NextTopText();
        return;
      }
      EndBody();
      break;
    case Op::kSync:
      if (!ok) update_failed_ = true;
      step_ = update_failed_ ? Step::kAnswer : Step::kSearch;
      NextUpdateStep();
      return;
    case Op::kSearchDeleted:
      if (!ok) update_failed_ = true;
      step_ = update_failed_ || others_deleted_ ? Step::kAnswer : Step::kStoreDeleted;
      update_cursor_ = 0;
      NextUpdateStep();
      return;
    case Op::kStoreSeen:
      NextUpdateStep();
      return;
    case Op::kStoreDeleted:
    case Op::kExpunge:
      if (!ok) update_failed_ = true;
      NextUpdateStep();
      return;
    case Op::kLogout:
      Done(finish_reason_.empty() ? "logout" : finish_reason_);
      return;
    case Op::kNone:
      return;
  }
  // A transaction command is complete.
  if (client_gone_) {
    GoneSequence();
  } else {
    ProcessClient();
  }
}

void Pop3Gateway::SetupDone(const ImapStatusResponse& r) {
  if (r.status != ImapStatus::kOk) {
    Fail("-ERR [SYS/TEMP] Couldn't open INBOX.",
         absl::StrCat("backend: SELECT INBOX failed: ", Sanitize(r.text)));
    return;
  }
  if (!have_uidvalidity_) {
    // RFC 3501 section 6.3.1: without UIDVALIDITY there are no lasting UIDs,
    // so no UIDLs (DIGEST c.1).
    Fail("-ERR [SYS/PERM] Mailbox has no UIDVALIDITY.", "backend: no UIDVALIDITY");
    return;
  }
  read_only_ = r.code_name == "READ-ONLY";
  if (exists_ > options_.max_messages) {
    Fail("-ERR [SYS/TEMP] Too many messages in the mailbox.",
         absl::StrCat("backend: ", exists_, " messages, over max_messages"));
    return;
  }
  if (client_gone_) {
    Logout();
    return;
  }
  if (exists_ == 0) {
    Opened();
    return;
  }
  msgs_.assign(static_cast<size_t>(exists_), Message{0, 0, 0});
  // Plain FETCH: no EXPUNGE can come in between (RFC 3501 section 7.4.1).
  Command(Op::kFetchSizes, "FETCH 1:* (UID RFC822.SIZE)");
}

void Pop3Gateway::SizesDone(const ImapStatusResponse& r) {
  if (r.status != ImapStatus::kOk) {
    Fail("-ERR [SYS/TEMP] Couldn't read the mailbox.",
         absl::StrCat("backend: FETCH sizes failed: ", Sanitize(r.text)));
    return;
  }
  // Messages the FETCH did not report (expunged between SELECT and FETCH)
  // are left out.
  size_t n = 0;
  uint32_t last_uid = 0;
  total_size_ = 0;
  for (const Message& m : msgs_) {
    if ((m.flags & kFilled) == 0) continue;
    if (m.uid <= last_uid) {
      // Sequence order is UID order (RFC 3501 section 2.3.1.2).
      Fail("-ERR [SYS/TEMP] Couldn't read the mailbox.", "backend: UIDs out of order");
      return;
    }
    last_uid = m.uid;
    msgs_[n++] = Message{m.size, m.uid, 0};
    total_size_ += m.size;
  }
  msgs_.resize(n);
  msgs_.shrink_to_fit();
  if (client_gone_) {
    Logout();
    return;
  }
  Opened();
}

void Pop3Gateway::Opened() {
  phase_ = Phase::kTransaction;
  counters_.messages = static_cast<uint32_t>(msgs_.size());
  answer_owed_ = false;
  // RFC 1939 section 4: the positive answer to PASS means the maildrop is
  // open. Dovecot's text.
  Send("+OK Logged in.\r\n");
  ProcessClient();
}

// --- the POP3 side -----------------------------------------------------------

void Pop3Gateway::Shutdown(absl::string_view notice) {
  if (phase_ == Phase::kDone || client_gone_ || shutting_down_) return;
  shutting_down_ = true;
  shutdown_notice_ = std::string(notice);
  switch (phase_) {
    case Phase::kIdle:
    case Phase::kSetup:
      // The login's answer is still owed: the notice is the answer.
      answer_owed_ = false;
      Send(shutdown_notice_);
      ClientGone();
      return;
    case Phase::kTransaction:
      ProcessClient();  // ends the session now if no answer is in progress
      return;
    case Phase::kUpdate:  // QUIT completes and answers
    case Phase::kLogout:
    case Phase::kDone:
      return;
  }
}

void Pop3Gateway::ProcessClient() {
  while (phase_ == Phase::kTransaction && !client_gone_ && op_ == Op::kNone) {
    if (listing_ != Listing::kNone) {
      if (host_.ClientBacklog() > options_.max_reply_backlog) return;
      if (!ContinueListing()) return;
      continue;
    }
    if (shutting_down_) {
      // Between two answers: the notice goes here, nothing more is read.
      Send(shutdown_notice_);
      finish_reason_ = "server shutdown";
      ClientGone();
      return;
    }
    if (client_in_ == nullptr || client_in_->empty()) return;
    if (host_.ClientBacklog() > options_.max_reply_backlog) return;
    switch (reader_.Next(*client_in_)) {
      case Pop3CommandReader::Event::kNeedMore:
      case Pop3CommandReader::Event::kLine:
        return;
      case Pop3CommandReader::Event::kError:
        Send(absl::StrCat("-ERR ", reader_.error_text(), "\r\n"));
        break;
      case Pop3CommandReader::Event::kFatal:
        Send(absl::StrCat("-ERR ", reader_.error_text(), "\r\n"));
        finish_reason_ = absl::StrCat("client: ", reader_.error_text());
        ClientGone();
        return;
      case Pop3CommandReader::Event::kCommand:
        Execute(reader_.command());
        break;
    }
  }
}

bool Pop3Gateway::ContinueListing() {
  std::string chunk;
  while (listing_next_ < msgs_.size() && chunk.size() < options_.listing_chunk) {
    const Message& m = msgs_[listing_next_++];
    if (m.flags & kDeleted) continue;
    if (listing_ == Listing::kList) {
      absl::StrAppend(&chunk, listing_next_, " ", m.size, "\r\n");
    } else {
      absl::StrAppend(&chunk, listing_next_, " ");
      uidl_.Append(m.uid, uidvalidity_, &chunk);
      chunk += "\r\n";
    }
  }
  const bool done = listing_next_ >= msgs_.size();
  if (done) {
    chunk += ".\r\n";
    listing_ = Listing::kNone;
  }
  Send(chunk);
  return done || host_.ClientBacklog() <= options_.max_reply_backlog;
}

bool Pop3Gateway::CommandError(absl::string_view text) {
  Send(absl::StrCat(text, "\r\n"));
  if (reader_.ChargeError()) return true;
  finish_reason_ = "client: too many invalid commands";
  ClientGone();
  return false;
}

int64_t Pop3Gateway::MessageArg(const Pop3Command& cmd, size_t index, bool more_follow) {
  // Dovecot's get_msgnum() texts (src/pop3/pop3-commands.c).
  const absl::string_view arg =
      index < cmd.args.size() ? absl::string_view(cmd.args[index]) : absl::string_view();
  if (arg.empty() || !IsDigit(arg[0])) {
    CommandError(absl::StrCat("-ERR Invalid message number: ", arg));
    return -1;
  }
  uint64_t num = 0;
  size_t i = 0;
  for (; i < arg.size() && IsDigit(arg[i]); ++i) {
    num = num * 10 + static_cast<uint64_t>(arg[i] - '0');
    if (num > std::numeric_limits<uint32_t>::max()) {
      CommandError(absl::StrCat("-ERR Message number too large: ", arg));
      return -1;
    }
  }
  if (i < arg.size()) {
    CommandError(absl::StrCat("-ERR Noise after message number: ", arg.substr(i)));
    return -1;
  }
  const bool has_more = cmd.args.size() > index + 1;
  if (has_more != more_follow) {
    std::string rest;
    if (has_more) {
      rest = absl::StrCat(" ", absl::StrJoin(cmd.args.begin() + index + 1, cmd.args.end(), " "));
    }
    CommandError(absl::StrCat("-ERR Noise after message number: ", rest));
    return -1;
  }
  if (num == 0 || num > msgs_.size()) {
    CommandError(absl::StrCat("-ERR There's no message ", num, "."));
    return -1;
  }
  if (msgs_[num - 1].flags & kDeleted) {
    CommandError("-ERR Message is deleted.");
    return -1;
  }
  return static_cast<int64_t>(num - 1);
}

void Pop3Gateway::Execute(const Pop3Command& cmd) {
  const std::string& name = cmd.name;
  if (name == "CAPA") {
    // RFC 2449 section 5: what the gateway really does, in Dovecot's order,
    // plus what stays valid after login (RFC 5034 section 3).
    std::string capa =
        "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n";
    if (!options_.sasl_mechanisms.empty()) {
      absl::StrAppend(&capa, "SASL ", absl::StrJoin(options_.sasl_mechanisms, " "), "\r\n");
    }
    if (!options_.implementation.empty()) {
      absl::StrAppend(&capa, "IMPLEMENTATION ", options_.implementation, "\r\n");
    }
    capa += ".\r\n";
    Send(capa);
    return;
  }
  if (name == "STAT") {
    // RFC 1939 section 5: "+OK nn mm", deleted messages left out.
    Send(absl::StrCat("+OK ", msgs_.size() - deleted_count_, " ", total_size_ - deleted_size_,
                      "\r\n"));
    return;
  }
  if (name == "LIST" || name == "UIDL") {
    const bool list = name == "LIST";
    if (cmd.args.empty()) {
      Send(list ? absl::StrCat("+OK ", msgs_.size() - deleted_count_, " messages:\r\n")
                : std::string("+OK\r\n"));
      listing_ = list ? Listing::kList : Listing::kUidl;
      listing_next_ = 0;
      return;
    }
    const int64_t i = MessageArg(cmd, 0, false);
    if (i < 0) return;
    const Message& m = msgs_[static_cast<size_t>(i)];
    if (list) {
      Send(absl::StrCat("+OK ", i + 1, " ", m.size, "\r\n"));
    } else {
      std::string line = absl::StrCat("+OK ", i + 1, " ");
      uidl_.Append(m.uid, uidvalidity_, &line);
      line += "\r\n";
      Send(line);
    }
    return;
  }
  if (name == "RETR") {
    const int64_t i = MessageArg(cmd, 0, false);
    if (i >= 0) Retr(static_cast<size_t>(i));
    return;
  }
  if (name == "TOP") {
    const int64_t i = MessageArg(cmd, 0, true);
    if (i < 0) return;
    // Dovecot's get_size() texts.
    const absl::string_view arg = cmd.args[1];
    if (arg.empty() || !IsDigit(arg[0])) {
      CommandError(absl::StrCat("-ERR Invalid size: ", arg));
      return;
    }
    uint64_t lines = 0;
    size_t k = 0;
    for (; k < arg.size() && IsDigit(arg[k]); ++k) {
      const uint64_t d = static_cast<uint64_t>(arg[k] - '0');
      if (lines > (std::numeric_limits<uint64_t>::max() - d) / 10) {
        CommandError(absl::StrCat("-ERR Size too large: ", arg));
        return;
      }
      lines = lines * 10 + d;
    }
    if (k < arg.size() || cmd.args.size() > 2) {
      std::string rest(arg.substr(k));
      if (cmd.args.size() > 2) {
        absl::StrAppend(&rest, " ", absl::StrJoin(cmd.args.begin() + 2, cmd.args.end(), " "));
      }
      CommandError(absl::StrCat("-ERR Noise after size: ", rest));
      return;
    }
    Top(static_cast<size_t>(i), lines);
    return;
  }
  if (name == "DELE") {
    const int64_t i = MessageArg(cmd, 0, false);
    if (i < 0) return;
    // Only a mark: nothing reaches the backend before QUIT (DIGEST c.2).
    Message& m = msgs_[static_cast<size_t>(i)];
    m.flags |= kDeleted;
    ++deleted_count_;
    deleted_size_ += m.size;
    Send("+OK Marked to be deleted.\r\n");
    return;
  }
  if (name == "RSET") {
    for (Message& m : msgs_) m.flags &= static_cast<uint8_t>(~(kDeleted | kSeenPending));
    deleted_count_ = 0;
    deleted_size_ = 0;
    Send("+OK\r\n");
    return;
  }
  if (name == "NOOP") {
    Send("+OK\r\n");
    return;
  }
  if (name == "QUIT") {
    Quit();
    return;
  }
  // USER, PASS, AUTH, APOP, STLS after login, and anything unknown
  // (RFC 1939 section 3). Dovecot's text.
  CommandError(absl::StrCat("-ERR Unknown command: ", name));
}

void Pop3Gateway::Retr(size_t index) {
  cur_ = index;
  body_seen_ = false;
  answer_owed_ = true;
  // BODY[] sets \Seen, BODY.PEEK[] does not (RFC 3501 section 6.4.5).
  const bool peek = options_.seen != Pop3GatewayOptions::Seen::kImmediate;
  Command(Op::kRetr,
          absl::StrCat("UID FETCH ", msgs_[index].uid, peek ? " (BODY.PEEK[])" : " (BODY[])"));
}

void Pop3Gateway::Top(size_t index, uint64_t lines) {
  cur_ = index;
  body_seen_ = false;
  answer_owed_ = true;
  top_lines_left_ = lines;
  // The header block, blank line included (RFC 3501 section 6.4.5); the
  // body lines follow in partial fetches, so TOP n 0 of a large message does
  // not pull its body.
  Command(Op::kTopHeader, absl::StrCat("UID FETCH ", msgs_[index].uid, " (BODY.PEEK[HEADER])"));
}

void Pop3Gateway::NextTopText() {
  top_received_ = 0;
  body_seen_ = false;
  Command(Op::kTopText, absl::StrCat("UID FETCH ", msgs_[cur_].uid, " (BODY.PEEK[TEXT]<",
                                     top_offset_, ".", top_chunk_, ">)"));
}

// --- QUIT -----------------------------------------------------------------

void Pop3Gateway::Quit() {
  // RFC 1939 section 6: the UPDATE state. The answer comes once the backend
  // confirmed.
  phase_ = Phase::kUpdate;
  answer_owed_ = true;
  step_ = Step::kSeen;
  update_cursor_ = 0;
  NextUpdateStep();
}

bool Pop3Gateway::HasDeletedOf(uint32_t uid) const {
  auto it = std::lower_bound(msgs_.begin(), msgs_.end(), uid,
                             [](const Message& m, uint32_t u) { return m.uid < u; });
  return it != msgs_.end() && it->uid == uid && (it->flags & kDeleted) != 0;
}

bool Pop3Gateway::NextUidBatch(uint8_t want, uint8_t skip, std::string* set) {
  // Runs of selected neighbours in the table become "first:last": no UID
  // between two of our messages can exist, since UIDs only grow and the
  // table holds every message there was at login (RFC 3501 section 2.3.1.1).
  set->clear();
  auto selected = [&](const Message& m) { return (m.flags & want) != 0 && (m.flags & skip) == 0; };
  size_t i = update_cursor_;
  while (i < msgs_.size() && set->size() < kMaxSetBytes) {
    if (!selected(msgs_[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j + 1 < msgs_.size() && selected(msgs_[j + 1])) ++j;
    if (!set->empty()) set->push_back(',');
    if (j == i) {
      absl::StrAppend(set, msgs_[i].uid);
    } else {
      absl::StrAppend(set, msgs_[i].uid, ":", msgs_[j].uid);
    }
    i = j + 1;
  }
  update_cursor_ = i;
  return !set->empty();
}

void Pop3Gateway::NextUpdateStep() {
  std::string set;
  for (;;) {
    switch (step_) {
      case Step::kSeen:
        // Deleted messages are expunged, not flagged (Dovecot's
        // client_update_mails); a client that left keeps them all.
        if (options_.seen == Pop3GatewayOptions::Seen::kDeferred && !read_only_ &&
            NextUidBatch(kSeenPending, gone_update_ ? 0 : kDeleted, &set)) {
          Command(Op::kStoreSeen, absl::StrCat("UID STORE ", set, " +FLAGS.SILENT (\\Seen)"));
          return;
        }
        if (gone_update_) {
          Logout();
          return;
        }
        update_cursor_ = 0;
        if (deleted_count_ == 0 || read_only_) {
          // Dovecot ignores deletions in a read-only mailbox silently.
          step_ = Step::kAnswer;
        } else {
          step_ = uid_expunge_ ? Step::kStoreDeleted : Step::kSync;
        }
        continue;
      case Step::kSync:
        // Dovecot runs a command on the session's view of the mailbox and
        // syncs what other sessions changed only after it (their FETCH
        // FLAGS follow the SEARCH results), while EXPUNGE acts on the
        // mailbox itself: a \Deleted flag set elsewhere since our last
        // command would be missed by the SEARCH and its message expunged
        // by ours. A NOOP syncs first (RFC 3501 section 6.1.2); what another
        // client flags between it and the EXPUNGE is the race RFC 4315
        // section 2.1 warns of.
        Command(Op::kSync, "NOOP");
        return;
      case Step::kSearch:
        // Without UIDPLUS, EXPUNGE removes every \Deleted message: only
        // when ours are the only ones (RFC 4315 section 2.1, DIGEST c.4).
        others_deleted_ = false;
        Command(Op::kSearchDeleted, "UID SEARCH DELETED");
        return;
      case Step::kStoreDeleted:
        if (NextUidBatch(kDeleted, 0, &set)) {
          Command(Op::kStoreDeleted, absl::StrCat("UID STORE ", set, " +FLAGS.SILENT (\\Deleted)"));
          return;
        }
        step_ = Step::kExpunge;
        update_cursor_ = 0;
        continue;
      case Step::kExpunge:
        if (uid_expunge_) {
          // UID EXPUNGE removes only the listed UIDs (RFC 4315 section 2.1).
          if (NextUidBatch(kDeleted, 0, &set)) {
            Command(Op::kExpunge, absl::StrCat("UID EXPUNGE ", set));
            return;
          }
        } else if (!expunge_sent_) {
          expunge_sent_ = true;
          Command(Op::kExpunge, "EXPUNGE");
          return;
        }
        step_ = Step::kAnswer;
        continue;
      case Step::kAnswer:
        if (others_deleted_) {
          Send(
              "-ERR [SYS/TEMP] Deleted messages not removed: other messages in the mailbox "
              "are flagged \\Deleted.\r\n");
        } else if (update_failed_) {
          Send("-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n");
        } else if (deleted_count_ > 0) {
          counters_.deleted = deleted_count_;
          Send("+OK Logging out, messages deleted.\r\n");
        } else {
          Send("+OK Logging out.\r\n");
        }
        answer_owed_ = false;
        if (finish_reason_.empty()) finish_reason_ = "client: quit";
        Logout();
        return;
    }
  }
}

}  // namespace postern
